//! The hypothesis expectation language, and judging expectations over a window of samples.
//!
//! An expectation is one line of the experiment file's `expect:` list:
//!
//! ```text
//! availability >= 99%        error_rate < 1%        error_rate < 0.01
//! latency.p99 < 300ms        latency.max <= 1s      throughput >= 50/s
//! value < 0.8                value.p95 < 200        resource.cpu < 80%
//! resource.memory < 512MiB   resource.fds < 1000
//! latency.p99 < baseline * 1.5                      throughput > baseline - 10%
//! ```
//!
//! The grammar is `<metric> <op> <threshold>`, spaces optional around the operator:
//!
//! * metrics: `availability`, `error_rate`, `throughput`, `latency.<stat>`, `value[.<stat>]`
//!   (the number a command, Prometheus or process sample yields) and
//!   `resource.<cpu|memory|fds|threads>[.<stat>]` (process monitors), with `<stat>` one of
//!   `p50 p90 p95 p99 max min mean`; `value` and `resource.cpu` alone mean the window's mean;
//! * operators: `<`, `<=`, `>`, `>=` (no equality: measured values are never exactly equal);
//! * thresholds: a ratio (`99%`, `0.99`) for availability and error rate, a duration with a
//!   unit (`300ms`) for latency, a rate per second (`50/s`) for throughput, a plain number for
//!   `value`, fds and threads, a percent of one core (`80%`; `200%` is two cores) for CPU and a
//!   size (`512MiB`) for memory;
//! * or a threshold relative to what the baseline phase measured: `baseline * 1.5`,
//!   `baseline + 50ms`, `baseline - 10%` (a percent of the baseline's value), and for ratios
//!   `baseline - 0.5pp` (percentage points).
//!
//! Everything here is pure: [`Expectation::parse`] turns text into a value (or a [`UnitError`]
//! pointing at the bad part), [`WindowStats::from_samples`] summarises samples, and
//! [`Expectation::judge`] compares the two.
//!
//! ```
//! # use std::time::Duration;
//! # use chaosforge::hypothesis::{Expectation, Verdict, WindowStats};
//! # use chaosforge::probe::Sample;
//! let e = Expectation::parse("latency.p99 < 300ms").unwrap();
//! let samples = [Sample::success(Duration::from_millis(120))];
//! let stats = WindowStats::from_samples(&samples, Duration::from_secs(1));
//! assert_eq!(e.judge(&stats), Verdict::Holds { observed: 0.12 });
//! assert_eq!(e.explain(&e.judge(&stats)), "latency.p99 < 300ms: holds (observed 120ms)");
//! ```

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::probe::Sample;
use crate::stats;
use crate::units::{self, Ratio, UnitError};

/// What an expectation measures over a window of samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// The fraction of samples that succeeded, in `0..=1`.
    Availability,
    /// The fraction of samples that failed, `1 - availability`.
    ErrorRate,
    /// A statistic of the latency of successful samples, in seconds.
    Latency(LatencyStat),
    /// Successful samples per second of window.
    Throughput,
    /// A statistic of the numbers successful samples yielded (a command's parsed output, a
    /// Prometheus query's result).
    Value(LatencyStat),
    /// A statistic of a process monitor's resource readings.
    Resource(ResourceKind, LatencyStat),
}

/// Which reading of a process monitor a [`Metric::Resource`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// CPU in percent of one core (`200` is two cores busy).
    Cpu,
    /// Resident memory in bytes (a process's RSS, a cgroup's `memory.current`).
    Memory,
    /// Open file descriptors.
    Fds,
    /// Threads.
    Threads,
}

/// What an expectation compares the observed value with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// A fixed value in the metric's canonical unit.
    Fixed(f64),
    /// A value computed from what the same metric measured over the baseline phase.
    Baseline(Relative),
}

/// How a [`Threshold::Baseline`] is computed from the baseline's value `b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Relative {
    /// `baseline * f`.
    Times(f64),
    /// `baseline + d` (`d` negative for `-`), in the metric's canonical unit.
    Plus(f64),
    /// `baseline + p · |baseline|` (`p = -0.1` for `- 10%`).
    Percent(f64),
    /// For ratio metrics: `baseline + d` percentage points, `d` as a fraction (`-0.005`).
    Points(f64),
}

/// Which latency statistic a [`Metric::Latency`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LatencyStat {
    /// The median (nearest-rank 50th percentile).
    P50,
    /// The nearest-rank 90th percentile.
    P90,
    /// The nearest-rank 95th percentile.
    P95,
    /// The nearest-rank 99th percentile.
    P99,
    /// The slowest successful sample.
    Max,
    /// The fastest successful sample.
    Min,
    /// The arithmetic mean.
    Mean,
}

/// A comparison between an observed value and a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// One parsed expectation, such as `latency.p99 < 300ms`.
///
/// Serialized as its original text, and parsed back on deserialization.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// The text as written in the experiment file (trimmed).
    pub text: String,
    /// What is measured.
    pub metric: Metric,
    /// How the observed value must compare to the threshold.
    pub cmp: Cmp,
    /// The threshold, fixed or relative to the baseline, in the metric's canonical unit: a
    /// fraction in `0..=1` for availability and error rate, seconds for latency, per second for
    /// throughput, percent of one core for CPU, bytes for memory, a count for fds and threads.
    pub threshold: Threshold,
}

