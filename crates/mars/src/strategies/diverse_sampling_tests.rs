use super::*;
use crate::Error;

#[test]
fn samples_keep_other_options_and_set_temperature_and_seed() {
    let config = DiverseSamplingConfig {
        n: 3,
        min_temperature: 0.0,
        max_temperature: 1.0,
        ..DiverseSamplingConfig::default()
    };
    let base = SamplingOptions {
        seed: Some(9),
        max_tokens: Some(64),
        stop: vec!["END".into()],
        temperature: Some(0.3),
        ..SamplingOptions::default()
    };
    let samples = config.samples(&base);
    let temperatures: Vec<_> = samples.iter().map(|s| s.temperature).collect();
    assert_eq!(temperatures, [Some(0.0), Some(0.5), Some(1.0)]);
    let seeds: Vec<_> = samples.iter().map(|s| s.seed).collect();
    assert_eq!(
        seeds,
        derive_seeds(9, 3).into_iter().map(Some).collect::<Vec<_>>()
    );
    assert!(
        samples
            .iter()
            .all(|s| s.max_tokens == Some(64) && s.stop == ["END"])
    );
    let unseeded = config.samples(&SamplingOptions::default());
    assert_eq!(
        unseeded[0].seed,
        Some(derive_seeds(DEFAULT_BASE_SEED, 1)[0])
    );
}

#[test]
fn invalid_configs_are_rejected() {
    let cases: &[(DiverseSamplingConfig, &str)] = &[
        (
            DiverseSamplingConfig {
                n: 0,
                ..DiverseSamplingConfig::default()
            },
            "n",
        ),
        (
            DiverseSamplingConfig {
                min_temperature: -0.1,
                ..DiverseSamplingConfig::default()
            },
            "min_temperature",
        ),
        (
            DiverseSamplingConfig {
                max_temperature: f32::NAN,
                ..DiverseSamplingConfig::default()
            },
            "max_temperature",
        ),
        (
            DiverseSamplingConfig {
                min_temperature: 1.2,
                max_temperature: 0.4,
                ..DiverseSamplingConfig::default()
            },
            "min_temperature",
        ),
    ];
    for (config, expected_field) in cases {
        let err = DiverseSampling::new((), config.clone()).unwrap_err();
        match err {
            Error::InvalidConfig { field, .. } => assert_eq!(field, *expected_field),
            other => panic!("{other:?}"),
        }
    }
    assert!(DiverseSampling::new((), DiverseSamplingConfig::default()).is_ok());
}
