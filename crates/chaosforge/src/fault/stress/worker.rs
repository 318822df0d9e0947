//! Stress workers: both halves. The runner side spawns `chaosforge __stress-worker '<json>'`
//! and waits for its `ready` line; the worker side joins its cgroup, then burns or holds.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What one stress worker process does. It is passed as JSON on the worker's command line.
///
/// Every worker first moves itself into `cgroup` (and exits if it cannot), so that it never
/// burns anything outside the cgroup its revert kills; then it prints `ready` on stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "work", rename_all = "kebab-case")]
pub enum WorkerSpec {
    /// Burn `percent` % of one core, counted in CPU time consumed over 1 s windows.
    Cpu {
        /// The cgroup to join first.
        cgroup: PathBuf,
        /// Share of one core, 1..=100.
        percent: u32,
        /// The CPUs the burning thread is pinned to (a target process's affinity); empty: any.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cpus: Vec<usize>,
    },
    /// Allocate `bytes`, write to every page so that it is resident, and hold it.
    Memory {
        /// The cgroup to join first.
        cgroup: PathBuf,
        /// How much to hold.
        bytes: u64,
    },
}

/// The accounting window: a worker owes `percent` % of each window in CPU time.
const WINDOW: Duration = Duration::from_secs(1);

/// The unit of spinning or sleeping within a window.
const SLICE: Duration = Duration::from_millis(10);

/// Clock ticks per second in `/proc/*/stat` (`USER_HZ`, fixed at 100 by the Linux ABI).
const USER_HZ: u64 = 100;

/// How long a worker may take to report ready (allocating gigabytes takes a while).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a stress worker until it is killed. Returns only on error.
pub async fn run_worker(spec: WorkerSpec) -> std::io::Result<()> {
    let cgroup = match &spec {
        WorkerSpec::Cpu { cgroup, .. } | WorkerSpec::Memory { cgroup, .. } => cgroup,
    };
    join(cgroup)?;
    match spec {
        WorkerSpec::Cpu { percent, cpus, .. } => {
            let percent = percent.clamp(1, 100);
            // Affinity is per thread: the burning thread pins itself before it reports ready,
            // so no cycle is burnt anywhere else.
            let (tx, rx) = tokio::sync::oneshot::channel();
            let burner = tokio::task::spawn_blocking(move || {
                let pinned = pin(&cpus);
                let failed = pinned.is_err();
                let _ = tx.send(pinned);
                if !failed {
                    burn(percent);
                }
            });
            rx.await.map_err(std::io::Error::other)??;
            ready()?;
            burner.await.map_err(std::io::Error::other)
        }
        WorkerSpec::Memory { bytes, .. } => {
            let len = usize::try_from(bytes).map_err(std::io::Error::other)?;
            let mut ballast: Vec<u8> = Vec::new();
            ballast
                .try_reserve_exact(len)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::OutOfMemory, e))?;
            // Writing a non-zero byte everywhere makes every page resident (a zeroed allocation
            // would only be mapped, not counted in RSS).
            ballast.resize(len, 0xa5);
            std::hint::black_box(&ballast);
            ready()?;
            loop {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                std::hint::black_box(&ballast);
            }
        }
    }
}

/// Moves this process into `cgroup`.
fn join(cgroup: &Path) -> std::io::Result<()> {
    std::fs::write(cgroup.join("cgroup.procs"), std::process::id().to_string()).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot join cgroup {}: {e}", cgroup.display()),
        )
    })
}

/// Pins the calling thread to `cpus` (nothing to do when empty).
fn pin(cpus: &[usize]) -> std::io::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    let mut set = rustix::thread::CpuSet::new();
    for &c in cpus {
        set.set(c);
    }
    rustix::thread::sched_setaffinity(None, &set).map_err(|e| {
        std::io::Error::other(format!(
            "cannot pin the stress worker to CPUs {cpus:?}: {e}"
        ))
    })
}

/// The CPUs process `pid` (its main thread) may run on.
pub(crate) fn affinity_of(pid: i32) -> Result<Vec<usize>, String> {
    let p = rustix::process::Pid::from_raw(pid).ok_or_else(|| format!("bad pid {pid}"))?;
    let set = rustix::thread::sched_getaffinity(Some(p))
        .map_err(|e| format!("cannot read the CPU affinity of pid {pid}: {e}"))?;
    Ok((0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| set.is_set(c))
        .collect())
}

fn ready() -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(b"ready\n")?;
    out.flush()
}

/// Burns `percent` % of one core, forever.
///
/// The share is kept in CPU time actually consumed (this thread's `/proc` counters), not in
/// wall-clock busy time: on a loaded machine a spinning thread is descheduled part of the time,
/// and a wall-clock duty cycle would then burn less than asked. Within each window the worker
/// spins while it is behind and sleeps while it is ahead; a new window forgets the old debt, so
/// a long stall is never paid back in one burst.
fn burn(percent: u32) {
    let share = f64::from(percent) / 100.0;
    loop {
        let (w0, c0) = (tokio::time::Instant::now(), thread_cpu());
        loop {
            let elapsed = w0.elapsed();
            if elapsed >= WINDOW {
                break;
            }
            let behind = match (c0, thread_cpu()) {
                (Some(c0), Some(c)) => c.saturating_sub(c0) < elapsed.mul_f64(share),
                // No counters: fall back to a wall-clock duty cycle.
                _ => elapsed.as_secs_f64() % 0.1 < 0.1 * share,
            };
            if behind {
                let until = tokio::time::Instant::now() + SLICE;
                while tokio::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::sleep(SLICE);
            }
        }
    }
}