/// A summary of one monitor's samples over a window, as the hypothesis reads it.
///
/// Every field that needs data is an `Option`: an empty window has no availability, and a
/// window whose samples all failed has no latency. "No data" is never silently zero.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowStats {
    /// How many samples the window holds.
    pub samples: usize,
    /// How many of them succeeded.
    pub ok: usize,
    /// The length of the window, used for throughput.
    pub window: Duration,
    /// `ok / samples`, or `None` without samples.
    pub availability: Option<f64>,
    /// `1 - availability`, or `None` without samples.
    pub error_rate: Option<f64>,
    /// `ok / window` in samples per second, or `None` without samples or with a zero window.
    pub throughput: Option<f64>,
    /// Latency statistics over the successful samples, or `None` when none succeeded.
    pub latency: Option<LatencyStats>,
    /// Statistics of the values successful samples yielded, or `None` when none did.
    pub values: Option<Distribution>,
    /// Statistics of the resource readings of every sample that had them (a stopped process
    /// fails its samples, but its memory is still a real reading).
    pub resources: ResourceStats,
}

/// Order statistics and the mean of a set of numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Distribution {
    /// The smallest.
    pub min: f64,
    /// The nearest-rank median.
    pub p50: f64,
    /// The nearest-rank 90th percentile.
    pub p90: f64,
    /// The nearest-rank 95th percentile.
    pub p95: f64,
    /// The nearest-rank 99th percentile.
    pub p99: f64,
    /// The largest.
    pub max: f64,
    /// The arithmetic mean.
    pub mean: f64,
}

/// [`Distribution`]s of a window's resource readings, each `None` without readings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ResourceStats {
    /// CPU, percent of one core.
    pub cpu: Option<Distribution>,
    /// Resident memory, bytes.
    pub memory: Option<Distribution>,
    /// Open file descriptors.
    pub fds: Option<Distribution>,
    /// Threads.
    pub threads: Option<Distribution>,
}

/// Latency statistics over the successful samples of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyStats {
    /// The fastest.
    pub min: Duration,
    /// The nearest-rank median.
    pub p50: Duration,
    /// The nearest-rank 90th percentile.
    pub p90: Duration,
    /// The nearest-rank 95th percentile.
    pub p95: Duration,
    /// The nearest-rank 99th percentile.
    pub p99: Duration,
    /// The slowest.
    pub max: Duration,
    /// The arithmetic mean.
    pub mean: Duration,
}

/// The outcome of judging one expectation over one window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The observed value satisfies the expectation.
    Holds {
        /// The observed value, in the metric's canonical unit.
        observed: f64,
    },
    /// The observed value does not satisfy the expectation.
    Violated {
        /// The observed value, in the metric's canonical unit.
        observed: f64,
    },
    /// The window has nothing to judge (no samples, or no successful ones for latency).
    ///
    /// What that means is the caller's decision: a baseline without data is not steady, while
    /// a policy may choose to wait for the next tick.
    NoData,
}

// === impl Metric ===

impl Metric {
    /// Every metric name the language accepts, in the order the docs list them.
    pub const NAMES: [&'static str; 15] = [
        "availability",
        "error_rate",
        "throughput",
        "latency.p50",
        "latency.p90",
        "latency.p95",
        "latency.p99",
        "latency.max",
        "latency.min",
        "latency.mean",
        "value",
        "resource.cpu",
        "resource.memory",
        "resource.fds",
        "resource.threads",
    ];

    /// The metric's name as written in expectations: `availability`, `latency.p99`, …
    pub fn name(&self) -> String {
        match self {
            Metric::Availability => "availability".into(),
            Metric::ErrorRate => "error_rate".into(),
            Metric::Throughput => "throughput".into(),
            Metric::Latency(stat) => format!("latency.{}", stat.name()),
            Metric::Value(LatencyStat::Mean) => "value".into(),
            Metric::Value(stat) => format!("value.{}", stat.name()),
            Metric::Resource(kind, LatencyStat::Mean) => format!("resource.{}", kind.name()),
            Metric::Resource(kind, stat) => format!("resource.{}.{}", kind.name(), stat.name()),
        }
    }

    /// Whether this metric is a fraction in `0..=1` (availability, error rate).
    pub fn is_ratio(&self) -> bool {
        matches!(self, Metric::Availability | Metric::ErrorRate)
    }

    /// Formats a value of this metric in its unit, e.g. `99.5%`, `312ms` or `48.2/s`.
    ///
    /// Ratios show up to three decimals of a percent, latencies three significant digits
    /// ([`format_duration_short`](crate::units::format_duration_short)), and throughput up
    /// to two decimals. Values this metric cannot hold (negative, NaN) are shown as numbers.
    pub fn format_value(&self, v: f64) -> String {
        match self {
            Metric::Availability | Metric::ErrorRate => format!("{}%", percent_text(v * 100.0)),
            Metric::Latency(_) => match Duration::try_from_secs_f64(v) {
                Ok(d) => units::format_duration_short(d),
                Err(_) => format!("{v}s"),
            },
            Metric::Throughput => format!("{}/s", trim_decimals(v, 2)),
            Metric::Value(_) => format_number(v),
            Metric::Resource(ResourceKind::Cpu, _) => format!("{}%", trim_decimals(v, 1)),
            Metric::Resource(ResourceKind::Memory, _) => format_bytes(v),
            Metric::Resource(_, _) => trim_decimals(v, 1),
        }
    }

