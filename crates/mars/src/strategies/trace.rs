//! The trace of a run: [`Outcome`], its [`Candidate`]s, [`Step`]s and [`Score`]s, and what a
//! failed call does ([`FailurePolicy`], [`CallFailure`]).

use serde::{Deserialize, Serialize};

use crate::client::{Completion, FinishReason, SamplingOptions, Usage};

/// What a strategy produced: the answer and a trace of how it was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The strategy's name (`"baseline"`, `"reread"`, ..., the names of
    /// [`StrategyName::name`](super::StrategyName::name)), or a pipeline's (`"reread&cot_reflection"`).
    pub strategy: String,
    /// The chosen answer: the text of `candidates[winner]`, or the part of it the strategy
    /// extracted (CoT reflection's `<output>` section).
    pub answer: String,
    /// Why the chosen answer's generation stopped.
    pub finish_reason: FinishReason,
    /// Index of the chosen candidate in `candidates`.
    pub winner: usize,
    /// Every candidate, in the order it was requested, including dropped ones.
    pub candidates: Vec<Candidate>,
    /// The sum over every inner call (candidates, judge calls and steps); `total_time` is the
    /// strategy's wall time; `time_to_first_token` is `None` (no text was streamed by `run`).
    pub usage: Usage,
    /// The calls of a multi-step strategy that are not candidates (observations, plans,
    /// descriptions, principles, ...) in the order they were made, and records of decisions
    /// made without a call (a stage skipped, how an answer was extracted); empty for the
    /// strategies that make neither.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// For a [`Pipeline`](super::Pipeline), the outcome of each stage, in order; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Outcome>,
}

impl Outcome {
    /// The chosen candidate.
    pub fn winner_candidate(&self) -> Option<&Candidate> {
        self.candidates.get(self.winner)
    }

    /// The calls that failed and whose candidates were dropped.
    pub fn failures(&self) -> impl Iterator<Item = &CallFailure> {
        self.candidates.iter().filter_map(|c| c.dropped.as_ref())
    }
}

/// One intermediate call of a multi-step strategy, or a record of a decision it made without a
/// call (then `usage.model_calls` is 0 and `finish_reason` is `None`); in [`Outcome::steps`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// What the call was for, e.g. `"observations"`, `"plan 2"`, `"extract output"`.
    pub stage: String,
    /// The reply, verbatim (for a record, what the strategy kept).
    pub text: String,
    /// What the call cost, as the inner client reported it; zero for a record.
    pub usage: Usage,
    /// Why the reply's generation stopped (`Length`: cut off at the token limit); `None` for a
    /// record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// What the strategy made of the reply, when that is worth knowing (e.g. that a reply had
    /// no list to parse and was used whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Step {
    /// The step of a call that answered with `completion`.
    pub(crate) fn new(stage: impl Into<String>, completion: Completion) -> Self {
        Step {
            stage: stage.into(),
            text: completion.text,
            usage: completion.usage,
            finish_reason: Some(completion.finish_reason),
            note: None,
        }
    }

    /// A record of a decision made without a call: no model call, zero tokens, `text` what the
    /// strategy kept, `note` why.
    pub(crate) fn record(stage: impl Into<String>, text: String, note: impl Into<String>) -> Self {
        Step {
            stage: stage.into(),
            text,
            usage: Usage {
                prompt_tokens: Some(0),
                completion_tokens: Some(0),
                ..Usage::default()
            },
            finish_reason: None,
            note: Some(note.into()),
        }
    }

    /// The same step with `note` recorded.
    pub(crate) fn noted(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// One candidate answer and how the strategy judged it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The sampling options it was generated with (temperature, seed, ...).
    pub options: SamplingOptions,
    /// Its text; empty when its generation failed.
    pub text: String,
    /// Why its generation stopped; `None` when it failed.
    pub finish_reason: Option<FinishReason>,
    /// What generating it cost, as the inner client reported it; for a failed generation, one
    /// model call with unknown token counts.
    pub usage: Usage,
    /// How selection saw it.
    pub score: Score,
    /// Set when a call for this candidate failed and the candidate was left out of selection
    /// (only under [`FailurePolicy::Drop`]).
    pub dropped: Option<CallFailure>,
}

impl Candidate {
    /// A candidate whose call failed under [`FailurePolicy::Drop`]: no text, one model call of
    /// unknown cost, left out of selection.
    pub(crate) fn failed(options: SamplingOptions, failure: CallFailure) -> Self {
        Candidate {
            options,
            text: String::new(),
            finish_reason: None,
            usage: failed_call_usage(),
            score: Score::Unscored,
            dropped: Some(failure),
        }
    }

    /// A candidate whose generation succeeded, not scored yet.
    pub(crate) fn generated(options: SamplingOptions, completion: Completion) -> Self {
        Candidate {
            options,
            text: completion.text,
            finish_reason: Some(completion.finish_reason),
            usage: completion.usage,
            score: Score::Unscored,
            dropped: None,
        }
    }
}

/// How a strategy's selection scored one candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Score {
    /// Not scored: a single-call strategy, or a dropped candidate.
    Unscored,
    /// A majority vote: the candidate's normalised answer and how many candidates share it.
    Vote {
        /// The normalised answer that votes were counted over (see [`voting`](super::voting)).
        key: String,
        /// How many candidates gave this normalised answer, this one included.
        votes: usize,
    },
    /// A rating by the model acting as judge.
    Judge {
        /// The rating, 0 to 10; 0 when the reply could not be parsed.
        rating: f64,
        /// Whether a rating could be read from the reply (see [`rating::parse_rating`](super::rating::parse_rating)).
        parsed: bool,
        /// The judge's reply, verbatim.
        reply: String,
        /// What the judge call cost.
        usage: Usage,
    },
    /// A score from a user-supplied [`Verifier`](super::Verifier).
    Verifier {
        /// The score; `None` when the verifier returned NaN (ranked below every number).
        score: Option<f64>,
    },
    /// A verifier score, then a majority vote among the candidates with the top score
    /// (self-consistency with a verifier).
    VerifiedVote {
        /// The verifier's score; `None` when it returned NaN (ranked below every number).
        score: Option<f64>,
        /// The normalised answer that votes were counted over (see [`voting`](super::voting)).
        key: String,
        /// How many top-scored candidates gave this normalised answer, this one included; 0
        /// when this candidate's score was below the top and it did not vote.
        votes: usize,
    },
}

/// A call that failed, recorded in the trace when its candidate was dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallFailure {
    /// Which call, e.g. `"candidate 2 of 5"` or `"judge call for candidate 1"`.
    pub call: String,
    /// The error, as displayed (cut at 2 KiB).
    pub error: String,
}

/// What a strategy does when one of its inner calls fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Return [`Error::StrategyCall`](crate::Error::StrategyCall) naming the failed call.
    #[default]
    Fail,
    /// Drop that candidate, record the failure in its [`Candidate::dropped`], and carry on with
    /// the others; [`Error::AllCandidatesFailed`](crate::Error::AllCandidatesFailed) if none is left.
    Drop,
}

/// The usage of a call that failed: one model call, token counts unknown.
pub(crate) fn failed_call_usage() -> Usage {
    Usage {
        model_calls: 1,
        ..Usage::default()
    }
}
