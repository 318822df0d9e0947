//! How much did the fault move the metric? Effect sizes that, like the Mann–Whitney test, use
//! only comparisons between samples, so they suit skewed, tied data such as latencies.
//!
//! A p-value says whether a difference is real, not whether it matters: with 10⁵ samples a
//! 0.1 ms shift is "significant". These say how large it is:
//!
//! * [`cliffs_delta`]: how often the fault window beats the baseline, in `[-1, 1]`, with a
//!   conventional [`Magnitude`] label;
//! * [`hodges_lehmann_shift`]: the typical shift, in the metric's own unit ("+42 ms").
//!
//! In both, `x` is the baseline and `y` the fault window, and **positive means `y` tends to be
//! larger** (a slower latency, a higher error rate).
//!
//! ```
//! use chaosforge::stats::effect::{cliffs_delta, hodges_lehmann_shift, Magnitude};
//!
//! let baseline = [10.0, 11.0, 12.0];
//! let fault = [20.0, 21.0, 22.0];
//! assert_eq!(cliffs_delta(&baseline, &fault), Some(1.0)); // every fault sample is larger
//! assert_eq!(Magnitude::of_cliffs_delta(1.0), Some(Magnitude::Large));
//! assert_eq!(hodges_lehmann_shift(&baseline, &fault), Some(10.0)); // 10 slower, typically
//! ```

use std::fmt;

/// Beyond this many pairs `n·m`, [`hodges_lehmann_shift`] stops materializing the differences
/// (32 MB at 4·10⁶) and selects the median from the implicitly sorted difference matrix
/// instead.
pub const HL_DIRECT_MAX_PAIRS: usize = 4_000_000;

/// Once the selection has narrowed the candidates down to this many (or `n + m`, if larger), it
/// collects them and finishes with one `select_nth_unstable`.
const GATHER_MIN: usize = 1 << 16;

/// The conventional reading of a Cliff's delta, after Romano et al. (2006), "Appropriate
/// statistics for ordinal level data", who mapped Cohen's d thresholds of 0.2, 0.5 and 0.8 onto
/// `|δ|` under normality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Magnitude {
    /// `|δ| < 0.147`.
    Negligible,
    /// `0.147 ≤ |δ| < 0.33`.
    Small,
    /// `0.33 ≤ |δ| < 0.474`.
    Medium,
    /// `|δ| ≥ 0.474`.
    Large,
}

/// Cliff's delta of `y` (the fault window) against `x` (the baseline):
/// `δ = (#{(i, j): yⱼ > xᵢ} − #{(i, j): yⱼ < xᵢ}) / (n·m)`.
///
/// It is the probability that a random fault sample is larger than a random baseline sample
/// minus the probability that it is smaller: `+1` when every `y` exceeds every `x`, `−1` when
/// every `y` is below, `0` for no tendency (ties count for neither). It equals
/// `1 − 2·U(x)/(n·m)` with the Mann–Whitney U of `x`.
///
/// Computed in `O((n + m) log(n + m))` by sorting both samples and merging, not by comparing all
/// `n·m` pairs, so windows of 10⁵ samples are cheap; the counts are exact integers.
///
/// Returns `None` when either sample is empty or any value is NaN.
pub fn cliffs_delta(x: &[f64], y: &[f64]) -> Option<f64> {
    let xs = sorted(x)?;
    let ys = sorted(y)?;
    let m = ys.len();
    // For each x in ascending order, the y strictly below it and the y not above it; both only
    // grow, so two pointers walk y once.
    let (mut below, mut not_above) = (0usize, 0usize);
    let (mut y_less, mut y_greater) = (0u128, 0u128);
    for &xi in &xs {
        while below < m && ys[below] < xi {
            below += 1;
        }
        while not_above < m && ys[not_above] <= xi {
            not_above += 1;
        }
        y_less += below as u128;
        y_greater += (m - not_above) as u128;
    }
    let pairs = xs.len() as f64 * m as f64;
    // The difference is formed in integers, so the only rounding is the final division (exact
    // below 2^53 pairs).
    let diff = y_greater as i128 - y_less as i128;
    Some(diff as f64 / pairs)
}