    /// Parses a metric name, pointing at it (from `offset`) when it is unknown.
    fn parse(name: &str, offset: usize) -> Result<Metric, UnitError> {
        let err = |message: String| UnitError {
            message,
            offset,
            len: name.len(),
        };
        match name {
            "availability" => return Ok(Metric::Availability),
            "error_rate" => return Ok(Metric::ErrorRate),
            "throughput" => return Ok(Metric::Throughput),
            "latency" => {
                return Err(err(
                    "`latency` needs a statistic, e.g. `latency.p99`; use one of p50, p90, p95, \
                     p99, max, min, mean"
                        .into(),
                ));
            }
            _ => {}
        }
        if name == "value" {
            return Ok(Metric::Value(LatencyStat::Mean));
        }
        if let Some(stat) = name.strip_prefix("value.") {
            let at = offset + "value.".len();
            return LatencyStat::parse(stat)
                .map(Metric::Value)
                .ok_or_else(|| unknown_stat("value", stat, at));
        }
        if name == "resource" {
            return Err(err(
                "`resource` needs a reading, e.g. `resource.cpu`; use one of cpu, memory, fds, \
                 threads"
                    .into(),
            ));
        }
        if let Some(rest) = name.strip_prefix("resource.") {
            let at = offset + "resource.".len();
            let (kind_text, stat) = match rest.split_once('.') {
                Some((k, s)) => (k, Some(s)),
                None => (rest, None),
            };
            let kind = ResourceKind::parse(kind_text).ok_or_else(|| UnitError {
                message: format!(
                    "unknown resource `{kind_text}`{}; use one of cpu, memory, fds, threads",
                    did_you_mean(kind_text, &ResourceKind::NAMES)
                ),
                offset: at,
                len: kind_text.len(),
            })?;
            let stat = match stat {
                None => LatencyStat::Mean,
                Some(s) => LatencyStat::parse(s).ok_or_else(|| {
                    unknown_stat(
                        &format!("resource.{kind_text}"),
                        s,
                        at + kind_text.len() + 1,
                    )
                })?,
            };
            return Ok(Metric::Resource(kind, stat));
        }
        if let Some(stat) = name.strip_prefix("latency.") {
            let stat_offset = offset + "latency.".len();
            return LatencyStat::parse(stat)
                .map(Metric::Latency)
                .ok_or_else(|| UnitError {
                    message: format!(
                        "unknown latency statistic `{stat}`{}; use one of p50, p90, p95, p99, \
                         max, min, mean",
                        did_you_mean(stat, &LatencyStat::NAMES)
                    ),
                    offset: stat_offset,
                    len: stat.len(),
                });
        }
        // Words people reach for first, mapped to what we call them.
        let synonym = match name.to_ascii_lowercase().as_str() {
            "success" | "success_rate" | "uptime" | "ok" => Some("availability"),
            "errors" | "failure_rate" | "error" => Some("error_rate"),
            "rps" | "qps" | "rate" | "requests_per_second" | "thruput" => Some("throughput"),
            "p50" | "p90" | "p95" | "p99" | "max" | "min" | "mean" | "median" => {
                return Err(err(format!(
                    "unknown metric `{name}`; latency statistics are written \
                     `latency.{}`",
                    if name.eq_ignore_ascii_case("median") {
                        "p50".to_string()
                    } else {
                        name.to_ascii_lowercase()
                    }
                )));
            }
            _ => None,
        };
        let hint = match synonym {
            Some(s) => format!(" (did you mean `{s}`?)"),
            None => did_you_mean(name, &Metric::NAMES),
        };
        Err(err(format!(
            "unknown metric `{name}`{hint}; use availability, error_rate, throughput, \
             latency.<p50|p90|p95|p99|max|min|mean>, value[.<stat>] or \
             resource.<cpu|memory|fds|threads>"
        )))
    }
}

fn unknown_stat(of: &str, stat: &str, offset: usize) -> UnitError {
    UnitError {
        message: format!(
            "unknown statistic `{stat}` of {of}{}; use one of p50, p90, p95, p99, max, min, mean",
            did_you_mean(stat, &LatencyStat::NAMES)
        ),
        offset,
        len: stat.len(),
    }
}

// === impl ResourceKind ===

impl ResourceKind {
    /// Every reading's name, as written after `resource.`.
    pub const NAMES: [&'static str; 4] = ["cpu", "memory", "fds", "threads"];

    /// The reading's name as written after `resource.`.
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::Cpu => "cpu",
            ResourceKind::Memory => "memory",
            ResourceKind::Fds => "fds",
            ResourceKind::Threads => "threads",
        }
    }

    fn parse(name: &str) -> Option<ResourceKind> {
        Some(match name {
            "cpu" => ResourceKind::Cpu,
            "memory" | "rss" => ResourceKind::Memory,
            "fds" => ResourceKind::Fds,
            "threads" => ResourceKind::Threads,
            _ => return None,
        })
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

// === impl LatencyStat ===

impl LatencyStat {
    /// Every statistic's name, as written after `latency.`.
    pub const NAMES: [&'static str; 7] = ["p50", "p90", "p95", "p99", "max", "min", "mean"];

    /// The statistic's name as written after `latency.`: `p99`, `max`, …
    pub fn name(self) -> &'static str {
        match self {
            LatencyStat::P50 => "p50",
            LatencyStat::P90 => "p90",
            LatencyStat::P95 => "p95",
            LatencyStat::P99 => "p99",
            LatencyStat::Max => "max",
            LatencyStat::Min => "min",
            LatencyStat::Mean => "mean",
        }
    }

    fn parse(name: &str) -> Option<LatencyStat> {
        Some(match name {
            "p50" => LatencyStat::P50,
            "p90" => LatencyStat::P90,
            "p95" => LatencyStat::P95,
            "p99" => LatencyStat::P99,
            "max" => LatencyStat::Max,
            "min" => LatencyStat::Min,
            "mean" => LatencyStat::Mean,
            _ => return None,
        })
    }
}

// === impl Cmp ===

impl Cmp {
    /// The operator as written: `<`, `<=`, `>`, `>=`.
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }

    /// Whether `observed <op> threshold` holds. A NaN never satisfies a comparison.
    pub fn holds(self, observed: f64, threshold: f64) -> bool {
        match self {
            Cmp::Lt => observed < threshold,
            Cmp::Le => observed <= threshold,
            Cmp::Gt => observed > threshold,
            Cmp::Ge => observed >= threshold,
        }
    }
}

