//! Did the fault really move a metric, and when did it show and go away?
//!
//! Thresholds say whether a window met an objective; this module says whether the change
//! between the baseline and the fault window is real (a two-sided Mann–Whitney U test over the
//! per-sample values of the expectation's metric, with Cliff's delta and the Hodges–Lehmann
//! shift as effect sizes) and, with a CUSUM over the samples in time order, when the change was
//! detected after the injection and when the metric was back in control after the revert.
//!
//! The per-sample value of a metric is what one sample contributes to it: its latency (for
//! every latency statistic: a shift of the distribution moves all of them), its value, its
//! resource reading, `1`/`0` for ok/failed (availability; the reverse for the error rate), and
//! for throughput the ok samples per second in consecutive buckets of one second (or one
//! interval, if longer). Rank statistics because latencies are skewed, tied and heavy-tailed:
//! a t-test's assumptions fail exactly where chaos experiments look.
//!
//! Everything is a pure function of the samples, so a report rebuilt from a journal says the
//! same.

use std::time::Duration;

use serde::Serialize;

use crate::hypothesis::{Cmp, Expectation, Metric, ResourceKind};
use crate::stats::change::{Cusum, Direction};
use crate::stats::effect::{self, Magnitude};
use crate::stats::significance::{self, Method};
use crate::vocab::Sample;

/// The significance level used for the report's verdict when the hypothesis sets none.
pub const DEFAULT_ALPHA: f64 = 0.05;

/// Fewer samples than this on either side, and no test is run: it could not be significant
/// at any useful level (with 3 + 3 the smallest two-sided exact p is 0.1).
pub const MIN_SAMPLES: usize = 4;

/// The change of one expectation's metric between the baseline and the fault window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Samples on each side that the test used.
    pub n_baseline: usize,
    /// See `n_baseline`.
    pub n_during: usize,
    /// Mann–Whitney U of the baseline.
    pub u: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// `exact` or `normal approximation`.
    pub method: &'static str,
    /// Cliff's delta: positive when the fault window tends to be larger.
    pub cliffs_delta: f64,
    /// `negligible`, `small`, `medium` or `large`.
    pub magnitude: &'static str,
    /// The Hodges–Lehmann shift (median of fault − baseline differences), in the metric's
    /// canonical unit; `None` for availability and error rate, where it is always 0 or ±1.
    pub shift: Option<f64>,
    /// The shift formatted in the metric's unit (`+9.8ms`).
    pub shift_text: Option<String>,
    /// The level the verdict uses.
    pub alpha: f64,
    /// `p_value < alpha`.
    pub significant: bool,
    /// Significant, and in the direction the expectation calls worse.
    pub degraded: bool,
}

/// When a change showed and when it went away, by CUSUM.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Timing {
    /// From the injection to the start of the first sample at which the CUSUM alarmed.
    #[serde(with = "crate::units::opt_duration_text")]
    pub detected_after: Option<Duration>,
    /// From the revert to the start of the first sample from which the metric stayed in
    /// control.
    #[serde(with = "crate::units::opt_duration_text")]
    pub recovered_after: Option<Duration>,
    /// When a change was detected but the samples after the revert are too few to tell when it
    /// went away (the CUSUM needs enough samples after a candidate point to be sure no alarm
    /// follows): how many it had, and how many it needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub too_few_after_revert: Option<(usize, usize)>,
}

/// Which way the expectation calls worse: `latency < …` degrades upwards.
pub fn worse(e: &Expectation) -> Direction {
    match e.cmp {
        Cmp::Lt | Cmp::Le => Direction::Up,
        Cmp::Gt | Cmp::Ge => Direction::Down,
    }
}

