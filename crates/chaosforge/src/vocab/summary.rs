//! What a report needs to know about the plan, journaled once in `RunStarted`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::duration_text;

/// What a report needs to know about the plan; journaled in `RunStarted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// Experiment name.
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Hypothesis title.
    pub title: String,
    /// The experiment file.
    pub file: String,
    /// The run's seed.
    pub seed: u64,
    /// Targets.
    pub targets: Vec<TargetSummary>,
    /// Monitors.
    pub monitors: Vec<MonitorSummary>,
    /// Faults.
    pub faults: Vec<FaultSummary>,
    /// Phase durations.
    pub phases: PhasesSummary,
    /// Halt rules.
    pub halt_when: Vec<String>,
    /// The hypothesis's significance level, when it requires no significant degradation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub significance: Option<f64>,
    /// The policies' verdicts when the run was admitted: who approved, overrides, the window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
}

/// A target in a [`PlanSummary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetSummary {
    /// Name.
    pub name: String,
    /// What it is, in words.
    pub describe: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A monitor in a [`PlanSummary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorSummary {
    /// Name.
    pub name: String,
    /// The probe, in words (`GET http://… every 100ms`).
    pub describe: String,
    /// Time between samples.
    #[serde(with = "duration_text")]
    pub interval: Duration,
    /// Expectations as written.
    pub expect: Vec<String>,
}

/// A fault in a [`PlanSummary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultSummary {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// What it does, in words.
    pub describe: String,
    /// The targets its scope chose.
    pub targets: Vec<String>,
    /// The scope.
    pub scope: String,
    /// Why it cannot be undone, if it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irreversible: Option<String>,
}

/// Phase durations as planned.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PhasesSummary {
    /// Baseline.
    #[serde(with = "duration_text")]
    pub baseline: Duration,
    /// Inject (faults held).
    #[serde(with = "duration_text")]
    pub inject: Duration,
    /// Longest acceptable time to recover.
    #[serde(with = "duration_text")]
    pub recover_within: Duration,
}
