//! Choosing a strategy: a model-name prefix (`moa-llama3`, `re2&moa-llama3`, `bon|moa-llama3`),
//! the `optillm_approach` / `mars_strategy` body fields, or an
//! `<optillm_approach>x</optillm_approach>` tag in a message. Pure functions, table-tested.

use mars::strategies::registry::{StrategyName, StrategySpec};

use crate::error::ApiError;

/// The strategies of a request: one spec per alternative (`a|b` gives two), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strategies {
    /// One spec per alternative; each alternative answers as its own choice.
    pub alternatives: Vec<StrategySpec>,
}

impl Strategies {
    /// Whether any alternative has a stage that runs the verifier.
    pub fn uses_verifier(&self) -> bool {
        self.alternatives.iter().any(StrategySpec::uses_verifier)
    }

    /// The label reported in `X-Mars-Strategy` and `usage.mars.strategy`: mars names, stages
    /// joined by `&`, alternatives by `|`.
    pub fn label(&self) -> String {
        self.alternatives
            .iter()
            .map(StrategySpec::as_str)
            .collect::<Vec<_>>()
            .join("|")
    }
}

/// Most stages in one request, over every alternative (`a&b|c` has three): keeps the work of
/// a request, and the labels in `/metrics`, bounded.
pub const MAX_STAGES: usize = 8;

/// Parses `a&b|c` into specs. An unknown stage, a `_verifier` stage when the server has no
/// verifier (`verifiers` false), an empty alternative or more than [`MAX_STAGES`] stages is a
/// 400 naming `field` (and the stage); the message lists the valid names.
pub fn parse_strategies(
    text: &str,
    field: &str,
    servable: &[StrategyName],
    verifiers: bool,
) -> Result<Strategies, ApiError> {
    let stages = text.split(['|', '&']).count();
    if stages > MAX_STAGES {
        return Err(ApiError::bad_field(
            field,
            format!("{stages} strategy stages; at most {MAX_STAGES} are served in one request"),
        ));
    }
    let mut alternatives = Vec::new();
    for alternative in text.split('|') {
        let alternative = alternative.trim();
        for stage in alternative.split('&').map(str::trim) {
            check_stage(stage, field, servable, verifiers)?;
        }
        let spec: StrategySpec = alternative
            .parse()
            .map_err(|err: mars::Error| ApiError::bad_field(field, err.to_string()))?;
        alternatives.push(spec);
    }
    Ok(Strategies { alternatives })
}

fn check_stage(
    stage: &str,
    field: &str,
    servable: &[StrategyName],
    verifiers: bool,
) -> Result<(), ApiError> {
    let valid = || valid_names(servable);
    if stage.is_empty() {
        return Err(ApiError::bad_field(
            field,
            format!("an empty strategy stage; valid strategies: {}", valid()),
        ));
    }
    match StrategyName::parse(stage) {
        Some(name) if servable.contains(&name) => Ok(()),
        Some(name) => Err(needs_verifier(field, name.name())),
        // The spec's own parser says which strategies have a `_verifier` form.
        None if stage.ends_with("_verifier") && verifiers => Ok(()),
        None if stage.ends_with("_verifier") => Err(needs_verifier(field, stage)),
        None => Err(ApiError::bad_field(
            field,
            format!("unknown strategy {stage:?}; valid strategies: {}", valid()),
        )),
    }
}

/// 400 for a strategy that selects with a verifier when the server has none to give it.
pub fn needs_verifier(field: &str, stage: &str) -> ApiError {
    ApiError::bad_field(
        field,
        format!(
            "strategy {stage:?} needs a verifier (code tests run in the sandbox), which this \
             server does not have (started with --sandbox off, or the sandbox does not start \
             on its host); it is not served"
        ),
    )
}

