//! `freeze`: the target's cgroup frozen by the kernel's cgroup freezer — every task in it stops
//! where it is, without a signal it could see (unlike `pause`, SIGSTOP, which a parent waiting
//! on it notices and SIGCONT from anyone undoes).
//!
//! Which freezer: the unified hierarchy's `cgroup.freeze` where it is the main one (mounted at
//! `/sys/fs/cgroup`), else the v1 `freezer` controller (`freezer.state`), else a unified
//! hierarchy mounted elsewhere (the hybrid layout without a v1 freezer).
//!
//! Which cgroup: the target's own, frozen in place with everything in it, when it is not the
//! hierarchy's root (a systemd service, a container) — refused if chaosforge or one of its
//! parents is in it. A process in the root cgroup (the common case outside systemd) cannot be
//! frozen there, so a cgroup is made for the fault, `<root>/chaosforge-freeze-<pid>-<name>-<n>`,
//! and the target (with `tree: true`, its descendants too) is moved into it. The revert thaws,
//! moves every process in it back to where it came from, and removes it.
//!
//! Everything the revert needs is journaled before the first change ([`RevertSpec::Thaw`]):
//! the cgroup, which freezer, and for a made cgroup each moved process (pid, start time, its
//! cgroup before). `recover` does the same from that record; a process forked inside the
//! cgroup meanwhile goes back to the target's original cgroup.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::cgroupfs::{self, Mount};
use super::procfs::{ProcessId, check_same, descendants_of, start_time_of};
use super::{BoxError, Fault, FaultError, Guard, InjectCx, Revert, RevertSpec};

pub use crate::vocab::{Moved, MovedProcess};

/// The prefix of every cgroup made for a freeze; a revert removes no other.
const PREFIX: &str = "chaosforge-freeze-";

/// How long freezing, emptying or removing a cgroup may take.
const PATIENCE: Duration = Duration::from_secs(5);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A cgroup freezer on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freezer {
    /// The hierarchy's mount point.
    pub root: PathBuf,
    /// `cgroup.freeze` (v2) rather than `freezer.state` (v1).
    pub v2: bool,
}

/// `freeze`: freeze the target's cgroup, or a cgroup made for it.
#[derive(Debug, Clone)]
pub struct FreezeFault {
    /// Target name.
    pub target: String,
    /// The process.
    pub process: ProcessId,
    /// With a made cgroup: move the target's descendants into it too.
    pub tree: bool,
    /// The freezer to use; `None`: the one [`freezers`] lists first.
    pub freezer: Option<Freezer>,
}

/// The live undo: the same record `recover` would read.
struct Thaw {
    cgroup: PathBuf,
    v2: bool,
    moved: Option<Moved>,
}

// === impl Freezer ===

/// The freezers this machine has, the preferred first (see the module doc).
pub fn freezers() -> Vec<Freezer> {
    let Ok(mounts) = cgroupfs::mounts() else {
        return Vec::new();
    };
    rank(&mounts)
}

fn rank(mounts: &[Mount]) -> Vec<Freezer> {
    let main = Path::new(cgroupfs::CGROUP_FS);
    let mut out: Vec<(u8, Freezer)> = mounts
        .iter()
        .filter_map(|m| {
            let r = match (m.v2, m.root == main) {
                (true, true) => 0,
                (false, _) if m.has("freezer") => 1,
                (true, false) => 2,
                (false, _) => return None,
            };
            Some((
                r,
                Freezer {
                    root: m.root.clone(),
                    v2: m.v2,
                },
            ))
        })
        .collect();
    out.sort_by_key(|(r, _)| *r);
    out.into_iter().map(|(_, f)| f).collect()
}

impl Freezer {
    fn mount(&self) -> Mount {
        Mount {
            root: self.root.clone(),
            v2: self.v2,
            options: if self.v2 {
                Vec::new()
            } else {
                vec!["freezer".to_string()]
            },
        }
    }
}

// === impl FreezeFault ===

