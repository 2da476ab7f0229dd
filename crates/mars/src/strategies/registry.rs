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

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;

mod spec;

pub use spec::{Stage, StrategySpec};

use super::pipeline::Pipeline;
use super::selection::{Selector, Verifier};
use super::voting::AnswerKey;
use super::wrapper::{Algorithm, Strategy, StrategyClient};
use super::{
    BaselineConfig, BestOfNConfig, CodeTConfig, CotReflectionConfig, DiverseSamplingConfig,
    LeapConfig, MarsConfig, MixtureOfAgentsConfig, PlanSearchConfig, ReReadConfig, RepairConfig,
    RoundTripConfig, SelfConsistencyConfig,
};
use crate::client::{BatchRequest, ModelClient};
use crate::error::{Error, Result};

/// The inner client of a strategy built by the registry.
pub type Client<'a> = Box<dyn ModelClient + 'a>;

/// A row's builder: the strategy over `client`, with the shared [`Defaults`] and, for a
/// `_verifier` stage, the verifier.
type Build = for<'a> fn(Client<'a>, &Defaults, Option<Verifier>) -> Result<Box<dyn Strategy + 'a>>;

/// A strategy the registry can build: one row of [`StrategyName::ALL`], holding its mars name,
/// its optillm slug, its cost in model calls, whether it can select with a verifier (a
/// `_verifier` stage), whether it always needs one (`repair`, `codet`), and its builder.
#[derive(Clone, Copy)]
pub struct StrategyName {
    name: &'static str,
    slug: &'static str,
    model_calls: &'static str,
    takes_verifier: bool,
    needs_verifier: bool,
    build: Build,
}

