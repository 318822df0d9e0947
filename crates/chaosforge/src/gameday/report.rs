//! The combined report of a game day, computed from its journal and its runs' journals alone
//! (as a run's report is from its journal), so it can be rebuilt at any time: a timeline of
//! every scenario, fault and finding relative to the game day's start, and each scenario's own
//! [`Report`]. It is plain serializable data, so other renderers (Markdown, HTML, JUnit) can be
//! added beside [`GameDayReport::render_text`] and [`GameDayReport::render_json`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::log::{self, GameDayEvent, StepSummary};
use super::{Roles, StopOn};
use crate::journal::{self, Event, JournalError};
use crate::report::{Report, ReportError};
use crate::units::{duration_text, format_duration, opt_duration_text};
use crate::vocab::{Outcome, RunId};

/// Errors building a combined report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GameDayReportError {
    /// A journal could not be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A run's journal could not be turned into a report.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The game day journal does not start with `game_day_started`.
    #[error("{0}: not a game day journal (no `game_day_started` first line)")]
    NotAGameDay(String),
}

/// A game day, as its journals tell it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GameDayReport {
    /// Its id.
    pub gameday_id: String,
    /// Its name.
    pub name: String,
    /// Its description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The game day file.
    pub file: String,
    /// Its roles.
    pub roles: Roles,
    /// Wall-clock start of the runner.
    pub started_at: jiff::Timestamp,
    /// The scheduled start, when it waited for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<jiff::Timestamp>,
    /// What stops it early.
    pub stop_on: StopOn,
    /// How it ended.
    pub outcome: GameDayOutcome,
    /// The runner's exit code, when it ended.
    pub exit_code: Option<u8>,
    /// From its start to its end (or its last line).
    #[serde(with = "duration_text")]
    pub duration: Duration,
    /// The timeline as planned.
    pub steps: Vec<StepSummary>,
    /// Every scenario that started, in the order they started.
    pub scenarios: Vec<ScenarioReport>,
    /// Everything that happened, in time order.
    pub timeline: Vec<TimelineEntry>,
}

/// How a game day ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum GameDayOutcome {
    /// Every step ran.
    Completed,
    /// Stopped before its next step: by `chaosforge halt` or a signal (`by` `halt`/`signal`),
    /// or by `stop_on`.
    Halted {
        /// Who stopped it.
        by: String,
        /// Why.
        reason: String,
    },
    /// The journal has no end: the runner died.
    Unfinished,
}

/// One scenario of a game day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioReport {
    /// The step (0-based).
    pub step: usize,
    /// Its index in the step.
    pub index: usize,
    /// The experiment's name.
    pub name: String,
    /// Its run.
    pub run_id: RunId,
    /// When it started, from the game day's start.
    #[serde(with = "duration_text")]
    pub start: Duration,
    /// When it ended, from the game day's start.
    #[serde(with = "opt_duration_text")]
    pub end: Option<Duration>,
    /// How it ended.
    pub outcome: Option<Outcome>,
    /// Why it did not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its own report, from its journal (none when it never started a journal).
    pub report: Option<Report>,
}

/// One moment of a game day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// From the game day's start.
    #[serde(with = "duration_text")]
    pub at: Duration,
    /// The step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// The scenario's experiment, for scenario events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// What happened.
    pub event: TimelineEvent,
}

/// What happened at a [`TimelineEntry`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum TimelineEvent {
    /// Waiting for the scheduled start.
    Waiting {
        /// Until when.
        until: jiff::Timestamp,
    },
    /// A step began.
    StepStarted,
    /// A scenario's run started.
    ScenarioStarted {
        /// The run.
        run_id: RunId,
    },
    /// A scenario's run ended.
    ScenarioEnded {
        /// The run.
        run_id: RunId,
        /// Its outcome in one line.
        outcome: String,
    },
    /// A fault was injected.
    FaultInjected {
        /// The fault's name.
        fault: String,
        /// Its kind.
        kind: String,
        /// The target.
        target: String,
    },
    /// A fault was reverted.
    FaultReverted {
        /// The fault's name.
        fault: String,
        /// The target.
        target: String,
        /// Who reverted it (`run`, `drop`, `recover`).
        by: String,
    },
    /// A fault failed to inject or revert.
    FaultFailed {
        /// The fault's name.
        fault: String,
        /// The target.
        target: String,
        /// What failed.
        error: String,
    },
    /// A finding of a scenario (what to fix), at its end.
    Finding {
        /// The finding.
        text: String,
    },
    /// A pause step began.
    Pause {
        /// How long.
        #[serde(with = "duration_text")]
        duration: Duration,
    },
    /// The game day stops before its next step.
    Halted {
        /// Who stopped it.
        by: String,
        /// Why.
        reason: String,
    },
    /// The game day ended.
    Ended,
}

