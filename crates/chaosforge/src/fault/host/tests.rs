//! Unit tests of the partition fault against a [`RecordingExecutor`]: the exact nft scripts and
//! commands, the journal record, and what happens when nft fails.

use std::net::IpAddr;
use std::sync::Arc;

use super::exec::{Answer, RecordingExecutor};
use super::partition::{PartitionDirection, PartitionFault, ruleset};
use crate::fault::{Fault, FaultError, InjectCx, RevertSpec};
use crate::journal::{self, Event, FaultId, Journal};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn full_isolation_keeps_only_loopback() {
    assert_eq!(
        ruleset("chaosforge_t", &[], PartitionDirection::Both),
        "table inet chaosforge_t {}
delete table inet chaosforge_t
table inet chaosforge_t {
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname != \"lo\" drop
\t}

\tchain output {
\t\ttype filter hook output priority filter; policy accept;
\t\toifname != \"lo\" drop
\t}
}
"
    );
}

#[test]
fn peers_are_dropped_both_ways_per_family_sorted_once() {
    let peers = [
        ip("10.0.0.2"),
        ip("fd00::1"),
        ip("10.0.0.1"),
        ip("10.0.0.2"),
    ];
    assert_eq!(
        ruleset("chaosforge_t", &peers, PartitionDirection::Both),
        "table inet chaosforge_t {}
delete table inet chaosforge_t
table inet chaosforge_t {
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tip saddr { 10.0.0.1, 10.0.0.2 } drop
\t\tip6 saddr { fd00::1 } drop
\t}

\tchain output {
\t\ttype filter hook output priority filter; policy accept;
\t\tip daddr { 10.0.0.1, 10.0.0.2 } drop
\t\tip6 daddr { fd00::1 } drop
\t}
}
"
    );
}

#[test]
fn one_way_partitions_use_one_hook() {
    let peers = [ip("10.0.0.1")];
    assert_eq!(
        ruleset("chaosforge_t", &peers, PartitionDirection::Egress),
        "table inet chaosforge_t {}
delete table inet chaosforge_t
table inet chaosforge_t {
\tchain output {
\t\ttype filter hook output priority filter; policy accept;
\t\tip daddr { 10.0.0.1 } drop
\t}
}
"
    );
    assert_eq!(
        ruleset("chaosforge_t", &peers, PartitionDirection::Ingress),
        "table inet chaosforge_t {}
delete table inet chaosforge_t
table inet chaosforge_t {
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tip saddr { 10.0.0.1 } drop
\t}
}
"
    );
    assert!(
        ruleset("chaosforge_t", &[], PartitionDirection::Ingress)
            .contains("\t\tiifname != \"lo\" drop\n"),
    );
}

fn fault(exec: &Arc<RecordingExecutor>, peers: Vec<IpAddr>) -> PartitionFault {
    PartitionFault {
        target: "b".into(),
        netns: Some("ns-b".into()),
        peers,
        direction: PartitionDirection::Both,
        table: "chaosforge_run1_0".into(),
        exec: exec.clone(),
    }
}

#[tokio::test]
async fn inject_journals_then_applies_and_revert_deletes_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::create(dir.path(), &journal::new_run_id()).unwrap();
    let cx = InjectCx {
        journal: &j,
        id: FaultId(0),
        name: "cut",
    };
    let exec = Arc::new(RecordingExecutor::new());
    let f = fault(&exec, vec![ip("10.0.0.1")]);

    let guard = f.inject(&cx).await.unwrap();
    let calls = exec.calls();
    assert_eq!(exec.lines(), ["[ns-b] nft -f -"]);
    assert_eq!(
        calls[0].stdin.as_deref(),
        Some(
            ruleset(
                "chaosforge_run1_0",
                &[ip("10.0.0.1")],
                PartitionDirection::Both
            )
            .as_str()
        )
    );
    let events = journal::read(j.path()).unwrap();
    assert!(
        matches!(
            &events[..],
            [Event::Injecting { kind, target, revert: RevertSpec::NftTable { netns, table, .. }, .. }]
                if kind == "partition" && target == "b" && netns.as_deref() == Some("ns-b")
                    && table == "chaosforge_run1_0"
        ),
        "{events:?}"
    );

    guard.revert().await.unwrap();
    assert_eq!(
        exec.lines(),
        [
            "[ns-b] nft -f -",
            "[ns-b] nft delete table inet chaosforge_run1_0"
        ]
    );
    let events = journal::read(j.path()).unwrap();
    assert!(
        matches!(events.last(), Some(Event::Reverted { note: Some(n), .. })
            if n == "deleted nft table chaosforge_run1_0 in netns ns-b"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_table_already_gone_is_a_successful_revert() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::create(dir.path(), &journal::new_run_id()).unwrap();
    let cx = InjectCx {
        journal: &j,
        id: FaultId(0),
        name: "cut",
    };
    let exec = Arc::new(RecordingExecutor::new().on(
        "nft delete",
        Answer::Fail(
            1,
            "Error: Could not process rule: No such file or directory\n".into(),
        ),
    ));
    let guard = fault(&exec, vec![]).inject(&cx).await.unwrap();
    guard.revert().await.unwrap();
    let events = journal::read(j.path()).unwrap();
    assert!(
        matches!(events.last(), Some(Event::Reverted { note: Some(n), .. })
            if n == "nft table chaosforge_run1_0 already gone (netns ns-b)"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_failed_apply_is_cleaned_up_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::create(dir.path(), &journal::new_run_id()).unwrap();
    let cx = InjectCx {
        journal: &j,
        id: FaultId(0),
        name: "cut",
    };
    let exec = Arc::new(RecordingExecutor::new().on(
        "nft -f",
        Answer::Fail(
            1,
            "Error: Could not process rule: Operation not permitted\n".into(),
        ),
    ));
    let err = fault(&exec, vec![]).inject(&cx).await.unwrap_err();
    assert!(
        matches!(&err, FaultError::Apply { undone: true, message } if message.contains("Operation not permitted")),
        "{err:?}"
    );
    assert_eq!(
        exec.lines(),
        [
            "[ns-b] nft -f -",
            "[ns-b] nft delete table inet chaosforge_run1_0"
        ]
    );
    // The record was written first, so `recover` could still undo it.
    assert!(matches!(
        journal::read(j.path()).unwrap().first(),
        Some(Event::Injecting { .. })
    ));
}

#[tokio::test]
async fn a_bad_table_name_is_refused_before_anything_happens() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::create(dir.path(), &journal::new_run_id()).unwrap();
    let cx = InjectCx {
        journal: &j,
        id: FaultId(0),
        name: "cut",
    };
    let exec = Arc::new(RecordingExecutor::new());
    let mut f = fault(&exec, vec![]);
    f.table = "filter".into();
    let err = f.inject(&cx).await.unwrap_err();
    assert!(matches!(err, FaultError::Target { .. }), "{err:?}");
    assert!(exec.calls().is_empty());
    assert!(journal::read(j.path()).unwrap().is_empty());
}
