use super::*;
use crate::Error;
use crate::client::Usage;
use crate::strategies::sampling::derive_seeds;
use crate::strategies::selection::ranked;
use crate::strategies::{CallFailure, Candidate, Score};

#[test]
fn candidates_share_a_temperature_and_get_distinct_seeds() {
    let config = BestOfNConfig {
        n: 3,
        ..BestOfNConfig::default()
    };
    // The request's temperature wins over the configured 0.8.
    let base = SamplingOptions {
        temperature: Some(0.1),
        max_tokens: Some(32),
        ..SamplingOptions::default()
    };
    let samples = config.samples(&base);
    assert!(
        samples
            .iter()
            .all(|s| s.temperature == Some(0.1) && s.max_tokens == Some(32))
    );
    let seeds: Vec<_> = samples.iter().filter_map(|s| s.seed).collect();
    assert_eq!(seeds, derive_seeds(DEFAULT_BASE_SEED, 3));
    // The configured temperature fills in only what the request leaves unset.
    let unset = SamplingOptions {
        temperature: None,
        ..base.clone()
    };
    assert!(
        config
            .samples(&unset)
            .iter()
            .all(|s| s.temperature == Some(0.8))
    );
    let keep = BestOfNConfig {
        temperature: None,
        ..config
    };
    assert!(
        keep.samples(&base)
            .iter()
            .all(|s| s.temperature == Some(0.1))
    );
}

#[test]
fn invalid_configs_are_rejected() {
    let judge = |judge: JudgeConfig| BestOfNConfig {
        selector: Selector::Judge(judge),
        ..BestOfNConfig::default()
    };
    let cases: Vec<(BestOfNConfig, &str)> = vec![
        (
            BestOfNConfig {
                n: 0,
                ..BestOfNConfig::default()
            },
            "n",
        ),
        (
            BestOfNConfig {
                temperature: Some(-1.0),
                ..BestOfNConfig::default()
            },
            "temperature",
        ),
        (
            judge(JudgeConfig {
                instruction: " ".into(),
                ..JudgeConfig::default()
            }),
            "selector.instruction",
        ),
        (
            judge(JudgeConfig {
                max_tokens: 0,
                ..JudgeConfig::default()
            }),
            "selector.max_tokens",
        ),
        (
            judge(JudgeConfig {
                temperature: f32::INFINITY,
                ..JudgeConfig::default()
            }),
            "selector.temperature",
        ),
    ];
    for (config, expected_field) in cases {
        match BestOfN::new((), config).unwrap_err() {
            Error::InvalidConfig { field, .. } => assert_eq!(field, expected_field),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn ranking_reads_the_score_of_each_kind() {
    let candidate = |score: Score, text: &str| Candidate {
        options: SamplingOptions::default(),
        text: text.into(),
        finish_reason: None,
        usage: Usage::default(),
        score,
        dropped: None,
    };
    let judged = candidate(
        Score::Judge {
            rating: 7.0,
            parsed: true,
            reply: "7".into(),
            usage: Usage::default(),
        },
        "héllo",
    );
    assert_eq!(ranked(&judged), Some((7.0, 5)), "length in characters");
    let verified = candidate(Score::Verifier { score: Some(0.5) }, "ab");
    assert_eq!(ranked(&verified), Some((0.5, 2)));
    let nan = ranked(&candidate(Score::Verifier { score: None }, "ab"));
    assert!(nan.is_some_and(|(s, _)| s.is_nan()));
    let mut dropped = candidate(Score::Unscored, "");
    dropped.dropped = Some(CallFailure {
        call: "c".into(),
        error: "e".into(),
    });
    assert_eq!(ranked(&dropped), None);
}
