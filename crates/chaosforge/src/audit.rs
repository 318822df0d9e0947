//! The audit log: `audit.jsonl` in the state directory, one JSON line per run start, claim,
//! injection, revert, halt and run end, by every run on the machine, hash-chained.
//!
//! Each line carries `prev`, the SHA-256 of the previous line's bytes (the first line chains to
//! [`GENESIS`]), and `hash`, the SHA-256 of the line itself without its `hash` field. So an
//! edited line fails its own hash, and a removed or moved line breaks the chain where it was;
//! [`verify`] names the first line that does not check out. A chain only proves that nothing
//! *inside* it changed: whoever can write the file can rewrite all of it, and cutting lines off
//! the end leaves a valid, shorter chain. Keep the last hash [`verify`] reports somewhere else to
//! detect that.
//!
//! Appends are safe from many processes at once: each takes an exclusive `flock` on the file,
//! reads the last line to chain to, and writes its line with one `write` on an `O_APPEND`
//! descriptor, then `fsync`s. A line torn by a crash (no final newline) was never a record, so
//! the next append cuts it before chaining, as the journal does.
//!
//! The journal feeds this log (`Journal` writes a line for each event listed above), so every
//! path that changes a target — the run, a dropped guard, `recover` — is audited. Audit errors
//! are logged, never returned to the run: a revert must not fail because the audit could not be
//! written. Imports `vocab` only.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the first line chains to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The audit log's file name in the state directory.
pub const FILE: &str = "audit.jsonl";

/// One audit line, before it is chained (`prev` and `hash` are added by [`append`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Wall-clock time of the line.
    pub time: Option<jiff::Timestamp>,
    /// What happened: `run_start`, `claim`, `inject`, `inject_failed`, `revert`,
    /// `revert_failed`, `halt_request`, `halt`, `run_end`.
    pub action: String,
    /// `$USER` (or `$LOGNAME`) of the process that wrote the line.
    pub user: String,
    /// Its real uid.
    pub uid: u32,
    /// The machine's host name.
    pub host: String,
    /// The process that wrote the line.
    pub pid: u32,
    /// The run.
    pub run: String,
    /// The experiment's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
    /// The experiment file, as the user named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// SHA-256 of the experiment file's content when the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The fault's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// The fault's kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Anything else: who reverted and how, the halt reason, the outcome, the claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A chained line as it is stored.
#[derive(Debug, Serialize)]
struct Chained<'a> {
    #[serde(flatten)]
    record: &'a AuditRecord,
    prev: &'a str,
}

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Reading, locking or writing the file failed.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The first line of the log that does not check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub problem: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Lines checked.
    pub lines: usize,
    /// The last line's hash: keep it elsewhere to detect lines cut off the end.
    pub last_hash: String,
    /// The first bad line, if any.
    pub bad: Option<BadLine>,
}

// === functions ===

/// SHA-256 of `bytes`, lowercase hex (aws-lc-rs, already rustls' crypto provider).
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    hex(d.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// A record with who and where filled in for this process, `time` now.
pub fn record(action: &str, run: &str) -> AuditRecord {
    AuditRecord {
        time: Some(jiff::Timestamp::now()),
        action: action.into(),
        user: user(),
        uid: rustix::process::getuid().as_raw(),
        host: host(),
        pid: std::process::id(),
        run: run.into(),
        ..AuditRecord::default()
    }
}

fn user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| format!("uid {}", rustix::process::getuid().as_raw()))
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Appends `record` to `state_dir/audit.jsonl`, chained to the last line.
pub fn append(state_dir: &Path, record: &AuditRecord) -> Result<(), AuditError> {
    let path = state_dir.join(FILE);
    let io = |source| AuditError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    lock(&file).map_err(io)?;
    let prev = match last_line(&mut file).map_err(io)? {
        Some(line) => sha256_hex(&line),
        None => GENESIS.to_string(),
    };
    let line = chain(record, &prev).map_err(|e| io(std::io::Error::other(e)))?;
    // One write on an O_APPEND descriptor, under the lock: whole lines, in chain order.
    file.write_all(line.as_bytes()).map_err(io)?;
    file.sync_data().map_err(io)?;
    Ok(())
}

/// The stored line for `record` after `prev`, with its newline.
fn chain(record: &AuditRecord, prev: &str) -> serde_json::Result<String> {
    let body = serde_json::to_string(&Chained { record, prev })?;
    let hash = sha256_hex(body.as_bytes());
    // `body` is a JSON object, so it ends in `}`; the hash goes in as its last member.
    let open = body.strip_suffix('}').unwrap_or(&body);
    Ok(format!("{open},\"hash\":\"{hash}\"}}\n"))
}

/// Takes the exclusive lock, waiting at most 10 s: a writer that holds it for longer is stuck
/// (stopped, say), and a run must not hang on its audit log.
fn lock(file: &File) -> std::io::Result<()> {
    use rustix::fs::{FlockOperation, flock};
    for _ in 0..2000 {
        match flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::WOULDBLOCK) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e.into()),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "another process held the audit log's lock for 10 s",
    ))
}

