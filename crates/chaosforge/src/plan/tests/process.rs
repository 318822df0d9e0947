//! The process family: kill, pause, limits, freeze and restart checks.

use super::*;

#[test]
fn kill_needs_allow_irreversible() {
    let fault = "faults:
  - name: k
    kill: { signal: term }
    target: { select: { name: worker } }
";
    let d = errors(&with_process(fault));
    assert!(
        has(&d, "faults[0].kill", "policies.allow_irreversible: true"),
        "{d}"
    );
    assert_eq!(d.len(), 1, "{d}");

    let p = plan(
        &with_process(&format!(
            "{fault}policies: {{ allow_irreversible: true }}\n"
        )),
        Some(1),
    );
    assert_eq!(
        p.faults[0].kind,
        FaultKind::Kill {
            signal: 15,
            signal_name: "SIGTERM".into(),
            reach: KillReach::Process,
        }
    );
    assert_eq!(
        p.faults[0].kind.describe(),
        "kill with SIGTERM (irreversible)"
    );
    assert_eq!(p.faults[0].targets, ["worker"]);

    // The default signal is SIGKILL; an unknown one is an error at the signal.
    let p = plan(
        &with_process(
            "faults:
  - name: k
    kill: {}
    target: { select: { role: worker } }
policies: { allow_irreversible: true }
",
        ),
        Some(1),
    );
    assert_eq!(
        p.faults[0].kind.describe(),
        "kill with SIGKILL (irreversible)"
    );
    let d = errors(&with_process(
        "faults:
  - name: k
    kill: { signal: SIGFOO }
    target: { select: { role: worker } }
policies: { allow_irreversible: true }
",
    ));
    assert!(has(&d, "faults[0].kill.signal", "unknown signal"), "{d}");
}

#[test]
fn pause_is_reversible_and_needs_no_permission() {
    let p = plan(
        &with_process(
            "faults:
  - name: p
    pause: {}
    target: { select: { role: worker } }
",
        ),
        Some(1),
    );
    assert_eq!(p.faults[0].kind, FaultKind::Pause);
    assert_eq!(p.faults[0].targets, ["worker"]);
}

/// One fault named `f` of `kind` (a flow mapping) on the process target `worker`, plus `extra`.
fn process_fault(kind: &str, extra: &str) -> String {
    with_process(&format!(
        "faults:\n  - name: f\n    {kind}\n    target: {{ select: {{ name: worker }} }}\n{extra}"
    ))
}

#[test]
fn kill_reaches_the_group_or_the_cgroup_but_not_both() {
    let allow = "policies: { allow_irreversible: true }\n";
    let p = plan(&process_fault("kill: { group: true }", allow), Some(1));
    assert_eq!(
        p.faults[0].kind.describe(),
        "kill the process group with SIGKILL (irreversible)"
    );
    let p = plan(
        &process_fault("kill: { signal: TERM, cgroup: true }", allow),
        Some(1),
    );
    assert!(matches!(
        p.faults[0].kind,
        FaultKind::Kill {
            signal: 15,
            reach: KillReach::Cgroup,
            ..
        }
    ));
    assert!(p.faults[0].kind.irreversible().is_some());
    let d = errors(&process_fault("kill: { group: true, cgroup: true }", allow));
    assert!(has(&d, "faults[0].kill.cgroup", "not both"), "{d}");
    // Without the policy, a group kill is refused like any kill.
    let d = errors(&process_fault("kill: { group: true }", ""));
    assert!(has(&d, "faults[0].kill", "irreversible"), "{d}");
}

#[test]
fn limits_take_a_headroom_and_need_no_permission() {
    let p = plan(&process_fault("fd-exhaustion: {}", ""), Some(1));
    assert_eq!(p.faults[0].kind, FaultKind::FdExhaustion { headroom: 0 });
    assert_eq!(p.faults[0].kind.name(), "fd-exhaustion");
    assert_eq!(p.faults[0].kind.irreversible(), None);
    let p = plan(
        &process_fault("process-limit: { headroom: 3 }", ""),
        Some(1),
    );
    assert_eq!(p.faults[0].kind, FaultKind::ProcessLimit { headroom: 3 });
    assert_eq!(
        p.faults[0].kind.describe(),
        "process-limit: 3 more process(es) for its user (RLIMIT_NPROC)"
    );
    let d = errors(&process_fault("fd-exhaustion: { headroom: -1 }", ""));
    assert!(
        has(
            &d,
            "faults[0].fd-exhaustion.headroom",
            "`-1` is not a headroom"
        ),
        "{d}"
    );
    let d = errors(&process_fault("process-limit: { headroom: 2000000 }", ""));
    assert!(
        has(&d, "faults[0].process-limit.headroom", "from 0 to 1000000"),
        "{d}"
    );
}

