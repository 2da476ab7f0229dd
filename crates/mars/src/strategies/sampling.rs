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
    let reason = match n {
        0 => "at least one is needed".to_owned(),
        1..=MAX_SAMPLES => return Ok(()),
        _ => format!("{n} is not between 1 and {MAX_SAMPLES}"),
    };
    Err(crate::Error::InvalidConfig { field, reason })
}

/// The options of `n` samples of one request at one temperature: the request's options `base`,
/// its temperature filled in with `temperature` when it sets none (the request's wins), and the
/// seeds [`derive_seeds`] gives for `base.seed`, or for `base_seed` when the request has none.
pub fn seeded_samples(
    base: &SamplingOptions,
    temperature: Option<f32>,
    base_seed: u64,
    n: usize,
) -> Vec<SamplingOptions> {
    derive_seeds(base.seed.unwrap_or(base_seed), n)
        .into_iter()
        .map(|seed| SamplingOptions {
            temperature: base.temperature.or(temperature),
            seed: Some(seed),
            ..base.clone()
        })
        .collect()
}

/// [`Error::InvalidConfig`](crate::Error::InvalidConfig) naming `field` unless `temperature`
/// is unset or finite and at least 0.
pub(crate) fn check_temperature(
    field: &'static str,
    temperature: Option<f32>,
) -> crate::Result<()> {
    match temperature {
        Some(t) if !t.is_finite() || t < 0.0 => Err(crate::Error::InvalidConfig {
            field,
            reason: format!("{t} is not a temperature (finite, at least 0)"),
        }),
        _ => Ok(()),
    }
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
#[path = "sampling_tests.rs"]
mod tests;
