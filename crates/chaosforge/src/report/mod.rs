//! `Report = f(journal)`: what happened in a run, computed from its journal alone, so a report can
//! be rebuilt from any journal (also one a crashed runner left), and its renderers.
//!
//! Everything iterated into output is ordered (plan order, journal order, `BTreeMap`), so the
//! same journal always renders to the same bytes, in every format.
//!
//! - this file: the model ([`Report`]) and [`Report::from_events`];
//! - `text.rs` ([`Report::render_text`]): the terminal; `json.rs` ([`Report::render_json`]): the
//!   model as JSON;
//! - [`markdown`], [`html`], [`junit`]: for pull requests and wikis, for people (one
//!   self-contained page with charts), for CI systems — each over a slice of reports, so several
//!   runs (one `run` of several files, a game day) make one document;
//! - [`chart`]: hand-written SVG time-series charts, generic over what is plotted (a monitor's
//!   samples, runs over time).

pub mod chart;
pub mod html;
mod json;
pub mod junit;
pub mod markdown;
mod text;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::hypothesis::{Expectation, Metric, Verdict, WindowStats};
use crate::journal::{Event, FaultId, RunId};
use crate::plan::{Phases, Plan, ProbePlan, TargetKind};
use crate::probe::Sample;
use crate::units::{self, duration_text, format_duration, opt_duration_text};
use crate::vocab::{Outcome, Phase};

pub use crate::vocab::{FaultSummary, MonitorSummary, PhasesSummary, PlanSummary, TargetSummary};

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The run.
    pub run_id: RunId,
    /// Wall-clock start.
    pub started_at: jiff::Timestamp,
    /// The plan as run.
    pub plan: PlanSummary,
    /// How it ended; `None` if the journal has no end (the runner died).
    pub outcome: Option<Outcome>,
    /// Per monitor: values at baseline, during the fault and after recovery.
    pub monitors: Vec<MonitorReport>,
    /// Per injected fault instance.
    pub faults: Vec<FaultReport>,
    /// Recovery, when faults were reverted.
    pub recovery: Option<RecoveryReport>,
    /// Halt, if a policy halted the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halted: Option<String>,
    /// What the run suggests fixing.
    pub findings: Vec<String>,
    /// What the rules of each HTTP proxy target did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpTargetReport>,
    /// Security findings: a client that accepted a bad certificate, an upstream that accepted
    /// forged or missing credentials or a replayed request.
    pub security_findings: Vec<String>,
    /// Total run time.
    #[serde(with = "duration_text")]
    pub duration: Duration,
    /// When each phase began and ended, in order (the windows the charts shade).
    pub phases: Vec<PhaseSpan>,
    /// Every journal event but the samples, in journal order, in words.
    pub timeline: Vec<TimelineEntry>,
}

/// One phase of the run, from its start to the next phase's (or the end of the run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseSpan {
    /// Which.
    pub phase: Phase,
    /// When it began, since the run's start.
    #[serde(rename = "start_ms", with = "crate::units::millis")]
    pub start: Duration,
    /// When the next phase began, or the run ended.
    #[serde(rename = "end_ms", with = "crate::units::millis")]
    pub end: Duration,
}

/// One journal event, as the report's timeline shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// When, since the run's start; `None` for what another process did on its own clock
    /// (`chaosforge recover`).
    #[serde(rename = "at_ms", with = "crate::units::opt_millis")]
    pub at: Option<Duration>,
    /// The journal's name of the event (`phase`, `injected`, `reverted`, …).
    pub event: &'static str,
    /// What happened, in words.
    pub text: String,
}

/// One sample of a monitor, as the charts draw it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// When the probe started, since the run's start.
    #[serde(rename = "t_ms", with = "crate::units::millis")]
    pub t: Duration,
    /// How long it took, up to success, failure or timeout.
    #[serde(rename = "latency_ms", with = "crate::units::millis")]
    pub latency: Duration,
    /// Whether it succeeded.
    pub ok: bool,
    /// The phase it started in.
    pub phase: Phase,
}

/// What an HTTP proxy target's rules did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpTargetReport {
    /// The target.
    pub target: String,
    /// Per rule: requests matched and faulted.
    pub rules: Vec<crate::fault::net::HttpRuleCounters>,
}

