//! The providers behind [`super::flow`], and the replay of a killed run's rollbacks.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::config::{Context, Vars};
use super::flow::{ProviderFuture, ProviderResult};
use super::model::ActivityDef;
use super::provider::{self, RunStatus};

/// The http and process providers with a run's resolved configuration and secrets.
pub struct Providers {
    cx: Arc<Context>,
}

impl Providers {
    /// Providers substituting from `cx`.
    pub fn new(cx: Arc<Context>) -> Self {
        Providers { cx }
    }
}

impl super::flow::Providers for Providers {
    fn run<'a>(&'a self, activity: &'a Value) -> ProviderFuture<'a> {
        Box::pin(async move { run_one(activity, &self.cx).await })
    }

    fn substitute(&self, value: &Value) -> Value {
        self.cx.substitute(value)
    }
}

async fn run_one(activity: &Value, cx: &Context) -> ProviderResult {
    let def = ActivityDef::from_value(activity)
        .map_err(|e| vec![format!("chaoslib.exceptions.InvalidActivity: {e}\n")])?;
    // Cancellation is the flow's: it drops this future, which kills a running process.
    let run = provider::run(&def, cx, std::future::pending()).await;
    match run.status {
        RunStatus::Succeeded => Ok(run.output),
        RunStatus::Failed => Err(run.exception.unwrap_or_default()),
    }
}

/// Plays a CTK run's rollbacks from the record alone (`chaosforge recover`), in order,
/// background ones included (one after the other: nothing else is running any more).
///
/// # Errors
///
/// The experiment file cannot be read (its secrets are needed), the configuration or secrets
/// cannot be resolved in this environment, or a rollback failed.
pub async fn replay_rollbacks(
    file: &Path,
    rollbacks: &[Value],
    configuration: &Value,
    vars: &BTreeMap<String, Value>,
) -> Result<String, crate::fault::BoxError> {
    if rollbacks.is_empty() {
        return Ok("the experiment declares no rollbacks".into());
    }
    let (_, mut exp, _) = super::load(file).map_err(|d| {
        format!(
            "cannot replay the rollbacks: {} no longer loads ({} problem(s)); play them by hand: {}",
            file.display(),
            d.len(),
            names(rollbacks)
        )
    })?;
    // The configuration as it was declared when the run started, not as the file says now.
    if let Some(c) = configuration.as_object() {
        exp.configuration = c.clone();
    }
    let extra = Vars {
        configuration: vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ..Vars::default()
    };
    let cx = Context::new(&exp, &extra).map_err(|errors| {
        let why: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!(
            "cannot replay the rollbacks here: {}; play them by hand: {}",
            why.join("; "),
            names(rollbacks)
        )
    })?;
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for activity in rollbacks {
        let name = activity
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        match run_one(activity, &cx).await {
            Ok(_) => done.push(name),
            Err(e) => failed.push(format!(
                "{name}: {}",
                e.last().map_or("failed", |l| l.trim())
            )),
        }
    }
    if failed.is_empty() {
        Ok(format!("played the CTK rollbacks: {}", done.join(", ")))
    } else {
        Err(format!("CTK rollbacks failed: {}", failed.join("; ")).into())
    }
}

fn names(rollbacks: &[Value]) -> String {
    rollbacks
        .iter()
        .map(|r| r.get("name").and_then(Value::as_str).unwrap_or("?"))
        .collect::<Vec<_>>()
        .join(", ")
}
