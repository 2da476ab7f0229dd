//! Tests of the registry: names, slugs, specs, lists, serialisation, building.

use super::*;
use crate::Error;

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
        ("repair", "repair"),
        ("codet", "codet"),
        ("re2&repair", "reread&repair"),
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
        ("repair_verifier", "does not select with a verifier"),
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
    assert_eq!(all.len(), StrategyName::ALL.len() + 4);
    for verified in [
        "best_of_n_verifier",
        "self_consistency_verifier",
        "plansearch_verifier",
        "mars_verifier",
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
fn a_verifier_stage_and_the_strategies_that_need_one_need_a_verifier() {
    let client = crate::ScriptedClient::new([]);
    for text in ["bon_verifier", "repair", "codet", "re2&repair"] {
        let spec: StrategySpec = text.parse().unwrap();
        assert!(spec.uses_verifier(), "{text}");
        let err = build(&spec, &client, &Defaults::default()).err().unwrap();
        assert!(
            matches!(
                err,
                Error::InvalidConfig {
                    field: "verifier",
                    ..
                }
            ),
            "{text}: {err}"
        );
    }
    let plain: StrategySpec = "bon&re2".parse().unwrap();
    assert!(!plain.uses_verifier());
    let needing: Vec<&str> = StrategyName::ALL
        .iter()
        .filter(|s| s.needs_verifier())
        .map(|s| s.name())
        .collect();
    assert_eq!(needing, ["repair", "codet"]);
}

/// A verifier that scores by length (so every candidate passes a repair check) and runs tests
/// by passing those whose line is shorter than the candidate.
fn verifier() -> Verifier {
    Verifier::new(|_request, candidate: &str| {
        let score = candidate.len() as f64;
        async move { score }
    })
    .with_tests(|_request, candidate: &str, tests: &[String]| {
        let results: Vec<crate::strategies::feedback::TestResult> = tests
            .iter()
            .map(|t| crate::strategies::feedback::TestResult {
                test: t.clone(),
                visible: false,
                passed: t.len() < candidate.len(),
            })
            .collect();
        async move { results }
    })
}

/// A model that gives every kind of call something it can use: a rating to judges, a list to
/// list prompts, and code otherwise; with usage, so token sums are known.
fn obliging_model() -> crate::ScriptedClient {
    crate::ScriptedClient::from_fn(|i, request| {
        let prompt = request.last_user_message().unwrap_or_default();
        let text = if prompt.starts_with("Rate the above") {
            "Rating: 7".to_owned()
        } else {
            format!("1. idea {i}\n2. more\n```rust\nfn f() -> u32 {{ {i} }}\n```")
        };
        crate::Turn::text(text).with_usage(crate::Usage {
            prompt_tokens: Some(10),
            completion_tokens: Some(3),
            model_calls: 1,
            ..crate::Usage::default()
        })
    })
}

#[tokio::test]
async fn every_spec_counts_exactly_the_calls_it_makes() {
    let defaults = Defaults {
        n: 2,
        temperature: Some(0.3),
        verifier: Some(verifier()),
        ..Defaults::default()
    };
    let mut specs = StrategySpec::all();
    specs.push("moa&re2&cot_reflection".parse().unwrap());
    specs.push("bon_verifier&leap".parse().unwrap());
    specs.push("re2&repair".parse().unwrap());
    specs.push("codet&re2".parse().unwrap());
    for spec in specs {
        let client = obliging_model();
        let strategy = build(&spec, &client, &defaults).unwrap();
        // A strategy's own name (a verifier changes how it selects, not what it is); a
        // pipeline's is its spec.
        let name = match spec.stages() {
            [stage] => stage.strategy.name(),
            _ => spec.as_str(),
        };
        assert_eq!(strategy.name(), name);
        let request = crate::ChatRequest::new("Write f.")
            .with_system("Be terse.")
            .with_options(crate::SamplingOptions {
                seed: Some(5),
                max_tokens: Some(40),
                ..Default::default()
            });
        let outcome = strategy.run(request).await.unwrap();
        let requests = client.requests();
        assert_eq!(outcome.strategy, name);
        assert_eq!(
            outcome.usage.model_calls as usize,
            requests.len(),
            "{spec}: calls counted vs made"
        );
        assert_eq!(
            outcome.usage.prompt_tokens,
            Some(10 * requests.len() as u64),
            "{spec}"
        );
        assert_eq!(
            outcome.usage.completion_tokens,
            Some(3 * requests.len() as u64),
            "{spec}"
        );
        for sent in &requests {
            let system = sent.system.as_deref().unwrap_or_default();
            // MARS's verifications and extractions review a solution rather than answer the
            // caller, and carry MARS's own system prompt (its documented exception).
            if [
                crate::strategies::mars::VERIFIER_SYSTEM,
                crate::strategies::mars::EXTRACTION_SYSTEM,
            ]
            .contains(&system)
            {
                continue;
            }
            assert!(
                system.starts_with("Be terse."),
                "{spec}: system prompt lost: {system:?}"
            );
        }
        assert!(!outcome.answer.is_empty(), "{spec}");
    }
}

#[tokio::test]
async fn defaults_reach_the_strategies() {
    let defaults = Defaults {
        n: 2,
        temperature: Some(0.3),
        ..Defaults::default()
    };
    let cases: &[(&str, usize)] = &[
        ("bon", 2),
        ("diverse", 2),
        ("self_consistency", 2),
        // The two proposals and the aggregation.
        ("moa", 3),
        ("plansearch", 2),
    ];
    for &(name, candidates) in cases {
        let client = obliging_model();
        let strategy = build(&name.parse().unwrap(), &client, &defaults).unwrap();
        let outcome = strategy.run("Write f.".into()).await.unwrap();
        assert_eq!(outcome.candidates.len(), candidates, "{name}");
        if name != "diverse" && name != "plansearch" {
            // One temperature for the samples: the default's, not the strategy's own.
            assert_eq!(
                outcome.candidates[0].options.temperature,
                Some(0.3),
                "{name}"
            );
        }
    }
}

#[test]
fn absurd_counts_are_configuration_errors() {
    let client = crate::ScriptedClient::new([]);
    for name in ["bon", "diverse", "self_consistency", "moa", "plansearch"] {
        let spec: StrategySpec = name.parse().unwrap();
        for n in [0, crate::strategies::sampling::MAX_SAMPLES + 1, usize::MAX] {
            let defaults = Defaults {
                n,
                ..Defaults::default()
            };
            let err = build(&spec, &client, &defaults).err();
            assert!(
                matches!(err, Some(Error::InvalidConfig { .. })),
                "{name} with n = {n}: {err:?}"
            );
        }
        let most = Defaults {
            n: crate::strategies::sampling::MAX_SAMPLES,
            ..Defaults::default()
        };
        assert!(build(&spec, &client, &most).is_ok(), "{name}");
    }
}

/// The one rule for sampling options: with `Defaults::default()`, every inner call of every
/// registered strategy (and of a pipeline) carries the request's temperature 0.2 and token limit
/// 64, and its seed is the request's 7 or one derived from it. The documented exceptions:
/// DiverseSampling's temperature ladder, MARS's temperature schedule and its per-call seeds,
/// and a judge call's own token limit.
#[tokio::test]
async fn the_requests_sampling_options_win_in_every_inner_call() {
    use crate::strategies::sampling::{derive_seeds, spaced_temperatures};
    use crate::strategies::test_support::request;
    let defaults = Defaults {
        verifier: Some(verifier()),
        ..Defaults::default()
    };
    let judge = crate::strategies::JudgeConfig::default();
    let mut seeds = derive_seeds(7, defaults.n);
    seeds.push(7);
    let mut specs = StrategySpec::all();
    specs.push("re2&bon&moa&cot_reflection&rto".parse().unwrap());
    for spec in specs {
        let client = obliging_model();
        let strategy = build(&spec, &client, &defaults).unwrap();
        strategy.run(request("Write f.")).await.unwrap();
        let sent = client.requests();
        assert!(!sent.is_empty(), "{spec}");
        let diverse = spec.as_str() == "diverse_sampling";
        let mars = spec.stages()[0].strategy.name() == "mars";
        if diverse {
            // The ladder is DiverseSampling's algorithm: its documented exception.
            let mut got: Vec<f32> = sent.iter().filter_map(|c| c.options.temperature).collect();
            got.sort_by(f32::total_cmp);
            assert_eq!(got, spaced_temperatures(0.2, 1.0, defaults.n), "{spec}");
        }
        for (i, call) in sent.iter().enumerate() {
            let options = &call.options;
            let is_judge = call
                .last_user_message()
                .is_some_and(|m| m.starts_with("Rate the above"));
            if !diverse && !mars {
                assert_eq!(options.temperature, Some(0.2), "{spec}: call {i}");
            }
            let max_tokens = if is_judge { judge.max_tokens } else { 64 };
            assert_eq!(options.max_tokens, Some(max_tokens), "{spec}: call {i}");
            let seed = options.seed.unwrap_or(u64::MAX);
            // MARS seeds each call on its own (its agents with the derived seeds).
            assert!(
                seeds.contains(&seed) || mars && seed < u64::MAX,
                "{spec}: call {i}: seed {seed}"
            );
        }
    }
}
