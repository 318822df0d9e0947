//! One probe measurement, as the journal records it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One measurement taken by a probe.
///
/// Samples are written to the run journal as JSON lines, one per sample, so the serialized
/// form is compact: times are fractional milliseconds with microsecond precision, and absent
/// fields are left out.
///
/// ```
/// # use std::time::Duration;
/// # use chaosforge::probe::Sample;
/// let s = Sample::success(Duration::from_micros(12_345)).with_status(200);
/// let json = serde_json::to_string(&s).unwrap();
/// assert_eq!(json, r#"{"at_ms":0.0,"latency_ms":12.345,"ok":true,"status":200}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When the probe *started*, relative to the run's epoch. Set by the monitor, not the probe.
    #[serde(rename = "at_ms", with = "crate::units::millis")]
    pub at: Duration,
    /// How long the measurement took, up to success, failure or timeout.
    #[serde(rename = "latency_ms", with = "crate::units::millis")]
    pub latency: Duration,
    /// Whether the target answered as the probe's success criteria require.
    pub ok: bool,
    /// The protocol status, where the probe has one (the HTTP status code).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    /// A short reason for a failure (`"timeout after 1s"`, `"connection refused"`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// The number the sample yields, for `value` expectations: a command's parsed output, a
    /// Prometheus query's result.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value: Option<f64>,
    /// What a process or cgroup monitor read, for `resource.*` expectations.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resource: Option<Resource>,
}

/// The resource readings of one process or cgroup sample. A reading the source does not have
/// (a cgroup has no fds) is absent, never zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// CPU used since the previous sample, in percent of one core, as `top` shows it: two
    /// busy cores are `200`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cpu: Option<f64>,
    /// Memory in bytes: a process's resident set (`VmRSS`), a cgroup's `memory.current`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub memory: Option<u64>,
    /// Open file descriptors of a process.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fds: Option<u64>,
    /// Threads of a process.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub threads: Option<u64>,
    /// The process's state letter from `/proc/PID/stat` (`R`, `S`, `T` for stopped, …).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub state: Option<char>,
}
