//! Target claims: the resources a run holds exclusively, so that two runs — in one process or
//! in several — never fault the same target or kernel resource at once.
//!
//! One lock file per resource, `claims/<name>.claim` in the state directory, in the manner of
//! the journal's run lock: the holder keeps an exclusive `flock` on it for as long as the run
//! lives, and the file says who it is ([`ClaimHolder`]: run id, pid and its start time, the
//! experiment, since when). The lock, not the file, is the truth, which is what makes a crash
//! safe: the kernel drops the locks of a process that dies however it dies, so the claims of a
//! dead run never block anyone. Its files stay behind with nobody locking them: the next
//! claimant takes them over, and `recover` deletes them ([`sweep`]).
//!
//! A file whose lock *is* held while its holder pid is gone, or is a process with another start
//! time, is stale too (a descriptor that outlived the runner in some other process): it is taken
//! over by replacing the file, never waited for.
//!
//! A set of claims is all-or-nothing: [`acquire`] takes `claims/.lock` while it locks each
//! resource, so no other claimant sees half a set, and on the first resource held by someone
//! else it releases what it took and names the holder. Releasing ([`ClaimGuard`]'s drop)
//! deletes each file while still holding its lock; a claimant that opened the file just before
//! checks after locking that the path still names the file it locked, and retries otherwise.
//!
//! A dead holder whose journal still has faults open is the exception: its resources are
//! refused ([`ClaimError::Unrecovered`]) until `chaosforge recover` has undone them, so a new
//! run never stacks its faults on faults nobody is in charge of. Imports `vocab`, `journal`
//! (to read a dead holder's open faults) and `audit` (for SHA-256).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

pub use crate::vocab::{Claim, ClaimHolder};

/// The directory of the claim files in the state directory.
pub const DIR: &str = "claims";

/// Held claims; dropping it releases them (and deletes their files).
#[derive(Debug)]
pub struct ClaimGuard {
    held: Vec<(PathBuf, File)>,
}

/// Why claims could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// Another live run holds one of the resources.
    #[error("{} (target `{}`) is claimed by {}", claim.resource, claim.target, holder.as_ref().map_or_else(|| "another process that is claiming it right now".into(), |h| h.describe()))]
    Held {
        /// Our claim that conflicts.
        claim: Claim,
        /// Who holds it, when the file says (boxed: errors stay small).
        holder: Option<Box<ClaimHolder>>,
    },
    /// The claim's holder died leaving faults open (its journal says so): taking the resource
    /// over would stack a fault on a fault nobody is in charge of. `recover` undoes them.
    #[error("{} (target `{}`) is claimed by dead {}, which left faults open; run `chaosforge recover` first", claim.resource, claim.target, holder.describe())]
    Unrecovered {
        /// Our claim that conflicts.
        claim: Claim,
        /// The dead holder.
        holder: Box<ClaimHolder>,
    },
    /// A claim file could not be opened, locked or written.
    #[error("claims {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What a claim file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// The claim.
    pub claim: Claim,
    /// Its holder.
    pub holder: ClaimHolder,
}

// === impl ClaimGuard ===

impl ClaimGuard {
    /// The claim files held.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.held.iter().map(|(p, _)| p.as_path())
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        for (path, file) in self.held.drain(..) {
            // Delete while still locked, and only the file we locked: nobody replaces a file
            // whose holder is alive, so the check is a belt to the lock's braces.
            if same_file(&file, &path) {
                let _ = std::fs::remove_file(&path);
            }
            drop(file);
        }
    }
}

// === functions ===

// The runner-identity helpers live with the journal, which needs them to tell a dead run.
pub use crate::journal::{start_time_of, state_of};

/// The holder record for a run of this process, with our start time.
pub fn holder_here(run_id: crate::vocab::RunId, experiment: &str) -> ClaimHolder {
    let pid = std::process::id();
    ClaimHolder {
        run_id,
        pid,
        start_time: start_time_of(pid),
        experiment: experiment.into(),
        since: jiff::Timestamp::now(),
    }
}

/// Whether `h`'s process still runs: the same pid with the same start time.
pub fn holder_alive(h: &ClaimHolder) -> bool {
    match start_time_of(h.pid) {
        None => false,
        Some(now) => h.start_time.is_none_or(|t| t == now),
    }
}