impl fmt::Display for Cmp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

// === impl Expectation ===

impl Expectation {
    /// Parses one expectation, such as `availability >= 99%` or `latency.p99<300ms`.
    ///
    /// On error the [`UnitError`]'s `offset` and `len` are the byte range of the bad part of
    /// `text` (the unknown metric, the missing operator's position, the bad threshold), and the
    /// message says what is wrong, with a did-you-mean where one helps.
    pub fn parse(text: &str) -> Result<Expectation, UnitError> {
        let lead = text.len() - text.trim_start().len();
        let body = text.trim();
        if body.is_empty() {
            return Err(UnitError {
                message: "empty expectation; write e.g. `availability >= 99%` or \
                          `latency.p99 < 300ms`"
                    .into(),
                offset: 0,
                len: text.len(),
            });
        }

        // The metric is a run of name characters; it ends at a space or an operator.
        let name_len = body
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-'))
            .unwrap_or(body.len());
        let name = &body[..name_len];
        let after_name = &body[name_len..];
        let op_at = name_len + (after_name.len() - after_name.trim_start().len());
        let rest = &body[op_at..];

        if name.is_empty() {
            // Point at what stands where the metric should be: usually the operator.
            let len = rest
                .find(|c: char| !"<>=!≤≥".contains(c))
                .unwrap_or(rest.len())
                .max(rest.chars().next().map_or(0, char::len_utf8));
            return Err(UnitError {
                message: format!(
                    "missing metric before `{}`; write e.g. `availability >= 99%`",
                    &rest[..len]
                ),
                offset: lead,
                len,
            });
        }
        let metric = Metric::parse(name, lead)?;

        let (cmp, op_len) = parse_cmp(rest).map_err(|(message, len)| UnitError {
            message: message
                .replace("{metric}", name)
                .replace("{example}", example_threshold(metric)),
            offset: lead + op_at,
            len,
        })?;

        let after_op = &rest[op_len..];
        let value_at = op_at + op_len + (after_op.len() - after_op.trim_start().len());
        let value = body[value_at..].trim_end();
        if value.is_empty() {
            return Err(UnitError {
                message: format!(
                    "missing threshold after `{name} {cmp}`; write e.g. `{name} {cmp} {}`",
                    example_threshold(metric)
                ),
                offset: lead + op_at,
                len: op_len,
            });
        }
        let threshold = if value.starts_with("baseline") {
            Threshold::Baseline(parse_relative(metric, value, lead + value_at)?)
        } else {
            Threshold::Fixed(parse_threshold(metric, value, lead + value_at)?)
        };
        Ok(Expectation {
            text: body.to_string(),
            metric,
            cmp,
            threshold,
        })
    }

    /// The observed value of this expectation's metric in `s`, in the canonical unit, or
    /// `None` when the window has no data for it.
    pub fn observe(&self, s: &WindowStats) -> Option<f64> {
        self.metric.observe(s)
    }

    /// Whether the threshold is relative to the baseline (`baseline * 1.5`).
    pub fn is_relative(&self) -> bool {
        matches!(self.threshold, Threshold::Baseline(_))
    }

    /// The threshold's value: the fixed one, or the relative one computed from `baseline`.
    ///
    /// `None` for a relative threshold without a baseline, or whose baseline window has no data
    /// for the metric.
    pub fn threshold_value(&self, baseline: Option<&WindowStats>) -> Option<f64> {
        match self.threshold {
            Threshold::Fixed(v) => Some(v),
            Threshold::Baseline(rel) => {
                let b = self.metric.observe(baseline?)?;
                Some(rel.apply(b))
            }
        }
    }

    /// Judges this expectation over `s`: holds, violated, or no data. A relative threshold has
    /// no value here, so it is always `NoData`; use [`judge_against`](Self::judge_against).
    pub fn judge(&self, s: &WindowStats) -> Verdict {
        self.judge_against(s, None)
    }

    /// Judges this expectation over `s`, a relative threshold against `baseline`.
    pub fn judge_against(&self, s: &WindowStats, baseline: Option<&WindowStats>) -> Verdict {
        let Some(threshold) = self.threshold_value(baseline) else {
            return Verdict::NoData;
        };
        match self.observe(s) {
            None => Verdict::NoData,
            Some(observed) if self.cmp.holds(observed, threshold) => Verdict::Holds { observed },
            Some(observed) => Verdict::Violated { observed },
        }
    }