/// Each sample's contribution to `metric`, with its start time, in the samples' order.
pub fn series<'a>(
    metric: &Metric,
    samples: impl IntoIterator<Item = &'a Sample>,
    interval: Duration,
) -> Vec<(Duration, f64)> {
    let samples: Vec<&Sample> = samples.into_iter().collect();
    match *metric {
        Metric::Availability => samples
            .iter()
            .map(|s| (s.at, if s.ok { 1.0 } else { 0.0 }))
            .collect(),
        Metric::ErrorRate => samples
            .iter()
            .map(|s| (s.at, if s.ok { 0.0 } else { 1.0 }))
            .collect(),
        Metric::Latency(_) => samples
            .iter()
            .filter(|s| s.ok)
            .map(|s| (s.at, s.latency.as_secs_f64()))
            .collect(),
        Metric::Value(_) => samples
            .iter()
            .filter(|s| s.ok)
            .filter_map(|s| s.value.filter(|v| !v.is_nan()).map(|v| (s.at, v)))
            .collect(),
        Metric::Resource(kind, _) => samples
            .iter()
            .filter_map(|s| {
                let r = s.resource.as_ref()?;
                let v = match kind {
                    ResourceKind::Cpu => r.cpu,
                    ResourceKind::Memory => r.memory.map(|v| v as f64),
                    ResourceKind::Fds => r.fds.map(|v| v as f64),
                    ResourceKind::Threads => r.threads.map(|v| v as f64),
                };
                v.filter(|v| !v.is_nan()).map(|v| (s.at, v))
            })
            .collect(),
        Metric::Throughput => throughput_buckets(&samples, interval),
    }
}

/// Ok samples per second in consecutive buckets of `max(1 s, interval)` from the first
/// sample's start; the last, partial bucket is dropped (it would read low).
fn throughput_buckets(samples: &[&Sample], interval: Duration) -> Vec<(Duration, f64)> {
    let width = interval.max(Duration::from_secs(1));
    let (Some(first), Some(last)) = (
        samples.iter().map(|s| s.at).min(),
        samples.iter().map(|s| s.at).max(),
    ) else {
        return Vec::new();
    };
    let full = ((last - first).as_nanos() / width.as_nanos()) as usize;
    let mut counts = vec![0u32; full];
    for s in samples.iter().filter(|s| s.ok) {
        let i = ((s.at - first).as_nanos() / width.as_nanos()) as usize;
        if let Some(c) = counts.get_mut(i) {
            *c += 1;
        }
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| (first + width * i as u32, f64::from(c) / width.as_secs_f64()))
        .collect()
}

/// The test and effect sizes of `e`'s metric between `baseline` and `during` per-sample values;
/// `None` with fewer than [`MIN_SAMPLES`] on either side.
pub fn compare(e: &Expectation, baseline: &[f64], during: &[f64], alpha: f64) -> Option<Change> {
    if baseline.len() < MIN_SAMPLES || during.len() < MIN_SAMPLES {
        return None;
    }
    let test = significance::mann_whitney_u(baseline, during)?;
    let delta = effect::cliffs_delta(baseline, during)?;
    let shift = if e.metric.is_ratio() {
        None
    } else {
        effect::hodges_lehmann_shift(baseline, during)
    };
    let significant = test.p_value < alpha;
    let degraded = significant
        && match worse(e) {
            Direction::Up => delta > 0.0,
            Direction::Down => delta < 0.0,
        };
    Some(Change {
        n_baseline: baseline.len(),
        n_during: during.len(),
        u: test.u,
        p_value: test.p_value,
        method: match test.method {
            Method::Exact => "exact",
            Method::Asymptotic => "normal approximation",
        },
        cliffs_delta: delta,
        magnitude: Magnitude::of_cliffs_delta(delta).map_or("negligible", Magnitude::as_str),
        shift,
        shift_text: shift.map(|d| signed(&e.metric, d)),
        alpha,
        significant,
        degraded,
    })
}

/// The CUSUM for `metric`, with a floor for σ so that a constant baseline (availability of
/// exactly 1, a latency steady to the microsecond) still standardizes, and so that only a
/// change that matters to an operator raises the alarm.
pub fn cusum_for(metric: &Metric, baseline: &[f64]) -> Cusum {
    let mean = if baseline.is_empty() {
        0.0
    } else {
        baseline.iter().sum::<f64>() / baseline.len() as f64
    };
    let floor = match metric {
        // One failed sample in four is the smallest change that should alarm within a few
        // samples (a 0/1 series: a failure is 1/0.25 = 4 σ_eff).
        Metric::Availability | Metric::ErrorRate => 0.25,
        // 5 % of the baseline's level, and at least 100 µs of latency: a loaded machine's
        // scheduling noise is not a change.
        Metric::Latency(_) => (0.05 * mean.abs()).max(100e-6),
        Metric::Throughput => (0.05 * mean.abs()).max(0.1),
        Metric::Resource(ResourceKind::Cpu, _) => 2.0,
        _ => (0.05 * mean.abs()).max(1e-9),
    };
    Cusum::with_min_sigma(floor)
}