/// The last complete line (without its newline), after cutting a torn tail.
fn last_line(file: &mut File) -> std::io::Result<Option<Vec<u8>>> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    // Read backwards in blocks until two newlines (or the start) bound the last line.
    let mut tail: Vec<u8> = Vec::new();
    let mut start = len;
    loop {
        let from = start.saturating_sub(4096);
        let mut block = vec![0u8; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&tail);
        tail = block;
        start = from;
        let newlines = tail.iter().filter(|b| **b == b'\n').count();
        if newlines >= 2 || start == 0 {
            break;
        }
    }
    // Cut a torn last line (no newline at the end): it was never a record.
    if tail.last() != Some(&b'\n') {
        let keep = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        file.set_len(start + keep as u64)?;
        tail.truncate(keep);
    }
    let Some(body) = tail.strip_suffix(b"\n") else {
        return Ok(None);
    };
    let from = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    Ok(Some(body[from..].to_vec()))
}

/// Checks the chain of `state_dir/audit.jsonl` line by line; a missing file is an empty chain.
pub fn verify(state_dir: &Path) -> Result<Verified, AuditError> {
    let path = state_dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(AuditError::Io { path, source }),
    };
    Ok(verify_bytes(&bytes))
}

/// [`verify`] over the file's bytes.
pub fn verify_bytes(bytes: &[u8]) -> Verified {
    let mut prev_line: Option<&[u8]> = None;
    let mut last_hash = GENESIS.to_string();
    let mut lines = 0;
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.is_empty() {
        return Verified {
            lines: 0,
            last_hash,
            bad: None,
        };
    }
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let n = i + 1;
        lines = n;
        let bad = |problem: String| Verified {
            lines: n,
            last_hash: last_hash.clone(),
            bad: Some(BadLine { line: n, problem }),
        };
        let (prev, hash) = match fields(line) {
            Ok(f) => f,
            Err(p) => return bad(p),
        };
        let suffix = format!(",\"hash\":\"{hash}\"}}");
        let own = std::str::from_utf8(line)
            .ok()
            .and_then(|l| l.strip_suffix(&suffix))
            .map(|open| sha256_hex(format!("{open}}}").as_bytes()));
        if own.as_deref() != Some(hash.as_str()) {
            return bad("its hash does not match its content: the line was edited".into());
        }
        let expected = prev_line.map_or_else(|| GENESIS.to_string(), sha256_hex);
        if prev != expected {
            return bad(match prev_line {
                None => "it does not start the chain: lines before it were removed".into(),
                Some(_) => format!(
                    "it does not follow line {}: a line was removed, inserted or moved here",
                    n - 1
                ),
            });
        }
        prev_line = Some(line);
        last_hash = hash;
    }
    Verified {
        lines,
        last_hash,
        bad: None,
    }
}

/// `prev` and `hash` of a stored line.
fn fields(line: &[u8]) -> Result<(String, String), String> {
    let v: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| format!("it is not an audit record (not JSON: {e})"))?;
    let get = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_string)
            .ok_or_else(|| format!("it is not an audit record (no `{k}` hash)"))
    };
    Ok((get("prev")?, get("hash")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(n: usize) -> (tempfile::TempDir, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..n {
            let mut r = record("inject", &format!("run-{i}"));
            r.fault = Some(format!("f{i}"));
            append(dir.path(), &r).unwrap();
        }
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        let lines = text.lines().map(str::to_string).collect();
        (dir, lines)
    }

    fn check(lines: &[String]) -> Verified {
        verify_bytes(format!("{}\n", lines.join("\n")).as_bytes())
    }

    #[test]
    fn sha256_is_the_standard_one() {
        // FIPS 180-2 test vector.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_chain_verifies_and_starts_at_genesis() {
        let (dir, lines) = log_of(5);
        let v = verify(dir.path()).unwrap();
        assert_eq!((v.lines, v.bad), (5, None));
        assert!(lines[0].contains(&format!("\"prev\":\"{GENESIS}\"")));
        assert!(lines[1].contains(&sha256_hex(lines[0].as_bytes())));
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(verify(empty.path()).unwrap().bad, None);
    }

    #[test]
    fn tampering_names_the_line() {
        let (_dir, lines) = log_of(5);
        let mut edited = lines.clone();
        edited[2] = edited[2].replace("run-2", "run-X");
        assert_eq!(check(&edited).bad.unwrap().line, 3);
        let mut removed = lines.clone();
        removed.remove(1);
        assert_eq!(check(&removed).bad.unwrap().line, 2);
        let mut swapped = lines.clone();
        swapped.swap(2, 3);
        assert_eq!(check(&swapped).bad.unwrap().line, 3);
        let first_gone = lines[1..].to_vec();
        assert_eq!(check(&first_gone).bad.unwrap().line, 1);
        assert_eq!(check(&lines).bad, None);
    }

    #[test]
    fn a_torn_tail_is_cut_before_chaining() {
        let (dir, _) = log_of(2);
        let path = dir.path().join(FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"action\":\"inj").unwrap();
        append(dir.path(), &record("revert", "run-9")).unwrap();
        let v = verify(dir.path()).unwrap();
        assert_eq!((v.lines, v.bad), (3, None));
    }

    #[test]
    fn concurrent_appends_keep_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let d = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        append(&d, &record("inject", &format!("t{t}-{i}"))).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let v = verify(dir.path()).unwrap();
        assert_eq!((v.lines, v.bad), (100, None));
    }
}
