//! Tests of the registry: names, slugs, specs, lists, serialisation, building.

use super::*;

#[test]
fn specs_parse_slugs_and_names_and_display_names() {
    let cases: &[(&str, &str)] = &[
        ("none", "baseline"),
        ("baseline", "baseline"),
        ("re2", "reread"),
        ("reread", "reread"),
        ("diverse", "diverse_sampling"),
        ("bon", "best_of_n"),
        ("bon_verifier", "best_of_n_verifier"),
        ("self_consistency", "self_consistency"),
        ("self_consistency_verifier", "self_consistency_verifier"),
        ("moa", "mixture_of_agents"),
        ("mixture_of_agents", "mixture_of_agents"),
        ("cot_reflection", "cot_reflection"),
        ("plansearch", "plansearch"),
        ("plansearch_verifier", "plansearch_verifier"),
        ("leap", "leap"),
        ("rto", "rto"),
        (
            "moa&re2&cot_reflection",
            "mixture_of_agents&reread&cot_reflection",
        ),
        ("best_of_n_verifier", "best_of_n_verifier"),
        ("re2&bon", "reread&best_of_n"),
        (" re2 & none ", "reread&baseline"),
    ];
    for &(text, shown) in cases {
        let spec: StrategySpec = text.parse().unwrap();
        assert_eq!(spec.to_string(), shown, "{text}");
        let again: StrategySpec = shown.parse().unwrap();
        assert_eq!(again, spec, "{text} round-trips");
    }
}

#[test]
fn bad_specs_are_rejected_with_the_reason() {
    let cases: &[(&str, &str)] = &[
        ("bogus", "unknown strategy \"bogus\""),
        ("re2&", "empty stage"),
        ("&re2", "empty stage"),
        ("reread_verifier", "does not select with a verifier"),
        ("bon_verifier_verifier", "unknown strategy"),
    ];
    for &(text, expected) in cases {
        let err = text.parse::<StrategySpec>().unwrap_err().to_string();
        assert!(err.contains(expected), "{text}: {err}");
    }
}

#[test]
fn lists_expand_groups_and_drop_duplicates() {
    let shown = |list: &str| -> Vec<String> {
        StrategySpec::parse_list(list)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(
        shown("seed"),
        ["baseline", "reread", "diverse_sampling", "best_of_n"]
    );
    assert_eq!(shown("re2, reread, none"), ["reread", "baseline"]);
    let all = shown("all");
    assert_eq!(all.len(), StrategyName::ALL.len() + 3);
    for verified in [
        "best_of_n_verifier",
        "self_consistency_verifier",
        "plansearch_verifier",
    ] {
        assert!(all.contains(&verified.to_owned()), "{verified}");
    }
    assert!(StrategySpec::parse_list(" , ").is_err());
}

#[test]
fn specs_serialise_as_their_names() {
    let spec: StrategySpec = "re2&bon".parse().unwrap();
    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(json, "\"reread&best_of_n\"");
    let back: StrategySpec = serde_json::from_str("\"re2&bon\"").unwrap();
    assert_eq!(back, spec);
    assert!(serde_json::from_str::<StrategySpec>("\"nope\"").is_err());
}

#[test]
fn a_verifier_stage_needs_a_verifier() {
    let spec: StrategySpec = "bon_verifier".parse().unwrap();
    let client = crate::ScriptedClient::new([]);
    let err = build(&spec, &client, &Defaults::default()).err().unwrap();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "verifier",
                ..
            }
        ),
        "{err}"
    );
}
