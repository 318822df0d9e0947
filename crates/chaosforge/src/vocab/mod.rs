//! The run's vocabulary: every word the journal records, and nothing that does work.
//!
//! The journal, the report, the engine, `recover` and the faults all speak these types; this
//! module imports none of them (only `units`), so the journal — the lowest layer, what `recover`
//! reads alone — depends on nothing above it. Each type's serde form *is* the journal format:
//! changing a name, a tag or a skip rule changes what old journals mean (the golden journals in
//! the CLI tests catch it).
//!
//! - ids and outcomes here: [`RunId`], [`FaultId`], [`Phase`], [`Outcome`];
//! - `summary`: [`PlanSummary`], what a report needs to know about the plan;
//! - `sample`: [`Sample`], one probe measurement;
//! - `revert`: [`RevertSpec`], how to undo a fault from the journal alone, and the plain data
//!   it carries;
//! - `http`: [`HttpProxyReport`], what an HTTP proxy's rules did;
//! - `claim`: [`Claim`], [`ClaimHolder`], the resources a run holds exclusively.
//!
//! Behaviour over these types lives with the layer that needs it (an inherent `impl` may sit in
//! any module of the crate): `RevertSpec::revert_detached` in `fault`, `PlanSummary::of` in
//! `report`, `Sample`'s constructors in `probe`.

use serde::{Deserialize, Serialize};

mod claim;
mod http;
mod revert;
mod sample;
mod summary;

pub use claim::{Claim, ClaimHolder};
pub use http::{HttpProxyReport, HttpRuleCounters};
pub(crate) use revert::is_inet;
pub use revert::{
    CgroupFile, ContainerLimits, Family, Hook, LimitResource, Moved, MovedProcess, QueueChain,
    RevertSpec,
};
pub use sample::{Resource, Sample};
pub use summary::{FaultSummary, MonitorSummary, PhasesSummary, PlanSummary, TargetSummary};

/// Identifies one run: a UUIDv7, so that directory listings sort by start time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub String);

/// Identifies one injected fault instance (one fault on one target) within a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FaultId(pub u32);

/// The five phases of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Resolve targets, start proxies and probes; nothing injected.
    Validate,
    /// Sample the steady state.
    Baseline,
    /// Inject the faults.
    Inject,
    /// Hold the faults while monitors observe.
    Observe,
    /// Revert everything and measure the time to recover.
    Recover,
}

/// How a run ended. Exit codes: 0 confirmed, 1 refuted, 2 errored or not steady, 3 halted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The hypothesis held through the faults, and the system recovered in time.
    Confirmed,
    /// The hypothesis did not hold (or the system did not recover in time).
    Refuted {
        /// Each expectation that failed, with what was observed.
        reasons: Vec<String>,
    },
    /// The hypothesis did not hold at baseline; nothing was injected.
    NotSteady {
        /// Each expectation that failed at baseline.
        reasons: Vec<String>,
    },
    /// A policy (or a signal) halted the run; faults were reverted.
    Halted {
        /// The policy.
        policy: String,
        /// Why.
        reason: String,
    },
    /// Something failed: a target, an injection, a revert.
    Errored {
        /// The phase it failed in.
        phase: Phase,
        /// What failed.
        error: String,
    },
}

// === impl Outcome ===

impl Outcome {
    /// The process exit code for this outcome (a documented contract).
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Confirmed => 0,
            Outcome::Refuted { .. } => 1,
            Outcome::NotSteady { .. } | Outcome::Errored { .. } => 2,
            Outcome::Halted { .. } => 3,
        }
    }

    /// One line for humans.
    pub fn headline(&self) -> String {
        match self {
            Outcome::Confirmed => {
                "CONFIRMED — the hypothesis held through the faults and the system recovered".into()
            }
            Outcome::Refuted { reasons } => format!("REFUTED — {}", reasons.join("; ")),
            Outcome::NotSteady { reasons } => {
                format!(
                    "NOT STEADY — the hypothesis did not hold before any fault, nothing was injected: {}",
                    reasons.join("; ")
                )
            }
            Outcome::Halted { policy, reason } => {
                format!("HALTED by {policy} — {reason}; faults were reverted")
            }
            Outcome::Errored { phase, error } => format!("ERROR in {phase:?} phase — {error}"),
        }
    }
}
