//! Resource-exhaustion faults (`cpu`, `memory`, `disk-fill`), measured from outside: CPU time
//! and RSS of the workers in `/proc`, ENOSPC for a writer on a tmpfs; and nothing left behind
//! (no worker, no cgroup, no ballast) after a revert or a `recover`.
//!
//! Needs root (cgroups, `mount`), as CI has.
#![allow(clippy::unwrap_used)]
// CPU shares are measured on the real clock, as an outside observer sees them.
#![allow(clippy::disallowed_types)]

mod cpu;
mod crash;
mod disk;
mod memory;
mod monitor;

use std::path::{Path, PathBuf};
use std::process::Command;

use chaosforge::fault::InjectCx;
use chaosforge::fault::stress::chaosforge_cgroups;
use chaosforge::journal::{self, FaultId, Journal};
use rustix::process::{Pid, Signal, kill_process};

/// Worker tests measure CPU time and count this process's workers, so they run one at a time
/// (tests in one binary run on parallel threads, and the machine may have two cores).
static WORKERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The chaosforge binary, which runs the stress workers.
fn exe() -> PathBuf {
    assert_cmd::cargo::cargo_bin!("chaosforge").to_path_buf()
}

/// A journal in a scratch state directory, and an `InjectCx` maker for it.
struct Run {
    state: tempfile::TempDir,
    journal: Journal,
}

impl Run {
    fn new() -> Run {
        let state = tempfile::tempdir().unwrap();
        let journal = Journal::create(state.path(), &journal::new_run_id()).unwrap();
        Run { state, journal }
    }

    fn cx<'a>(&'a self, id: u32, name: &'a str) -> InjectCx<'a> {
        InjectCx {
            journal: &self.journal,
            id: FaultId(id),
            name,
        }
    }
}

/// The cgroups this test process made (named `<pid>-…`).
fn my_cgroups() -> Vec<PathBuf> {
    cgroups_of(std::process::id())
}

/// The cgroups process `pid` made.
fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("{pid}-");
    chaosforge_cgroups()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect()
}

/// Pids listed in a cgroup.
fn procs(cgroup: &Path) -> Vec<i32> {
    std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Live (not zombie) stress workers started by this process, found in `/proc` — not through
/// the cgroup, so that a worker that escaped it would still be seen.
fn my_workers() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = after.split_whitespace().collect();
        if f.first() == Some(&"Z") || f.get(1) != Some(&me.as_str()) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("__stress-worker") {
            out.push(pid);
        }
    }
    out
}

/// Whether `pid` is alive (exists and is not a zombie).
fn alive(pid: i32) -> bool {
    chaosforge::fault::process::state_of(pid).is_some_and(|s| s != 'Z')
}

/// Kills the stress workers of a process (this one by default) and removes its cgroups,
/// whatever a failed test left.
struct Cleanup(u32);

impl Cleanup {
    fn mine() -> Cleanup {
        Cleanup(std::process::id())
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for _ in 0..100 {
            let cgroups = cgroups_of(self.0);
            let workers = if self.0 == std::process::id() {
                my_workers()
            } else {
                Vec::new()
            };
            if cgroups.is_empty() && workers.is_empty() {
                return;
            }
            for pid in cgroups.iter().flat_map(|c| procs(c)).chain(workers) {
                if let Some(p) = Pid::from_raw(pid) {
                    let _ = kill_process(p, Signal::KILL);
                }
            }
            for c in &cgroups {
                let _ = std::fs::remove_dir(c);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A tmpfs of `size` mounted on a scratch directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs (needs root): {status}");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Ballast files in it.
    fn ballast(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".chaosforge-ballast-")
            })
            .map(|e| e.path())
            .collect()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