/// One monitor's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorReport {
    /// Name.
    pub name: String,
    /// The probe, in words.
    pub describe: String,
    /// Sample counts and core figures per window.
    pub baseline: WindowSummary,
    /// During the fault (the observe phase).
    pub during: WindowSummary,
    /// After recovery.
    pub after: WindowSummary,
    /// Each expectation in each window.
    pub expectations: Vec<ExpectationReport>,
    /// Every sample, by start time.
    pub series: Vec<SeriesPoint>,
}

/// Core figures of one window of samples.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct WindowSummary {
    /// Samples taken.
    pub samples: usize,
    /// Samples that succeeded.
    pub ok: usize,
    /// `ok / samples`.
    pub availability: Option<f64>,
    /// Median latency of successful samples.
    #[serde(with = "opt_duration_text", skip_serializing_if = "Option::is_none")]
    pub latency_p50: Option<Duration>,
    /// 99th percentile latency of successful samples.
    #[serde(with = "opt_duration_text", skip_serializing_if = "Option::is_none")]
    pub latency_p99: Option<Duration>,
}

/// One expectation, judged in each window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectationReport {
    /// As written.
    pub expect: String,
    /// Observed at baseline.
    pub baseline: Judged,
    /// Observed during the fault.
    pub during: Judged,
    /// Observed after recovery.
    pub after: Judged,
    /// `during - baseline`, formatted (`+312ms`, `-4.5pp`).
    pub delta: Option<String>,
    /// A relative threshold as computed from the baseline: `15ms (baseline * 1.5)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<String>,
    /// Whether the metric changed significantly from the baseline to the fault window, and by
    /// how much; `None` with too few samples to test.
    pub change: Option<crate::analysis::Change>,
    /// When the change was detected after the injection and when the metric was back in
    /// control after the revert (CUSUM).
    pub timing: crate::analysis::Timing,
}

/// A value and whether the expectation held for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judged {
    /// Observed value (canonical unit: fraction, seconds, per second).
    pub value: Option<f64>,
    /// Formatted value.
    pub shown: String,
    /// Whether it held; `None` without data.
    pub held: Option<bool>,
}

/// One injected fault instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultReport {
    /// Instance id.
    pub id: FaultId,
    /// Fault name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Target.
    pub target: String,
    /// What it does.
    pub describe: String,
    /// When injection completed.
    #[serde(with = "opt_duration_text")]
    pub injected_at: Option<Duration>,
    /// When it was reverted.
    #[serde(with = "opt_duration_text")]
    pub reverted_at: Option<Duration>,
    /// Who reverted it (`run`, `drop`, `recover`).
    pub reverted_by: Option<String>,
    /// Revert note or error.
    pub note: Option<String>,
    /// Inject or revert error.
    pub error: Option<String>,
}

/// Time to recover.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecoveryReport {
    /// When the last fault was reverted.
    #[serde(with = "duration_text")]
    pub reverted_at: Duration,
    /// Time until the hypothesis held again; `None` if it did not within `recover_within`.
    #[serde(with = "opt_duration_text")]
    pub ttr: Option<Duration>,
    /// The limit.
    #[serde(with = "duration_text")]
    pub recover_within: Duration,
}

// === impl PlanSummary ===

