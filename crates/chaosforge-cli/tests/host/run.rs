//! `chaosforge run` with a partition, end to end: the runner runs inside host `a` (a namespace
//! without a default route), monitors `b` over the bridge, and cuts `b` off from `a`.

use std::process::{Command, Stdio};
use std::time::Duration;

use chaosforge::fault::host::exec::SystemExecutor;
use chaosforge::fault::host::nft;

use crate::netns::Hosts;

fn experiment(h: &Hosts, inject: &str) -> String {
    format!(
        r#"apiVersion: chaosforge/v1
name: partition-b-from-a
targets:
  - {{ name: node-a, netns: {a} }}
  - {{ name: node-b, netns: {b}, labels: {{ service: b }} }}
hypothesis:
  monitors:
    - name: b-echo
      tcp: {{ address: "{b_tcp}", interval: 100ms, timeout: 300ms }}
      expect: ["availability >= 99%"]
faults:
  - name: cut-b
    partition: {{ peers: [node-a] }}
    target: {{ select: {{ service: b }} }}
phases: {{ baseline: 500ms, inject: {inject}, recover_within: 5s }}
"#,
        a = h.a.ns,
        b = h.b.ns,
        b_tcp = h.b.tcp()
    )
}

/// `chaosforge run EXP --state-dir STATE` inside namespace `ns`, to completion, asserting its
/// exit code (showing both outputs if it differs); returns stdout.
fn run_in(ns: &str, exp: &std::path::Path, state: &std::path::Path, code: i32) -> String {
    let out = in_ns(
        ns,
        &[
            "run",
            exp.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `chaosforge ARGS…` run inside namespace `ns`.
fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .arg(assert_cmd::cargo::cargo_bin!("chaosforge"))
        .args(args);
    c
}

fn tables(ns: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(nft::chaosforge_tables(&SystemExecutor, Some(ns)))
        .unwrap()
}

#[test]
fn a_partition_refutes_availability_and_heals() {
    let h = Hosts::new();
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp.yaml");
    std::fs::write(&exp, experiment(&h, "1s")).unwrap();
    let state = dir.path().join("state");
    let stdout = run_in(&h.a.ns, &exp, &state, 1);
    assert!(stdout.contains("REFUTED"), "{stdout}");
    assert!(stdout.contains("partition from node-a"), "{stdout}");
    // Every probe during the fault failed; every probe after recovery succeeded.
    let report = report_in(&state);
    let m = &report.monitors[0];
    assert!(m.during.samples >= 5 && m.during.ok == 0, "{m:?}");
    assert!(
        m.after.samples >= 3 && m.after.ok == m.after.samples,
        "{m:?}"
    );
    assert!(tables(&h.b.ns).is_empty(), "the run removes its table");
    assert_eq!(h.a.probes_ok(&h.b.tcp(), 20, 1000), 20);
}

#[test]
fn recover_removes_a_partition_left_by_a_killed_runner() {
    let h = Hosts::new();
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp.yaml");
    std::fs::write(&exp, experiment(&h, "60s")).unwrap();
    let state = dir.path().join("state");
    let mut runner = in_ns(
        &h.a.ns,
        &[
            "run",
            exp.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut injected = false;
    for _ in 0..150 {
        if !tables(&h.b.ns).is_empty() {
            injected = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(injected, "the runner never partitioned b");
    runner.kill().unwrap();
    runner.wait().unwrap();
    assert_eq!(
        h.a.probes_ok(&h.b.tcp(), 10, 300),
        0,
        "the partition outlives its runner"
    );

    let out = Command::new(assert_cmd::cargo::cargo_bin!("chaosforge"))
        .args(["recover", "--state-dir", state.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("deleted nft table"), "{stdout}");
    assert!(tables(&h.b.ns).is_empty(), "no table left");
    assert_eq!(
        h.a.probes_ok(&h.b.tcp(), 20, 1000),
        20,
        "b is reachable again"
    );
}

/// A kernel-level latency on `b` refutes a latency hypothesis measured from `a`, the plan and
/// the report name the mechanism, and the delay is gone after the run.
#[test]
fn kernel_latency_refutes_a_latency_hypothesis() {
    let h = Hosts::new();
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp.yaml");
    std::fs::write(
        &exp,
        format!(
            r#"apiVersion: chaosforge/v1
name: slow-b
targets:
  - {{ name: node-a, netns: {a} }}
  - {{ name: node-b, netns: {b} }}
hypothesis:
  monitors:
    - name: b-connect
      tcp: {{ address: "{b_tcp}", interval: 50ms, timeout: 1s }}
      expect: ["latency.p50 < 40ms"]
faults:
  - name: slow-b
    latency: {{ delay: 100ms, peers: [node-a] }}
    target: {{ select: {{ name: node-b }} }}
phases: {{ baseline: 500ms, inject: 1500ms, recover_within: 5s }}
"#,
            a = h.a.ns,
            b = h.b.ns,
            b_tcp = h.b.tcp()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let stdout = run_in(&h.a.ns, &exp, &state, 1);
    assert!(stdout.contains("REFUTED"), "{stdout}");
    assert!(
        stdout.contains("latency 100ms (peers node-a, egress, via "),
        "{stdout}"
    );
    let report = report_in(&state);
    let m = &report.monitors[0];
    assert!(
        m.during.samples >= 10 && m.during.ok == m.during.samples,
        "{m:?}"
    );
    // Connect time is one SYN-ACK delayed: +100 ms at the median.
    let v = serde_json::to_value(m).unwrap();
    let during = v["expectations"][0]["during"]["value"].as_f64().unwrap();
    let baseline = v["expectations"][0]["baseline"]["value"].as_f64().unwrap();
    let added = (during - baseline) * 1000.0;
    assert!((95.0..=105.0).contains(&added), "added {added:.2} ms: {v}");
    let residue = rt().block_on(async {
        let mut r = chaosforge::fault::host::iptables::residue(&SystemExecutor, Some(&h.b.ns))
            .await
            .unwrap();
        r.extend(
            chaosforge::fault::host::tc::residue(&SystemExecutor, Some(&h.b.ns))
                .await
                .unwrap(),
        );
        r
    });
    assert!(residue.is_empty(), "{residue:?}");
}

/// The report of the only run in `state`, rebuilt from its journal.
fn report_in(state: &std::path::Path) -> chaosforge::report::Report {
    let journal = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("journal.jsonl");
    chaosforge::report::Report::from_events(&chaosforge::journal::read(&journal).unwrap()).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
