//! Halt requests: how `chaosforge halt` makes live runs revert every fault and stop.
//!
//! A request is a file, `runs/<run-id>/halt`, saying who asked and when, plus a `SIGUSR1` to the
//! runner. The file says *which* run (one process may run several experiments); the signal
//! only wakes the runner so that it looks at once instead of at its next 250 ms tick. The
//! engine halts with [`POLICY`] and [`REASON`] when it finds its file (journaled as `Halted`, so
//! the run exits 3). A runner that does not catch `SIGUSR1` (whose default action is to
//! terminate, which would leave its faults to `recover`) is not signalled: its engine still
//! finds the file at its next tick.
//!
//! Live runs are found from the journals alone: a journal without `RunFinished` whose runner
//! pid still runs and is the runner — the start time in the run's claims when it has any, else a
//! process that started before the run did (a reused pid started after). No lock is taken, so
//! looking never disturbs a run that is starting. Imports `journal`, `vocab`, `claims`, `audit`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::journal::{self, Event, JournalError};
use crate::vocab::RunId;

/// The policy a halted run's outcome names.
pub const POLICY: &str = "halt";

/// The reason a halted run's outcome gives.
pub const REASON: &str = "halted by `chaosforge halt`";

/// The request file's name in a run's directory.
pub const FILE: &str = "halt";

/// Who asked for a halt, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaltRequest {
    /// When.
    pub requested_at: jiff::Timestamp,
    /// `$USER` of the asker.
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// Its pid.
    pub pid: u32,
}

/// A run that is still going, found by [`live_runs`].
#[derive(Debug, Clone)]
pub struct LiveRun {
    /// The run.
    pub id: RunId,
    /// `runs/<id>`.
    pub dir: PathBuf,
    /// The runner.
    pub pid: u32,
    /// The experiment's name.
    pub experiment: String,
    /// Faults injected and not yet reverted.
    pub open_faults: usize,
}

// === functions ===

