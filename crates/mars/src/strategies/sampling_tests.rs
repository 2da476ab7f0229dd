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
