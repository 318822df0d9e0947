//! Did the fault really move the metric? The two-sided Mann–Whitney U test.
//!
//! The question a chaos run asks of a monitor is "are the samples taken while the fault was in
//! place drawn from the same distribution as the baseline?". Latencies are skewed, heavy-tailed
//! and full of ties (a probe reports whole milliseconds), so a t-test's normality assumption does
//! not hold; the Mann–Whitney U test (a.k.a. Wilcoxon rank-sum) only uses the order of the
//! values, so it is valid for any continuous distribution and robust to outliers.
//!
//! The results match `scipy.stats.mannwhitneyu(x, y, alternative='two-sided',
//! use_continuity=True, method=...)`: the same U; exact p-values to about 1e-16 relative and
//! asymptotic ones to about 1e-10 relative (the accuracy of statrs's `erfc`), tiny ones
//! included (`tests/stats_reference.rs` checks this against values SciPy computed, see
//! `scripts/gen-stats-reference`).
//!
//! ```
//! use chaosforge::stats::significance::{mann_whitney_u, Method};
//!
//! let baseline = [12.0, 11.0, 13.0, 12.5, 11.5, 12.2];
//! let fault = [19.0, 25.0, 18.5, 30.0, 22.0, 21.0];
//! let test = mann_whitney_u(&baseline, &fault).unwrap();
//! // Every baseline sample is faster than every fault sample: U of the baseline is 0.
//! assert_eq!(test.u, 0.0);
//! assert_eq!(test.method, Method::Exact); // no ties, both sides ≤ 20
//! assert!(test.p_value < 0.01);
//! ```

use std::cmp::Ordering;

use statrs::distribution::{ContinuousCDF, Normal};

/// How the p-value of a [`MannWhitney`] test was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// The exact null distribution of U, counted over all `C(n+m, n)` equally likely orderings
    /// of the two samples. Exact only without ties. Available while `n·m ≤`
    /// [`EXACT_MAX_PAIRS`] and `C(n+m, n)` fits in 128 bits (always for `n + m ≤ 130`); beyond
    /// that [`mann_whitney_u_with`] uses the approximation, which is then excellent anyway.
    Exact,
    /// The normal approximation of U with the tie-corrected variance and a continuity
    /// correction of 0.5. Good once both samples have more than a handful of values; cheap for
    /// any size (one sort).
    Asymptotic,
}

/// The result of a two-sided Mann–Whitney U test of `x` (the baseline) against `y`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// The U statistic of `x`, as SciPy's `mannwhitneyu` returns it: the number of pairs
    /// `(xᵢ, yⱼ)` with `xᵢ > yⱼ`, plus half the number of pairs with `xᵢ = yⱼ`. It lies in
    /// `0..=n·m`; `n·m/2` means no shift. `U(y) = n·m − U(x)`.
    pub u: f64,
    /// The two-sided p-value in `[0, 1]`: the probability, were both samples drawn from one
    /// distribution, of a U at least as far from `n·m/2` as the one observed.
    pub p_value: f64,
    /// How `p_value` was computed.
    pub method: Method,
    /// For [`Method::Asymptotic`], the standardized statistic of `x` after the continuity
    /// correction: `sign(d)·max(|d| − 0.5, 0)/σ_U` with `d = U − n·m/2`. Positive means `x`
    /// tends to be larger than `y`. `p_value` is `min(1, 2·(1 − Φ(|z|)))`. `None` for
    /// [`Method::Exact`]; `Some(0.0)` when every value is the same (σ_U = 0).
    pub z: Option<f64>,
}

/// The automatic [`mann_whitney_u`] uses the exact distribution when neither sample is larger
/// than this (and there are no ties). Up to 20 + 20 the counting costs under 10⁵ additions; the
/// normal approximation is already close there, but a tail probability from a 20-sample window
/// is exactly the case where the approximation errs most.
pub const EXACT_MAX_LEN: usize = 20;

/// [`Method::Exact`] is computed only up to this many pairs `n·m` (the counting needs
/// `16·n·m/2` bytes at worst): 2²⁰, far beyond what the automatic choice asks for.
pub const EXACT_MAX_PAIRS: usize = 1 << 20;

/// The two-sided Mann–Whitney U test of `x` (the baseline) against `y` (e.g. the fault window),
/// choosing the method: [`Method::Exact`] when there are no ties and both samples have at most
/// [`EXACT_MAX_LEN`] values, [`Method::Asymptotic`] otherwise (the exact distribution is only
/// right without ties).
///
/// Returns `None` when either sample is empty or any value is NaN. Infinities are ordinary
/// (extreme) values. When every value in both samples is the same, `p_value` is 1.
///
/// Note that SciPy's own `method='auto'` switches to the approximation earlier (once both
/// samples exceed 8); call [`mann_whitney_u_with`] to choose.
pub fn mann_whitney_u(x: &[f64], y: &[f64]) -> Option<MannWhitney> {
    let ranked = Ranked::of(x, y)?;
    let method = if !ranked.ties && x.len() <= EXACT_MAX_LEN && y.len() <= EXACT_MAX_LEN {
        Method::Exact
    } else {
        Method::Asymptotic
    };
    Some(ranked.test(method))
}

