//! Strategies by name: optillm's slugs and mars's own names, built with shared defaults, and
//! pipelines `a&b` in which each stage's answer is the next stage's question.
//!
//! A [`StrategySpec`] is parsed from text such as `"bon"`, `"best_of_n_verifier"` or
//! `"re2&cot_reflection"`: stages separated by `&`, each an optillm slug or a mars name
//! ([`StrategyName`]), optionally suffixed `_verifier` for the strategies that select with a
//! [`Verifier`] instead of a model judge. [`build`] turns a spec into a `Box<dyn Strategy>`
//! over any client, taking what the strategies share (candidate count, temperature, verifier,
//! answer key, concurrency) from [`Defaults`]; every other setting is the strategy's own default.
//!
//! ```
//! use mars::strategies::registry::{self, Defaults, StrategySpec};
//! use mars::{ScriptedClient, Turn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let spec: StrategySpec = "re2".parse()?;
//! assert_eq!(spec.to_string(), "reread");
//! let client = ScriptedClient::new([Turn::text("4")]);
//! let strategy = registry::build(&spec, &client, &Defaults::default())?;
//! let outcome = strategy.run("What is 2 + 2?".into()).await?;
//! assert_eq!((outcome.strategy.as_str(), outcome.answer.as_str()), ("reread", "4"));
//! # Ok::<_, mars::Error>(()) }).unwrap();
//! ```

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::pipeline::Pipeline;
use super::selection::{Selector, Verifier};
use super::voting::AnswerKey;
use super::{
    Baseline, BestOfN, BestOfNConfig, CotReflection, CotReflectionConfig, DiverseSampling,
    DiverseSamplingConfig, Leap, LeapConfig, MixtureOfAgents, MixtureOfAgentsConfig, PlanSearch,
    PlanSearchConfig, ReRead, ReReadConfig, RoundTrip, RoundTripConfig, SelfConsistency,
    SelfConsistencyConfig, Strategy,
};
use crate::client::{BatchRequest, ModelClient};
use crate::error::{Error, Result};

/// A strategy the registry can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StrategyName {
    /// [`Baseline`]: one call, the request unchanged.
    Baseline,
    /// [`ReRead`]: the question stated twice (RE2).
    ReRead,
    /// [`DiverseSampling`]: samples at spread temperatures, majority vote.
    DiverseSampling,
    /// [`BestOfN`]: candidates rated by a judge (or scored by a verifier).
    BestOfN,
    /// [`SelfConsistency`]: samples at one temperature, majority vote over final answers.
    SelfConsistency,
    /// [`MixtureOfAgents`]: proposals, then one aggregation.
    MixtureOfAgents,
    /// [`CotReflection`]: thinking, reflection and output sections; the output returned.
    CotReflection,
    /// [`PlanSearch`]: observations, plans, code per plan, then selection.
    PlanSearch,
    /// [`Leap`]: principles learned from mistakes on examples, then the answer.
    Leap,
    /// [`RoundTrip`]: code, description, code again, synthesis when they differ.
    Rto,
}

impl StrategyName {
    /// Every strategy, in the order reports list them.
    pub const ALL: [StrategyName; 10] = [
        StrategyName::Baseline,
        StrategyName::ReRead,
        StrategyName::DiverseSampling,
        StrategyName::BestOfN,
        StrategyName::SelfConsistency,
        StrategyName::MixtureOfAgents,
        StrategyName::CotReflection,
        StrategyName::PlanSearch,
        StrategyName::Leap,
        StrategyName::Rto,
    ];

