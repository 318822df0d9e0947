//! Resource limits: `fd-exhaustion` (`RLIMIT_NOFILE`) and `process-limit` (`RLIMIT_NPROC`), set
//! on a running process with `prlimit(2)`.
//!
//! Only the *soft* limit is lowered, never the hard one: raising a soft limit back up to the
//! hard one needs no privilege, so the revert (and `recover`) can always undo what the fault
//! did, and nothing is left that only `CAP_SYS_RESOURCE` could undo. The old limits are journaled with
//! the process's identity (pid and start time) and restored only on that same process.
//!
//! The fault is exact for open files: the kernel hands out the lowest free descriptor number and
//! fails with EMFILE when it is at or above the soft limit, so the limit is set to the number of
//! the `headroom + 1`-th free descriptor — counting open descriptors alone would leave the holes
//! below the highest one usable. For processes it is as exact as the kernel's count: fork fails
//! with EAGAIN once the *user* (real uid) runs as many tasks (threads included) as the limit,
//! so other processes of that user starting or ending move the line. The kernel does not apply
//! it to root or to holders of `CAP_SYS_ADMIN`/`CAP_SYS_RESOURCE`, so those are refused.

use std::collections::BTreeSet;
use std::fs;

use async_trait::async_trait;
use rustix::process::{Pid, Resource, Rlimit, prlimit};
use serde::{Deserialize, Serialize};

use super::process::{ProcessId, check_same, start_time_of};
use super::{BoxError, Fault, FaultError, Guard, InjectCx, Revert, RevertSpec};

pub use crate::vocab::LimitResource;

/// A process's soft and hard limit; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// The soft limit, the one the kernel enforces.
    pub soft: Option<u64>,
    /// The hard limit, the ceiling for the soft one.
    pub hard: Option<u64>,
}

/// `fd-exhaustion` and `process-limit`: lower the target's soft limit to what it uses now, plus
/// `headroom`.
#[derive(Debug, Clone)]
pub struct LimitFault {
    /// Target name.
    pub target: String,
    /// The process.
    pub process: ProcessId,
    /// Which limit.
    pub resource: LimitResource,
    /// How many more it may still open or start.
    pub headroom: u64,
}

struct Restore {
    process: ProcessId,
    resource: LimitResource,
    old: Limits,
}

// === impl LimitResource ===

impl LimitResource {
    fn rlimit(self) -> Resource {
        match self {
            LimitResource::Nofile => Resource::Nofile,
            LimitResource::Nproc => Resource::Nproc,
        }
    }

    /// `RLIMIT_NOFILE` or `RLIMIT_NPROC`.
    pub fn name(self) -> &'static str {
        match self {
            LimitResource::Nofile => "RLIMIT_NOFILE",
            LimitResource::Nproc => "RLIMIT_NPROC",
        }
    }

    /// Its line in `/proc/PID/limits`.
    fn proc_label(self) -> &'static str {
        match self {
            LimitResource::Nofile => "Max open files",
            LimitResource::Nproc => "Max processes",
        }
    }
}

// === impl LimitFault ===

#[async_trait]
impl Fault for LimitFault {
    fn kind(&self) -> &'static str {
        match self.resource {
            LimitResource::Nofile => "fd-exhaustion",
            LimitResource::Nproc => "process-limit",
        }
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn inject(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        let target_err = |message| FaultError::Target {
            target: self.target.clone(),
            message,
        };
        let ProcessId { pid, start_time } = self.process;
        check_same(self.process).map_err(target_err)?;
        let old = limits_of(pid, self.resource).map_err(target_err)?;
        let wanted = match self.resource {
            LimitResource::Nofile => {
                let open = open_fds(pid).map_err(target_err)?;
                nofile_limit(&open, self.headroom)
            }
            LimitResource::Nproc => {
                let uid = exempt_from_nproc(pid).map_err(target_err)?;
                steady_tasks_of_user(uid).await + self.headroom
            }
        };
        // Never raise it: a process already at its limit stays there.
        let soft = old.soft.map_or(wanted, |s| s.min(wanted));
        cx.announce(
            &self.target,
            self.kind(),
            RevertSpec::RestoreLimit {
                pid,
                start_time,
                resource: self.resource,
                soft: old.soft,
                hard: old.hard,
            },
        )?;
        set_limits(
            pid,
            self.resource,
            Limits {
                soft: Some(soft),
                hard: old.hard,
            },
        )
        .map_err(|e| FaultError::Apply {
            undone: true,
            message: format!("prlimit {} of pid {pid}: {e}", self.resource.name()),
        })?;
        tracing::info!(
            "{} of pid {pid}: soft limit {} → {soft}",
            self.resource.name(),
            show(old.soft)
        );
        Ok(cx.guard(Box::new(Restore {
            process: self.process,
            resource: self.resource,
            old,
        })))
    }
}

#[async_trait]
impl Revert for Restore {
    async fn revert(self: Box<Self>) -> Result<String, BoxError> {
        restore_if_same(self.process, self.resource, self.old)
    }
}

