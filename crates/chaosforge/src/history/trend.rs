//! Is a metric getting worse from run to run? The Mann–Kendall trend test and the Theil–Sen
//! slope over a series of values, oldest first (one value per run: an expectation's value
//! under the fault).
//!
//! Both are rank-based, like the rest of `stats`: a run's under-fault value is skewed and tied
//! (availability is often exactly 1 or 0), so a regression's normality assumption does not
//! hold, and one wild run must not decide the slope. Mann–Kendall uses the normal
//! approximation of S with the tie-corrected variance and a continuity correction of 1
//! (Gilbert 1987, §16.4; Hirsch & Slack 1984), the form `pymannkendall.original_test` gives.
//!
//! Pure functions, no I/O.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

use crate::stats::change::Direction;

/// Fewest values for a verdict other than [`Verdict::NoTrend`]: with three, even a perfectly
/// monotone series has p ≈ 0.30, so a verdict would only ever say "no trend".
pub const MIN_RUNS: usize = 4;

/// The significance level of a verdict.
pub const ALPHA: f64 = 0.05;

/// The Mann–Kendall statistic of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MannKendall {
    /// Values in the series.
    pub n: usize,
    /// `S = Σ_{i<j} sign(x_j − x_i)`: positive when later values tend to be larger.
    pub s: i64,
    /// `Var(S)` under no trend, corrected for ties.
    pub var_s: f64,
    /// `(S − sign(S)) / √Var(S)`; 0 when `S = 0` or the variance is 0 (all values tied).
    pub z: f64,
    /// Two-sided p-value of `z` under the standard normal.
    pub p_value: f64,
}

/// What a trend says about the expectation it was computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A significant trend in the direction the expectation calls worse.
    Worsening,
    /// A significant trend the other way.
    Improving,
    /// Not significant, or fewer than [`MIN_RUNS`] values.
    NoTrend,
}

/// Computes Mann–Kendall over `xs`, oldest first; `None` with fewer than two values. NaNs are
/// the caller's to drop (a NaN compares as a tie here).
pub fn mann_kendall(xs: &[f64]) -> Option<MannKendall> {
    let n = xs.len();
    if n < 2 {
        return None;
    }
    let mut s: i64 = 0;
    for i in 0..n {
        for j in i + 1..n {
            s += match xs[j].partial_cmp(&xs[i]) {
                Some(std::cmp::Ordering::Greater) => 1,
                Some(std::cmp::Ordering::Less) => -1,
                _ => 0,
            };
        }
    }
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    // Each group of t equal values removes t(t−1)(2t+5) from the variance's numerator.
    let mut ties = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && sorted[j] == sorted[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        ties += t * (t - 1.0) * (2.0 * t + 5.0);
        i = j;
    }
    let nf = n as f64;
    let var_s = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
    let z = if var_s <= 0.0 || s == 0 {
        0.0
    } else {
        (s - s.signum()) as f64 / var_s.sqrt()
    };
    let p_value = (2.0 * Normal::standard().sf(z.abs())).clamp(0.0, 1.0);
    Some(MannKendall {
        n,
        s,
        var_s,
        z,
        p_value,
    })
}

/// The Theil–Sen slope of `xs` against its index (change per run): the median of
/// `(x_j − x_i) / (j − i)` over all pairs `i < j`; `None` with fewer than two values.
pub fn theil_sen(xs: &[f64]) -> Option<f64> {
    let n = xs.len();
    let mut slopes = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            slopes.push((xs[j] - xs[i]) / (j - i) as f64);
        }
    }
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_by(f64::total_cmp);
    let m = slopes.len();
    Some(if m % 2 == 1 {
        slopes[m / 2]
    } else {
        (slopes[m / 2 - 1] + slopes[m / 2]) / 2.0
    })
}