/// When `e`'s metric changed after `injected_at` and when it was back in control after
/// `reverted_at`, from the baseline's per-sample values and the time-ordered values after the
/// injection (`after_injection`) and after the revert (`after_revert`).
pub fn timing(
    e: &Expectation,
    baseline: &[f64],
    after_injection: &[(Duration, f64)],
    injected_at: Option<Duration>,
    after_revert: &[(Duration, f64)],
    reverted_at: Option<Duration>,
) -> Timing {
    let cusum = cusum_for(&e.metric, baseline);
    let Some(base) = cusum.baseline(baseline) else {
        return Timing::default();
    };
    let dir = worse(e);
    let values = |s: &[(Duration, f64)]| s.iter().map(|(_, v)| *v).collect::<Vec<f64>>();
    let detected_after = injected_at.and_then(|t0| {
        let i = cusum.detect_from(&base, &values(after_injection), dir)?;
        Some(after_injection[i].0.saturating_sub(t0))
    });
    // Recovery only means something after a detected change.
    let needed = cusum.recovery_horizon().max(cusum.recovery_run);
    let (recovered_after, too_few_after_revert) = match (detected_after, reverted_at) {
        (Some(_), Some(t1)) => {
            // Judged on a forward median of three: one sample slowed by the machine (a
            // scheduling hiccup, not the system) must not push the recovery back by the whole
            // in-control run, and a median of what follows never delays a real recovery.
            let smoothed = forward_median3(&values(after_revert));
            let found = cusum
                .recovered_from(&base, &smoothed, dir)
                .map(|i| after_revert[i].0.saturating_sub(t1));
            let short = (found.is_none() && after_revert.len() < needed)
                .then_some((after_revert.len(), needed));
            (found, short)
        }
        _ => (None, None),
    };
    Timing {
        detected_after,
        recovered_after,
        too_few_after_revert,
    }
}

/// `y[i]` = median of `x[i..i+3]` (fewer at the end): removes isolated spikes without delaying a
/// change that lasts.
fn forward_median3(x: &[f64]) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let mut w: Vec<f64> = x[i..(i + 3).min(x.len())].to_vec();
            w.sort_by(f64::total_cmp);
            w[(w.len() - 1) / 2]
        })
        .collect()
}

/// A p-value as a report shows it: `0.032`, `4.1e-7`, `< 1e-300`.
pub fn format_p(p: f64) -> String {
    if p >= 0.001 {
        format!("{p:.3}")
    } else if p >= 1e-300 {
        format!("{p:.1e}")
    } else {
        "< 1e-300".into()
    }
}

