//! Report maths: Wilson intervals, unbiased pass@k, percentiles.

use serde::{Deserialize, Serialize};

/// A proportion with its 95% Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Proportion {
    /// Successes.
    pub successes: u64,
    /// Trials.
    pub trials: u64,
    /// `successes / trials` (0 when there were no trials).
    pub rate: f64,
    /// Lower end of the 95% Wilson interval.
    pub low: f64,
    /// Upper end of the 95% Wilson interval.
    pub high: f64,
}

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

impl Proportion {
    /// `successes` out of `trials`, with the 95% Wilson score interval. With no trials the
    /// interval is the whole of [0, 1].
    pub fn wilson(successes: u64, trials: u64) -> Self {
        if trials == 0 {
            return Proportion {
                successes,
                trials,
                rate: 0.0,
                low: 0.0,
                high: 1.0,
            };
        }
        let n = trials as f64;
        let p = successes as f64 / n;
        let z2 = Z95 * Z95;
        let denominator = 1.0 + z2 / n;
        let centre = (p + z2 / (2.0 * n)) / denominator;
        let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
        Proportion {
            successes,
            trials,
            rate: p,
            low: (centre - half).max(0.0),
            high: (centre + half).min(1.0),
        }
    }

    /// Whether this proportion's interval lies entirely above `other`'s.
    pub fn beats(&self, other: &Proportion) -> bool {
        self.trials > 0 && other.trials > 0 && self.low > other.high
    }
}

/// The unbiased estimator of pass@k (Chen et al. 2021) for one task: the probability that at
/// least one of `k` samples drawn without replacement from `n` samples, `c` of them correct, is
/// correct. `None` when `k` is 0 or exceeds `n`, or `c > n`.
pub fn pass_at_k(n: u64, c: u64, k: u64) -> Option<f64> {
    if k == 0 || k > n || c > n {
        return None;
    }
    if n - c < k {
        return Some(1.0);
    }
    // 1 - C(n-c, k) / C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k / i)
    let product: f64 = ((n - c + 1)..=n)
        .map(|i| 1.0 - k as f64 / i as f64)
        .product();
    Some(1.0 - product)
}

/// The `q`-th percentile (0..=100) of `values` by linear interpolation between closest ranks
/// (the method of numpy's default). `None` for an empty slice.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() || !(0.0..=100.0).contains(&q) {
        return None;
    }
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = q / 100.0 * (sorted.len() - 1) as f64;
    let below = rank.floor() as usize;
    let above = rank.ceil() as usize;
    let weight = rank - below as f64;
    Some(sorted[below] + (sorted[above] - sorted[below]) * weight)
}

/// The arithmetic mean; `None` for an empty slice.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    #[test]
    fn wilson_against_hand_computed_values() {
        // 7/10: p = 0.7, z = 1.96: centre = (0.7 + 0.19207) / 1.38415 = 0.64450,
        // half = 1.96 * sqrt(0.021 + 0.0096036) / 1.38415 = 0.24771.
        let p = Proportion::wilson(7, 10);
        assert!(close(p.low, 0.396_778), "{p:?}");
        assert!(close(p.high, 0.892_209), "{p:?}");
        // 0/10: low is 0, high = z^2/n / (1 + z^2/n) = 0.38415 / 1.38415.
        let p = Proportion::wilson(0, 10);
        assert_eq!(p.low, 0.0);
        assert!(close(p.high, 0.277_53), "{p:?}");
        // 10/10 mirrors 0/10.
        let p = Proportion::wilson(10, 10);
        assert!(close(p.low, 1.0 - 0.277_53), "{p:?}");
        assert!(close(p.high, 1.0), "{p:?}");
        let p = Proportion::wilson(0, 0);
        assert_eq!((p.rate, p.low, p.high), (0.0, 0.0, 1.0));
    }

    #[test]
    fn beating_needs_disjoint_intervals() {
        assert!(Proportion::wilson(10, 10).beats(&Proportion::wilson(0, 10)));
        assert!(!Proportion::wilson(7, 10).beats(&Proportion::wilson(5, 10)));
    }

    #[test]
    fn pass_at_k_against_hand_computed_values() {
        assert_eq!(pass_at_k(10, 0, 1), Some(0.0));
        assert!(close(pass_at_k(10, 3, 1).unwrap(), 0.3));
        // 1 - C(7,2)/C(10,2) = 1 - 21/45
        assert!(close(pass_at_k(10, 3, 2).unwrap(), 1.0 - 21.0 / 45.0));
        // 1 - C(2,5)/.. : fewer than k failures means certain success.
        assert_eq!(pass_at_k(10, 8, 5), Some(1.0));
        assert_eq!(pass_at_k(5, 1, 6), None);
        assert_eq!(pass_at_k(5, 1, 0), None);
    }

    #[test]
    fn percentiles_interpolate() {
        let values = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&values, 50.0), Some(2.5));
        assert_eq!(percentile(&values, 0.0), Some(1.0));
        assert_eq!(percentile(&values, 100.0), Some(4.0));
        // rank 0.95 * 3 = 2.85 -> 3 + 0.85 * (4 - 3)
        assert!(close(percentile(&values, 95.0).unwrap(), 3.85));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(mean(&values), Some(2.5));
    }
}