    /// mars's name: the name in [`Outcome::strategy`](super::Outcome::strategy), reports and
    /// the benchmark's tables.
    pub fn name(self) -> &'static str {
        match self {
            StrategyName::Baseline => "baseline",
            StrategyName::ReRead => "reread",
            StrategyName::DiverseSampling => "diverse_sampling",
            StrategyName::BestOfN => "best_of_n",
            StrategyName::SelfConsistency => "self_consistency",
            StrategyName::MixtureOfAgents => "mixture_of_agents",
            StrategyName::CotReflection => "cot_reflection",
            StrategyName::PlanSearch => "plansearch",
            StrategyName::Leap => "leap",
            StrategyName::Rto => "rto",
        }
    }

    /// optillm's slug for the same approach.
    pub fn slug(self) -> &'static str {
        match self {
            StrategyName::Baseline => "none",
            StrategyName::ReRead => "re2",
            StrategyName::DiverseSampling => "diverse",
            StrategyName::BestOfN => "bon",
            StrategyName::SelfConsistency => "self_consistency",
            StrategyName::MixtureOfAgents => "moa",
            StrategyName::CotReflection => "cot_reflection",
            StrategyName::PlanSearch => "plansearch",
            StrategyName::Leap => "leap",
            StrategyName::Rto => "rto",
        }
    }

    /// Its cost in model calls, `n` being [`Defaults::n`] (as the strategy's docs give it).
    pub fn model_calls(self) -> &'static str {
        match self {
            StrategyName::Baseline | StrategyName::ReRead | StrategyName::CotReflection => "1",
            StrategyName::DiverseSampling | StrategyName::SelfConsistency => "n",
            StrategyName::BestOfN => "2n with the judge, n with the verifier",
            StrategyName::MixtureOfAgents => "n + 1",
            StrategyName::PlanSearch => "2 + 3n with the judge, 2 + 2n with the verifier",
            StrategyName::Leap => {
                "2 + e + m, +1 to condense the principles; e examples (at most 3), m mistakes"
            }
            StrategyName::Rto => "3, or 4 when the two codes differ",
        }
    }

    /// Whether the strategy can select with a [`Verifier`] (the `_verifier` suffix).
    pub fn takes_verifier(self) -> bool {
        matches!(
            self,
            StrategyName::BestOfN | StrategyName::SelfConsistency | StrategyName::PlanSearch
        )
    }

    /// The strategy named `text`: its mars name or its optillm slug (`baseline` and `none`
    /// both name [`StrategyName::Baseline`]).
    pub fn parse(text: &str) -> Option<StrategyName> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == text || s.slug() == text)
    }
}

/// One stage of a [`StrategySpec`]: a strategy, and whether it selects with the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stage {
    /// The strategy.
    pub strategy: StrategyName,
    /// Select with [`Defaults::verifier`] instead of the strategy's default (a model judge or a
    /// plain vote); only for strategies whose [`StrategyName::takes_verifier`] is true.
    pub verifier: bool,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.strategy.name())?;
        if self.verifier {
            f.write_str(VERIFIER_SUFFIX)?;
        }
        Ok(())
    }
}

const VERIFIER_SUFFIX: &str = "_verifier";

/// A strategy or a pipeline of strategies, by name: `bon`, `best_of_n_verifier`,
/// `re2&cot_reflection`. Displayed (and serialised) with mars's names, so `re2` and `reread`
/// are the same spec.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StrategySpec {
    stages: Vec<Stage>,
    name: String,
}

impl StrategySpec {
    fn from_stages(stages: Vec<Stage>) -> Self {
        let name = stages
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("&");
        StrategySpec { stages, name }
    }

    /// A spec of one stage.
    pub fn single(strategy: StrategyName) -> Self {
        Self::from_stages(vec![Stage {
            strategy,
            verifier: false,
        }])
    }

    /// The spec as mars names it: stages joined by `&`, e.g. `reread&best_of_n_verifier`.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The stages, in order (one for a plain strategy).
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Whether this is the baseline alone (what the benchmark compares the others with).
    pub fn is_baseline(&self) -> bool {
        matches!(
            self.stages.as_slice(),
            [Stage {
                strategy: StrategyName::Baseline,
                verifier: false
            }]
        )
    }

    /// Whether any stage selects with the verifier.
    pub fn uses_verifier(&self) -> bool {
        self.stages.iter().any(|s| s.verifier)
    }

    /// The seed's four strategies: baseline, reread, diverse_sampling, best_of_n.
    pub fn seed() -> Vec<StrategySpec> {
        [
            StrategyName::Baseline,
            StrategyName::ReRead,
            StrategyName::DiverseSampling,
            StrategyName::BestOfN,
        ]
        .into_iter()
        .map(StrategySpec::single)
        .collect()
    }

