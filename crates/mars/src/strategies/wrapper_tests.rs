//! Streaming through the wrapper: each multi-step strategy's stream sends its final call's text
//! as it arrives, joins to the answer `run` gives, and ends with the same usage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::channel::oneshot;

use super::*;
use crate::client::{ChatRequest, EventStream, Finish, ModelClient, StreamEvent};
use crate::strategies::cot_reflection::CotReflectionConfig;
use crate::strategies::leap::Example;
use crate::strategies::test_support::request;
use crate::strategies::trace::Candidate;
use crate::strategies::{
    Baseline, BestOfN, BestOfNConfig, CotReflection, Leap, LeapConfig, MixtureOfAgents,
    MixtureOfAgentsConfig, Pipeline, ReRead, ReReadConfig, RoundTrip, RoundTripConfig,
};
use crate::{ScriptedClient, Turn};

/// The deltas of a stream and its terminal event; fails the test unless the stream is deltas,
/// then exactly one `Done`, then its end.
async fn streamed(mut stream: EventStream<'_>) -> (Vec<String>, Finish) {
    let mut deltas = Vec::new();
    loop {
        match stream.next().await {
            Some(Ok(StreamEvent::Delta(text))) => deltas.push(text),
            Some(Ok(StreamEvent::Done(finish))) => {
                assert!(stream.next().await.is_none(), "an event after Done");
                return (deltas, finish);
            }
            Some(Err(err)) => panic!("the stream failed: {err}"),
            None => panic!("the stream ended without Done"),
        }
    }
}

/// Runs one strategy made by `make` with `run` and another with `stream_chat`, each over its
/// own client, and checks that the stream sends the run's answer with its finish reason, token
/// counts and call count; returns the outcome and the deltas.
async fn stream_and_run<S: Strategy>(
    make: impl Fn() -> S,
    request: ChatRequest,
) -> (Outcome, Vec<String>) {
    let outcome = make().run(request.clone()).await.unwrap();
    let streaming = make();
    let (deltas, finish) = streamed(streaming.stream_chat(request)).await;
    assert_eq!(deltas.concat(), outcome.answer);
    assert_same_usage(&finish, &outcome);
    (outcome, deltas)
}

fn assert_same_usage(finish: &Finish, outcome: &Outcome) {
    assert_eq!(finish.reason, outcome.finish_reason);
    let counts = |u: &crate::Usage| (u.prompt_tokens, u.completion_tokens, u.model_calls);
    assert_eq!(counts(&finish.usage), counts(&outcome.usage));
    assert!(finish.usage.time_to_first_token.is_some());
    assert!(finish.usage.time_to_first_token <= Some(finish.usage.total_time));
}

fn last_user_has(request: &ChatRequest, text: &str) -> bool {
    request
        .last_user_message()
        .is_some_and(|m| m.contains(text))
}

fn system_has(request: &ChatRequest, text: &str) -> bool {
    request.system.as_deref().is_some_and(|s| s.contains(text))
}

/// Three proposals named by their seed; the aggregation, in three deltas.
fn moa_script() -> ScriptedClient {
    ScriptedClient::from_fn(|_, request| {
        if last_user_has(request, "Original question") {
            Turn::chunks(["Both ", "say ", "4"])
        } else {
            Turn::text(format!("proposal {:?}", request.options.seed))
        }
    })
}

fn moa(client: impl ModelClient) -> MixtureOfAgents<impl ModelClient> {
    MixtureOfAgents::new(client, MixtureOfAgentsConfig::default()).unwrap()
}

const COT_REPLY: [&str; 4] = [
    "<thinking>2 + 2 = 4, I put it in <output> tags</thinking>\n<out",
    "put>\nThe answer",
    " is 4",
    ".\n</output>\n",
];

/// A first code, its description, a second code that differs, and the synthesis in deltas.
fn rto_script(synthesis: Turn) -> ScriptedClient {
    ScriptedClient::new([
        Turn::text("```rust\nfn a() -> i32 { 1 }\n```"),
        Turn::text("Write `a`, returning an i32."),
        Turn::text("```rust\nfn a() -> i32 { 2 }\n```"),
        synthesis,
    ])
}