/// Restores `resource` of the process to `old` if it is still the process that started at
/// `start_time`. Idempotent; used by `recover`.
pub fn restore_if_same(
    process: ProcessId,
    resource: LimitResource,
    old: Limits,
) -> Result<String, BoxError> {
    let pid = process.pid;
    match start_time_of(pid) {
        Some(t) if t == process.start_time => {}
        Some(_) => {
            return Ok(format!(
                "pid {pid} now belongs to another process; not touched"
            ));
        }
        None => return Ok(format!("process {pid} is gone; nothing to undo")),
    }
    let now = limits_of(pid, resource)?;
    if now == old {
        return Ok(format!(
            "{} of pid {pid} already soft {}, hard {}",
            resource.name(),
            show(old.soft),
            show(old.hard)
        ));
    }
    match set_limits(pid, resource, old) {
        Ok(()) => Ok(format!(
            "{} of pid {pid} restored: soft {} → {}",
            resource.name(),
            show(now.soft),
            show(old.soft)
        )),
        // It exited between the check and the call.
        Err(e) if e == rustix::io::Errno::SRCH => {
            Ok(format!("process {pid} is gone; nothing to undo"))
        }
        Err(e) => Err(format!("prlimit {} of pid {pid}: {e}", resource.name()).into()),
    }
}

fn show(limit: Option<u64>) -> String {
    limit.map_or("unlimited".into(), |l| l.to_string())
}

/// Sets the limits with `prlimit(2)`. The kernel lets a caller set another process's limits
/// with `CAP_SYS_RESOURCE`, or when the caller's real uid and gid equal the target's real,
/// effective and saved ones. Many containers drop `CAP_SYS_RESOURCE` from root; then an EPERM
/// for a target running as another user is retried from a short-lived thread whose *real* uid
/// and gid are the target's — its effective and saved ids stay root, so it keeps its other
/// capabilities, and on Linux credentials are per thread, so nothing else in the runner
/// changes (and the thread's credentials end with it).
fn set_limits(pid: i32, resource: LimitResource, l: Limits) -> rustix::io::Result<()> {
    let raw = Pid::from_raw(pid).ok_or(rustix::io::Errno::SRCH)?;
    let set = || {
        prlimit(
            Some(raw),
            resource.rlimit(),
            Rlimit {
                current: l.soft,
                maximum: l.hard,
            },
        )
        .map(|_| ())
    };
    match set() {
        Err(rustix::io::Errno::PERM) => {
            let (uid, gid) = owner_of(pid).ok_or(rustix::io::Errno::PERM)?;
            std::thread::scope(|s| {
                s.spawn(|| {
                    use rustix::process::{Gid, Uid};
                    use rustix::thread::{set_thread_res_gid, set_thread_res_uid};
                    set_thread_res_gid(Gid::from_raw(gid), None, None)?;
                    set_thread_res_uid(Uid::from_raw(uid), None, None)?;
                    set()
                })
                .join()
                .unwrap_or(Err(rustix::io::Errno::PERM))
            })
        }
        other => other,
    }
}

/// The uid and gid a process runs as, when its real, effective and saved ids agree (the only
/// case in which taking them on as real ids lets a caller set its limits).
fn owner_of(pid: i32) -> Option<(u32, u32)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let same = |name: &str| -> Option<u32> {
        let ids: Vec<u32> = status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .take(3)
            .filter_map(|v| v.parse().ok())
            .collect();
        (ids.len() == 3 && ids.iter().all(|i| *i == ids[0])).then_some(ids[0])
    };
    Some((same("Uid:")?, same("Gid:")?))
}

/// The process's current limits, read from `/proc/PID/limits` (`prlimit` cannot read another
/// process's limits without setting them).
fn limits_of(pid: i32, resource: LimitResource) -> Result<Limits, String> {
    let text = fs::read_to_string(format!("/proc/{pid}/limits"))
        .map_err(|e| format!("cannot read /proc/{pid}/limits: {e}"))?;
    parse_limits(&text, resource).ok_or_else(|| {
        format!(
            "/proc/{pid}/limits has no readable `{}` line",
            resource.proc_label()
        )
    })
}

fn parse_limits(text: &str, resource: LimitResource) -> Option<Limits> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(resource.proc_label()))?;
    let mut f = line.split_whitespace();
    let value = |v: &str| -> Option<Option<u64>> {
        if v == "unlimited" {
            Some(None)
        } else {
            v.parse().ok().map(Some)
        }
    };
    Some(Limits {
        soft: value(f.next()?)?,
        hard: value(f.next()?)?,
    })
}

/// The process's open descriptor numbers.
fn open_fds(pid: i32) -> Result<BTreeSet<u64>, String> {
    let dir = fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| format!("cannot list /proc/{pid}/fd: {e}"))?;
    Ok(dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect())
}

