//! Repair: generate, verify, and while verification fails, show the model why and ask it to fix
//! its code.
//!
//! Sources: Self-Debugging (Chen et al., "Teaching Large Language Models to Self-Debug", 2023,
//! arXiv:2304.05128): the model fixes its code from execution feedback; Reflexion (Shinn et al.,
//! "Reflexion: Language Agents with Verbal Reinforcement Learning", 2023, arXiv:2303.11366):
//! retry with feedback from the environment in the context; AlphaCodium (Ridnik et al., "Code
//! Generation with AlphaCodium: From Prompt Engineering to Flow Engineering", 2024,
//! arXiv:2401.08500): iterate on the public examples' test results; Self-Refine (Madaan et al.,
//! 2023, arXiv:2303.17651): feedback then refinement in a loop. Here the feedback comes from a
//! [`Verifier`] (for code: the compiler and the prompt's visible examples), not from the model.
//!
//! Algorithm: `n` chains start with one candidate each, sampled through one
//! [`ModelClient::complete_batch`](crate::ModelClient::complete_batch) call, and every
//! candidate is checked by the verifier ([`Verifier::check`]). While no chain passes (a score of
//! at least `pass_score`) and rounds remain, every open chain sends one repair call: the
//! original conversation, the chain's last code as the assistant's reply (fenced, without the
//! prose around it: [`code_turn`]), and the fixed repair
//! prompt of [`repair_message`] with the verifier's [`Feedback`](super::feedback::Feedback)
//! rendered by [`render_feedback`], after [`CUT_OFF_NOTE`] when that code's generation stopped at
//! the token limit; the reply is checked in turn. The first round in which a
//! chain passes ends the run, and the passing candidate of the lowest chain wins; when none
//! passes, the best score over every attempt wins (ties to the shorter, then the earlier).
//!
//! Cost: at most `n × (1 + rounds)` model calls (fewer when a chain passes early or a call
//! fails under [`FailurePolicy::Drop`]), plus one verifier check per candidate (no model call).
//! The trace holds every attempt as a candidate, scored by the verifier, and one step per check
//! (`chain c attempt a`) whose text is the feedback as the model would see it.
//!
//! ```
//! use mars::strategies::feedback::{Feedback, Issue, Verification};
//! use mars::strategies::{Repair, RepairConfig, Verifier};
//! use mars::{ScriptedClient, Turn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let replies = ["fn add(a: i32, b: i32) -> i32 { a - b }", "fn add(a: i32, b: i32) -> i32 { a + b }"];
//! let client = ScriptedClient::from_fn(move |i, _request| Turn::text(replies[i]));
//! // Passes code that adds; otherwise reports the failed example.
//! let verifier = Verifier::with_feedback(|_request, code: &str| {
//!     let passed = code.contains("a + b");
//!     let issue = (!passed).then(|| Issue::FailedExample {
//!         example: Some("add(2, 3)".into()),
//!         expected: Some("5".into()),
//!         actual: Some("-1".into()),
//!         message: "assertion failed".into(),
//!     });
//!     let score = if passed { 1.0 } else { 0.5 };
//!     async move { Verification { score, feedback: Some(Feedback { compiled: true, issue }) } }
//! });
//! let config = RepairConfig { verifier: Some(verifier), ..RepairConfig::default() };
//! let outcome = Repair::new(&client, config)?.run("Write add".into()).await?;
//! assert_eq!(outcome.answer, replies[1]);
//! assert_eq!(outcome.usage.model_calls, 2);
//! let repair_prompt = client.requests()[1].last_user_message().unwrap_or_default().to_owned();
//! assert!(repair_prompt.contains("`add(2, 3)` should be `5`, but the code returned `-1`"));
//! # Ok::<_, mars::Error>(()) }).unwrap();
//! ```

use std::num::NonZeroUsize;

use crate::code::extract_code;