impl PlanSummary {
    /// Summarizes a plan for the journal.
    pub fn of(plan: &Plan) -> PlanSummary {
        PlanSummary {
            name: plan.name.clone(),
            description: plan.description.clone(),
            title: plan.title.clone(),
            file: plan.file.clone(),
            seed: plan.seed,
            targets: plan
                .targets
                .iter()
                .map(|t| TargetSummary {
                    name: t.name.clone(),
                    describe: match &t.kind {
                        TargetKind::RemoteProxy { api, name } => format!("proxy `{name}` at {api}"),
                        TargetKind::Host {
                            netns: Some(ns), ..
                        } => format!("network namespace {ns}"),
                        TargetKind::Host { netns: None, .. } => "the local host".to_string(),
                        TargetKind::Proxy { listen, upstream } => {
                            format!("proxy {listen} → {upstream}")
                        }
                        TargetKind::Process(sel) => format!("process {sel:?}"),
                        TargetKind::Container(sel) => format!("container {:?}", sel.by),
                        TargetKind::HttpProxy {
                            listen, upstream, ..
                        } => format!("HTTP proxy {listen} → {upstream}"),
                    } + &t
                        .agent
                        .as_ref()
                        .map(|a| format!(" through the agent at {}", a.url))
                        .unwrap_or_default(),
                    labels: t.labels.clone(),
                })
                .collect(),
            monitors: plan
                .monitors
                .iter()
                .map(|m| MonitorSummary {
                    name: m.name.clone(),
                    describe: match &m.probe {
                        ProbePlan::Http(h) => format!(
                            "{} {} every {}",
                            h.method,
                            h.url,
                            format_duration(m.interval)
                        ),
                        ProbePlan::Tcp {
                            address,
                            send,
                            expect,
                            ..
                        } => format!(
                            "tcp connect {address}{} every {}",
                            match (send, expect) {
                                (_, Some(e)) => format!(", expect {e:?}"),
                                (Some(_), None) => ", expect an answer".into(),
                                (None, None) => String::new(),
                            },
                            format_duration(m.interval)
                        ),
                        ProbePlan::Command(c) => format!(
                            "run `{}` every {}{}",
                            shell_words(&c.argv),
                            format_duration(m.interval),
                            match &c.value {
                                Some(crate::probe::command::ValueExtract::Regex {
                                    regex,
                                    group,
                                }) => format!(", value /{}/ group {group}", regex.as_str()),
                                Some(crate::probe::command::ValueExtract::Json {
                                    text, ..
                                }) => format!(", value {text}"),
                                None => String::new(),
                            }
                        ),
                        ProbePlan::Process(source) => format!(
                            "{} every {}",
                            match source {
                                crate::probe::process::ResourceSource::Process(sel) => {
                                    format!("resources of process {sel:?}")
                                }
                                crate::probe::process::ResourceSource::Cgroup(dir) => {
                                    format!("resources of cgroup {}", dir.display())
                                }
                            },
                            format_duration(m.interval)
                        ),
                        ProbePlan::Prometheus(p) => format!(
                            "PromQL `{}` at {} every {}{}",
                            p.query,
                            p.url,
                            format_duration(m.interval),
                            p.aggregate
                                .map(|a| format!(", {} of the series", a.as_str()))
                                .unwrap_or_default()
                        ),
                    },
                    interval: m.interval,
                    expect: m.expect.iter().map(|e| e.text.clone()).collect(),
                })
                .collect(),
            faults: plan
                .faults
                .iter()
                .map(|f| FaultSummary {
                    name: f.name.clone(),
                    kind: f.kind.name().into(),
                    describe: f.kind.describe(),
                    targets: f.targets.clone(),
                    scope: f.scope.to_string(),
                    irreversible: f.kind.irreversible().map(str::to_string),
                })
                .collect(),
            phases: PhasesSummary::from(plan.phases),
            halt_when: plan.halt_when.iter().map(|e| e.text.clone()).collect(),
            significance: plan.significance,
            policies: plan.verdicts.clone(),
        }
    }
}

impl From<Phases> for PhasesSummary {
    fn from(p: Phases) -> Self {
        PhasesSummary {
            baseline: p.baseline,
            inject: p.inject,
            recover_within: p.recover_within,
        }
    }
}

// === impl Report ===

/// Why a journal could not be turned into a report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The journal does not start with `run_started`.
    #[error("the journal does not start with a run_started event")]
    NoStart,
    /// A renderer failed to write its format.
    #[error("rendering the {format} report: {message}")]
    Render {
        /// The format (`junit`).
        format: &'static str,
        /// What the writer said.
        message: String,
    },
}

