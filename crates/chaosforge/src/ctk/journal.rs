//! Chaos Toolkit's `journal.json`, key for key as chaostoolkit 1.19 writes it.
//!
//! Tools that read CTK journals (reporting, CI glue, dashboards) look up these keys by name, and
//! some read them positionally when pretty-printing, so the structs below keep chaoslib's
//! insertion order: a run entry is `activity, output, start, status, exception, end, duration`
//! and, for a steady-state probe, `tolerance_met` last. An entry cut short by a signal has no
//! `status`, `end` or `duration`, as in chaoslib (the exception unwound past them).

use serde::Serialize;
use serde_json::Value;

/// The version of chaoslib whose behaviour (and journal) this module follows.
pub const CHAOSLIB_VERSION: &str = "1.44.0";

/// A run's final status, as chaoslib's spec allows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Ran to the end (a deviation is `deviated`, not a status).
    Completed,
    /// A steady-state probe failed, or a fail-fast continuous hypothesis deviated.
    Failed,
    /// An unexpected error in the method (chaoslib's catch-all).
    Aborted,
    /// A signal (SIGTERM, SIGINT, SIGUSR1/2) stopped it.
    Interrupted,
}

/// The whole journal.
#[derive(Debug, Clone, Serialize)]
pub struct CtkJournal {
    /// Written as [`CHAOSLIB_VERSION`]: readers gate features on it.
    #[serde(rename = "chaoslib-version")]
    pub chaoslib_version: String,
    /// Python's `platform.platform()` shape: `Linux-<release>-<machine>-with-<libc>`.
    pub platform: String,
    /// The host name.
    pub node: String,
    /// The experiment as loaded, title substituted, secrets redacted, and `dry`.
    pub experiment: Value,
    /// Wall-clock start, Python `isoformat()` in UTC.
    pub start: String,
    /// `null` until the run ends.
    pub status: Option<Status>,
    /// Whether the steady state after the method was not met.
    pub deviated: bool,
    /// The hypothesis' runs.
    pub steady_states: SteadyStates,
    /// The method's activities, in the order they started.
    pub run: Vec<Run>,
    /// The rollbacks that were played.
    pub rollbacks: Vec<Run>,
    /// Wall-clock end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Seconds, as a float.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
}

/// `steady_states`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SteadyStates {
    /// The gate before the method.
    pub before: Option<HypothesisState>,
    /// The check after it.
    pub after: Option<HypothesisState>,
    /// Each iteration of a continuous hypothesis.
    pub during: Vec<HypothesisState>,
}

/// One run of the steady-state hypothesis.
#[derive(Debug, Clone, Serialize)]
pub struct HypothesisState {
    /// `None` only while it runs.
    pub steady_state_met: Option<bool>,
    /// The probes run, up to the first that failed or missed its tolerance.
    pub probes: Vec<Run>,
}

/// One activity's run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// The activity as declared (a `ref` resolved), before substitution.
    pub activity: Value,
    /// What the provider returned; `null` when it failed or ran dry.
    pub output: Value,
    /// Wall-clock start.
    pub start: String,
    /// `succeeded` or `failed`; absent when a signal cut it short.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
    /// chaoslib's `traceback.format_exception` lines of a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<Vec<String>>,
    /// Wall-clock end (before the `after` pause).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// Steady-state probes only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerance_met: Option<bool>,
}

/// An activity run's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// The provider returned.
    Succeeded,
    /// It raised `ActivityFailed`.
    Failed,
}

impl CtkJournal {
    /// A journal for `experiment` starting now, as chaoslib's `initialize_run_journal`.
    pub fn start(experiment: Value) -> Self {
        CtkJournal {
            chaoslib_version: CHAOSLIB_VERSION.to_string(),
            platform: platform(),
            node: node(),
            experiment,
            start: now_iso(),
            status: None,
            deviated: false,
            steady_states: SteadyStates::default(),
            run: Vec::new(),
            rollbacks: Vec::new(),
            end: None,
            duration: None,
        }
    }

    /// Whether chaostoolkit would exit 0: completed and not deviated.
    pub fn ok(&self) -> bool {
        self.status == Some(Status::Completed) && !self.deviated
    }
}

/// Python's `datetime.now(timezone.utc).isoformat()`: microseconds and `+00:00`.
pub fn now_iso() -> String {
    iso(jiff::Timestamp::now())
}

/// `t` as Python's `isoformat()` of an aware UTC datetime.
pub fn iso(t: jiff::Timestamp) -> String {
    let micros = t.subsec_microsecond();
    let base = t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    // Python leaves the fraction out when it is zero.
    if micros == 0 {
        format!("{base}+00:00")
    } else {
        format!("{base}.{micros:06}+00:00")
    }
}

fn node() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn platform() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let release = read("/proc/sys/kernel/osrelease");
    format!("Linux-{release}-{}-with-glibc", std::env::consts::ARCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_matches_python() {
        let t: jiff::Timestamp = "2026-12-07T11:18:11.123456Z".parse().unwrap();
        assert_eq!(iso(t), "2026-12-07T11:18:11.123456+00:00");
        let t: jiff::Timestamp = "2026-12-07T11:18:11Z".parse().unwrap();
        assert_eq!(iso(t), "2026-12-07T11:18:11+00:00");
    }

    #[test]
    fn keys_come_in_chaoslibs_order() {
        let mut j = CtkJournal::start(serde_json::json!({"title": "t"}));
        j.status = Some(Status::Completed);
        j.end = Some(now_iso());
        j.duration = Some(0.5);
        let text = serde_json::to_string(&j).unwrap();
        let keys = [
            "chaoslib-version",
            "platform",
            "node",
            "experiment",
            "start",
            "status",
            "deviated",
            "steady_states",
            "run",
            "rollbacks",
            "end",
            "duration",
        ];
        let at: Vec<usize> = keys
            .iter()
            .map(|k| text.find(&format!("\"{k}\"")).unwrap())
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    }
}