    /// Every strategy once, then each verifier variant.
    pub fn all() -> Vec<StrategySpec> {
        let plain = StrategyName::ALL.into_iter().map(StrategySpec::single);
        let verified = StrategyName::ALL
            .into_iter()
            .filter(|s| s.takes_verifier())
            .map(|strategy| {
                Self::from_stages(vec![Stage {
                    strategy,
                    verifier: true,
                }])
            });
        plain.chain(verified).collect()
    }

    /// Parses a comma-separated list of specs; `seed` and `all` name the groups of
    /// [`seed`](Self::seed) and [`all`](Self::all). Duplicates are dropped, the first kept.
    pub fn parse_list(list: &str) -> Result<Vec<StrategySpec>> {
        let mut out: Vec<StrategySpec> = Vec::new();
        for item in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let add = match item {
                "seed" => Self::seed(),
                "all" => Self::all(),
                spec => vec![spec.parse()?],
            };
            for spec in add {
                if !out.contains(&spec) {
                    out.push(spec);
                }
            }
        }
        if out.is_empty() {
            return Err(Error::InvalidConfig {
                field: "strategies",
                reason: "no strategy named".into(),
            });
        }
        Ok(out)
    }
}

impl fmt::Display for StrategySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl FromStr for StrategySpec {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let stages = text
            .split('&')
            .map(|stage| parse_stage(stage.trim(), text))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::from_stages(stages))
    }
}

fn parse_stage(stage: &str, spec: &str) -> Result<Stage> {
    let unknown = |reason: String| Error::InvalidConfig {
        field: "strategies",
        reason,
    };
    if stage.is_empty() {
        return Err(unknown(format!("{spec:?} has an empty stage")));
    }
    if let Some(strategy) = StrategyName::parse(stage) {
        return Ok(Stage {
            strategy,
            verifier: false,
        });
    }
    if let Some(strategy) = stage
        .strip_suffix(VERIFIER_SUFFIX)
        .and_then(StrategyName::parse)
    {
        if !strategy.takes_verifier() {
            return Err(unknown(format!(
                "{stage:?}: {} does not select with a verifier (these do: {})",
                strategy.name(),
                names(StrategyName::ALL.into_iter().filter(|s| s.takes_verifier()))
            )));
        }
        return Ok(Stage {
            strategy,
            verifier: true,
        });
    }
    Err(unknown(format!(
        "unknown strategy {stage:?}; known: seed, all, {} (optillm slugs: {}), a \
         `{VERIFIER_SUFFIX}` suffix on {}, and pipelines a&b",
        names(StrategyName::ALL.into_iter()),
        StrategyName::ALL.map(StrategyName::slug).join(", "),
        names(StrategyName::ALL.into_iter().filter(|s| s.takes_verifier())),
    )))
}

fn names(strategies: impl Iterator<Item = StrategyName>) -> String {
    strategies
        .map(StrategyName::name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Serialize for StrategySpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StrategySpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What the strategies built by [`build`] share; everything else is each strategy's default.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Candidates, samples or proposers of the strategies that draw several (default 3).
    pub n: usize,
    /// Temperature of the strategies that sample several answers at one temperature (best of n,
    /// self-consistency, mixture-of-agents proposers); `None` (the default) keeps each
    /// strategy's own.
    pub temperature: Option<f32>,
    /// The verifier of `_verifier` stages; building one without it is an error.
    pub verifier: Option<Verifier>,
    /// How voting strategies turn an answer into the key votes are counted over; `None` (the
    /// default) keeps each strategy's own.
    pub answer_key: Option<AnswerKey>,
    /// At most this many calls of one strategy in flight (default 4).
    pub concurrency: NonZeroUsize,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            n: 3,
            temperature: None,
            verifier: None,
            answer_key: None,
            concurrency: BatchRequest::DEFAULT_CONCURRENCY,
        }
    }
}

