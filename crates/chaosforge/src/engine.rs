//! The run: five phases (validate, baseline, inject, observe, recover) over a [`Plan`], with
//! recover on every path — refuted, halted, errored or interrupted.
//!
//! The engine owns no listener: proxies come from a [`ProxyBackend`] the caller passes in, so
//! this crate stays free of sockets and the CLI wires `chaosforge-proxy`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use crate::fault::freeze::FreezeFault;
use crate::fault::limits::{LimitFault, LimitResource};
use crate::fault::net::{ProxyBackend, ProxyControl};
use crate::fault::process::{self, KillFault, PauseFault, ProcessId};
use crate::fault::proxy::ProxyToxicFault;
use crate::fault::restart::RestartFault;
use crate::fault::{Fault, Guard, InjectCx};
use crate::hypothesis::{Expectation, Verdict, WindowStats};
use crate::journal::{self, Event, FaultId, Journal, JournalError, RunId};
use crate::monitor::{MonitorHandle, MonitorSample, spawn_monitor};
use crate::plan::{FaultKind, Plan, ProbePlan, TargetKind};
use crate::probe::command::CommandProbe;
use crate::probe::http::HttpProbe;
use crate::probe::process::ProcessProbe;
use crate::probe::prometheus::PrometheusProbe;
use crate::probe::tcp::TcpProbe;
use crate::probe::{Probe, Sample};
use crate::report::{PlanSummary, Report};
use crate::units::format_duration;

pub use crate::vocab::{Outcome, Phase};
pub use claim_targets::{ClaimWait, resources as claims_of};

mod claim_targets;

/// Live progress for a UI. The journal is the record; this is only for display.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Progress {
    /// The run started: its journal exists, nothing is touched yet. The first event of a run.
    Started {
        /// The run's id, as its journal and report name it.
        run_id: RunId,
        /// The experiment's name.
        experiment: String,
    },
    /// A phase began; `planned` is its planned length when it has one.
    Phase {
        /// Which.
        phase: Phase,
        /// Planned length.
        planned: Option<Duration>,
    },
    /// A fault was injected.
    Injected {
        /// Fault id, the one its [`Progress::Reverted`] carries.
        id: FaultId,
        /// Fault name.
        name: String,
        /// Target.
        target: String,
        /// Kind.
        kind: String,
    },
    /// A fault was reverted (or failed to).
    Reverted {
        /// Fault id.
        id: FaultId,
        /// Fault name.
        name: String,
        /// Target.
        target: String,
        /// Error, if the revert failed.
        error: Option<String>,
    },
    /// Periodic tick with sample counts of the current phase.
    Tick {
        /// The phase.
        phase: Phase,
        /// Time since the phase began.
        elapsed: Duration,
        /// Samples so far in this phase, over all monitors.
        samples: usize,
        /// Of those, successful.
        ok: usize,
    },
    /// A monitor's sample was recorded (as the journal has it), in the phase it started in.
    Sample {
        /// The monitor's name.
        monitor: String,
        /// The phase the sample started in.
        phase: Phase,
        /// Whether it met the probe's success criteria.
        ok: bool,
        /// How long the measurement took.
        latency: Duration,
        /// The whole sample, as journaled (for views that judge expectations on values and
        /// resource readings too).
        sample: Sample,
    },
}

/// Which signal asked this process to halt, for the journal's reason. Signals are
/// process-wide, so this is too; the first one is kept.
static HALT_SIGNAL: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Records that `name` (`SIGTERM`, …) asked the process to halt, before the shutdown flag is
/// raised, so that a halted run's journal and report say which signal it was.
pub fn note_halt_signal(name: &'static str) {
    let _ = HALT_SIGNAL.set(name);
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Runs plans.
pub struct Engine {
    proxies: Arc<dyn ProxyBackend>,
    state_dir: PathBuf,
    progress: Option<ProgressFn>,
    claim_wait: ClaimWait,
    halt_nudges: Option<watch::Receiver<u64>>,
    heartbeat: crate::deadman::Heartbeat,
    run_id: Option<RunId>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunResult {
    /// The run.
    pub run_id: RunId,
    /// Its journal.
    pub journal: PathBuf,
    /// Its report (computed from the journal).
    pub report: Report,
    /// How it ended.
    pub outcome: Outcome,
}

/// Errors that prevent a run from even keeping a journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The journal could not be created or read back.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The journal could not be turned into a report.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
}

enum Resolved {
    Proxy(Arc<dyn ProxyControl>),
    Http(Arc<dyn crate::fault::net::HttpProxyControl>),
    Process(ProcessId),
    Host(crate::host_target::HostTarget),
    /// A host or process target on another machine, reached through its agent.
    Agent(AgentTarget),
}

/// A target an agent resolved: who to ask, where the fault acts there, and the host's addresses
/// (so a local or remote partition can name it as a peer).
struct AgentTarget {
    client: crate::fault::agent::AgentClient,
    agent: crate::plan::AgentRef,
    on: crate::fault::agent::AgentTarget,
    addresses: Vec<std::net::IpAddr>,
}

/// Mutable state of one run.
struct Run<'p> {
    plan: &'p Plan,
    journal: Journal,
    samples: Vec<Vec<(Phase, Sample)>>,
    phases: Vec<(Phase, Duration)>,
    rx: mpsc::UnboundedReceiver<MonitorSample>,
    progress: Option<ProgressFn>,
    shutdown: watch::Receiver<bool>,
    signals_gone: bool,
    interrupted: bool,
    run_id: RunId,
    /// HTTP proxies started for `http_proxy` targets, by target name.
    http_proxies: Vec<(String, Arc<dyn crate::fault::net::HttpProxyControl>)>,
    /// Proxies agents run for `proxy` targets with an `agent`, stopped with the local ones.
    agent_listeners: Vec<crate::fault::agent::AgentListener>,
    /// Each monitor's baseline window, once the baseline phase is over: what relative
    /// thresholds (`baseline * 1.5`) are computed from.
    baseline: Vec<WindowStats>,
    /// The targets held exclusively; released when the run is dropped, after everything else.
    claims: Option<crate::claims::ClaimGuard>,
    /// Wake-ups to look for a halt request (`crate::halt`), and the request once found.
    halt_nudges: Option<watch::Receiver<u64>>,
    halt: Option<crate::halt::HaltRequest>,
    /// The run's heartbeat (`crate::deadman`), beaten from this task's loops; and the takeover
    /// of its faults by `recover`, once found.
    beater: crate::deadman::Beater,
    taken: Option<crate::deadman::Takeover>,
    /// The `container` targets found, whose namespaces may have been given `ip netns` names.
    containers: Vec<crate::fault::container::ContainerTarget>,
}

// === impl Engine ===

impl Engine {
    /// An engine that starts proxies with `proxies` and keeps journals under `state_dir/runs`.
    pub fn new(proxies: Arc<dyn ProxyBackend>, state_dir: impl Into<PathBuf>) -> Self {
        Engine {
            proxies,
            state_dir: state_dir.into(),
            progress: None,
            claim_wait: ClaimWait::Refuse,
            halt_nudges: None,
            heartbeat: crate::deadman::Heartbeat::default(),
            run_id: None,
        }
    }

