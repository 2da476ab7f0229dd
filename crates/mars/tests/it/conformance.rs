//! One conformance suite, run against every HTTP backend over a loopback server that writes the
//! backend's wire format in chosen chunks; the scripted fake runs the cases that apply to it.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use mars::{
    ChatRequest, Error, FinishReason, HttpOptions, ModelClient, ModelClientExt, SamplingOptions,
    StreamEvent, TimeoutPhase, collect_completion,
};
use serde_json::Value;

use crate::server::{Part, Reply, TestServer, chunked};

/// What a backend's wire format looks like, for the cases below.
pub trait Wire {
    const PATH: &'static str;
    const CONTENT_TYPE: &'static str;
    fn client(base_url: &str, http: HttpOptions) -> Box<dyn ModelClient>;
    fn delta(text: &str) -> Vec<u8>;
    /// The records that end a successful answer.
    fn terminal(prompt_tokens: u64, completion_tokens: u64) -> Vec<u8>;
    fn error_record(message: &str) -> Vec<u8>;
    fn malformed_record() -> Vec<u8>;
    /// Asserts that `body` carries `options` under the backend's wire names.
    fn check_options(body: &Value, options: &SamplingOptions);
}

/// Bounds every case in time, so a hang is a failure, not a stuck run.
pub async fn bounded<F: Future<Output = ()>>(case: F) {
    tokio::time::timeout(Duration::from_secs(20), case)
        .await
        .expect("conformance case hung");
}

fn fast_http() -> HttpOptions {
    HttpOptions {
        connect_timeout: Duration::from_secs(2),
        first_byte_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        max_retries: 2,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
    }
}

fn answer<W: Wire>(deltas: &[&str], prompt: u64, completion: u64) -> Vec<u8> {
    let mut body: Vec<u8> = deltas.iter().flat_map(|d| W::delta(d)).collect();
    body.extend(W::terminal(prompt, completion));
    body
}

async fn start<W: Wire>(replies: Vec<Reply>) -> (TestServer, Box<dyn ModelClient>) {
    start_with::<W>(replies, fast_http()).await
}

async fn start_with<W: Wire>(
    replies: Vec<Reply>,
    http: HttpOptions,
) -> (TestServer, Box<dyn ModelClient>) {
    let server = TestServer::start(replies).await;
    let client = W::client(&server.url(), http);
    (server, client)
}

pub async fn deltas_and_usage<W: Wire>() {
    let body = answer::<W>(&["Hel", "lo ", "wörld"], 7, 3);
    let (server, client) = start::<W>(vec![Reply::ok(
        W::CONTENT_TYPE,
        chunked(&body, 40, Duration::ZERO),
    )])
    .await;
    let mut stream = client.stream("Say hello");
    let mut deltas = Vec::new();
    let mut finish = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Delta(d) => deltas.push(d),
            StreamEvent::Done(f) => finish = Some(f),
        }
    }
    assert_eq!(deltas.concat(), "Hello wörld");
    let finish = finish.expect("terminal event");
    assert_eq!(finish.reason, FinishReason::Stop);
    assert_eq!(finish.usage.prompt_tokens, Some(7));
    assert_eq!(finish.usage.completion_tokens, Some(3));
    assert_eq!(finish.usage.model_calls, 1);
    assert!(finish.usage.time_to_first_token.is_some());
    assert!(finish.usage.total_time >= finish.usage.time_to_first_token.unwrap());
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, W::PATH);
}

pub async fn options_are_sent<W: Wire>() {
    let body = answer::<W>(&["ok"], 1, 1);
    let (server, client) =
        start::<W>(vec![Reply::ok(W::CONTENT_TYPE, vec![Part::Bytes(body)])]).await;
    let options = SamplingOptions {
        temperature: Some(0.7),
        top_p: Some(0.9),
        top_k: Some(20),
        seed: Some(42),
        max_tokens: Some(33),
        stop: vec!["\n\n".into(), "```".into()],
    };
    let request = ChatRequest::new("question")
        .with_system("be terse")
        .with_options(options.clone());
    client.complete(request).await.unwrap();
    let body = server.requests()[0].json();
    assert_eq!(body["stream"], Value::Bool(true));
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][0]["content"], "be terse");
    assert_eq!(body["messages"][1]["role"], "user");
    assert_eq!(body["messages"][1]["content"], "question");
    W::check_options(&body, &options);
}

