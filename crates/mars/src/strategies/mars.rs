//! MARS: optillm's multi-agent reasoning system. Agents at different temperatures answer,
//! their answers are aggregated and cross-pollinated, each is verified by another agent, the
//! unverified ones are improved from the verifier's report, and the best verified answer wins;
//! with a code [`Verifier`], an answer counts as verified only when its code also passes.
//!
//! Source: optillm's `mars` approach (`optillm/mars/*.py`), its intended behaviour. The phases,
//! with [`MarsConfig::default`]'s numbers (optillm's):
//!
//! 1. **Exploration.** `agents` (3) agents answer the request as sent, agent `i` at
//!    `agent_temperatures[i % len]` (0.3, 0.6, 1.0), in one
//!    [`ModelClient::complete_batch`](crate::ModelClient::complete_batch) call. The temperatures
//!    are the algorithm's schedule: they replace the request's temperature, as
//!    [`DiverseSampling`](super::DiverseSampling)'s ladder does. Each answer starts a solution
//!    with the heuristic confidence of [`estimate_confidence`].
//! 2. **Aggregation** (RSA, `aggregation`, on by default): `loops` (3) times, groups of
//!    `group_size` (3) solutions are each rewritten by one call into a new solution (confidence
//!    0.8, temperature 0.7): group 0 the best `group_size` by verification score then
//!    confidence, group 1 the best solution of each agent, filled up from that ranking, group 2
//!    a seeded shuffle; `min(population / group_size, 3)` groups, or one group of everything
//!    while fewer than `group_size` solutions exist. The population is then trimmed to
//!    `population` (6) by verification score, then confidence.
//!    **Strategy network** (`strategy_network`, on by default): each agent's solution (not the
//!    aggregates) gets one extraction call ([`ExtractedStrategy`]) at 0.3; then each agent's
//!    solution is rewritten once with up to two peers' strategies (other agents', confidence at
//!    least 0.6, else the two most confident) at 0.9 times its temperature, into an added
//!    solution (confidence +0.1).
//! 3. **Verification.** Every solution is verified by the agent whose temperature differs most
//!    from its author's (for an aggregate, from 0.7), at `verifier_temperature` (0.1), up to
//!    `max_verification_attempts` (3) times; a solution is verified once its last
//!    `passes_required` (2) verdicts are CORRECT ([`parse_verdict`]), and an attempt that can no
//!    longer reach that is not made. With a verifier, each solution's code is also checked once
//!    ([`Verifier::check`]) and a solution is verified only when it scores 1 as well.
//! 4. **Improvement.** While fewer than `min_verified` (1) solutions are verified, up to
//!    `max_rounds` (5) rounds: each unverified solution whose last verdict is not CORRECT, or
//!    whose code failed its check, is rewritten from the verifier's report (and the check's
//!    feedback) at `improvement_factor` (0.8) times its temperature, its verdicts start over,
//!    and every unverified solution is verified again. The rounds stop once `consensus` (2)
//!    solutions are verified.
//! 5. **Selection.** The verified solution with the highest confidence (ties to the earlier);
//!    else, when at least two solutions agree (their [`AnswerKey`] keys are equal), the most
//!    confident of the largest agreeing group; else one synthesis call over the best
//!    `synthesis_size` (3) solutions at `synthesis_temperature` (0.3), the run's final call
//!    (it streams).
//!
//! The calls that write a solution (aggregation, enhancement, improvement, synthesis) replace
//! the request's last user message and keep its system prompt and earlier messages. The
//! verification and extraction calls review a solution rather than answer the caller: they
//! carry MARS's own system prompt ([`VERIFIER_SYSTEM`], [`EXTRACTION_SYSTEM`]), since a
//! caller's "answer with code only" would forbid their reports. Each call has its own seed,
//! derived from the request's.
//!
//! **Lightweight.** A request whose `max_tokens` is at most `lightweight_at` (4000) runs
//! [`MarsConfig::lightweight`]: 2 agents, 2 rounds, one CORRECT verdict needed in at most 2
//! attempts, consensus 1, no aggregation and no strategy network. `None` turns the rule off.
//!
//! **Cost in model calls** (a = agents, L = loops, g = groups per loop, s = solutions when
//! verification starts, A = attempts, r = rounds, u = solutions improved in a round, w =
//! unverified solutions):
//! - exploration: a;
//! - aggregation: L × g (3 × 2 = 6 by default);
//! - strategy network: a extractions + up to a enhancements;
//! - verification: between `passes_required` and A per solution, at most s × A;
//! - each round: u improvements + at most w × A verifications;
//! - selection: 1 synthesis call, or none.
//!
//! The default configuration with 3 agents makes 3 + 6 + 6 = 15 calls before verification,
//! then 18 to 27 verifications of its 9 solutions; the lightweight one makes 2, then 2 to 4.
//! Code checks make no model call. Every call is counted in the usage, verifications and
//! extractions included.
//!
//! **Deviations from optillm's code**, each a defect there: its verifier choice and its
//! improvement calls never run (an `int` agent id is compared with a `str`); aggregates and
//! enhanced solutions can never be verified; its usage counts only reasoning tokens; its
//! verdict reads "correct" anywhere in the reply; its answer extraction re-labels every code
//! block `python`. mars also skips optillm's problem classification, whose classes are
//! mathematical (algebra, geometry, ...), and its `<think>` wrapping of the answer.
//!
//! The trace: one candidate per solution text (agents, aggregates, enhanced and improved
//! versions, the synthesis), each scored by its verification score (the share of CORRECT
//! verdicts); one step per extraction and verification call (noted with the verdict and
//! confidence), one record per code check, and records of the population after each phase, of
//! each round, and of the selection and why.

