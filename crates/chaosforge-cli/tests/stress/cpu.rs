//! `cpu`: the workers burn the requested share of a core, and reverting kills them.

use std::time::{Duration, Instant};

use chaosforge::fault::Fault;
use chaosforge::fault::stress::CpuStress;
use chaosforge::testkit::assert_fault_compliance;
use rustix::process::Pid;

use crate::{Cleanup, Run, WORKERS, alive, exe, my_cgroups, my_workers, procs};

/// utime + stime of `pid`, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    // Field 3 (state) is index 0, so fields 14 and 15 are indices 11 and 12.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Share of one core `pid` used over `window`, from `/proc`.
fn cpu_share(pid: i32, window: Duration) -> f64 {
    let hz = clock_ticks_per_second();
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(window);
    let (t1, c1) = (Instant::now(), cpu_ticks(pid));
    (c1 - c0) as f64 / hz / (t1 - t0).as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_core_is_measured_as_half_a_core() {
    let _serial = WORKERS.lock().await;
    let _cleanup = Cleanup::mine();
    let run = Run::new();
    let fault = CpuStress {
        alongside: None,
        target: "host".into(),
        workers: 1,
        percent: 50,
        exe: exe(),
    };
    let guard = fault.inject(&run.cx(0, "cpu-half")).await.unwrap();

    // The worker is in the fault's cgroup, so `recover` can find it by the cgroup alone.
    let cgroups = my_cgroups();
    assert_eq!(cgroups.len(), 1, "{cgroups:?}");
    let cgroup = cgroups[0].clone();
    let pids = procs(&cgroup);
    assert_eq!(pids, my_workers(), "the only worker is in the cgroup");
    let pid = pids[0];

    let share = tokio::task::spawn_blocking(move || cpu_share(pid, Duration::from_secs(2)))
        .await
        .unwrap();
    eprintln!(
        "cpu 50 % × 1 worker: measured {:.1} % of a core",
        share * 100.0
    );
    assert!(
        (0.40..=0.60).contains(&share),
        "measured {:.1} % of a core, expected 40–60 %",
        share * 100.0
    );

    guard.revert().await.unwrap();
    assert!(!alive(pid), "revert must kill the worker");
    assert!(!cgroup.exists(), "revert must remove the cgroup");
    assert!(my_workers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_stress_is_compliant() {
    let _serial = WORKERS.lock().await;
    let _cleanup = Cleanup::mine();
    let fault = CpuStress {
        alongside: None,
        target: "host".into(),
        workers: 2,
        percent: 20,
        exe: exe(),
    };
    let state = tempfile::tempdir().unwrap();
    // In effect while workers of this process are alive, seen in /proc.
    assert_fault_compliance(&fault, state.path(), || async { !my_workers().is_empty() }).await;
    assert!(my_cgroups().is_empty(), "cgroups left: {:?}", my_cgroups());
}

#[tokio::test]
async fn bad_parameters_are_refused_before_anything_is_journaled() {
    let run = Run::new();
    for (workers, percent) in [(0, 50), (1, 0), (1, 101)] {
        let fault = CpuStress {
            alongside: None,
            target: "host".into(),
            workers,
            percent,
            exe: exe(),
        };
        assert!(fault.inject(&run.cx(0, "bad")).await.is_err());
    }
    let events = chaosforge::journal::read(run.journal.path()).unwrap();
    assert!(events.is_empty(), "{events:?}");
    let _ = &run.state;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_never_gets_ready_is_cleaned_up() {
    let _serial = WORKERS.lock().await;
    let _cleanup = Cleanup::mine();
    let run = Run::new();
    // `true` exits at once without saying `ready`: the second half of a partial injection.
    let fault = CpuStress {
        alongside: None,
        target: "host".into(),
        workers: 1,
        percent: 10,
        exe: "/bin/true".into(),
    };
    let err = fault.inject(&run.cx(0, "not-ready")).await.unwrap_err();
    assert!(
        matches!(
            err,
            chaosforge::fault::FaultError::Apply { undone: true, .. }
        ),
        "{err}"
    );
    assert!(
        my_cgroups().is_empty(),
        "the cgroup must be removed: {:?}",
        my_cgroups()
    );
    assert!(my_workers().is_empty());
}

/// The CPUs a thread may run on, from `/proc/PID/task/TID/status` (`Cpus_allowed_list`).
fn allowed_cpus(pid: i32, tid: &str) -> String {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_alongside_a_process_burn_on_its_cpus_only() {
    let _serial = WORKERS.lock().await;
    let _cleanup = Cleanup::mine();
    // A victim pinned to the last CPU, as `chaosforge demo` pins its database.
    let mut victim = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = victim.id() as i32;
    let all = rustix::thread::sched_getaffinity(None).unwrap();
    let last = (0..rustix::thread::CpuSet::MAX_CPU)
        .rfind(|&c| all.is_set(c))
        .unwrap();
    let mut one = rustix::thread::CpuSet::new();
    one.set(last);
    rustix::thread::sched_setaffinity(Pid::from_raw(pid), &one).unwrap();

    let run = Run::new();
    let fault = CpuStress {
        alongside: Some(chaosforge::fault::process::ProcessId {
            pid,
            start_time: chaosforge::fault::process::start_time_of(pid).unwrap(),
        }),
        target: "db".into(),
        workers: 2,
        percent: 100,
        exe: exe(),
    };
    let guard = fault.inject(&run.cx(0, "alongside")).await.unwrap();
    let workers = my_workers();
    assert_eq!(workers.len(), 2, "{workers:?}");
    for w in &workers {
        // The thread that burns is the busiest one; it must be pinned to the victim's CPU. It
        // pins itself when it starts, so wait (up to 5 s on a loaded machine) until it has
        // burned a tenth of a second: before that, the busiest thread may be another one.
        let ticks = |tid: &str| {
            let stat =
                std::fs::read_to_string(format!("/proc/{w}/task/{tid}/stat")).unwrap_or_default();
            // After the command's `)`: field 3 (state) first, so utime (14) and stime (15)
            // are at 11 and 12. Every field is kept: `tpgid` is -1 without a terminal.
            let f: Vec<&str> = stat[stat.rfind(')').map_or(0, |i| i + 1)..]
                .split_whitespace()
                .collect();
            let n = |k: usize| f.get(k).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
            n(11) + n(12)
        };
        let mut busiest = String::new();
        for _ in 0..50 {
            busiest = std::fs::read_dir(format!("/proc/{w}/task"))
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .max_by_key(|tid| ticks(tid))
                .unwrap();
            if ticks(&busiest) >= 10 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            allowed_cpus(*w, &busiest),
            last.to_string(),
            "worker {w}'s burning thread {busiest} must run on CPU {last} only"
        );
    }
    guard.revert().await.unwrap();
    assert!(my_workers().is_empty());
    let _ = victim.kill();
    let _ = victim.wait();
}
