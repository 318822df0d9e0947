//! The write-ahead journal: one JSON object per line in `runs/<run-id>/journal.jsonl`.
//!
//! It is the source of truth for `chaosforge recover` and for reports. Fault events are written
//! with `fsync` *before* the change they announce (`Injecting` carries everything needed to undo
//! it), so a runner killed at any instant leaves a journal from which every open fault can be
//! reverted by a fresh process. Other events are written with one `write` each (no buffering), so
//! a killed runner loses at most the line being written; readers skip a torn last line.
//!
//! While a run is alive it holds an exclusive `flock` on `runs/<run-id>/lock`; `recover` skips
//! runs whose lock is held, so it never reverts the faults of a run that is still in charge of
//! them. The one holder that is not in charge is a child the runner was starting as it died
//! (the lock is shared from the fork until the exec): when the runner is gone, the lock is
//! waited for instead ([`Journal::open_dead`]).
//!
//! Every journal also feeds the state directory's audit log ([`crate::audit`]): the run's start,
//! claims, injections, reverts, halts and end each add one hash-chained line there, whoever
//! writes them (the run, a dropped guard, `recover`).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::vocab::{
    Claim, ClaimHolder, HttpProxyReport, Outcome, Phase, PlanSummary, RevertSpec, Sample,
};

pub use crate::vocab::{FaultId, RunId};

