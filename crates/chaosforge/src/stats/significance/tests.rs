use super::*;

/// U of `x` by its definition, over all pairs: the reference for the merged count.
fn naive_u(x: &[f64], y: &[f64]) -> f64 {
    let mut u = 0.0;
    for &a in x {
        for &b in y {
            if a > b {
                u += 1.0;
            } else if a == b {
                u += 0.5;
            }
        }
    }
    u
}

/// `P(U ≤ k)` by enumerating which `a` of the `a + b` ranks belong to x (every subset equally
/// likely under the null): an independent check of the counting.
fn enumerated_cdf(a: usize, b: usize, k: usize) -> f64 {
    let total = a + b;
    let (mut hits, mut all) = (0u64, 0u64);
    for mask in 0u32..(1 << total) {
        if mask.count_ones() as usize != a {
            continue;
        }
        // U of x: for each x rank, the number of y ranks below it.
        let mut u = 0;
        let mut y_below = 0;
        for r in 0..total {
            if mask & (1 << r) != 0 {
                u += y_below;
            } else {
                y_below += 1;
            }
        }
        all += 1;
        if u <= k {
            hits += 1;
        }
    }
    hits as f64 / all as f64
}

#[test]
fn exact_distribution_matches_enumeration() {
    // Every (a, b) up to 6 + 7 and every k: the counting is the distribution of U.
    for a in 1..=6 {
        for b in a..=7 {
            for k in 0..=a * b {
                let want = enumerated_cdf(a, b, k);
                let got = exact_cdf(a, b, k).unwrap();
                assert!(
                    (got - want).abs() < 1e-12,
                    "a={a} b={b} k={k}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn exact_counts_stay_exact_up_to_128_bits() {
    // 65 + 65: C(130, 65) ≈ 9.5e37 fits; the whole distribution sums to 1.
    assert!((exact_cdf(65, 65, 65 * 65).unwrap() - 1.0).abs() < 1e-15);
    // By symmetry P(U ≤ nm/2 − ½) = ½ for odd n·m.
    assert!((exact_cdf(63, 65, 63 * 65 / 2).unwrap() - 0.5).abs() < 1e-15);
    // 70 + 70 does not fit: no silent overflow.
    assert_eq!(exact_cdf(70, 70, 10), None);
    // Forced exact on samples too large to count falls back, and says so.
    let x: Vec<f64> = (0..100).map(f64::from).collect();
    let y: Vec<f64> = (0..100).map(|v| f64::from(v) + 0.5).collect();
    let r = mann_whitney_u_with(&x, &y, Method::Exact).unwrap();
    assert_eq!(r.method, Method::Asymptotic);
    assert!(r.z.is_some());
    // A long, thin pair still counts (C(100_001, 1) fits, 10⁵ pairs).
    let r = mann_whitney_u_with(
        &[0.5],
        &x.iter().map(|v| v * 1000.0).collect::<Vec<_>>(),
        Method::Exact,
    );
    assert_eq!(r.unwrap().method, Method::Exact);
}

#[test]
fn exact_textbook_values() {
    // Complete separation of 3 and 3: only one of the C(6, 3) = 20 orderings is as extreme on
    // each side, so p = 2/20.
    let r = mann_whitney_u(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
    assert_eq!(r.method, Method::Exact);
    assert_eq!(r.u, 0.0);
    assert!((r.p_value - 0.1).abs() < 1e-15);
    assert_eq!(r.z, None);
    // One value each: U is 0 or 1 with probability ½, so nothing is ever significant.
    let r = mann_whitney_u(&[1.0], &[2.0]).unwrap();
    assert_eq!((r.u, r.p_value), (0.0, 1.0));
}

#[test]
fn u_is_the_pair_count_and_symmetric() {
    let x = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
    let y = [5.0, 3.0, 5.0, 8.0, 9.0, 7.0, 9.0, 3.0, 2.0, 3.0, 8.0];
    for method in [Method::Exact, Method::Asymptotic] {
        let xy = mann_whitney_u_with(&x, &y, method).unwrap();
        let yx = mann_whitney_u_with(&y, &x, method).unwrap();
        assert_eq!(xy.u, naive_u(&x, &y));
        // Swapping the samples mirrors U and keeps the two-sided p.
        assert_eq!(xy.u + yx.u, (x.len() * y.len()) as f64);
        assert!((xy.p_value - yx.p_value).abs() < 1e-15);
    }
    let asym = mann_whitney_u_with(&x, &y, Method::Asymptotic).unwrap();
    let z = asym.z.unwrap();
    // x tends to be smaller here, so its z is negative, and p is the two-sided normal tail.
    assert!(z < 0.0);
    let tail = Normal::standard().sf(z.abs());
    assert!((asym.p_value - 2.0 * tail).abs() < 1e-15);
}

#[test]
fn auto_chooses_exact_only_without_ties_and_small() {
    let small: Vec<f64> = (0..20).map(f64::from).collect();
    let other: Vec<f64> = (0..20).map(|v| f64::from(v) + 0.5).collect();
    assert_eq!(
        mann_whitney_u(&small, &other).unwrap().method,
        Method::Exact
    );
    // 21 values on one side: the approximation.
    let longer: Vec<f64> = (0..21).map(|v| f64::from(v) + 0.5).collect();
    assert_eq!(
        mann_whitney_u(&small, &longer).unwrap().method,
        Method::Asymptotic
    );
    // A tie anywhere, even inside one sample: the exact distribution would be wrong.
    assert_eq!(
        mann_whitney_u(&[1.0, 1.0], &[2.0]).unwrap().method,
        Method::Asymptotic
    );
    assert_eq!(
        mann_whitney_u(&[1.0, 2.0], &[2.0]).unwrap().method,
        Method::Asymptotic
    );
}

#[test]
fn degenerate_inputs() {
    assert_eq!(mann_whitney_u(&[], &[1.0]), None);
    assert_eq!(mann_whitney_u(&[1.0], &[]), None);
    assert_eq!(mann_whitney_u(&[1.0, f64::NAN], &[2.0]), None);
    assert_eq!(
        mann_whitney_u_with(&[1.0], &[f64::NAN], Method::Exact),
        None
    );
    // Every value the same: no variance, nothing to conclude, by either method.
    for method in [Method::Exact, Method::Asymptotic] {
        let r = mann_whitney_u_with(&[2.0; 5], &[2.0; 7], method).unwrap();
        assert_eq!((r.u, r.p_value), (17.5, 1.0));
    }
    let r = mann_whitney_u(&[2.0; 5], &[2.0; 7]).unwrap();
    assert_eq!(r.z, Some(0.0));
    // -0.0 and 0.0 are the same value, so they tie (half a pair each way).
    assert_eq!(mann_whitney_u(&[-0.0], &[0.0]).unwrap().u, 0.5);
    // Infinities are just extreme values.
    let r = mann_whitney_u(&[f64::NEG_INFINITY, 1.0], &[2.0, f64::INFINITY]).unwrap();
    assert_eq!(r.u, 0.0);
}

#[test]
fn tiny_p_values_keep_their_precision() {
    // 200 vs 200 completely separated: z ≈ 17.3, p ≈ 4e-67. 1 − Φ(z) would be 0 in f64.
    let x: Vec<f64> = (0..200).map(f64::from).collect();
    let y: Vec<f64> = (0..200).map(|v| f64::from(v) + 1000.0).collect();
    let r = mann_whitney_u(&x, &y).unwrap();
    assert_eq!(r.method, Method::Asymptotic);
    assert!(r.p_value > 0.0 && r.p_value < 1e-60, "{}", r.p_value);
    // The exact tail of the same data, 2/C(40, 20), on 20 + 20.
    let r = mann_whitney_u(&x[..20], &y[..20]).unwrap();
    assert_eq!(r.method, Method::Exact);
    let want = 2.0 / 137_846_528_820.0;
    assert!((r.p_value - want).abs() <= want * 1e-12, "{}", r.p_value);
}

#[test]
fn large_windows_are_cheap() {
    // 10⁵ per side with many ties (whole milliseconds): one sort, exact integer U.
    let x: Vec<f64> = (0..100_000u32).map(|i| f64::from(i % 97)).collect();
    let y: Vec<f64> = (0..100_000u32).map(|i| f64::from(i % 89 + 3)).collect();
    let r = mann_whitney_u(&x, &y).unwrap();
    assert_eq!(r.method, Method::Asymptotic);
    assert!(r.u.fract() == 0.0 || r.u.fract() == 0.5);
    assert!(r.p_value < 1e-10);
}
