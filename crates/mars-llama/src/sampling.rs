//! Sampling options mapped to a llama.cpp sampler chain, with llama-server's defaults.
//!
//! The chain is llama.cpp's default order restricted to the options mars has:
//! top-k, top-p, min-p, temperature, then a draw seeded per sequence. A temperature of 0 (or
//! below) is greedy decoding. Options left `None` take llama-server's defaults, so that the two
//! backends answer alike.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use llama_cpp_2::sampling::LlamaSampler;
use mars::{Error, Result, SamplingOptions};

/// llama-server's default temperature.
pub const DEFAULT_TEMPERATURE: f32 = 0.8;
/// llama-server's default top-k.
pub const DEFAULT_TOP_K: u32 = 40;
/// llama-server's default top-p.
pub const DEFAULT_TOP_P: f32 = 0.95;
/// llama-server's min-p, which mars's options do not expose.
pub const MIN_P: f32 = 0.05;

/// A fully decided sampler configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SamplerSpec {
    /// 0 or below: greedy.
    pub(crate) temperature: f32,
    /// 0: off.
    pub(crate) top_k: i32,
    /// 1: off.
    pub(crate) top_p: f32,
    /// The seed of the draw, as llama.cpp takes it.
    pub(crate) seed: u32,
}

impl SamplerSpec {
    /// Decides the configuration for `options`; without a seed, a fresh random one is drawn.
    pub(crate) fn from_options(options: &SamplingOptions) -> Result<Self> {
        let temperature = options.temperature.unwrap_or(DEFAULT_TEMPERATURE);
        if temperature.is_nan() {
            return Err(invalid("temperature", "is NaN"));
        }
        let top_p = options.top_p.unwrap_or(DEFAULT_TOP_P);
        if !(0.0..=1.0).contains(&top_p) {
            return Err(invalid("top_p", "must lie in [0, 1]"));
        }
        let top_k = i32::try_from(options.top_k.unwrap_or(DEFAULT_TOP_K)).unwrap_or(i32::MAX);
        let seed = options.seed.unwrap_or_else(random_seed);
        Ok(SamplerSpec {
            temperature,
            top_k,
            top_p,
            seed: fold_seed(seed),
        })
    }

    /// Builds the llama.cpp sampler chain.
    pub(crate) fn build(&self) -> LlamaSampler {
        if self.temperature <= 0.0 {
            return LlamaSampler::greedy();
        }
        let mut chain = Vec::with_capacity(5);
        if self.top_k > 0 {
            chain.push(LlamaSampler::top_k(self.top_k));
        }
        if self.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(self.top_p, 1));
        }
        chain.push(LlamaSampler::min_p(MIN_P, 1));
        chain.push(LlamaSampler::temp(self.temperature));
        chain.push(LlamaSampler::dist(self.seed));
        LlamaSampler::chain_simple(chain)
    }
}

/// Maps a 64-bit seed to llama.cpp's 32 bits, avoiding `u32::MAX`, which llama.cpp reads as
/// "pick a random seed" and would make a seeded request irreproducible.
pub(crate) fn fold_seed(seed: u64) -> u32 {
    let folded = (seed ^ (seed >> 32)) as u32;
    if folded == u32::MAX {
        u32::MAX - 1
    } else {
        folded
    }
}

fn random_seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}

fn invalid(field: &'static str, reason: &str) -> Error {
    Error::InvalidConfig {
        field,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_fold_into_32_bits_without_the_random_marker() {
        let cases = [
            (0u64, 0u32),
            (7, 7),
            (u64::from(u32::MAX), u32::MAX - 1),
            (1 << 32, 1),
            (u64::MAX, 0),
            ((5 << 32) | 3, 6),
        ];
        for (seed, want) in cases {
            assert_eq!(fold_seed(seed), want, "{seed:#x}");
        }
    }

    #[test]
    fn options_fill_in_llama_server_defaults() {
        let spec = SamplerSpec::from_options(&SamplingOptions {
            seed: Some(3),
            ..SamplingOptions::default()
        })
        .unwrap();
        assert_eq!(
            spec,
            SamplerSpec {
                temperature: DEFAULT_TEMPERATURE,
                top_k: 40,
                top_p: DEFAULT_TOP_P,
                seed: 3
            }
        );
        let spec = SamplerSpec::from_options(&SamplingOptions {
            temperature: Some(0.0),
            top_k: Some(u32::MAX),
            top_p: Some(1.0),
            seed: Some(9),
            ..SamplingOptions::default()
        })
        .unwrap();
        assert_eq!(
            (spec.temperature, spec.top_k, spec.top_p),
            (0.0, i32::MAX, 1.0)
        );
    }

    #[test]
    fn invalid_options_are_rejected() {
        for options in [
            SamplingOptions {
                top_p: Some(1.5),
                ..SamplingOptions::default()
            },
            SamplingOptions {
                temperature: Some(f32::NAN),
                ..SamplingOptions::default()
            },
        ] {
            let err = SamplerSpec::from_options(&options).unwrap_err();
            assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
        }
    }
}
