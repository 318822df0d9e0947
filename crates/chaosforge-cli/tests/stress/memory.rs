//! `memory`: the worker holds the requested bytes resident, and reverting frees them.

use chaosforge::fault::Fault;
use chaosforge::fault::stress::MemoryStress;

use crate::{Cleanup, Run, WORKERS, alive, exe, my_cgroups, procs};

/// `VmRSS` of `pid` in bytes.
fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_holds_256_mib_resident() {
    let _serial = WORKERS.lock().await;
    let _cleanup = Cleanup::mine();
    let run = Run::new();
    const MIB_256: u64 = 256 << 20;
    let fault = MemoryStress {
        target: "host".into(),
        bytes: MIB_256,
        exe: exe(),
    };
    let guard = fault.inject(&run.cx(0, "mem")).await.unwrap();
    let cgroups = my_cgroups();
    assert_eq!(cgroups.len(), 1, "{cgroups:?}");
    let pids = procs(&cgroups[0]);
    assert_eq!(pids.len(), 1);
    // inject returns once the worker said it is ready, i.e. after every page was written.
    let rss = rss(pids[0]);
    eprintln!(
        "memory 256 MiB: worker VmRSS {} MiB ({rss} bytes)",
        rss >> 20
    );
    assert!(rss >= MIB_256, "VmRSS {rss} < {MIB_256}");

    guard.revert().await.unwrap();
    assert!(
        !alive(pids[0]),
        "revert must kill the worker, freeing its memory"
    );
    assert!(!cgroups[0].exists());
}