pub async fn http_error_keeps_status_and_body<W: Wire>() {
    let (_server, client) = start::<W>(vec![Reply::status(500, "{\"error\":\"boom\"}")]).await;
    let err = client.complete("x").await.unwrap_err();
    assert!(
        matches!(&err, Error::Http { status: 500, body, .. } if body.contains("boom")),
        "{err:?}"
    );
    let (_server, client) = start::<W>(vec![Reply::status(404, "404 page not found")]).await;
    let err = client.complete("x").await.unwrap_err();
    assert!(matches!(&err, Error::Http { status: 404, .. }), "{err:?}");
}

pub async fn connection_refused_is_a_connect_error<W: Wire>() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = W::client(&format!("http://{addr}"), fast_http());
    let err = client.complete("x").await.unwrap_err();
    assert!(matches!(err, Error::Connect { attempts: 3, .. }), "{err:?}");
}

pub async fn mid_stream_error_record<W: Wire>() {
    let mut body = W::delta("partial");
    body.extend(W::error_record("model crashed"));
    let (_server, client) =
        start::<W>(vec![Reply::ok(W::CONTENT_TYPE, vec![Part::Bytes(body)])]).await;
    let events: Vec<_> = client.stream("x").collect().await;
    assert!(
        matches!(&events[0], Ok(StreamEvent::Delta(d)) if d == "partial"),
        "{events:?}"
    );
    assert!(
        matches!(&events[1], Err(Error::Backend { message }) if message.contains("model crashed")),
        "{events:?}"
    );
    assert_eq!(events.len(), 2, "nothing after the error");
}

pub async fn truncated_stream_is_an_error<W: Wire>() {
    let body: Vec<u8> = ["a", "b"].iter().flat_map(|d| W::delta(d)).collect();
    let (_server, client) =
        start::<W>(vec![Reply::ok(W::CONTENT_TYPE, vec![Part::Bytes(body)])]).await;
    let err = client.complete("x").await.unwrap_err();
    assert!(matches!(err, Error::Truncated { text_bytes: 2 }), "{err:?}");
}

pub async fn malformed_record_names_the_line<W: Wire>() {
    let mut body = W::delta("a");
    body.extend(W::malformed_record());
    body.extend(W::terminal(1, 1));
    let (_server, client) =
        start::<W>(vec![Reply::ok(W::CONTENT_TYPE, vec![Part::Bytes(body)])]).await;
    let err = client.complete("x").await.unwrap_err();
    assert!(
        matches!(&err, Error::Decode { line, .. } if line.contains("not json")),
        "{err:?}"
    );
}

pub async fn utf8_split_across_chunks<W: Wire>() {
    let body = answer::<W>(&["é€", "😀 ok"], 1, 2);
    let split = body
        .windows(2)
        .position(|w| w == "€".as_bytes()[..2].as_ref())
        .unwrap()
        + 1;
    let parts = vec![
        Part::Bytes(body[..split].to_vec()),
        Part::Delay(Duration::from_millis(30)),
        Part::Bytes(body[split..].to_vec()),
    ];
    let (_server, client) = start::<W>(vec![Reply::ok(W::CONTENT_TYPE, parts)]).await;
    assert_eq!(client.complete("x").await.unwrap().text, "é€😀 ok");
}

pub async fn byte_at_a_time<W: Wire>() {
    let body = answer::<W>(&["ü", "ber", " 🚀"], 4, 3);
    let parts = chunked(&body, 1, Duration::from_millis(1));
    let (_server, client) = start::<W>(vec![Reply::ok(W::CONTENT_TYPE, parts)]).await;
    let completion = client.complete("x").await.unwrap();
    assert_eq!(completion.text, "über 🚀");
    assert_eq!(completion.usage.completion_tokens, Some(3));
}

