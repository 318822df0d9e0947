//! When did the fault show, and when did the system recover? One-sided tabular CUSUM change
//! detection against a baseline.
//!
//! A threshold on single samples ("latency > 300 ms") either alarms on noise or misses a
//! moderate, sustained shift. The CUSUM (Page, 1954) accumulates the standardized excess over
//! the baseline mean, less an allowance `k`, and alarms when the sum passes `h`:
//!
//! ```text
//! z_t = (x_t − μ) / σ_eff                 (Direction::Up; (μ − x_t) / σ_eff for Down)
//! S_t = max(0, S_{t−1} + z_t − k),  S_{−1} = 0
//! alarm at the first t with S_t > h
//! ```
//!
//! With the defaults `k = 0.5`, `h = 5` (Montgomery, *Introduction to Statistical Quality
//! Control*, §9.1) an in-control normal series alarms falsely about once in 465 samples on
//! average, while a sustained shift of 1σ is found after about 10 samples and one of 3σ after
//! 2–3.
//!
//! Everything here works on indices into the given slices; the caller maps them to timestamps
//! (time-to-detect is `t[detect] − t[inject]`, time-to-recover `t[recovered] − t[revert]`).
//!
//! ```
//! use chaosforge::stats::change::{Cusum, Direction};
//!
//! let baseline = [100.0, 102.0, 98.0, 101.0, 99.0, 100.0]; // latency, ms; σ ≈ 1.4
//! let cusum = Cusum::with_min_sigma(1.0); // never standardize by less than 1 ms
//! let during = [100.0, 101.0, 130.0, 131.0, 129.0, 130.0];
//! assert_eq!(cusum.detect(&baseline, &during, Direction::Up), Some(2));
//! // Recovery: samples back near the baseline, the CUSUM quiet from there, and enough of them
//! // (11 with the defaults) to be sure of it.
//! let after_revert = [128.0, 115.0, 101.0, 99.0, 100.0, 100.0, 101.0, 99.0, 100.0, 102.0,
//!                     98.0, 100.0, 101.0, 100.0];
//! assert_eq!(cusum.recovered(&baseline, &after_revert, Direction::Up), Some(2));
//! ```

/// Which way is degradation: the side of the baseline the CUSUM watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Larger is worse: latency, error rate, queue depth.
    Up,
    /// Smaller is worse: throughput, availability, success ratio.
    Down,
}

/// The tuning of the one-sided tabular CUSUM. All quantities except `min_sigma` are in units of
/// the baseline's effective standard deviation `σ_eff`.
///
/// `Cusum::default()` is `k = 0.5, h = 5, min_sigma = 0, recovery_run = 3, recovery_band = 3`.
/// Set `min_sigma` for any metric whose baseline may be constant (see [`Cusum::baseline`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cusum {
    /// The allowance (reference value) `k`: the drift, in σ_eff per sample, that is ignored.
    /// Half the shift to detect fastest; 0.5 targets a 1σ shift. Must be finite and > 0.
    pub k: f64,
    /// The decision interval `h`: the accumulated excess, in σ_eff, that raises the alarm.
    /// Larger means fewer false alarms and slower detection. Must be finite and > 0.
    pub h: f64,
    /// The floor for the baseline's standard deviation, in the metric's own unit:
    /// `σ_eff = max(σ, min_sigma)`. A constant baseline (availability always 1.0) has σ = 0 and
    /// would make every deviation infinitely significant; the floor says how small a change
    /// still matters (e.g. 0.001 for availability, 1 ms for latency). Must be finite and ≥ 0.
    pub min_sigma: f64,
    /// How many consecutive in-band samples [`Cusum::recovered`] requires (`w`). Must be ≥ 1.
    pub recovery_run: usize,
    /// The band, in σ_eff on the degradation side of μ, that counts as in control for
    /// [`Cusum::recovered`]. Must be finite and > 0.
    pub recovery_band: f64,
}

/// The baseline's mean and standard deviations, as [`Cusum::baseline`] estimates them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    /// The arithmetic mean μ of the baseline samples.
    pub mean: f64,
    /// The sample standard deviation σ (denominator `n − 1`; 0 for a single sample).
    pub sigma: f64,
    /// `σ_eff = max(σ, min_sigma)`, which standardizes every sample. Always > 0 from
    /// [`Cusum::baseline`]; the `…_from` methods reject a hand-made baseline where it is not.
    pub sigma_eff: f64,
}

// === impl Cusum ===

impl Default for Cusum {
    fn default() -> Self {
        Cusum {
            k: 0.5,
            h: 5.0,
            min_sigma: 0.0,
            recovery_run: 3,
            recovery_band: 3.0,
        }
    }
}