impl Report {
    /// Computes the report of a run from its journal events.
    pub fn from_events(events: &[Event]) -> Result<Report, ReportError> {
        let Some(Event::RunStarted {
            run_id,
            started_at,
            plan,
            ..
        }) = events.first()
        else {
            return Err(ReportError::NoStart);
        };
        let mut phase_start: BTreeMap<Phase, Duration> = BTreeMap::new();
        let mut samples: Vec<Vec<(Phase, &Sample)>> = vec![Vec::new(); plan.monitors.len()];
        let mut faults: Vec<FaultReport> = Vec::new();
        let mut outcome = None;
        let mut recovery = None;
        let mut halted = None;
        let mut http = Vec::new();
        let mut security = Vec::new();
        let mut end = Duration::ZERO;
        let mut timeline = Vec::new();
        for e in events {
            if let Some(entry) = timeline_entry(e, &faults) {
                timeline.push(entry);
            }
            match e {
                Event::Phase { phase, at } => {
                    phase_start.entry(*phase).or_insert(*at);
                }
                Event::Sample {
                    monitor,
                    phase,
                    sample,
                } => {
                    if let Some(v) = samples.get_mut(*monitor) {
                        v.push((*phase, sample));
                    }
                    end = end.max(sample.at + sample.latency);
                }
                Event::Injecting {
                    fault,
                    name,
                    target,
                    kind,
                    ..
                } => faults.push(FaultReport {
                    id: *fault,
                    name: name.clone(),
                    kind: kind.clone(),
                    target: target.clone(),
                    describe: plan
                        .faults
                        .iter()
                        .find(|f| &f.name == name)
                        .map(|f| f.describe.clone())
                        .unwrap_or_default(),
                    injected_at: None,
                    reverted_at: None,
                    reverted_by: None,
                    note: None,
                    error: None,
                }),
                Event::Injected { fault, at } => {
                    if let Some(f) = faults.iter_mut().find(|f| f.id == *fault) {
                        f.injected_at = Some(*at);
                    }
                }
                Event::InjectFailed { fault, error, .. } => {
                    if let Some(f) = faults.iter_mut().find(|f| f.id == *fault) {
                        f.error = Some(format!("inject failed: {error}"));
                    }
                }
                Event::Reverted {
                    fault,
                    by,
                    note,
                    at,
                } => {
                    // The first revert is the one that undid it: a runner whose faults
                    // `recover` took over reverts again when it wakes, to no effect.
                    if let Some(f) = faults
                        .iter_mut()
                        .find(|f| f.id == *fault && f.reverted_by.is_none())
                    {
                        // `recover` runs in another process; its clock is not the run's.
                        f.reverted_at = (by != "recover").then_some(*at);
                        f.reverted_by = Some(by.clone());
                        f.note = note.clone();
                    }
                }
                Event::RevertFailed { fault, error, .. } => {
                    if let Some(f) = faults.iter_mut().find(|f| f.id == *fault) {
                        f.error = Some(format!("revert failed: {error}"));
                    }
                }
                Event::Halted { policy, reason, .. } => {
                    halted = Some(format!("{policy}: {reason}"))
                }
                Event::Recovery {
                    ttr, reverted_at, ..
                } => {
                    recovery = Some(RecoveryReport {
                        reverted_at: *reverted_at,
                        ttr: *ttr,
                        recover_within: plan.phases.recover_within,
                    });
                }
                Event::RunFinished { outcome: o, at } => {
                    outcome = Some(o.clone());
                    end = end.max(*at);
                }
                Event::HttpProxyReport { target, report, .. } => {
                    security.extend(report.findings.iter().map(|f| format!("{target}: {f}")));
                    http.push(HttpTargetReport {
                        target: target.clone(),
                        rules: report.rules.clone(),
                    });
                }
                Event::RunStarted { .. } | Event::Claimed { .. } => {}
            }
        }

        let span = |from: Option<Duration>, to: Option<Duration>| match (from, to) {
            (Some(a), Some(b)) if b > a => b - a,
            (Some(a), None) if end > a => end - a,
            _ => Duration::ZERO,
        };
        let baseline_win = span(
            phase_start.get(&Phase::Baseline).copied(),
            phase_start.get(&Phase::Inject).copied(),
        );
        let observe_win = span(
            phase_start.get(&Phase::Observe).copied(),
            phase_start.get(&Phase::Recover).copied(),
        );
        let after_from = recovery
            .as_ref()
            .map(|r| r.reverted_at + r.ttr.unwrap_or_default());
        let after_win = span(after_from, None);

        let monitors = plan
            .monitors
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let all = &samples[i];
                let pick = |p: Phase| all.iter().filter(move |(ph, _)| *ph == p).map(|(_, s)| *s);
                let base = WindowStats::from_samples(pick(Phase::Baseline), baseline_win);
                let during = WindowStats::from_samples(pick(Phase::Observe), observe_win);
                let after = match after_from {
                    Some(t) => WindowStats::from_samples(
                        all.iter()
                            .filter(|(ph, s)| *ph == Phase::Recover && s.at >= t)
                            .map(|(_, s)| *s),
                        after_win,
                    ),
                    None => WindowStats::from_samples(std::iter::empty(), Duration::ZERO),
                };
                let alpha = plan.significance.unwrap_or(crate::analysis::DEFAULT_ALPHA);
                let injected_at = faults.iter().filter_map(|f| f.injected_at).min();
                let reverted_at = recovery.as_ref().map(|r| r.reverted_at);
                let expectations = m
                    .expect
                    .iter()
                    .filter_map(|text| Expectation::parse(text).ok())
                    .map(|e| {
                        let series = |keep: &dyn Fn(Phase, &Sample) -> bool| {
                            crate::analysis::series(
                                &e.metric,
                                all.iter().filter(|(p, s)| keep(*p, s)).map(|(_, s)| *s),
                                m.interval,
                            )
                        };
                        let values = |v: &[(Duration, f64)]| -> Vec<f64> {
                            v.iter().map(|(_, x)| *x).collect()
                        };
                        let base_values = values(&series(&|p, _| p == Phase::Baseline));
                        let during_values = values(&series(&|p, _| p == Phase::Observe));
                        let change =
                            crate::analysis::compare(&e, &base_values, &during_values, alpha);
                        let after_injection = injected_at.map_or_else(Vec::new, |t0| {
                            series(&|p, s| {
                                matches!(p, Phase::Inject | Phase::Observe) && s.at >= t0
                            })
                        });
                        let after_revert = reverted_at.map_or_else(Vec::new, |t1| {
                            series(&|p, s| p == Phase::Recover && s.at >= t1)
                        });
                        let timing = crate::analysis::timing(
                            &e,
                            &base_values,
                            &after_injection,
                            injected_at,
                            &after_revert,
                            reverted_at,
                        );
                        let (b, d, a) = (
                            judge(&e, &base, None),
                            judge(&e, &during, Some(&base)),
                            judge(&e, &after, Some(&base)),
                        );
                        let threshold = match e.threshold_value(Some(&base)) {
                            Some(v) if e.is_relative() => Some(format!(
                                "{} ({})",
                                e.metric.format_value(v),
                                e.threshold_text()
                            )),
                            _ => None,
                        };
                        let delta = match (b.value, d.value) {
                            (Some(b), Some(d)) => Some(format_delta(&e.metric, d - b)),
                            _ => None,
                        };
                        ExpectationReport {
                            expect: e.text.clone(),
                            baseline: b,
                            during: d,
                            after: a,
                            delta,
                            threshold,
                            change,
                            timing,
                        }
                    })
                    .collect();
                MonitorReport {
                    name: m.name.clone(),
                    describe: m.describe.clone(),
                    baseline: summarize(&base),
                    during: summarize(&during),
                    after: summarize(&after),
                    expectations,
                    series: {
                        let mut v: Vec<SeriesPoint> = all
                            .iter()
                            .map(|(phase, s)| SeriesPoint {
                                t: s.at,
                                latency: s.latency,
                                ok: s.ok,
                                phase: *phase,
                            })
                            .collect();
                        // The journal has samples in the order they finished; a slow one
                        // started earlier belongs before the quick ones that overtook it.
                        v.sort_by_key(|p| p.t);
                        v
                    },
                }
            })
            .collect::<Vec<_>>();

        let findings = findings(
            plan,
            &monitors,
            &faults,
            recovery.as_ref(),
            outcome.as_ref(),
        );
        Ok(Report {
            run_id: run_id.clone(),
            started_at: *started_at,
            plan: plan.clone(),
            outcome,
            monitors,
            faults,
            recovery,
            halted,
            findings,
            http,
            security_findings: security,
            duration: end,
            phases: phase_spans(&phase_start, end),
            timeline,
        })
    }
}

