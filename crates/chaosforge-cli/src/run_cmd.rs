//! `chaosforge run a.yaml [b.yaml …]`: one experiment, or several at once in this process, each
//! with its own engine, journal and claims. Every file is checked before anything runs; the
//! reports are printed one after another in file order once all runs are over, and the exit
//! code is the worst of the outcomes: error (2), then halted (3), then refuted (1), then
//! confirmed (0) — an error may mean a fault was not tested or not reverted, a halt stopped a
//! test early, a refutation is a finished test.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chaosforge::engine::{ClaimWait, Engine, Outcome, Progress, RunResult};
use chaosforge::plan::Plan;
use chaosforge::units::format_duration;
use tokio::sync::watch;

/// What `run` was asked.
pub(crate) struct RunArgs {
    pub files: Vec<PathBuf>,
    /// Each file, read and parsed (`main` looked at them to tell Chaos Toolkit files apart).
    pub docs: Vec<Result<chaosforge::source::Document, chaosforge::diag::Diagnostics>>,
    pub seed: Option<u64>,
    pub state_dir: PathBuf,
    /// `--report FORMAT:PATH` (and `--report-json PATH`), written when every run is over.
    pub reports: Vec<crate::report_cmd::ReportTarget>,
    /// `--wait-for-targets[=TIMEOUT]`, as written.
    pub wait_for_targets: Option<String>,
    /// `--heartbeat-timeout`, checked.
    pub heartbeat: chaosforge::deadman::Heartbeat,
    /// `--metrics-listen` and its grace: one run's metrics.
    pub metrics: crate::metrics::MetricsArgs,
    /// `--approve`, `--allow-forbidden`.
    pub policy: crate::policy_cmd::PolicyArgs,
    /// `--live`: the terminal view (`live.rs`).
    pub live: bool,
}

/// Runs every file; the exit code.
pub(crate) async fn run(mut args: RunArgs) -> anyhow::Result<u8> {
    let wait = match args.wait_for_targets.as_deref() {
        None => ClaimWait::Refuse,
        Some("forever") => ClaimWait::Wait(None),
        Some(t) => {
            ClaimWait::Wait(Some(chaosforge::units::parse_duration(t).map_err(|e| {
                anyhow::anyhow!("--wait-for-targets={t}: {}", e.message)
            })?))
        }
    };
    let mut plans = Vec::new();
    let docs = std::mem::take(&mut args.docs);
    for (f, doc) in args.files.iter().zip(docs) {
        let admitted = match crate::load_parsed(f, doc, args.seed) {
            Some(p) => admit(f, p, &args.policy, &args.state_dir)?,
            None => None,
        };
        match admitted {
            Some(p) => plans.push(p),
            None => {
                if args.files.len() > 1 {
                    eprintln!("error: nothing was run: every file must be valid and admitted");
                }
                return Ok(2);
            }
        }
    }
    if plans.len() > 1 && args.live {
        anyhow::bail!("--live shows one run; give one file");
    }
    if plans.len() > 1 && args.metrics.metrics_listen.is_some() {
        anyhow::bail!("--metrics-listen serves the metrics of one run; give one file");
    }
    let metrics = match plans.first() {
        Some(p) => crate::metrics::Server::start(&args.metrics, p).await?,
        None => None,
    };
    let feed = metrics.as_ref().map(crate::metrics::Server::metrics);
    let shutdown = crate::signals()?;
    let nudges = crate::halt_cmd::nudges()?;
    let many = plans.len() > 1;
    let heartbeat = args.heartbeat;
    let live = args.live;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, plan) in plans.into_iter().enumerate() {
        let rx = shutdown.clone();
        let feed = feed.clone();
        let engine = engine(&args.state_dir, wait, nudges.clone(), heartbeat);
        tasks.spawn(async move {
            let r = run_one(&plan, engine, rx, many, feed, live).await;
            (i, r)
        });
    }
    let mut results: Vec<Option<anyhow::Result<RunResult>>> =
        (0..args.files.len()).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        let (i, r) = done.context("a run's task failed")?;
        results[i] = Some(r);
    }
    let mut code = 0u8;
    let mut reports = Vec::new();
    let mut outcome = None;
    for (file, r) in args.files.iter().zip(results) {
        if many {
            println!("=== {} ===", file.display());
        }
        match r {
            Some(Ok(result)) => {
                crate::history_cmd::record(&args.state_dir, &result.report);
                print!("{}", result.report.render_text());
                eprintln!("journal: {}", result.journal.display());
                reports.push(result.report);
                code = worst(code, result.outcome.exit_code() as u8);
                outcome = Some(result.outcome);
            }
            Some(Err(e)) => {
                eprintln!("error: {}: {e:#}", file.display());
                code = worst(code, 2);
            }
            None => code = worst(code, 2),
        }
    }
    let written = crate::report_cmd::write_targets(&args.reports, &reports, many);
    // The outcome goes on /metrics only once the history and the reports are written: a scraper
    // that saw it may rely on them, and the runner exits right after that scrape.
    if let Some(m) = metrics {
        m.metrics().finish(outcome.as_ref());
        m.linger(shutdown).await;
    }
    written?;
    Ok(code)
}

