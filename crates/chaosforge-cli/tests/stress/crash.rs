//! After a crash (guards forgotten, journal released), `recover` alone removes every trace:
//! no worker alive, no cgroup, no ballast.

use chaosforge::fault::Fault;
use chaosforge::fault::stress::{CpuStress, DiskFill, MemoryStress};

use crate::{Cleanup, Run, Tmpfs, WORKERS, alive, exe, my_cgroups, my_workers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_leaves_no_worker_cgroup_or_ballast() {
    let _serial = WORKERS.lock().await;
    let _cleanup = Cleanup::mine();
    let fs = Tmpfs::mount("32m");
    let run = Run::new();
    let faults: Vec<Box<dyn Fault>> = vec![
        Box::new(CpuStress {
            alongside: None,
            target: "host".into(),
            workers: 2,
            percent: 10,
            exe: exe(),
        }),
        Box::new(MemoryStress {
            target: "host".into(),
            bytes: 16 << 20,
            exe: exe(),
        }),
        Box::new(DiskFill {
            target: "host".into(),
            dir: fs.path().to_path_buf(),
            percent: 80,
            margin_bytes: 0,
        }),
    ];
    for (i, f) in faults.iter().enumerate() {
        let guard = f.inject(&run.cx(i as u32, f.kind())).await.unwrap();
        // As if the runner died: nothing reverts it in this process.
        let _ = guard.forget();
    }
    let workers = my_workers();
    let cgroups = my_cgroups();
    assert_eq!(workers.len(), 3, "{workers:?}");
    assert_eq!(cgroups.len(), 2, "{cgroups:?}");
    assert_eq!(fs.ballast().len(), 1);

    let Run { state, journal } = run;
    drop(journal);
    let summary = recover_dead(state.path()).await;
    assert_eq!(summary.faults.len(), 3, "{summary:?}");
    assert!(!summary.has_failures(), "{summary:?}");

    for pid in workers {
        assert!(!alive(pid), "worker {pid} survived recover");
    }
    for c in cgroups {
        assert!(!c.exists(), "cgroup {} survived recover", c.display());
    }
    assert!(my_cgroups().is_empty());
    assert!(fs.ballast().is_empty(), "ballast survived recover");
    let again = chaosforge::recover::recover(state.path()).await.unwrap();
    assert!(again.is_empty(), "{again:?}");
}

/// The runner half of `a_killed_runner_leaves_nothing_after_recover`: does its work only in the
/// child process that test starts, with `CHAOSFORGE_TEST_STATE` and `CHAOSFORGE_TEST_FILL` set;
/// in a normal test run it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_that_gets_killed() {
    let (Some(state), Some(fill)) = (
        std::env::var_os("CHAOSFORGE_TEST_STATE"),
        std::env::var_os("CHAOSFORGE_TEST_FILL"),
    ) else {
        return;
    };
    let journal = chaosforge::journal::Journal::create(
        std::path::Path::new(&state),
        &chaosforge::journal::new_run_id(),
    )
    .unwrap();
    let faults: Vec<Box<dyn Fault>> = vec![
        Box::new(CpuStress {
            alongside: None,
            target: "host".into(),
            workers: 1,
            percent: 10,
            exe: exe(),
        }),
        Box::new(DiskFill {
            target: "host".into(),
            dir: fill.into(),
            percent: 50,
            margin_bytes: 0,
        }),
    ];
    let mut guards = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        let cx = chaosforge::fault::InjectCx {
            journal: &journal,
            id: chaosforge::journal::FaultId(i as u32),
            name: f.kind(),
        };
        guards.push(f.inject(&cx).await.unwrap());
    }
    println!("injected");
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runner_leaves_nothing_after_recover() {
    use std::io::BufRead;
    let _serial = WORKERS.lock().await;
    let fs = Tmpfs::mount("32m");
    let state = tempfile::tempdir().unwrap();
    let mut runner = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash::runner_that_gets_killed", "--nocapture"])
        .env("CHAOSFORGE_TEST_STATE", state.path())
        .env("CHAOSFORGE_TEST_FILL", fs.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let runner_pid = runner.id();
    let _cleanup = Cleanup(runner_pid);
    let stdout = runner.stdout.take().unwrap();
    let injected = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("injected"))
    })
    .await
    .unwrap();
    let prefix = format!("{runner_pid}-");
    let runner_cgroups = || -> Vec<std::path::PathBuf> {
        chaosforge::fault::stress::chaosforge_cgroups()
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&prefix)
            })
            .collect()
    };
    let cgroups = runner_cgroups();
    let workers: Vec<i32> = cgroups.iter().flat_map(|c| crate::procs(c)).collect();
    // SIGKILL: no Drop, no revert; the workers are re-parented and keep burning.
    runner.kill().unwrap();
    runner.wait().unwrap();
    assert!(injected, "the runner did not inject");
    assert_eq!(cgroups.len(), 1, "{cgroups:?}");
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert!(
        workers.iter().all(|p| alive(*p)),
        "workers outlive their runner"
    );
    assert_eq!(fs.ballast().len(), 1);

    let summary = recover_dead(state.path()).await;
    assert_eq!(summary.faults.len(), 2, "{summary:?}");
    assert!(!summary.has_failures(), "{summary:?}");
    for pid in &workers {
        assert!(!alive(*pid), "worker {pid} survived recover");
    }
    assert!(runner_cgroups().is_empty(), "cgroups survived recover");
    assert!(fs.ballast().is_empty(), "ballast survived recover");
}

/// `recover` of a run whose runner is this test process. Its journal is dropped, but a child
/// another test is starting holds a copy of the lock from its fork until its exec; a real dead
/// runner's `recover` waits that out (`Journal::open_dead`), this process is alive, so the run
/// looks live for that moment. Ask again, for a bounded while, until the run is no longer live.
async fn recover_dead(state: &std::path::Path) -> chaosforge::recover::RecoverSummary {
    for _ in 0..100 {
        let summary = chaosforge::recover::recover(state).await.unwrap();
        if summary.live_runs.is_empty() {
            return summary;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the run still looks live after 5 s: its lock is held");
}