/// The file of `resource`: readable, and unique by a hash of the whole key.
fn file_name(resource: &str) -> String {
    let readable: String = resource
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let hash = crate::audit::sha256_hex(resource.as_bytes());
    format!("{readable}-{}.claim", &hash[..16])
}

/// Takes every claim in `claims` for `holder`, or none: the first resource another live run
/// holds is [`ClaimError::Held`], naming it. Never blocks on a holder (callers that want to
/// wait retry); blocks at most 10 s on a claimant stuck inside its own `acquire`.
pub fn acquire(
    state_dir: &Path,
    holder: &ClaimHolder,
    claims: &[Claim],
) -> Result<ClaimGuard, ClaimError> {
    let dir = state_dir.join(DIR);
    std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
    let _set = lock_dir(&dir)?;
    let mut guard = ClaimGuard { held: Vec::new() };
    let mut claims: Vec<&Claim> = claims.iter().collect();
    claims.sort();
    claims.dedup_by(|a, b| a.resource == b.resource);
    for claim in claims {
        let path = dir.join(file_name(&claim.resource));
        let file = lock_one(state_dir, &path, claim)?;
        let record = ClaimRecord {
            claim: claim.clone(),
            holder: holder.clone(),
        };
        write_record(&file, &record).map_err(io_at(&path))?;
        guard.held.push((path, file));
    }
    Ok(guard)
}

/// Locks `path` for `claim`, taking over a stale file; `Held` when a live run has it.
fn lock_one(state_dir: &Path, path: &Path, claim: &Claim) -> Result<File, ClaimError> {
    // Bounded: each retry follows a file that vanished or was stale, which cannot go on long.
    for _ in 0..100 {
        let file = open(path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) if same_file(&file, path) => {
                // Free: its holder is gone. Taken over, unless that run left faults open.
                if let Some(r) = read_record(&file)
                    && left_open(state_dir, &r.holder)
                {
                    return Err(ClaimError::Unrecovered {
                        claim: claim.clone(),
                        holder: Box::new(r.holder),
                    });
                }
                return Ok(file);
            }
            // Deleted by its holder between our open and our lock: open the new one.
            Ok(()) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) => match read_record(&file) {
                Some(r) if !holder_alive(&r.holder) => {
                    if left_open(state_dir, &r.holder) {
                        return Err(ClaimError::Unrecovered {
                            claim: claim.clone(),
                            holder: Box::new(r.holder),
                        });
                    }
                    // Locked by something that is not its holder: replace it (we hold the
                    // directory lock, so no other claimant is looking at it).
                    std::fs::remove_file(path).map_err(io_at(path))?;
                }
                holder => {
                    return Err(ClaimError::Held {
                        claim: claim.clone(),
                        holder: holder.map(|r| Box::new(r.holder)),
                    });
                }
            },
            Err(e) => return Err(io_at(path)(e.into())),
        }
    }
    Err(io_at(path)(std::io::Error::other(
        "the claim file kept changing under us",
    )))
}

/// Whether the dead `holder`'s journal has faults injected and not reverted.
fn left_open(state_dir: &Path, holder: &ClaimHolder) -> bool {
    let path = state_dir
        .join("runs")
        .join(&holder.run_id.0)
        .join("journal.jsonl");
    crate::journal::read(&path).is_ok_and(|events| !crate::journal::open_faults(&events).is_empty())
}

/// Frees every claim whose holder is dead (its lock is free, or its pid is gone or another
/// process); returns what was freed. Live runs' claims are left alone. What `recover` calls.
pub fn sweep(state_dir: &Path) -> Result<Vec<ClaimRecord>, ClaimError> {
    let dir = state_dir.join(DIR);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let _set = lock_dir(&dir)?;
    let mut freed = Vec::new();
    for path in claim_files(&dir)? {
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        let record = read_record(&file);
        let stale = match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => same_file(&file, &path),
            Err(rustix::io::Errno::WOULDBLOCK) => {
                record.as_ref().is_some_and(|r| !holder_alive(&r.holder))
            }
            Err(e) => return Err(io_at(&path)(e.into())),
        };
        if stale {
            std::fs::remove_file(&path).map_err(io_at(&path))?;
            freed.extend(record);
        }
    }
    Ok(freed)
}