use super::calls::{CallPolicy, Calls};
use super::feedback::{Verification, feedback_label, render_feedback};
use super::sampling::{
    DEFAULT_BASE_SEED, check_count, check_temperature, derive_seeds, seeded_samples,
};
use super::selection::Verifier;
use super::trace::{Candidate, FailurePolicy, Outcome, Score, Step};
use super::wrapper::{Algorithm, Configured, StrategyClient};
use crate::client::{BatchRequest, ChatRequest, FinishReason, Message, SamplingOptions};
use crate::error::{Error, Result};

/// The fixed part of the repair prompt, after the feedback (see [`repair_message`]).
pub const DEFAULT_REPAIR_INSTRUCTION: &str = "Fix the code so that it does what the task asks \
     and passes the examples. Reply with the complete corrected code in one code block.";

/// Put before the feedback when the attempt's generation stopped at the token limit: the
/// compiler's complaint about the cut-off code (an unclosed delimiter, say) is then a symptom, and
/// the fix the model needs is a shorter answer.
pub const CUT_OFF_NOTE: &str = "Your reply was cut off at the token limit before the code was \
     complete. Write a shorter solution that fits.";

/// Most repair rounds a configuration may ask for.
pub const MAX_ROUNDS: usize = 16;

/// Configuration of [`Repair`].
#[derive(Debug, Clone)]
pub struct RepairConfig {
    /// Independent chains (default 1); must be at least 1.
    pub n: usize,
    /// Repair rounds per chain after the first attempt (default 2); 0 makes this best-of-n
    /// with the verifier.
    pub rounds: usize,
    /// The verifier that checks each attempt and says why it failed; required.
    pub verifier: Option<Verifier>,
    /// A check passes at this score or above (default 1.0, the score of the benchmark's
    /// verifier when every visible example passes).
    pub pass_score: f64,
    /// The request after the feedback in each repair prompt (default
    /// [`DEFAULT_REPAIR_INSTRUCTION`]).
    pub instruction: String,
    /// The temperature of every call when the request sets none (default 0.8); the request's
    /// temperature wins.
    pub temperature: Option<f32>,
    /// The base of the chains' seeds when the request carries no seed (default 0).
    pub base_seed: u64,
    /// At most this many calls, then verifier checks, in flight (default 4).
    pub concurrency: NonZeroUsize,
    /// What a failed call does (default [`FailurePolicy::Fail`]); under
    /// [`FailurePolicy::Drop`] a failed first call drops its chain, and a failed repair call
    /// ends its chain with the attempts it had.
    pub on_failure: FailurePolicy,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            n: 1,
            rounds: 2,
            verifier: None,
            pass_score: 1.0,
            instruction: DEFAULT_REPAIR_INSTRUCTION.to_owned(),
            temperature: Some(0.8),
            base_seed: DEFAULT_BASE_SEED,
            concurrency: BatchRequest::DEFAULT_CONCURRENCY,
            on_failure: FailurePolicy::Fail,
        }
    }
}

/// The assistant turn of a repair call: the code of the chain's last reply (its first fenced
/// block, else the whole reply, trimmed: what a code verifier extracts from a reply with one
/// block) in a `rust` fence. The prose around the code is left out, so the feedback's "line N
/// of the code" counts the lines the model sees in the fence.
///
/// ```
/// use mars::strategies::repair::code_turn;
///
/// let reply = "Here it is:\n\n```rust\nfn f() -> i32 {\n    x\n}\n```\nHope it helps.";
/// assert_eq!(code_turn(reply), "```rust\nfn f() -> i32 {\n    x\n}\n```");
/// assert_eq!(code_turn("fn f() {}"), "```rust\nfn f() {}\n```");
/// ```
pub fn code_turn(reply: &str) -> String {
    let code = extract_code(reply, "").map(|e| e.code).unwrap_or_default();
    format!("```rust\n{code}\n```")
}

