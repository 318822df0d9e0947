//! `container:` targets: which kind `pause`, `kill` and `restart` become on them, the container
//! kinds (`stop`, `resource-limit`), and the host network faults that act in their namespace.

use super::*;
use crate::fault::params::{ContainerAction, ContainerRef, ContainerSelector};

/// `HEAD` with two containers (`web` by name, `cache` by label) and a process `worker`.
fn with_containers(rest: &str) -> String {
    let head = HEAD.replace(
        "hypothesis:\n",
        "  - name: web\n    container: { name: web, socket: /run/cf.sock }\n    labels: { role: ctr }\n  - name: cache\n    container: { label: \"app=cache\" }\n    interface: eth1\n    labels: { role: ctr }\n  - name: worker\n    process: { pid: 4242 }\n    labels: { role: worker }\nhypothesis:\n",
    );
    format!("{head}{rest}")
}

fn only_fault(body: &str, select: &str) -> String {
    with_containers(&format!(
        "faults:\n  - name: f\n    {body}\n    target: {{ select: {{ {select} }} }}\n"
    ))
}

#[test]
fn container_targets_keep_their_selector_socket_and_interface() {
    let p = plan(&with_containers(""), Some(1));
    let web = p.targets.iter().find(|t| t.name == "web").unwrap();
    assert_eq!(
        web.kind,
        TargetKind::Container(ContainerSelector {
            by: ContainerRef::Name("web".into()),
            socket: Some("/run/cf.sock".into()),
            interface: None,
        })
    );
    let cache = p.targets.iter().find(|t| t.name == "cache").unwrap();
    assert_eq!(
        cache.kind,
        TargetKind::Container(ContainerSelector {
            by: ContainerRef::Label("app=cache".into()),
            socket: None,
            interface: Some("eth1".into()),
        })
    );
}

#[test]
fn pause_kill_and_restart_go_through_the_engine_on_containers_only() {
    let p = plan(&only_fault("pause: {}", "name: web"), Some(1));
    assert_eq!(
        p.faults[0].kind,
        FaultKind::Container {
            action: ContainerAction::Pause
        }
    );
    assert_eq!(p.faults[0].kind.name(), "pause");
    assert_eq!(p.faults[0].kind.target_class(), TargetClass::Container);
    // On a process, `pause` is still SIGSTOP.
    let p = plan(&only_fault("pause: {}", "name: worker"), Some(1));
    assert_eq!(p.faults[0].kind, FaultKind::Pause);

    let p = plan(
        &only_fault("restart: { timeout: 5s }", "name: web"),
        Some(1),
    );
    assert_eq!(
        p.faults[0].kind,
        FaultKind::Container {
            action: ContainerAction::Restart {
                timeout: Duration::from_secs(5)
            }
        }
    );
    assert_eq!(p.faults[0].kind.irreversible(), None);

    let text = only_fault("kill: { signal: term }", "name: web");
    let d = errors(&text);
    assert!(has(&d, "faults[0].kill", "allow_irreversible"), "{d}");
    let p = plan(
        &format!("{text}policies: {{ allow_irreversible: true }}\n"),
        Some(1),
    );
    assert_eq!(
        p.faults[0].kind,
        FaultKind::Container {
            action: ContainerAction::Kill {
                signal: "SIGTERM".into()
            }
        }
    );
}

#[test]
fn stop_and_resource_limit_are_container_kinds() {
    let text = only_fault("stop: {}", "role: ctr");
    assert!(has(&errors(&text), "faults[0].stop", "irreversible"));
    let p = plan(
        &format!("{text}policies: {{ allow_irreversible: true }}\n"),
        Some(1),
    );
    assert_eq!(
        p.faults[0].kind,
        FaultKind::Container {
            action: ContainerAction::Stop {
                timeout: Duration::from_secs(10)
            }
        }
    );
    let p = plan(
        &only_fault("resource-limit: { cpus: 0.5, memory: 64MiB }", "name: web"),
        Some(1),
    );
    assert_eq!(
        p.faults[0].kind,
        FaultKind::Container {
            action: ContainerAction::Limit {
                nano_cpus: Some(500_000_000),
                memory: Some(64 * 1024 * 1024)
            }
        }
    );
    // Only containers have them.
    let d = errors(&only_fault("resource-limit: { cpus: 1 }", "name: worker"));
    assert!(
        has(&d, "faults[0].target.select", "acts on container targets"),
        "{d}"
    );
}

#[test]
fn host_network_faults_act_on_containers_and_name_them_as_peers() {
    let p = plan(
        &only_fault("partition: { peers: [cache] }", "name: web"),
        Some(1),
    );
    assert!(matches!(p.faults[0].kind, FaultKind::Partition { .. }));
    // `latency` on a container is kernel latency, not a proxy toxic.
    let p = plan(
        &only_fault("latency: { delay: 50ms }", "name: web"),
        Some(1),
    );
    assert!(
        matches!(p.faults[0].kind, FaultKind::Network { .. }),
        "{:?}",
        p.faults[0].kind
    );
    // Host resource faults do not (yet) act on containers.
    let d = errors(&only_fault("memory: { size: 1MiB }", "name: web"));
    assert!(has(&d, "faults[0].target.select", "netns or host"), "{d}");
}
