//! `partition`, measured from outside: agents in the other namespaces probe host `b` before,
//! during and after the fault.
//!
//! What a probe is: a new TCP connection that echoes one byte back within a timeout, so it needs
//! packets both ways. One-way partitions are therefore measured with UDP datagrams counted by
//! the receiver (through the agent's pipe, not the network): with only b→a dropped, a TCP
//! connect from a to b fails too (b's SYN-ACK never arrives), while a's datagrams still reach b.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chaosforge::fault::host::exec::{Executor, SystemExecutor};
use chaosforge::fault::host::nft::{chaosforge_tables, table_name};
use chaosforge::fault::host::partition::{PartitionDirection, PartitionFault};
use chaosforge::fault::{Fault, InjectCx};
use chaosforge::journal::{self, FaultId, Journal};

use crate::netns::{Hosts, TCP_PORT};

/// Probes per measurement.
const N: usize = 20;
/// A probe's timeout while the fault is expected to make it fail.
const FAIL_MS: u64 = 500;
/// A probe's timeout while it is expected to succeed (generous: the machine may be busy).
const OK_MS: u64 = 2000;

fn partition_b(h: &Hosts, peers: Vec<IpAddr>, direction: PartitionDirection) -> PartitionFault {
    PartitionFault {
        target: "b".into(),
        netns: Some(h.b.ns.clone()),
        peers,
        direction,
        table: table_name(&format!("test_{direction}")),
        exec: Arc::new(SystemExecutor),
    }
}

async fn tables(ns: &str) -> Vec<String> {
    chaosforge_tables(&SystemExecutor, Some(ns)).await.unwrap()
}

/// A journal in a fresh state directory, for injecting outside an engine.
fn journal() -> (tempfile::TempDir, Journal) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::create(dir.path(), &journal::new_run_id()).unwrap();
    (dir, j)
}