#[async_trait]
impl Fault for FreezeFault {
    fn kind(&self) -> &'static str {
        "freeze"
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn inject(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        let target_err = |message| FaultError::Target {
            target: self.target.clone(),
            message,
        };
        check_same(self.process).map_err(target_err)?;
        let freezer = match &self.freezer {
            Some(f) => f.clone(),
            None => freezers().into_iter().next().ok_or_else(|| {
                target_err(
                    "no cgroup freezer: neither cgroup v2 nor the v1 `freezer` controller is mounted"
                        .to_string(),
                )
            })?,
        };
        let mount = freezer.mount();
        let pid = self.process.pid;
        let home = mount.cgroup_of(pid).map_err(target_err)?;
        let (cgroup, moved) = if home == mount.root {
            let mut processes = vec![MovedProcess {
                pid,
                start_time: self.process.start_time,
                from: home.clone(),
            }];
            if self.tree {
                for d in descendants_of(pid) {
                    let (Some(start_time), Ok(from)) = (start_time_of(d), mount.cgroup_of(d))
                    else {
                        continue;
                    };
                    processes.push(MovedProcess {
                        pid: d,
                        start_time,
                        from,
                    });
                }
            }
            let ours = super::procfs::self_and_ancestors();
            if let Some(p) = processes.iter().find(|p| ours.contains(&p.pid)) {
                return Err(target_err(format!(
                    "pid {} is chaosforge itself or one of its parents; refusing to freeze it",
                    p.pid
                )));
            }
            (
                new_path(&mount.root, cx.name),
                Some(Moved { home, processes }),
            )
        } else {
            cgroupfs::refuse_ours(&mount, &home, "the target's cgroup").map_err(target_err)?;
            if freeze_requested(&home, freezer.v2).map_err(|e| target_err(e.to_string()))? {
                return Err(target_err(format!(
                    "cgroup {} is frozen already (by someone else); thawing it on revert would undo their freeze",
                    home.display()
                )));
            }
            (home, None)
        };
        cx.announce(
            &self.target,
            self.kind(),
            RevertSpec::Thaw {
                cgroup: cgroup.clone(),
                v2: freezer.v2,
                moved: moved.clone(),
            },
        )?;
        let undo = Thaw {
            cgroup,
            v2: freezer.v2,
            moved,
        };
        match undo.apply().await {
            Ok(()) => Ok(cx.guard(Box::new(undo))),
            Err(message) => {
                let undone = Box::new(undo).revert().await;
                Err(FaultError::Apply {
                    message: match &undone {
                        Ok(_) => message,
                        Err(e) => format!("{message}; undoing it failed too: {e}"),
                    },
                    undone: undone.is_ok(),
                })
            }
        }
    }
}

/// A fresh cgroup path under `root` for a fault named `name` (not created yet).
fn new_path(root: &Path, name: &str) -> PathBuf {
    let label: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = root.join(format!("{PREFIX}{}-{label}-{n}", std::process::id()));
        if !path.exists() {
            return path;
        }
    }
}

/// Whether `path` names a cgroup a freeze made: `/sys/fs/cgroup/…/chaosforge-freeze-…`.
fn is_made(path: &Path) -> bool {
    cgroupfs::is_cgroup_path(path)
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(PREFIX) && n.len() > PREFIX.len())
}