/// The user message of a repair call: the verifier's feedback, rendered, then `instruction`.
///
/// ```
/// use mars::strategies::repair::repair_message;
///
/// assert_eq!(
///     repair_message("The code does not compile.", "Fix it."),
///     "Your code was checked against the examples in the task, and it failed.\n\n\
///      The code does not compile.\n\nFix it."
/// );
/// ```
pub fn repair_message(feedback: &str, instruction: &str) -> String {
    format!(
        "Your code was checked against the examples in the task, and it failed.\n\n{feedback}\n\n\
         {instruction}"
    )
}

/// The feedback text of a verification: the rendered [`Feedback`](super::feedback::Feedback),
/// or, from a verifier that only scores, the score against the passing score.
pub fn feedback_text(verification: &Verification, pass_score: f64) -> String {
    match &verification.feedback {
        Some(feedback) => render_feedback(feedback),
        None => format!(
            "The checker scored it {}; a passing answer scores at least {pass_score}.",
            verification.score
        ),
    }
}

/// Generate, verify, repair from the verifier's feedback (see the [module docs](self)); `new`
/// fails with [`Error::InvalidConfig`] when there is no verifier, `n` is 0, `rounds` is above
/// [`MAX_ROUNDS`], the instruction is blank, or the pass score or temperature is not finite.
pub type Repair<C> = StrategyClient<RepairConfig, C>;

/// One chain: the candidate index of each attempt, and whether it may still be repaired.
#[derive(Debug)]
struct Chain {
    attempts: Vec<usize>,
    open: bool,
}

impl Algorithm for RepairConfig {
    const NAME: &'static str = "repair";

    fn validate(&self) -> Result<()> {
        check_count("n", self.n)?;
        check_temperature("temperature", self.temperature)?;
        let invalid = |field, reason: &str| {
            Err(Error::InvalidConfig {
                field,
                reason: reason.into(),
            })
        };
        if self.verifier.is_none() {
            return invalid(
                "verifier",
                "repair needs a verifier to check each attempt and explain its failure",
            );
        }
        if self.rounds > MAX_ROUNDS {
            return invalid("rounds", &format!("at most {MAX_ROUNDS}"));
        }
        if !self.pass_score.is_finite() {
            return invalid("pass_score", "must be a finite number");
        }
        if self.instruction.trim().is_empty() {
            return invalid("instruction", "the repair instruction must not be blank");
        }
        Ok(())
    }

    fn policy(&self) -> CallPolicy {
        CallPolicy::new(self.on_failure, self.concurrency)
    }

    async fn run(&self, calls: &Calls<'_>, request: ChatRequest) -> Result<Outcome> {
        let Some(verifier) = &self.verifier else {
            return Err(Error::InvalidConfig {
                field: "verifier",
                reason: "repair needs a verifier".into(),
            });
        };
        let samples = seeded_samples(&request.options, self.temperature, self.base_seed, self.n);
        let mut candidates = calls.candidates(request.clone(), samples.clone()).await?;
        let mut chains: Vec<Chain> = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| Chain {
                attempts: vec![i],
                open: c.dropped.is_none(),
            })
            .collect();
        let mut steps = Vec::new();
        // The feedback each chain's last attempt got, as the model will see it.
        let mut last: Vec<Option<String>> = vec![None; chains.len()];
        let fresh: Vec<usize> = (0..chains.len()).filter(|&c| chains[c].open).collect();
        let mut passed = self
            .check(
                calls,
                &request,
                verifier,
                &fresh,
                &chains,
                &mut candidates,
                &mut last,
                &mut steps,
            )
            .await;
        for round in 1..=self.rounds {
            if passed.is_some() {
                break;
            }
            let open: Vec<usize> = (0..chains.len()).filter(|&c| chains[c].open).collect();
            if open.is_empty() {
                break;
            }
            let mut requests = Vec::with_capacity(open.len());
            let mut options = Vec::with_capacity(open.len());
            for &c in &open {
                let attempt = chains[c].attempts.last().copied().unwrap_or_default();
                let previous = candidates.get(attempt).map_or("", |a| a.text.as_str());
                let feedback = last[c].clone().unwrap_or_default();
                let seed_base = samples
                    .get(c)
                    .and_then(|s| s.seed)
                    .unwrap_or(self.base_seed);
                let seed = derive_seeds(seed_base, round).last().copied();
                let sample = SamplingOptions {
                    seed,
                    ..samples.get(c).cloned().unwrap_or_default()
                };
                let mut call = request.clone().with_options(sample.clone());
                call.messages.push(Message::assistant(code_turn(previous)));
                call.messages
                    .push(Message::user(repair_message(&feedback, &self.instruction)));
                requests.push(call);
                options.push(sample);
            }
            let results = calls.answers(requests).await;
            let names: Vec<String> = open
                .iter()
                .map(|c| format!("repair round {round} of chain {c}"))
                .collect();
            let repaired = calls.candidates_from(options, results, |i| {
                names.get(i).cloned().unwrap_or_default()
            })?;
            let mut fresh = Vec::new();
            for (&c, candidate) in open.iter().zip(repaired) {
                let index = candidates.len();
                if candidate.dropped.is_some() {
                    chains[c].open = false;
                } else {
                    fresh.push(c);
                }
                chains[c].attempts.push(index);
                candidates.push(candidate);
            }
            passed = self
                .check(
                    calls,
                    &request,
                    verifier,
                    &fresh,
                    &chains,
                    &mut candidates,
                    &mut last,
                    &mut steps,
                )
                .await;
        }
        let winner = match passed {
            Some(winner) => winner,
            None => calls.choose_best(&candidates)?,
        };
        calls.finish(candidates, winner, steps, &[])
    }
}