/// One journal line. `at` is the time since the run's start (monotonic clock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// First line of every journal.
    RunStarted {
        /// The run.
        run_id: RunId,
        /// Wall-clock start, RFC 3339.
        started_at: jiff::Timestamp,
        /// Process id of the runner.
        pid: u32,
        /// chaosforge version that wrote the journal.
        version: String,
        /// Everything a report needs to know about the plan.
        plan: PlanSummary,
    },
    /// A phase began.
    Phase {
        /// Which.
        phase: Phase,
        /// When.
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
    /// One probe measurement.
    Sample {
        /// Index of the monitor in the plan.
        monitor: usize,
        /// The phase the sample *started* in.
        phase: Phase,
        /// The measurement.
        #[serde(flatten)]
        sample: Sample,
    },
    /// About to inject; written durably before the first change.
    Injecting {
        /// The fault instance.
        fault: FaultId,
        /// The fault's name in the plan.
        name: String,
        /// The target's name.
        target: String,
        /// The fault kind (`latency`, `pause`, …).
        kind: String,
        /// How to undo it, from this record alone.
        revert: RevertSpec,
        /// When.
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
    /// Injection completed.
    Injected {
        /// The fault instance.
        fault: FaultId,
        /// When.
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
    /// Injection failed; anything partly done is still to be reverted.
    InjectFailed {
        /// The fault instance.
        fault: FaultId,
        /// Why.
        error: String,
        /// When.
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
    /// The fault was reverted (or found to need no revert).
    Reverted {
        /// The fault instance.
        fault: FaultId,
        /// Who reverted it: `run`, `drop` or `recover`.
        by: String,
        /// What was done, for the record (e.g. "SIGCONT sent", "process already gone").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        /// When (for `recover`, relative to the journal's run start is meaningless: wall time
        /// of the recovery lives in `note`).
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
    /// Reverting failed; the fault may still be active.
    RevertFailed {
        /// The fault instance.
        fault: FaultId,
        /// Why.
        error: String,
        /// When.
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
    /// A policy halted the run.
    Halted {
        /// The policy (`halt_when`, `signal`).
        policy: String,
        /// Why, with the observed value.
        reason: String,
        /// When.
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
    /// The hypothesis held again after the faults were reverted (`ttr` is the time to recover),
    /// or did not within `recover_within` (`ttr` absent).
    Recovery {
        /// Time from the last revert until the hypothesis held again.
        #[serde(
            default,
            rename = "ttr_ms",
            skip_serializing_if = "Option::is_none",
            with = "crate::units::opt_millis"
        )]
        ttr: Option<Duration>,
        /// When the faults were all reverted.
        #[serde(rename = "reverted_at_ms", with = "crate::units::millis")]
        reverted_at: Duration,
        /// When the judgement was made.
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
    /// What the rules of an HTTP proxy target did, taken before the proxy stopped: counters
    /// and security findings.
    HttpProxyReport {
        /// The target.
        target: String,
        /// Its report.
        report: HttpProxyReport,
        /// When.
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
    /// The run took its claims (`crate::claims`): the targets and kernel resources it holds
    /// exclusively until it finishes. Written before anything is started or injected.
    Claimed {
        /// Who holds them.
        holder: ClaimHolder,
        /// What is held.
        claims: Vec<Claim>,
        /// How long the run waited for another run's claims (`--wait-for-targets`).
        #[serde(
            default,
            rename = "waited_ms",
            skip_serializing_if = "Option::is_none",
            with = "crate::units::opt_millis"
        )]
        waited: Option<Duration>,
        /// When.
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
    /// Last line of a run.
    RunFinished {
        /// How it ended.
        outcome: Outcome,
        /// When.
        #[serde(rename = "at_ms", with = "crate::units::millis")]
        at: Duration,
    },
}

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// Creating, writing or syncing failed.
    #[error("journal {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line is not a journal event (other than a torn last line).
    #[error("journal {path}:{line}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The decoder's complaint.
        message: String,
    },
}

/// An open journal: cheap to clone, safe to share between tasks.
#[derive(Debug, Clone)]
pub struct Journal {
    inner: Arc<Mutex<Inner>>,
    path: PathBuf,
    epoch: tokio::time::Instant,
}

#[derive(Debug)]
struct Inner {
    file: File,
    // Held for the life of the run; `recover` tests it to tell live runs from dead ones.
    _lock: File,
    audit: Audit,
}

/// What the audit lines of one journal need to say beyond each event.
#[derive(Debug, Default)]
struct Audit {
    state_dir: PathBuf,
    run: String,
    experiment: Option<String>,
    file: Option<String>,
    /// Fault id → (name, target, kind), from `Injecting`: later events carry only the id.
    faults: BTreeMap<FaultId, (String, String, String)>,
}

/// A run's directory, found by [`runs`].
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The run.
    pub id: RunId,
    /// `runs/<id>`.
    pub dir: PathBuf,
}

/// Creates `dir`, takes its `lock` file's exclusive lock (without waiting) and creates the new
/// append-only `name` in it, with the directory entries made durable too: a log that vanishes
/// with its directory after a power cut cannot be recovered from. Returns the log, the held
/// lock and the log's path. Run journals and game day journals are made the same way.
pub(crate) fn create_locked(dir: &Path, name: &str) -> Result<(File, File, PathBuf), JournalError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| JournalError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let lock_path = dir.join("lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|e| io(&lock_path)(e.into()))?;
    let path = dir.join(name);
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok((file, lock, path))
}

/// How often, and how many times, `open_dead` tries again for the lock of a run whose runner is
/// gone (5 s in all: a child takes that long from its fork to its exec only on a machine that
/// is very loaded indeed).
const HANDOVER_POLL: Duration = Duration::from_millis(10);
const HANDOVER_POLLS: u32 = 500;

// === impl Journal ===

impl Journal {
    /// Creates `state_dir/runs/<run_id>/journal.jsonl` and takes the run's lock.
    pub fn create(state_dir: &Path, run_id: &RunId) -> Result<Journal, JournalError> {
        let dir = state_dir.join("runs").join(&run_id.0);
        let (file, lock, path) = create_locked(&dir, "journal.jsonl")?;
        Ok(Journal {
            inner: Arc::new(Mutex::new(Inner {
                file,
                _lock: lock,
                audit: Audit::new(state_dir, run_id),
            })),
            path,
            epoch: tokio::time::Instant::now(),
        })
    }

    /// Opens an existing journal for appending (used by `recover`), taking the run's lock.
    /// Returns `Ok(None)` when the run is still alive (its lock is held by another process).
    /// When the lock is held but the journal's runner is gone, the holder is a child the runner
    /// was starting as it died, between its fork and its exec: this waits (up to 5 s, blocking)
    /// for that child to let go rather than mistake the dead run for a live one.
    pub fn open_dead(dir: &Path) -> Result<Option<Journal>, JournalError> {
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| JournalError::Io {
                path: lock_path.clone(),
                source,
            })?;
        let try_lock =
            || rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        let mut locked = try_lock();
        // A flock belongs to the open file, which a child shares from its fork until its exec
        // closes it: a runner killed while it was starting a child (tc, nft, a stress worker)
        // leaves its lock held for the moment that child takes to reach its exec, and for that
        // moment the dead run would look alive and keep every fault it left. So when the journal
        // says its runner is gone, the lock is waited for (briefly: a child that never execs
        // does not exist here; past that it is a live holder after all, such as another
        // `recover`).
        if locked == Err(rustix::io::Errno::WOULDBLOCK) && runner_gone(dir) {
            for _ in 0..HANDOVER_POLLS {
                std::thread::sleep(HANDOVER_POLL);
                locked = try_lock();
                if locked != Err(rustix::io::Errno::WOULDBLOCK) {
                    break;
                }
            }
        }
        match locked {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => {
                return Err(JournalError::Io {
                    path: lock_path,
                    source: e.into(),
                });
            }
        }
        Self::open_existing(dir, lock, true).map(Some)
    }

    /// Opens the journal of a run whose runner still holds its lock but stopped heartbeating
    /// (`crate::deadman`), for appending, holding `fence` (the locked takeover record) instead
    /// of the run's lock. The torn tail is not cut: the runner has the file open, and a stopped
    /// process is never halfway through a `write`; a missing last newline is supplied instead.
    pub fn open_taken_over(dir: &Path, fence: File) -> Result<Journal, JournalError> {
        Self::open_existing(dir, fence, false)
    }

    fn open_existing(dir: &Path, lock: File, cut_torn_tail: bool) -> Result<Journal, JournalError> {
        let path = dir.join("journal.jsonl");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|source| JournalError::Io {
                path: path.clone(),
                source,
            })?;
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        if cut_torn_tail {
            drop_torn_tail(&file).map_err(io)?;
        } else if !ends_with_newline(&file).map_err(io)? {
            file.write_all(b"\n").map_err(io)?;
        }
        // `<state>/runs/<id>`: the audit log lives two levels up. What the run said about
        // itself (experiment, faults) comes from its journal, read now that it is ours.
        let id = RunId(
            dir.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into()),
        );
        let state_dir = dir.parent().and_then(Path::parent).unwrap_or(dir);
        let mut audit = Audit::new(state_dir, &id);
        for e in read(&path).unwrap_or_default() {
            audit.learn(&e);
        }
        Ok(Journal {
            inner: Arc::new(Mutex::new(Inner {
                file,
                _lock: lock,
                audit,
            })),
            path,
            epoch: tokio::time::Instant::now(),
        })
    }

    /// Time since the run started (for a journal opened by `recover`: since it was opened).
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The instant `now()` counts from.
    pub fn epoch(&self) -> tokio::time::Instant {
        self.epoch
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event with a single `write` (no fsync).
    pub fn append(&self, event: &Event) -> Result<(), JournalError> {
        self.write(event, false)
    }

    /// Appends one event and waits until it is on disk. Used for everything a `recover` needs.
    pub fn append_durable(&self, event: &Event) -> Result<(), JournalError> {
        self.write(event, true)
    }

    fn write(&self, event: &Event, durable: bool) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(event).map_err(|e| JournalError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        // A poisoned lock only means another task panicked mid-write; the file is still usable
        // and losing the journal would be worse than a torn line.
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        inner.file.write_all(&line).map_err(io)?;
        if durable {
            inner.file.sync_data().map_err(io)?;
        }
        inner.audit.record(event);
        Ok(())
    }
}

