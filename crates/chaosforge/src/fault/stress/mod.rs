//! Resource exhaustion: `cpu` and `memory` stress workers, placed in a cgroup made for the
//! fault, and `disk-fill`, a ballast file.
//!
//! Workers are chaosforge child processes (`chaosforge __stress-worker '<json>'`). Each fault
//! instance gets its own cgroup, `chaosforge/<pid>-<fault name>-<n>` under the cgroup v2 main
//! hierarchy, or under the v1 `pids` (else `cpu`) controller on v1 and hybrid layouts. The cgroup
//! path is journaled before it is created and every worker joins it before doing any work, so a
//! revert — or `recover`, after the runner died and the workers were re-parented — kills them
//! all by reading `cgroup.procs`, then removes the cgroup.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::process::Child;

use super::{BoxError, Fault, FaultError, Guard, InjectCx, Revert, RevertSpec};

mod cgroup;
mod disk;
mod worker;

pub use disk::DiskFill;
pub use worker::{WorkerSpec, run_worker};

/// `cpu`: `workers` processes, each keeping one core busy `percent` % of the time.
///
/// Injecting returns once every worker is in the fault's cgroup and burning; reverting kills
/// them and removes the cgroup.
#[derive(Debug, Clone)]
pub struct CpuStress {
    /// Target name.
    pub target: String,
    /// How many worker processes.
    pub workers: u32,
    /// Share of one core each worker burns, 1..=100.
    pub percent: u32,
    /// The chaosforge binary that runs the workers (`std::env::current_exe()`).
    pub exe: PathBuf,
    /// On a `process` target: pin every worker to the CPUs that process may run on, so the
    /// stress competes with it rather than with whatever else the host runs. `None`: host-wide.
    pub alongside: Option<crate::fault::process::ProcessId>,
}

/// `memory`: one worker process holding `bytes` of resident memory (every page written).
///
/// Injecting returns once the memory is resident; reverting kills the worker, which frees it.
#[derive(Debug, Clone)]
pub struct MemoryStress {
    /// Target name.
    pub target: String,
    /// How much memory to hold.
    pub bytes: u64,
    /// The chaosforge binary that runs the worker (`std::env::current_exe()`).
    pub exe: PathBuf,
}

/// Reverts a stress fault: kills the cgroup's workers, reaps the ones this process spawned and
/// removes the cgroup.
struct KillCgroup {
    path: PathBuf,
    children: Mutex<Vec<Child>>,
}

// === impl CpuStress ===

#[async_trait]
impl Fault for CpuStress {
    fn kind(&self) -> &'static str {
        "cpu"
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn inject(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        if self.workers == 0 || !(1..=100).contains(&self.percent) {
            return Err(FaultError::Apply {
                message: format!(
                    "cpu stress needs at least one worker and 1..=100 % (got {} × {} %)",
                    self.workers, self.percent
                ),
                undone: true,
            });
        }
        let percent = self.percent;
        let cpus = match self.alongside {
            None => Vec::new(),
            Some(p) => crate::fault::procfs::check_same(p)
                .and_then(|()| worker::affinity_of(p.pid))
                .map_err(|message| FaultError::Target {
                    target: self.target.clone(),
                    message,
                })?,
        };
        inject_workers(cx, &self.target, self.kind(), &self.exe, |cgroup| {
            (0..self.workers)
                .map(|_| WorkerSpec::Cpu {
                    cgroup: cgroup.to_path_buf(),
                    percent,
                    cpus: cpus.clone(),
                })
                .collect()
        })
        .await
    }
}

// === impl MemoryStress ===

#[async_trait]
impl Fault for MemoryStress {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn inject(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        if self.bytes == 0 {
            return Err(FaultError::Apply {
                message: "memory stress of 0 bytes".into(),
                undone: true,
            });
        }
        let bytes = self.bytes;
        inject_workers(cx, &self.target, self.kind(), &self.exe, |cgroup| {
            vec![WorkerSpec::Memory {
                cgroup: cgroup.to_path_buf(),
                bytes,
            }]
        })
        .await
    }
}

