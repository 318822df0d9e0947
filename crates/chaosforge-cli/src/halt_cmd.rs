//! `chaosforge halt --all | <run-id-prefix> | <gameday-id-prefix>`: make live runs (and game
//! days, `crate::gameday_cmd`) revert every fault and stop, wait (bounded) until they have, and
//! say what each undid; and the runner's side, [`nudges`].
//!
//! Why a request file plus `SIGUSR1` (`chaosforge::halt`) rather than `SIGTERM` alone: one
//! process may run several experiments and `halt <run-id>` must stop only one of them; the
//! journal must say the run was halted by `chaosforge halt`, not by some signal; and `SIGTERM`
//! keeps its meaning for service managers. The signal makes it fast (the engine looks at once,
//! then reverts), the file makes it precise and survives a runner that is busy.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use chaosforge::halt::{self, LiveRun};
use chaosforge::journal::{self, Event};
use tokio::sync::watch;

static NUDGES: OnceLock<watch::Sender<u64>> = OnceLock::new();

/// A receiver that changes on every `SIGUSR1` this process gets: what makes its runs look for
/// their halt request at once. The handler is installed on the first call (before any run
/// starts: the default action of `SIGUSR1` is to terminate, and `halt` only signals runners
/// that catch it).
pub(crate) fn nudges() -> anyhow::Result<watch::Receiver<u64>> {
    if let Some(tx) = NUDGES.get() {
        return Ok(tx.subscribe());
    }
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr1 = signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;
    let mut ours = false;
    let tx = NUDGES.get_or_init(|| {
        ours = true;
        watch::channel(0u64).0
    });
    // Only the call that stored the sender feeds it (the signal stream of a losing racer just
    // goes away with it).
    if ours {
        let tx = tx.clone();
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        });
    }
    Ok(tx.subscribe())
}

/// `halt`: the exit code (0 every run halted and reverted, 1 a run did not confirm in time or
/// failed a revert, 2 nothing matched `prefix`).
pub(crate) async fn halt(
    all: bool,
    prefix: Option<&str>,
    state_dir: &Path,
    timeout: Duration,
) -> anyhow::Result<u8> {
    let started = tokio::time::Instant::now();
    // Game days first: one that starts a scenario while `halt` looks stops it itself.
    let games = match crate::gameday_cmd::request_halts(state_dir, all, prefix) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(2);
        }
    };
    let live = halt::live_runs(state_dir)?;
    let targets: Vec<LiveRun> = match prefix {
        _ if all => live,
        Some(_) if !games.is_empty() => {
            let theirs = crate::gameday_cmd::running_runs(state_dir, &games);
            live.into_iter()
                .filter(|r| theirs.contains(&r.id.0))
                .collect()
        }
        Some(p) => {
            let m: Vec<LiveRun> = live.into_iter().filter(|r| r.id.0.starts_with(p)).collect();
            if m.len() > 1 {
                eprintln!("error: `{p}` names {} live runs:", m.len());
                for r in &m {
                    eprintln!(
                        "  {} (experiment `{}`, pid {})",
                        r.id.0, r.experiment, r.pid
                    );
                }
                eprintln!("give more of the run id, or use --all");
                return Ok(2);
            }
            if m.is_empty() {
                eprintln!("error: no live run's id starts with `{p}`");
                return Ok(2);
            }
            m
        }
        None => anyhow::bail!("name a run id (or its start), or use --all"),
    };
    if targets.is_empty() && games.is_empty() {
        println!("no live run to halt");
        return Ok(0);
    }
    for r in &targets {
        match halt::request(state_dir, r) {
            Ok(true) => {}
            Ok(false) => eprintln!(
                "run {}: its runner (pid {}) does not catch SIGUSR1; it will see the request \
                 within 250 ms",
                r.id.0, r.pid
            ),
            Err(e) => eprintln!("run {}: cannot ask it to halt: {e}", r.id.0),
        }
    }
    let done = halt::wait_reverted(&targets, started, timeout).await;
    let mut code = 0;
    let mut slowest = Duration::ZERO;
    for (r, (reverted, finished)) in targets.iter().zip(done) {
        let events = journal::read(&r.dir.join("journal.jsonl")).unwrap_or_default();
        let outcome = events.iter().find_map(|e| match e {
            Event::RunFinished { outcome, .. } => Some(outcome.headline()),
            _ => None,
        });
        match (reverted, finished) {
            (Some(rv), Some(f)) => {
                slowest = slowest.max(rv);
                println!(
                    "halted run {} (experiment `{}`, pid {}): faults reverted after {} ms, \
                     finished after {} ms",
                    r.id.0,
                    r.experiment,
                    r.pid,
                    rv.as_millis(),
                    f.as_millis()
                );
            }
            _ => {
                code = 1;
                println!(
                    "run {} (experiment `{}`, pid {}): NOT finished after {}; its faults may \
                     still be active (`chaosforge recover` reverts them once it is gone)",
                    r.id.0,
                    r.experiment,
                    r.pid,
                    chaosforge::units::format_duration(timeout)
                );
            }
        }
        code = code.max(print_undone(&events));
        if let Some(o) = outcome {
            println!("  outcome: {o}");
        }
    }
    code = code.max(crate::gameday_cmd::wait_ended(&games, started, started + timeout).await);
    println!(
        "{} run{} halted; every fault reverted within {} ms of the command",
        targets.len(),
        if targets.len() == 1 { "" } else { "s" },
        slowest.as_millis()
    );
    Ok(code)
}

/// Prints every revert in the journal; 1 when one failed.
fn print_undone(events: &[Event]) -> u8 {
    let mut names = std::collections::BTreeMap::new();
    let mut code = 0;
    for e in events {
        match e {
            Event::Injecting {
                fault,
                name,
                target,
                kind,
                ..
            } => {
                names.insert(*fault, format!("{name} ({kind}) on {target}"));
            }
            Event::Reverted {
                fault, by, note, ..
            } => println!(
                "  reverted {} (by {by}{})",
                names.get(fault).map_or("?", String::as_str),
                note.as_deref()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default()
            ),
            Event::RevertFailed { fault, error, .. } => {
                code = 1;
                println!(
                    "  FAILED to revert {}: {error}",
                    names.get(fault).map_or("?", String::as_str)
                );
            }
            _ => {}
        }
    }
    code
}

/// `audit verify`: 0 when the chain is intact, 1 naming the first bad line.
pub(crate) fn audit_verify(state_dir: &Path) -> anyhow::Result<u8> {
    let path = state_dir.join(chaosforge::audit::FILE);
    let v = chaosforge::audit::verify(state_dir)?;
    match v.bad {
        None => {
            println!(
                "{}: {} line{}, chain intact; last hash {}",
                path.display(),
                v.lines,
                if v.lines == 1 { "" } else { "s" },
                v.last_hash
            );
            Ok(0)
        }
        Some(b) => {
            println!("{}:{}: {}", path.display(), b.line, b.problem);
            Ok(1)
        }
    }
}
