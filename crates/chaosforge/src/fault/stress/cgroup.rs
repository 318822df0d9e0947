//! The cgroups stress faults put their workers in: one per fault instance, named
//! `chaosforge/<pid>-<fault name>-<n>` under the hierarchy [`hierarchy`] picks.
//!
//! No controller limits anything: the cgroup only holds the workers so that a revert — or
//! `recover`, in another process, after the runner died — finds every one of them by reading
//! `cgroup.procs`, whoever their parent is now.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};

use crate::fault::BoxError;

/// Where every cgroup hierarchy is mounted.
const CGROUP_FS: &str = "/sys/fs/cgroup";

/// The directory under a hierarchy that holds chaosforge's cgroups.
const PARENT: &str = "chaosforge";

/// How long a kill or a removal may take before the revert reports failure.
const PATIENCE: Duration = Duration::from_secs(5);

/// A cgroup hierarchy that can hold processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    /// Its mount point.
    pub root: PathBuf,
    /// `true` for the unified (v2) hierarchy, which has `cgroup.kill`.
    pub v2: bool,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The hierarchy to use on this machine: v2 when it is the main one (mounted at
/// `/sys/fs/cgroup`), else the v1 `pids` controller, else v1 `cpu`.
pub(crate) fn hierarchy() -> Result<Hierarchy, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| format!("cannot read /proc/self/mounts: {e}"))?;
    choose(&mounts).ok_or_else(|| {
        format!(
            "no usable cgroup hierarchy: neither cgroup2 at {CGROUP_FS} nor a v1 `pids` or `cpu` controller is mounted"
        )
    })
}

/// Picks the hierarchy from the text of `/proc/self/mounts`.
fn choose(mounts: &str) -> Option<Hierarchy> {
    let entries: Vec<(&str, &str, &str)> = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| (f[1], f[2], f[3]))
        })
        .collect();
    if entries
        .iter()
        .any(|(at, fs, _)| *at == CGROUP_FS && *fs == "cgroup2")
    {
        return Some(Hierarchy {
            root: PathBuf::from(CGROUP_FS),
            v2: true,
        });
    }
    ["pids", "cpu"].iter().find_map(|controller| {
        entries
            .iter()
            .find(|(_, fs, opts)| *fs == "cgroup" && opts.split(',').any(|o| o == *controller))
            .map(|(at, _, _)| Hierarchy {
                root: PathBuf::from(at),
                v2: false,
            })
    })
}

/// A fresh, not yet existing cgroup path for a fault named `name` (not created: the caller
/// journals it first).
pub(crate) fn new_path(h: &Hierarchy, name: &str) -> PathBuf {
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
        let path = h
            .root
            .join(PARENT)
            .join(format!("{}-{label}-{n}", std::process::id()));
        if !path.exists() {
            return path;
        }
    }
}

/// Creates the cgroup (and the shared `chaosforge` parent if needed).
pub(crate) fn create(path: &Path) -> io::Result<()> {
    // A concurrent revert may remove an empty parent between the two mkdirs: try again.
    for _ in 0..10 {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::create_dir(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            other => return other,
        }
    }
    std::fs::create_dir(path)
}

/// Whether `path` names a cgroup chaosforge made: `/sys/fs/cgroup/…/chaosforge/<name>`.
///
/// A revert kills everything in the cgroup it is given, so a damaged or edited journal must not
/// be able to point it at `/sys/fs/cgroup` itself or at some service's cgroup.
pub(crate) fn is_ours(path: &Path) -> bool {
    path.starts_with(CGROUP_FS)
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && path.parent().and_then(Path::file_name) == Some(PARENT.as_ref())
        && path.file_name().is_some()
}