const RTO_SYNTHESIS: [&str; 3] = ["```rust\n", "fn a() -> i32 { 1 }", "\n```"];

/// One example answered wrongly, so LEAP learns a principle before its final answer.
fn leap_script() -> ScriptedClient {
    ScriptedClient::from_fn(|_, request| {
        if last_user_has(request, "is wrong") {
            Turn::text("<output>Multiply, do not add.</output>")
        } else if last_user_has(request, "Condense") {
            Turn::text("1. Read the operator.")
        } else if last_user_has(request, "3 * 4") {
            Turn::text("3 * 4 = 7 <output>7</output>")
        } else {
            Turn::chunks(["5 * 6", " = ", "30"])
        }
    })
}

fn leap(client: impl ModelClient) -> Leap<impl ModelClient> {
    let config = LeapConfig {
        examples: vec![Example {
            question: "What is 3 * 4?".into(),
            answer: "12".into(),
        }],
        ..LeapConfig::default()
    };
    Leap::new(client, config).unwrap()
}

#[tokio::test]
async fn mixture_of_agents_streams_its_aggregation_as_it_arrives() {
    let (outcome, deltas) = stream_and_run(|| moa(moa_script()), request("2 + 2?")).await;
    assert_eq!(deltas, ["Both ", "say ", "4"]);
    assert_eq!(outcome.usage.model_calls, 4);
}

#[tokio::test]
async fn reread_streams_its_one_call() {
    let make = || {
        let client = ScriptedClient::new([Turn::chunks(["4", ", since ", "2 + 2 = 4"])]);
        ReRead::new(client, ReReadConfig::default()).unwrap()
    };
    let (_, deltas) = stream_and_run(make, request("2 + 2?")).await;
    assert_eq!(deltas, ["4", ", since ", "2 + 2 = 4"]);
}

#[tokio::test]
async fn cot_reflection_streams_only_its_output_section() {
    let make = || {
        let client = ScriptedClient::new([Turn::chunks(COT_REPLY)]);
        CotReflection::new(client, CotReflectionConfig::default()).unwrap()
    };
    let (outcome, deltas) = stream_and_run(make, request("2 + 2?")).await;
    // The tag mentioned inside <thinking> is not the answer; the partial tag is held back.
    assert_eq!(deltas, ["The answer", " is 4", "."]);
    assert_eq!(outcome.candidates[0].text, COT_REPLY.concat());
}

#[tokio::test]
async fn cot_reflection_without_an_output_section_sends_the_whole_reply_at_the_end() {
    let reply = ["<thinking>cut off", " by the limit"];
    let make = || {
        let client = ScriptedClient::new([Turn::chunks(reply)]);
        CotReflection::new(client, CotReflectionConfig::default()).unwrap()
    };
    let (_, deltas) = stream_and_run(make, request("2 + 2?")).await;
    assert_eq!(deltas, [reply.concat()]);
}

#[tokio::test]
async fn rto_streams_its_synthesis_and_sends_an_agreed_first_answer_at_the_end() {
    let make = || {
        RoundTrip::new(
            rto_script(Turn::chunks(RTO_SYNTHESIS)),
            RoundTripConfig::default(),
        )
    };
    let (outcome, deltas) = stream_and_run(|| make().unwrap(), request("Write a")).await;
    assert_eq!(deltas, RTO_SYNTHESIS);
    assert_eq!((outcome.winner, outcome.usage.model_calls), (2, 4));

    // The codes agree: the first reply answers, known only once the second is in.
    let agreeing = || {
        let client = ScriptedClient::new([
            Turn::chunks(["```rust\nfn a() -> i32 { 1 }", "\n```"]),
            Turn::text("Write `a`, returning 1."),
            Turn::text("```rust\nfn a() -> i32 {\n    1 // one\n}\n```"),
        ]);
        RoundTrip::new(client, RoundTripConfig::default()).unwrap()
    };
    let (outcome, deltas) = stream_and_run(agreeing, request("Write a")).await;
    assert_eq!(deltas, ["```rust\nfn a() -> i32 { 1 }\n```"]);
    assert_eq!((outcome.winner, outcome.usage.model_calls), (0, 3));
}

