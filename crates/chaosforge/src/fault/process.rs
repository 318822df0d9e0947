//! Process faults: `pause` (SIGSTOP, reverted by SIGCONT) and `kill` (a signal; irreversible).
//!
//! A pid alone is not an identity: after a crash the pid may belong to a new process. Every
//! process fault records the process's start time (`/proc/PID/stat` field 22) and checks it
//! before sending anything on revert.

use std::fs;

use async_trait::async_trait;
use rustix::process::{Pid, Signal, kill_process};

use super::{BoxError, Fault, FaultError, Guard, InjectCx, Revert, RevertSpec};
use crate::plan::ProcessSelector;

/// A process found by a selector: pid plus start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    /// Process id.
    pub pid: i32,
    /// Start time, clock ticks since boot.
    pub start_time: u64,
}

/// `pause`: SIGSTOP now, SIGCONT on revert.
#[derive(Debug, Clone)]
pub struct PauseFault {
    /// Target name.
    pub target: String,
    /// The process.
    pub process: ProcessId,
}

/// `kill`: send a signal that ends the process.
#[derive(Debug, Clone)]
pub struct KillFault {
    /// Target name.
    pub target: String,
    /// The process.
    pub process: ProcessId,
    /// The signal number.
    pub signal: i32,
    /// Its name.
    pub signal_name: String,
}

struct Continue(ProcessId);

// === impl PauseFault ===

#[async_trait]
impl Fault for PauseFault {
    fn kind(&self) -> &'static str {
        "pause"
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn inject(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        let ProcessId { pid, start_time } = self.process;
        check_same(self.process).map_err(|message| FaultError::Target {
            target: self.target.clone(),
            message,
        })?;
        cx.announce(
            &self.target,
            self.kind(),
            RevertSpec::ContinueProcess { pid, start_time },
        )?;
        signal(pid, Signal::STOP).map_err(|e| FaultError::Apply {
            undone: true,
            message: format!("SIGSTOP to {pid}: {e}"),
        })?;
        Ok(cx.guard(Box::new(Continue(self.process))))
    }
}

#[async_trait]
impl Revert for Continue {
    async fn revert(self: Box<Self>) -> Result<String, BoxError> {
        continue_if_same(self.0.pid, self.0.start_time)
    }
}

// === impl KillFault ===

#[async_trait]
impl Fault for KillFault {
    fn kind(&self) -> &'static str {
        "kill"
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn inject(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        let pid = self.process.pid;
        check_same(self.process).map_err(|message| FaultError::Target {
            target: self.target.clone(),
            message,
        })?;
        let reason = format!("{} sent to pid {pid}", self.signal_name);
        cx.announce(
            &self.target,
            self.kind(),
            RevertSpec::Irreversible {
                reason: reason.clone(),
            },
        )?;
        let sig = Signal::from_named_raw(self.signal).ok_or_else(|| FaultError::Apply {
            undone: true,
            message: format!("signal {} is not supported", self.signal),
        })?;
        signal(pid, sig).map_err(|e| FaultError::Apply {
            undone: true,
            message: format!("{} to {pid}: {e}", self.signal_name),
        })?;
        Ok(Guard::irreversible(cx, reason))
    }
}

/// Sends SIGCONT to `pid` if it is still the process that started at `start_time`.
pub fn continue_if_same(pid: i32, start_time: u64) -> Result<String, BoxError> {
    match start_time_of(pid) {
        Some(t) if t == start_time => {
            signal(pid, Signal::CONT)?;
            Ok(format!("SIGCONT sent to pid {pid}"))
        }
        Some(_) => Ok(format!(
            "pid {pid} now belongs to another process; not touched"
        )),
        None => Ok(format!("process {pid} is gone; nothing to undo")),
    }
}

fn signal(pid: i32, sig: Signal) -> std::io::Result<()> {
    let pid =
        Pid::from_raw(pid).ok_or_else(|| std::io::Error::other(format!("invalid pid {pid}")))?;
    kill_process(pid, sig).map_err(std::io::Error::from)
}

fn check_same(p: ProcessId) -> Result<(), String> {
    match start_time_of(p.pid) {
        Some(t) if t == p.start_time => Ok(()),
        Some(_) => Err(format!("pid {} was replaced by another process", p.pid)),
        None => Err(format!("process {} is gone", p.pid)),
    }
}