/// The soft `RLIMIT_NOFILE` that lets exactly `headroom` more descriptors be opened: the number
/// of the `headroom + 1`-th free descriptor (the kernel hands out the lowest free number and
/// refuses numbers at or above the limit).
fn nofile_limit(open: &BTreeSet<u64>, headroom: u64) -> u64 {
    let mut free = 0;
    let mut n = 0;
    loop {
        if !open.contains(&n) {
            if free == headroom {
                return n;
            }
            free += 1;
        }
        n += 1;
    }
}

/// The process's real uid, refused when the kernel would not apply `RLIMIT_NPROC` to it: uid
/// 0, or `CAP_SYS_ADMIN`/`CAP_SYS_RESOURCE` in its effective set.
fn exempt_from_nproc(pid: i32) -> Result<u32, String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    let (uid, cap_eff) = parse_status(&status)
        .ok_or_else(|| format!("/proc/{pid}/status has no readable Uid/CapEff"))?;
    if uid == 0 {
        return Err(format!(
            "process-limit has no effect on root processes (pid {pid} runs as uid 0): the kernel does not enforce RLIMIT_NPROC for root"
        ));
    }
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_SYS_RESOURCE: u32 = 24;
    if cap_eff & (1 << CAP_SYS_ADMIN | 1 << CAP_SYS_RESOURCE) != 0 {
        return Err(format!(
            "process-limit has no effect on pid {pid}: it holds CAP_SYS_ADMIN or CAP_SYS_RESOURCE, which the kernel exempts from RLIMIT_NPROC"
        ));
    }
    Ok(uid)
}

/// (real uid, effective capabilities) from `/proc/PID/status`.
fn parse_status(status: &str) -> Option<(u32, u64)> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let uid = field("Uid:")?.split_whitespace().next()?.parse().ok()?;
    let cap_eff = u64::from_str_radix(field("CapEff:")?, 16).ok()?;
    Some((uid, cap_eff))
}

/// The tasks `uid` runs without its short-lived ones: the fewest of a few counts over ~20 ms.
///
/// A process that forks in a loop (a shell, a pre-fork server respawning) has a child alive for
/// part of each turn; a limit taken while one lives is one too high, and since the kernel lets a
/// fork through when the count *including the new task* does not exceed the limit, every fork
/// would then still succeed. Counting at the quiet moment makes the next fork the one refused.
async fn steady_tasks_of_user(uid: u32) -> u64 {
    let mut fewest = tasks_of_user(uid);
    for _ in 0..6 {
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        fewest = fewest.min(tasks_of_user(uid));
    }
    fewest
}

/// The tasks (threads) `uid` runs now, as the kernel counts them for `RLIMIT_NPROC`.
fn tasks_of_user(uid: u32) -> u64 {
    super::process::all_pids()
        .into_iter()
        .filter_map(|p| fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter(|s| parse_status(s).is_some_and(|(u, _)| u == uid))
        .map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(1)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nofile_limit_counts_free_descriptor_numbers_not_open_ones() {
        let open: BTreeSet<u64> = [0, 1, 2].into();
        assert_eq!(nofile_limit(&open, 0), 3, "the next open would get 3");
        assert_eq!(nofile_limit(&open, 2), 5);
        // A hole below the highest descriptor: 3 is free, so a limit of 4 (the count) would
        // still let one open succeed.
        let holes: BTreeSet<u64> = [0, 1, 2, 4, 255].into();
        assert_eq!(nofile_limit(&holes, 0), 3);
        assert_eq!(nofile_limit(&holes, 1), 5);
        assert_eq!(nofile_limit(&BTreeSet::new(), 0), 0);
    }

    #[test]
    fn proc_limits_are_parsed() {
        let text = "\
Limit                     Soft Limit           Hard Limit           Units
Max processes             63498                63498                processes
Max open files            1024                 524288               files
Max locked memory         unlimited            unlimited            bytes
";
        assert_eq!(
            parse_limits(text, LimitResource::Nofile),
            Some(Limits {
                soft: Some(1024),
                hard: Some(524288)
            })
        );
        assert_eq!(
            parse_limits(text, LimitResource::Nproc).unwrap().soft,
            Some(63498)
        );
        let unlimited = text.replace("63498                63498", "unlimited unlimited");
        assert_eq!(
            parse_limits(&unlimited, LimitResource::Nproc),
            Some(Limits {
                soft: None,
                hard: None
            })
        );
    }

    #[test]
    fn status_gives_the_real_uid_and_effective_caps() {
        let s = "Name:\tx\nUid:\t65534\t0\t0\t0\nThreads:\t1\nCapEff:\t0000000001000000\n";
        assert_eq!(parse_status(s), Some((65534, 1 << 24)));
    }

    #[test]
    fn this_process_is_counted_and_its_limits_read() {
        let me = std::process::id() as i32;
        assert!(limits_of(me, LimitResource::Nofile).unwrap().soft.is_some());
        let (uid, _) = parse_status(&fs::read_to_string("/proc/self/status").unwrap()).unwrap();
        assert!(tasks_of_user(uid) >= 1);
        assert!(open_fds(me).unwrap().contains(&0) || open_fds(me).unwrap().contains(&1));
    }
}