#[tokio::test]
async fn leap_streams_its_final_answer() {
    let (outcome, deltas) = stream_and_run(|| leap(leap_script()), request("5 * 6?")).await;
    assert_eq!(deltas, ["5 * 6", " = ", "30"]);
    assert_eq!(outcome.usage.model_calls, 4);
}

#[tokio::test]
async fn a_selection_strategy_sends_its_chosen_answer_once_at_the_end() {
    let make = || {
        let client = ScriptedClient::from_fn(|i, _| Turn::chunks(["ans", "wer", &i.to_string()]));
        let config = BestOfNConfig {
            n: 2,
            ..BestOfNConfig::default()
        };
        BestOfN::new(client, config).unwrap()
    };
    let (outcome, deltas) = stream_and_run(make, request("q")).await;
    assert_eq!(deltas, std::slice::from_ref(&outcome.answer));
}

/// `baseline&stage` over `client`, its last stage built by `last`.
fn pipeline<'a>(client: &'a ScriptedClient, last: Box<dyn Strategy + 'a>) -> Pipeline<'a> {
    let stages: Vec<Box<dyn Strategy + 'a>> = vec![Box::new(Baseline::new(client)), last];
    Pipeline::new("baseline&last", stages).unwrap()
}

#[tokio::test]
async fn a_pipeline_streams_its_last_stage() {
    let script = || {
        ScriptedClient::from_fn(|i, _| match i {
            0 => Turn::chunks(["draft ", "answer"]),
            _ => Turn::chunks(COT_REPLY),
        })
    };
    let cot = |client| -> Box<dyn Strategy + '_> {
        Box::new(CotReflection::new(client, CotReflectionConfig::default()).unwrap())
    };
    let (ran, streaming) = (script(), script());
    let outcome = pipeline(&ran, cot(&ran)).run(request("q")).await.unwrap();
    let piped = pipeline(&streaming, cot(&streaming));
    let (deltas, finish) = streamed(piped.stream_chat(request("q"))).await;
    assert_eq!(deltas, ["The answer", " is 4", "."]);
    assert_eq!(deltas.concat(), outcome.answer);
    assert_same_usage(&finish, &outcome);
    assert_eq!(finish.usage.model_calls, 2);
    // The last stage was asked the first stage's answer, streamed or not.
    assert_eq!(ran.requests(), streaming.requests());
    assert_eq!(
        streaming.requests()[1].last_user_message(),
        Some("draft answer")
    );

    // A last stage that chooses sends its answer at the end.
    let script = || ScriptedClient::from_fn(|i, _| Turn::chunks(["x", &i.to_string()]));
    let bon = |client| -> Box<dyn Strategy + '_> {
        let config = BestOfNConfig {
            n: 2,
            ..BestOfNConfig::default()
        };
        Box::new(BestOfN::new(client, config).unwrap())
    };
    let (ran, streaming) = (script(), script());
    let outcome = pipeline(&ran, bon(&ran)).run(request("q")).await.unwrap();
    let piped = pipeline(&streaming, bon(&streaming));
    let (deltas, finish) = streamed(piped.stream_chat(request("q"))).await;
    assert_eq!(deltas, std::slice::from_ref(&outcome.answer));
    assert_same_usage(&finish, &outcome);
}

/// What became of a gated call's stream.
#[derive(Debug, Default)]
struct CallState {
    finished: AtomicBool,
    dropped: AtomicBool,
}

/// Records that the gated call's stream was dropped before it finished.
struct DropGuard(Arc<CallState>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.0.finished.load(Ordering::SeqCst) {
            self.0.dropped.store(true, Ordering::SeqCst);
        }
    }
}

/// A scripted client whose first call that `pick` chooses sends its first event, says so on
/// `reached`, and waits for `gate` before sending the rest.
struct Gated {
    inner: ScriptedClient,
    pick: fn(&ChatRequest) -> bool,
    gate: Mutex<Option<oneshot::Receiver<()>>>,
    reached: Mutex<Option<oneshot::Sender<()>>>,
    state: Arc<CallState>,
}

/// The test's side of a [`Gated`] client.
struct Gate {
    open: oneshot::Sender<()>,
    reached: oneshot::Receiver<()>,
    state: Arc<CallState>,
}

