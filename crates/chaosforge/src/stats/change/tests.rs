use super::*;

/// A baseline of 20 samples alternating 100 ± 1: μ = 100 exactly, σ = √(20/19) ≈ 1.026.
fn baseline() -> Vec<f64> {
    (0..20)
        .map(|i| if i % 2 == 0 { 99.0 } else { 101.0 })
        .collect()
}

/// The same in-control pattern, `len` samples, plus `shift` (in σ of the baseline) from `at` on.
fn stepped(len: usize, at: usize, shift: f64) -> Vec<f64> {
    let sigma = Cusum::default().baseline(&baseline()).unwrap().sigma;
    (0..len)
        .map(|i| {
            let noise = if i % 2 == 0 { -1.0 } else { 1.0 };
            100.0 + noise + if i >= at { shift * sigma } else { 0.0 }
        })
        .collect()
}

#[test]
fn baseline_estimate() {
    let b = Cusum::default().baseline(&baseline()).unwrap();
    assert_eq!(b.mean, 100.0);
    assert!((b.sigma - (20.0f64 / 19.0).sqrt()).abs() < 1e-12);
    assert_eq!(b.sigma_eff, b.sigma);
    // The floor only applies when σ is below it.
    let floored = Cusum::with_min_sigma(5.0).baseline(&baseline()).unwrap();
    assert_eq!(floored.sigma_eff, 5.0);
}

#[test]
fn step_of_three_sigma_is_detected_within_a_few_samples() {
    // Each shifted sample adds about 3 − 0.5 (± the noise of ≈1σ), so S passes h = 5 on the
    // second or third shifted sample; before the step it stays near 0.
    let series = stepped(40, 10, 3.0);
    let at = Cusum::default()
        .detect(&baseline(), &series, Direction::Up)
        .unwrap();
    assert!((10..=13).contains(&at), "detected at {at}");
    // Watching the other direction, the same step is no degradation.
    assert_eq!(
        Cusum::default().detect(&baseline(), &series, Direction::Down),
        None
    );
}

#[test]
fn a_drop_is_detected_downwards() {
    let series = stepped(40, 10, -3.0);
    let at = Cusum::default()
        .detect(&baseline(), &series, Direction::Down)
        .unwrap();
    assert!((10..=13).contains(&at), "detected at {at}");
    assert_eq!(
        Cusum::default().detect(&baseline(), &series, Direction::Up),
        None
    );
}

#[test]
fn in_control_series_never_alarms() {
    // A series exactly at the mean: every increment is −k, S stays 0.
    let flat = vec![100.0; 10_000];
    assert_eq!(
        Cusum::default().detect(&baseline(), &flat, Direction::Up),
        None
    );
    assert_eq!(
        Cusum::default().detect(&baseline(), &flat, Direction::Down),
        None
    );
    // The baseline's own ±1σ pattern: +1σ then −1σ alternate, S never accumulates past h.
    let noisy = stepped(10_000, usize::MAX, 0.0);
    assert_eq!(
        Cusum::default().detect(&baseline(), &noisy, Direction::Up),
        None
    );
}

#[test]
fn constant_baseline_needs_the_sigma_floor() {
    // Availability 1.0 throughout the baseline: σ = 0.
    let baseline = [1.0; 30];
    let series = [1.0, 1.0, 0.99, 0.97, 0.96, 0.96, 0.95];
    // Without a floor nothing can be standardized: no baseline, no answer.
    assert_eq!(Cusum::default().baseline(&baseline), None);
    assert_eq!(
        Cusum::default().detect(&baseline, &series, Direction::Down),
        None
    );
    // With a floor of 0.01 (one point of availability is one σ): 1σ, 3σ, 4σ, … → S = 0.5, 3,
    // 6.5 > 5 at index 4.
    let cusum = Cusum::with_min_sigma(0.01);
    assert_eq!(cusum.detect(&baseline, &series, Direction::Down), Some(4));
    // A constant series at the baseline never alarms.
    assert_eq!(cusum.detect(&baseline, &[1.0; 1000], Direction::Down), None);
}

#[test]
fn recovery_on_a_step_back_down() {
    // After the revert the metric stays 4σ high for five samples, then returns.
    let after: Vec<f64> = stepped(30, 0, 0.0)
        .iter()
        .enumerate()
        .map(|(i, v)| if i < 5 { v + 4.0 * 1.026 } else { *v })
        .collect();
    let cusum = Cusum::default();
    assert_eq!(cusum.recovered(&baseline(), &after, Direction::Up), Some(5));
    // Already in control from the first sample: recovered at 0.
    assert_eq!(
        cusum.recovered(&baseline(), &stepped(20, 0, 0.0), Direction::Up),
        Some(0)
    );
    // Too few samples after the last elevated one to tell (H = 11): not yet.
    assert_eq!(cusum.recovery_horizon(), 11);
    assert_eq!(
        cusum.recovered(&baseline(), &after[..15], Direction::Up),
        None
    );
    assert_eq!(
        cusum.recovered(&baseline(), &after[..16], Direction::Up),
        Some(5)
    );
}