    /// Runs under `id` instead of a new id, so that a caller can journal the id before the run
    /// starts (a game day links each scenario to its run this way). An id names one run: a
    /// second run with it fails to create its journal.
    pub fn with_run_id(mut self, id: RunId) -> Self {
        self.run_id = Some(id);
        self
    }

    /// How often runs beat and after how long without a beat `chaosforge recover` reverts their
    /// faults (`crate::deadman`; default every 1 s, 5 s).
    pub fn with_heartbeat(mut self, heartbeat: crate::deadman::Heartbeat) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// What to do when another run holds a target: refuse (the default) or wait.
    pub fn with_claim_wait(mut self, wait: ClaimWait) -> Self {
        self.claim_wait = wait;
        self
    }

    /// Each change of `nudges` makes runs look for their halt request at once (the CLI sends
    /// one on `SIGUSR1`); without it they look every 250 ms.
    pub fn with_halt_requests(mut self, nudges: watch::Receiver<u64>) -> Self {
        self.halt_nudges = Some(nudges);
        self
    }

    /// Reports live progress to `f`.
    pub fn with_progress(mut self, f: ProgressFn) -> Self {
        self.progress = Some(f);
        self
    }

    /// Runs `plan` to the end. `shutdown` turning `true` (SIGINT, SIGTERM) halts the run: faults
    /// are reverted and the journal is closed before this returns.
    pub async fn run(
        &self,
        plan: &Plan,
        shutdown: watch::Receiver<bool>,
    ) -> Result<RunResult, EngineError> {
        let run_id = self.run_id.clone().unwrap_or_else(journal::new_run_id);
        let journal = Journal::create(&self.state_dir, &run_id)?;
        journal.append_durable(&Event::RunStarted {
            run_id: run_id.clone(),
            started_at: jiff::Timestamp::now(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            plan: PlanSummary::of(plan),
        })?;
        if let Some(f) = &self.progress {
            f(&Progress::Started {
                run_id: run_id.clone(),
                experiment: plan.name.clone(),
            });
        }
        let run_dir = self.state_dir.join("runs").join(&run_id.0);
        let beater = crate::deadman::Beater::start(&run_dir, self.heartbeat).map_err(|source| {
            JournalError::Io {
                path: run_dir.join(crate::deadman::HEARTBEAT_FILE),
                source,
            }
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut run = Run {
            run_id: run_id.clone(),
            plan,
            journal: journal.clone(),
            samples: vec![Vec::new(); plan.monitors.len()],
            phases: Vec::new(),
            rx,
            progress: self.progress.clone(),
            shutdown,
            signals_gone: false,
            interrupted: false,
            http_proxies: Vec::new(),
            agent_listeners: Vec::new(),
            baseline: Vec::new(),
            claims: None,
            halt_nudges: self.halt_nudges.clone(),
            halt: None,
            beater,
            taken: None,
            containers: Vec::new(),
        };
        let mut proxies: Vec<Arc<dyn ProxyControl>> = Vec::new();
        let mut monitors: Vec<MonitorHandle> = Vec::new();
        let decided = self.phases(&mut run, tx, &mut proxies, &mut monitors).await;
        // The `ip netns` names this run gave containers' namespaces, on every path: dropped
        // once the journal has nothing open (else `recover` needs them to reach the namespaces).
        if run.taken.is_none()
            && !run.containers.is_empty()
            && crate::journal::read(run.journal.path())
                .is_ok_and(|events| crate::journal::open_faults(&events).is_empty())
        {
            for c in &run.containers {
                if let Err(e) = crate::fault::container::release_netns(c).await {
                    tracing::warn!("{e}");
                }
            }
        }
        for m in monitors {
            m.stop().await;
        }
        while let Ok(s) = run.rx.try_recv() {
            run.record(s);
        }
        // What the HTTP rules did and found, once every rule is gone.
        let http_reports: Vec<(String, crate::fault::net::HttpProxyReport)> = run
            .http_proxies
            .iter()
            .map(|(t, p)| (t.clone(), p.report()))
            .collect();
        // Judged only now, so that samples that started during the fault but finished later
        // (a slow request is exactly what a latency fault makes) count where they belong.
        // Taken over (possibly only after the last look): `recover` closed the journal and its
        // outcome stands; this runner only adds what it reverted itself.
        run.halt_requested();
        let taken = run.taken.is_some();
        let outcome = match decided {
            _ if taken => run.halt_by_signal(),
            Decided::Outcome(o) => o,
            Decided::Judge {
                observed,
                recovered,
            } => {
                let mut reasons = run.judge(Phase::Observe, observed);
                if !recovered {
                    reasons.push(format!(
                        "did not recover within {}",
                        format_duration(plan.phases.recover_within)
                    ));
                }
                // A system that accepts what it must refuse refutes the experiment, whatever
                // the monitors saw.
                for (target, r) in &http_reports {
                    reasons.extend(
                        r.findings
                            .iter()
                            .map(|f| format!("security ({target}): {f}")),
                    );
                }
                if reasons.is_empty() {
                    Outcome::Confirmed
                } else {
                    Outcome::Refuted { reasons }
                }
            }
        };
        for p in &proxies {
            p.shutdown().await;
        }
        for (target, report) in http_reports {
            journal.append_durable(&Event::HttpProxyReport {
                target,
                report,
                at: journal.now(),
            })?;
        }
        for (_, p) in std::mem::take(&mut run.http_proxies) {
            p.shutdown().await;
        }
        for l in std::mem::take(&mut run.agent_listeners) {
            // Its lease stops it anyway, within the lease.
            if let Err(e) = l.stop().await {
                tracing::warn!("stopping a proxy on its agent: {e}");
            }
        }
        let closed = taken
            && journal::read(journal.path())?
                .iter()
                .any(|e| matches!(e, Event::RunFinished { .. }));
        if !closed {
            journal.append_durable(&Event::RunFinished {
                outcome: outcome.clone(),
                at: journal.now(),
            })?;
        }
        let events = journal::read(journal.path())?;
        let report = Report::from_events(&events)?;
        Ok(RunResult {
            run_id,
            journal: journal.path().to_path_buf(),
            report,
            outcome,
        })
    }

    async fn phases(
        &self,
        run: &mut Run<'_>,
        tx: mpsc::UnboundedSender<MonitorSample>,
        proxies: &mut Vec<Arc<dyn ProxyControl>>,
        monitors: &mut Vec<MonitorHandle>,
    ) -> Decided {
        let plan = run.plan;
        // Validate (runtime half): everything that needs the world — proxies bound, processes
        // found, probes built — happens before any fault, so a bad target injects nothing.
        run.enter(Phase::Validate, None);
        if let Err(o) = run.claim(self).await {
            return o.into();
        }
        let mut resolved: BTreeMap<&str, Resolved> = BTreeMap::new();
        for t in &plan.targets {
            if let Some(agent) = &t.agent {
                match resolve_on_agent(t, agent, &run.run_id, plan.seed).await {
                    Ok((a, listener)) => {
                        run.agent_listeners.extend(listener);
                        resolved.insert(t.name.as_str(), Resolved::Agent(a));
                        continue;
                    }
                    Err(e) => {
                        return errored(Phase::Validate, format!("target `{}`: {e}", t.name))
                            .into();
                    }
                }
            }
            let r = match &t.kind {
                TargetKind::Host { netns, interface } => {
                    match crate::host_target::resolve(netns.as_deref(), interface.as_deref()).await
                    {
                        Ok(h) => Resolved::Host(h),
                        Err(e) => {
                            return errored(Phase::Validate, format!("target `{}`: {e}", t.name))
                                .into();
                        }
                    }
                }
                TargetKind::RemoteProxy { api, name } => {
                    match crate::fault::remote::RemoteProxy::connect(api, name).await {
                        Ok(p) => Resolved::Proxy(Arc::new(p)),
                        Err(e) => {
                            return errored(Phase::Validate, format!("target `{}`: {e}", t.name))
                                .into();
                        }
                    }
                }
                TargetKind::Proxy { listen, upstream } => {
                    match self
                        .proxies
                        .start(
                            &t.name,
                            listen,
                            upstream,
                            plan.seed ^ crate::scope::fnv1a(&t.name),
                        )
                        .await
                    {
                        Ok(p) => {
                            proxies.push(p.clone());
                            Resolved::Proxy(p)
                        }
                        Err(e) => {
                            return errored(Phase::Validate, format!("target `{}`: {e}", t.name))
                                .into();
                        }
                    }
                }
                TargetKind::HttpProxy {
                    listen,
                    upstream,
                    upstream_ca,
                } => {
                    match self
                        .proxies
                        .start_http(
                            &t.name,
                            listen,
                            upstream,
                            upstream_ca.as_deref().map(std::path::Path::new),
                            plan.seed ^ crate::scope::fnv1a(&t.name),
                        )
                        .await
                    {
                        Ok(p) => {
                            run.http_proxies.push((t.name.clone(), p.clone()));
                            Resolved::Http(p)
                        }
                        Err(e) => {
                            return errored(Phase::Validate, format!("target `{}`: {e}", t.name))
                                .into();
                        }
                    }
                }
                TargetKind::Container(sel) => {
                    match crate::host_target::resolve_container(sel).await {
                        Ok(h) => {
                            run.containers.extend(h.container.clone());
                            Resolved::Host(h)
                        }
                        Err(e) => {
                            return errored(Phase::Validate, format!("target `{}`: {e}", t.name))
                                .into();
                        }
                    }
                }
                TargetKind::Process(sel) => match process::resolve(sel) {
                    Ok(p) => Resolved::Process(p),
                    Err(e) => {
                        return errored(Phase::Validate, format!("target `{}`: {e}", t.name))
                            .into();
                    }
                },
            };
            resolved.insert(t.name.as_str(), r);
        }
        let mut probes: Vec<(Arc<dyn Probe>, Duration)> = Vec::new();
        for m in &plan.monitors {
            let probe: Arc<dyn Probe> = match &m.probe {
                ProbePlan::Http(cfg) => match HttpProbe::new(m.name.clone(), cfg.clone()) {
                    Ok(p) => Arc::new(p),
                    Err(e) => {
                        return errored(Phase::Validate, format!("monitor `{}`: {e}", m.name))
                            .into();
                    }
                },
                ProbePlan::Tcp {
                    address,
                    timeout,
                    send,
                    expect,
                } => Arc::new(
                    TcpProbe::new(m.name.clone(), address.clone(), *timeout).with_exchange(
                        send.clone().map(String::into_bytes),
                        expect.clone().map(String::into_bytes),
                    ),
                ),
                ProbePlan::Command(cfg) => Arc::new(CommandProbe::new(m.name.clone(), cfg.clone())),
                ProbePlan::Process(source) => {
                    Arc::new(ProcessProbe::new(m.name.clone(), source.clone()))
                }
                ProbePlan::Prometheus(cfg) => {
                    match PrometheusProbe::new(m.name.clone(), cfg.clone()) {
                        Ok(p) => Arc::new(p),
                        Err(e) => {
                            return errored(Phase::Validate, format!("monitor `{}`: {e}", m.name))
                                .into();
                        }
                    }
                }
            };
            probes.push((probe, m.interval));
        }

        // Baseline.
        let epoch = run.journal.epoch();
        run.enter(Phase::Baseline, Some(plan.phases.baseline));
        let baseline_start = run.journal.now();
        for (i, (probe, interval)) in probes.into_iter().enumerate() {
            monitors.push(spawn_monitor(i, probe, interval, epoch, tx.clone()));
        }
        drop(tx);
        run.collect_until(Instant::now() + plan.phases.baseline, |_| None::<()>)
            .await;
        run.settle(monitors, Phase::Baseline).await;
        if run.interrupted {
            return run.halt_by_signal().into();
        }
        // The window the report will use too: from the phase's start to now (settled).
        let baseline_window = run.journal.now().saturating_sub(baseline_start);
        let failures = run.judge(Phase::Baseline, baseline_window);
        run.baseline = (0..plan.monitors.len())
            .map(|i| run.stats(i, |(p, _)| *p == Phase::Baseline, baseline_window))
            .collect();
        if !failures.is_empty() {
            return Outcome::NotSteady { reasons: failures }.into();
        }
        if plan.faults.is_empty() {
            // Nothing to inject: the experiment is a steady-state check, and it held.
            return Outcome::Confirmed.into();
        }

        // Inject.
        run.enter(Phase::Inject, None);
        let mut guards: Vec<Guard> = Vec::new();
        // Which fault and target each guard is, for the progress display.
        let mut held: Vec<(FaultId, String, String)> = Vec::new();
        let mut next_id = 0u32;
        let mut failure: Option<Outcome> = None;
        'faults: for f in &plan.faults {
            for target in &f.targets {
                // A halt or a takeover found now: inject nothing more.
                if run.halt_requested() {
                    run.interrupted = true;
                    break 'faults;
                }
                let fault = match build_fault(&run.run_id, next_id, f, target, &resolved, plan.seed)
                {
                    Ok(fault) => fault,
                    Err(e) => {
                        failure = Some(errored(
                            Phase::Inject,
                            format!("fault `{}` on `{target}`: {e}", f.name),
                        ));
                        break 'faults;
                    }
                };
                let id = FaultId(next_id);
                next_id += 1;
                let cx = InjectCx {
                    journal: &run.journal,
                    id,
                    name: &f.name,
                };
                match beating(&mut run.beater, fault.inject(&cx)).await {
                    Ok(g) => {
                        guards.push(g);
                        held.push((id, f.name.clone(), target.clone()));
                        let _ = run.journal.append_durable(&Event::Injected {
                            fault: id,
                            at: run.journal.now(),
                        });
                        run.emit(Progress::Injected {
                            id,
                            name: f.name.clone(),
                            target: target.clone(),
                            kind: f.kind.name().into(),
                        });
                    }
                    Err(e) => {
                        let _ = run.journal.append_durable(&Event::InjectFailed {
                            fault: id,
                            error: e.to_string(),
                            at: run.journal.now(),
                        });
                        // Close the record only when nothing stayed applied: a journal error
                        // means nothing was announced; a target error means nothing was touched;
                        // an apply error says whether its rollback worked. What is left open is
                        // `recover`'s.
                        let nothing_applied = match &e {
                            crate::fault::FaultError::Journal(_) => false,
                            crate::fault::FaultError::Apply { undone, .. } => *undone,
                            _ => true,
                        };
                        if nothing_applied {
                            let _ = run.journal.append_durable(&Event::Reverted {
                                fault: id,
                                by: "run".into(),
                                note: Some("injection failed; nothing applied".into()),
                                at: run.journal.now(),
                            });
                        }
                        failure = Some(errored(
                            Phase::Inject,
                            format!("fault `{}` on `{target}`: {e}", f.name),
                        ));
                        break 'faults;
                    }
                }
            }
        }

        // Observe.
        let mut halted: Option<Outcome> = None;
        let observe_start = run.journal.now();
        if failure.is_none() {
            run.enter(Phase::Observe, Some(plan.phases.inject));
            let rules = &plan.halt_when;
            let window = plan.halt_window;
            let intervals: Vec<Duration> = plan.monitors.iter().map(|m| m.interval).collect();
            halted = run
                .collect_until(Instant::now() + plan.phases.inject, |run| {
                    run.check_halt(rules, window, &intervals, observe_start)
                })
                .await;
        }
        // The deadline may have passed while the runner was stopped: look once more, so that a
        // runner whose faults `recover` took over halts instead of judging.
        if failure.is_none() && halted.is_none() && (run.interrupted || run.halt_requested()) {
            run.interrupted = true;
            halted = Some(run.halt_by_signal());
        }

        // Recover: always, whatever happened above.
        run.enter(Phase::Recover, Some(plan.phases.recover_within));
        let recover_start = run.journal.now();
        let mut revert_errors = Vec::new();
        if run.taken.is_some()
            && let Some(dir) = run.journal.path().parent()
            && !crate::deadman::wait_released(dir, Duration::from_secs(30)).await
        {
            tracing::warn!("`recover` is still reverting this run's faults after 30 s; reverting");
        }
        // After a takeover too: reverts are idempotent, and a fault applied in the instant
        // before this runner froze (after `recover` read the journal) must not stay behind.
        while let Some(g) = guards.pop() {
            let id = g.id();
            let r = beating(&mut run.beater, g.revert()).await;
            let (name, target) = held
                .iter()
                .find(|(h, ..)| *h == id)
                .map(|(_, n, t)| (n.clone(), t.clone()))
                .unwrap_or_else(|| (format!("fault #{}", id.0), String::new()));
            run.emit(Progress::Reverted {
                id,
                name,
                target,
                error: r.as_ref().err().map(|e| e.to_string()),
            });
            if let Err(e) = r {
                revert_errors.push(e.to_string());
            }
        }
        let reverted_at = run.journal.now();
        let mut ttr = None;
        if next_id > 0 && !run.interrupted {
            ttr = run
                .await_recovery(reverted_at, plan.phases.recover_within)
                .await;
        }
        // Interrupted while waiting: recovery was not measured, so there is nothing to record.
        if next_id > 0 && !run.interrupted {
            let _ = run.journal.append_durable(&Event::Recovery {
                ttr,
                reverted_at,
                at: run.journal.now(),
            });
        }

        if !revert_errors.is_empty() {
            return errored(
                Phase::Recover,
                format!("could not revert: {}", revert_errors.join("; ")),
            )
            .into();
        }
        if let Some(o) = failure.or(halted) {
            return o.into();
        }
        if run.interrupted {
            // Interrupted while waiting for recovery: the faults are reverted, but the time to
            // recover was not measured, so this is a halt, not a verdict.
            return run.halt_by_signal().into();
        }
        // The observe phase as the report sees it: from its start to the start of recover.
        let observed = recover_start.saturating_sub(observe_start);
        Decided::Judge {
            observed,
            recovered: next_id == 0 || ttr.is_some(),
        }
    }
}

/// What the phases decided: an outcome already, or a judgement to make once every sample is in.
enum Decided {
    Outcome(Outcome),
    Judge { observed: Duration, recovered: bool },
}

impl From<Outcome> for Decided {
    fn from(o: Outcome) -> Self {
        Decided::Outcome(o)
    }
}

/// The one `match` from a planned fault kind and its resolved target to the code that injects
/// it: the compiler checks that every kind is handled.
fn build_fault(
    run_id: &RunId,
    id: u32,
    f: &crate::plan::PlannedFault,
    target: &str,
    resolved: &BTreeMap<&str, Resolved>,
    seed: u64,
) -> Result<Box<dyn Fault>, String> {
    let exe = || {
        std::env::current_exe()
            .map_err(|e| format!("cannot find the chaosforge binary for stress workers: {e}"))
    };
    let target_s = target.to_string();
    if let Some(Resolved::Agent(a)) = resolved.get(target) {
        return remote_fault(run_id, id, f, target, a, resolved, seed);
    }
    Ok(match (&f.kind, resolved.get(target)) {
        (
            FaultKind::Proxy {
                streams,
                toxicity,
                fault,
            },
            Some(Resolved::Proxy(p)),
        ) => Box::new(ProxyToxicFault {
            target: target_s,
            kind: f.kind.name(),
            proxy: p.clone(),
            toxics: ProxyToxicFault::toxics(&f.name, streams, *toxicity, fault),
        }),
        (
            FaultKind::Partition {
                peers,
                direction,
                shape,
            },
            Some(Resolved::Host(h)),
        ) => {
            let group;
            let peers = match shape {
                Some(split) => {
                    group = crate::plan::group_peers(split, target);
                    &group
                }
                None => peers,
            };
            Box::new(partition_fault(
                run_id, id, target, h, peers, *direction, resolved,
            )?)
        }
        (
            FaultKind::Network {
                effect,
                peers,
                ports,
                direction,
                mechanism,
            },
            Some(Resolved::Host(h)),
        ) => {
            let filtered = !peers.is_empty() || !ports.is_empty();
            let mechanism = match mechanism {
                Some(m) => *m,
                None => crate::plan::mechanism_for(
                    effect,
                    filtered,
                    *direction,
                    crate::fault::host::caps::probe(),
                )?,
            };
            Box::new(crate::fault::host::netdeg::NetFault {
                target: target_s,
                netns: h.netns.clone(),
                interface: h.interface.clone(),
                peers: resolve_peers(peers, resolved)?,
                ports: ports.clone(),
                direction: *direction,
                effect: effect.clone(),
                mechanism,
                unique: unique_name(run_id, id),
                seed: seed ^ crate::scope::fnv1a(&f.name) ^ u64::from(id),
                exec: Arc::new(crate::fault::host::exec::SystemExecutor),
            })
        }
        (
            FaultKind::Loss {
                peers,
                direction,
                probability,
            },
            Some(Resolved::Host(h)),
        ) => {
            let p = partition_fault(run_id, id, target, h, peers, *direction, resolved)?;
            Box::new(crate::fault::host::loss::LossFault {
                target: p.target,
                netns: p.netns,
                peers: p.peers,
                direction: p.direction,
                probability: *probability,
                table: p.table,
                exec: p.exec,
            })
        }
        (FaultKind::Cpu { workers, percent }, Some(Resolved::Host(_))) => {
            Box::new(crate::fault::stress::CpuStress {
                target: target_s,
                workers: *workers,
                percent: *percent,
                exe: exe()?,
                alongside: None,
            })
        }
        (FaultKind::Cpu { workers, percent }, Some(Resolved::Process(p))) => {
            Box::new(crate::fault::stress::CpuStress {
                target: target_s,
                workers: *workers,
                percent: *percent,
                exe: exe()?,
                alongside: Some(*p),
            })
        }
        (FaultKind::Memory { bytes }, Some(Resolved::Host(_))) => {
            Box::new(crate::fault::stress::MemoryStress {
                target: target_s,
                bytes: *bytes,
                exe: exe()?,
            })
        }
        (
            FaultKind::DiskFill {
                path,
                percent,
                margin,
            },
            Some(Resolved::Host(_)),
        ) => Box::new(crate::fault::stress::DiskFill {
            target: target_s,
            dir: path.into(),
            percent: *percent,
            margin_bytes: *margin,
        }),
        (FaultKind::Pause, Some(Resolved::Process(p))) => Box::new(PauseFault {
            target: target_s,
            process: *p,
        }),
        (
            FaultKind::Kill {
                signal,
                signal_name,
                reach,
            },
            Some(Resolved::Process(p)),
        ) => Box::new(KillFault {
            target: target_s,
            process: *p,
            signal: *signal,
            signal_name: signal_name.clone(),
            reach: *reach,
        }),
        (
            FaultKind::FdExhaustion { headroom } | FaultKind::ProcessLimit { headroom },
            Some(Resolved::Process(p)),
        ) => Box::new(LimitFault {
            target: target_s,
            process: *p,
            resource: limit_resource(&f.kind),
            headroom: *headroom,
        }),
        // On a container: its main process (pid and start time as the engine reports it now).
        (
            FaultKind::FdExhaustion { headroom } | FaultKind::ProcessLimit { headroom },
            Some(Resolved::Host(h)),
        ) if h.container.is_some() => {
            let pid = h.container.as_ref().map_or(0, |c| c.pid);
            let process = i32::try_from(pid)
                .ok()
                .filter(|p| *p > 1)
                .ok_or_else(|| format!("container target `{target_s}` is not running"))
                .and_then(|p| process::resolve(&crate::fault::params::ProcessSelector::Pid(p)));
            let process = match process {
                Ok(p) => p,
                Err(e) => return Err(format!("target `{target_s}`: {e}")),
            };
            Box::new(LimitFault {
                target: target_s,
                process,
                resource: limit_resource(&f.kind),
                headroom: *headroom,
            })
        }
        (FaultKind::Freeze { tree }, Some(Resolved::Process(p))) => Box::new(FreezeFault {
            target: target_s,
            process: *p,
            tree: *tree,
            freezer: None,
        }),
        (
            FaultKind::Restart {
                command,
                ready,
                timeout,
            },
            Some(Resolved::Process(p)),
        ) => Box::new(RestartFault {
            target: target_s,
            process: *p,
            command: command.clone(),
            ready: ready.clone(),
            timeout: *timeout,
        }),
        (
            FaultKind::Http {
                matcher,
                probability,
                action,
            },
            Some(Resolved::Http(p)),
        ) => Box::new(crate::fault::http::HttpRuleFault {
            target: target_s,
            kind: f.kind.name(),
            proxy: p.clone(),
            rule: crate::fault::net::HttpRule {
                name: format!("{}#{id}", f.name),
                matcher: matcher.clone(),
                probability: *probability,
                action: action.clone(),
            },
        }),
        (
            FaultKind::Container { action },
            Some(Resolved::Host(crate::host_target::HostTarget {
                container: Some(c), ..
            })),
        ) => Box::new(crate::fault::container::ContainerFault {
            target: target_s,
            container: c.clone(),
            action: action.clone(),
        }),
        // The plan checked kinds against targets; reaching this is a bug, but a run must still
        // end cleanly.
        _ => return Err("the fault does not fit this target".into()),
    })
}

/// A partition of host `h`: peers resolved to addresses (a peer target's addresses were found
/// when the run started), rules in a table unique to this run and fault instance.
fn partition_fault(
    run_id: &RunId,
    id: u32,
    target: &str,
    h: &crate::host_target::HostTarget,
    peers: &[crate::plan::Peer],
    direction: crate::spec::PartitionDirectionSpec,
    resolved: &BTreeMap<&str, Resolved>,
) -> Result<crate::fault::host::partition::PartitionFault, String> {
    use crate::fault::host::partition::{PartitionDirection, PartitionFault};
    Ok(PartitionFault {
        target: target.to_string(),
        netns: h.netns.clone(),
        peers: resolve_peers(peers, resolved)?,
        direction: match direction {
            crate::spec::PartitionDirectionSpec::Both => PartitionDirection::Both,
            crate::spec::PartitionDirectionSpec::Ingress => PartitionDirection::Ingress,
            crate::spec::PartitionDirectionSpec::Egress => PartitionDirection::Egress,
        },
        table: crate::fault::host::nft::table_name(&unique_name(run_id, id)),
        exec: Arc::new(crate::fault::host::exec::SystemExecutor),
    })
}

/// The limit a `fd-exhaustion` or `process-limit` fault lowers.
fn limit_resource(kind: &FaultKind) -> LimitResource {
    if matches!(kind, FaultKind::ProcessLimit { .. }) {
        LimitResource::Nproc
    } else {
        LimitResource::Nofile
    }
}

/// Unique per run and fault instance: the random tail of the UUIDv7, so concurrent runs never
/// share a table, chain or device name, and the fault id.
fn unique_name(run_id: &RunId, id: u32) -> String {
    let unique = run_id.0.rsplit('-').next().unwrap_or(&run_id.0);
    format!("{unique}_{id}")
}

/// Asks a target's agent to find it on its host (checking the agent's API version first); for
/// a `proxy` target, to start the proxy, which the returned listener holds.
async fn resolve_on_agent(
    t: &crate::plan::Target,
    agent: &crate::plan::AgentRef,
    run_id: &RunId,
    seed: u64,
) -> Result<(AgentTarget, Option<crate::fault::agent::AgentListener>), String> {
    use crate::fault::agent::{
        API_VERSION, AgentClient, AgentFaultKind, AgentListener, InjectRequest,
    };
    let client = AgentClient::from_env(&agent.url, &agent.token_env, agent.fingerprint.as_deref())?;
    let version = client.version().await?;
    if version.api != API_VERSION {
        return Err(format!(
            "agent {} speaks API {} (chaosforge {}), this runner API {API_VERSION}",
            agent.url, version.api, version.version
        ));
    }
    let on = match &t.kind {
        TargetKind::Host { netns, interface } => crate::fault::agent::AgentTarget::Host {
            netns: netns.clone(),
            interface: interface.clone(),
        },
        TargetKind::Process(sel) => crate::fault::agent::AgentTarget::Process(sel.clone()),
        TargetKind::Proxy { listen, upstream } => {
            // Named after the run and target, so `agents status` tells whose proxy it is.
            let id = format!("{}-proxy-{:x}", run_id.0, crate::scope::fnv1a(&t.name));
            let req = InjectRequest {
                id: id.clone(),
                name: format!("proxy {}", t.name),
                target: t.name.clone(),
                on: crate::fault::agent::AgentTarget::Host {
                    netns: None,
                    interface: None,
                },
                fault: AgentFaultKind::ProxyListen {
                    listen: listen.clone(),
                    upstream: upstream.clone(),
                },
                lease: agent.lease,
                seed: seed ^ crate::scope::fnv1a(&t.name),
            };
            let listener = AgentListener::start(client.clone(), &req, Duration::from_secs(1))
                .await
                .map_err(|e| format!("starting its proxy: {e}"))?;
            let target = AgentTarget {
                client,
                agent: agent.clone(),
                on: crate::fault::agent::AgentTarget::Proxy { listener: id },
                addresses: Vec::new(),
            };
            return Ok((target, Some(listener)));
        }
        _ => {
            return Err(
                "only host, netns, process and proxy targets can be reached through an agent"
                    .into(),
            );
        }
    };
    let found = client.resolve(&on).await?;
    let target = AgentTarget {
        client,
        agent: agent.clone(),
        on,
        addresses: found.addresses,
    };
    Ok((target, None))
}

/// A fault on an agent's target: the planned kind with its peers resolved here, sent to the
/// agent, which builds the same fault a local run would (`fault::agent::build`).
fn remote_fault(
    run_id: &RunId,
    id: u32,
    f: &crate::plan::PlannedFault,
    target: &str,
    a: &AgentTarget,
    resolved: &BTreeMap<&str, Resolved>,
    seed: u64,
) -> Result<Box<dyn Fault>, String> {
    use crate::fault::agent::{AgentFaultKind, InjectRequest, RemoteAgentFault};
    use crate::fault::host::partition::PartitionDirection;
    let direction = |d: crate::spec::PartitionDirectionSpec| match d {
        crate::spec::PartitionDirectionSpec::Both => PartitionDirection::Both,
        crate::spec::PartitionDirectionSpec::Ingress => PartitionDirection::Ingress,
        crate::spec::PartitionDirectionSpec::Egress => PartitionDirection::Egress,
    };
    let fault = match &f.kind {
        FaultKind::Proxy {
            streams,
            toxicity,
            fault,
        } => AgentFaultKind::ProxyToxics {
            toxics: ProxyToxicFault::toxics(&f.name, streams, *toxicity, fault),
        },
        FaultKind::Partition {
            peers,
            direction: d,
            shape,
        } => {
            let group;
            let peers = match shape {
                Some(split) => {
                    group = crate::plan::group_peers(split, target);
                    &group
                }
                None => peers,
            };
            AgentFaultKind::Partition {
                peers: resolve_peers(peers, resolved)?,
                direction: direction(*d),
            }
        }
        FaultKind::Network {
            effect,
            peers,
            ports,
            direction: d,
            ..
        } => AgentFaultKind::Network {
            effect: effect.clone(),
            peers: resolve_peers(peers, resolved)?,
            ports: ports.clone(),
            direction: *d,
            // The runner's kernel says nothing about the agent's: the agent chooses.
            mechanism: None,
        },
        FaultKind::Loss {
            peers,
            direction: d,
            probability,
        } => AgentFaultKind::Loss {
            peers: resolve_peers(peers, resolved)?,
            direction: direction(*d),
            probability: *probability,
        },
        FaultKind::Cpu { workers, percent } => AgentFaultKind::Cpu {
            workers: *workers,
            percent: *percent,
        },
        FaultKind::Memory { bytes } => AgentFaultKind::Memory { bytes: *bytes },
        FaultKind::DiskFill {
            path,
            percent,
            margin,
        } => AgentFaultKind::DiskFill {
            path: path.clone(),
            percent: *percent,
            margin: *margin,
        },
        FaultKind::Pause => AgentFaultKind::Pause,
        FaultKind::Freeze { tree } => AgentFaultKind::Freeze { tree: *tree },
        // Irreversible: the plan admitted it only under `allow_irreversible`, as for a local one.
        FaultKind::Kill {
            signal,
            signal_name,
            reach,
        } => AgentFaultKind::Kill {
            signal: *signal,
            signal_name: signal_name.clone(),
            reach: *reach,
        },
        FaultKind::FdExhaustion { headroom } => AgentFaultKind::FdExhaustion {
            headroom: *headroom,
        },
        FaultKind::ProcessLimit { headroom } => AgentFaultKind::ProcessLimit {
            headroom: *headroom,
        },
        FaultKind::Restart {
            command,
            ready,
            timeout,
        } => AgentFaultKind::Restart {
            command: command.clone(),
            ready: ready.clone(),
            timeout: *timeout,
        },
        other => {
            return Err(format!(
                "`{}` faults cannot run through an agent yet",
                other.name()
            ));
        }
    };
    Ok(Box::new(RemoteAgentFault {
        target: target.to_string(),
        client: a.client.clone(),
        request: InjectRequest {
            id: format!("{}-{id}", run_id.0),
            name: f.name.clone(),
            target: target.to_string(),
            on: a.on.clone(),
            fault,
            lease: a.agent.lease,
            seed: seed ^ crate::scope::fnv1a(&f.name) ^ u64::from(id),
        },
        token_env: a.agent.token_env.clone(),
        fingerprint: a.agent.fingerprint.clone(),
        renew_every: Duration::from_secs(1),
    }))
}

/// Peers as addresses: a peer target's addresses were found when the run started.
fn resolve_peers(
    peers: &[crate::plan::Peer],
    resolved: &BTreeMap<&str, Resolved>,
) -> Result<Vec<std::net::IpAddr>, String> {
    use crate::plan::Peer;
    let mut addresses = Vec::new();
    for p in peers {
        match p {
            Peer::Address(a) => addresses.push(*a),
            Peer::Target(name) => match resolved.get(name.as_str()) {
                Some(Resolved::Host(o)) if !o.addresses.is_empty() => {
                    addresses.extend(o.addresses.iter().copied())
                }
                Some(Resolved::Agent(a)) if !a.addresses.is_empty() => {
                    addresses.extend(a.addresses.iter().copied())
                }
                Some(Resolved::Host(_) | Resolved::Agent(_)) => {
                    return Err(format!("peer `{name}` has no address"));
                }
                _ => return Err(format!("peer `{name}` is not a host target")),
            },
        }
    }
    Ok(addresses)
}

/// Awaits `f` while beating: a long inject or revert (a readiness wait, a slow `tc`) is the
/// engine at work, not stuck. Beats come from this task, so a wedged engine still stops them.
async fn beating<F: std::future::Future>(beater: &mut crate::deadman::Beater, f: F) -> F::Output {
    let mut beat = tokio::time::interval(beater.interval());
    tokio::pin!(f);
    loop {
        tokio::select! {
            out = &mut f => return out,
            _ = beat.tick() => beater.beat(),
        }
    }
}

fn errored(phase: Phase, error: String) -> Outcome {
    Outcome::Errored { phase, error }
}

// === impl Run ===

impl Run<'_> {
    fn emit(&self, p: Progress) {
        if let Some(f) = &self.progress {
            f(&p);
        }
    }

    fn enter(&mut self, phase: Phase, planned: Option<Duration>) {
        let at = self.journal.now();
        self.phases.push((phase, at));
        let _ = self.journal.append_durable(&Event::Phase { phase, at });
        self.emit(Progress::Phase { phase, planned });
    }

    /// The phase a sample that started at `at` belongs to.
    fn phase_at(&self, at: Duration) -> Phase {
        self.phases
            .iter()
            .rev()
            .find(|(_, start)| *start <= at)
            .map_or(Phase::Validate, |(p, _)| *p)
    }

    fn record(&mut self, s: MonitorSample) {
        let mut phase = self.phase_at(s.sample.at);
        // `baseline` is filled (one entry per monitor) when the baseline is judged.
        if phase == Phase::Baseline && !self.baseline.is_empty() {
            // Started while the baseline settled, finished after the verdict: it straddles the
            // injection, so it belongs to no window (the report, which reads these labels,
            // then agrees with the verdict the run acted on).
            phase = Phase::Inject;
        }
        let _ = self.journal.append(&Event::Sample {
            monitor: s.monitor,
            phase,
            sample: s.sample.clone(),
        });
        if self.progress.is_some()
            && let Some(m) = self.plan.monitors.get(s.monitor)
        {
            self.emit(Progress::Sample {
                monitor: m.name.clone(),
                phase,
                ok: s.sample.ok,
                latency: s.sample.latency,
                sample: s.sample.clone(),
            });
        }
        if let Some(v) = self.samples.get_mut(s.monitor) {
            v.push((phase, s.sample));
        }
    }

    /// Records samples until `deadline`, a shutdown, or `check` returning an outcome.
    async fn collect_until<T>(
        &mut self,
        deadline: Instant,
        mut check: impl FnMut(&Run<'_>) -> Option<T>,
    ) -> Option<T> {
        let phase = self.phases.last().map_or(Phase::Validate, |(p, _)| *p);
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut beat = tokio::time::interval(self.beater.interval());
        let mut monitors_gone = false;
        let (mut n, mut ok) = (0usize, 0usize);
        loop {
            tokio::select! {
                _ = sleep_until(deadline) => return None,
                changed = self.shutdown.changed(), if !self.signals_gone => {
                    match changed {
                        Ok(()) if *self.shutdown.borrow() => {
                            self.interrupted = true;
                            return None;
                        }
                        Ok(()) => {}
                        // The sender is gone: nobody can ask for a halt any more.
                        Err(_) => self.signals_gone = true,
                    }
                }
                _ = beat.tick() => self.beater.beat(),
                _ = tick.tick() => {
                    self.emit(Progress::Tick { phase, elapsed: started.elapsed(), samples: n, ok });
                    if self.halt_requested() {
                        self.interrupted = true;
                        return None;
                    }
                }
                _ = crate::halt::nudged(&mut self.halt_nudges) => if self.halt_requested() {
                    self.interrupted = true;
                    return None;
                },
                s = self.rx.recv(), if !monitors_gone => match s {
                    Some(s) => {
                        n += 1;
                        ok += usize::from(s.sample.ok);
                        self.record(s);
                        if let Some(o) = check(self) {
                            return Some(o);
                        }
                    }
                    // All monitors gone: nothing more to watch; wait out the phase, still
                    // listening for a halt.
                    None => monitors_gone = true,
                },
            }
        }
    }

    fn stats<'a>(
        &'a self,
        monitor: usize,
        keep: impl Fn(&(Phase, Sample)) -> bool + 'a,
        window: Duration,
    ) -> WindowStats {
        WindowStats::from_samples(
            self.samples[monitor]
                .iter()
                .filter(|s| keep(s))
                .map(|(_, s)| s),
            window,
        )
    }

    /// Every expectation that does not hold over `phase`'s samples, as reasons.
    fn judge(&self, phase: Phase, window: Duration) -> Vec<String> {
        let mut reasons = Vec::new();
        for (i, m) in self.plan.monitors.iter().enumerate() {
            let stats = self.stats(i, |(p, _)| *p == phase, window);
            let baseline = self.baseline.get(i);
            for e in &m.expect {
                // The baseline is what relative thresholds are measured against, not judged by.
                if phase == Phase::Baseline && e.is_relative() {
                    continue;
                }
                if e.is_relative() && e.threshold_value(baseline).is_none() {
                    reasons.push(format!(
                        "{}: `{}` could not be judged: the baseline has no data for {}",
                        m.name, e.text, e.metric
                    ));
                    continue;
                }
                match e.judge_against(&stats, baseline) {
                    Verdict::Holds { .. } => {}
                    Verdict::Violated { observed } => reasons.push(format!(
                        "{}: `{}` did not hold {} (observed {}{})",
                        m.name,
                        e.text,
                        during(phase),
                        e.metric.format_value(observed),
                        match e.threshold_value(baseline) {
                            Some(t) if e.is_relative() =>
                                format!(", threshold {}", e.metric.format_value(t)),
                            _ => String::new(),
                        }
                    )),
                    Verdict::NoData => {
                        reasons.push(format!(
                            "{}: `{}` could not be judged {} (no data)",
                            m.name,
                            e.text,
                            during(phase)
                        ));
                    }
                }
                if phase != Phase::Baseline
                    && let Some(alpha) = self.plan.significance
                    && let Some(c) = self.change(i, e, phase, alpha)
                    && c.degraded
                {
                    reasons.push(format!(
                        "{}: `{}` degraded significantly {} (Mann–Whitney p = {}, Cliff's δ = \
                         {:+.2} {}{}; significance {alpha})",
                        m.name,
                        e.text,
                        during(phase),
                        crate::analysis::format_p(c.p_value),
                        c.cliffs_delta,
                        c.magnitude,
                        c.shift_text
                            .as_deref()
                            .map(|s| format!(", shift {s}"))
                            .unwrap_or_default(),
                    ));
                }
            }
        }
        reasons
    }

    /// The change of `e`'s metric on monitor `i` from the baseline to `phase`.
    fn change(
        &self,
        i: usize,
        e: &Expectation,
        phase: Phase,
        alpha: f64,
    ) -> Option<crate::analysis::Change> {
        let interval = self.plan.monitors[i].interval;
        let pick = |want: Phase| {
            crate::analysis::series(
                &e.metric,
                self.samples[i]
                    .iter()
                    .filter(|(p, _)| *p == want)
                    .map(|(_, s)| s),
                interval,
            )
            .into_iter()
            .map(|(_, v)| v)
            .collect::<Vec<f64>>()
        };
        crate::analysis::compare(e, &pick(Phase::Baseline), &pick(phase), alpha)
    }

    /// The time window closing, or a monitor failing `max_consecutive_failures` samples in a
    /// row while faults are held: a halt, journaled with the policy's name.
    fn check_safety(&self) -> Option<Outcome> {
        let halt = |policy: &str, reason: String| {
            let _ = self.journal.append_durable(&Event::Halted {
                policy: policy.into(),
                reason: reason.clone(),
                at: self.journal.now(),
            });
            Some(Outcome::Halted {
                policy: policy.into(),
                reason,
            })
        };
        if let Some(deadline) = self.plan.deadline
            && jiff::Timestamp::now() >= deadline
        {
            return halt(
                "time_window",
                format!("the time window closed at {deadline}"),
            );
        }
        let n = self.plan.policy.max_consecutive_failures? as usize;
        for (i, m) in self.plan.monitors.iter().enumerate() {
            let mut observe: Vec<&Sample> = self.samples[i]
                .iter()
                .filter(|(p, _)| matches!(p, Phase::Inject | Phase::Observe))
                .map(|(_, s)| s)
                .collect();
            observe.sort_by_key(|s| s.at);
            if observe.len() >= n && observe[observe.len() - n..].iter().all(|s| !s.ok) {
                let last = observe[observe.len() - 1].error.clone().unwrap_or_default();
                return halt(
                    "safety",
                    format!(
                        "monitor `{}` failed {n} samples in a row (last: {last})",
                        m.name
                    ),
                );
            }
        }
        None
    }

    /// A halt rule met by any monitor over its last `window` (at least 3 intervals) of observe
    /// samples.
    fn check_halt(
        &self,
        rules: &[Expectation],
        window: Duration,
        intervals: &[Duration],
        from: Duration,
    ) -> Option<Outcome> {
        if let Some(o) = self.check_safety() {
            return Some(o);
        }
        if rules.is_empty() {
            return None;
        }
        let now = self.journal.now();
        for (i, m) in self.plan.monitors.iter().enumerate() {
            let w = window.max(intervals[i] * 3);
            // Judge only a full window: one unlucky first sample must not halt a run.
            if now.saturating_sub(from) < w {
                continue;
            }
            let since = now - w;
            // By completion time: a request that hung for its whole timeout finishes inside the
            // window although it started before it, and it is exactly what a halt rule is for.
            let stats = self.stats(
                i,
                |(p, s)| *p == Phase::Observe && s.at + s.latency >= since,
                w,
            );
            for r in rules {
                // A rule about values or resources applies to the monitors that yield them.
                if m.probe.supports(&r.metric).is_err() {
                    continue;
                }
                if let Verdict::Holds { observed } = r.judge_against(&stats, self.baseline.get(i)) {
                    let reason = format!(
                        "monitor `{}`: `{}` met over the last {} (observed {})",
                        m.name,
                        r.text,
                        format_duration(w),
                        r.metric.format_value(observed)
                    );
                    let _ = self.journal.append_durable(&Event::Halted {
                        policy: "halt_when".into(),
                        reason: reason.clone(),
                        at: now,
                    });
                    return Some(Outcome::Halted {
                        policy: "halt_when".into(),
                        reason,
                    });
                }
            }
        }
        None
    }

    /// Waits (at most one probe timeout and interval) until every sample that started before
    /// now has been recorded, so that the phase just ended is judged on all of its samples.
    async fn settle(&mut self, monitors: &[MonitorHandle], phase: Phase) {
        let boundary = self.journal.now();
        let longest = self
            .plan
            .monitors
            .iter()
            .map(|m| m.probe.timeout() + m.interval)
            .max()
            .unwrap_or_default();
        let deadline = Instant::now() + longest;
        loop {
            while let Ok(s) = self.rx.try_recv() {
                self.record(s);
            }
            // Settled: nothing started before the boundary is still out, and the phase has at
            // least one sample (a monitor may not have started its first one yet).
            let settled = monitors.iter().enumerate().all(|(i, h)| {
                h.oldest_in_flight().is_none_or(|t| t >= boundary)
                    && self.samples[i].iter().any(|(p, _)| *p == phase)
            });
            if settled || Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                Some(s) = self.rx.recv() => self.record(s),
                _ = tokio::time::sleep(Duration::from_millis(2)) => {}
            }
        }
    }

