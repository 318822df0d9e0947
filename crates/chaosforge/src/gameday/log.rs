//! A game day's own journal: `gamedays/<id>/gameday.jsonl`, one JSON line per event, each
//! written with `fsync` before the step it announces (a scenario's run id is on disk before its
//! run starts), so that the game day's history — and which runs belong to it — survives its
//! runner. The runner holds `gamedays/<id>/lock` (flock) while alive: that is how `chaosforge
//! halt` tells a live game day from a dead one. Each scenario's run keeps its own journal under
//! `runs/<run-id>/`; this one only links to them.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Roles, StopOn};
use crate::journal::JournalError;
use crate::vocab::{Outcome, RunId};

/// The journal's file name in the game day's directory.
pub const FILE: &str = "gameday.jsonl";

/// Where game days live in the state directory.
pub const DIR: &str = "gamedays";

/// One line of a game day's journal. `at` is the time since the game day started (monotonic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum GameDayEvent {
    /// First line.
    GameDayStarted {
        /// The game day's id (a UUIDv7, as run ids are).
        gameday_id: String,
        /// Its name.
        name: String,
        /// Its description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// The game day file.
        file: String,
        /// Wall-clock start of the runner (before any wait for `start`).
        started_at: jiff::Timestamp,
        /// The runner's pid.
        pid: u32,
        /// chaosforge version.
        version: String,
        /// Its roles.
        roles: Roles,
        /// The `start` of the file, when it had one and `--now` was not given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scheduled: Option<jiff::Timestamp>,
        /// What stops it early.
        stop_on: StopOn,
        /// The timeline as planned.
        steps: Vec<StepSummary>,
    },
    /// Waiting for the scheduled start.
    Waiting {
        /// Until when.
        until: jiff::Timestamp,
        /// When.
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
    /// A step began.
    StepStarted {
        /// Index in the timeline.
        step: usize,
        /// When.
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
    /// A scenario's run is about to start under `run_id` (written before the run exists).
    ScenarioStarted {
        /// The step.
        step: usize,
        /// Its index in the step.
        index: usize,
        /// The experiment's name.
        name: String,
        /// Its run.
        run_id: RunId,
        /// When.
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
    /// A scenario's run ended (or could not run: `error`, no outcome).
    ScenarioEnded {
        /// The step.
        step: usize,
        /// Its index in the step.
        index: usize,
        /// Its run.
        run_id: RunId,
        /// How it ended.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<Outcome>,
        /// Why it did not run (refused by a policy at its start, no journal).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// When.
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
    /// A pause step.
    Pause {
        /// The step.
        step: usize,
        /// How long.
        #[serde(with = "crate::units::duration_text")]
        duration: Duration,
        /// When it began.
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
    /// The game day stops before its next step.
    Halted {
        /// `halt` (`chaosforge halt`), `signal`, or `stop_on`.
        by: String,
        /// Why.
        reason: String,
        /// When.
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
    /// Last line.
    GameDayEnded {
        /// The runner's exit code.
        exit_code: u8,
        /// When.
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
}

/// A step as planned, in [`GameDayEvent::GameDayStarted`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    /// `scenario`, `parallel` or `pause`.
    pub kind: String,
    /// The experiments' names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scenarios: Vec<String>,
    /// A pause's length.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::units::opt_duration_text"
    )]
    pub pause: Option<Duration>,
}

/// An open game day journal: cheap to clone.
#[derive(Debug, Clone)]
pub struct GameDayLog {
    inner: Arc<Mutex<(File, File)>>,
    path: PathBuf,
    epoch: tokio::time::Instant,
}

/// A game day that is still going, found by [`live`].
#[derive(Debug, Clone)]
pub struct LiveGameDay {
    /// Its id.
    pub id: String,
    /// `gamedays/<id>`.
    pub dir: PathBuf,
    /// The runner.
    pub pid: u32,
    /// Its name.
    pub name: String,
    /// Its scenarios' runs that started and did not end.
    pub running: Vec<RunId>,
}

// === impl GameDayLog ===

impl GameDayLog {
    /// Creates `state_dir/gamedays/<id>/gameday.jsonl` and takes the game day's lock.
    pub fn create(state_dir: &Path, id: &str) -> Result<GameDayLog, JournalError> {
        let dir = state_dir.join(DIR).join(id);
        let (file, lock, path) = crate::journal::create_locked(&dir, FILE)?;
        Ok(GameDayLog {
            inner: Arc::new(Mutex::new((file, lock))),
            path,
            epoch: tokio::time::Instant::now(),
        })
    }

    /// Time since the game day started.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `event` and waits until it is on disk.
    pub fn append(&self, event: &GameDayEvent) -> Result<(), JournalError> {
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(event).map_err(|e| io(std::io::Error::other(e)))?;
        line.push(b'\n');
        // A poisoned lock only means another task panicked mid-write; the file is still usable.
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut f = &inner.0;
        f.write_all(&line).map_err(io)?;
        f.sync_data().map_err(io)
    }
}

/// Reads a game day journal; a torn last line is skipped, a bad line elsewhere is an error.
pub fn read(path: &Path) -> Result<Vec<GameDayEvent>, JournalError> {
    let bytes = fs::read(path).map_err(|source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let lines: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        match serde_json::from_slice(l) {
            Ok(e) => out.push(e),
            Err(_) if i + 1 == lines.len() => break,
            Err(e) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// The directories of every game day under `state_dir`, oldest first.
pub fn all(state_dir: &Path) -> Result<Vec<PathBuf>, JournalError> {
    let root = state_dir.join(DIR);
    let entries = match fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(JournalError::Io { path: root, source }),
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join(FILE).is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// Every live game day under `state_dir`: started, not ended, its lock held by its runner.
pub fn live(state_dir: &Path) -> Result<Vec<LiveGameDay>, JournalError> {
    let mut out = Vec::new();
    for dir in all(state_dir)? {
        let Ok(events) = read(&dir.join(FILE)) else {
            continue;
        };
        let Some(GameDayEvent::GameDayStarted {
            gameday_id,
            name,
            pid,
            ..
        }) = events.first()
        else {
            continue;
        };
        if events
            .iter()
            .any(|e| matches!(e, GameDayEvent::GameDayEnded { .. }))
            || !locked(&dir.join("lock"))
        {
            continue;
        }
        let mut running: Vec<RunId> = Vec::new();
        for e in &events {
            match e {
                GameDayEvent::ScenarioStarted { run_id, .. } => running.push(run_id.clone()),
                GameDayEvent::ScenarioEnded { run_id, .. } => running.retain(|r| r != run_id),
                _ => {}
            }
        }
        out.push(LiveGameDay {
            id: gameday_id.clone(),
            dir: dir.clone(),
            pid: *pid,
            name: name.clone(),
            running,
        });
    }
    Ok(out)
}

/// Whether another process holds the lock file at `path`. Taking it for a moment when it is
/// free is harmless: a runner takes its lock before it writes its first line, and [`live`] only
/// asks about game days that have one.
fn locked(path: &Path) -> bool {
    let Ok(f) = OpenOptions::new().write(true).open(path) else {
        return false;
    };
    matches!(
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive),
        Err(rustix::io::Errno::WOULDBLOCK)
    )
}