// === impl GameDayReport ===

impl GameDayReport {
    /// The report of the game day journaled at `dir/gameday.jsonl`, reading its runs' journals
    /// under `state_dir/runs`.
    pub fn load(state_dir: &Path, dir: &Path) -> Result<GameDayReport, GameDayReportError> {
        let events = log::read(&dir.join(log::FILE))?;
        let mut runs = BTreeMap::new();
        for e in &events {
            if let GameDayEvent::ScenarioStarted { run_id, .. } = e {
                let path = state_dir.join("runs").join(&run_id.0).join("journal.jsonl");
                // A scenario refused when it was to start has no journal.
                if path.is_file() {
                    runs.insert(run_id.clone(), journal::read(&path)?);
                }
            }
        }
        Self::from_events(&events, &runs)
    }

    /// The report from the game day's events and its runs' events (a pure function).
    pub fn from_events(
        events: &[GameDayEvent],
        runs: &BTreeMap<RunId, Vec<Event>>,
    ) -> Result<GameDayReport, GameDayReportError> {
        let Some(GameDayEvent::GameDayStarted {
            gameday_id,
            name,
            description,
            file,
            started_at,
            roles,
            scheduled,
            stop_on,
            steps,
            ..
        }) = events.first()
        else {
            return Err(GameDayReportError::NotAGameDay(
                "the game day journal".into(),
            ));
        };
        let mut timeline = Vec::new();
        let mut scenarios: Vec<ScenarioReport> = Vec::new();
        let mut outcome = GameDayOutcome::Unfinished;
        let mut exit_code = None;
        let mut last = Duration::ZERO;
        let mut halted = None;
        for e in events {
            let (at, step, scenario, event) = match e {
                GameDayEvent::GameDayStarted { .. } => continue,
                GameDayEvent::Waiting { until, at } => {
                    (*at, None, None, TimelineEvent::Waiting { until: *until })
                }
                GameDayEvent::StepStarted { step, at } => {
                    (*at, Some(*step), None, TimelineEvent::StepStarted)
                }
                GameDayEvent::ScenarioStarted {
                    step,
                    index,
                    name,
                    run_id,
                    at,
                } => {
                    let report = runs
                        .get(run_id)
                        .map(|ev| Report::from_events(ev))
                        .transpose()?;
                    scenarios.push(ScenarioReport {
                        step: *step,
                        index: *index,
                        name: name.clone(),
                        run_id: run_id.clone(),
                        start: *at,
                        end: None,
                        outcome: None,
                        error: None,
                        report,
                    });
                    (
                        *at,
                        Some(*step),
                        Some(name.clone()),
                        TimelineEvent::ScenarioStarted {
                            run_id: run_id.clone(),
                        },
                    )
                }
                GameDayEvent::ScenarioEnded {
                    step,
                    run_id,
                    outcome,
                    error,
                    at,
                    ..
                } => {
                    let s = scenarios.iter_mut().find(|s| &s.run_id == run_id);
                    let name = s.as_ref().map(|s| s.name.clone());
                    if let Some(s) = s {
                        s.end = Some(*at);
                        s.outcome = outcome.clone();
                        s.error = error.clone();
                    }
                    let line = match (outcome, error) {
                        (Some(o), _) => o.headline(),
                        (None, Some(e)) => format!("did not run: {e}"),
                        (None, None) => "no outcome".into(),
                    };
                    (
                        *at,
                        Some(*step),
                        name,
                        TimelineEvent::ScenarioEnded {
                            run_id: run_id.clone(),
                            outcome: line,
                        },
                    )
                }
                GameDayEvent::Pause { step, duration, at } => (
                    *at,
                    Some(*step),
                    None,
                    TimelineEvent::Pause {
                        duration: *duration,
                    },
                ),
                GameDayEvent::Halted { by, reason, at } => {
                    halted = Some((by.clone(), reason.clone()));
                    (
                        *at,
                        None,
                        None,
                        TimelineEvent::Halted {
                            by: by.clone(),
                            reason: reason.clone(),
                        },
                    )
                }
                GameDayEvent::GameDayEnded { exit_code: c, at } => {
                    exit_code = Some(*c);
                    outcome = match &halted {
                        Some((by, reason)) => GameDayOutcome::Halted {
                            by: by.clone(),
                            reason: reason.clone(),
                        },
                        None => GameDayOutcome::Completed,
                    };
                    (*at, None, None, TimelineEvent::Ended)
                }
            };
            last = last.max(at);
            timeline.push(TimelineEntry {
                at,
                step,
                scenario,
                event,
            });
        }
        // Faults and findings from each run's own journal, placed by the run's wall-clock start
        // against the game day's (both read from the same clock by one process).
        for s in &scenarios {
            let Some(r) = &s.report else { continue };
            let offset = Duration::from_millis(
                u64::try_from(r.started_at.as_millisecond() - started_at.as_millisecond())
                    .unwrap_or(0),
            );
            let entry = |at: Duration, event| TimelineEntry {
                at: offset + at,
                step: Some(s.step),
                scenario: Some(s.name.clone()),
                event,
            };
            for f in &r.faults {
                if let Some(at) = f.injected_at {
                    timeline.push(entry(
                        at,
                        TimelineEvent::FaultInjected {
                            fault: f.name.clone(),
                            kind: f.kind.clone(),
                            target: f.target.clone(),
                        },
                    ));
                }
                match (&f.error, f.reverted_at) {
                    (Some(error), at) => timeline.push(entry(
                        at.or(f.injected_at).unwrap_or(r.duration),
                        TimelineEvent::FaultFailed {
                            fault: f.name.clone(),
                            target: f.target.clone(),
                            error: error.clone(),
                        },
                    )),
                    (None, Some(at)) => timeline.push(entry(
                        // `recover` counts from when it opened the journal: place its revert at
                        // the run's end, the earliest it can have been.
                        if f.reverted_by.as_deref() == Some("recover") {
                            r.duration.max(at)
                        } else {
                            at
                        },
                        TimelineEvent::FaultReverted {
                            fault: f.name.clone(),
                            target: f.target.clone(),
                            by: f.reverted_by.clone().unwrap_or_default(),
                        },
                    )),
                    (None, None) => {}
                }
            }
            for text in r.findings.iter().chain(&r.security_findings) {
                timeline.push(entry(
                    r.duration,
                    TimelineEvent::Finding { text: text.clone() },
                ));
            }
        }
        // Stable: events of one instant keep their journal order.
        timeline.sort_by_key(|e| e.at);
        Ok(GameDayReport {
            gameday_id: gameday_id.clone(),
            name: name.clone(),
            description: description.clone(),
            file: file.clone(),
            roles: roles.clone(),
            started_at: *started_at,
            scheduled: *scheduled,
            stop_on: *stop_on,
            outcome,
            exit_code,
            duration: last,
            steps: steps.clone(),
            scenarios,
            timeline,
        })
    }

