//! Strategies: wrappers over any [`ModelClient`](crate::ModelClient) that spend model calls to
//! get a better answer.
//!
//! A strategy is its configuration plus its algorithm. The configuration type (`BestOfNConfig`,
//! ...) implements [`Algorithm`]: its name, its validation and its `run` over a [`Calls`]
//! context (the inner client, the strategy's name, its [`FailurePolicy`] and concurrency bound).
//! One generic wrapper, [`StrategyClient<M, C>`], wraps a client as tower's `Timeout<S>` wraps a
//! service, and every strategy's public name is an alias of it: `BestOfN<C>` is
//! `StrategyClient<BestOfNConfig, C>`. `new(inner, config)` validates the configuration,
//! [`inner`](StrategyClient::inner) and [`into_inner`](StrategyClient::into_inner) give the
//! client back, and the inherent `run(request)` returns an [`Outcome`] (the answer plus a
//! serialisable trace of every candidate). Each is itself a
//! [`ModelClient`](crate::ModelClient): its stream yields the final answer as text deltas, then
//! one [`StreamEvent::Done`](crate::StreamEvent::Done) whose [`Usage`](crate::Usage) sums every
//! inner call (prompt and completion tokens, `model_calls`) and whose `total_time` is the
//! strategy's own wall time. So strategies nest (`BestOfN<ReRead<C>>`) and can be held as
//! `Box<dyn ModelClient>`, or as `Box<dyn Strategy>` to keep access to traces.
//!
//! Sampling options follow one rule ([`request`]): the request's options win, and a
//! configuration fills in only what the request leaves unset. The exception is an algorithm
//! whose definition is a schedule, [`DiverseSampling`]'s temperature ladder and [`Mars`]'s agent
//! temperatures; judge calls use the
//! judge's token limit ([`selection::judge_options`]).
//!
//! | Strategy | Source | Model calls |
//! |---|---|---|
//! | [`Baseline`] | — | 1 |
//! | [`ReRead`] | RE2, Xu et al. 2023 | 1 |
//! | [`DiverseSampling`] | temperature ensembles with a majority vote | n |
//! | [`BestOfN`] | optillm's `bon` | n, plus n judge calls with [`Selector::Judge`] |
//! | [`SelfConsistency`] | Wang et al. 2022; optillm's `self_consistency` | k (a verifier adds no call) |
//! | [`CotReflection`] | optillm's `cot_reflection` | 1 |
//! | [`MixtureOfAgents`] | Wang et al. 2024; optillm's `moa` | n proposals + 1 aggregation |
//! | [`RoundTrip`] | optillm's `rto` | 3, or 4 when the round trip disagrees |
//! | [`PlanSearch`] | Wang et al. 2024, optillm's `plansearch` | 2 + 2p for p plans, plus p judge calls with [`Selector::Judge`] |
//! | [`Leap`] | Zhang et al. 2024, optillm's `leap` | 1 + e + m + (1 if m > 0) + 1 for e examples and m mistakes; e + m + (1 if m > 0) + 1 with given examples |
//! | [`Repair`] | Self-Debugging, Chen et al. 2023; Reflexion, Shinn et al. 2023; AlphaCodium, Ridnik et al. 2024; Self-Refine, Madaan et al. 2023 | at most n × (1 + rounds), with a [`Verifier`] that gives feedback |
//! | [`CodeT`] | CodeT, Chen et al. 2022 | n + 1, with a [`Verifier`] that runs tests |
//! | [`Mars`] | optillm's `mars` | lightweight: 2 agents + 2 to 4 verifications, up to 2 rounds, at most 1 synthesis; see [`mars`] |
//! | [`Pipeline`] | optillm's `a&b` | the sum of its stages |
//!
//! The [`registry`] builds any of them from a name (mars's or optillm's slug) and shared
//! [`Defaults`], and parses pipelines such as `re2&cot_reflection`.
//!
//! Usage is measured, never estimated: it is the sum of what the inner calls reported. A call
//! that failed (and was dropped under [`FailurePolicy::Drop`]) still counts as a model call, with
//! unknown token counts, so the token sums of such an outcome are `None`.
//!
//! Strategies never name a backend; the decisions they make (voting, rating parsing, seed and
//! temperature schedules, the choice of a best candidate, list parsing, feedback text, test
//! parsing and dual agreement) are pure functions in [`voting`], [`rating`], [`sampling`],
//! [`selection`], [`parsing`], [`feedback`], [`repair`] and [`codet`].

pub mod baseline;
pub mod best_of_n;
mod calls;
pub mod codet;
pub mod cot_reflection;
pub mod diverse_sampling;
pub mod feedback;
pub mod leap;
pub mod mars;
pub mod mixture_of_agents;
pub mod parsing;
pub mod pipeline;
pub mod plansearch;
pub mod rating;
pub mod registry;
pub mod repair;
pub mod request;
pub mod reread;
pub mod rto;
pub mod sampling;
pub mod selection;
pub mod self_consistency;
#[cfg(test)]
mod test_support;
mod trace;
pub mod voting;
mod wrapper;

pub use baseline::{Baseline, BaselineConfig};
pub use best_of_n::{BestOfN, BestOfNAggregator, BestOfNConfig};
pub use calls::{CallPolicy, Calls};
pub use codet::{CodeT, CodeTConfig};
pub use cot_reflection::{CotReflection, CotReflectionConfig};
pub use diverse_sampling::{DiverseSampling, DiverseSamplingAggregator, DiverseSamplingConfig};
pub use leap::{Leap, LeapConfig};
pub use mars::{Mars, MarsConfig};
pub use mixture_of_agents::{MixtureOfAgents, MixtureOfAgentsConfig};
pub use pipeline::Pipeline;
pub use plansearch::{PlanSearch, PlanSearchConfig};
pub use registry::{Defaults, StrategyName, StrategySpec};
pub use repair::{Repair, RepairConfig};
pub use reread::{ReRead, ReReadAggregator, ReReadConfig};
pub use rto::{RoundTrip, RoundTripConfig};
pub use selection::{JudgeConfig, Selector, Verifier};
pub use self_consistency::{SelfConsistency, SelfConsistencyConfig};
pub use trace::{CallFailure, Candidate, FailurePolicy, Outcome, Score, Step};
pub use voting::AnswerKey;
pub use wrapper::{Algorithm, AnswerSink, Configured, Strategy, StrategyClient};