/// The Hodges–Lehmann estimate of the shift from `x` (the baseline) to `y` (the fault window):
/// the median of all `n·m` differences `yⱼ − xᵢ`, the mean of the two middle ones when `n·m` is
/// even.
///
/// It reads as "the fault made it this much larger, typically", in the metric's unit. It is the
/// shift estimate that goes with the Mann–Whitney test (the shift that would make U centered),
/// and, unlike the difference of medians, it uses every sample and is far less noisy.
///
/// Exact for every size, never subsampled:
/// * up to [`HL_DIRECT_MAX_PAIRS`] pairs the differences are materialized and the middle ones
///   selected (`O(n·m)`);
/// * beyond, the median is selected from the implicit `n × m` matrix of differences, whose rows
///   and columns are sorted once both samples are: each round takes the weighted median of the
///   rows' middle candidates as pivot (Johnson–Mizoguchi style), counts the differences below it
///   in `O(n + m)` by walking the matrix's staircase, and drops every candidate on the wrong
///   side of it — at least a quarter of them — until few enough remain to select directly.
///   `O((n + m) log n · log(n·m))`; two windows of 10⁵ samples take well under a second.
///
/// The differences are computed exactly as `yⱼ − xᵢ` in `f64` in both paths, so the result is
/// the same whichever path runs (and the same as NumPy's `median` of the difference matrix).
///
/// Returns `None` when either sample is empty or any value is not finite (an infinite value
/// makes differences infinite or NaN, which have no useful median).
pub fn hodges_lehmann_shift(x: &[f64], y: &[f64]) -> Option<f64> {
    hodges_lehmann_with(x, y, HL_DIRECT_MAX_PAIRS)
}

/// [`hodges_lehmann_shift`] with the threshold between the two paths as a parameter, so the
/// tests can check the selection against the direct path on small samples.
fn hodges_lehmann_with(x: &[f64], y: &[f64], direct_max_pairs: usize) -> Option<f64> {
    // `+ 0.0` turns a -0.0 (from negating a zero shift) into 0.0: same value, plainer report.
    median_difference(x, y, direct_max_pairs).map(|shift| shift + 0.0)
}

fn median_difference(x: &[f64], y: &[f64], direct_max_pairs: usize) -> Option<f64> {
    if x.is_empty() || y.is_empty() || !x.iter().chain(y).all(|v| v.is_finite()) {
        return None;
    }
    let pairs = x.len().checked_mul(y.len())?;
    let (lower, upper) = ((pairs - 1) / 2, pairs / 2);
    if pairs <= direct_max_pairs {
        let mut diffs: Vec<f64> = Vec::with_capacity(pairs);
        for &yj in y {
            diffs.extend(x.iter().map(|&xi| yj - xi));
        }
        let (_, &mut low, above) = diffs.select_nth_unstable_by(lower, f64::total_cmp);
        let high = if upper == lower {
            low
        } else {
            // The next order statistic is the smallest of those above `lower`.
            above.iter().copied().min_by(f64::total_cmp).unwrap_or(low)
        };
        return Some(low.midpoint(high));
    }
    let xs = sorted(x)?;
    let ys = sorted(y)?;
    // The selection costs a sort of the rows per round, so the shorter sample gives the rows.
    // `x − y` is exactly `−(y − x)` in IEEE arithmetic, so the median of the swapped matrix is
    // exactly the negated median.
    if xs.len() <= ys.len() {
        let matrix = Differences::new(&xs, &ys);
        Some(matrix.kth(lower).midpoint(matrix.kth(upper)))
    } else {
        let matrix = Differences::new(&ys, &xs);
        // Rank r of −D is rank pairs − 1 − r of D: the two middle ranks swap.
        Some(-matrix.kth(lower).midpoint(matrix.kth(upper)))
    }
}

/// Sorted copy, or `None` for an empty sample or one with a NaN.
fn sorted(values: &[f64]) -> Option<Vec<f64>> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut sorted = values.to_vec();
    // No NaN left, so `total_cmp` sorts by value (with -0.0 just before 0.0, which compare
    // equal; every comparison below is by value).
    sorted.sort_unstable_by(f64::total_cmp);
    Some(sorted)
}

/// The implicit matrix `d(i, j) = cols[j] − rows[i]` over two ascending samples: each row
/// ascends with `j`, each column descends with `i` (rounding is monotonic, so this holds for
/// the computed `f64` differences too).
struct Differences<'a> {
    rows: &'a [f64],
    cols: &'a [f64],
}

// === impl Magnitude ===

impl Magnitude {
    /// The label of a Cliff's delta, by `|δ|` (the sign says the direction, not the size).
    /// `None` for NaN.
    pub fn of_cliffs_delta(delta: f64) -> Option<Self> {
        let size = delta.abs();
        if size.is_nan() {
            None
        } else if size < 0.147 {
            Some(Self::Negligible)
        } else if size < 0.33 {
            Some(Self::Small)
        } else if size < 0.474 {
            Some(Self::Medium)
        } else {
            Some(Self::Large)
        }
    }

