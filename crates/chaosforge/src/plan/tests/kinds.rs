//! Fault kinds: descriptions, names, target classes, one kind per fault, unique names.

use super::*;

// === FaultKind ===

#[test]
fn describe_strings() {
    for (k, want) in [
        ("latency: { delay: 200ms }", "latency 200ms (downstream)"),
        (
            "latency: { delay: 200ms, jitter: 20ms }",
            "latency 200ms ±20ms (downstream)",
        ),
        (
            "latency: { delay: 1.5s, direction: both, toxicity: 50% }",
            "latency 1.5s (both ways, toxicity 50%)",
        ),
        (
            "latency: { delay: 1ms, direction: upstream }",
            "latency 1ms (upstream)",
        ),
        (
            "bandwidth: { rate: 1MB/s }",
            "bandwidth 1000000 B/s (downstream)",
        ),
        (
            "timeout: { after: 5s }",
            "timeout (close after 5s) (downstream)",
        ),
        ("timeout: {}", "timeout (hold forever) (downstream)"),
        ("reset: {}", "reset after 0s (downstream)"),
        (
            "reset: { after: 250ms, toxicity: 10% }",
            "reset after 250ms (downstream, toxicity 10%)",
        ),
        ("down: {}", "down"),
        (
            "corrupt: { probability: 1% }",
            "corrupt 1% per byte (downstream)",
        ),
        (
            "corrupt: { probability: 0.5%, per: chunk, direction: upstream }",
            "corrupt 0.5% per chunk (upstream)",
        ),
    ] {
        assert_eq!(kind_of(k).describe(), want, "{k}");
    }
    assert_eq!(
        FaultKind::Pause.describe(),
        "pause (SIGSTOP, reverted by SIGCONT)"
    );
    assert_eq!(
        FaultKind::Kill {
            signal: 9,
            signal_name: "SIGKILL".into(),
            reach: KillReach::Process,
        }
        .describe(),
        "kill with SIGKILL (irreversible)"
    );
}

#[test]
fn names_and_target_classes() {
    for (k, name) in [
        ("latency: { delay: 1ms }", "latency"),
        ("bandwidth: { rate: 1kB/s }", "bandwidth"),
        ("timeout: {}", "timeout"),
        ("reset: {}", "reset"),
        ("down: {}", "down"),
        ("corrupt: { probability: 1% }", "corrupt"),
    ] {
        let kind = kind_of(k);
        assert_eq!(kind.name(), name);
        assert_eq!(kind.target_class(), TargetClass::Proxy);
        assert_eq!(kind.irreversible(), None, "{k}");
    }
    assert_eq!(FaultKind::Pause.name(), "pause");
    assert_eq!(FaultKind::Pause.target_class(), TargetClass::Process);
    assert_eq!(FaultKind::Pause.irreversible(), None);
    let kill = FaultKind::Kill {
        signal: 15,
        signal_name: "SIGTERM".into(),
        reach: KillReach::Process,
    };
    assert_eq!(kill.name(), "kill");
    assert_eq!(kill.target_class(), TargetClass::Process);
    assert!(kill.irreversible().is_some());
}

/// `HEAD` with one process target (`worker`, pid 4242) appended to the targets, plus `rest`.

#[test]
fn fault_kinds_must_fit_their_targets() {
    // A proxy fault whose selector reaches a process target is refused, naming the culprit.
    let d = errors(&with_process(
        "faults:
  - name: f
    latency: { delay: 1ms }
    target: { scope: all }
",
    ));
    assert!(
        has(
            &d,
            "faults[0].target.select",
            "acts on proxy targets, but the selector matches worker"
        ),
        "{d}"
    );
    let d = errors(&with_process(
        "faults:
  - name: f
    pause: {}
    target: { select: { zone: a } }
",
    ));
    assert!(
        has(&d, "faults[0].target.select", "acts on process targets"),
        "{d}"
    );
}

#[test]
fn a_fault_has_exactly_one_kind() {
    let d = errors(&with(
        "faults:
  - name: f
    target: {}
",
    ));
    assert!(has(&d, "faults[0]", "names no fault kind"), "{d}");
    let d = errors(&with(
        "faults:
  - name: f
    latency: { delay: 1ms }
    down: {}
    target: {}
",
    ));
    assert!(has(&d, "faults[0].down", "latency and down"), "{d}");
}

#[test]
fn duplicate_fault_names_are_reported() {
    let d = errors(&with(
        "faults:
  - name: f
    latency: { delay: 1ms }
    target: {}
  - name: f
    down: {}
    target: {}
",
    ));
    assert!(has(&d, "faults[1].name", "duplicate fault name `f`"), "{d}");
}

#[test]
fn targets_in_use_lists_each_chosen_target_once() {
    let p = plan(
        &with(
            "faults:
  - name: a
    latency: { delay: 1ms }
    target: { select: { zone: a }, scope: all }
  - name: b
    down: {}
    target: { select: { role: web }, scope: all }
",
        ),
        Some(1),
    );
    let used: Vec<&str> = targets_in_use(&p).into_iter().collect();
    assert_eq!(used, ["node-1", "node-2", "node-3", "node-5"]);
}