/// The strategy with configuration `config` over `client`, boxed.
fn boxed<'a, M: Algorithm + 'a>(client: Client<'a>, config: M) -> Result<Box<dyn Strategy + 'a>> {
    Ok(Box::new(StrategyClient::build(client, config)?))
}

/// MARS with the shared defaults: their answer key (for its vote), concurrency and verifier.
fn mars_config(defaults: &Defaults, verifier: Option<Verifier>) -> MarsConfig {
    let base = MarsConfig::default();
    MarsConfig {
        answer_key: defaults
            .answer_key
            .clone()
            .unwrap_or(base.answer_key.clone()),
        concurrency: defaults.concurrency,
        verifier,
        ..base
    }
}

impl StrategyName {
    /// The registry: every strategy, in the order reports list them. Adding a strategy is one
    /// file in `src/strategies/`, one `mod` line and one row here.
    pub const ALL: &'static [StrategyName] = &[
        StrategyName {
            name: BaselineConfig::NAME,
            slug: "none",
            model_calls: "1",
            takes_verifier: false,
            needs_verifier: false,
            build: |client, _, _| boxed(client, BaselineConfig),
        },
        StrategyName {
            name: ReReadConfig::NAME,
            slug: "re2",
            model_calls: "1",
            takes_verifier: false,
            needs_verifier: false,
            build: |client, _, _| boxed(client, ReReadConfig::default()),
        },
        StrategyName {
            name: DiverseSamplingConfig::NAME,
            slug: "diverse",
            model_calls: "n",
            takes_verifier: false,
            needs_verifier: false,
            build: |client, defaults, _| {
                let base = DiverseSamplingConfig::default();
                let config = DiverseSamplingConfig {
                    n: defaults.n,
                    answer_key: defaults
                        .answer_key
                        .clone()
                        .unwrap_or(base.answer_key.clone()),
                    concurrency: defaults.concurrency,
                    ..base
                };
                boxed(client, config)
            },
        },
        StrategyName {
            name: BestOfNConfig::NAME,
            slug: "bon",
            model_calls: "2n with the judge, n with the verifier",
            takes_verifier: true,
            needs_verifier: false,
            build: |client, defaults, verifier| {
                let base = BestOfNConfig::default();
                let config = BestOfNConfig {
                    n: defaults.n,
                    temperature: defaults.temperature.or(base.temperature),
                    selector: verifier.map_or(base.selector.clone(), Selector::Verifier),
                    concurrency: defaults.concurrency,
                    ..base
                };
                boxed(client, config)
            },
        },
        StrategyName {
            name: SelfConsistencyConfig::NAME,
            slug: "self_consistency",
            model_calls: "n",
            takes_verifier: true,
            needs_verifier: false,
            build: |client, defaults, verifier| {
                let base = SelfConsistencyConfig::default();
                let config = SelfConsistencyConfig {
                    n: defaults.n,
                    temperature: defaults.temperature.or(base.temperature),
                    answer_key: defaults
                        .answer_key
                        .clone()
                        .unwrap_or(base.answer_key.clone()),
                    verifier,
                    concurrency: defaults.concurrency,
                    ..base
                };
                boxed(client, config)
            },
        },
        StrategyName {
            name: MixtureOfAgentsConfig::NAME,
            slug: "moa",
            model_calls: "n + 1",
            takes_verifier: false,
            needs_verifier: false,
            build: |client, defaults, _| {
                let base = MixtureOfAgentsConfig::default();
                let config = MixtureOfAgentsConfig {
                    n: defaults.n,
                    temperature: defaults.temperature.or(base.temperature),
                    concurrency: defaults.concurrency,
                    ..base
                };
                boxed(client, config)
            },
        },
        StrategyName {
            name: CotReflectionConfig::NAME,
            slug: "cot_reflection",
            model_calls: "1",
            takes_verifier: false,
            needs_verifier: false,
            build: |client, _, _| boxed(client, CotReflectionConfig::default()),
        },
        StrategyName {
            name: PlanSearchConfig::NAME,
            slug: "plansearch",
            model_calls: "2 + 3n with the judge, 2 + 2n with the verifier",
            takes_verifier: true,
            needs_verifier: false,
            build: |client, defaults, verifier| {
                let base = PlanSearchConfig::default();
                // One first observation per plan at least, so that every plan's subset differs.
                let config = PlanSearchConfig {
                    plans: defaults.n,
                    observations: base.observations.max(defaults.n),
                    selector: verifier.map_or(base.selector.clone(), Selector::Verifier),
                    concurrency: defaults.concurrency,
                    ..base
                };
                boxed(client, config)
            },
        },
        StrategyName {
            name: LeapConfig::NAME,
            slug: "leap",
            model_calls: "2 + e + m, +1 to condense the principles; e examples (at most 3), \
                          m mistakes",
            takes_verifier: false,
            needs_verifier: false,
            build: |client, defaults, _| {
                let config = LeapConfig {
                    concurrency: defaults.concurrency,
                    ..LeapConfig::default()
                };
                boxed(client, config)
            },
        },
        StrategyName {
            name: RoundTripConfig::NAME,
            slug: "rto",
            model_calls: "3, or 4 when the two codes differ",
            takes_verifier: false,
            needs_verifier: false,
            build: |client, _, _| boxed(client, RoundTripConfig::default()),
        },
        StrategyName {
            name: RepairConfig::NAME,
            slug: "repair",
            model_calls: "at most 3: one chain, up to 2 repair rounds",
            takes_verifier: false,
            needs_verifier: true,
            build: |client, defaults, verifier| {
                let config = RepairConfig {
                    temperature: defaults.temperature.or(RepairConfig::default().temperature),
                    verifier,
                    concurrency: defaults.concurrency,
                    ..RepairConfig::default()
                };
                boxed(client, config)
            },
        },
        StrategyName {
            name: MarsConfig::NAME,
            slug: "mars",
            model_calls: "lightweight (max_tokens <= 4000): 2 agents + 2 to 4 verifications, up \
                          to 2 rounds of improvements and verifications, at most 1 synthesis; \
                          default: 15 + 18 to 27 verifications, up to 5 rounds, at most 1 synthesis",
            takes_verifier: true,
            needs_verifier: false,
            build: |client, defaults, verifier| boxed(client, mars_config(defaults, verifier)),
        },
        StrategyName {
            name: CodeTConfig::NAME,
            slug: "codet",
            model_calls: "n + 1",
            takes_verifier: false,
            needs_verifier: true,
            build: |client, defaults, verifier| {
                let base = CodeTConfig::default();
                let config = CodeTConfig {
                    n: defaults.n,
                    temperature: defaults.temperature.or(base.temperature),
                    verifier,
                    concurrency: defaults.concurrency,
                    ..base
                };
                boxed(client, config)
            },
        },
    ];

    /// mars's name: the name in [`Outcome::strategy`](super::Outcome::strategy), reports and
    /// the benchmark's tables.
    pub fn name(self) -> &'static str {
        self.name
    }

    /// optillm's slug for the same approach.
    pub fn slug(self) -> &'static str {
        self.slug
    }

    /// Its cost in model calls, `n` being [`Defaults::n`] (as the strategy's docs give it).
    pub fn model_calls(self) -> &'static str {
        self.model_calls
    }

    /// Whether the strategy can select with a [`Verifier`] (the `_verifier` suffix).
    pub fn takes_verifier(self) -> bool {
        self.takes_verifier
    }

    /// Whether the strategy cannot run without a [`Verifier`] (`repair`, `codet`): building it
    /// takes [`Defaults::verifier`], with no `_verifier` suffix.
    pub fn needs_verifier(self) -> bool {
        self.needs_verifier
    }

    /// The strategy named `text`: its mars name or its optillm slug (`baseline` and `none`
    /// both name the baseline).
    pub fn parse(text: &str) -> Option<StrategyName> {
        Self::ALL
            .iter()
            .copied()
            .find(|s| s.name == text || s.slug == text)
    }

    /// Its row in [`ALL`](Self::ALL), which orders strategies.
    fn position(self) -> usize {
        Self::ALL
            .iter()
            .position(|s| s.name == self.name)
            .unwrap_or(usize::MAX)
    }
}

impl fmt::Debug for StrategyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StrategyName").field(&self.name).finish()
    }
}

impl PartialEq for StrategyName {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for StrategyName {}

impl Hash for StrategyName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl PartialOrd for StrategyName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for StrategyName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.position().cmp(&other.position())
    }
}

/// What the strategies built by [`build`] share; everything else is each strategy's default.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Candidates, samples or proposers of the strategies that draw several (default 3).
    pub n: usize,
    /// Temperature of the strategies that sample several answers at one temperature (best of n,
    /// self-consistency, mixture-of-agents proposers) when the request sets none; `None` (the
    /// default) keeps each strategy's own. The request's temperature always wins.
    pub temperature: Option<f32>,
    /// The verifier of `_verifier` stages and of the strategies that need one (`repair`,
    /// `codet`); building one of them without it is an error.
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
    match spec.stages() {
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
    // The verifier of a `_verifier` stage or of a strategy that needs one; `None` otherwise.
    let verifier = if stage.verifier || stage.strategy.needs_verifier() {
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
    (stage.strategy.build)(Box::new(client), defaults, verifier)
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