/// CPU time this thread consumed (user + system), from `/proc/thread-self/stat`.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let f: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // Fields 14 and 15 overall; field 3 is index 0 after the command name.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// Spawns one worker per spec and waits until each has joined its cgroup and reported ready.
/// On error the workers already spawned are handed back with the message, for the caller's
/// cgroup revert to kill and reap.
pub(crate) async fn spawn(
    exe: &Path,
    specs: &[WorkerSpec],
) -> Result<Vec<Child>, (String, Vec<Child>)> {
    let mut children = Vec::with_capacity(specs.len());
    for spec in specs {
        if let Err(message) = spawn_one(exe, spec, &mut children).await {
            return Err((message, children));
        }
    }
    Ok(children)
}

async fn spawn_one(exe: &Path, spec: &WorkerSpec, children: &mut Vec<Child>) -> Result<(), String> {
    let json = serde_json::to_string(spec).map_err(|e| format!("worker spec: {e}"))?;
    let mut child = Command::new(exe)
        .arg("__stress-worker")
        .arg(json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start stress worker {}: {e}", exe.display()))?;
    let stdout = child.stdout.take();
    children.push(child);
    let Some(stdout) = stdout else {
        return Err("stress worker has no stdout".into());
    };
    let mut line = String::new();
    let read =
        tokio::time::timeout(READY_TIMEOUT, BufReader::new(stdout).read_line(&mut line)).await;
    match read {
        Ok(Ok(_)) if line.trim() == "ready" => {}
        Ok(Ok(_)) => {
            return Err(format!(
                "stress worker ended before it was ready (see its error above){}",
                exit_note(children.last_mut()).await
            ));
        }
        Ok(Err(e)) => return Err(format!("reading from a stress worker: {e}")),
        Err(_) => {
            return Err(format!(
                "stress worker not ready after {}s",
                READY_TIMEOUT.as_secs()
            ));
        }
    }
    Ok(())
}

/// Sends SIGKILL to every stress worker whose spec names `cgroup`, joined or not (those not yet
/// joined are not in its `cgroup.procs`). Returns how many there were.
pub(crate) fn kill_unjoined(cgroup: &Path) -> usize {
    // The spec is on the command line as JSON; its `cgroup` field, spelt as serde spells it.
    let Ok(quoted) = serde_json::to_string(cgroup) else {
        return 0;
    };
    let mark = format!("\"cgroup\":{quoted}");
    let mut killed = 0;
    for pid in crate::fault::procfs::all_pids() {
        let Some(cmdline) = crate::fault::procfs::cmdline_of(pid) else {
            continue;
        };
        if !cmdline.contains("__stress-worker") || !cmdline.contains(&mark) {
            continue;
        }
        if let Some(p) = rustix::process::Pid::from_raw(pid) {
            // ESRCH: it exited meanwhile, which is what we want.
            if rustix::process::kill_process(p, rustix::process::Signal::KILL).is_ok() {
                killed += 1;
            }
        }
    }
    killed
}

async fn exit_note(child: Option<&mut Child>) -> String {
    let Some(child) = child else {
        return String::new();
    };
    match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(status)) => format!(": {status}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_is_tagged_json() {
        let spec = WorkerSpec::Cpu {
            cgroup: "/sys/fs/cgroup/pids/chaosforge/1-a-0".into(),
            percent: 50,
            cpus: vec![],
        };
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(
            json,
            r#"{"work":"cpu","cgroup":"/sys/fs/cgroup/pids/chaosforge/1-a-0","percent":50}"#
        );
        assert_eq!(serde_json::from_str::<WorkerSpec>(&json).unwrap(), spec);
        let mem: WorkerSpec =
            serde_json::from_str(r#"{"work":"memory","cgroup":"/x","bytes":1024}"#).unwrap();
        assert!(matches!(mem, WorkerSpec::Memory { bytes: 1024, .. }));
    }

    /// A worker the runner started just before it died has not joined its cgroup, so only its
    /// command line says whose it is; a revert must find it there.
    #[tokio::test]
    async fn a_worker_not_yet_in_its_cgroup_is_found_by_its_command_line() {
        let cgroup = PathBuf::from(format!(
            "/sys/fs/cgroup/pids/chaosforge/{}-unjoined-test-0",
            std::process::id()
        ));
        let spec = serde_json::to_string(&WorkerSpec::Cpu {
            cgroup: cgroup.clone(),
            percent: 1,
            cpus: vec![],
        })
        .unwrap();
        // `sh -c 'read x' __stress-worker <spec>`: a stand-in with a worker's command line that
        // waits on its stdin, does no work and has not joined anything (spawn returns after the
        // exec, so the command line is already there).
        let mut stand_in = std::process::Command::new("sh")
            .args(["-c", "read x", "__stress-worker", &spec])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let other = cgroup.with_file_name("someone-else-0");
        assert_eq!(
            kill_unjoined(&other),
            0,
            "another cgroup's worker was killed"
        );
        // Bounded retries: on a loaded machine the stand-in's command line was seen missing
        // right after spawn (a clean-clone CI run), which is the stand-in's timing, not the
        // search's.
        let found = (0..250).find_map(|_| match kill_unjoined(&cgroup) {
            0 => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                None
            }
            n => Some(n),
        });
        assert_eq!(found, Some(1));
        let status = stand_in.wait().unwrap();
        assert!(!status.success(), "the stand-in was killed: {status}");
    }

    #[tokio::test]
    async fn a_worker_that_cannot_join_its_cgroup_does_nothing() {
        let err = run_worker(WorkerSpec::Cpu {
            cgroup: "/nonexistent/chaosforge/x".into(),
            percent: 100,
            cpus: vec![],
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("cannot join cgroup"), "{err}");
    }
}
