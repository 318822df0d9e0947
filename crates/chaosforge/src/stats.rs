//! Small, pure statistics over samples: percentiles and means here, and in the submodules the
//! statistics that say whether a fault really moved a metric, by how much, when it showed and
//! when it went away:
//!
//! - [`significance`]: the two-sided Mann–Whitney U test (baseline vs. fault window), exact or
//!   normal-approximated, matching SciPy's `mannwhitneyu`.
//! - [`effect`]: effect sizes that go with it — Cliff's delta (with its magnitude label) and the
//!   Hodges–Lehmann shift, both exact for windows of 10⁵ samples.
//! - [`change`]: one-sided CUSUM change detection for time-to-detect and time-to-recover.
//!
//! Everything here is a plain, deterministic function over slices, so it is tested without a
//! runtime and gives the same answer for the same journal (reports must be reproducible).

use std::time::Duration;

pub mod change;
pub mod effect;
pub mod significance;

/// The `p`-th percentile of an ascending `sorted` slice, by the **nearest-rank** definition.
///
/// The result is the smallest value such that at least `p` % of the values are less than or
/// equal to it: the element at 1-based rank `⌈p/100 · n⌉`, clamped to `1..=n`.
///
/// Why nearest-rank and not interpolation: it always returns a value that was really observed
/// (a p99 latency of `312ms` is the latency of an actual request), it is exact for small
/// windows, and it is simple to explain in a report. With 100 values, p99 is the 99th smallest;
/// with 10 values, p99 is the largest.
///
/// * `p` is clamped to `0..=100`; `p = 0` gives the minimum and `p = 100` the maximum.
/// * Returns `None` for an empty slice (or a NaN `p`): no data is not zero.
/// * The slice must be sorted ascending; this is not checked (callers sort once and ask for
///   several percentiles).
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() || p.is_nan() {
        return None;
    }
    let n = sorted.len();
    let p = p.clamp(0.0, 100.0);
    // The rank is computed in f64; for any realistic window (< 2^52 samples) this is exact.
    // The 1e-9 slack keeps `0.95 * 100` from rounding up a whole rank through float error.
    let rank = ((p / 100.0) * n as f64 - 1e-9).ceil() as usize;
    let index = rank.clamp(1, n) - 1;
    sorted.get(index).copied()
}

/// The arithmetic mean of `values`, or `None` when there are none.
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

/// The mean of `durations`, exact to the nanosecond, or `None` when there are none.
///
/// Summed as `u128` nanoseconds so that a long window of latencies cannot lose precision the
/// way an `f64` sum of seconds would.
pub fn mean_duration(durations: &[Duration]) -> Option<Duration> {
    if durations.is_empty() {
        return None;
    }
    let total: u128 = durations.iter().map(Duration::as_nanos).sum();
    let avg = total / durations.len() as u128;
    // The mean of durations is never larger than the largest of them, which fits in a Duration.
    Some(Duration::from_nanos(u64::try_from(avg).unwrap_or(u64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_to(n: u32) -> Vec<f64> {
        (1..=n).map(f64::from).collect()
    }

    #[test]
    fn nearest_rank_on_one_to_hundred() {
        // With 1..=100 the nearest-rank p-th percentile is exactly p: easy to check by eye.
        let v = one_to(100);
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 90.0), Some(90.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 99.5), Some(100.0));
    }

    #[test]
    fn nearest_rank_on_small_windows() {
        let v = one_to(10);
        // ⌈0.99 · 10⌉ = 10: with ten samples the p99 is the slowest one.
        assert_eq!(percentile(&v, 99.0), Some(10.0));
        // ⌈0.5 · 10⌉ = 5: the lower median, a value that was really observed.
        assert_eq!(percentile(&v, 50.0), Some(5.0));
        assert_eq!(percentile(&v, 90.0), Some(9.0));
        assert_eq!(percentile(&[7.0], 50.0), Some(7.0));
        assert_eq!(percentile(&[7.0], 0.0), Some(7.0));
        // Four values: p50 → rank 2, p75 → rank 3, p76 → rank 4.
        let four = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&four, 50.0), Some(2.0));
        assert_eq!(percentile(&four, 75.0), Some(3.0));
        assert_eq!(percentile(&four, 76.0), Some(4.0));
    }

    #[test]
    fn percentile_edges() {
        let empty: [f64; 0] = [];
        assert_eq!(percentile(&empty, 50.0), None);
        assert_eq!(percentile(&[1.0, 2.0], f64::NAN), None);
        // Out-of-range p is clamped rather than panicking.
        assert_eq!(percentile(&[1.0, 2.0], 150.0), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0], -5.0), Some(1.0));
        // Works on anything Copy, e.g. durations.
        let d = [Duration::from_millis(1), Duration::from_millis(9)];
        assert_eq!(percentile(&d, 99.0), Some(Duration::from_millis(9)));
    }

    #[test]
    fn means() {
        assert_eq!(mean(&[]), None);
        assert_eq!(mean(&[1.0, 2.0, 3.0, 4.0]), Some(2.5));
        assert_eq!(mean_duration(&[]), None);
        let d = [Duration::from_millis(100), Duration::from_millis(300)];
        assert_eq!(mean_duration(&d), Some(Duration::from_millis(200)));
        // Nanosecond-exact: 1ns and 2ns average to 1ns (integer division), never NaN or drift.
        let tiny = [Duration::from_nanos(1), Duration::from_nanos(2)];
        assert_eq!(mean_duration(&tiny), Some(Duration::from_nanos(1)));
    }
}