    /// Renders for a terminal: the outcome, the timeline, a line per scenario with the command
    /// that shows its report, then each scenario's own report.
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "game day    {}  (id {})", self.name, self.gameday_id);
        if let Some(d) = &self.description {
            let _ = writeln!(o, "            {d}");
        }
        let _ = writeln!(o, "file        {}", self.file);
        let r = &self.roles;
        let _ = writeln!(
            o,
            "roles       owner {}; observers {}; approver {}",
            r.owner,
            if r.observers.is_empty() {
                "none".to_string()
            } else {
                r.observers.join(", ")
            },
            r.approver.as_deref().unwrap_or("none")
        );
        let _ = writeln!(o, "started     {}", self.started_at);
        let (ran, planned) = (
            self.scenarios.len(),
            self.steps.iter().map(|s| s.scenarios.len()).sum::<usize>(),
        );
        let _ = writeln!(
            o,
            "outcome     {} — {ran} of {planned} scenario{} run in {}: {}",
            match &self.outcome {
                GameDayOutcome::Completed => "COMPLETED".to_string(),
                GameDayOutcome::Halted { by, reason } => format!("HALTED by {by} ({reason})"),
                GameDayOutcome::Unfinished => "UNFINISHED (the runner died)".to_string(),
            },
            if planned == 1 { "" } else { "s" },
            format_duration(self.duration),
            self.tally()
        );
        let _ = writeln!(o, "\ntimeline (from the game day's start)");
        for e in &self.timeline {
            let step = e
                .step
                .map(|s| format!("step {}", s + 1))
                .unwrap_or_default();
            let who = e
                .scenario
                .as_ref()
                .map(|s| format!("[{s}] "))
                .unwrap_or_default();
            let what = match &e.event {
                TimelineEvent::Waiting { until } => format!("waiting until {until}"),
                TimelineEvent::StepStarted => "step started".to_string(),
                TimelineEvent::ScenarioStarted { run_id } => {
                    format!("scenario started (run {})", run_id.0)
                }
                TimelineEvent::ScenarioEnded { outcome, .. } => {
                    format!("scenario ended: {outcome}")
                }
                TimelineEvent::FaultInjected {
                    fault,
                    kind,
                    target,
                } => format!("injected {fault} ({kind}) on {target}"),
                TimelineEvent::FaultReverted { fault, target, by } => {
                    format!("reverted {fault} on {target} (by {by})")
                }
                TimelineEvent::FaultFailed {
                    fault,
                    target,
                    error,
                } => format!("FAILED {fault} on {target}: {error}"),
                TimelineEvent::Finding { text } => format!("finding: {text}"),
                TimelineEvent::Pause { duration } => {
                    format!("pause {}", format_duration(*duration))
                }
                TimelineEvent::Halted { by, reason } => format!("HALTED by {by}: {reason}"),
                TimelineEvent::Ended => "game day ended".to_string(),
            };
            let _ = writeln!(o, "  {:>10}  {step:<7} {who}{what}", secs(e.at));
        }
        let _ = writeln!(o, "\nscenarios");
        for s in &self.scenarios {
            let _ = writeln!(
                o,
                "  step {} {:<24} {:>10} → {:<10} {:<11} chaosforge report {}",
                s.step + 1,
                s.name,
                secs(s.start),
                s.end.map_or_else(|| "?".to_string(), secs),
                word(s.outcome.as_ref(), s.error.is_some()),
                s.run_id.0
            );
        }
        for s in &self.scenarios {
            let _ = writeln!(
                o,
                "\n=== step {} · {} (run {}) ===",
                s.step + 1,
                s.name,
                s.run_id.0
            );
            match (&s.report, &s.error) {
                (Some(r), _) => o.push_str(&r.render_text()),
                (None, Some(e)) => {
                    let _ = writeln!(o, "did not run: {e}");
                }
                (None, None) => {
                    let _ = writeln!(o, "no journal");
                }
            }
        }
        o
    }

    /// Renders as pretty JSON.
    pub fn render_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// `2 confirmed, 1 refuted, …` over the scenarios run.
    fn tally(&self) -> String {
        let mut n: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &self.scenarios {
            *n.entry(word(s.outcome.as_ref(), s.error.is_some()))
                .or_default() += 1;
        }
        if n.is_empty() {
            return "none".into();
        }
        n.iter()
            .map(|(w, c)| format!("{c} {w}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One word for a scenario's end.
fn word(o: Option<&Outcome>, refused: bool) -> &'static str {
    match o {
        Some(Outcome::Confirmed) => "confirmed",
        Some(Outcome::Refuted { .. }) => "refuted",
        Some(Outcome::NotSteady { .. }) => "not-steady",
        Some(Outcome::Halted { .. }) => "halted",
        Some(Outcome::Errored { .. }) => "error",
        None if refused => "refused",
        None => "running",
    }
}

/// `+12.345s`.
fn secs(d: Duration) -> String {
    format!("+{:.3}s", d.as_secs_f64())
}
