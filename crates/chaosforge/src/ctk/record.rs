//! A CTK run in chaosforge's own journal, so that `recover`, `report`, `history` and every
//! report format work for it as for our experiments.
//!
//! The mapping: each steady-state probe is a monitor whose samples are the probe's runs
//! (`ok` = tolerance met, latency = the probe's duration); the hypothesis before the method is
//! the baseline, the continuous one the observe window, the one after the recovery window. The
//! rollbacks are the run's one "fault": journaled write-ahead (with how to replay them) just
//! before the method's first activity, since from there the system may be changed, and closed
//! when they were played — or when the rollback strategy decided not to play them, which is
//! chaoslib's behaviour and recorded as such. A runner killed in between leaves the rollbacks
//! open, and `chaosforge recover` plays them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::flow::{Hooks, Window};
use super::journal::{CtkJournal, Run, RunStatus, Status};
use crate::journal::{Event, Journal};
use crate::vocab::{
    FaultId, FaultSummary, MonitorSummary, Outcome, Phase, PhasesSummary, PlanSummary, RevertSpec,
    Sample,
};

/// The one fault id of a CTK run: its rollbacks.
pub const ROLLBACKS: FaultId = FaultId(0);

/// The plan summary of a CTK experiment (for our journal's `RunStarted`).
pub fn summary(experiment: &Value, file: &str, frequency: Duration) -> PlanSummary {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let hypothesis = experiment.get("steady-state-hypothesis");
    let probes = hypothesis
        .and_then(|h| h.get("probes"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let rollbacks = experiment
        .get("rollbacks")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    PlanSummary {
        name: text(experiment.get("title")),
        description: experiment
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string),
        title: text(hypothesis.and_then(|h| h.get("title"))),
        file: file.to_string(),
        seed: 0,
        targets: Vec::new(),
        monitors: probes
            .iter()
            .enumerate()
            .map(|(i, p)| MonitorSummary {
                name: monitor_name(p, i),
                describe: describe(p),
                interval: frequency,
                expect: vec!["availability >= 100%".into()],
            })
            .collect(),
        faults: vec![FaultSummary {
            name: "rollbacks".into(),
            kind: "ctk-rollbacks".into(),
            describe: format!(
                "the experiment's {rollbacks} rollback{}",
                if rollbacks == 1 { "" } else { "s" }
            ),
            targets: Vec::new(),
            scope: "all".into(),
            irreversible: None,
        }],
        phases: PhasesSummary {
            baseline: Duration::ZERO,
            inject: Duration::ZERO,
            recover_within: Duration::ZERO,
        },
        halt_when: Vec::new(),
        significance: None,
        policies: Vec::new(),
    }
}

fn monitor_name(probe: &Value, i: usize) -> String {
    probe
        .get("name")
        .or_else(|| probe.get("ref"))
        .and_then(Value::as_str)
        .map_or_else(|| format!("probe {i}"), str::to_string)
}

fn describe(activity: &Value) -> String {
    let p = activity.get("provider");
    let s = |k: &str| {
        p.and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    match s("type") {
        "http" => format!(
            "CTK http probe: {} {}",
            p.and_then(|p| p.get("method"))
                .and_then(Value::as_str)
                .unwrap_or("GET"),
            s("url")
        ),
        "process" => format!("CTK process probe: {}", s("path")),
        "python" => format!("CTK python probe: {}.{}", s("module"), s("func")),
        _ => match activity.get("ref").and_then(Value::as_str) {
            Some(r) => format!("CTK probe (ref {r})"),
            None => "CTK probe".into(),
        },
    }
}

/// Writes a CTK run's events into our journal as they happen. Journal errors are reported
/// once on stderr by the caller's `warn`: the CTK journal is the run's own record, ours must
/// not stop it — except the write-ahead of the rollbacks, whose failure is the caller's to see
/// in [`Recorder::write_ahead_failed`].
pub struct Recorder {
    journal: Journal,
    replay: RevertSpec,
    failed: std::sync::atomic::AtomicBool,
    phase: std::sync::Mutex<Option<Phase>>,
}

impl Recorder {
    /// Records into `journal` (already holding `RunStarted`); `replay` is how to play the
    /// rollbacks from the record alone.
    pub fn new(journal: Journal, replay: RevertSpec) -> Self {
        Recorder {
            journal,
            replay,
            failed: std::sync::atomic::AtomicBool::new(false),
            phase: std::sync::Mutex::new(None),
        }
    }

    /// Whether journaling the rollbacks write-ahead failed (the run went on, as CTK would, but
    /// `recover` could not replay them).
    pub fn write_ahead_failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    fn enter(&self, phase: Phase) {
        let mut cur = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        if *cur != Some(phase) {
            *cur = Some(phase);
            let _ = self.journal.append(&Event::Phase {
                phase,
                at: self.journal.now(),
            });
        }
    }

    /// Closes our journal with the outcome the CTK journal amounts to.
    pub fn finish(&self, ctk: &CtkJournal) -> Outcome {
        let outcome = outcome(ctk);
        let _ = self.journal.append_durable(&Event::RunFinished {
            outcome: outcome.clone(),
            at: self.journal.now(),
        });
        outcome
    }
}

impl Hooks for Recorder {
    fn hypothesis_starts(&self, window: Window) {
        self.enter(match window {
            Window::Before => Phase::Baseline,
            Window::During => Phase::Observe,
            Window::After => Phase::Recover,
        });
    }

    fn probe_done(&self, window: Window, index: usize, run: &Run) {
        let latency = Duration::from_secs_f64(run.duration.unwrap_or(0.0).max(0.0));
        let status = run
            .output
            .get("status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok());
        let error = match (run.status, run.tolerance_met) {
            (Some(RunStatus::Failed), _) => Some(
                run.exception
                    .as_ref()
                    .and_then(|e| e.last())
                    .map_or_else(|| "the probe failed".into(), |l| l.trim().to_string()),
            ),
            (_, Some(false)) => Some("tolerance not met".into()),
            _ => None,
        };
        let _ = self.journal.append(&Event::Sample {
            monitor: index,
            phase: match window {
                Window::Before => Phase::Baseline,
                Window::During => Phase::Observe,
                Window::After => Phase::Recover,
            },
            sample: Sample {
                at: self.journal.now().saturating_sub(latency),
                latency,
                ok: run.tolerance_met == Some(true),
                status,
                error,
                value: None,
                resource: None,
            },
        });
    }

    fn method_starts(&self) {
        self.enter(Phase::Inject);
        let at = self.journal.now();
        let written = self.journal.append_durable(&Event::Injecting {
            fault: ROLLBACKS,
            name: "rollbacks".into(),
            target: "ctk".into(),
            kind: "ctk-rollbacks".into(),
            revert: self.replay.clone(),
            at,
        });
        if written.is_err() {
            self.failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let _ = self.journal.append(&Event::Injected {
            fault: ROLLBACKS,
            at: self.journal.now(),
        });
        self.enter(Phase::Observe);
    }

    fn rollbacks_decided(&self, played: bool, why: &str) {
        self.enter(Phase::Recover);
        if !played {
            let _ = self.journal.append_durable(&Event::Reverted {
                fault: ROLLBACKS,
                by: "run".into(),
                note: Some(format!("rollbacks not played: {why}")),
                at: self.journal.now(),
            });
        }
    }

    fn rollbacks_done(&self, interrupted: bool) {
        let event = if interrupted {
            Event::RevertFailed {
                fault: ROLLBACKS,
                error: "a signal cut the rollbacks short".into(),
                at: self.journal.now(),
            }
        } else {
            Event::Reverted {
                fault: ROLLBACKS,
                by: "run".into(),
                note: Some("rollbacks played".into()),
                at: self.journal.now(),
            }
        };
        let _ = self.journal.append_durable(&event);
    }
}

/// The chaosforge outcome of a CTK journal: completed and steady is confirmed, a deviation is
/// refuted, a gate that did not hold is not steady, a signal is a halt, chaoslib's `aborted` an
/// error.
pub fn outcome(ctk: &CtkJournal) -> Outcome {
    let misses = |state: Option<&super::journal::HypothesisState>| -> Vec<String> {
        state
            .map(|s| {
                s.probes
                    .iter()
                    .filter(|p| p.tolerance_met == Some(false))
                    .map(|p| {
                        format!(
                            "probe `{}` {}",
                            p.activity
                                .get("name")
                                .and_then(Value::as_str)
                                .unwrap_or("?"),
                            if p.status == Some(RunStatus::Failed) {
                                "failed"
                            } else {
                                "was not within its tolerance"
                            }
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let gate_held = ctk
        .steady_states
        .before
        .as_ref()
        .is_none_or(|s| s.steady_state_met == Some(true));
    match ctk.status {
        Some(Status::Interrupted) => Outcome::Halted {
            policy: "signal".into(),
            reason: "interrupted by a signal".into(),
        },
        Some(Status::Aborted) => Outcome::Errored {
            phase: Phase::Inject,
            error: "the method ran into an unexpected error (CTK status aborted)".into(),
        },
        _ if !gate_held => Outcome::NotSteady {
            reasons: misses(ctk.steady_states.before.as_ref()),
        },
        _ if ctk.deviated => Outcome::Refuted {
            reasons: misses(ctk.steady_states.after.as_ref()),
        },
        Some(Status::Failed) => {
            let mut reasons: Vec<String> = ctk
                .steady_states
                .during
                .iter()
                .flat_map(|s| misses(Some(s)))
                .collect();
            reasons.dedup();
            reasons.insert(0, "the continuous hypothesis deviated (fail fast)".into());
            Outcome::Refuted { reasons }
        }
        _ => Outcome::Confirmed,
    }
}

/// The journal's `experiment`: the experiment with every inline secret value replaced, since
/// secrets never go into a journal (chaoslib copies them in as they are).
pub fn redacted_experiment(experiment: &Value) -> Value {
    let mut e = experiment.clone();
    if let Some(secrets) = e.get_mut("secrets").and_then(Value::as_object_mut) {
        for scope in secrets.values_mut() {
            if let Some(scope) = scope.as_object_mut() {
                for v in scope.values_mut() {
                    // An `env`/`vault` reference names where the secret is, not the secret.
                    let reference = v.get("type").and_then(Value::as_str).is_some();
                    if !reference {
                        *v = Value::String("***".into());
                    }
                }
            }
        }
    }
    e
}

/// Replaces every occurrence of each secret value in the strings of `value` by `***`.
pub fn redact_strings(value: &mut Value, secrets: &[String]) {
    match value {
        Value::String(s) => {
            for secret in secrets.iter().filter(|s| !s.is_empty()) {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), "***");
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_strings(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| redact_strings(v, secrets)),
        _ => {}
    }
}

/// The configuration values given on the command line (`--var`), kept for a replay.
pub type Vars = BTreeMap<String, Value>;
