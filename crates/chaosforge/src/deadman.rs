//! The dead-man switch: a run's heartbeat, and the record of a takeover when it stops.
//!
//! A runner that is alive but stuck (SIGSTOPped, deadlocked, its host frozen) keeps its journal
//! lock, so the lock alone cannot tell `recover` that nobody is in charge of its faults. So the
//! engine also beats: it rewrites `runs/<id>/heartbeat` ([`HeartbeatRecord`]: pid, interval,
//! timeout, count, wall time) every [`Heartbeat::interval`] from its own loop — the one that
//! records samples and judges policies, not a side task — so a wedged engine stops beating too.
//! A run whose last beat is older than its [`Heartbeat::timeout`] is no longer in charge of its
//! faults, whatever its lock says.
//!
//! Taking over is one file, `runs/<id>/deadman` ([`Takeover`]), written by `recover` under an
//! exclusive `flock` on it, *before* it reverts anything: the flock keeps two recoverers apart,
//! and the file tells the runner, should it wake up, that its faults are someone else's now.
//! A runner that finds it injects nothing more, waits until the flock is free (the recoverer is
//! done), reverts whatever it still holds — reverts are idempotent, and a fault it applied in
//! the instant before it froze, after `recover` read the journal, must not stay behind — and
//! halts without closing the journal a second time.
//!
//! Imports nothing of the crate: the journal and `recover` sit over it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The policy a run's outcome names when the dead-man switch reverted its faults.
pub const POLICY: &str = "deadman";

/// The heartbeat file's name in a run's directory.
pub const HEARTBEAT_FILE: &str = "heartbeat";

/// The takeover record's name in a run's directory.
pub const TAKEOVER_FILE: &str = "deadman";

/// How often a run beats and how old its last beat may get before `recover` takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Time between beats (1 s by default).
    pub interval: Duration,
    /// Age of the last beat after which the run's faults are reverted (5 s by default). At
    /// least two intervals, so that one late beat is not a death.
    pub timeout: Duration,
}

/// What the heartbeat file says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatRecord {
    /// The runner.
    pub pid: u32,
    /// Its beat interval.
    #[serde(rename = "interval_ms", with = "millis")]
    pub interval: Duration,
    /// Its timeout.
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
    /// Beats so far.
    pub beats: u64,
    /// Wall time of the last beat: the only clock two processes share.
    pub at: jiff::Timestamp,
}

/// Writes a run's heartbeat; owned by the engine's loop.
#[derive(Debug)]
pub struct Beater {
    path: PathBuf,
    tmp: PathBuf,
    record: HeartbeatRecord,
    last: tokio::time::Instant,
}

/// Who took over a run's faults, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Takeover {
    /// Why, for the journal and the runner (`runner stopped heartbeating (last beat 6.2s ago)`).
    pub reason: String,
    /// The recoverer's pid.
    pub pid: u32,
    /// When.
    pub at: jiff::Timestamp,
}

/// A takeover held by this process: the record, and the flock that keeps other recoverers out
/// until it is dropped.
#[derive(Debug)]
pub struct TakeoverGuard {
    /// What the file says.
    pub takeover: Takeover,
    /// The file, locked.
    pub file: File,
}

// === impl Heartbeat ===

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        }
    }
}

impl Heartbeat {
    /// The default interval with `timeout`; refused when the timeout is under two intervals.
    pub fn with_timeout(timeout: Duration) -> Result<Self, String> {
        let h = Heartbeat {
            timeout,
            ..Heartbeat::default()
        };
        if timeout < h.interval * 2 {
            return Err(format!(
                "the heartbeat timeout must be at least two beat intervals ({} ms), got {} ms",
                (h.interval * 2).as_millis(),
                timeout.as_millis()
            ));
        }
        Ok(h)
    }
}

// === impl Beater ===

impl Beater {
    /// Writes the first beat of the run in `run_dir`.
    pub fn start(run_dir: &Path, heartbeat: Heartbeat) -> std::io::Result<Beater> {
        let mut b = Beater {
            path: run_dir.join(HEARTBEAT_FILE),
            tmp: run_dir.join(format!(".{HEARTBEAT_FILE}.tmp")),
            record: HeartbeatRecord {
                pid: std::process::id(),
                interval: heartbeat.interval,
                timeout: heartbeat.timeout,
                beats: 0,
                at: jiff::Timestamp::now(),
            },
            last: tokio::time::Instant::now(),
        };
        b.write()?;
        Ok(b)
    }

    /// The beat interval.
    pub fn interval(&self) -> Duration {
        self.record.interval
    }

    /// Beats if an interval has passed since the last beat. A failed write is logged, not
    /// returned: the run goes on, and if beats keep failing `recover` reverts its faults, which
    /// is the safe side.
    pub fn beat(&mut self) {
        if self.last.elapsed() < self.record.interval {
            return;
        }
        if let Err(e) = self.write() {
            tracing::warn!("heartbeat {}: {e}", self.path.display());
        }
    }

    fn write(&mut self) -> std::io::Result<()> {
        self.record.beats += 1;
        self.record.at = jiff::Timestamp::now();
        self.last = tokio::time::Instant::now();
        let text = serde_json::to_vec(&self.record).map_err(std::io::Error::other)?;
        // Write aside and rename: a reader sees the old beat or the new one, never half of one.
        // No fsync: beats matter to processes on this machine, which share the page cache.
        fs::write(&self.tmp, text)?;
        fs::rename(&self.tmp, &self.path)
    }
}