// === impl Audit ===

impl Audit {
    fn new(state_dir: &Path, run_id: &RunId) -> Self {
        Audit {
            state_dir: state_dir.to_path_buf(),
            run: run_id.0.clone(),
            ..Audit::default()
        }
    }

    /// Takes what later audit lines need from `event`.
    fn learn(&mut self, event: &Event) {
        match event {
            Event::RunStarted { plan, .. } => {
                self.experiment = Some(plan.name.clone());
                self.file = Some(plan.file.clone());
            }
            Event::Injecting {
                fault,
                name,
                target,
                kind,
                ..
            } => {
                self.faults
                    .insert(*fault, (name.clone(), target.clone(), kind.clone()));
            }
            _ => {}
        }
    }

    /// Appends the audit line of `event`, if it is one the audit log records. Errors are
    /// logged, not returned: the journal line is written, and a revert must never fail because
    /// the audit log could not be.
    fn record(&mut self, event: &Event) {
        self.learn(event);
        let (action, fault, detail) = match event {
            Event::RunStarted { .. } => ("run_start", None, None),
            Event::Claimed { claims, .. } => {
                let what: Vec<&str> = claims.iter().map(|c| c.resource.as_str()).collect();
                ("claim", None, Some(what.join(", ")))
            }
            Event::Injecting { fault, .. } => ("inject", Some(fault), None),
            Event::InjectFailed { fault, error, .. } => {
                ("inject_failed", Some(fault), Some(error.clone()))
            }
            Event::Reverted {
                fault, by, note, ..
            } => (
                "revert",
                Some(fault),
                Some(match note {
                    Some(n) => format!("by {by}: {n}"),
                    None => format!("by {by}"),
                }),
            ),
            Event::RevertFailed { fault, error, .. } => {
                ("revert_failed", Some(fault), Some(error.clone()))
            }
            Event::Halted { policy, reason, .. } => {
                ("halt", None, Some(format!("{policy}: {reason}")))
            }
            Event::RunFinished { outcome, .. } => ("run_end", None, Some(outcome.headline())),
            _ => return,
        };
        let mut rec = crate::audit::record(action, &self.run);
        rec.experiment = self.experiment.clone();
        rec.file = self.file.clone();
        if action == "run_start" {
            // The content the run was started from, read now: the file as it was when the
            // runner loaded it, to within the moment between loading and starting.
            rec.sha256 = self.file.as_ref().map(|f| match fs::read(f) {
                Ok(bytes) => crate::audit::sha256_hex(&bytes),
                Err(e) => format!("unreadable: {e}"),
            });
        }
        if let Some((name, target, kind)) = fault.and_then(|f| self.faults.get(f)) {
            rec.fault = Some(name.clone());
            rec.target = Some(target.clone());
            rec.kind = Some(kind.clone());
        }
        rec.detail = detail;
        if let Err(e) = crate::audit::append(&self.state_dir, &rec) {
            tracing::warn!("{e}");
        }
    }
}