fn gated(inner: ScriptedClient, pick: fn(&ChatRequest) -> bool) -> (Gated, Gate) {
    let (open, gate) = oneshot::channel();
    let (reached_tx, reached) = oneshot::channel();
    let state = Arc::new(CallState::default());
    let client = Gated {
        inner,
        pick,
        gate: Mutex::new(Some(gate)),
        reached: Mutex::new(Some(reached_tx)),
        state: Arc::clone(&state),
    };
    (
        client,
        Gate {
            open,
            reached,
            state,
        },
    )
}

impl ModelClient for Gated {
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        let gate = match (self.pick)(&request) {
            true => self.gate.lock().unwrap().take(),
            false => None,
        };
        let Some(gate) = gate else {
            return self.inner.stream_chat(request);
        };
        let reached = self.reached.lock().unwrap().take();
        let state = Arc::clone(&self.state);
        let mut inner = self.inner.stream_chat(request);
        async_stream::stream! {
            let _guard = DropGuard(Arc::clone(&state));
            if let Some(first) = inner.next().await {
                yield first;
            }
            if let Some(reached) = reached {
                let _ = reached.send(());
            }
            let _ = gate.await;
            while let Some(event) = inner.next().await {
                yield event;
            }
            state.finished.store(true, Ordering::SeqCst);
        }
        .boxed()
    }
}

/// The first event of `stream`, which must come while the gated call waits at its gate (no
/// timer: if the strategy waited for the call to finish, the gate would be reached first).
async fn first_while_gated(stream: &mut EventStream<'_>, gate: &mut Gate) -> String {
    let first = tokio::select! {
        biased;
        event = stream.next() => Some(event),
        _ = &mut gate.reached => None,
    };
    let Some(Some(Ok(StreamEvent::Delta(text)))) = first else {
        panic!("no delta before the final call finished: {first:?}");
    };
    assert!(!gate.state.finished.load(Ordering::SeqCst));
    text
}

/// Streams `strategy`, whose gated call is its final one: the first delta comes while that
/// call waits; once the gate opens, the rest follows and joins to `answer`.
async fn streams_before_the_final_call_ends(
    strategy: &impl ModelClient,
    mut gate: Gate,
    first: &str,
    answer: &str,
) {
    let mut stream = strategy.stream_chat(request("q"));
    assert_eq!(first_while_gated(&mut stream, &mut gate).await, first);
    gate.open.send(()).unwrap();
    let (rest, finish) = streamed(stream).await;
    assert_eq!(format!("{first}{}", rest.concat()), answer);
    assert!(gate.state.finished.load(Ordering::SeqCst));
    assert!(finish.usage.model_calls >= 1);
}

#[tokio::test]
async fn the_first_delta_arrives_before_the_final_call_has_finished() {
    let (client, gate) = gated(moa_script(), |r| last_user_has(r, "Original question"));
    streams_before_the_final_call_ends(&moa(client), gate, "Both ", "Both say 4").await;

    // CoT reflection's gated event is the first that holds text of the <output> section.
    let reply = Turn::chunks(["<thinking>t</thinking><output>The", " answer</output>"]);
    let (client, gate) = gated(ScriptedClient::new([reply]), |_| true);
    let cot = CotReflection::new(client, CotReflectionConfig::default()).unwrap();
    streams_before_the_final_call_ends(&cot, gate, "The", "The answer").await;

    let synthesis = Turn::chunks(RTO_SYNTHESIS);
    let (client, gate) = gated(rto_script(synthesis), |r| {
        last_user_has(r, "versions differ")
    });
    let rto = RoundTrip::new(client, RoundTripConfig::default()).unwrap();
    let answer = RTO_SYNTHESIS.concat();
    streams_before_the_final_call_ends(&rto, gate, RTO_SYNTHESIS[0], &answer).await;

    let (client, gate) = gated(leap_script(), |r| system_has(r, "Keep in mind"));
    streams_before_the_final_call_ends(&leap(client), gate, "5 * 6", "5 * 6 = 30").await;

    let script = ScriptedClient::from_fn(|i, _| match i {
        0 => Turn::text("draft"),
        _ => Turn::chunks(["4", " it is"]),
    });
    let (client, gate) = gated(script, |r| last_user_has(r, "Read the question again"));
    let stages: Vec<Box<dyn Strategy + '_>> = vec![
        Box::new(Baseline::new(&client)),
        Box::new(ReRead::new(&client, ReReadConfig::default()).unwrap()),
    ];
    let piped = Pipeline::new("baseline&reread", stages).unwrap();
    streams_before_the_final_call_ends(&piped, gate, "4", "4 it is").await;
}

