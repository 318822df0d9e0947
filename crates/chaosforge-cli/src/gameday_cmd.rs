//! `chaosforge gameday FILE`: a game day — scenarios in order and in parallel groups, pauses, a
//! start time, roles — each scenario run by the machinery of `chaosforge run` (its own engine,
//! journal, claims and policies), linked to the game day by the game day's journal
//! (`chaosforge::gameday::log`), then one combined report.
//!
//! Halting: `chaosforge halt <gameday-id-prefix>` or `--all` writes a request into the game
//! day's directory (`chaosforge::halt`, as for a run) and signals this process; the game day
//! passes the request on to each of its running scenarios (they revert and end halted) and
//! stops before its next step. It passes it on itself rather than relying on `halt` alone
//! because a scenario may be starting at that very moment, before `halt` can see its journal.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chaosforge::engine::{ClaimWait, RunResult};
use chaosforge::gameday::log::{self as gdlog, GameDayEvent, GameDayLog, LiveGameDay, StepSummary};
use chaosforge::gameday::report::GameDayReport;
use chaosforge::gameday::{self, GameDay, Step};
use chaosforge::halt::{self, LiveRun};
use chaosforge::journal::RunId;
use chaosforge::units::format_duration;
use tokio::sync::watch;

use crate::run_cmd::worst;

/// What `gameday` was asked.
pub(crate) struct GameDayArgs {
    pub file: PathBuf,
    pub now: bool,
    pub seed: Option<u64>,
    pub state_dir: PathBuf,
    pub report_json: Option<PathBuf>,
    pub reports: Vec<crate::report_cmd::ReportTarget>,
}

/// What makes a game day stop before its next step, once seen.
struct Control {
    dir: PathBuf,
    shutdown: watch::Receiver<bool>,
    nudges: Option<watch::Receiver<u64>>,
}