/// The two-sided Mann–Whitney U test with the given `method`, as
/// `scipy.stats.mannwhitneyu(x, y, alternative='two-sided', use_continuity=True, method=...)`.
///
/// * [`Method::Asymptotic`]: midranks for ties, `σ_U² = n·m/12 · ((N + 1) − Σ(t³ − t)/(N(N − 1)))`
///   over the tie groups of size `t` (`N = n + m`), `z = (max(U, n·m − U) − n·m/2 − 0.5)/σ_U`,
///   `p = min(1, 2·(1 − Φ(z)))`, the tail taken from the normal survival function so that tiny
///   p-values keep their precision (`1 − Φ(z)` would round to 0 beyond z ≈ 8.3).
/// * [`Method::Exact`]: `p = min(1, 2·min(P(U ≤ u), P(U ≥ u)))` under the exact null
///   distribution of U without ties. With ties U can be a half-integer; as SciPy does, it is
///   then rounded towards `n·m/2`, which makes the p-value larger (conservative). Prefer the
///   asymptotic method with ties: the exact distribution assumes there are none. When the
///   samples are too large to count (see [`Method::Exact`]) the result is asymptotic, and its
///   `method` says so.
///
/// Returns `None` when either sample is empty or any value is NaN; `p_value` is 1 when every
/// value is the same.
pub fn mann_whitney_u_with(x: &[f64], y: &[f64], method: Method) -> Option<MannWhitney> {
    Some(Ranked::of(x, y)?.test(method))
}

/// What both methods need from the ranking of the pooled sample.
struct Ranked {
    n: usize,
    m: usize,
    /// `2·U(x)`, exact in integers (U itself may be a half-integer).
    twice_u: u128,
    /// `Σ (t³ − t)` over the groups of `t` equal values.
    tie_term: f64,
    /// Any value occurs more than once.
    ties: bool,
    /// Every value is the same: U is always `n·m/2`, nothing can be concluded.
    constant: bool,
}

// === impl Ranked ===