pub async fn stalled_stream_hits_idle_timeout<W: Wire>() {
    let mut reply = Reply::ok(W::CONTENT_TYPE, vec![Part::Bytes(W::delta("a"))]);
    reply.hold_open = true;
    let http = HttpOptions {
        idle_timeout: Duration::from_millis(200),
        ..fast_http()
    };
    let (_server, client) = start_with::<W>(vec![reply], http).await;
    let err = client.complete("x").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                phase: TimeoutPhase::Idle,
                ..
            }
        ),
        "{err:?}"
    );
}

pub async fn slow_first_byte<W: Wire>() {
    let body = answer::<W>(&["late"], 1, 1);
    let mut slow = Reply::ok(W::CONTENT_TYPE, vec![Part::Bytes(body.clone())]);
    slow.head_delay = Duration::from_millis(1500);
    let http = HttpOptions {
        first_byte_timeout: Duration::from_millis(200),
        ..fast_http()
    };
    let (server, client) = start_with::<W>(vec![slow.clone()], http).await;
    let err = client.complete("x").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                phase: TimeoutPhase::FirstByte,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        server.requests().len(),
        1,
        "a first-byte timeout is not retried"
    );
    slow.head_delay = Duration::from_millis(300);
    let (_server, client) = start::<W>(vec![slow]).await;
    assert_eq!(client.complete("x").await.unwrap().text, "late");
}

pub async fn retries_before_first_byte<W: Wire>() {
    let body = answer::<W>(&["third time"], 1, 2);
    let replies = vec![
        Reply::status(503, "loading"),
        Reply::status(429, "slow down"),
        Reply::ok(W::CONTENT_TYPE, vec![Part::Bytes(body)]),
    ];
    let (server, client) = start::<W>(replies).await;
    assert_eq!(client.complete("x").await.unwrap().text, "third time");
    assert_eq!(server.requests().len(), 3);
    let replies = vec![
        Reply::status(503, "a"),
        Reply::status(503, "b"),
        Reply::status(503, "c"),
    ];
    let (server, client) = start::<W>(replies).await;
    let err = client.complete("x").await.unwrap_err();
    assert!(matches!(err, Error::Http { status: 503, .. }), "{err:?}");
    assert_eq!(
        server.requests().len(),
        3,
        "max_retries = 2 means three attempts"
    );
}

pub async fn retry_after_is_honoured_and_capped<W: Wire>() {
    // Backoff alone would wait an hour: only a honoured `Retry-After: 0` lets this finish
    // within `bounded`'s limit.
    let patient = HttpOptions {
        initial_backoff: Duration::from_secs(3600),
        max_backoff: Duration::from_secs(3600),
        ..fast_http()
    };
    let body = answer::<W>(&["after the wait"], 1, 1);
    let replies = vec![
        Reply::status(503, "loading").with_header("Retry-After", "0"),
        Reply::ok(W::CONTENT_TYPE, vec![Part::Bytes(body.clone())]),
    ];
    let (server, client) = start_with::<W>(replies, patient).await;
    assert_eq!(client.complete("x").await.unwrap().text, "after the wait");
    assert_eq!(server.requests().len(), 2);
    // An hour's `Retry-After` is cut to `max_backoff` (50 ms here).
    let replies = vec![
        Reply::status(429, "slow down").with_header("Retry-After", "3600"),
        Reply::ok(W::CONTENT_TYPE, vec![Part::Bytes(body)]),
    ];
    let (server, client) = start::<W>(replies).await;
    assert_eq!(client.complete("x").await.unwrap().text, "after the wait");
    assert_eq!(server.requests().len(), 2);
}

pub async fn a_stream_longer_than_the_idle_timeout_survives<W: Wire>() {
    // 20 chunks 200 ms apart: 4 s in all, twice the idle timeout; each gap is a tenth of it.
    let deltas: Vec<String> = (0..19).map(|i| format!("{i} ")).collect();
    let refs: Vec<&str> = deltas.iter().map(String::as_str).collect();
    let mut parts = Vec::new();
    for delta in &refs {
        parts.push(Part::Bytes(W::delta(delta)));
        parts.push(Part::Delay(Duration::from_millis(200)));
    }
    parts.push(Part::Bytes(W::terminal(1, 19)));
    let http = HttpOptions {
        idle_timeout: Duration::from_secs(2),
        ..fast_http()
    };
    let (_server, client) = start_with::<W>(vec![Reply::ok(W::CONTENT_TYPE, parts)], http).await;
    assert_eq!(client.complete("x").await.unwrap().text, refs.concat());
}

