//! Running one CTK activity: its provider, timed, as a CTK journal `run` entry.
//!
//! As in chaoslib, only an `ActivityFailed` fails an activity: an HTTP 500 or a non-zero exit
//! status *succeed* (the tolerance judges them). A timeout, a refused connection or an
//! undecodable body fail it, with chaoslib's messages.

use std::future::Future;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value};

use super::config::Context;
use super::model::{ActivityDef, Provider};

pub mod http;
pub mod process;

/// One activity's run: what chaoslib's `execute_activity` records, without the `activity` key
/// (the caller has it: [`ActivityRun::to_journal`] adds it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivityRun {
    /// `succeeded` or `failed`.
    pub status: RunStatus,
    /// The provider's output (`{status, headers, body}` or `{status, stdout, stderr}`), `null`
    /// when it failed.
    pub output: Value,
    /// CTK's `exception`: `traceback.format_exception` lines, e.g.
    /// `["chaoslib.exceptions.ActivityFailed: activity took too long to complete\n"]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<Vec<String>>,
    /// When the provider started.
    pub start: Timestamp,
    /// When it ended (before any `pauses.after`).
    pub end: Timestamp,
    /// `end - start` in seconds.
    pub duration: f64,
    /// Whether `cancel` ended it (the run was interrupted); never written to the journal.
    #[serde(skip)]
    pub interrupted: bool,
}

/// `status` of an [`ActivityRun`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// The provider returned.
    Succeeded,
    /// It raised `ActivityFailed` (or what chaoslib would have let escape).
    Failed,
}

/// Why a provider failed: the exception's class path and message, as Python prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `chaoslib.exceptions.ActivityFailed`, `requests.exceptions.JSONDecodeError`, …
    pub class: &'static str,
    /// `str(exception)`.
    pub message: String,
}

const ACTIVITY_FAILED: &str = "chaoslib.exceptions.ActivityFailed";

/// Runs `activity`'s provider with `cx` (substituting `${name}` as chaoslib does per provider)
/// until it ends or `cancel` resolves. Never panics and never returns an error: every failure
/// is a `failed` run, as in a CTK journal. Pauses and dry modes are the caller's.
///
/// When `cancel` resolves first, a running process is killed and the run is `failed` with
/// `interrupted: true`.
pub async fn run(
    activity: &ActivityDef,
    cx: &Context,
    cancel: impl Future<Output = ()>,
) -> ActivityRun {
    let start = Timestamp::now();
    let started = tokio::time::Instant::now();
    let work = async {
        match &activity.provider {
            Provider::Http(p) => http::run(p, activity.tolerance.is_some(), cx).await,
            Provider::Process(p) => process::run(p, cx).await,
            Provider::Python(p) => Err(Failure {
                class: ACTIVITY_FAILED,
                message: format!(
                    "chaosforge cannot run the Python function {}.{}",
                    p.module, p.func
                ),
            }),
        }
    };
    let (result, interrupted) = tokio::select! {
        r = work => (r, false),
        () = cancel => (Err(Failure {
            class: "chaoslib.exceptions.InterruptExecution",
            message: "activity interrupted".into(),
        }), true),
    };
    let duration = started.elapsed().as_secs_f64();
    let end = Timestamp::now();
    match result {
        Ok(output) => ActivityRun {
            status: RunStatus::Succeeded,
            output,
            exception: None,
            start,
            end,
            duration,
            interrupted,
        },
        Err(f) => ActivityRun {
            status: RunStatus::Failed,
            output: Value::Null,
            exception: Some(vec![format!("{}: {}\n", f.class, f.message)]),
            start,
            end,
            duration,
            interrupted,
        },
    }
}

// === impl ActivityRun ===

impl ActivityRun {
    /// The CTK journal entry: `activity`, `output`, `start`, `status`, `exception` (when
    /// failed), `end`, `duration`, with Python's `isoformat()` times
    /// (`2024-05-01T10:00:00.123456+00:00`).
    pub fn to_journal(&self, activity: &Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("activity".into(), activity.clone());
        m.insert("output".into(), self.output.clone());
        m.insert("start".into(), isoformat(self.start).into());
        let status = match self.status {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        };
        m.insert("status".into(), status.into());
        if let Some(e) = &self.exception {
            m.insert("exception".into(), e.clone().into());
        }
        m.insert("end".into(), isoformat(self.end).into());
        m.insert("duration".into(), self.duration.into());
        m
    }
}

/// Python's `datetime.now(timezone.utc).isoformat()`.
pub fn isoformat(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

fn failed(message: impl Into<String>) -> Failure {
    Failure {
        class: ACTIVITY_FAILED,
        message: message.into(),
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