/// A change in the metric's unit with its sign: `+9.8ms`, `-12.5/s`, `+3`.
fn signed(metric: &Metric, d: f64) -> String {
    let sign = if d < 0.0 { "-" } else { "+" };
    format!("{sign}{}", metric.format_value(d.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: f64) -> Duration {
        Duration::from_secs_f64(n / 1000.0)
    }

    /// Latency samples every 100 ms from `from`, `base` ms ± a deterministic jitter.
    fn latencies(from: f64, n: usize, base: f64, seed: u64) -> Vec<Sample> {
        let mut rng = crate::scope::SeededRng::new(seed);
        (0..n)
            .map(|i| {
                let jitter = (rng.next_u64() % 1000) as f64 / 1000.0 * 0.4;
                Sample::success(ms(base + jitter)).started_at(ms(from + 100.0 * i as f64))
            })
            .collect()
    }

    fn values(e: &Expectation, s: &[Sample]) -> Vec<f64> {
        series(&e.metric, s, Duration::from_millis(100))
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    #[test]
    fn a_10ms_fault_on_a_1ms_baseline_is_significant_and_no_fault_is_not() {
        let e = Expectation::parse("latency.p99 < 300ms").unwrap();
        let base = latencies(0.0, 40, 1.0, 1);
        let slow = latencies(4000.0, 40, 11.0, 2);
        let same = latencies(4000.0, 40, 1.0, 3);
        let c = compare(&e, &values(&e, &base), &values(&e, &slow), 0.01).unwrap();
        assert!(c.significant && c.degraded, "{c:?}");
        assert!(c.p_value < 1e-10, "{c:?}");
        assert_eq!(c.magnitude, "large");
        let shift = c.shift.unwrap();
        assert!((shift - 0.010).abs() < 0.001, "{c:?}");
        assert!(
            c.shift_text
                .as_deref()
                .is_some_and(|s| s.starts_with("+9.") || s.starts_with("+10")),
            "{c:?}"
        );
        let c = compare(&e, &values(&e, &base), &values(&e, &same), 0.01).unwrap();
        assert!(!c.significant && !c.degraded, "{c:?}");
    }

    #[test]
    fn direction_follows_the_comparison() {
        let base = latencies(0.0, 30, 10.0, 4);
        let fast = latencies(3000.0, 30, 2.0, 5);
        // Faster is a significant change, but not a degradation of `latency < …`.
        let e = Expectation::parse("latency.p50 < 300ms").unwrap();
        let c = compare(&e, &values(&e, &base), &values(&e, &fast), 0.05).unwrap();
        assert!(c.significant && !c.degraded, "{c:?}");
        // Availability dropping is a degradation of `availability >= …`.
        let e = Expectation::parse("availability >= 90%").unwrap();
        let ok: Vec<Sample> = (0..30).map(|_| Sample::success(ms(1.0))).collect();
        let half: Vec<Sample> = (0..30)
            .map(|i| {
                if i % 2 == 0 {
                    Sample::success(ms(1.0))
                } else {
                    Sample::failure(ms(1.0), "refused")
                }
            })
            .collect();
        let c = compare(&e, &values(&e, &ok), &values(&e, &half), 0.05).unwrap();
        assert!(c.degraded, "{c:?}");
        assert_eq!(c.shift, None);
        // Too few samples: no test.
        assert!(compare(&e, &[1.0; 3], &[0.0; 30], 0.05).is_none());
    }

    #[test]
    fn detection_and_recovery_are_timed_from_injection_and_revert() {
        // Baseline 0–4 s at 1 ms; fault from 4.05 s to 8.05 s at 11 ms; back to 1 ms after.
        let e = Expectation::parse("latency.p99 < 300ms").unwrap();
        let base = latencies(0.0, 40, 1.0, 6);
        let during = latencies(4100.0, 40, 11.0, 7);
        let after = latencies(8100.0, 40, 1.0, 8);
        let s = |v: &[Sample]| series(&e.metric, v, Duration::from_millis(100));
        let t = timing(
            &e,
            &values(&e, &base),
            &s(&during),
            Some(ms(4050.0)),
            &s(&after),
            Some(ms(8050.0)),
        );
        // The first slow sample starts 50 ms after the injection and alarms at once.
        assert_eq!(t.detected_after, Some(ms(50.0)));
        assert_eq!(t.recovered_after, Some(ms(50.0)));
        // No change, no detection and no recovery to time.
        let calm = latencies(4100.0, 40, 1.0, 9);
        let t = timing(
            &e,
            &values(&e, &base),
            &s(&calm),
            Some(ms(4050.0)),
            &s(&after),
            Some(ms(8050.0)),
        );
        assert_eq!(t, Timing::default());
    }

    #[test]
    fn one_slow_sample_after_the_revert_does_not_delay_the_recovery() {
        let e = Expectation::parse("latency.p99 < 300ms").unwrap();
        let base = latencies(0.0, 40, 1.0, 10);
        let during = latencies(4100.0, 40, 11.0, 11);
        let mut after = latencies(8100.0, 40, 1.0, 12);
        // The second sample after the revert is hit by a 30 ms hiccup of the machine.
        after[1] = Sample::success(ms(30.0)).started_at(after[1].at);
        let s = |v: &[Sample]| series(&e.metric, v, Duration::from_millis(100));
        let t = timing(
            &e,
            &values(&e, &base),
            &s(&during),
            Some(ms(4050.0)),
            &s(&after),
            Some(ms(8050.0)),
        );
        assert_eq!(t.recovered_after, Some(ms(50.0)), "{t:?}");
        assert_eq!(forward_median3(&[1.0, 9.0, 1.0, 1.0]), [1.0, 1.0, 1.0, 1.0]);
        assert_eq!(forward_median3(&[9.0, 9.0, 1.0]), [9.0, 1.0, 1.0]);
    }

    #[test]
    fn throughput_is_counted_per_second() {
        let samples: Vec<Sample> = (0..50)
            .map(|i| Sample::success(ms(1.0)).started_at(ms(100.0 * i as f64)))
            .collect();
        let e = Expectation::parse("throughput >= 5/s").unwrap();
        let b = series(&e.metric, &samples, Duration::from_millis(100));
        assert_eq!(b.len(), 4, "{b:?}");
        assert!(b.iter().all(|(_, v)| (*v - 10.0).abs() < 1e-9), "{b:?}");
    }
}
