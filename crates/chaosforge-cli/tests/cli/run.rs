//! `chaosforge run` end to end against real loopback servers and processes: outcomes and exit
//! codes, the report, the journal, halts, and reverting on SIGTERM.

use std::time::Duration;

use chaosforge::journal::{self, Event};

use crate::support::{
    Dir, EchoServer, Victim, chaosforge, pause_experiment, recover, run, run_exit, signal,
    spawn_run, wait_for,
};

fn proxy_experiment(upstream: &str, fault: &str, expect: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: chaosforge/v1
name: run-test
seed: 1
targets:
  - name: backend
    proxy: {{ listen: "127.0.0.1:{port}", upstream: "{upstream}" }}
    labels: {{ service: backend }}
hypothesis:
  monitors:
    - name: backend-port
      tcp: {{ address: "127.0.0.1:{port}", interval: 50ms, timeout: 500ms }}
      expect: [{expect}]
faults:
  - name: the-fault
    {fault}
    target: {{ select: {{ service: backend }} }}
phases: {{ baseline: 500ms, inject: 1s, recover_within: 3s }}
{extra}
"#,
        port = free_port(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_fault_the_system_survives_is_confirmed_with_exit_0_and_a_json_report() {
    let up = EchoServer::start();
    let dir = Dir::new();
    // Latency on the downstream stream does not slow a TCP connect: the hypothesis holds.
    let exp = dir.write(
        "ok.yaml",
        &proxy_experiment(
            &up.addr.to_string(),
            "latency: { delay: 100ms }",
            r#""availability >= 99%""#,
            "",
        ),
    );
    let json = dir.path().join("report.json");
    let out = chaosforge()
        .arg("run")
        .arg(&exp)
        .arg("--state-dir")
        .arg(dir.state())
        .arg("--report-json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("CONFIRMED"), "{stdout}");
    assert!(stdout.contains("time to recover"), "{stdout}");
    // Nothing degraded (a connect is not slowed by downstream latency): there is no time to
    // recover to speak of.
    assert!(stdout.contains("no degradation observed"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["outcome"]["status"], "confirmed");
    assert_eq!(report["faults"][0]["name"], "the-fault");
    assert!(report["faults"][0]["injected_at"].is_string());
    assert!(report["faults"][0]["reverted_at"].is_string());
    assert!(
        report["monitors"][0]["baseline"]["samples"]
            .as_u64()
            .unwrap()
            >= 3
    );
    assert!(report["monitors"][0]["during"]["samples"].as_u64().unwrap() >= 5);
}

#[test]
fn a_fault_the_system_does_not_survive_is_refuted_with_exit_1() {
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "down.yaml",
        &proxy_experiment(
            &up.addr.to_string(),
            "down: {}",
            r#""availability >= 99%""#,
            "",
        ),
    );
    let stdout = run_exit(&exp, &dir, 1);
    assert!(stdout.contains("REFUTED"), "{stdout}");
    // During the fault the port refused connections; after revert it accepted them again.
    let journal = &dir.journals()[0];
    let report = chaosforge::report::Report::from_events(&journal::read(journal).unwrap()).unwrap();
    let m = &report.monitors[0];
    assert_eq!(m.during.ok, 0, "down must refuse every connection: {m:?}");
    assert!(
        m.after.samples > 0 && m.after.ok == m.after.samples,
        "after revert all connects succeed: {m:?}"
    );
    assert!(report.recovery.as_ref().unwrap().ttr.is_some());
}

#[test]
fn a_halt_rule_halts_with_exit_3_and_reverts() {
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "halt.yaml",
        &proxy_experiment(
            &up.addr.to_string(),
            "down: {}",
            r#""availability >= 99%""#,
            "policies: { halt_when: [\"availability < 50%\"], halt_window: 200ms }",
        )
        .replace("inject: 1s", "inject: 30s"),
    );
    let stdout = run_exit(&exp, &dir, 3);
    assert!(stdout.contains("HALTED"), "{stdout}");
    let events = journal::read(&dir.journals()[0]).unwrap();
    assert!(
        journal::open_faults(&events).is_empty(),
        "a halted run reverts everything"
    );
    // Halted long before the 30 s inject phase would have ended.
    let Some(Event::RunFinished { at, .. }) = events.last() else {
        panic!("journal not closed")
    };
    assert!(*at < Duration::from_secs(20), "halt took {at:?}");
}

#[test]
fn sigterm_reverts_everything_before_exiting() {
    let victim = Victim::start();
    let dir = Dir::new();
    let up = EchoServer::start();
    let exp = dir.write("pause.yaml", &pause_experiment(&victim, &up));
    let mut child = spawn_run(&exp, &dir);
    assert!(
        wait_for(Duration::from_secs(15), || victim.state() == 'T'),
        "the victim was never stopped"
    );
    signal(&child, rustix::process::Signal::TERM);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "SIGTERM halts the run");
    assert!(
        wait_for(Duration::from_secs(2), || victim.state() != 'T'),
        "SIGTERM must revert the pause"
    );
    let events = journal::read(&dir.journals()[0]).unwrap();
    assert!(journal::open_faults(&events).is_empty());
    assert!(
        matches!(events.last(), Some(Event::RunFinished { .. })),
        "journal closed"
    );
    // The journal says which signal it was.
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Halted { reason, .. }
            if reason == "interrupted by SIGTERM")),
        "{events:?}"
    );
    let out = recover(&dir);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to recover"));
}