#[tokio::test]
async fn dropping_the_stream_drops_the_final_call() {
    let (client, mut gate) = gated(moa_script(), |r| last_user_has(r, "Original question"));
    let strategy = moa(client);
    let mut stream = strategy.stream_chat(request("q"));
    assert_eq!(first_while_gated(&mut stream, &mut gate).await, "Both ");
    assert!(!gate.state.dropped.load(Ordering::SeqCst));
    drop(stream);
    assert!(gate.state.dropped.load(Ordering::SeqCst));
    assert!(!gate.state.finished.load(Ordering::SeqCst));
}

#[tokio::test]
async fn dropping_the_stream_before_any_text_drops_the_calls_in_flight() {
    // A proposal waits at the gate: nothing can be sent yet.
    let (client, mut gate) = gated(moa_script(), |r| !last_user_has(r, "Original question"));
    let strategy = MixtureOfAgents::new(client, MixtureOfAgentsConfig::default()).unwrap();
    let mut stream = strategy.stream_chat(request("q"));
    let first = tokio::select! {
        biased;
        event = stream.next() => Some(event),
        _ = &mut gate.reached => None,
    };
    assert!(first.is_none(), "{first:?}");
    assert!(!gate.state.dropped.load(Ordering::SeqCst));
    drop(stream);
    assert!(gate.state.dropped.load(Ordering::SeqCst));
    assert_eq!(
        strategy.inner().inner.requests().len(),
        3,
        "the proposals only"
    );
}

#[tokio::test]
async fn a_final_call_that_fails_after_streaming_ends_the_stream_with_its_error() {
    let client = ScriptedClient::from_fn(|_, request| {
        if last_user_has(request, "Original question") {
            Turn::chunks(["Both "]).then_fail("connection reset")
        } else {
            Turn::text("proposal")
        }
    });
    let strategy = moa(client);
    let mut stream = strategy.stream_chat(request("q"));
    assert!(matches!(stream.next().await, Some(Ok(StreamEvent::Delta(t))) if t == "Both "));
    match stream.next().await {
        Some(Err(Error::StrategyCall { call, source, .. })) => {
            assert_eq!(call, "aggregate");
            assert!(source.to_string().contains("connection reset"), "{source}");
        }
        other => panic!("{other:?}"),
    }
    assert!(stream.next().await.is_none());
}

/// A broken algorithm: its final call's reply is not its answer.
#[derive(Debug)]
struct Misreported;

impl Algorithm for Misreported {
    const NAME: &'static str = "misreported";

    fn validate(&self) -> Result<()> {
        Ok(())
    }

    async fn run(&self, calls: &Calls<'_>, request: ChatRequest) -> Result<Outcome> {
        let options = request.options.clone();
        let completion = calls.final_call("answer", request).await?;
        let candidates = vec![Candidate::generated(options, completion)];
        let mut outcome = calls.finish(candidates, 0, Vec::new(), &[])?;
        outcome.answer = "something else".into();
        Ok(outcome)
    }
}

impl Configured for Misreported {}

#[tokio::test]
async fn streamed_text_that_is_not_the_answer_is_a_protocol_error() {
    let client = ScriptedClient::new([Turn::text("the reply")]);
    let strategy = StrategyClient::<Misreported, _>::new(client, Misreported).unwrap();
    let events: Vec<_> = strategy.stream_chat(request("q")).collect().await;
    assert!(matches!(&events[0], Ok(StreamEvent::Delta(t)) if t == "the reply"));
    assert!(
        matches!(&events[1], Err(Error::Protocol { detail }) if detail.contains("misreported")),
        "{events:?}"
    );
    assert_eq!(events.len(), 2);
}