/// Builds the strategy (or pipeline) `spec` over `client`.
///
/// Fails with [`Error::InvalidConfig`] when a `_verifier` stage has no
/// [`Defaults::verifier`], or when a strategy rejects the defaults (e.g. `n` of 0).
pub fn build<'a, C>(
    spec: &StrategySpec,
    client: C,
    defaults: &Defaults,
) -> Result<Box<dyn Strategy + 'a>>
where
    C: ModelClient + Clone + 'a,
{
    match spec.stages.as_slice() {
        [stage] => build_stage(*stage, client, defaults),
        stages => {
            let built = stages
                .iter()
                .map(|stage| build_stage(*stage, client.clone(), defaults))
                .collect::<Result<Vec<_>>>()?;
            Ok(Box::new(Pipeline::new(spec.as_str(), built)?))
        }
    }
}

fn build_stage<'a, C>(
    stage: Stage,
    client: C,
    defaults: &Defaults,
) -> Result<Box<dyn Strategy + 'a>>
where
    C: ModelClient + 'a,
{
    // The verifier of a `_verifier` stage; `None` for any other stage.
    let verifier = if stage.verifier {
        let given = defaults
            .verifier
            .clone()
            .ok_or_else(|| Error::InvalidConfig {
                field: "verifier",
                reason: format!(
                    "{stage} selects with a verifier, and none was given (Defaults::verifier)"
                ),
            })?;
        Some(given)
    } else {
        None
    };
    let n = defaults.n;
    let concurrency = defaults.concurrency;
    Ok(match stage.strategy {
        StrategyName::Baseline => Box::new(Baseline::new(client)),
        StrategyName::ReRead => Box::new(ReRead::new(client, ReReadConfig::default())?),
        StrategyName::DiverseSampling => {
            let base = DiverseSamplingConfig::default();
            let config = DiverseSamplingConfig {
                n,
                answer_key: defaults
                    .answer_key
                    .clone()
                    .unwrap_or(base.answer_key.clone()),
                concurrency,
                ..base
            };
            Box::new(DiverseSampling::new(client, config)?)
        }
        StrategyName::BestOfN => {
            let base = BestOfNConfig::default();
            let config = BestOfNConfig {
                n,
                temperature: defaults.temperature.or(base.temperature),
                selector: verifier
                    .clone()
                    .map_or(base.selector.clone(), Selector::Verifier),
                concurrency,
                ..base
            };
            Box::new(BestOfN::new(client, config)?)
        }
        StrategyName::SelfConsistency => {
            let base = SelfConsistencyConfig::default();
            let config = SelfConsistencyConfig {
                n,
                temperature: defaults.temperature.or(base.temperature),
                answer_key: defaults
                    .answer_key
                    .clone()
                    .unwrap_or(base.answer_key.clone()),
                verifier: verifier.clone(),
                concurrency,
                ..base
            };
            Box::new(SelfConsistency::new(client, config)?)
        }
        StrategyName::MixtureOfAgents => {
            let base = MixtureOfAgentsConfig::default();
            let config = MixtureOfAgentsConfig {
                n,
                temperature: defaults.temperature.or(base.temperature),
                concurrency,
                ..base
            };
            Box::new(MixtureOfAgents::new(client, config)?)
        }
        StrategyName::CotReflection => {
            Box::new(CotReflection::new(client, CotReflectionConfig::default())?)
        }
        StrategyName::PlanSearch => {
            let base = PlanSearchConfig::default();
            // One first observation per plan at least, so that every plan's subset differs.
            let config = PlanSearchConfig {
                plans: n,
                observations: base.observations.max(n),
                selector: verifier
                    .clone()
                    .map_or(base.selector.clone(), Selector::Verifier),
                concurrency,
                ..base
            };
            Box::new(PlanSearch::new(client, config)?)
        }
        StrategyName::Leap => {
            let config = LeapConfig {
                concurrency,
                ..LeapConfig::default()
            };
            Box::new(Leap::new(client, config)?)
        }
        StrategyName::Rto => Box::new(RoundTrip::new(client, RoundTripConfig::default())?),
    })
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