/// The halt request of the run in `run_dir`, if there is one. A file that cannot be read as a
/// request is still a request: halting is the safe side.
pub fn requested(run_dir: &Path) -> Option<HaltRequest> {
    let path = run_dir.join(FILE);
    if !path.exists() {
        return None;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    Some(serde_json::from_str(&text).unwrap_or(HaltRequest {
        requested_at: jiff::Timestamp::now(),
        user: "unknown".into(),
        uid: 0,
        pid: 0,
    }))
}

/// Every live run under `state_dir`, oldest first.
pub fn live_runs(state_dir: &Path) -> Result<Vec<LiveRun>, JournalError> {
    let mut out = Vec::new();
    for run in journal::runs(state_dir)? {
        // A journal being written is read to its last complete line; a bad one is not ours to
        // judge here (recover reports it).
        let Ok(events) = journal::read(&run.dir.join("journal.jsonl")) else {
            continue;
        };
        if let Some(live) = live(&run, &events) {
            out.push(live);
        }
    }
    Ok(out)
}

fn live(run: &journal::RunDir, events: &[Event]) -> Option<LiveRun> {
    let Some(Event::RunStarted {
        started_at,
        pid,
        plan,
        ..
    }) = events.first()
    else {
        return None;
    };
    if events
        .iter()
        .any(|e| matches!(e, Event::RunFinished { .. }))
    {
        return None;
    }
    let start_ticks = crate::claims::start_time_of(*pid)?;
    let claimed = events.iter().find_map(|e| match e {
        Event::Claimed { holder, .. } => holder.start_time,
        _ => None,
    });
    let same = match claimed {
        Some(t) => t == start_ticks,
        None => started_before(start_ticks, *started_at),
    };
    if !same || crate::claims::state_of(*pid) == Some('Z') {
        return None;
    }
    Some(LiveRun {
        id: run.id.clone(),
        dir: run.dir.clone(),
        pid: *pid,
        experiment: plan.name.clone(),
        open_faults: journal::open_faults(events).len(),
    })
}

/// Whether a process that started `ticks` after boot started no later than `at` (1 s of slack
/// for the clock's granularity).
fn started_before(ticks: u64, at: jiff::Timestamp) -> bool {
    let Some(boot) = boot_time() else {
        // Cannot tell: the pid runs and the run is unfinished; believe it.
        return true;
    };
    let hz = rustix::param::clock_ticks_per_second().max(1);
    let started = boot + ticks as f64 / hz as f64;
    started <= at.as_millisecond() as f64 / 1000.0 + 1.0
}

/// Seconds since the epoch at boot (`btime` in `/proc/stat`).
fn boot_time() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Asks `run` to halt: writes its request file, audits it, and signals its runner when that is
/// safe. Returns whether the runner was signalled (else its engine finds the file at its next
/// tick).
pub fn request(state_dir: &Path, run: &LiveRun) -> std::io::Result<bool> {
    let req = HaltRequest {
        requested_at: jiff::Timestamp::now(),
        user: crate::audit::record("", "").user,
        uid: rustix::process::getuid().as_raw(),
        pid: std::process::id(),
    };
    // Written whole, then renamed: the engine never reads half a request.
    let tmp = run.dir.join(format!("{FILE}.{}", std::process::id()));
    std::fs::write(
        &tmp,
        serde_json::to_vec(&req).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, run.dir.join(FILE))?;
    let mut rec = crate::audit::record("halt_request", &run.id.0);
    rec.experiment = Some(run.experiment.clone());
    rec.detail = Some(format!("runner pid {}", run.pid));
    if let Err(e) = crate::audit::append(state_dir, &rec) {
        tracing::warn!("{e}");
    }
    if !catches_usr1(run.pid) {
        return Ok(false);
    }
    let pid = rustix::process::Pid::from_raw(run.pid as i32)
        .ok_or_else(|| std::io::Error::other("pid 0"))?;
    rustix::process::kill_process(pid, rustix::process::Signal::USR1)?;
    Ok(true)
}

/// Whether `pid` has a handler for `SIGUSR1` (`SigCgt` in `/proc/PID/status`).
pub fn catches_usr1(pid: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        // Signal n is bit n - 1; SIGUSR1 is 10.
        .is_some_and(|mask| mask & (1 << 9) != 0)
}

/// Returns when `nudges` changes: a runner's wake-up to look for its request file. Never
/// returns when there are none, or once their sender is gone.
pub async fn nudged(nudges: &mut Option<watch::Receiver<u64>>) {
    if let Some(rx) = nudges
        && rx.changed().await.is_ok()
    {
        return;
    }
    // No sender any more: stop listening, so a `select!` does not spin on the closed channel.
    *nudges = None;
    std::future::pending::<()>().await
}

/// Polls `runs`' journals until each has reverted every fault and finished, for at most
/// `limit`; for each, the time it took until its faults were reverted and until it finished
/// (`None` when it did not within `limit`), measured from `since`.
pub async fn wait_reverted(
    runs: &[LiveRun],
    since: tokio::time::Instant,
    limit: Duration,
) -> Vec<(Option<Duration>, Option<Duration>)> {
    let mut out: Vec<(Option<Duration>, Option<Duration>)> = vec![(None, None); runs.len()];
    let deadline = since + limit;
    loop {
        for (r, slot) in runs.iter().zip(out.iter_mut()) {
            if slot.1.is_some() {
                continue;
            }
            let events = journal::read(&r.dir.join("journal.jsonl")).unwrap_or_default();
            let finished = events
                .iter()
                .any(|e| matches!(e, Event::RunFinished { .. }));
            // A runner that died is done too: what it left is `recover`'s.
            let gone = crate::claims::start_time_of(r.pid).is_none();
            if slot.0.is_none() && (journal::open_faults(&events).is_empty() || finished) {
                slot.0 = Some(since.elapsed());
            }
            if finished || gone {
                slot.1 = Some(since.elapsed());
            }
        }
        if out.iter().all(|s| s.1.is_some()) || tokio::time::Instant::now() >= deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