/// Every cgroup a freeze made that still exists, in every hierarchy (a residue check).
pub fn freeze_cgroups() -> Vec<PathBuf> {
    let Ok(mounts) = cgroupfs::mounts() else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = mounts
        .iter()
        .filter_map(|m| std::fs::read_dir(&m.root).ok())
        .flat_map(|entries| entries.filter_map(Result::ok))
        .map(|e| e.path())
        .filter(|p| p.is_dir() && is_made(p))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn is_frozen(cgroup: &Path, v2: bool) -> io::Result<bool> {
    if v2 {
        let events = std::fs::read_to_string(cgroup.join("cgroup.events"))?;
        Ok(events.lines().any(|l| l.trim() == "frozen 1"))
    } else {
        Ok(std::fs::read_to_string(cgroup.join("freezer.state"))?.trim() == "FROZEN")
    }
}

/// Whether a freeze of the cgroup was asked for (it may still be on its way).
fn freeze_requested(cgroup: &Path, v2: bool) -> io::Result<bool> {
    if v2 {
        Ok(std::fs::read_to_string(cgroup.join("cgroup.freeze"))?.trim() == "1")
    } else {
        Ok(std::fs::read_to_string(cgroup.join("freezer.state"))?.trim() != "THAWED")
    }
}

fn write_state(cgroup: &Path, v2: bool, frozen: bool) -> io::Result<()> {
    if v2 {
        std::fs::write(cgroup.join("cgroup.freeze"), if frozen { "1" } else { "0" })
    } else {
        std::fs::write(
            cgroup.join("freezer.state"),
            if frozen { "FROZEN" } else { "THAWED" },
        )
    }
}

// === impl Thaw ===

impl Thaw {
    /// Makes the cgroup (if it is one of ours), moves the processes in and freezes it; returns
    /// once the kernel reports it frozen.
    async fn apply(&self) -> Result<(), String> {
        let at = self.cgroup.display();
        if let Some(moved) = &self.moved {
            std::fs::create_dir(&self.cgroup).map_err(|e| format!("cannot create {at}: {e}"))?;
            let control = if self.v2 {
                "cgroup.freeze"
            } else {
                "freezer.state"
            };
            if !self.cgroup.join(control).exists() {
                return Err(format!(
                    "{at} has no `{control}`: this kernel's cgroup {} has no freezer",
                    if self.v2 { "v2" } else { "v1" }
                ));
            }
            let mut n = 0;
            for p in &moved.processes {
                // Only the process recorded: a pid recycled since it was listed is left alone.
                if start_time_of(p.pid) != Some(p.start_time) {
                    continue;
                }
                n += usize::from(
                    cgroupfs::move_into(&self.cgroup, p.pid)
                        .map_err(|e| format!("cannot move pid {} into {at}: {e}", p.pid))?,
                );
            }
            if n == 0 {
                return Err("the target exited before it could be frozen".to_string());
            }
        }
        write_state(&self.cgroup, self.v2, true).map_err(|e| format!("cannot freeze {at}: {e}"))?;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match is_frozen(&self.cgroup, self.v2) {
                Ok(true) => return Ok(()),
                Ok(false) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(false) => {
                    return Err(format!(
                        "{at} was not frozen after {}s (a task stuck in the kernel?)",
                        PATIENCE.as_secs()
                    ));
                }
                Err(e) => return Err(format!("cannot read the state of {at}: {e}")),
            }
        }
    }
}

#[async_trait]
impl Revert for Thaw {
    async fn revert(self: Box<Self>) -> Result<String, BoxError> {
        thaw(&self.cgroup, self.v2, self.moved.as_ref()).await
    }
}