/// Journals the cgroup, creates it and starts the workers in it; on failure kills what started.
async fn inject_workers(
    cx: &InjectCx<'_>,
    target: &str,
    kind: &str,
    exe: &Path,
    specs: impl FnOnce(&Path) -> Vec<WorkerSpec>,
) -> Result<Guard, FaultError> {
    let hierarchy = cgroup::hierarchy().map_err(|message| FaultError::Target {
        target: target.to_string(),
        message,
    })?;
    let path = cgroup::new_path(&hierarchy, cx.name);
    cx.announce(target, kind, RevertSpec::Cgroup { path: path.clone() })?;
    if let Err(e) = cgroup::create(&path) {
        return Err(FaultError::Apply {
            message: format!("cannot create cgroup {}: {e}", path.display()),
            undone: true,
        });
    }
    let specs = specs(&path);
    match worker::spawn(exe, &specs).await {
        Ok(children) => Ok(cx.guard(Box::new(KillCgroup {
            path,
            children: Mutex::new(children),
        }))),
        Err((message, children)) => {
            let undo = KillCgroup {
                path,
                children: Mutex::new(children),
            };
            let undone = Box::new(undo).revert().await;
            Err(FaultError::Apply {
                message: match &undone {
                    Ok(_) => message,
                    Err(e) => format!("{message}; cleaning up failed too: {e}"),
                },
                undone: undone.is_ok(),
            })
        }
    }
}

// === impl KillCgroup ===

#[async_trait]
impl Revert for KillCgroup {
    async fn revert(self: Box<Self>) -> Result<String, BoxError> {
        let KillCgroup { path, children } = *self;
        let children = children.into_inner().unwrap_or_else(|p| p.into_inner());
        if !children.is_empty() && cgroup::is_ours(&path) {
            let v2 = path.join("cgroup.kill").exists();
            cgroup::kill_all(&path, v2)?;
        }
        // Our own children stay zombies, keeping a v1 cgroup busy, until they are reaped.
        for mut child in children {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
        cgroup::remove(&path).await
    }
}

/// Kills every process in a cgroup chaosforge made for a stress fault and removes it.
/// Idempotent (a missing cgroup is already reverted); used by `recover`. Refuses any path that
/// is not `/sys/fs/cgroup/…/chaosforge/<name>`.
pub async fn revert_cgroup(path: &Path) -> Result<String, BoxError> {
    // A runner killed just after starting a worker leaves one that has not joined the cgroup
    // yet, so `cgroup.procs` does not list it. It would exit by itself on finding the cgroup
    // gone, but only once it gets that far, which on a loaded machine is a while after the
    // revert said the fault was undone: kill it now, found by the cgroup on its command line.
    let strays = if cgroup::is_ours(path) {
        worker::kill_unjoined(path)
    } else {
        0
    };
    let note = cgroup::remove(path).await?;
    Ok(match strays {
        0 => note,
        n => format!("{note}; killed {n} stress workers that had not joined it yet"),
    })
}

/// Deletes a disk-fill ballast file. Idempotent (a missing file is already reverted); used by
/// `recover`. Refuses any file whose name does not start with `.chaosforge-ballast-`.
pub async fn revert_ballast(path: &Path) -> Result<String, BoxError> {
    disk::revert(path)
}

/// `Ok` when this process can run `cpu` and `memory` stress: it is root and a cgroup hierarchy
/// its workers can join is mounted and writable; otherwise what is missing, in words.
pub fn cpu_stress_possible() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("root (the workers are placed in a cgroup made for the fault)".into());
    }
    let h = cgroup::hierarchy()?;
    rustix::fs::access(&h.root, rustix::fs::Access::WRITE_OK).map_err(|e| {
        format!(
            "a writable cgroup hierarchy ({} is not writable: {e})",
            h.root.display()
        )
    })
}

/// Every cgroup chaosforge made for a stress fault that still exists, in any hierarchy (the
/// residue check after `recover`).
pub fn chaosforge_cgroups() -> Vec<PathBuf> {
    cgroup::list()
}
