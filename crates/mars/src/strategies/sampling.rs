//! Sampling schedules for multi-sample strategies: evenly spaced temperatures and derived seeds.
//!
//! Pure functions, so that the temperatures and seeds a strategy sends can be computed (and
//! tested) without a model.

use crate::client::SamplingOptions;

/// Seeds are kept below this bound, because some backends read a seed as a signed 32-bit
/// integer.
pub const SEED_BOUND: u64 = 1 << 31;

/// The seed used when a request carries none, unless the strategy's config says otherwise.
pub const DEFAULT_BASE_SEED: u64 = 0;

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// `n` temperatures evenly spaced from `min` to `max`, both included.
///
/// One sample gets `min`. Sample `i` of `n > 1` gets `min + (max - min) * i / (n - 1)`, and the
/// last gets exactly `max`.
pub fn spaced_temperatures(min: f32, max: f32, n: usize) -> Vec<f32> {
    match n {
        0 => Vec::new(),
        1 => vec![min],
        _ => (0..n)
            .map(|i| {
                if i + 1 == n {
                    max
                } else {
                    min + (max - min) * (i as f32 / (n - 1) as f32)
                }
            })
            .collect(),
    }
}

/// The most samples, candidates, plans or examples one strategy call may ask for: far above any
/// useful setting, and low enough that a mistyped count is an error rather than an allocation
/// failure or hours of seed derivation.
pub const MAX_SAMPLES: usize = 1024;

/// [`Error::InvalidConfig`](crate::Error::InvalidConfig) naming `field` unless `1 <= n <=`
/// [`MAX_SAMPLES`].
pub(crate) fn check_count(field: &'static str, n: usize) -> crate::Result<()> {
    if (1..=MAX_SAMPLES).contains(&n) {
        return Ok(());
    }
    Err(crate::Error::InvalidConfig {
        field,
        reason: format!("{n} is not between 1 and {MAX_SAMPLES}"),
    })
}

/// The options of `n` samples of one request at one temperature: the request's options `base`
/// with `temperature` (when set) and the seeds [`derive_seeds`] gives for `base.seed`, or for
/// `base_seed` when the request has none.
pub fn seeded_samples(
    base: &SamplingOptions,
    temperature: Option<f32>,
    base_seed: u64,
    n: usize,
) -> Vec<SamplingOptions> {
    derive_seeds(base.seed.unwrap_or(base_seed), n)
        .into_iter()
        .map(|seed| SamplingOptions {
            temperature: temperature.or(base.temperature),
            seed: Some(seed),
            ..base.clone()
        })
        .collect()
}

/// `n` distinct seeds derived from `base`, each below [`SEED_BOUND`].
///
/// Seed `i` is the `(i + 1)`-th output of SplitMix64 started at `base` (the finaliser applied to
/// `base + (i + 1) * 0x9E3779B97F4A7C15`, wrapping), reduced to its low 31 bits; if that value is
/// already taken by an earlier seed of the list, the next free value (counting up, wrapping at
/// 2^31) is used instead. The same `base` always gives the same list, and lists from nearby bases
/// (as nested strategies produce: an outer strategy's candidate seeds become an inner strategy's
/// bases) do not overlap systematically, as `base + i` would.
pub fn derive_seeds(base: u64, n: usize) -> Vec<u64> {
    let mut seeds: Vec<u64> = Vec::with_capacity(n);
    for i in 0..n {
        let step = (i as u64).wrapping_add(1).wrapping_mul(GOLDEN_GAMMA);
        let mut seed = splitmix64_finalise(base.wrapping_add(step)) % SEED_BOUND;
        while seeds.contains(&seed) {
            seed = (seed + 1) % SEED_BOUND;
        }
        seeds.push(seed);
    }
    seeds
}

/// SplitMix64's output function (Steele, Lea and Flood 2014), a bijection on `u64`.
fn splitmix64_finalise(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperatures_are_evenly_spaced_and_end_exactly_on_the_bounds() {
        let cases: &[(f32, f32, usize, &[f32])] = &[
            (0.2, 1.0, 0, &[]),
            (0.2, 1.0, 1, &[0.2]),
            (0.2, 1.0, 2, &[0.2, 1.0]),
            (0.2, 1.0, 5, &[0.2, 0.4, 0.6, 0.8, 1.0]),
            (0.0, 1.5, 4, &[0.0, 0.5, 1.0, 1.5]),
            (0.7, 0.7, 3, &[0.7, 0.7, 0.7]),
        ];
        for &(min, max, n, expected) in cases {
            let got = spaced_temperatures(min, max, n);
            assert_eq!(got.len(), expected.len(), "{min}..={max} n={n}");
            for (g, e) in got.iter().zip(expected) {
                assert!((g - e).abs() < 1e-6, "{min}..={max} n={n}: {got:?}");
            }
            if n > 0 {
                assert_eq!(got[0], min);
                assert_eq!(got[n - 1], if n == 1 { min } else { max });
            }
        }
    }

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // First outputs of the reference SplitMix64 seeded with 0 (state += gamma; output mix).
        assert_eq!(splitmix64_finalise(GOLDEN_GAMMA), 0xE220_A839_7B1D_CDAF);
        assert_eq!(
            splitmix64_finalise(GOLDEN_GAMMA.wrapping_mul(2)),
            0x6E78_9E6A_A1B9_65F4
        );
    }

    #[test]
    fn seeds_are_deterministic_distinct_and_bounded() {
        for base in [0, 1, 42, u64::MAX] {
            let seeds = derive_seeds(base, 64);
            assert_eq!(seeds, derive_seeds(base, 64), "deterministic");
            assert_eq!(
                seeds[..5],
                derive_seeds(base, 5)[..],
                "a prefix of longer lists"
            );
            let mut unique = seeds.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), 64, "distinct for base {base}");
            assert!(seeds.iter().all(|&s| s < SEED_BOUND));
        }
        assert_eq!(derive_seeds(0, 2), vec![0x7B1D_CDAF, 0x21B9_65F4]);
        assert_ne!(derive_seeds(0, 4), derive_seeds(1, 4));
    }

    #[test]
    fn nearby_bases_do_not_share_seeds() {
        // An outer strategy hands consecutive-looking seeds to inner strategies; their derived
        // lists must not coincide shifted by one, as `base + i` would make them.
        let a = derive_seeds(7, 8);
        let b = derive_seeds(8, 8);
        assert!(a.iter().all(|s| !b.contains(s)), "{a:?} vs {b:?}");
    }

    #[test]
    fn no_seeds_for_no_samples() {
        assert!(derive_seeds(3, 0).is_empty());
    }
}
