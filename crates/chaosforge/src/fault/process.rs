//! Process faults: `pause` (SIGSTOP, reverted by SIGCONT) and `kill` (a signal to the process,
//! its process group or its cgroup; irreversible).
//!
//! A pid alone is not an identity: after a crash the pid may belong to a new process. Every
//! process fault records the process's start time (`/proc/PID/stat` field 22) and checks it
//! before sending anything on revert.

use std::fs;
use std::time::Duration;

use async_trait::async_trait;
use rustix::process::{Pid, Signal, kill_process, kill_process_group};

use super::params::KillReach;
use super::{BoxError, Fault, FaultError, Guard, InjectCx, Revert, RevertSpec, cgroupfs};

pub use super::params::parse_signal;
pub use super::procfs::{ProcessId, cmdline_of, resolve, start_time_of, state_of};
pub(crate) use super::procfs::{all_pids, check_same, pgid_of, self_and_ancestors};

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
    /// Whom it is sent to: the process, its process group, or its cgroup.
    pub reach: KillReach,
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
        let target_err = |message| FaultError::Target {
            target: self.target.clone(),
            message,
        };
        check_same(self.process).map_err(target_err)?;
        let sig = Signal::from_named_raw(self.signal)
            .ok_or_else(|| target_err(format!("signal {} is not supported", self.signal)))?;
        let name = &self.signal_name;
        match self.reach {
            KillReach::Process => {
                let reason = format!("{name} sent to pid {pid}");
                cx.announce(
                    &self.target,
                    self.kind(),
                    RevertSpec::Irreversible {
                        reason: reason.clone(),
                    },
                )?;
                signal(pid, sig).map_err(|e| FaultError::Apply {
                    undone: true,
                    message: format!("{name} to {pid}: {e}"),
                })?;
                Ok(Guard::irreversible(cx, reason))
            }
            KillReach::Group => {
                let pgid = process_group(pid).map_err(target_err)?;
                let members = group_members(pgid);
                let reason = format!(
                    "{name} sent to process group {pgid} ({})",
                    list_pids(&members)
                );
                cx.announce(
                    &self.target,
                    self.kind(),
                    RevertSpec::Irreversible {
                        reason: reason.clone(),
                    },
                )?;
                let group = Pid::from_raw(pgid).ok_or_else(|| FaultError::Apply {
                    undone: true,
                    message: format!("invalid process group {pgid}"),
                })?;
                kill_process_group(group, sig).map_err(|e| FaultError::Apply {
                    undone: true,
                    message: format!("{name} to process group {pgid}: {e}"),
                })?;
                Ok(Guard::irreversible(cx, reason))
            }
            KillReach::Cgroup => {
                let (mount, dir) = cgroup_to_kill(pid).map_err(target_err)?;
                let members = cgroupfs::procs_below(&dir).unwrap_or_default();
                let reason = format!(
                    "{name} sent to every process in cgroup {} ({})",
                    dir.display(),
                    list_pids(&members)
                );
                cx.announce(
                    &self.target,
                    self.kind(),
                    RevertSpec::Irreversible {
                        reason: reason.clone(),
                    },
                )?;
                signal_cgroup(&mount, &dir, sig)
                    .await
                    .map_err(|message| FaultError::Apply {
                        // Nothing a revert could do: what was killed stays killed.
                        undone: true,
                        message: format!("{name} to cgroup {}: {message}", dir.display()),
                    })?;
                Ok(Guard::irreversible(cx, reason))
            }
        }
    }
}

/// `pid 1234`, `3 processes: 1234, 1240, 1241`, or the first ten of a longer list and how many
/// more.
fn list_pids(pids: &[i32]) -> String {
    match pids.len() {
        0 => "no process".to_string(),
        1 => format!("pid {}", pids[0]),
        n => {
            let shown: Vec<String> = pids.iter().take(10).map(i32::to_string).collect();
            let more = if n > 10 {
                format!(" and {} more", n - 10)
            } else {
                String::new()
            };
            format!("{n} processes: {}{more}", shown.join(", "))
        }
    }
}

/// The target's process group, refused when it is init's or holds chaosforge or a parent of it.
fn process_group(pid: i32) -> Result<i32, String> {
    let pgid = pgid_of(pid).ok_or_else(|| format!("process {pid} is gone"))?;
    if pgid <= 1 {
        return Err(format!(
            "process {pid} is in process group {pgid}; refusing"
        ));
    }
    if let Some(ours) = self_and_ancestors()
        .into_iter()
        .find(|p| pgid_of(*p) == Some(pgid))
    {
        return Err(format!(
            "process group {pgid} holds chaosforge itself or one of its parents (pid {ours}); refusing"
        ));
    }
    Ok(pgid)
}

/// Every live process in process group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|p| pgid_of(*p) == Some(pgid) && state_of(*p) != Some('Z'))
        .collect()
}

/// The cgroup `kill: { cgroup: true }` acts on: the target's cgroup in the unified (v2)
/// hierarchy, else in the first v1 hierarchy (`name=systemd`, `pids`, `freezer`, `cpu`,
/// `memory`, then the rest) where it is not the root — the most specific grouping the machine
/// keeps. Refused when it holds chaosforge or one of its parents.
fn cgroup_to_kill(pid: i32) -> Result<(cgroupfs::Mount, std::path::PathBuf), String> {
    let mut mounts = cgroupfs::mounts().map_err(|e| format!("cannot read the mounts: {e}"))?;
    let rank = |m: &cgroupfs::Mount| {
        if m.v2 {
            return usize::from(m.root != std::path::Path::new(cgroupfs::CGROUP_FS));
        }
        ["name=systemd", "pids", "freezer", "cpu", "memory"]
            .iter()
            .position(|c| m.has(c))
            .map_or(10, |i| i + 2)
    };
    mounts.sort_by_key(rank);
    if mounts.is_empty() {
        return Err("no cgroup hierarchy is mounted".to_string());
    }
    for m in mounts {
        let Ok(dir) = m.cgroup_of(pid) else { continue };
        if dir != m.root {
            cgroupfs::refuse_ours(&m, &dir, "the target's cgroup")?;
            return Ok((m, dir));
        }
    }
    Err(format!(
        "process {pid} is in the root cgroup of every hierarchy (every process on the machine); refusing"
    ))
}

/// Signals every process in the cgroup and below. SIGKILL on v2 uses `cgroup.kill` (atomic,
/// forks included); otherwise pid by pid — for SIGKILL again until the cgroup is empty (a fork
/// may race the first pass), other signals once (a process may handle them and live on).
async fn signal_cgroup(
    mount: &cgroupfs::Mount,
    dir: &std::path::Path,
    sig: Signal,
) -> Result<(), String> {
    let kill_file = dir.join("cgroup.kill");
    if sig == Signal::KILL && mount.v2 && kill_file.exists() {
        return fs::write(&kill_file, "1").map_err(|e| format!("cgroup.kill: {e}"));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let pids = cgroupfs::procs_below(dir).map_err(|e| format!("cgroup.procs: {e}"))?;
        if pids.is_empty() {
            return Ok(());
        }
        for p in &pids {
            // ESRCH: it exited meanwhile.
            let _ = signal(*p, sig);
        }
        if sig != Signal::KILL {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{} processes still alive after 5s", pids.len()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
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