#[test]
fn freeze_is_reversible_and_may_take_the_tree() {
    let p = plan(&process_fault("freeze: { tree: true }", ""), Some(1));
    assert_eq!(p.faults[0].kind, FaultKind::Freeze { tree: true });
    assert_eq!(p.faults[0].kind.target_class(), TargetClass::Process);
    assert_eq!(p.faults[0].kind.irreversible(), None);
    let d = errors(&with(
        "faults:\n  - name: f\n    freeze: {}\n    target: { select: { zone: a } }\n",
    ));
    assert!(
        has(&d, "faults[0].target.select", "acts on process targets"),
        "{d}"
    );
}

#[test]
fn restart_needs_a_command_one_readiness_check_and_a_timeout() {
    let p = plan(
        &process_fault(
            r#"restart: { command: "systemctl restart api", ready: { tcp: "127.0.0.1:8080" }, timeout: 10s }"#,
            "",
        ),
        Some(1),
    );
    assert_eq!(
        p.faults[0].kind,
        FaultKind::Restart {
            command: "systemctl restart api".into(),
            ready: Readiness::Tcp("127.0.0.1:8080".into()),
            timeout: Duration::from_secs(10),
        }
    );
    assert_eq!(
        p.faults[0].kind.describe(),
        "restart with `systemctl restart api`, ready within 10s when tcp 127.0.0.1:8080 accepts"
    );
    assert_eq!(p.faults[0].kind.irreversible(), None, "nothing is lost");
    let p = plan(
        &process_fault(
            r#"restart: { command: "x", ready: { http: "http://127.0.0.1:8080/health" } }"#,
            "",
        ),
        Some(1),
    );
    assert!(matches!(
        &p.faults[0].kind,
        FaultKind::Restart { ready: Readiness::Http(_), timeout, .. } if *timeout == Duration::from_secs(30)
    ));
    for (kind, path, needle) in [
        (
            r#"restart: { command: "", ready: { command: "true" } }"#,
            "faults[0].restart.command",
            "empty command",
        ),
        (
            r#"restart: { command: "x" }"#,
            "faults[0].restart",
            "needs `ready`",
        ),
        (
            r#"restart: { command: "x", ready: {} }"#,
            "faults[0].restart.ready",
            "one of `tcp`, `http` or `command`",
        ),
        (
            r#"restart: { command: "x", ready: { tcp: "127.0.0.1:1", http: "http://x/" } }"#,
            "faults[0].restart.ready.http",
            "tcp and http",
        ),
        (
            r#"restart: { command: "x", ready: { tcp: "8080" } }"#,
            "faults[0].restart.ready.tcp",
            "not `host:port`",
        ),
        (
            r#"restart: { command: "x", ready: { http: "ftp://x/" } }"#,
            "faults[0].restart.ready.http",
            "scheme `ftp`",
        ),
        (
            r#"restart: { command: "x", ready: { command: "true" }, timeout: 0s }"#,
            "faults[0].restart.timeout",
            "longer than zero",
        ),
    ] {
        let d = errors(&process_fault(kind, ""));
        assert!(has(&d, path, needle), "{kind}:\n{d}");
    }
}

#[test]
fn cpu_takes_a_process_target_but_memory_does_not() {
    // `cpu` on a process pins its workers beside it; the rest of the host family does not.
    let p = plan(&process_fault("cpu: { workers: 2 }", ""), Some(1));
    assert_eq!(
        p.faults[0].kind,
        FaultKind::Cpu {
            workers: 2,
            percent: 100
        }
    );
    assert!(p.faults[0].kind.also_on_process());
    let d = errors(&process_fault("memory: { size: 1MiB }", ""));
    assert!(has(&d, "faults[0].target.select", "netns or host"), "{d}");
}