/// The verdict of `mk` for an expectation whose metric degrades in direction `worse`.
pub fn verdict(mk: &MannKendall, worse: Direction) -> Verdict {
    if mk.n < MIN_RUNS || mk.p_value >= ALPHA || mk.s == 0 {
        return Verdict::NoTrend;
    }
    match (mk.s > 0, worse) {
        (true, Direction::Up) | (false, Direction::Down) => Verdict::Worsening,
        _ => Verdict::Improving,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The p-values below are `math.erfc(abs(z) / math.sqrt(2))` from Python, for the z
    // computed by hand in each comment.

    fn close(got: f64, want: f64, tol: f64) {
        assert!((got - want).abs() <= tol, "{got} != {want}");
    }

    #[test]
    fn a_monotone_series_without_ties() {
        // Every one of the C(5,2) = 10 pairs rises: S = 10; Var = 5·4·15/18 = 16.667;
        // z = (10 − 1)/√16.667 = 2.2045.
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0];
        let mk = mann_kendall(&xs).unwrap();
        assert_eq!(mk.s, 10);
        close(mk.var_s, 300.0 / 18.0, 1e-12);
        close(mk.z, 9.0 / (300.0f64 / 18.0).sqrt(), 1e-12);
        close(mk.p_value, 0.027_486_336_111_510_353, 1e-9);
        assert_eq!(theil_sen(&xs), Some(1.0));
        // Rising latency is worse; rising availability is better.
        assert_eq!(verdict(&mk, Direction::Up), Verdict::Worsening);
        assert_eq!(verdict(&mk, Direction::Down), Verdict::Improving);
    }

    #[test]
    fn ties_shrink_the_variance() {
        // x = 1, 1, 2, 3, 3, 3. Rising pairs: 1→2 ×2, 1→3 ×6, 2→3 ×3 = 11; the other 4 are
        // tied: S = 11. Tie groups of 2 and 3:
        // Var = (6·5·17 − 2·1·9 − 3·2·11)/18 = (510 − 18 − 66)/18 = 23.667;
        // z = 10/√23.667 = 2.0556.
        let xs = [1.0, 1.0, 2.0, 3.0, 3.0, 3.0];
        let mk = mann_kendall(&xs).unwrap();
        assert_eq!(mk.s, 11);
        close(mk.var_s, 426.0 / 18.0, 1e-12);
        close(mk.z, 10.0 / (426.0f64 / 18.0).sqrt(), 1e-12);
        close(mk.p_value, 0.039_824_355_364_810_736, 1e-9);
        // The 15 pairwise slopes, sorted: 0 0 0 0 (the tied pairs), 1/3, 2/5, 1/2 ×4, 2/3 ×2,
        // 1 ×3; the 8th is the median.
        assert_eq!(theil_sen(&xs), Some(0.5));
    }

    #[test]
    fn a_falling_series_with_ties() {
        // x = 10, 9, 8, 9, 7, 6, 7, 5: of the 28 pairs, 8→9 and 6→7 rise, 9/9 and 7/7 tie,
        // 24 fall: S = −22. Two tie groups of 2: Var = (8·7·21 − 2·18)/18 = 63.333;
        // z = −21/√63.333 = −2.6388.
        let xs = [10.0, 9.0, 8.0, 9.0, 7.0, 6.0, 7.0, 5.0];
        let mk = mann_kendall(&xs).unwrap();
        assert_eq!(mk.s, -22);
        close(mk.var_s, 1140.0 / 18.0, 1e-12);
        close(mk.z, -21.0 / (1140.0f64 / 18.0).sqrt(), 1e-12);
        close(mk.p_value, 0.008_320_505_023_884_407, 1e-9);
        // Falling availability is worse; falling latency is better.
        assert_eq!(verdict(&mk, Direction::Down), Verdict::Worsening);
        assert_eq!(verdict(&mk, Direction::Up), Verdict::Improving);
        // Of the 28 pairwise slopes (sorted in Python), the 14th and 15th are both −2/3.
        close(theil_sen(&xs).unwrap(), -2.0 / 3.0, 1e-12);
    }

    #[test]
    fn short_flat_or_insignificant_series_have_no_trend() {
        assert_eq!(mann_kendall(&[1.0]), None);
        assert_eq!(theil_sen(&[1.0]), None);
        // Three rising values: S = 3, Var = 3·2·11/18 = 3.667, z = 2/1.915 = 1.0445; below
        // MIN_RUNS anyway.
        let mk = mann_kendall(&[1.0, 2.0, 3.0]).unwrap();
        close(mk.p_value, 0.296_269_871_484_286_4, 1e-9);
        assert_eq!(verdict(&mk, Direction::Up), Verdict::NoTrend);
        // Four rising values: S = 6, Var = 4·3·13/18 = 8.667, z = 5/2.944 = 1.698: not
        // significant.
        let mk = mann_kendall(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        close(mk.p_value, 0.089_429_359_028_993_59, 1e-9);
        assert_eq!(verdict(&mk, Direction::Up), Verdict::NoTrend);
        // All tied: no variance, no trend, p = 1.
        let mk = mann_kendall(&[1.0; 6]).unwrap();
        assert_eq!((mk.s, mk.z, mk.p_value), (0, 0.0, 1.0));
        assert_eq!(verdict(&mk, Direction::Down), Verdict::NoTrend);
    }
}