/// Thaws a frozen cgroup; for a cgroup a freeze made, moves every process in it back where it
/// came from and removes it. Idempotent (a gone cgroup is already reverted); used by `recover`.
/// Refuses paths outside `/sys/fs/cgroup`, and removes only `chaosforge-freeze-…` cgroups.
pub async fn thaw(cgroup: &Path, v2: bool, moved: Option<&Moved>) -> Result<String, BoxError> {
    let at = cgroup.display();
    if !cgroupfs::is_cgroup_path(cgroup) || (moved.is_some() && !is_made(cgroup)) {
        return Err(format!(
            "{at} is not a cgroup a freeze acts on (expected {}/…{}); not touched",
            cgroupfs::CGROUP_FS,
            if moved.is_some() {
                "/chaosforge-freeze-…"
            } else {
                ""
            }
        )
        .into());
    }
    if !cgroup.exists() {
        return Ok(format!("cgroup {at} already gone; nothing to thaw"));
    }
    match write_state(cgroup, v2, false) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound && !cgroup.exists() => {
            return Ok(format!("cgroup {at} already gone; nothing to thaw"));
        }
        Err(e) => return Err(format!("cannot thaw {at}: {e}").into()),
    }
    let Some(moved) = moved else {
        return Ok(format!("thawed cgroup {at}"));
    };
    let mounts = cgroupfs::mounts()?;
    let root = cgroupfs::mount_of(&mounts, cgroup)
        .map(|m| m.root.clone())
        .or_else(|| cgroup.parent().map(Path::to_path_buf))
        .ok_or_else(|| format!("{at} is in no cgroup hierarchy"))?;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut back = 0;
    loop {
        let pids = cgroupfs::procs(cgroup)?;
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let recorded = moved
                .processes
                .iter()
                .find(|p| p.pid == pid && start_time_of(pid) == Some(p.start_time));
            let from = recorded.map_or(&moved.home, |p| &p.from);
            let dest = existing_within(from, &root);
            back +=
                usize::from(cgroupfs::move_into(&dest, pid).map_err(|e| {
                    format!("cannot move pid {pid} back to {}: {e}", dest.display())
                })?);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{at} still holds processes after {}s", PATIENCE.as_secs()).into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // An exiting task may keep the cgroup busy for a moment.
    loop {
        match std::fs::remove_dir(cgroup) {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(format!("cannot remove {at}: {e}").into());
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    Ok(format!(
        "thawed cgroup {at}, moved {back} process(es) back to {} and removed it",
        moved.home.display()
    ))
}

/// `dir` if it still exists, else its nearest existing ancestor within `root` (a service's
/// cgroup may have been removed meanwhile); never outside `root`, never a path that is not
/// plainly under `/sys/fs/cgroup`.
fn existing_within(dir: &Path, root: &Path) -> PathBuf {
    if !dir.starts_with(root) || !cgroupfs::is_cgroup_path(dir) {
        return root.to_path_buf();
    }
    dir.ancestors()
        .take_while(|a| a.starts_with(root))
        .find(|a| a.is_dir())
        .unwrap_or(root)
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(root: &str, v2: bool, opts: &str) -> Mount {
        Mount {
            root: PathBuf::from(root),
            v2,
            options: opts.split(',').map(str::to_string).collect(),
        }
    }

    #[test]
    fn the_main_v2_hierarchy_comes_first_then_the_v1_freezer() {
        let hybrid = [
            mount("/sys/fs/cgroup/cpu", false, "rw,cpu"),
            mount("/sys/fs/cgroup/unified", true, "rw"),
            mount("/sys/fs/cgroup/freezer", false, "rw,freezer"),
        ];
        let f = rank(&hybrid);
        assert_eq!(f.len(), 2, "cpu is no freezer");
        assert_eq!(f[0].root, Path::new("/sys/fs/cgroup/freezer"));
        assert!(f[1].v2);
        let unified = [mount("/sys/fs/cgroup", true, "rw,nsdelegate")];
        assert!(rank(&unified)[0].v2);
        assert!(rank(&[mount("/sys/fs/cgroup/cpu", false, "rw,cpu")]).is_empty());
    }

    #[test]
    fn only_made_cgroups_are_removed() {
        let made = new_path(Path::new("/sys/fs/cgroup/freezer"), "stop db/../x");
        assert!(is_made(&made), "{}", made.display());
        let name = made.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(&format!(
            "chaosforge-freeze-{}-stop_db____x-",
            std::process::id()
        )));
        for bad in [
            "/sys/fs/cgroup/freezer/system.slice",
            "/sys/fs/cgroup/freezer/chaosforge-freeze-",
            "/sys/fs/cgroup/freezer/../chaosforge-freeze-1",
            "/tmp/chaosforge-freeze-1",
        ] {
            assert!(!is_made(Path::new(bad)), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_record_pointing_elsewhere_is_refused() {
        let moved = Moved {
            home: PathBuf::from("/sys/fs/cgroup/freezer"),
            processes: Vec::new(),
        };
        for (path, moved) in [
            ("/sys/fs/cgroup/freezer/system.slice", Some(&moved)),
            ("/etc", None),
        ] {
            let err = thaw(Path::new(path), false, moved).await.unwrap_err();
            assert!(err.to_string().contains("not touched"), "{err}");
        }
        let gone = thaw(
            Path::new("/sys/fs/cgroup/freezer/chaosforge-freeze-0-gone-0"),
            false,
            Some(&moved),
        )
        .await
        .unwrap();
        assert!(gone.contains("already gone"), "{gone}");
    }

    #[test]
    fn processes_go_back_to_the_nearest_cgroup_that_still_exists() {
        let root = std::env::temp_dir();
        let gone = root.join("chaosforge-test-no-such-dir/deeper");
        // Not under /sys/fs/cgroup: always the root.
        assert_eq!(existing_within(&gone, &root), root);
        let cg = Path::new("/sys/fs/cgroup");
        if cg.is_dir() {
            assert_eq!(
                existing_within(&cg.join("chaosforge-no-such-cgroup/x"), cg),
                cg.to_path_buf()
            );
            assert_eq!(existing_within(Path::new("/etc"), cg), cg.to_path_buf());
        }
    }
}