impl Ranked {
    fn of(x: &[f64], y: &[f64]) -> Option<Self> {
        if x.is_empty() || y.is_empty() || x.iter().chain(y).any(|v| v.is_nan()) {
            return None;
        }
        // Pool the samples, `true` marking x, and sort by value. `total_cmp` is a total order
        // (no NaN is left) that puts -0.0 right before 0.0, so equal values (`==`, which also
        // makes -0.0 equal 0.0) end up next to each other.
        let mut pooled: Vec<(f64, bool)> = x
            .iter()
            .map(|&v| (v, true))
            .chain(y.iter().map(|&v| (v, false)))
            .collect();
        pooled.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));

        // Walk the groups of equal values. U(x) counts, for each x, the y below it plus half the
        // y equal to it; that is the same as the rank-sum form R₁ − n(n+1)/2 with midranks, but
        // exact in integers for any size.
        let mut twice_u: u128 = 0;
        let mut tie_term = 0.0;
        let mut ties = false;
        let mut y_below: u128 = 0;
        let mut start = 0;
        while start < pooled.len() {
            let value = pooled[start].0;
            let len = pooled[start..]
                .iter()
                .position(|p| p.0 != value)
                .unwrap_or(pooled.len() - start);
            let in_x = pooled[start..start + len].iter().filter(|p| p.1).count() as u128;
            let in_y = len as u128 - in_x;
            twice_u += in_x * (2 * y_below + in_y);
            y_below += in_y;
            if len > 1 {
                ties = true;
                let t = len as f64;
                tie_term += t * t * t - t;
            }
            start += len;
        }
        Some(Ranked {
            n: x.len(),
            m: y.len(),
            twice_u,
            tie_term,
            ties,
            constant: pooled.first().map(|p| p.0) == pooled.last().map(|p| p.0),
        })
    }

    fn test(&self, method: Method) -> MannWhitney {
        let u = self.twice_u as f64 / 2.0;
        let exact = match method {
            Method::Exact => self.exact_p(),
            Method::Asymptotic => None,
        };
        let (p_value, z, method) = match exact {
            Some(p) => (p, None, Method::Exact),
            None => {
                let (p, z) = self.asymptotic_p(u);
                (p, Some(z), Method::Asymptotic)
            }
        };
        MannWhitney {
            u,
            p_value,
            method,
            z,
        }
    }

    /// SciPy's `_get_mwu_z` and `2 * norm.sf(z)`, in the same order of operations.
    fn asymptotic_p(&self, u: f64) -> (f64, f64) {
        if self.constant {
            return (1.0, 0.0);
        }
        let (n, m) = (self.n as f64, self.m as f64);
        let total = n + m;
        let mu = n * m / 2.0;
        let variance = n * m / 12.0 * ((total + 1.0) - self.tie_term / (total * (total - 1.0)));
        let sigma = variance.sqrt();
        if sigma.is_nan() || sigma <= 0.0 {
            // Only a constant pooled sample has no variance; kept as a guard against rounding.
            return (1.0, 0.0);
        }
        let d = u - mu;
        // The continuity correction moves U half a step towards the mean. With |d| ≤ 0.5 the
        // corrected statistic is ≤ 0 and 2·sf(·) ≥ 1, clipped to 1, exactly as SciPy does.
        let corrected = (d.abs() - 0.5) / sigma;
        let p = (2.0 * Normal::standard().sf(corrected)).clamp(0.0, 1.0);
        let z = match d.partial_cmp(&0.0) {
            Some(Ordering::Greater) => corrected.max(0.0),
            Some(Ordering::Less) => 0.0 - corrected.max(0.0), // `0 - 0` is +0, `-0` is not
            _ => 0.0,
        };
        (p, z)
    }

    /// `min(1, 2·P(U ≤ k))` with `k` the observed U folded to the lower tail (the null
    /// distribution is symmetric about `n·m/2`, so `P(U ≥ u) = P(U ≤ n·m − u)`).
    /// `None` when the samples are too large to count.
    fn exact_p(&self) -> Option<f64> {
        if self.n.checked_mul(self.m)? > EXACT_MAX_PAIRS {
            return None;
        }
        if self.constant {
            return Some(1.0);
        }
        let nm = (self.n as u128) * (self.m as u128);
        // The smaller of U and n·m − U, as twice its value; then rounded up to a whole number
        // (a half-integer U only arises with ties — SciPy truncates max(U, n·m − U), the same).
        let twice_low = self.twice_u.min(2 * nm - self.twice_u);
        let low = twice_low.div_ceil(2);
        let (short, long) = (self.n.min(self.m), self.n.max(self.m));
        let cdf = exact_cdf(short, long, usize::try_from(low).ok()?)?;
        Some((2.0 * cdf).clamp(0.0, 1.0))
    }
}

/// `P(U ≤ k)` for samples of `a` and `b` values (`a ≤ b`) under the null hypothesis, without
/// ties; `None` when the counts would not fit in 128 bits.
///
/// Each of the `C(a+b, a)` orderings of the pooled sample is equally likely, and the number of
/// them with `U = u` is the number of partitions of `u` into at most `a` parts of at most `b`:
/// the coefficient of `q^u` in the Gaussian binomial `Π_{i=1..a} (1 − q^(b+i)) / (1 − q^i)`.
/// The product is expanded factor by factor, as exact integer counts (as SciPy counts in
/// integers): dividing by `1 − q^i` is a running sum with stride `i`, multiplying by
/// `1 − q^(b+i)` a subtraction. Dividing first keeps every intermediate a non-negative count no
/// larger than `C(a+b, a)`. Only the coefficients up to `k` are needed (truncating a power
/// series commutes with multiplying it), so a tiny tail costs little: `O(a·k)` time, `O(k)`
/// memory.
fn exact_cdf(a: usize, b: usize, k: usize) -> Option<f64> {
    // C(a+b, a) as C(b+i, i) = C(b+i−1, i−1)·(b+i)/i. With g = gcd(C, i), i/g is coprime to
    // C/g and so divides b+i: exact at every step, and no intermediate larger than the result.
    let mut total: u128 = 1;
    for i in 1..=a {
        let (i, next) = (i as u128, (b + i) as u128);
        let g = gcd(total, i);
        total = (total / g).checked_mul(next / (i / g))?;
    }
    let k = k.min(a * b);
    let mut counts = vec![0u128; k + 1];
    counts[0] = 1;
    for i in 1..=a {
        for u in i..=k {
            counts[u] = counts[u].checked_add(counts[u - i])?;
        }
        let stride = b + i;
        for u in (stride..=k).rev() {
            counts[u] = counts[u].checked_sub(counts[u - stride])?;
        }
    }
    let below = counts
        .iter()
        .try_fold(0u128, |sum, &c| sum.checked_add(c))?;
    // Two roundings to f64 (each ≤ 2⁻⁵³ relative) and one division.
    Some(below as f64 / total as f64)
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests;