// === impl Report: words every renderer shares ===

impl Report {
    /// The verdict in one word, as the headings of every format show it: `CONFIRMED`,
    /// `REFUTED`, `NOT STEADY`, `HALTED`, `ERROR`, or `UNFINISHED` for a journal without an end.
    pub fn verdict(&self) -> &'static str {
        match &self.outcome {
            Some(Outcome::Confirmed) => "CONFIRMED",
            Some(Outcome::Refuted { .. }) => "REFUTED",
            Some(Outcome::NotSteady { .. }) => "NOT STEADY",
            Some(Outcome::Halted { .. }) => "HALTED",
            Some(Outcome::Errored { .. }) => "ERROR",
            None => "UNFINISHED",
        }
    }

    /// The outcome in one line.
    pub fn headline(&self) -> String {
        match &self.outcome {
            Some(oc) => oc.headline(),
            None => {
                "UNFINISHED — the runner stopped before the end; run `chaosforge recover`".into()
            }
        }
    }

    /// The headline without the verdict word it starts with, for a page that shows the word
    /// on its own.
    pub fn headline_detail(&self) -> String {
        let h = self.headline();
        let prefix = format!("{} — ", self.verdict());
        match h.strip_prefix(&prefix) {
            Some(rest) => rest.to_string(),
            None => h,
        }
    }

    /// Whether anything degraded: an expectation failed during the fault, or a metric's change
    /// was detected. A time to recover only means something then.
    pub(crate) fn degraded(&self) -> bool {
        self.monitors.iter().any(|m| {
            m.expectations
                .iter()
                .any(|e| e.during.held == Some(false) || e.timing.detected_after.is_some())
        })
    }

    /// The time to recover in words, when faults were reverted.
    pub(crate) fn recovery_text(&self) -> Option<String> {
        let r = self.recovery.as_ref()?;
        Some(match r.ttr {
            Some(_) if !self.degraded() => {
                "no degradation observed (nothing to recover from)".to_string()
            }
            Some(t) => format!(
                "{} (limit {})",
                units::format_duration_short(t),
                format_duration(r.recover_within)
            ),
            None => format!(
                "did NOT recover within {}",
                format_duration(r.recover_within)
            ),
        })
    }
}