fn cx(j: &Journal) -> InjectCx<'_> {
    InjectCx {
        journal: j,
        id: FaultId(0),
        name: "partition",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolating_a_host_fails_every_probe_and_heals_on_revert() {
    let h = Hosts::new();
    let to_b = h.b.tcp();
    assert_eq!(h.a.probes_ok(&to_b, N, OK_MS), N, "baseline");
    h.a.agent.ask(&format!("open kept {to_b} {OK_MS}"));
    assert_eq!(h.a.agent.ask(&format!("echo kept 1 {OK_MS}")), "1");

    let (_dir, j) = journal();
    let guard = partition_b(&h, vec![], PartitionDirection::Both)
        .inject(&cx(&j))
        .await
        .unwrap();
    assert_eq!(tables(&h.b.ns).await, ["chaosforge_test_both"]);
    // Every new connection fails, whoever opens it: nothing gets in or out of b.
    assert_eq!(h.a.probes_ok(&to_b, N, FAIL_MS), 0, "a → b during");
    assert_eq!(h.c.probes_ok(&to_b, N, FAIL_MS), 0, "c → b during");
    assert_eq!(h.b.probes_ok(&h.a.tcp(), N, FAIL_MS), 0, "b → a during");
    // The connection opened before stops carrying data: the rules drop every packet, not only
    // those of new flows.
    assert_eq!(h.a.agent.ask(&format!("echo kept 2 {FAIL_MS}")), "0");
    // b still talks to itself (loopback, and its own address, which is routed through `lo`),
    // and the others still talk to each other.
    let loopback = format!("127.0.0.1:{TCP_PORT}");
    assert_eq!(h.b.probes_ok(&loopback, N, OK_MS), N, "b → b loopback");
    assert_eq!(h.b.probes_ok(&to_b, N, OK_MS), N, "b → b own address");
    assert_eq!(h.a.probes_ok(&h.c.tcp(), N, OK_MS), N, "a → c");

    guard.revert().await.unwrap();
    assert!(tables(&h.b.ns).await.is_empty(), "revert leaves no table");
    assert_eq!(h.a.probes_ok(&to_b, N, OK_MS), N, "a → b after");
    assert_eq!(h.c.probes_ok(&to_b, N, OK_MS), N, "c → b after");
    assert_eq!(h.b.probes_ok(&h.a.tcp(), N, OK_MS), N, "b → a after");
    // The kept connection survived (TCP retransmits for minutes) and carries data again at its
    // next retransmission; the backoff after a ~2 s outage is a few seconds, 15 s bounds it.
    assert_eq!(h.a.agent.ask("echo kept 3 15000"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_from_peers_cuts_only_those_peers() {
    let h = Hosts::new();
    let (_dir, j) = journal();
    let guard = partition_b(&h, vec![h.a.addr.into()], PartitionDirection::Both)
        .inject(&cx(&j))
        .await
        .unwrap();
    assert_eq!(h.a.probes_ok(&h.b.tcp(), N, FAIL_MS), 0, "a → b during");
    assert_eq!(h.b.probes_ok(&h.a.tcp(), N, FAIL_MS), 0, "b → a during");
    // c is not a listed peer: it reaches b, and b reaches it, as before.
    assert_eq!(h.c.probes_ok(&h.b.tcp(), N, OK_MS), N, "c → b during");
    assert_eq!(h.b.probes_ok(&h.c.tcp(), N, OK_MS), N, "b → c during");

    guard.revert().await.unwrap();
    assert!(tables(&h.b.ns).await.is_empty());
    assert_eq!(h.a.probes_ok(&h.b.tcp(), N, OK_MS), N, "a → b after");
    assert_eq!(h.b.probes_ok(&h.a.tcp(), N, OK_MS), N, "b → a after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_partition_drops_only_one_direction() {
    let h = Hosts::new();
    let wait_ok = Duration::from_secs(2);
    let wait_lost = Duration::from_millis(500);
    let (_dir, j) = journal();

    // Egress on b: what b sends to a is dropped; what a sends to b arrives.
    let guard = partition_b(&h, vec![h.a.addr.into()], PartitionDirection::Egress)
        .inject(&cx(&j))
        .await
        .unwrap();
    assert_eq!(
        h.a.udp_delivered(&h.b, N, wait_ok),
        N,
        "a → b during egress"
    );
    assert_eq!(
        h.b.udp_delivered(&h.a, N, wait_lost),
        0,
        "b → a during egress"
    );
    // TCP needs both ways: a's SYNs reach b, b's SYN-ACKs are dropped.
    assert_eq!(h.a.probes_ok(&h.b.tcp(), N, FAIL_MS), 0, "TCP a → b");
    guard.revert().await.unwrap();
    assert_eq!(h.b.udp_delivered(&h.a, N, wait_ok), N, "b → a after egress");

    // Ingress on b: the mirror image.
    let cx1 = InjectCx {
        journal: &j,
        id: FaultId(1),
        name: "partition-ingress",
    };
    let guard = partition_b(&h, vec![h.a.addr.into()], PartitionDirection::Ingress)
        .inject(&cx1)
        .await
        .unwrap();
    assert_eq!(
        h.b.udp_delivered(&h.a, N, wait_ok),
        N,
        "b → a during ingress"
    );
    assert_eq!(
        h.a.udp_delivered(&h.b, N, wait_lost),
        0,
        "a → b during ingress"
    );
    guard.revert().await.unwrap();

    assert!(tables(&h.b.ns).await.is_empty());
    assert_eq!(h.a.udp_delivered(&h.b, N, wait_ok), N, "a → b after");
    assert_eq!(h.b.udp_delivered(&h.a, N, wait_ok), N, "b → a after");
    assert_eq!(h.a.probes_ok(&h.b.tcp(), N, OK_MS), N, "TCP a → b after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_passes_the_fault_compliance_harness() {
    let h = Hosts::new();
    let dir = tempfile::tempdir().unwrap();
    let fault = partition_b(&h, vec![], PartitionDirection::Both);
    let to_b = h.b.tcp();
    // Faulted, seen from a: a fresh connection to b does not echo within the timeout.
    let observe = || {
        let (h, to_b) = (&h, &to_b);
        async move { h.a.probes_ok(to_b, 1, FAIL_MS) == 0 }
    };
    chaosforge::testkit::assert_fault_compliance(&fault, dir.path(), observe).await;
    assert!(tables(&h.b.ns).await.is_empty());
    assert_eq!(h.a.probes_ok(&to_b, N, OK_MS), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_deletes_the_table_of_a_crashed_run() {
    let h = Hosts::new();
    let (dir, j) = journal();
    let exec: Arc<dyn Executor> = Arc::new(SystemExecutor);
    let mut fault = partition_b(&h, vec![], PartitionDirection::Both);
    fault.exec = exec.clone();
    // As if the runner were SIGKILLed: the guard never reverts, the journal is released.
    let _ = fault.inject(&cx(&j)).await.unwrap().forget();
    drop(j);
    assert_eq!(tables(&h.b.ns).await, ["chaosforge_test_both"]);
    assert_eq!(h.a.probes_ok(&h.b.tcp(), N, FAIL_MS), 0, "left in place");

    let summary = chaosforge::recover::recover(dir.path()).await.unwrap();
    assert_eq!(summary.faults.len(), 1, "{summary:?}");
    assert_eq!(
        summary.faults[0].result.as_deref(),
        Ok(format!("deleted nft table chaosforge_test_both in netns {}", h.b.ns).as_str())
    );
    assert!(
        chaosforge_tables(&*exec, Some(&h.b.ns))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.a.probes_ok(&h.b.tcp(), N, OK_MS), N, "healed by recover");
    assert!(
        chaosforge::recover::recover(dir.path())
            .await
            .unwrap()
            .is_empty()
    );
}

/// Group shapes as the engine applies them: each target of a side is cut from the other side's
/// addresses. With three hosts, `bridge` leaves two nodes cut from each other that both still
/// reach the third, and `halves` cuts the odd one out from a pair that still talks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_shapes_cut_between_sides_and_nowhere_else() {
    use chaosforge::plan::{Peer, group_peers, split_group};
    use chaosforge::spec::PartitionShapeSpec;
    let h = Hosts::new();
    let hosts = [("a", &h.a), ("b", &h.b), ("c", &h.c)];
    let names: Vec<String> = hosts.iter().map(|(n, _)| n.to_string()).collect();
    let host = |name: &str| hosts.iter().find(|(n, _)| *n == name).unwrap().1;
    for shape in [PartitionShapeSpec::Bridge, PartitionShapeSpec::Halves] {
        let split = split_group(shape, &names, 42, "group");
        let (dir, j) = journal();
        let mut guards = Vec::new();
        for (i, name) in split.a.iter().chain(&split.b).enumerate() {
            let peers: Vec<IpAddr> = group_peers(&split, name)
                .iter()
                .map(|p| match p {
                    Peer::Target(t) => IpAddr::from(host(t).addr),
                    Peer::Address(a) => *a,
                })
                .collect();
            let f = PartitionFault {
                target: name.clone(),
                netns: Some(host(name).ns.clone()),
                peers,
                direction: PartitionDirection::Both,
                table: table_name(&format!("test_group_{i}")),
                exec: Arc::new(SystemExecutor),
            };
            let cx = InjectCx {
                journal: &j,
                id: FaultId(i as u32),
                name: "group",
            };
            guards.push(f.inject(&cx).await.unwrap());
        }
        let side = |n: &str| {
            if split.a.iter().any(|x| x == n) {
                Some('a')
            } else if split.b.iter().any(|x| x == n) {
                Some('b')
            } else {
                None
            }
        };
        for (from, fh) in &hosts {
            for (to, th) in &hosts {
                if from == to {
                    continue;
                }
                let cut = matches!((side(from), side(to)), (Some(x), Some(y)) if x != y);
                let (want, ms) = if cut { (0, FAIL_MS) } else { (N, OK_MS) };
                assert_eq!(
                    fh.probes_ok(&th.tcp(), N, ms),
                    want,
                    "{shape:?} {split:?}: {from} → {to} should be {}",
                    if cut { "cut" } else { "open" }
                );
            }
        }
        if shape == PartitionShapeSpec::Bridge {
            assert!(split.bridge.is_some() && split.a.len() == 1 && split.b.len() == 1);
        }
        for g in guards {
            g.revert().await.unwrap();
        }
        for (_, hh) in &hosts {
            assert!(tables(&hh.ns).await.is_empty());
        }
        assert_eq!(h.a.probes_ok(&h.b.tcp(), N, OK_MS), N);
        drop(dir);
    }
}