impl RepairConfig {
    /// Checks the last attempt of each chain of `fresh`, records each check as a step and as
    /// its candidate's score, and returns the candidate index of the lowest passing chain.
    #[allow(clippy::too_many_arguments)]
    async fn check(
        &self,
        calls: &Calls<'_>,
        request: &ChatRequest,
        verifier: &Verifier,
        fresh: &[usize],
        chains: &[Chain],
        candidates: &mut [Candidate],
        last: &mut [Option<String>],
        steps: &mut Vec<Step>,
    ) -> Option<usize> {
        let indices: Vec<(usize, usize)> = fresh
            .iter()
            .filter_map(|&c| Some((c, *chains.get(c)?.attempts.last()?)))
            .collect();
        let texts = indices
            .iter()
            .map(|&(_, i)| {
                candidates
                    .get(i)
                    .map(|c| c.text.clone())
                    .unwrap_or_default()
            })
            .collect();
        let checks = calls.check_all(request, verifier, texts).await;
        let mut passed = None;
        for (&(c, index), verification) in indices.iter().zip(checks) {
            let score = verification.score;
            let ok = score >= self.pass_score;
            let attempt = chains.get(c).map_or(0, |chain| chain.attempts.len() - 1);
            let label = match &verification.feedback {
                Some(feedback) => feedback_label(feedback),
                None if ok => "passed",
                None => "failed",
            };
            let cut_off = candidates
                .get(index)
                .is_some_and(|c| c.finish_reason == Some(FinishReason::Length));
            let text = if ok {
                "passed".to_owned()
            } else {
                let feedback = feedback_text(&verification, self.pass_score);
                if cut_off {
                    format!("{CUT_OFF_NOTE}\n\n{feedback}")
                } else {
                    feedback
                }
            };
            if let Some(slot) = last.get_mut(c) {
                *slot = Some(text.clone());
            }
            steps.push(Step::record(
                format!("chain {c} attempt {attempt}"),
                text,
                format!("candidate {index}: score {score}, {label}"),
            ));
            if let Some(candidate) = candidates.get_mut(index) {
                candidate.score = Score::Verifier {
                    score: (!score.is_nan()).then_some(score),
                };
            }
            if ok && passed.is_none() {
                passed = Some(index);
            }
        }
        passed
    }
}

impl Configured for RepairConfig {}

#[cfg(test)]
#[path = "repair_tests.rs"]
mod tests;