impl Cusum {
    /// The defaults with the given floor for σ (see [`Cusum::min_sigma`]).
    pub fn with_min_sigma(min_sigma: f64) -> Self {
        Cusum {
            min_sigma,
            ..Cusum::default()
        }
    }

    /// Estimates μ, σ and `σ_eff = max(σ, min_sigma)` from the baseline samples.
    ///
    /// `None` when `values` is empty, holds a non-finite value, when the settings are invalid
    /// (see the fields), or when `σ_eff` is 0 (a constant baseline with `min_sigma = 0`): the
    /// series could not be standardized.
    pub fn baseline(&self, values: &[f64]) -> Option<Baseline> {
        if !self.is_valid() || values.is_empty() || !values.iter().all(|v| v.is_finite()) {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        // Two passes (mean, then squared deviations): no cancellation for large, tight values
        // such as timestamps or byte counts.
        let sigma = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        let baseline = Baseline {
            mean,
            sigma,
            sigma_eff: sigma.max(self.min_sigma),
        };
        baseline.is_usable().then_some(baseline)
    }

    /// The index of the first sample of `series` at which the CUSUM in direction `dir` alarms
    /// (`S_t > h`), with μ and σ_eff estimated from `baseline`; `None` if it never does, or if
    /// the baseline is unusable (see [`Cusum::baseline`]).
    ///
    /// `series` is what followed the baseline (typically the samples from the injection on);
    /// the index is into it. NaN samples are gaps: they leave `S` unchanged (no evidence either
    /// way). Infinite samples are extreme values (`+∞` latency alarms at once).
    pub fn detect(&self, baseline: &[f64], series: &[f64], dir: Direction) -> Option<usize> {
        self.detect_from(&self.baseline(baseline)?, series, dir)
    }

    /// [`Cusum::detect`] against an already estimated [`Baseline`] (estimate once, test several
    /// series). `None` also when `baseline` is not usable (non-finite, σ_eff ≤ 0).
    pub fn detect_from(
        &self,
        baseline: &Baseline,
        series: &[f64],
        dir: Direction,
    ) -> Option<usize> {
        if !self.is_valid() || !baseline.is_usable() {
            return None;
        }
        let mut s = 0.0_f64;
        for (t, &x) in series.iter().enumerate() {
            s = (s + self.increment(baseline, x, dir)).max(0.0);
            if s > self.h {
                return Some(t);
            }
        }
        None
    }

    /// The CUSUM statistic `S_t` for every sample of `series` (e.g. to plot it next to the
    /// metric); empty when the baseline is unusable or the settings invalid.
    pub fn statistic(&self, baseline: &Baseline, series: &[f64], dir: Direction) -> Vec<f64> {
        if !self.is_valid() || !baseline.is_usable() {
            return Vec::new();
        }
        let mut s = 0.0_f64;
        series
            .iter()
            .map(|&x| {
                s = (s + self.increment(baseline, x, dir)).max(0.0);
                s
            })
            .collect()
    }

    /// The index from which `series` (the samples after the fault was reverted) is back in
    /// control, or `None` if it never is within the series (or the baseline is unusable).
    ///
    /// **Definition.** Recovery is at the smallest index `i` such that both hold:
    /// 1. *Quiet from `i`:* a degradation CUSUM started afresh at `i` (`S_{i−1} = 0`) never
    ///    alarms on `series[i..]`.
    /// 2. *Back in the band at `i`:* the `recovery_run` samples `series[i..i + w]` all exist
    ///    and lie within `recovery_band`·σ_eff of μ on the degradation side
    ///    (`x ≤ μ + 3σ_eff` for [`Direction::Up`], `x ≥ μ − 3σ_eff` for
    ///    [`Direction::Down`], with the defaults). A NaN sample is not in the band.
    /// 3. *Enough evidence after `i`:* `series[i..]` holds at least
    ///    [`Cusum::recovery_horizon`] non-NaN samples, `H = ⌊h/k⌋ + 1` (11 with the defaults).
    ///
    /// **Why this definition.**
    /// * (1) is the same test that detected the fault, so "recovered" means "this detector
    ///   would no longer fire": no sustained excess, however mild, remains after `i` — a system
    ///   that settles at +1.5σ is not called recovered just because each sample is in the
    ///   band. The CUSUM restarts at `i` rather than continuing from the fault: its memory of
    ///   the fault would otherwise keep it above `h` for a while after the metric is back.
    ///   Starting later can only lower a CUSUM, so the indices satisfying (1) are all those
    ///   from some `q` on, and `q` is found in one backward pass: the CUSUM from `i` alarms iff
    ///   some stretch `series[a..=t]` with `a ≥ i` has `Σ (z − k) > h`.
    /// * (2) pins the answer to where samples are individually normal again: a CUSUM started
    ///   on the last elevated sample could stay just below `h`, and (1) alone would put
    ///   recovery there. Requiring `w` consecutive samples, not one, keeps a single lucky
    ///   sample in a still degraded stretch from counting.
    /// * (3) because the last few samples of any series can never make the CUSUM alarm,
    ///   however degraded they are: (1) holds trivially at the very end. `H` is the number of
    ///   samples after which a sustained shift of `2k` σ_eff (1σ with the defaults, the shift
    ///   the defaults are tuned to) certainly alarms — each such sample adds `k`, and
    ///   `H·k > h`. A shift smaller than `2k` may still hide in the last `H` samples; that is
    ///   the detector's resolution, not a property of recovery.
    /// * Only the degradation side counts: after a latency fault is reverted, latency below the
    ///   baseline (a cold cache warmed, a queue drained) is not a failure to recover, and it
    ///   would otherwise delay recovery indefinitely; the one-sided CUSUM watches the same side.
    ///
    /// A long series can still contain a false alarm of the in-control CUSUM (about one in
    /// 465 samples with the defaults); it moves recovery past it, erring on the late side.
    pub fn recovered(&self, baseline: &[f64], series: &[f64], dir: Direction) -> Option<usize> {
        self.recovered_from(&self.baseline(baseline)?, series, dir)
    }

    /// [`Cusum::recovered`] against an already estimated [`Baseline`].
    pub fn recovered_from(
        &self,
        baseline: &Baseline,
        series: &[f64],
        dir: Direction,
    ) -> Option<usize> {
        if !self.is_valid() || !baseline.is_usable() {
            return None;
        }
        // (1) Backwards: best(a) = max over t ≥ a of Σ_{a..=t} (z − k) = c_a + max(0, best(a+1)).
        // The last `a` with best(a) > h is the last start of an alarming stretch; quiet from
        // the index after it.
        let mut quiet_from = 0;
        let mut tail = 0.0_f64; // max(0, best(a + 1))
        for (a, &x) in series.iter().enumerate().rev() {
            let best = self.increment(baseline, x, dir) + tail;
            if best > self.h {
                quiet_from = a + 1;
                break;
            }
            tail = best.max(0.0);
        }
        // (2) The first run of `w` in-band samples starting at or after `quiet_from`; (3) holds
        // for it or for no later start (the evidence after `i` only shrinks as `i` grows).
        let horizon = self.recovery_horizon();
        let evidence_from = |i: usize| series[i..].iter().filter(|x| !x.is_nan()).count();
        let limit = match dir {
            Direction::Up => baseline.mean + self.recovery_band * baseline.sigma_eff,
            Direction::Down => baseline.mean - self.recovery_band * baseline.sigma_eff,
        };
        let mut run = 0;
        for (t, &x) in series.iter().enumerate().skip(quiet_from) {
            let in_band = match dir {
                Direction::Up => x <= limit,
                Direction::Down => x >= limit,
            };
            run = if in_band { run + 1 } else { 0 };
            if run == self.recovery_run {
                let start = t + 1 - run;
                return (evidence_from(start) >= horizon).then_some(start);
            }
        }
        None
    }

    /// `H = ⌊h/k⌋ + 1`: how many samples [`Cusum::recovered`] wants to see from the recovery
    /// index on, the fewest in which a sustained shift of `2k` σ_eff must have alarmed
    /// (11 with the defaults).
    pub fn recovery_horizon(&self) -> usize {
        // Saturating float-to-int conversion: a tiny k asks for more samples than any series has.
        (self.h / self.k).floor() as usize + 1
    }

    /// `z_t − k`, or 0 for a NaN sample (a gap). `z` is clamped to the finite range so that an
    /// infinite sample is merely huge and `S` never becomes NaN (`∞ − ∞`).
    fn increment(&self, baseline: &Baseline, x: f64, dir: Direction) -> f64 {
        if x.is_nan() {
            return 0.0;
        }
        let excess = match dir {
            Direction::Up => x - baseline.mean,
            Direction::Down => baseline.mean - x,
        };
        (excess / baseline.sigma_eff).clamp(-f64::MAX, f64::MAX) - self.k
    }

    fn is_valid(&self) -> bool {
        self.k.is_finite()
            && self.k > 0.0
            && self.h.is_finite()
            && self.h > 0.0
            && self.min_sigma.is_finite()
            && self.min_sigma >= 0.0
            && self.recovery_run >= 1
            && self.recovery_band.is_finite()
            && self.recovery_band > 0.0
    }
}

// === impl Baseline ===

impl Baseline {
    /// Finite μ and a finite, positive σ_eff: something to standardize by.
    fn is_usable(&self) -> bool {
        self.mean.is_finite() && self.sigma_eff.is_finite() && self.sigma_eff > 0.0
    }
}

#[cfg(test)]
mod tests;