    /// The threshold as written canonically: `300ms`, `baseline * 1.5`, `baseline - 10%`.
    pub fn threshold_text(&self) -> String {
        match self.threshold {
            // A threshold is shown as precisely as it was written, so that it parses back.
            Threshold::Fixed(v) if self.metric.is_ratio() => {
                format!("{}%", trim_decimals(v * 100.0, 3))
            }
            Threshold::Fixed(v) => self.metric.format_value(v),
            Threshold::Baseline(rel) => match rel {
                Relative::Times(f) => format!("baseline * {}", format_number(f)),
                Relative::Plus(d) => format!(
                    "baseline {} {}",
                    if d < 0.0 { '-' } else { '+' },
                    self.metric.format_value(d.abs())
                ),
                Relative::Percent(p) => format!(
                    "baseline {} {}%",
                    if p < 0.0 { '-' } else { '+' },
                    trim_decimals(p.abs() * 100.0, 3)
                ),
                Relative::Points(d) => format!(
                    "baseline {} {}pp",
                    if d < 0.0 { '-' } else { '+' },
                    trim_decimals(d.abs() * 100.0, 3)
                ),
            },
        }
    }

    /// One line for reports and logs: `latency.p99 < 300ms: violated (observed 412ms)`.
    pub fn explain(&self, verdict: &Verdict) -> String {
        match verdict {
            Verdict::Holds { observed } => {
                format!(
                    "{self}: holds (observed {})",
                    self.metric.format_value(*observed)
                )
            }
            Verdict::Violated { observed } => format!(
                "{self}: violated (observed {})",
                self.metric.format_value(*observed)
            ),
            Verdict::NoData => format!("{self}: no data"),
        }
    }
}

/// Parses the comparison operator at the start of `rest`: `(cmp, its byte length)`, or an
/// error message (with `{metric}` and `{example}` to fill in) and the length of the bad part.
fn parse_cmp(rest: &str) -> Result<(Cmp, usize), (String, usize)> {
    for (symbol, cmp) in [
        ("<=", Cmp::Le),
        (">=", Cmp::Ge),
        ("<", Cmp::Lt),
        (">", Cmp::Gt),
    ] {
        if let Some(after) = rest.strip_prefix(symbol) {
            // `=<` and `<==` are typos of the same intent; refuse them rather than guess.
            if after.starts_with(['=', '<', '>']) {
                let len = symbol.len() + 1;
                return Err((
                    format!("unknown operator `{}`; use <, <=, > or >=", &rest[..len]),
                    len,
                ));
            }
            return Ok((cmp, symbol.len()));
        }
    }
    // One spelling per operator keeps experiment files greppable, as with duration units.
    for (wrong, right) in [("≤", "<="), ("≥", ">="), ("=<", "<="), ("=>", ">=")] {
        if rest.starts_with(wrong) {
            return Err((format!("write `{right}` instead of `{wrong}`"), wrong.len()));
        }
    }
    if rest.starts_with("==") || rest.starts_with('=') || rest.starts_with("!=") {
        let len = if rest.starts_with('=') && !rest.starts_with("==") {
            1
        } else {
            2
        };
        return Err((
            format!(
                "`{}` is not supported: measured values are never exactly equal; use <, <=, > \
                 or >=",
                &rest[..len]
            ),
            len,
        ));
    }
    let token = first_token(rest);
    // Reuse what was written as the example only when it looks like a threshold.
    let example = if token.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        token
    } else {
        "{example}"
    };
    let message = if token.is_empty() {
        "missing comparison after `{metric}`; write e.g. `{metric} >= {example}` with <, <=, > \
         or >="
            .to_string()
    } else {
        format!(
            "missing comparison between `{{metric}}` and `{token}`; write e.g. \
             `{{metric}} >= {example}` with <, <=, > or >="
        )
    };
    Err((message, token.len()))
}