/// Runs the game day; the exit code (the worst of its scenarios' in the order of `run`, and 3
/// when it was halted).
pub(crate) async fn run(args: GameDayArgs) -> anyhow::Result<u8> {
    let gd = match gameday::load(&args.file, args.seed, true) {
        Ok(g) => g,
        Err(d) => {
            eprint!("{d}");
            eprintln!(
                "error: {} problem{} in game day {}; nothing was run",
                d.len(),
                if d.len() == 1 { "" } else { "s" },
                args.file.display()
            );
            return Ok(2);
        }
    };
    let state = args.state_dir.as_path();
    let gd_file = PathBuf::from(&gd.file);
    let scheduled = gd.start.filter(|_| !args.now);
    let policy = crate::policy_cmd::PolicyArgs {
        approve: gd.roles.approver.clone(),
        allow_forbidden: false,
    };
    // Every scenario's policies up front, as at the scheduled start: a refusal is found before
    // the team gathers, not halfway through. Each is checked again when it starts.
    let mut refused = 0;
    for s in gd.scenarios() {
        for w in s.plan.warnings.iter() {
            eprintln!("warning: {w}");
        }
        let mut rc = crate::policy_cmd::context(s.file(&gd_file), &policy, Some(state))?;
        if let Some(t) = scheduled.filter(|t| *t > rc.now) {
            rc.now = t;
        }
        let mut plan = s.plan.clone();
        if crate::policy_cmd::admit(&mut plan, &rc).is_none() {
            eprintln!("error: scenario `{}` ({}) is refused", plan.name, plan.file);
            refused += 1;
        }
    }
    if refused > 0 {
        eprintln!("error: {refused} scenario(s) refused by policy; nothing was run");
        return Ok(2);
    }

    let id = chaosforge::journal::new_run_id().0;
    let log = GameDayLog::create(state, &id)?;
    let dir = state.join(gdlog::DIR).join(&id);
    log.append(&GameDayEvent::GameDayStarted {
        gameday_id: id.clone(),
        name: gd.name.clone(),
        description: gd.description.clone(),
        file: gd.file.clone(),
        started_at: jiff::Timestamp::now(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        roles: gd.roles.clone(),
        scheduled,
        stop_on: gd.stop_on,
        steps: summary(&gd),
    })?;
    audit(state, "gameday_start", &id, &gd, Some(roles_line(&gd)));
    eprintln!(
        "game day {} `{}` ({}); owner {}; `chaosforge halt {}` stops it",
        id,
        gd.name,
        gd.file,
        gd.roles.owner,
        &id[..13.min(id.len())]
    );
    let mut ctl = Control {
        dir,
        shutdown: crate::signals()?,
        nudges: Some(crate::halt_cmd::nudges()?),
    };
    let nudges = crate::halt_cmd::nudges()?;
    let mut code = 0u8;
    let mut stop: Option<(String, String)> = None;

    if let Some(t) = scheduled
        && t > jiff::Timestamp::now()
    {
        let left = t.duration_since(jiff::Timestamp::now());
        let left = Duration::try_from(left).unwrap_or_default();
        log.append(&GameDayEvent::Waiting {
            until: t,
            at: log.now(),
        })?;
        eprintln!(
            "waiting until {t} (in {}) to start; --now starts at once",
            format_duration(Duration::from_secs(left.as_secs()))
        );
        stop = ctl.sleep(left).await;
    }

    let total = gd.steps.len();
    for (i, step) in gd.steps.iter().enumerate() {
        if stop.is_some() {
            break;
        }
        if let Some(h) = ctl.halted() {
            stop = Some(h);
            break;
        }
        match step {
            Step::Pause(d) => {
                log.append(&GameDayEvent::Pause {
                    step: i,
                    duration: *d,
                    at: log.now(),
                })?;
                eprintln!("▶ step {} of {total}: pause {}", i + 1, format_duration(*d));
                stop = ctl.sleep(*d).await;
            }
            Step::Scenarios {
                parallel,
                scenarios,
            } => {
                log.append(&GameDayEvent::StepStarted {
                    step: i,
                    at: log.now(),
                })?;
                let names: Vec<&str> = scenarios.iter().map(|s| s.plan.name.as_str()).collect();
                eprintln!(
                    "▶ step {} of {total}: {}{}",
                    i + 1,
                    if *parallel { "in parallel: " } else { "" },
                    names.join(", ")
                );
                let mut tasks = tokio::task::JoinSet::new();
                let mut running: Vec<(RunId, String)> = Vec::new();
                for (j, s) in scenarios.iter().enumerate() {
                    let run_id = chaosforge::journal::new_run_id();
                    let admitted =
                        crate::run_cmd::admit(s.file(&gd_file), s.plan.clone(), &policy, state)?;
                    log.append(&GameDayEvent::ScenarioStarted {
                        step: i,
                        index: j,
                        name: s.plan.name.clone(),
                        run_id: run_id.clone(),
                        at: log.now(),
                    })?;
                    let Some(plan) = admitted else {
                        log.append(&GameDayEvent::ScenarioEnded {
                            step: i,
                            index: j,
                            run_id,
                            outcome: None,
                            error: Some("refused by policy when it was to start".into()),
                            at: log.now(),
                        })?;
                        code = worst(code, 2);
                        continue;
                    };
                    if let Some(a) = &gd.roles.approver
                        && plan
                            .verdicts
                            .iter()
                            .any(|v| v == &format!("approval: approved by {a}"))
                    {
                        let mut rec = chaosforge::audit::record("approval", &run_id.0);
                        rec.experiment = Some(plan.name.clone());
                        rec.file = Some(plan.file.clone());
                        rec.detail = Some(format!(
                            "approved by {a}, the approver of game day `{}` ({id})",
                            gd.name
                        ));
                        if let Err(e) = chaosforge::audit::append(state, &rec) {
                            tracing::warn!("{e}");
                        }
                    }
                    running.push((run_id.clone(), plan.name.clone()));
                    let engine = crate::run_cmd::engine(
                        state,
                        ClaimWait::Refuse,
                        nudges.clone(),
                        chaosforge::deadman::Heartbeat::default(),
                    )
                    .with_run_id(run_id.clone());
                    let rx = ctl.shutdown.clone();
                    tasks.spawn(async move {
                        let r = crate::run_cmd::run_one(&plan, engine, rx, true, None, false).await;
                        (j, run_id, r)
                    });
                }
                let mut passed_on: BTreeSet<RunId> = BTreeSet::new();
                loop {
                    tokio::select! {
                        done = tasks.join_next() => {
                            let Some(done) = done else { break };
                            let (j, run_id, r) = done.context("a scenario's task failed")?;
                            running.retain(|(r, _)| r != &run_id);
                            let (outcome, error) = match r {
                                Ok(RunResult { outcome, .. }) => (Some(outcome), None),
                                Err(e) => (None, Some(format!("{e:#}"))),
                            };
                            code = worst(code, outcome.as_ref().map_or(2, |o| o.exit_code() as u8));
                            if stop.is_none() && gameday::stops(gd.stop_on, outcome.as_ref()) {
                                stop = Some((
                                    "stop_on".into(),
                                    format!(
                                        "scenario `{}` ended {} (stop_on: {:?})",
                                        scenarios[j].plan.name,
                                        outcome.as_ref().map_or("in error", crate::outcome_word),
                                        gd.stop_on
                                    )
                                    .to_lowercase(),
                                ));
                            }
                            log.append(&GameDayEvent::ScenarioEnded {
                                step: i,
                                index: j,
                                run_id,
                                outcome,
                                error,
                                at: log.now(),
                            })?;
                        }
                        _ = ctl.wake() => {
                            if let Some(h) = ctl.halted() {
                                // A signal already reaches every run through `shutdown`.
                                if h.0 == halt::POLICY {
                                    pass_on(state, &running, &mut passed_on);
                                }
                                stop.get_or_insert(h);
                            }
                        }
                    }
                }
            }
        }
    }
    if stop.is_none()
        && let Some(h) = ctl.halted()
    {
        stop = Some(h);
    }
    if let Some((by, reason)) = &stop {
        if by != "stop_on" {
            code = worst(code, 3);
        }
        log.append(&GameDayEvent::Halted {
            by: by.clone(),
            reason: reason.clone(),
            at: log.now(),
        })?;
        eprintln!("game day halted by {by}: {reason}; no further step runs");
    }
    log.append(&GameDayEvent::GameDayEnded {
        exit_code: code,
        at: log.now(),
    })?;
    audit(state, "gameday_end", &id, &gd, Some(format!("exit {code}")));
    let report = GameDayReport::load(state, &state.join(gdlog::DIR).join(&id))?;
    print!("{}", report.render_text());
    eprintln!("game day journal: {}", log.path().display());
    if let Some(path) = &args.report_json {
        std::fs::write(path, report.render_json())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let runs: Vec<_> = report
        .scenarios
        .iter()
        .filter_map(|s| s.report.clone())
        .collect();
    crate::report_cmd::write_targets(&args.reports, &runs, true)?;
    Ok(code)
}

/// `validate` of a game day file (`doc`, parsed): whether it is valid (diagnostics printed).
pub(crate) fn validate(file: &Path, doc: &chaosforge::source::Document) -> bool {
    match gameday::load_document(doc, file.parent().unwrap_or(Path::new("")), Some(0), false) {
        Ok(gd) => {
            println!(
                "{}: valid game day ({} step{}, {} scenario{})",
                file.display(),
                gd.steps.len(),
                crate::plural(gd.steps.len()),
                gd.scenarios().count(),
                crate::plural(gd.scenarios().count())
            );
            true
        }
        Err(d) => {
            eprint!("{d}");
            false
        }
    }
}

// === impl Control ===

impl Control {
    /// Why the game day must stop, if it must: its halt request, or a signal.
    fn halted(&self) -> Option<(String, String)> {
        if halt::requested(&self.dir).is_some() {
            return Some((halt::POLICY.into(), halt::REASON.into()));
        }
        if *self.shutdown.borrow() {
            return Some(("signal".into(), "interrupted by a signal".into()));
        }
        None
    }

    /// Returns on a `SIGUSR1` (a halt request), a signal, or after 250 ms.
    async fn wake(&mut self) {
        tokio::select! {
            _ = halt::nudged(&mut self.nudges) => {}
            _ = self.shutdown.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }

    /// Sleeps `d` unless halted first; the halt, if any.
    async fn sleep(&mut self, d: Duration) -> Option<(String, String)> {
        let until = tokio::time::Instant::now() + d;
        loop {
            if let Some(h) = self.halted() {
                return Some(h);
            }
            if tokio::time::Instant::now() >= until {
                return None;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = self.wake() => {}
            }
        }
    }
}

/// Asks each running scenario's run to halt (as `chaosforge halt` would), once each; a run whose
/// directory does not exist yet is asked again at the next wake-up.
fn pass_on(state: &Path, running: &[(RunId, String)], done: &mut BTreeSet<RunId>) {
    for (run_id, name) in running {
        if done.contains(run_id) {
            continue;
        }
        let dir = state.join("runs").join(&run_id.0);
        if !dir.is_dir() {
            continue;
        }
        let live = LiveRun {
            id: run_id.clone(),
            dir,
            pid: std::process::id(),
            experiment: name.clone(),
            open_faults: 0,
        };
        match halt::request(state, &live) {
            Ok(_) => {
                done.insert(run_id.clone());
            }
            Err(e) => tracing::warn!("asking run {} to halt: {e}", run_id.0),
        }
    }
}

/// The timeline as planned, for the journal.
fn summary(gd: &GameDay) -> Vec<StepSummary> {
    gd.steps
        .iter()
        .map(|s| match s {
            Step::Pause(d) => StepSummary {
                kind: "pause".into(),
                scenarios: Vec::new(),
                pause: Some(*d),
            },
            Step::Scenarios {
                parallel,
                scenarios,
            } => StepSummary {
                kind: if *parallel { "parallel" } else { "scenario" }.into(),
                scenarios: scenarios.iter().map(|s| s.plan.name.clone()).collect(),
                pause: None,
            },
        })
        .collect()
}

fn roles_line(gd: &GameDay) -> String {
    format!(
        "owner {}; observers {}; approver {}",
        gd.roles.owner,
        gd.roles.observers.join(", "),
        gd.roles.approver.as_deref().unwrap_or("none")
    )
}

/// One audit line about the game day (`gameday_start`, `gameday_end`).
fn audit(state: &Path, action: &str, id: &str, gd: &GameDay, detail: Option<String>) {
    let mut rec = chaosforge::audit::record(action, id);
    rec.experiment = Some(format!("game day {}", gd.name));
    rec.file = Some(gd.file.clone());
    rec.detail = detail;
    if let Err(e) = chaosforge::audit::append(state, &rec) {
        tracing::warn!("{e}");
    }
}

// === halt ===

/// For `chaosforge halt`: the live game days it names (every one with `all`, else those whose
/// id starts with `prefix`), each asked to halt — before `halt` lists the live runs, so that a
/// scenario starting meanwhile is stopped by its game day. `Err` names an ambiguous prefix.
pub(crate) fn request_halts(
    state: &Path,
    all: bool,
    prefix: Option<&str>,
) -> anyhow::Result<Vec<LiveGameDay>> {
    let live = gdlog::live(state)?;
    let chosen: Vec<LiveGameDay> = match prefix {
        _ if all => live,
        Some(p) => live.into_iter().filter(|g| g.id.starts_with(p)).collect(),
        None => Vec::new(),
    };
    if !all && chosen.len() > 1 {
        let ids: Vec<&str> = chosen.iter().map(|g| g.id.as_str()).collect();
        anyhow::bail!(
            "`{}` names {} live game days ({}); give more of the id, or use --all",
            prefix.unwrap_or_default(),
            chosen.len(),
            ids.join(", ")
        );
    }
    for g in &chosen {
        let as_run = LiveRun {
            id: RunId(g.id.clone()),
            dir: g.dir.clone(),
            pid: g.pid,
            experiment: format!("game day {}", g.name),
            open_faults: 0,
        };
        if let Err(e) = halt::request(state, &as_run) {
            eprintln!("game day {}: cannot ask it to halt: {e}", g.id);
        }
    }
    Ok(chosen)
}

/// The runs of `games` that are running now.
pub(crate) fn running_runs(state: &Path, games: &[LiveGameDay]) -> BTreeSet<String> {
    let ids: BTreeSet<&str> = games.iter().map(|g| g.id.as_str()).collect();
    // Read again: a scenario may have started since the game day was asked.
    let mut out: BTreeSet<String> = games
        .iter()
        .flat_map(|g| g.running.iter().map(|r| r.0.clone()))
        .collect();
    for g in gdlog::live(state).unwrap_or_default() {
        if ids.contains(g.id.as_str()) {
            out.extend(g.running.into_iter().map(|r| r.0));
        }
    }
    out
}

/// Waits (until `deadline`) for each game day to end; prints how each did.
pub(crate) async fn wait_ended(
    games: &[LiveGameDay],
    since: tokio::time::Instant,
    deadline: tokio::time::Instant,
) -> u8 {
    let mut code = 0;
    for g in games {
        let ended = loop {
            let events = gdlog::read(&g.dir.join(gdlog::FILE)).unwrap_or_default();
            if let Some(c) = events.iter().find_map(|e| match e {
                GameDayEvent::GameDayEnded { exit_code, .. } => Some(*exit_code),
                _ => None,
            }) {
                break Some(c);
            }
            if chaosforge::claims::start_time_of(g.pid).is_none()
                || tokio::time::Instant::now() >= deadline
            {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        match ended {
            Some(c) => println!(
                "halted game day {} (`{}`, pid {}): ended after {} ms, exit {c}",
                g.id,
                g.name,
                g.pid,
                since.elapsed().as_millis()
            ),
            None => {
                code = 1;
                println!(
                    "game day {} (`{}`, pid {}): NOT ended in time",
                    g.id, g.name, g.pid
                );
            }
        }
    }
    code
}
