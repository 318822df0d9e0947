use proptest::prelude::*;

use super::*;

/// Cliff's delta by its definition, over all pairs.
fn naive_delta(x: &[f64], y: &[f64]) -> f64 {
    let mut score = 0i64;
    for &a in x {
        for &b in y {
            score += i64::from(b > a) - i64::from(b < a);
        }
    }
    score as f64 / (x.len() * y.len()) as f64
}

#[test]
fn delta_sign_and_bounds() {
    // Positive: the fault window (y) is larger.
    assert_eq!(cliffs_delta(&[1.0, 2.0], &[3.0, 4.0]), Some(1.0));
    assert_eq!(cliffs_delta(&[3.0, 4.0], &[1.0, 2.0]), Some(-1.0));
    assert_eq!(cliffs_delta(&[1.0, 2.0], &[1.0, 2.0]), Some(0.0));
    // Ties count for neither side: y=2 beats x=1, ties x=2 → (1 − 0)/2.
    assert_eq!(cliffs_delta(&[1.0, 2.0], &[2.0]), Some(0.5));
    assert_eq!(cliffs_delta(&[-0.0], &[0.0]), Some(0.0));
    assert_eq!(cliffs_delta(&[], &[1.0]), None);
    assert_eq!(cliffs_delta(&[1.0], &[f64::NAN]), None);
}

#[test]
fn magnitude_thresholds() {
    use Magnitude::*;
    let label = |d| Magnitude::of_cliffs_delta(d).unwrap();
    assert_eq!(label(0.0), Negligible);
    assert_eq!(label(0.1469), Negligible);
    assert_eq!(label(0.147), Small);
    assert_eq!(label(-0.2), Small); // the sign is the direction, not the size
    assert_eq!(label(0.33), Medium);
    assert_eq!(label(0.4739), Medium);
    assert_eq!(label(0.474), Large);
    assert_eq!(label(-1.0), Large);
    assert_eq!(Magnitude::of_cliffs_delta(f64::NAN), None);
    assert_eq!(Large.to_string(), "large");
}

#[test]
fn shift_small_cases() {
    // Differences {9, 10, 11, 8, 9, 10, 7, 8, 9}: median 9.
    assert_eq!(
        hodges_lehmann_shift(&[1.0, 2.0, 3.0], &[10.0, 11.0, 12.0]),
        Some(9.0)
    );
    // Even count: {1, 3} → 2.
    assert_eq!(hodges_lehmann_shift(&[0.0], &[1.0, 3.0]), Some(2.0));
    // Reversing the roles negates the shift.
    assert_eq!(hodges_lehmann_shift(&[1.0, 3.0], &[0.0]), Some(-2.0));
    assert_eq!(hodges_lehmann_shift(&[], &[1.0]), None);
    assert_eq!(hodges_lehmann_shift(&[1.0], &[f64::INFINITY]), None);
    assert_eq!(hodges_lehmann_shift(&[f64::NAN], &[1.0]), None);
}

#[test]
fn selection_handles_the_sizes_it_is_for() {
    // 10⁵ × 10⁴ = 10⁹ pairs, far past the direct path: y is x shifted by 5 with a few
    // thousand ties, so the median difference is exactly 5.
    let x: Vec<f64> = (0..100_000u32).map(|i| f64::from(i % 1000)).collect();
    let y: Vec<f64> = (0..10_000u32).map(|i| f64::from(i % 1000) + 5.0).collect();
    assert_eq!(hodges_lehmann_shift(&x, &y), Some(5.0));
    assert_eq!(hodges_lehmann_shift(&y, &x), Some(-5.0));
}

/// Samples with many ties (a few distinct values) or none, negative and positive.
fn sample() -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        prop::collection::vec((-5i32..5).prop_map(f64::from), 1..40),
        prop::collection::vec(-1e3f64..1e3, 1..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn delta_matches_the_pairwise_definition(x in sample(), y in sample()) {
        prop_assert_eq!(cliffs_delta(&x, &y), Some(naive_delta(&x, &y)));
    }

    #[test]
    fn selection_equals_materialized_median(x in sample(), y in sample()) {
        // Forcing the selection path (no direct pairs) must give the very same f64, in both
        // orientations (rows from x, and rows from y with the negation).
        let direct = hodges_lehmann_with(&x, &y, usize::MAX).unwrap();
        let selected = hodges_lehmann_with(&x, &y, 0).unwrap();
        prop_assert_eq!(direct.to_bits(), selected.to_bits());
    }
}

#[test]
fn selection_rounds_are_exercised() {
    // Samples large enough that the selection narrows for several rounds before it gathers
    // (GATHER_MIN candidates), against the direct path.
    let x: Vec<f64> = (0..700u32)
        .map(|i| f64::from((i * 7919) % 613) * 0.37 - 50.0)
        .collect();
    let y: Vec<f64> = (0..900u32)
        .map(|i| f64::from((i * 104_729) % 701) * 0.41)
        .collect();
    for (a, b) in [(&x, &y), (&y, &x)] {
        let direct = hodges_lehmann_with(a, b, usize::MAX).unwrap();
        let selected = hodges_lehmann_with(a, b, 0).unwrap();
        assert_eq!(direct.to_bits(), selected.to_bits());
    }
}