/// Parses the threshold text for `metric`; `offset` is where `value` starts in the input.
fn parse_threshold(metric: Metric, value: &str, offset: usize) -> Result<f64, UnitError> {
    let err = |message: String, at: usize, len: usize| UnitError {
        message,
        offset: offset + at,
        len,
    };
    // Anything after the threshold is a mistake, most often a second clause (`… and …`).
    // A ratio may have a space before its `%`, so that one space is allowed.
    let (main, extra) = match value.find(char::is_whitespace) {
        Some(i) if value[i..].trim_start() != "%" => (&value[..i], Some(i)),
        _ => (value, None),
    };
    if let Some(i) = extra {
        let junk_at = i + (value[i..].len() - value[i..].trim_start().len());
        let junk = &value[junk_at..];
        // `300 ms`, `50 /s`: a unit split from its number, refused as parse_duration does.
        if main.parse::<f64>().is_ok() && !junk.contains(char::is_whitespace) {
            return Err(err(
                format!("no space between the number and its unit; write `{main}{junk}`"),
                i,
                junk_at + junk.len() - i,
            ));
        }
        let also = if junk.starts_with("and ") || junk.starts_with("&&") || junk.starts_with("||") {
            "; write each expectation as its own list entry"
        } else {
            ""
        };
        return Err(err(
            format!("unexpected `{junk}` after the threshold `{main}`{also}"),
            junk_at,
            junk.len(),
        ));
    }
    match metric {
        Metric::Availability | Metric::ErrorRate => Ratio::parse(main)
            .map(Ratio::get)
            .map_err(|e| err(e.message, e.offset, e.len)),
        Metric::Latency(_) => {
            if main.parse::<f64>().is_ok() {
                return Err(err(
                    format!(
                        "latency threshold `{main}` needs a duration unit; write e.g. \
                         `{main}ms` or `{main}s`"
                    ),
                    0,
                    main.len(),
                ));
            }
            if main.ends_with('%') {
                return Err(err(
                    format!("latency is a duration, not a ratio: `{main}`; write e.g. `300ms`"),
                    0,
                    main.len(),
                ));
            }
            units::parse_duration(main)
                .map(|d| d.as_secs_f64())
                .map_err(|e| err(e.message, e.offset, e.len))
        }
        Metric::Throughput => parse_rate(main).map_err(|(m, at, len)| err(m, at, len)),
        Metric::Value(_) => match main.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(err(
                format!(
                    "`{main}` is not a number; `value` is the plain number the probe yields, \
                     e.g. `value < 0.8`"
                ),
                0,
                main.len(),
            )),
        },
        Metric::Resource(ResourceKind::Cpu, _) => match main.strip_suffix('%') {
            Some(n) => match n.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                _ => Err(err(
                    format!("`{main}` is not a CPU percentage; write e.g. `80%`"),
                    0,
                    main.len(),
                )),
            },
            None => Err(err(
                format!(
                    "CPU is a percent of one core: write `{main}%`{}",
                    if main.parse::<f64>().is_ok_and(|v| v > 0.0 && v <= 1.0) {
                        " (or, for a fraction of one core, its percent: 0.8 is `80%`)"
                    } else {
                        " (`200%` is two cores)"
                    }
                ),
                0,
                main.len(),
            )),
        },
        Metric::Resource(ResourceKind::Memory, _) => {
            if main.parse::<f64>().is_ok() {
                return Err(err(
                    format!("memory threshold `{main}` needs a size unit; write e.g. `512MiB`"),
                    0,
                    main.len(),
                ));
            }
            units::parse_bytes(main)
                .map(|b| b as f64)
                .map_err(|e| err(e.message, e.offset, e.len))
        }
        Metric::Resource(kind, _) => match main.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
            _ => Err(err(
                format!(
                    "`{main}` is not a count; `resource.{}` is a number, e.g. `< 1000`",
                    kind.name()
                ),
                0,
                main.len(),
            )),
        },
    }
}

/// Parses `baseline`, `baseline * 1.5`, `baseline + 50ms`, `baseline - 10%`, `baseline - 1pp`;
/// `offset` is where `value` starts in the input.
fn parse_relative(metric: Metric, value: &str, offset: usize) -> Result<Relative, UnitError> {
    let err = |message: String, at: usize, len: usize| UnitError {
        message,
        offset: offset + at,
        len,
    };
    let rest = &value["baseline".len()..];
    let op_at = "baseline".len() + (rest.len() - rest.trim_start().len());
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Ok(Relative::Times(1.0));
    }
    let Some(op) = rest.chars().next().filter(|c| "*+-".contains(*c)) else {
        return Err(err(
            format!(
                "after `baseline` write `* 1.5`, `+ {}` or `- 10%`",
                example_threshold(metric)
            ),
            op_at,
            first_token(rest).len().max(1),
        ));
    };
    let operand = rest[1..].trim_start();
    let operand_at = op_at + 1 + (rest[1..].len() - operand.len());
    if operand.is_empty() {
        return Err(err(
            format!("missing number after `baseline {op}`"),
            op_at,
            1,
        ));
    }
    let operand = operand.trim_end();
    let bad_number = |what: &str| {
        err(
            format!("`{operand}` is not {what}"),
            operand_at,
            operand.len(),
        )
    };
    match op {
        '*' => match operand.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(Relative::Times(f)),
            _ => Err(bad_number("a positive factor, e.g. `1.5`")),
        },
        _ => {
            let sign = if op == '-' { -1.0 } else { 1.0 };
            if let Some(p) = operand.strip_suffix("pp") {
                if !metric.is_ratio() {
                    return Err(err(
                        format!(
                            "percentage points (`pp`) apply to availability and error_rate; \
                             for {metric} write a percent of the baseline (`10%`) or a value \
                             (`{}`)",
                            example_threshold(metric)
                        ),
                        operand_at,
                        operand.len(),
                    ));
                }
                return match p.trim().parse::<f64>() {
                    Ok(v) if v.is_finite() && v >= 0.0 => Ok(Relative::Points(sign * v / 100.0)),
                    _ => Err(bad_number("a number of percentage points, e.g. `0.5pp`")),
                };
            }
            if let Some(p) = operand.strip_suffix('%')
                && !matches!(metric, Metric::Resource(ResourceKind::Cpu, _))
            {
                return match p.trim().parse::<f64>() {
                    Ok(v) if v.is_finite() && v >= 0.0 => Ok(Relative::Percent(sign * v / 100.0)),
                    _ => Err(bad_number("a percentage, e.g. `10%`")),
                };
            }
            if metric.is_ratio() {
                return Err(err(
                    format!(
                        "for a ratio write a percent of the baseline (`{operand}%`) or \
                         percentage points (`{operand}pp`)"
                    ),
                    operand_at,
                    operand.len(),
                ));
            }
            let v = parse_threshold(metric, operand, offset + operand_at)?;
            Ok(Relative::Plus(sign * v))
        }
    }
}