/// Whether the runner that wrote the journal in `dir` is gone: its pid (from `RunStarted`) no
/// longer runs, is a zombie, or now belongs to another process (the start time its claims
/// recorded differs). `false` when the journal does not say who the runner was.
fn runner_gone(dir: &Path) -> bool {
    let Ok(events) = read(&dir.join("journal.jsonl")) else {
        return false;
    };
    let Some(pid) = events.iter().find_map(|e| match e {
        Event::RunStarted { pid, .. } => Some(*pid),
        _ => None,
    }) else {
        return false;
    };
    let started = events.iter().find_map(|e| match e {
        Event::Claimed { holder, .. } if holder.pid == pid => holder.start_time,
        _ => None,
    });
    match state_of(pid) {
        None | Some('Z') => true,
        Some(_) => started.is_some_and(|t| start_time_of(pid) != Some(t)),
    }
}

/// The start time of `pid` in clock ticks since boot (`/proc/PID/stat` field 22), if it lives.
pub fn start_time_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The state letter of `pid` (`R`, `S`, `T`, `Z`, …), if it exists.
pub fn state_of(pid: u32) -> Option<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text[text.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Cuts a torn last line (a runner killed mid-write) so that what is appended next starts on a
/// line of its own; otherwise the new bytes would glue onto it and corrupt the journal.
fn drop_torn_tail(file: &File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    let mut f = file;
    // Scan back in blocks for the last newline.
    let mut end = len;
    let mut buf = vec![0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep != len {
                file.set_len(keep)?;
                file.sync_data()?;
            }
            return Ok(());
        }
        end = start;
    }
    // Not one complete line: everything is torn.
    if len > 0 {
        file.set_len(0)?;
        file.sync_data()?;
    }
    Ok(())
}

/// Whether `file` is empty or its last byte is a newline.
fn ends_with_newline(file: &File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    let mut f = file;
    let mut last = [0u8; 1];
    f.seek(SeekFrom::Start(len - 1))?;
    f.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// Reads every event of a journal. A torn last line (the runner died mid-write) is skipped;
/// a bad line elsewhere is an error.
pub fn read(path: &Path) -> Result<Vec<Event>, JournalError> {
    let bytes = fs::read(path).map_err(|source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // Split bytes, not text: a line torn inside a multi-byte character must not make the whole
    // journal unreadable.
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let last = lines
        .iter()
        .rposition(|l| !l.iter().all(u8::is_ascii_whitespace))
        .unwrap_or(0);
    let mut events = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        if l.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Event>(l) {
            Ok(e) => events.push(e),
            Err(_) if i == last => break,
            Err(e) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(events)
}

/// Faults announced (`Injecting`) but never `Reverted`, in injection order.
pub fn open_faults(events: &[Event]) -> Vec<(FaultId, String, String, RevertSpec)> {
    let mut open: Vec<(FaultId, String, String, RevertSpec)> = Vec::new();
    for e in events {
        match e {
            Event::Injecting {
                fault,
                name,
                target,
                revert,
                ..
            } => {
                open.push((*fault, name.clone(), target.clone(), revert.clone()));
            }
            Event::Reverted { fault, .. } => open.retain(|(id, ..)| id != fault),
            _ => {}
        }
    }
    open
}

/// Every run directory under `state_dir/runs`, oldest first.
pub fn runs(state_dir: &Path) -> Result<Vec<RunDir>, JournalError> {
    let root = state_dir.join("runs");
    let entries = match fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(JournalError::Io { path: root, source }),
    };
    let mut out: Vec<RunDir> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join("journal.jsonl").is_file())
        .map(|e| RunDir {
            id: RunId(e.file_name().to_string_lossy().into_owned()),
            dir: e.path(),
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// A new run id (UUIDv7: sorts by time).
pub fn new_run_id() -> RunId {
    RunId(uuid::Uuid::now_v7().to_string())
}

#[cfg(test)]
mod tests;