/// The processes in the cgroup (an empty list once it is gone).
pub(crate) fn procs(path: &Path) -> io::Result<Vec<i32>> {
    match std::fs::read_to_string(path.join("cgroup.procs")) {
        Ok(text) => Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Sends SIGKILL to every process in the cgroup, once. Returns how many were there.
pub(crate) fn kill_all(path: &Path, v2: bool) -> io::Result<usize> {
    let pids = procs(path)?;
    let kill_file = path.join("cgroup.kill");
    // v2 kills atomically, forks included; v1 signals pid by pid from the list just read.
    if v2 && kill_file.exists() {
        match std::fs::write(&kill_file, "1") {
            Ok(()) => return Ok(pids.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(_) => {}
        }
    }
    for pid in &pids {
        if let Some(p) = Pid::from_raw(*pid) {
            // ESRCH: it exited meanwhile, which is what we want.
            let _ = kill_process(p, Signal::KILL);
        }
    }
    Ok(pids.len())
}

/// Kills every process in the cgroup, waits until it is empty and removes it. Idempotent: a
/// missing cgroup is already reverted.
pub(crate) async fn remove(path: &Path) -> Result<String, BoxError> {
    if !is_ours(path) {
        return Err(format!(
            "{} is not a cgroup chaosforge made (expected {CGROUP_FS}/…/{PARENT}/<name>); not touched",
            path.display()
        )
        .into());
    }
    if !path.exists() {
        return Ok(format!("cgroup {} already gone", path.display()));
    }
    let v2 = path.join("cgroup.kill").exists() || path.join("cgroup.events").exists();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut killed = 0;
    loop {
        let n = kill_all(path, v2)?;
        killed = killed.max(n);
        if n == 0 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "cgroup {}: {n} processes still alive after SIGKILL",
                path.display()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Killed processes leave `cgroup.procs` at once but may keep the cgroup busy until their
    // parent reaps them, so removal is retried for a while.
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(format!("cannot remove cgroup {}: {e}", path.display()).into());
            }
            Err(_) => {
                let _ = kill_all(path, v2);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // The shared parent goes too once it is empty; another fault's cgroup keeps it (EBUSY).
    if let Some(parent) = path.parent() {
        let _ = std::fs::remove_dir(parent);
    }
    Ok(format!(
        "killed {killed} stress workers and removed cgroup {}",
        path.display()
    ))
}

/// Every cgroup chaosforge made that still exists, in every mounted hierarchy.
pub(crate) fn list() -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from(CGROUP_FS)];
    if let Ok(entries) = std::fs::read_dir(CGROUP_FS) {
        roots.extend(entries.filter_map(Result::ok).map(|e| e.path()));
    }
    let mut out: Vec<PathBuf> = roots
        .iter()
        .filter_map(|r| std::fs::read_dir(r.join(PARENT)).ok())
        .flat_map(|entries| entries.filter_map(Result::ok))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";

    #[test]
    fn the_hybrid_layout_uses_v1_pids() {
        let h = choose(HYBRID).unwrap();
        assert_eq!(h.root, Path::new("/sys/fs/cgroup/pids"));
        assert!(!h.v2);
        let no_pids = HYBRID.replace("rw,relatime,pids", "rw,relatime,blkio");
        assert_eq!(
            choose(&no_pids).unwrap().root,
            Path::new("/sys/fs/cgroup/cpu"),
            "`cpuacct` must not be taken for `cpu`"
        );
    }

    #[test]
    fn unified_main_hierarchy_is_v2() {
        let h = choose("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n").unwrap();
        assert_eq!(h.root, Path::new("/sys/fs/cgroup"));
        assert!(h.v2);
        assert_eq!(choose("proc /proc proc rw 0 0\n"), None);
    }

    #[test]
    fn only_chaosforge_cgroups_are_ever_reverted() {
        assert!(is_ours(Path::new(
            "/sys/fs/cgroup/pids/chaosforge/12-cpu-0"
        )));
        assert!(is_ours(Path::new("/sys/fs/cgroup/chaosforge/12-cpu-0")));
        for bad in [
            "/sys/fs/cgroup",
            "/sys/fs/cgroup/chaosforge",
            "/sys/fs/cgroup/system.slice/sshd.service",
            "/sys/fs/cgroup/chaosforge/../system.slice",
            "/tmp/chaosforge/x",
            "sys/fs/cgroup/chaosforge/x",
        ] {
            assert!(!is_ours(Path::new(bad)), "{bad}");
        }
    }

    #[test]
    fn names_are_sanitized_and_fresh() {
        let h = Hierarchy {
            root: PathBuf::from("/nonexistent/cgroup"),
            v2: false,
        };
        let a = new_path(&h, "burn cpu/../x");
        let b = new_path(&h, "burn cpu/../x");
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(&format!("{}-burn_cpu____x-", std::process::id())));
        assert_eq!(
            a.parent().unwrap(),
            Path::new("/nonexistent/cgroup/chaosforge")
        );
    }
}