use std::num::NonZeroUsize;

mod phase2;
mod prompts;
mod run;
mod verdict;

pub use prompts::{EXTRACTION_SYSTEM, VERIFIER_SYSTEM};
pub use verdict::{Assessment, ExtractedStrategy, Verdict, estimate_confidence, parse_verdict};

use run::Run;

use super::calls::{CallPolicy, Calls};
use super::sampling::{DEFAULT_BASE_SEED, check_count, check_temperature};
use super::selection::Verifier;
use super::trace::{FailurePolicy, Outcome};
use super::voting::AnswerKey;
use super::wrapper::{Algorithm, Configured, StrategyClient};
use crate::client::{BatchRequest, ChatRequest, SamplingOptions};
use crate::error::{Error, Result};

/// Phase 2's aggregation (RSA) settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregation {
    /// Most solutions kept after each loop (default 6).
    pub population: usize,
    /// Solutions per aggregation call (default 3).
    pub group_size: usize,
    /// Loops (default 3).
    pub loops: usize,
    /// Temperature of the aggregation calls (default 0.7).
    pub temperature: f32,
}

impl Default for Aggregation {
    fn default() -> Self {
        Aggregation {
            population: 6,
            group_size: 3,
            loops: 3,
            temperature: 0.7,
        }
    }
}

/// Configuration of [`Mars`]; the defaults are optillm's (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct MarsConfig {
    /// Agents in phase 1 (default 3).
    pub agents: usize,
    /// Agent `i`'s temperature is entry `i % len` (default 0.3, 0.6, 1.0).
    pub agent_temperatures: Vec<f32>,
    /// Phase 2's aggregation; `None` turns it off.
    pub aggregation: Option<Aggregation>,
    /// Phase 2's strategy network (default on).
    pub strategy_network: bool,
    /// Temperature of the extraction calls (default 0.3).
    pub extraction_temperature: f32,
    /// An enhancement samples at this times its solution's temperature (default 0.9).
    pub enhancement_factor: f32,
    /// Temperature of the verification calls (default 0.1).
    pub verifier_temperature: f32,
    /// Consecutive CORRECT verdicts that verify a solution (default 2).
    pub passes_required: usize,
    /// Most verification calls per solution per pass (default 3).
    pub max_verification_attempts: usize,
    /// Improvement rounds run while fewer solutions than this are verified (default 1).
    pub min_verified: usize,
    /// The rounds stop once this many are verified (default 2).
    pub consensus: usize,
    /// Most improvement rounds (default 5).
    pub max_rounds: usize,
    /// An improvement samples at this times its solution's temperature (default 0.8).
    pub improvement_factor: f32,
    /// Temperature of the synthesis call (default 0.3).
    pub synthesis_temperature: f32,
    /// Solutions shown to the synthesis call (default 3).
    pub synthesis_size: usize,
    /// Requests with `max_tokens` at most this run [`MarsConfig::lightweight`] (default 4000);
    /// `None`: never.
    pub lightweight_at: Option<u32>,
    /// How solutions are compared in phase 5's vote (default [`AnswerKey::FinalAnswer`]).
    pub answer_key: AnswerKey,
    /// A verifier that runs the code; `None`: the model's verdicts alone decide.
    pub verifier: Option<Verifier>,
    /// The base of the seeds when the request carries none (default 0).
    pub base_seed: u64,
    /// At most this many calls (or code checks) in flight (default 4).
    pub concurrency: NonZeroUsize,
    /// What a failed call does (default [`FailurePolicy::Fail`]); under [`FailurePolicy::Drop`]
    /// a failed agent or rewrite adds no solution and a failed verification is INCOMPLETE.
    pub on_failure: FailurePolicy,
}