#[test]
fn a_mild_sustained_shift_is_not_recovery() {
    // +1.5σ: every sample is inside the 3σ band, but the CUSUM still alarms — degraded. Near
    // the end too few samples remain for it to alarm, which is why recovery needs H of them.
    let series = stepped(60, 0, 1.5);
    let cusum = Cusum::default();
    assert!(cusum.detect(&baseline(), &series, Direction::Up).is_some());
    assert_eq!(cusum.recovered(&baseline(), &series, Direction::Up), None);
    // Better than the baseline is not degraded: recovered at once.
    let faster = stepped(20, 0, -4.0);
    assert_eq!(
        cusum.recovered(&baseline(), &faster, Direction::Up),
        Some(0)
    );
}

#[test]
fn recovery_needs_a_run_in_the_band() {
    // After a 10σ sample the CUSUM is quiet from index 1 on (a 4σ sample adds only 3.5 < h),
    // but index 1 is a lone in-band sample before the 4σ one: with a run of 3 recovery starts
    // at 3, with a run of 1 it would be 1.
    let b = Cusum::default().baseline(&baseline()).unwrap();
    let at = |sigmas: f64| b.mean + sigmas * b.sigma;
    let mut series = vec![at(10.0), at(0.0), at(4.0)];
    series.extend([at(0.0); 12]);
    assert_eq!(
        Cusum::default().recovered_from(&b, &series, Direction::Up),
        Some(3)
    );
    let one = Cusum {
        recovery_run: 1,
        ..Cusum::default()
    };
    assert_eq!(one.recovered_from(&b, &series, Direction::Up), Some(1));
}

#[test]
fn gaps_and_extremes() {
    let b = Cusum::default().baseline(&baseline()).unwrap();
    let high = b.mean + 4.0 * b.sigma;
    // NaN leaves S unchanged: 3.5, 3.5, 7 > 5 at index 2.
    let series = [high, f64::NAN, high];
    assert_eq!(
        Cusum::default().detect_from(&b, &series, Direction::Up),
        Some(2)
    );
    let s = Cusum::default().statistic(&b, &series, Direction::Up);
    assert_eq!(s.len(), 3);
    assert_eq!(s[0], s[1]);
    // +∞ is an immediate alarm; −∞ merely resets, without NaN.
    let extreme = [f64::NEG_INFINITY, f64::INFINITY];
    assert_eq!(
        Cusum::default().detect_from(&b, &extreme, Direction::Up),
        Some(1)
    );
    let s = Cusum::default().statistic(&b, &extreme, Direction::Up);
    assert!(s.iter().all(|v| !v.is_nan()));
    // A NaN sample breaks a recovery run.
    let mut series = vec![b.mean, f64::NAN];
    series.extend([b.mean; 11]);
    assert_eq!(
        Cusum::default().recovered_from(&b, &series, Direction::Up),
        Some(2)
    );
    // NaN samples are no evidence for the horizon either.
    series.push(f64::NAN);
    series.remove(2);
    assert_eq!(
        Cusum::default().recovered_from(&b, &series, Direction::Up),
        None
    );
}

#[test]
fn invalid_settings_and_baselines_give_none() {
    let series = stepped(40, 10, 3.0);
    for bad in [
        Cusum {
            k: -1.0,
            ..Cusum::default()
        },
        Cusum {
            k: 0.0,
            ..Cusum::default()
        },
        Cusum {
            h: 0.0,
            ..Cusum::default()
        },
        Cusum {
            h: f64::NAN,
            ..Cusum::default()
        },
        Cusum {
            min_sigma: f64::INFINITY,
            ..Cusum::default()
        },
        Cusum {
            recovery_run: 0,
            ..Cusum::default()
        },
        Cusum {
            recovery_band: 0.0,
            ..Cusum::default()
        },
    ] {
        assert_eq!(
            bad.detect(&baseline(), &series, Direction::Up),
            None,
            "{bad:?}"
        );
        assert_eq!(
            bad.recovered(&baseline(), &series, Direction::Up),
            None,
            "{bad:?}"
        );
    }
    let cusum = Cusum::default();
    assert_eq!(cusum.baseline(&[]), None);
    assert_eq!(cusum.baseline(&[1.0, f64::NAN]), None);
    assert_eq!(cusum.baseline(&[1.0, f64::INFINITY]), None);
    // One sample has σ = 0; with a floor it is usable.
    assert_eq!(cusum.baseline(&[1.0]), None);
    assert!(Cusum::with_min_sigma(0.1).baseline(&[1.0]).is_some());
    let broken = Baseline {
        mean: 0.0,
        sigma: 0.0,
        sigma_eff: 0.0,
    };
    assert_eq!(cusum.detect_from(&broken, &series, Direction::Up), None);
    assert!(cusum.statistic(&broken, &series, Direction::Up).is_empty());
}