/// Every servable name: mars names and optillm slugs.
pub fn valid_names(servable: &[StrategyName]) -> String {
    servable
        .iter()
        .map(|s| {
            if s.slug() == s.name() {
                s.name().to_owned()
            } else {
                format!("{} ({})", s.name(), s.slug())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A model name split at its first `-` into a strategy prefix and the rest, when the prefix
/// is made of strategy names joined by `&` or `|` (each a mars name, an optillm slug or a
/// `_verifier` form), or of several stages of which one is such a name. `None` when the name
/// has no such prefix.
pub fn split_prefix(model: &str) -> Option<(&str, &str)> {
    let (prefix, rest) = model.split_once('-')?;
    if rest.is_empty() || prefix.is_empty() {
        return None;
    }
    let is_stage = |stage: &str| {
        StrategyName::parse(stage).is_some()
            || stage
                .strip_suffix("_verifier")
                .and_then(StrategyName::parse)
                .is_some()
    };
    let stages: Vec<&str> = prefix.split(['|', '&']).collect();
    // Every stage a strategy; or several stages, one a strategy (`re2&nosuch-m`): a prefix
    // with a typo, which parsing then reports by name.
    let all = stages.iter().all(|s| is_stage(s));
    let some = stages.len() > 1 && stages.iter().any(|s| is_stage(s));
    (all || some).then_some((prefix, rest))
}

const TAG_OPEN: &str = "<optillm_approach>";
const TAG_CLOSE: &str = "</optillm_approach>";

/// Finds the first `<optillm_approach>x</optillm_approach>` tag in `text`, returning `x` and
/// the text without the tag (trimmed).
pub fn strip_tag(text: &str) -> Option<(String, String)> {
    let start = text.find(TAG_OPEN)?;
    let after = start + TAG_OPEN.len();
    let len = text[after..].find(TAG_CLOSE)?;
    let value = text[after..after + len].trim().to_owned();
    let rest = format!(
        "{}{}",
        &text[..start],
        &text[after + len + TAG_CLOSE.len()..]
    );
    Some((value, rest.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<StrategyName> {
        StrategyName::ALL.to_vec()
    }

    #[test]
    fn prefixes_split_only_on_strategy_names() {
        let cases = [
            ("moa-llama3", Some(("moa", "llama3"))),
            (
                "re2&moa-qwen2.5-coder:0.5b",
                Some(("re2&moa", "qwen2.5-coder:0.5b")),
            ),
            ("bon|moa-m", Some(("bon|moa", "m"))),
            ("self_consistency-m", Some(("self_consistency", "m"))),
            ("best_of_n_verifier-m", Some(("best_of_n_verifier", "m"))),
            ("qwen2.5-coder:0.5b", None),
            ("moa-", None),
            ("llama3", None),
            ("re2&nope-m", Some(("re2&nope", "m"))),
            ("nope&nada-m", None),
        ];
        for (model, want) in cases {
            assert_eq!(split_prefix(model), want, "{model}");
        }
    }

    #[test]
    fn strategies_parse_with_alternatives_and_pipelines() {
        let parsed = parse_strategies("re2&moa|bon", "model", &all(), false).unwrap();
        assert_eq!(parsed.label(), "reread&mixture_of_agents|best_of_n");
        let err = parse_strategies("re2&nope", "optillm_approach", &all(), false).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("optillm_approach"));
        assert!(err.message.contains("\"nope\""), "{}", err.message);
        assert!(
            err.message.contains("mixture_of_agents (moa)"),
            "{}",
            err.message
        );
        let err = parse_strategies("bon|", "model", &all(), false).unwrap_err();
        assert!(err.message.contains("empty"), "{}", err.message);
        assert!(parse_strategies(&["re2"; 8].join("&"), "model", &all(), false).is_ok());
        let err = parse_strategies(&["re2"; 5].join("&|"), "model", &all(), false).unwrap_err();
        assert!(err.message.contains("9 strategy stages"), "{}", err.message);
        let err = parse_strategies(&["re2"; 9].join("|"), "model", &all(), false).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("model"));
        assert!(err.message.contains("at most 8"), "{}", err.message);
    }

    #[test]
    fn verifier_strategies_are_refused() {
        let err = parse_strategies("best_of_n_verifier", "model", &all(), false).unwrap_err();
        assert!(err.message.contains("verifier"), "{}", err.message);
        let servable: Vec<_> = all().into_iter().filter(|s| s.slug() != "bon").collect();
        let err = parse_strategies("bon", "model", &servable, false).unwrap_err();
        assert!(err.message.contains("needs a verifier"), "{}", err.message);
    }

    #[test]
    fn strategies_that_need_a_verifier_are_not_served() {
        let servable = crate::core::AppState::servable_strategies();
        for name in ["repair", "codet"] {
            let strategy = StrategyName::parse(name).unwrap();
            assert!(strategy.needs_verifier());
            assert!(!servable.contains(&strategy), "{name}");
            let err = parse_strategies(name, "model", &servable, false).unwrap_err();
            assert!(err.message.contains("needs a verifier"), "{}", err.message);
        }
        assert!(servable.iter().any(|s| s.slug() == "moa"));
    }

    #[test]
    fn code_strategies_are_served_with_a_verifier() {
        let servable = crate::core::AppState::servable_strategies_with(true);
        for name in [
            "repair",
            "codet",
            "repair&codet",
            "best_of_n_verifier|bon_verifier",
        ] {
            let parsed = parse_strategies(name, "model", &servable, true).unwrap();
            assert!(parsed.uses_verifier(), "{name}");
        }
        assert!(
            !parse_strategies("re2&moa", "model", &servable, true)
                .unwrap()
                .uses_verifier()
        );
        // A `_verifier` form of a strategy that has none is still refused, by the spec's parser.
        let err = parse_strategies("moa_verifier", "model", &servable, true).unwrap_err();
        assert!(
            err.message.contains("does not select with a verifier"),
            "{}",
            err.message
        );
    }

    #[test]
    fn tags_are_found_and_stripped() {
        assert_eq!(
            strip_tag("<optillm_approach>moa</optillm_approach> What is 2+2?"),
            Some(("moa".into(), "What is 2+2?".into()))
        );
        assert_eq!(
            strip_tag("Q <optillm_approach> re2 </optillm_approach>"),
            Some(("re2".into(), "Q".into()))
        );
        assert_eq!(strip_tag("no tag"), None);
        assert_eq!(strip_tag("<optillm_approach>open"), None);
    }
}