pub async fn no_retry_after_text<W: Wire>() {
    let replies = vec![
        Reply::ok(
            W::CONTENT_TYPE,
            vec![Part::Bytes(W::delta("half an answer"))],
        ),
        Reply::ok(
            W::CONTENT_TYPE,
            vec![Part::Bytes(answer::<W>(&["second"], 1, 1))],
        ),
    ];
    let (server, client) = start::<W>(replies).await;
    let err = client.complete("x").await.unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err:?}");
    assert_eq!(server.requests().len(), 1);
}

pub async fn dropping_the_stream_closes_the_connection<W: Wire>() {
    let mut reply = Reply::ok(W::CONTENT_TYPE, vec![Part::Bytes(W::delta("first"))]);
    reply.hold_open = true;
    let (server, client) = start::<W>(vec![reply]).await;
    let mut stream = client.stream("x");
    assert!(matches!(
        stream.next().await,
        Some(Ok(StreamEvent::Delta(_)))
    ));
    drop(stream);
    assert!(server.client_closed_within(Duration::from_secs(5)).await);
}

/// Instantiates every case for one wire format.
macro_rules! conformance_suite {
    ($wire:ty) => {
        #[tokio::test]
        async fn deltas_and_usage() {
            $crate::conformance::bounded($crate::conformance::deltas_and_usage::<$wire>()).await
        }
        #[tokio::test]
        async fn options_are_sent() {
            $crate::conformance::bounded($crate::conformance::options_are_sent::<$wire>()).await
        }
        #[tokio::test]
        async fn http_error_keeps_status_and_body() {
            $crate::conformance::bounded($crate::conformance::http_error_keeps_status_and_body::<
                $wire,
            >())
            .await
        }
        #[tokio::test]
        async fn connection_refused_is_a_connect_error() {
            $crate::conformance::bounded(
                $crate::conformance::connection_refused_is_a_connect_error::<$wire>(),
            )
            .await
        }
        #[tokio::test]
        async fn mid_stream_error_record() {
            $crate::conformance::bounded($crate::conformance::mid_stream_error_record::<$wire>())
                .await
        }
        #[tokio::test]
        async fn truncated_stream_is_an_error() {
            $crate::conformance::bounded(
                $crate::conformance::truncated_stream_is_an_error::<$wire>(),
            )
            .await
        }
        #[tokio::test]
        async fn malformed_record_names_the_line() {
            $crate::conformance::bounded($crate::conformance::malformed_record_names_the_line::<
                $wire,
            >())
            .await
        }
        #[tokio::test]
        async fn utf8_split_across_chunks() {
            $crate::conformance::bounded($crate::conformance::utf8_split_across_chunks::<$wire>())
                .await
        }
        #[tokio::test]
        async fn byte_at_a_time() {
            $crate::conformance::bounded($crate::conformance::byte_at_a_time::<$wire>()).await
        }
        #[tokio::test]
        async fn stalled_stream_hits_idle_timeout() {
            $crate::conformance::bounded($crate::conformance::stalled_stream_hits_idle_timeout::<
                $wire,
            >())
            .await
        }
        #[tokio::test]
        async fn slow_first_byte() {
            $crate::conformance::bounded($crate::conformance::slow_first_byte::<$wire>()).await
        }
        #[tokio::test]
        async fn retries_before_first_byte() {
            $crate::conformance::bounded($crate::conformance::retries_before_first_byte::<$wire>())
                .await
        }
        #[tokio::test]
        async fn retry_after_is_honoured_and_capped() {
            $crate::conformance::bounded($crate::conformance::retry_after_is_honoured_and_capped::<
                $wire,
            >())
            .await
        }
        #[tokio::test]
        async fn a_stream_longer_than_the_idle_timeout_survives() {
            $crate::conformance::bounded(
                $crate::conformance::a_stream_longer_than_the_idle_timeout_survives::<$wire>(),
            )
            .await
        }
        #[tokio::test]
        async fn no_retry_after_text() {
            $crate::conformance::bounded($crate::conformance::no_retry_after_text::<$wire>()).await
        }
        #[tokio::test]
        async fn dropping_the_stream_closes_the_connection() {
            $crate::conformance::bounded(
                $crate::conformance::dropping_the_stream_closes_the_connection::<$wire>(),
            )
            .await
        }
    };
}
pub(crate) use conformance_suite;

