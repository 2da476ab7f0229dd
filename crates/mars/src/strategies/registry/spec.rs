//! Strategy specs: a strategy or a pipeline of strategies by name (`bon`,
//! `best_of_n_verifier`, `re2&cot_reflection`), parsed, listed and serialised.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::StrategyName;
use crate::error::{Error, Result};
use crate::strategies::wrapper::Algorithm;
use crate::strategies::{BaselineConfig, BestOfNConfig, DiverseSamplingConfig, ReReadConfig};

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
                strategy,
                verifier: false
            }] if strategy.name() == BaselineConfig::NAME
        )
    }

    /// Whether any stage selects with the verifier, or needs one
    /// ([`StrategyName::needs_verifier`]).
    pub fn uses_verifier(&self) -> bool {
        self.stages
            .iter()
            .any(|s| s.verifier || s.strategy.needs_verifier())
    }

    /// The seed's four strategies: baseline, reread, diverse_sampling, best_of_n.
    pub fn seed() -> Vec<StrategySpec> {
        [
            BaselineConfig::NAME,
            ReReadConfig::NAME,
            DiverseSamplingConfig::NAME,
            BestOfNConfig::NAME,
        ]
        .into_iter()
        .filter_map(StrategyName::parse)
        .map(StrategySpec::single)
        .collect()
    }

    /// Every strategy once, then each verifier variant.
    pub fn all() -> Vec<StrategySpec> {
        let plain = StrategyName::ALL.iter().copied().map(StrategySpec::single);
        let verified = StrategyName::ALL
            .iter()
            .copied()
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
                names(
                    StrategyName::ALL
                        .iter()
                        .copied()
                        .filter(|s| s.takes_verifier())
                )
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
        names(StrategyName::ALL.iter().copied()),
        StrategyName::ALL
            .iter()
            .map(|s| s.slug())
            .collect::<Vec<_>>()
            .join(", "),
        names(
            StrategyName::ALL
                .iter()
                .copied()
                .filter(|s| s.takes_verifier())
        ),
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