/// Checks `plan`'s policies for a run starting now (`file` is what an approval is bound to);
/// prints refusals. The plan with its deadline and verdicts set, or `None` when refused.
pub(crate) fn admit(
    file: &std::path::Path,
    mut plan: Plan,
    policy: &crate::policy_cmd::PolicyArgs,
    state_dir: &std::path::Path,
) -> anyhow::Result<Option<Plan>> {
    let rc = crate::policy_cmd::context(file, policy, Some(state_dir))?;
    Ok(crate::policy_cmd::admit(&mut plan, &rc).map(|_| plan))
}

/// An engine for one run: everything but the progress display, which [`run_one`] picks.
pub(crate) fn engine(
    state_dir: &std::path::Path,
    wait: ClaimWait,
    nudges: watch::Receiver<u64>,
    heartbeat: chaosforge::deadman::Heartbeat,
) -> Engine {
    Engine::new(Arc::new(chaosforge_proxy::InProcessBackend), state_dir)
        .with_claim_wait(wait)
        .with_halt_requests(nudges)
        .with_heartbeat(heartbeat)
}

/// The worse of two exit codes by the documented order 2 > 3 > 1 > 0.
pub(crate) fn worst(a: u8, b: u8) -> u8 {
    let rank = |c: u8| match c {
        0 => 0,
        1 => 1,
        3 => 2,
        _ => 3,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// Runs `plan` on `engine` with its progress on stderr (one prefixed line per event when `many`
/// runs share it), and says so when the dead-man switch took its faults over.
pub(crate) async fn run_one(
    plan: &Plan,
    engine: Engine,
    shutdown: watch::Receiver<bool>,
    many: bool,
    feed: Option<Arc<crate::metrics::Metrics>>,
    live: bool,
) -> anyhow::Result<RunResult> {
    if plan.seed_random {
        eprintln!("seed {}", crate::plan_cmd::seed_line(plan));
    }
    let (live, shutdown) = if live {
        crate::live::open(plan, shutdown)
    } else {
        (None, shutdown)
    };
    let warn: chaosforge::notify::WarnFn = match &live {
        Some(l) => l.warner(),
        None => Arc::new(|w: String| eprintln!("warning: {w}")),
    };
    let notifier = chaosforge::notify::Notifier::start(plan, warn).map(Arc::new);
    let ui = crate::progress::Ui::new(!many && live.is_none() && std::io::stderr().is_terminal());
    let progress: chaosforge::engine::ProgressFn = if many {
        // Several runs share stderr: one line per event, prefixed with the experiment.
        let name = plan.name.clone();
        let notifier = notifier.clone();
        Arc::new(move |p: &Progress| {
            prefixed(&name, p);
            if let Some(n) = &notifier {
                n.progress(p);
            }
        })
    } else {
        let ui = ui.clone();
        let feed = feed.clone();
        let (live, notifier) = (live.clone(), notifier.clone());
        Arc::new(move |p: &Progress| {
            match &live {
                Some(l) => l.update(p),
                None => ui.update(p),
            }
            if let Some(m) = &feed {
                m.update(p);
            }
            if let Some(n) = &notifier {
                n.progress(p);
            }
        })
    };
    let engine = engine.with_progress(progress);
    let result = engine.run(plan, shutdown).await;
    // The engine held the only other handle on the notifier, in its progress callback.
    drop(engine);
    if let Some(n) = notifier.and_then(Arc::into_inner) {
        let error = result.as_ref().err().map(|e| format!("{e:#}"));
        n.finish(match (&result, &error) {
            (Ok(r), _) => Ok(r),
            (Err(_), Some(e)) => Err(e.as_str()),
            (Err(_), None) => Err("the run failed"),
        })
        .await;
    }
    if let Some(l) = &live {
        l.finish();
    }
    if let Ok(RunResult {
        outcome: Outcome::Halted { policy, reason },
        ..
    }) = &result
        && policy == chaosforge::deadman::POLICY
    {
        eprintln!(
            "error: this run stopped heartbeating and its faults were taken over: {reason}. \
             It injected nothing more and reverted what it still held; its journal was closed \
             by `chaosforge recover`."
        );
    }
    ui.finish();
    Ok(result?)
}

fn prefixed(name: &str, p: &Progress) {
    match p {
        Progress::Phase { phase, planned } => eprintln!(
            "[{name}] ▶ {}{}",
            format!("{phase:?}").to_lowercase(),
            planned
                .map(|d| format!(" ({})", format_duration(d)))
                .unwrap_or_default()
        ),
        Progress::Injected {
            name: f,
            target,
            kind,
            ..
        } => {
            eprintln!("[{name}]   injected {f} ({kind}) on {target}")
        }
        Progress::Reverted {
            name: f,
            target,
            error: None,
            ..
        } => eprintln!("[{name}]   reverted {f} on {target}"),
        Progress::Reverted {
            name: f,
            target,
            error: Some(e),
            ..
        } => {
            eprintln!("[{name}]   FAILED to revert {f} on {target}: {e}")
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::worst;

    #[test]
    fn the_worst_exit_code_wins_by_the_documented_order() {
        assert_eq!(worst(0, 1), 1);
        assert_eq!(worst(1, 3), 3);
        assert_eq!(worst(3, 2), 2);
        assert_eq!(worst(2, 3), 2);
        assert_eq!(worst(3, 0), 3);
        assert_eq!([0, 1, 3, 1].into_iter().fold(0, worst), 3);
    }
}