// === functions ===

/// The heartbeat of the run in `run_dir`, if it has a readable one (runs by older versions have
/// none and are judged by their lock alone).
pub fn read(run_dir: &Path) -> Option<HeartbeatRecord> {
    let text = fs::read(run_dir.join(HEARTBEAT_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// How long ago the last beat was, if that is longer than the run's timeout. Pure.
pub fn overdue(record: &HeartbeatRecord, now: jiff::Timestamp) -> Option<Duration> {
    let age = now.duration_since(record.at);
    let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
    (age > record.timeout).then_some(age)
}

/// Why a run whose last beat was `age` ago is taken over (journaled with `recovered: ` before).
pub fn reason(age: Duration) -> String {
    format!(
        "runner stopped heartbeating (last beat {:.1}s ago)",
        age.as_secs_f64()
    )
}

/// The takeover of the run in `run_dir`, if there is one. A file that cannot be read as one is
/// still a takeover: not touching faults again is the safe side.
pub fn taken_over(run_dir: &Path) -> Option<Takeover> {
    let path = run_dir.join(TAKEOVER_FILE);
    if !path.exists() {
        return None;
    }
    let text = fs::read(&path).unwrap_or_default();
    Some(serde_json::from_slice(&text).unwrap_or(Takeover {
        reason: "taken over by `chaosforge recover`".into(),
        pid: 0,
        at: jiff::Timestamp::now(),
    }))
}

/// Takes over the run in `run_dir`: creates (or opens) its takeover record under an exclusive
/// flock, and writes `reason` into it unless an earlier recoverer (which died before finishing)
/// already did. `Ok(None)` when another recoverer holds it now.
pub fn take_over(run_dir: &Path, reason: &str) -> std::io::Result<Option<TakeoverGuard>> {
    let path = run_dir.join(TAKEOVER_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    if let Some(takeover) = fs::read(&path)
        .ok()
        .and_then(|t| serde_json::from_slice::<Takeover>(&t).ok())
    {
        return Ok(Some(TakeoverGuard { takeover, file }));
    }
    let takeover = Takeover {
        reason: reason.to_string(),
        pid: std::process::id(),
        at: jiff::Timestamp::now(),
    };
    let text = serde_json::to_vec(&takeover).map_err(std::io::Error::other)?;
    file.set_len(0)?;
    file.write_all(&text)?;
    // Durable before the first revert: a runner that wakes after a power cut must still see it.
    file.sync_all()?;
    Ok(Some(TakeoverGuard { takeover, file }))
}

/// Waits until no recoverer holds the takeover of the run in `run_dir` (it has finished
/// reverting), at most `limit`; `false` when it still held it then.
pub async fn wait_released(run_dir: &Path, limit: Duration) -> bool {
    let Ok(file) = File::open(run_dir.join(TAKEOVER_FILE)) else {
        return true;
    };
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        // A shared lock is enough to know the exclusive one is gone, and never blocks another
        // reader.
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
            Err(rustix::io::Errno::WOULDBLOCK) => {}
            _ => return true,
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Durations as integer milliseconds, as the journal writes them.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at: jiff::Timestamp) -> HeartbeatRecord {
        HeartbeatRecord {
            pid: 1,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            beats: 3,
            at,
        }
    }

    #[test]
    fn a_beat_is_overdue_only_past_its_timeout() {
        let at: jiff::Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let later = |ms: i64| at + jiff::SignedDuration::from_millis(ms);
        assert_eq!(overdue(&record(at), later(4_900)), None);
        assert_eq!(overdue(&record(at), later(5_000)), None);
        assert_eq!(
            overdue(&record(at), later(6_200)),
            Some(Duration::from_millis(6_200))
        );
        // A beat from the future (a clock step back) is not a death.
        assert_eq!(overdue(&record(at), later(-10_000)), None);
        assert_eq!(
            reason(Duration::from_millis(6_200)),
            "runner stopped heartbeating (last beat 6.2s ago)"
        );
    }

    #[test]
    fn a_timeout_under_two_intervals_is_refused() {
        assert!(Heartbeat::with_timeout(Duration::from_millis(1_500)).is_err());
        assert_eq!(
            Heartbeat::with_timeout(Duration::from_secs(5)).unwrap(),
            Heartbeat::default()
        );
    }

    #[tokio::test]
    async fn beats_are_readable_and_a_takeover_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let b = Beater::start(dir.path(), Heartbeat::default()).unwrap();
        let r = read(dir.path()).unwrap();
        assert_eq!((r.pid, r.beats), (std::process::id(), 1));
        drop(b);
        assert!(taken_over(dir.path()).is_none());
        let first = take_over(dir.path(), "because").unwrap().unwrap();
        // Held: a second recoverer (another open file description) keeps out, and a runner
        // waiting for it times out.
        assert!(take_over(dir.path(), "again").unwrap().is_none());
        assert!(!wait_released(dir.path(), Duration::from_millis(50)).await);
        assert_eq!(taken_over(dir.path()).unwrap().reason, "because");
        drop(first);
        assert!(wait_released(dir.path(), Duration::from_millis(50)).await);
        // A later recoverer keeps the first reason.
        let again = take_over(dir.path(), "other").unwrap().unwrap();
        assert_eq!(again.takeover.reason, "because");
    }
}