/// What a significance test found, in words (the text and HTML reports share them).
pub(crate) fn change_verdict(c: &crate::analysis::Change) -> &'static str {
    if c.degraded {
        "significant degradation"
    } else if c.significant {
        "significant change, not a degradation"
    } else {
        "no significant change"
    }
}

impl ExpectationReport {
    /// The significance test in words: `significant degradation (p = 4.1e-7, Mann–Whitney
    /// exact, n = 20/30), Cliff's δ +0.98 large, shift +9.8ms`; `None` with too few samples.
    pub(crate) fn significance_text(&self) -> Option<String> {
        let c = self.change.as_ref()?;
        Some(format!(
            "{} (p = {}, Mann–Whitney {}, n = {}/{}), Cliff's δ {:+.2} {}{}",
            change_verdict(c),
            crate::analysis::format_p(c.p_value),
            c.method,
            c.n_baseline,
            c.n_during,
            c.cliffs_delta,
            c.magnitude,
            c.shift_text
                .as_deref()
                .map(|s| format!(", shift {s}"))
                .unwrap_or_default()
        ))
    }

    /// When the change showed and went away (CUSUM), in words; `None` if none was detected.
    pub(crate) fn timing_text(&self) -> Option<String> {
        let t = &self.timing;
        let d = t.detected_after?;
        let back = match (t.recovered_after, t.too_few_after_revert) {
            (Some(r), _) => format!("back in control {} after the revert", format_duration(r)),
            (None, Some((had, need))) => {
                format!("too few samples after the revert to tell ({had}, needs {need})")
            }
            (None, None) => "not back in control after the revert".into(),
        };
        Some(format!(
            "detected {} after the injection, {back}",
            format_duration(d)
        ))
    }
}

/// The phases in the order they began, each ending where the next begins.
fn phase_spans(starts: &BTreeMap<Phase, Duration>, end: Duration) -> Vec<PhaseSpan> {
    let mut v: Vec<(Phase, Duration)> = starts.iter().map(|(p, t)| (*p, *t)).collect();
    v.sort_by_key(|(p, t)| (*t, *p));
    (0..v.len())
        .map(|i| PhaseSpan {
            phase: v[i].0,
            start: v[i].1,
            end: v.get(i + 1).map_or(end.max(v[i].1), |n| n.1),
        })
        .collect()
}