/// The cases that apply to a client with no wire: the scripted fake.
pub mod scripted {
    use super::*;
    use mars::{ScriptedClient, ScriptedError, Turn, Usage};

    #[tokio::test]
    async fn deltas_and_usage() {
        let client =
            ScriptedClient::new([Turn::chunks(["Hel", "lo ", "wörld"]).with_usage(Usage {
                prompt_tokens: Some(7),
                completion_tokens: Some(3),
                ..Usage::default()
            })]);
        let completion = client.complete("Say hello").await.unwrap();
        assert_eq!(completion.text, "Hello wörld");
        assert_eq!(completion.usage.prompt_tokens, Some(7));
        assert_eq!(completion.usage.completion_tokens, Some(3));
        assert_eq!(completion.usage.model_calls, 1);
        assert!(completion.usage.time_to_first_token.is_some());
    }

    #[tokio::test]
    async fn options_are_recorded() {
        let client = ScriptedClient::new([Turn::text("ok")]);
        let options = SamplingOptions {
            temperature: Some(0.7),
            seed: Some(42),
            stop: vec!["```".into()],
            ..SamplingOptions::default()
        };
        let request = ChatRequest::new("q")
            .with_system("s")
            .with_options(options.clone());
        client.complete(request.clone()).await.unwrap();
        assert_eq!(client.requests(), vec![request]);
    }

    #[tokio::test]
    async fn mid_stream_error() {
        let client = ScriptedClient::new([Turn::text("partial").then_fail("model crashed")]);
        let events: Vec<_> = client.stream("x").collect().await;
        assert!(matches!(&events[0], Ok(StreamEvent::Delta(d)) if d == "partial"));
        assert!(matches!(&events[1], Err(err) if ScriptedError::of(err)
                == Some(&ScriptedError::Failed { message: "model crashed".into() })));
        assert_eq!(events.len(), 2);
    }

    #[tokio::test]
    async fn truncated_stream_is_an_error() {
        let client = ScriptedClient::new([Turn::truncated(["a", "b"])]);
        let err = collect_completion(client.stream("x")).await.unwrap_err();
        assert!(matches!(err, Error::Truncated { text_bytes: 2 }), "{err:?}");
    }

    #[tokio::test]
    async fn exhausted_script_is_an_error() {
        let client = ScriptedClient::new([]);
        let err = client.complete("x").await.unwrap_err();
        assert!(
            ScriptedError::of(&err) == Some(&ScriptedError::Exhausted { request_index: 0 }),
            "{err:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_chunks_and_concurrent_batch() {
        let client = ScriptedClient::from_fn(|i, _| {
            Turn::chunks([format!("answer {i}")]).with_delay(Duration::from_millis(100))
        });
        let started = tokio::time::Instant::now();
        let batch = mars::BatchRequest::new(
            ChatRequest::new("q"),
            (0..4)
                .map(|seed| SamplingOptions {
                    seed: Some(seed),
                    ..SamplingOptions::default()
                })
                .collect(),
        );
        let results = client.complete_batch(batch).await;
        // Four samples of two 100 ms waits each, run concurrently: 200 ms of (paused) time.
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        let seeds: Vec<_> = client.requests().iter().map(|r| r.options.seed).collect();
        assert_eq!(seeds, [Some(0), Some(1), Some(2), Some(3)]);
        let texts: Vec<_> = results.into_iter().map(|r| r.unwrap().text).collect();
        assert_eq!(texts, ["answer 0", "answer 1", "answer 2", "answer 3"]);
    }
}