#[test]
fn the_report_can_be_rebuilt_from_the_journal_alone() {
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "r.yaml",
        &proxy_experiment(
            &up.addr.to_string(),
            "latency: { delay: 10ms }",
            r#""availability >= 99%""#,
            "",
        ),
    );
    let out = run(&exp, &dir);
    assert_eq!(out.status.code(), Some(0));
    let journal = dir.journals()[0].clone();
    let a = chaosforge().arg("report").arg(&journal).output().unwrap();
    let b = chaosforge().arg("report").arg(&journal).output().unwrap();
    assert!(a.status.success());
    assert_eq!(
        a.stdout, b.stdout,
        "the same journal renders the same bytes"
    );
    assert_eq!(
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&out.stdout),
        "report = f(journal)"
    );
}

#[test]
fn kill_is_refused_without_the_policy_and_irreversible_with_it() {
    let victim = Victim::start();
    let up = EchoServer::start();
    let dir = Dir::new();
    let text = |allow: bool| {
        format!(
            r#"apiVersion: chaosforge/v1
name: kill-test
targets: [{{ name: victim, process: {{ pid: {pid} }} }}]
hypothesis:
  monitors: [{{ name: port, tcp: {{ address: "{up}", interval: 50ms }}, expect: ["availability >= 90%"] }}]
faults: [{{ name: kill-it, kill: {{ signal: SIGTERM }}, target: {{ select: {{ name: victim }} }} }}]
phases: {{ baseline: 300ms, inject: 300ms, recover_within: 2s }}
policies: {{ allow_irreversible: {allow} }}
"#,
            pid = victim.pid(),
            up = up.addr
        )
    };
    let refused = dir.write("no.yaml", &text(false));
    let out = run(&refused, &dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("irreversible"));
    assert_ne!(
        victim.state(),
        '?',
        "nothing may happen to the victim without the policy"
    );

    let allowed = dir.write("yes.yaml", &text(true));
    let mut victim = victim;
    let out = run(&allowed, &dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The monitored port is unaffected, so the hypothesis holds; the victim is gone for good.
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("irreversible"), "{stdout}");
    let status = victim.child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(15), "the victim died of SIGTERM");
    let rec = recover(&dir);
    assert!(String::from_utf8_lossy(&rec.stdout).contains("nothing to recover"));
}

/// Live stress workers of this test: chaosforge processes running `__stress-worker`.
fn stress_workers() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("__stress-worker"))
                .unwrap_or(false)
                && chaosforge::fault::process::state_of(*pid) != Some('Z')
        })
        .collect()
}

#[test]
fn cpu_stress_runs_in_workers_that_recover_kills_after_a_crash() {
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "cpu.yaml",
        &format!(
            r#"apiVersion: chaosforge/v1
name: cpu-stress
targets: [{{ name: me, host: local }}]
hypothesis:
  monitors: [{{ name: port, tcp: {{ address: "{up}", interval: 100ms }}, expect: ["availability >= 90%"] }}]
faults: [{{ name: burn, cpu: {{ workers: 1, percent: 30 }}, target: {{ select: {{ name: me }} }} }}]
phases: {{ baseline: 300ms, inject: 60s, recover_within: 5s }}
"#,
            up = up.addr
        ),
    );
    let before = stress_workers();
    let mut runner = spawn_run(&exp, &dir);
    let started = wait_for(Duration::from_secs(20), || {
        stress_workers().len() > before.len()
    });
    signal(&runner, rustix::process::Signal::KILL);
    runner.wait().unwrap();
    assert!(started, "the run never started its cpu worker");
    let orphans: Vec<i32> = stress_workers()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(!orphans.is_empty(), "the worker outlives its killed runner");

    let out = recover(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("reverted burn on me"), "{stdout}");
    assert!(
        wait_for(Duration::from_secs(5), || stress_workers()
            .iter()
            .all(|p| !orphans.contains(p))),
        "recover must kill the worker"
    );
    assert!(
        chaosforge::fault::stress::chaosforge_cgroups().is_empty(),
        "no cgroup left"
    );
}
