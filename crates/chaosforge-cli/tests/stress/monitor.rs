//! The `process` monitor reads what a stress fault really does: a cgroup burning half a core
//! reads as ~50 % CPU, and a memory hog's RSS as the bytes it holds.

use std::time::Duration;

use chaosforge::fault::Fault;
use chaosforge::fault::params::ProcessSelector;
use chaosforge::fault::stress::{CpuStress, MemoryStress};
use chaosforge::probe::Probe;
use chaosforge::probe::process::{ProcessProbe, ResourceSource};

use crate::{Cleanup, Run, WORKERS, exe, my_cgroups, procs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cgroup_burning_half_a_core_reads_as_fifty_percent() {
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
    let cgroups = my_cgroups();
    assert_eq!(cgroups.len(), 1, "{cgroups:?}");
    let probe = ProcessProbe::new("stress", ResourceSource::Cgroup(cgroups[0].clone()));
    // Four one-second samples, as a monitor with `interval: 1s` takes them.
    let mut readings = Vec::new();
    for _ in 0..5 {
        let s = probe.sample().await;
        assert!(s.ok, "{s:?}");
        readings.push(s.resource.and_then(|r| r.cpu).unwrap());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    guard.revert().await.unwrap();
    // The first reading covers the probe's own short first window; judge the steady ones.
    let steady = &readings[1..];
    let mean = steady.iter().sum::<f64>() / steady.len() as f64;
    eprintln!("cgroup cpu 50 %: process monitor read {readings:.1?}, mean {mean:.1} %");
    assert!(
        (40.0..=60.0).contains(&mean),
        "read {mean:.1} % of a core, expected 50 ± 10 pp ({readings:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_reads_as_the_bytes_it_holds() {
    let _serial = WORKERS.lock().await;
    let _cleanup = Cleanup::mine();
    let run = Run::new();
    const HOLD: u64 = 192 << 20;
    let fault = MemoryStress {
        target: "host".into(),
        bytes: HOLD,
        exe: exe(),
    };
    let guard = fault.inject(&run.cx(0, "mem")).await.unwrap();
    let cgroups = my_cgroups();
    let pids = procs(&cgroups[0]);
    assert_eq!(pids.len(), 1);
    let by_pid = ProcessProbe::new(
        "hog",
        ResourceSource::Process(ProcessSelector::Pid(pids[0])),
    );
    let by_cgroup = ProcessProbe::new("hog-cg", ResourceSource::Cgroup(cgroups[0].clone()));
    let (s, c) = (by_pid.sample().await, by_cgroup.sample().await);
    guard.revert().await.unwrap();
    assert!(s.ok, "{s:?}");
    let rss = s.resource.and_then(|r| r.memory).unwrap();
    let off = (rss as f64 - HOLD as f64).abs() / HOLD as f64;
    eprintln!(
        "memory hog {} MiB: process monitor read RSS {} MiB ({:.1} % off)",
        HOLD >> 20,
        rss >> 20,
        off * 100.0
    );
    assert!(off <= 0.10, "RSS {rss} is not within 10 % of {HOLD}");
    // memory.current counts the cgroup's page cache and kernel memory too, so it is at least
    // what the hog holds, when the controller is there at all.
    if let Some(current) = c.resource.and_then(|r| r.memory) {
        assert!(
            current as f64 >= HOLD as f64 * 0.9,
            "memory.current {current}"
        );
    }
}