/// `/proc/PID/stat` split after the command name (which may hold spaces and parentheses).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// The process's start time in clock ticks since boot, or `None` if it does not exist.
pub fn start_time_of(pid: i32) -> Option<u64> {
    // Field 22 overall; after the command name field 3 is index 0, so 22 is index 19.
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// The process's state letter (`R`, `S`, `T` for stopped, `Z`, …).
pub fn state_of(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// Finds the process a selector names, now.
pub fn resolve(sel: &ProcessSelector) -> Result<ProcessId, String> {
    let pid = match sel {
        ProcessSelector::Pid(pid) => *pid,
        ProcessSelector::Pidfile(path) => {
            let text =
                fs::read_to_string(path).map_err(|e| format!("cannot read pidfile {path}: {e}"))?;
            text.trim()
                .parse::<i32>()
                .ok()
                .filter(|p| *p > 1)
                .ok_or_else(|| {
                    format!(
                        "pidfile {path} does not hold a process id (found `{}`)",
                        text.trim()
                    )
                })?
        }
        ProcessSelector::Command(pattern) => {
            let re = regex::Regex::new(pattern).map_err(|e| format!("invalid regex: {e}"))?;
            let me = std::process::id() as i32;
            let mut found = Vec::new();
            let entries = fs::read_dir("/proc").map_err(|e| format!("cannot list /proc: {e}"))?;
            for e in entries.filter_map(Result::ok) {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                if pid == me {
                    continue;
                }
                let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
                    continue;
                };
                let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
                if !cmdline.trim().is_empty() && re.is_match(cmdline.trim_end()) {
                    found.push((pid, cmdline.trim_end().to_string()));
                }
            }
            match found.as_slice() {
                [(pid, _)] => *pid,
                [] => return Err(format!("no process's command line matches `{pattern}`")),
                many => {
                    let list: Vec<String> = many
                        .iter()
                        .take(5)
                        .map(|(p, c)| format!("{p} ({c})"))
                        .collect();
                    return Err(format!(
                        "{} processes match `{pattern}`, it must be exactly one: {}",
                        many.len(),
                        list.join(", ")
                    ));
                }
            }
        }
    };
    let start_time = start_time_of(pid).ok_or_else(|| format!("process {pid} does not exist"))?;
    // Stopping the runner (or a process it runs under) would freeze the very thing that must
    // revert the fault, and `recover` would keep seeing a live run.
    let mut ancestor = Some(std::process::id() as i32);
    while let Some(a) = ancestor.filter(|a| *a > 1) {
        if a == pid {
            return Err(format!(
                "pid {pid} is chaosforge itself or one of its parents; refusing to act on it"
            ));
        }
        ancestor = stat_fields(a).and_then(|f| f.get(1)?.parse().ok());
    }
    Ok(ProcessId { pid, start_time })
}

/// Parses `SIGKILL`, `KILL`, `kill` or `9` into (number, canonical name).
pub fn parse_signal(text: &str) -> Option<(i32, String)> {
    const SIGNALS: &[(&str, i32)] = &[
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ABRT", 6),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("USR2", 12),
        ("TERM", 15),
    ];
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return SIGNALS
            .iter()
            .find(|(_, v)| *v == n)
            .map(|(name, v)| (*v, format!("SIG{name}")));
    }
    let upper = t.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, v)| (*v, format!("SIG{n}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGKILL"), Some((9, "SIGKILL".into())));
        assert_eq!(parse_signal("term"), Some((15, "SIGTERM".into())));
        assert_eq!(parse_signal("9"), Some((9, "SIGKILL".into())));
        assert_eq!(parse_signal("SIGFOO"), None);
        assert_eq!(parse_signal("19"), None, "SIGSTOP is `pause`, not `kill`");
    }

    #[test]
    fn other_processes_are_found_but_never_chaosforge_itself() {
        let me = std::process::id() as i32;
        assert!(start_time_of(me).is_some());
        assert!(matches!(state_of(me), Some('R' | 'S')));
        let err = resolve(&ProcessSelector::Pid(me)).unwrap_err();
        assert!(err.contains("chaosforge itself"), "{err}");
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert_eq!(resolve(&ProcessSelector::Pid(pid)).map(|p| p.pid), Ok(pid));
        let _ = child.kill();
        let _ = child.wait();
        assert!(resolve(&ProcessSelector::Pid(i32::MAX)).is_err());
    }
}