    fn halt_by_signal(&self) -> Outcome {
        let signal = HALT_SIGNAL
            .get()
            .map(|name| format!("interrupted by {name}"));
        if let Some(t) = &self.taken {
            // `recover` journaled the halt when it took over; its reason is the run's.
            return Outcome::Halted {
                policy: crate::deadman::POLICY.into(),
                reason: format!(
                    "{}; `chaosforge recover` (pid {}) reverted its faults at {}",
                    t.reason, t.pid, t.at
                ),
            };
        }
        let (policy, reason) = match &self.halt {
            Some(_) => (crate::halt::POLICY, crate::halt::REASON.to_string()),
            None => (
                "signal",
                signal.unwrap_or_else(|| "interrupted by a signal (SIGINT/SIGTERM)".to_string()),
            ),
        };
        let _ = self.journal.append_durable(&Event::Halted {
            policy: policy.into(),
            reason: reason.clone(),
            at: self.journal.now(),
        });
        Outcome::Halted {
            policy: policy.into(),
            reason,
        }
    }

    /// Waits until every monitor's most recent samples taken after `reverted_at` (a window of
    /// [`recovery_window`] samples) all satisfy its expectations; returns the time to recover,
    /// from `reverted_at` to the start of the first sample of that healthy window.
    ///
    /// A window counts if it *starts* within `limit`; its later samples may come after the limit,
    /// so collection goes on for one window's length past it. A healthy system is therefore never
    /// refuted because its interval is long compared to `recover_within`.
    async fn await_recovery(&mut self, reverted_at: Duration, limit: Duration) -> Option<Duration> {
        let plan = self.plan;
        if plan.monitors.is_empty() {
            return Some(Duration::ZERO);
        }
        let ks: Vec<usize> = plan.monitors.iter().map(recovery_window).collect();
        let slack = plan
            .monitors
            .iter()
            .zip(&ks)
            .map(|(m, k)| m.interval * (*k as u32).saturating_sub(1) + m.probe.timeout())
            .max()
            .unwrap_or_default();
        let latest_start = reverted_at + limit;
        // Some(Some(ttr)): recovered; Some(None): can no longer recover in time; None: not yet.
        let judge = |run: &Run<'_>| -> Option<Option<Duration>> {
            let mut first = Duration::ZERO;
            let mut pending = false;
            for (i, m) in plan.monitors.iter().enumerate() {
                let mut after: Vec<&Sample> = run.samples[i]
                    .iter()
                    .filter(|(_, s)| s.at >= reverted_at)
                    .map(|(_, s)| s)
                    .collect();
                after.sort_by_key(|s| s.at);
                if after.len() < ks[i] {
                    pending = true;
                    continue;
                }
                let win = &after[after.len() - ks[i]..];
                let span = (win[win.len() - 1].at - win[0].at).max(m.interval);
                let stats = WindowStats::from_samples(win.iter().copied(), span);
                let baseline = run.baseline.get(i);
                if !m
                    .expect
                    .iter()
                    .all(|e| matches!(e.judge_against(&stats, baseline), Verdict::Holds { .. }))
                {
                    if win[0].at > latest_start {
                        // Every later window starts later still: too late.
                        return Some(None);
                    }
                    pending = true;
                    continue;
                }
                first = first.max(win[0].at);
            }
            if pending {
                return None;
            }
            Some((first <= latest_start).then(|| first.saturating_sub(reverted_at)))
        };
        let deadline = Instant::now() + limit + slack;
        self.collect_until(deadline, judge).await.flatten()
    }
}

/// How many consecutive healthy samples show that a monitor recovered: about one second's
/// worth, at least 3 (one sample proves little), at most 20.
pub fn recovery_window(m: &crate::plan::MonitorPlan) -> usize {
    ((Duration::from_secs(1).as_secs_f64() / m.interval.as_secs_f64()).ceil() as usize).clamp(3, 20)
}

fn during(phase: Phase) -> &'static str {
    match phase {
        Phase::Baseline => "at baseline",
        Phase::Observe | Phase::Inject => "during the fault",
        Phase::Recover => "after recovery",
        Phase::Validate => "before the run",
    }
}