/// Parses `50/s` (or `0.5/s`) into per-second.
fn parse_rate(text: &str) -> Result<f64, (String, usize, usize)> {
    let Some(slash) = text.find('/') else {
        let message = if text.parse::<f64>().is_ok() {
            format!("throughput `{text}` needs its unit; write `{text}/s`")
        } else {
            format!("throughput `{text}` is not a rate per second; write e.g. `50/s`")
        };
        return Err((message, 0, text.len()));
    };
    let (num, unit) = (&text[..slash], &text[slash + 1..]);
    if unit != "s" {
        let hint = match unit {
            "m" | "min" => format!(" ({num} per minute is `{}/s`)", per_min_hint(num)),
            "sec" | "second" => " (write `/s`)".to_string(),
            _ => String::new(),
        };
        return Err((
            format!("throughput is per second: `/{unit}` is not supported{hint}"),
            slash,
            unit.len() + 1,
        ));
    }
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err((
            format!("throughput `{num}` must be zero or more"),
            0,
            num.len(),
        )),
        Err(_) => Err((
            format!("`{num}` is not a number; write e.g. `50/s`"),
            0,
            num.len(),
        )),
    }
}

fn per_min_hint(num: &str) -> String {
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() => trim_decimals(v / 60.0, 3),
        _ => "N".into(),
    }
}

fn example_threshold(metric: Metric) -> &'static str {
    match metric {
        Metric::Availability => "99%",
        Metric::ErrorRate => "1%",
        Metric::Latency(_) => "300ms",
        Metric::Throughput => "50/s",
        Metric::Value(_) => "100",
        Metric::Resource(ResourceKind::Cpu, _) => "80%",
        Metric::Resource(ResourceKind::Memory, _) => "512MiB",
        Metric::Resource(_, _) => "1000",
    }
}

/// A percentage with one decimal (`47.4`, `100.0`), the one precision of every percentage in
/// reports; more only where one decimal would round a value onto 0 or 100 that is not
/// (`99.97`, not `100.0`: "almost always" is not "always").
pub(crate) fn percent_text(pct: f64) -> String {
    let one = format!("{pct:.1}");
    let misleading = (one == "100.0" && pct < 100.0) || (one == "0.0" && pct > 0.0);
    if misleading {
        let more = format!("{pct:.3}");
        if more != "100.000" && more != "0.000" {
            return more.trim_end_matches('0').to_string();
        }
        return format!("{pct:.6}").trim_end_matches('0').to_string();
    }
    one
}

/// Up to six significant digits, without trailing zeros: `0.8`, `1234.57`, `1.5e-7`.
fn format_number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-4..15).contains(&magnitude) {
        return format!("{v:.5e}")
            .replace("0000e", "e")
            .replace("000e", "e")
            .replace("00e", "e")
            .replace("0e", "e")
            .replace(".e", "e");
    }
    let places = (5 - magnitude).max(0) as usize;
    trim_decimals(v, places)
}

/// A size in binary units, three significant digits: `512MiB`, `1.5GiB`, `800B`.
fn format_bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = v;
    let mut unit = 0;
    while x.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        x /= 1024.0;
        unit += 1;
    }
    let places = if unit == 0 || x.abs() >= 100.0 {
        0
    } else if x.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{}{}", trim_decimals(x, places), UNITS[unit])
}

/// The text up to the next whitespace.
fn first_token(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or("")
}

/// ` (did you mean `x`?)` for the unique closest candidate within a small edit distance.
fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    let lower = word.to_ascii_lowercase();
    // A third of the word's length, at least 1 and at most 3: catches typos, not guesses.
    let budget = (lower.chars().count() / 3).clamp(1, 3);
    let mut best: Vec<(&str, usize)> = candidates
        .iter()
        .map(|c| (*c, crate::diag::edit_distance(&lower, c)))
        .filter(|&(_, d)| d <= budget)
        .collect();
    best.sort_by_key(|&(_, d)| d);
    match best.as_slice() {
        [(c, d), rest @ ..] if rest.first().is_none_or(|(_, d2)| d2 > d) => {
            format!(" (did you mean `{c}`?)")
        }
        _ => String::new(),
    }
}

/// Formats `v` with at most `places` decimals, without trailing zeros (`99.5`, `100`).
fn trim_decimals(v: f64, places: usize) -> String {
    let s = format!("{v:.places$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

// === impl Relative ===

impl Relative {
    /// The threshold for a baseline value `b`.
    pub fn apply(self, b: f64) -> f64 {
        match self {
            Relative::Times(f) => b * f,
            Relative::Plus(d) | Relative::Points(d) => b + d,
            Relative::Percent(p) => b + p * b.abs(),
        }
    }
}

impl Metric {
    /// The observed value of this metric in `s`, or `None` without data for it.
    pub fn observe(&self, s: &WindowStats) -> Option<f64> {
        match *self {
            Metric::Availability => s.availability,
            Metric::ErrorRate => s.error_rate,
            Metric::Throughput => s.throughput,
            Metric::Latency(stat) => s.latency.map(|l| l.get(stat)),
            Metric::Value(stat) => s.values.map(|d| d.get(stat)),
            Metric::Resource(kind, stat) => s.resources.get(kind).map(|d| d.get(stat)),
        }
    }
}

impl fmt::Display for Expectation {
    /// The canonical form: `latency.p99 < 300ms`, which parses back to the same expectation.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.metric, self.cmp, self.threshold_text())
    }
}

impl std::str::FromStr for Expectation {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Expectation::parse(s)
    }
}