/// Every claim held now by a live run (for `halt`, tests and diagnostics).
pub fn held(state_dir: &Path) -> Result<Vec<ClaimRecord>, ClaimError> {
    let dir = state_dir.join(DIR);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for path in claim_files(&dir)? {
        let Ok(file) = File::open(&path) else {
            continue;
        };
        // A lock we can take is a claim nobody holds; ours is released at once (drop).
        let locked = matches!(
            flock(&file, FlockOperation::NonBlockingLockShared),
            Err(rustix::io::Errno::WOULDBLOCK)
        );
        if let Some(r) = read_record(&file).filter(|r| locked && holder_alive(&r.holder)) {
            out.push(r);
        }
    }
    out.sort_by(|a, b| a.claim.cmp(&b.claim));
    Ok(out)
}

/// Every `*.claim` file in `dir`, sorted.
pub fn claim_files(dir: &Path) -> Result<Vec<PathBuf>, ClaimError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_at(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "claim"))
        .collect();
    files.sort();
    Ok(files)
}

/// The directory lock, held while a set of claims is taken or swept. Waits at most 10 s: its
/// holders only open and write small files.
fn lock_dir(dir: &Path) -> Result<File, ClaimError> {
    let path = dir.join(".lock");
    let file = open(&path)?;
    for _ in 0..2000 {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::WOULDBLOCK) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(io_at(&path)(e.into())),
        }
    }
    Err(io_at(&path)(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "another process held the claims directory lock for 10 s",
    )))
}

fn open(path: &Path) -> Result<File, ClaimError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_at(path))
}

/// Whether `path` still names the file `file` is open on.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn read_record(mut file: &File) -> Option<ClaimRecord> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_record(mut file: &File, record: &ClaimRecord) -> std::io::Result<()> {
    let text = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&text)
}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> ClaimError + '_ {
    move |source| ClaimError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::RunId;

    fn claim(r: &str) -> Claim {
        Claim {
            resource: r.into(),
            target: "t".into(),
        }
    }

    #[test]
    fn a_second_claimant_is_refused_naming_the_holder_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let a = holder_here(RunId("run-a".into()), "exp-a");
        let b = holder_here(RunId("run-b".into()), "exp-b");
        let g = acquire(dir.path(), &a, &[claim("process:1@2"), claim("host:local")]).unwrap();
        assert_eq!(held(dir.path()).unwrap().len(), 2);
        // All or nothing: b's free resource is not kept when another one is held.
        let err = acquire(dir.path(), &b, &[claim("listen:x"), claim("process:1@2")]).unwrap_err();
        match &err {
            ClaimError::Held { claim, holder } => {
                assert_eq!(claim.resource, "process:1@2");
                assert_eq!(holder.as_ref().unwrap().run_id.0, "run-a");
            }
            e => panic!("{e}"),
        }
        assert!(err.to_string().contains("experiment `exp-a`"), "{err}");
        assert_eq!(held(dir.path()).unwrap().len(), 2);
        drop(g);
        assert!(claim_files(&dir.path().join(DIR)).unwrap().is_empty());
        let _g = acquire(dir.path(), &b, &[claim("process:1@2")]).unwrap();
    }

    #[test]
    fn a_dead_holders_claims_are_taken_over_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let mut dead = holder_here(RunId("run-dead".into()), "exp");
        // Our pid with another start time: a process that is gone.
        dead.start_time = dead.start_time.map(|t| t + 1);
        // Still locked (we hold the guard) but its holder is dead: stale, taken over.
        let g = acquire(dir.path(), &dead, &[claim("process:9@9"), claim("other")]).unwrap();
        let b = holder_here(RunId("run-b".into()), "exp-b");
        let gb = acquire(dir.path(), &b, &[claim("process:9@9")]).unwrap();
        drop(gb);
        // Close without deleting: a lock file nobody locks, what a SIGKILLed runner leaves.
        let mut g = g;
        drop(std::mem::take(&mut g.held));
        let freed = sweep(dir.path()).unwrap();
        assert!(freed.iter().any(|r| r.claim.resource == "other"));
        assert!(claim_files(&dir.path().join(DIR)).unwrap().is_empty());
    }

    #[test]
    fn a_live_holder_is_not_swept() {
        let dir = tempfile::tempdir().unwrap();
        let a = holder_here(RunId("run-a".into()), "exp-a");
        let _g = acquire(dir.path(), &a, &[claim("process:1@2")]).unwrap();
        assert!(sweep(dir.path()).unwrap().is_empty());
        assert_eq!(held(dir.path()).unwrap().len(), 1);
    }
}