impl Default for MarsConfig {
    fn default() -> Self {
        MarsConfig {
            agents: 3,
            agent_temperatures: vec![0.3, 0.6, 1.0],
            aggregation: Some(Aggregation::default()),
            strategy_network: true,
            extraction_temperature: 0.3,
            enhancement_factor: 0.9,
            verifier_temperature: 0.1,
            passes_required: 2,
            max_verification_attempts: 3,
            min_verified: 1,
            consensus: 2,
            max_rounds: 5,
            improvement_factor: 0.8,
            synthesis_temperature: 0.3,
            synthesis_size: 3,
            lightweight_at: Some(4000),
            answer_key: AnswerKey::FinalAnswer,
            verifier: None,
            base_seed: DEFAULT_BASE_SEED,
            concurrency: BatchRequest::DEFAULT_CONCURRENCY,
            on_failure: FailurePolicy::Fail,
        }
    }
}

impl MarsConfig {
    /// optillm's lightweight configuration of this one: 2 agents, 2 rounds, 1 CORRECT verdict
    /// needed within 2 attempts, consensus 1, no aggregation, no strategy network; every other
    /// setting kept.
    pub fn lightweight(self) -> Self {
        MarsConfig {
            agents: 2,
            max_rounds: 2,
            passes_required: 1,
            max_verification_attempts: 2,
            consensus: 1,
            min_verified: 1,
            aggregation: None,
            strategy_network: false,
            ..self
        }
    }

    /// The configuration a request runs: [`lightweight`](Self::lightweight) when its
    /// `max_tokens` is at most `lightweight_at`.
    pub fn for_request(&self, options: &SamplingOptions) -> (Self, bool) {
        let light =
            matches!((self.lightweight_at, options.max_tokens), (Some(at), Some(max)) if max <= at);
        let config = if light {
            self.clone().lightweight()
        } else {
            self.clone()
        };
        (config, light)
    }
}

/// MARS over a client (see the [module docs](self)); `new` fails with
/// [`Error::InvalidConfig`] when a count is 0 (`agents`, `passes_required`,
/// `max_verification_attempts`, `synthesis_size`, an aggregation's sizes), `passes_required`
/// exceeds the attempts, the temperatures are empty or one is invalid.
pub type Mars<C> = StrategyClient<MarsConfig, C>;

impl Algorithm for MarsConfig {
    const NAME: &'static str = "mars";

    fn validate(&self) -> Result<()> {
        check_count("agents", self.agents)?;
        check_count("passes_required", self.passes_required)?;
        check_count("max_verification_attempts", self.max_verification_attempts)?;
        check_count("synthesis_size", self.synthesis_size)?;
        if self.passes_required > self.max_verification_attempts {
            return Err(Error::InvalidConfig {
                field: "passes_required",
                reason: format!(
                    "{} passes cannot happen in {} attempts",
                    self.passes_required, self.max_verification_attempts
                ),
            });
        }
        if self.agent_temperatures.is_empty() {
            return Err(Error::InvalidConfig {
                field: "agent_temperatures",
                reason: "at least one temperature is needed".into(),
            });
        }
        for t in &self.agent_temperatures {
            check_temperature("agent_temperatures", Some(*t))?;
        }
        for (field, t) in [
            ("extraction_temperature", self.extraction_temperature),
            ("verifier_temperature", self.verifier_temperature),
            ("synthesis_temperature", self.synthesis_temperature),
            ("enhancement_factor", self.enhancement_factor),
            ("improvement_factor", self.improvement_factor),
        ] {
            check_temperature(field, Some(t))?;
        }
        if let Some(aggregation) = &self.aggregation {
            check_count("aggregation.population", aggregation.population)?;
            check_count("aggregation.group_size", aggregation.group_size)?;
            check_temperature("aggregation.temperature", Some(aggregation.temperature))?;
        }
        Ok(())
    }

    fn policy(&self) -> CallPolicy {
        CallPolicy::new(self.on_failure, self.concurrency)
    }

    async fn run(&self, calls: &Calls<'_>, request: ChatRequest) -> Result<Outcome> {
        let (config, light) = self.for_request(&request.options);
        let mut run = Run::new(&config, *calls, &request, self.base_seed)?;
        run.record(
            "configuration",
            String::new(),
            if light {
                "lightweight: the request's max_tokens is within lightweight_at"
            } else {
                "default"
            },
        );
        run.explore().await?;
        if let Some(aggregation) = &config.aggregation {
            run.aggregate(aggregation).await?;
        }
        if config.strategy_network {
            run.strategy_network().await?;
        }
        let everyone: Vec<usize> = (0..run.population.len()).collect();
        run.verify(&everyone).await?;
        run.record_population("after verification");
        let mut round = 0;
        while run.verified().len() < config.min_verified && round < config.max_rounds {
            round += 1;
            run.improve(round).await?;
            let open: Vec<usize> = (0..run.population.len())
                .filter(|&i| !run.is_verified(i))
                .collect();
            run.verify(&open).await?;
            run.record_population(&format!("after round {round}"));
            if run.verified().len() >= config.consensus {
                break;
            }
        }
        run.select().await
    }
}

impl Configured for MarsConfig {}

#[cfg(test)]
#[path = "mars_tests.rs"]
mod tests;