impl Serialize for Expectation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Expectation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Expectation::parse(&text).map_err(serde::de::Error::custom)
    }
}

// === impl WindowStats ===

impl WindowStats {
    /// Summarises `samples` taken over a window of length `window`.
    ///
    /// * availability = ok / samples, and error rate = 1 − availability;
    /// * latency statistics are over the **successful samples only**: latency objectives are
    ///   about requests that were served, and failures are already counted by availability.
    ///   Mixing them in would let a fast `connection refused` *improve* the p99, and a timeout
    ///   would report the probe's timeout instead of the service's latency;
    /// * throughput = ok samples / window, in samples per second.
    pub fn from_samples<'a>(
        samples: impl IntoIterator<Item = &'a Sample>,
        window: Duration,
    ) -> WindowStats {
        let mut total = 0usize;
        let mut latencies = Vec::new();
        let mut values = Vec::new();
        let (mut cpu, mut memory, mut fds, mut threads) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for s in samples {
            total += 1;
            if s.ok {
                latencies.push(s.latency);
                values.extend(s.value.filter(|v| !v.is_nan()));
            }
            if let Some(r) = &s.resource {
                cpu.extend(r.cpu.filter(|v| !v.is_nan()));
                memory.extend(r.memory.map(|v| v as f64));
                fds.extend(r.fds.map(|v| v as f64));
                threads.extend(r.threads.map(|v| v as f64));
            }
        }
        let ok = latencies.len();
        latencies.sort_unstable();
        let availability = (total > 0).then(|| ok as f64 / total as f64);
        let throughput = (total > 0 && !window.is_zero()).then(|| ok as f64 / window.as_secs_f64());
        WindowStats {
            samples: total,
            ok,
            window,
            availability,
            error_rate: availability.map(|a| 1.0 - a),
            throughput,
            latency: LatencyStats::from_sorted(&latencies),
            values: Distribution::of(values),
            resources: ResourceStats {
                cpu: Distribution::of(cpu),
                memory: Distribution::of(memory),
                fds: Distribution::of(fds),
                threads: Distribution::of(threads),
            },
        }
    }
}

// === impl Distribution ===

impl Distribution {
    /// Statistics over `values` (NaN-free), or `None` when there are none.
    pub fn of(mut values: Vec<f64>) -> Option<Distribution> {
        values.sort_unstable_by(f64::total_cmp);
        let p = |q| stats::percentile(&values, q);
        Some(Distribution {
            min: *values.first()?,
            p50: p(50.0)?,
            p90: p(90.0)?,
            p95: p(95.0)?,
            p99: p(99.0)?,
            max: *values.last()?,
            mean: stats::mean(&values)?,
        })
    }

    /// The value of one statistic.
    pub fn get(&self, stat: LatencyStat) -> f64 {
        match stat {
            LatencyStat::P50 => self.p50,
            LatencyStat::P90 => self.p90,
            LatencyStat::P95 => self.p95,
            LatencyStat::P99 => self.p99,
            LatencyStat::Max => self.max,
            LatencyStat::Min => self.min,
            LatencyStat::Mean => self.mean,
        }
    }
}

// === impl ResourceStats ===

impl ResourceStats {
    /// The distribution of one reading.
    pub fn get(&self, kind: ResourceKind) -> Option<Distribution> {
        match kind {
            ResourceKind::Cpu => self.cpu,
            ResourceKind::Memory => self.memory,
            ResourceKind::Fds => self.fds,
            ResourceKind::Threads => self.threads,
        }
    }
}

// === impl LatencyStats ===

impl LatencyStats {
    /// Statistics over ascending `sorted` latencies, or `None` when there are none.
    pub fn from_sorted(sorted: &[Duration]) -> Option<LatencyStats> {
        let p = |q| stats::percentile(sorted, q);
        Some(LatencyStats {
            min: *sorted.first()?,
            p50: p(50.0)?,
            p90: p(90.0)?,
            p95: p(95.0)?,
            p99: p(99.0)?,
            max: *sorted.last()?,
            mean: stats::mean_duration(sorted)?,
        })
    }

    /// The value of one statistic in seconds, the canonical unit of latency thresholds.
    pub fn get(&self, stat: LatencyStat) -> f64 {
        self.duration(stat).as_secs_f64()
    }

    /// The value of one statistic as a duration.
    pub fn duration(&self, stat: LatencyStat) -> Duration {
        match stat {
            LatencyStat::P50 => self.p50,
            LatencyStat::P90 => self.p90,
            LatencyStat::P95 => self.p95,
            LatencyStat::P99 => self.p99,
            LatencyStat::Max => self.max,
            LatencyStat::Min => self.min,
            LatencyStat::Mean => self.mean,
        }
    }
}

// === impl Verdict ===

impl Verdict {
    /// The observed value, unless there was no data.
    pub fn observed(&self) -> Option<f64> {
        match self {
            Verdict::Holds { observed } | Verdict::Violated { observed } => Some(*observed),
            Verdict::NoData => None,
        }
    }

    /// Whether the expectation held. `NoData` is not holding.
    pub fn holds(&self) -> bool {
        matches!(self, Verdict::Holds { .. })
    }

    /// Whether the data contradicts the expectation. `NoData` is not a violation.
    pub fn is_violated(&self) -> bool {
        matches!(self, Verdict::Violated { .. })
    }
}

#[cfg(test)]
mod tests;