    /// The lower-case name used in reports: `negligible`, `small`, `medium`, `large`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Negligible => "negligible",
            Self::Small => "small",
            Self::Medium => "medium",
            Self::Large => "large",
        }
    }
}

impl fmt::Display for Magnitude {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Differences ===

impl<'a> Differences<'a> {
    fn new(rows: &'a [f64], cols: &'a [f64]) -> Self {
        Differences { rows, cols }
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        self.cols[j] - self.rows[i]
    }

    /// The `k`-th smallest difference (0-based, `k < n·m`).
    ///
    /// Invariant: in row `i` the columns below `lo[i]` hold differences known to be smaller
    /// than the answer and those from `hi[i]` on differences known to be larger, so the answer
    /// has rank `k − Σ lo` among the candidates `lo[i]..hi[i]`.
    fn kth(&self, k: usize) -> f64 {
        let (n, m) = (self.rows.len(), self.cols.len());
        let mut lo = vec![0usize; n];
        let mut hi = vec![m; n];
        let mut lt = vec![0usize; n];
        let mut le = vec![0usize; n];
        let mut middles: Vec<(f64, usize)> = Vec::with_capacity(n);
        let gather_at = (n + m).max(GATHER_MIN);
        loop {
            let known_below: usize = lo.iter().sum();
            let candidates: usize = lo.iter().zip(&hi).map(|(l, h)| h - l).sum();

            // The pivot: the weighted median of each row's middle candidate, weighted by the
            // row's candidate count. Rows holding at least half the candidates have their
            // middle ≤ pivot, and at least half of each such row is ≤ its middle, so at least a
            // quarter of all candidates are ≤ pivot; likewise ≥ pivot. Whichever side the
            // answer is not on is dropped below, so each round removes a quarter or more.
            middles.clear();
            middles.extend((0..n).filter(|&i| lo[i] < hi[i]).map(|i| {
                let width = hi[i] - lo[i];
                (self.at(i, lo[i] + (width - 1) / 2), width)
            }));
            middles.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
            let mut seen = 0;
            let pivot = middles.iter().find_map(|&(value, width)| {
                seen += width;
                (2 * seen >= candidates).then_some(value)
            });
            let Some(pivot) = pivot.filter(|_| candidates > gather_at) else {
                // Few enough left (or, impossible by the invariant, none): select directly.
                let mut rest: Vec<f64> = Vec::with_capacity(candidates);
                for i in 0..n {
                    rest.extend((lo[i]..hi[i]).map(|j| self.at(i, j)));
                }
                let rank = k - known_below;
                return match rest.get(rank) {
                    Some(_) => *rest.select_nth_unstable_by(rank, f64::total_cmp).1,
                    None => f64::NAN,
                };
            };

            let (below, not_above) = self.count(pivot, &mut lt, &mut le);
            if k < below {
                // The answer is smaller than the pivot: drop everything ≥ pivot.
                for (h, &l) in hi.iter_mut().zip(&lt) {
                    *h = (*h).min(l);
                }
            } else if k >= not_above {
                // The answer is larger than the pivot: drop everything ≤ pivot.
                for (l, &e) in lo.iter_mut().zip(&le) {
                    *l = (*l).max(e);
                }
            } else {
                // Ranks below..not_above all hold the pivot's value.
                return pivot;
            }
        }
    }

    /// Per row, how many differences are `< pivot` (into `lt`) and `≤ pivot` (into `le`), and
    /// the totals. Each row's counts are at least the previous row's (columns descend), so two
    /// column pointers only move right: `O(n + m)`.
    fn count(&self, pivot: f64, lt: &mut [usize], le: &mut [usize]) -> (usize, usize) {
        let m = self.cols.len();
        let (mut j_lt, mut j_le) = (0, 0);
        let (mut below, mut not_above) = (0, 0);
        for i in 0..self.rows.len() {
            while j_lt < m && self.at(i, j_lt) < pivot {
                j_lt += 1;
            }
            j_le = j_le.max(j_lt);
            while j_le < m && self.at(i, j_le) <= pivot {
                j_le += 1;
            }
            lt[i] = j_lt;
            le[i] = j_le;
            below += j_lt;
            not_above += j_le;
        }
        (below, not_above)
    }
}

#[cfg(test)]
mod tests;