/// A journal event in words; `None` for samples, which the charts show instead. `faults` holds
/// the instances announced so far, to name the fault an event refers to by id.
fn timeline_entry(e: &Event, faults: &[FaultReport]) -> Option<TimelineEntry> {
    let fault = |id: &FaultId| {
        faults.iter().find(|f| f.id == *id).map_or_else(
            || format!("fault #{}", id.0),
            |f| format!("{} on {}", f.name, f.target),
        )
    };
    let (at, event, text) = match e {
        Event::Sample { .. } => return None,
        Event::RunStarted {
            pid, version, plan, ..
        } => (
            Some(Duration::ZERO),
            "run_started",
            format!(
                "run of {} started by pid {pid} (chaosforge {version}), seed {}",
                plan.name, plan.seed
            ),
        ),
        Event::Claimed {
            claims, waited, at, ..
        } => (
            Some(*at),
            "claimed",
            format!(
                "claimed {} resource{}{}",
                claims.len(),
                if claims.len() == 1 { "" } else { "s" },
                waited
                    .map(|w| format!(" after waiting {}", format_duration(round_ms(w))))
                    .unwrap_or_default()
            ),
        ),
        Event::Phase { phase, at } => (
            Some(*at),
            "phase",
            format!("{} phase", format!("{phase:?}").to_lowercase()),
        ),
        Event::Injecting {
            name,
            target,
            kind,
            at,
            ..
        } => (
            Some(*at),
            "injecting",
            format!("injecting {name} ({kind}) on {target}"),
        ),
        Event::Injected { fault: id, at } => {
            (Some(*at), "injected", format!("injected {}", fault(id)))
        }
        Event::InjectFailed {
            fault: id,
            error,
            at,
        } => (
            Some(*at),
            "inject_failed",
            format!("injecting {} failed: {error}", fault(id)),
        ),
        Event::Reverted {
            fault: id,
            by,
            note,
            at,
        } => (
            (by != "recover").then_some(*at),
            "reverted",
            format!(
                "reverted {} (by {by}){}",
                fault(id),
                note.as_ref().map(|n| format!(": {n}")).unwrap_or_default()
            ),
        ),
        Event::RevertFailed {
            fault: id,
            error,
            at,
        } => (
            Some(*at),
            "revert_failed",
            format!("reverting {} FAILED: {error}", fault(id)),
        ),
        Event::Halted { policy, reason, at } => {
            (Some(*at), "halted", format!("halted by {policy}: {reason}"))
        }
        Event::Recovery { ttr, at, .. } => (
            Some(*at),
            "recovery",
            match ttr {
                Some(t) => format!(
                    "the hypothesis held again {} after the last revert",
                    units::format_duration_short(*t)
                ),
                None => "the hypothesis did not hold again within recover_within".into(),
            },
        ),
        Event::HttpProxyReport { target, report, at } => (
            Some(*at),
            "http_proxy_report",
            format!(
                "HTTP proxy {target}: {} rule{}, {} security finding{}",
                report.rules.len(),
                if report.rules.len() == 1 { "" } else { "s" },
                report.findings.len(),
                if report.findings.len() == 1 { "" } else { "s" }
            ),
        ),
        Event::RunFinished { outcome, at } => (
            Some(*at),
            "run_finished",
            format!("run finished: {}", outcome.headline()),
        ),
    };
    Some(TimelineEntry { at, event, text })
}

