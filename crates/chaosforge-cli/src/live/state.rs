//! What the live view shows, kept from the run's [`Progress`] events: pure, so the rendering is
//! tested from a state built by hand (`view::tests`).

use std::collections::VecDeque;
use std::time::Duration;

use chaosforge::engine::{Phase, Progress};
use chaosforge::hypothesis::{Expectation, Verdict, WindowStats};
use chaosforge::plan::Plan;
use chaosforge::probe::Sample;

/// The samples of a monitor kept for its sparkline and its window: at most this many.
const KEPT: usize = 512;

/// The baseline samples kept for relative thresholds (`baseline * 1.5`), at most.
const BASELINE_KEPT: usize = 20_000;

/// Everything on the screen.
#[derive(Debug, Clone)]
pub(crate) struct LiveState {
    pub(crate) experiment: String,
    pub(crate) run_id: Option<String>,
    /// The current phase, when it began (on the view's clock) and its planned length.
    pub(crate) phase: Option<(Phase, Duration, Option<Duration>)>,
    pub(crate) faults: Vec<ActiveFault>,
    pub(crate) monitors: Vec<MonitorView>,
    /// The sliding window expectations are judged over: the halt rules' (at least 3
    /// intervals of each monitor).
    pub(crate) window: Duration,
    /// Warnings (webhook deliveries), newest last; a few.
    pub(crate) messages: VecDeque<String>,
    /// `q` was pressed: every fault is being reverted.
    pub(crate) halting: bool,
}

/// A fault injected and not reverted yet (or whose revert failed).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ActiveFault {
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) target: String,
    /// When it was injected, on the view's clock.
    pub(crate) since: Duration,
    /// Why its revert failed: it may still act (`chaosforge recover` is due).
    pub(crate) revert_error: Option<String>,
}

/// One monitor: its recent samples, its counts and its expectations.
#[derive(Debug, Clone)]
pub(crate) struct MonitorView {
    pub(crate) name: String,
    pub(crate) interval: Duration,
    pub(crate) expect: Vec<Expectation>,
    /// Newest last, with the phase each started in.
    pub(crate) recent: VecDeque<(Phase, Sample)>,
    pub(crate) ok: usize,
    pub(crate) failed: usize,
    baseline_samples: Vec<Sample>,
    /// The baseline window's figures, once the baseline is over.
    pub(crate) baseline: Option<WindowStats>,
}

// === impl LiveState ===

impl LiveState {
    pub(crate) fn new(plan: &Plan) -> LiveState {
        LiveState {
            experiment: plan.name.clone(),
            run_id: None,
            phase: None,
            faults: Vec::new(),
            monitors: plan
                .monitors
                .iter()
                .map(|m| MonitorView {
                    name: m.name.clone(),
                    interval: m.interval,
                    expect: m.expect.clone(),
                    recent: VecDeque::new(),
                    ok: 0,
                    failed: 0,
                    baseline_samples: Vec::new(),
                    baseline: None,
                })
                .collect(),
            window: plan.halt_window,
            messages: VecDeque::new(),
            halting: false,
        }
    }

    /// Applies one event that happened at `now` on the view's clock.
    pub(crate) fn update(&mut self, p: &Progress, now: Duration) {
        match p {
            Progress::Started { run_id, experiment } => {
                self.run_id = Some(run_id.0.clone());
                self.experiment = experiment.clone();
            }
            Progress::Phase { phase, planned } => {
                if matches!(self.phase, Some((Phase::Baseline, ..))) {
                    let window = self.phase.map(|(_, since, _)| now.saturating_sub(since));
                    for m in &mut self.monitors {
                        m.baseline = Some(WindowStats::from_samples(
                            &m.baseline_samples,
                            window.unwrap_or_default(),
                        ));
                    }
                }
                self.phase = Some((*phase, now, *planned));
            }
            Progress::Injected {
                id,
                name,
                target,
                kind,
            } => self.faults.push(ActiveFault {
                id: id.0,
                name: name.clone(),
                kind: kind.clone(),
                target: target.clone(),
                since: now,
                revert_error: None,
            }),
            Progress::Reverted { id, error, .. } => match error {
                None => self.faults.retain(|f| f.id != id.0),
                Some(e) => {
                    for f in self.faults.iter_mut().filter(|f| f.id == id.0) {
                        f.revert_error = Some(e.clone());
                    }
                }
            },
            Progress::Sample {
                monitor,
                phase,
                sample,
                ..
            } => {
                if let Some(m) = self.monitors.iter_mut().find(|m| &m.name == monitor) {
                    if sample.ok {
                        m.ok += 1;
                    } else {
                        m.failed += 1;
                    }
                    if *phase == Phase::Baseline && m.baseline_samples.len() < BASELINE_KEPT {
                        m.baseline_samples.push(sample.clone());
                    }
                    m.recent.push_back((*phase, sample.clone()));
                    while m.recent.len() > KEPT {
                        m.recent.pop_front();
                    }
                }
            }
            _ => {}
        }
    }

    /// Keeps a warning for the message line (the last three).
    pub(crate) fn warn(&mut self, message: String) {
        self.messages.push_back(message);
        while self.messages.len() > 3 {
            self.messages.pop_front();
        }
    }
}

// === impl MonitorView ===

impl MonitorView {
    /// The window of this monitor: the halt rules' window, at least 3 intervals.
    pub(crate) fn window(&self, window: Duration) -> Duration {
        window.max(self.interval * 3)
    }

    /// Each expectation's verdict over the samples of `phase` that completed within the last
    /// `window` before the newest one completed (inject and observe count as one phase: the
    /// faults are held through both).
    pub(crate) fn verdicts(&self, phase: Option<Phase>, window: Duration) -> Vec<Verdict> {
        let window = self.window(window);
        let same = |p: Phase| match (phase, p) {
            (Some(Phase::Inject | Phase::Observe), Phase::Inject | Phase::Observe) => true,
            (Some(a), b) => a == b,
            (None, _) => false,
        };
        let end = |s: &Sample| s.at + s.latency;
        let newest = self
            .recent
            .iter()
            .filter(|(p, _)| same(*p))
            .map(|(_, s)| end(s))
            .max();
        let stats = WindowStats::from_samples(
            self.recent
                .iter()
                .filter(|(p, s)| same(*p) && newest.is_some_and(|n| end(s) + window >= n))
                .map(|(_, s)| s),
            window,
        );
        self.expect
            .iter()
            .map(|e| {
                // At baseline, relative thresholds have nothing to be relative to yet.
                e.judge_against(&stats, self.baseline.as_ref())
            })
            .collect()
    }
}