/// A command line as a user would type it: `sh -c 'redis-cli ping'` shown as the line itself.
fn shell_words(argv: &[String]) -> String {
    match argv {
        [sh, c, line] if sh == "sh" && c == "-c" => line.clone(),
        _ => argv
            .iter()
            .map(|a| {
                if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$\\".contains(c)) {
                    format!("'{}'", a.replace('\'', "'\\''"))
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// Judges `e` over `s`; a relative threshold against `baseline`. In the baseline window itself
/// (`baseline: None`) a relative expectation is the reference: shown, not judged.
fn judge(e: &Expectation, s: &WindowStats, baseline: Option<&WindowStats>) -> Judged {
    if e.is_relative() && baseline.is_none() {
        let value = e.observe(s);
        return Judged {
            value,
            shown: value.map_or_else(|| "no data".into(), |v| e.metric.format_value(v)),
            held: None,
        };
    }
    match e.judge_against(s, baseline) {
        Verdict::Holds { observed } => Judged {
            value: Some(observed),
            shown: e.metric.format_value(observed),
            held: Some(true),
        },
        Verdict::Violated { observed } => Judged {
            value: Some(observed),
            shown: e.metric.format_value(observed),
            held: Some(false),
        },
        Verdict::NoData => Judged {
            value: None,
            shown: "no data".into(),
            held: None,
        },
    }
}

fn format_delta(metric: &Metric, d: f64) -> String {
    let sign = if d >= 0.0 { "+" } else { "-" };
    match metric {
        Metric::Availability | Metric::ErrorRate => {
            format!(
                "{sign}{}pp",
                crate::hypothesis::percent_text(d.abs() * 100.0)
            )
        }
        Metric::Latency(_) => format!(
            "{sign}{}",
            format_duration(Duration::from_secs_f64(d.abs()))
        ),
        Metric::Throughput => format!("{sign}{:.1}/s", d.abs()),
        Metric::Value(_) | Metric::Resource(..) => {
            format!("{sign}{}", metric.format_value(d.abs()))
        }
    }
}

fn summarize(s: &WindowStats) -> WindowSummary {
    let lat = |stat| {
        s.latency
            .as_ref()
            .map(|l| Duration::from_secs_f64(l.get(stat)))
    };
    WindowSummary {
        samples: s.samples,
        ok: s.ok,
        availability: s.availability,
        latency_p50: lat(crate::hypothesis::LatencyStat::P50),
        latency_p99: lat(crate::hypothesis::LatencyStat::P99),
    }
}

fn findings(
    plan: &PlanSummary,
    monitors: &[MonitorReport],
    faults: &[FaultReport],
    recovery: Option<&RecoveryReport>,
    outcome: Option<&Outcome>,
) -> Vec<String> {
    let mut out = Vec::new();
    let kinds: Vec<&str> = plan.faults.iter().map(|f| f.kind.as_str()).collect();
    let fault_names: Vec<String> = plan
        .faults
        .iter()
        .map(|f| format!("`{}` ({})", f.name, f.describe))
        .collect();
    for m in monitors {
        for e in &m.expectations {
            if e.during.held != Some(false) {
                continue;
            }
            let advice = if e.expect.starts_with("latency")
                && kinds
                    .iter()
                    .any(|k| matches!(*k, "latency" | "bandwidth" | "timeout"))
            {
                "give the calls to the degraded dependency a timeout shorter than the latency budget, and a fallback (cached or default answer) when it fires"
            } else if kinds.iter().any(|k| matches!(*k, "down" | "reset")) {
                "retry idempotent calls with backoff, and put a circuit breaker with a fallback in front of the failing dependency"
            } else if kinds.iter().any(|k| matches!(*k, "pause" | "kill")) {
                "detect the stalled or dead process (health checks with short timeouts) and fail over or restart it"
            } else if kinds.contains(&"corrupt") {
                "validate what comes over the wire (checksums, schema checks) and treat bad data as an error to retry"
            } else {
                "make the system degrade gracefully under this fault"
            };
            out.push(format!(
                "{}: `{}` went from {} to {} under {}: {advice}.",
                m.name,
                e.expect,
                e.baseline.shown,
                e.during.shown,
                fault_names.join(", ")
            ));
        }
    }
    if let Some(r) = recovery
        && r.ttr.is_none()
    {
        out.push(format!(
            "the system did not return to its steady state within {} after the faults were reverted: check reconnection, connection pools and backoff limits.",
            format_duration(r.recover_within)
        ));
    }
    for f in faults {
        if f.error
            .as_deref()
            .is_some_and(|e| e.starts_with("revert failed"))
        {
            out.push(format!(
                "fault `{}` on `{}` could not be reverted; run `chaosforge recover` and check the target by hand.",
                f.name, f.target
            ));
        }
    }
    if matches!(outcome, Some(Outcome::NotSteady { .. })) {
        out.push("the hypothesis did not hold before any fault: fix the steady state (or the expectations) first.".into());
    }
    out
}

/// Formats a phase duration for headlines.
pub fn format_secs(d: Duration) -> String {
    units::format_duration(round_ms(d))
}
