//! `loss` measured from outside: 20 % loss on `a`'s egress drops 15–25 % of at least 2000 UDP
//! datagrams `a` sends to `b`, counted by `b`; revert delivers them all again.

use std::sync::Arc;
use std::time::Duration;

use chaosforge::fault::Fault;
use chaosforge::fault::InjectCx;
use chaosforge::fault::host::exec::SystemExecutor;
use chaosforge::fault::host::loss::LossFault;
use chaosforge::fault::host::nft::{chaosforge_tables, table_name};
use chaosforge::fault::host::partition::PartitionDirection;
use chaosforge::journal::{self, FaultId, Journal};
use chaosforge::units::Ratio;

use crate::netns::Hosts;

const N: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_loss_drops_about_a_fifth_of_the_datagrams() {
    let h = Hosts::new();
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::create(dir.path(), &journal::new_run_id()).unwrap();
    let f = LossFault {
        target: "a".into(),
        netns: Some(h.a.ns.clone()),
        peers: vec![h.b.addr.into()],
        direction: PartitionDirection::Egress,
        probability: Ratio::new(0.2).unwrap(),
        table: table_name("test_loss"),
        exec: Arc::new(SystemExecutor),
    };
    let baseline =
        tokio::task::block_in_place(|| h.a.udp_delivered(&h.b, N, Duration::from_secs(5)));
    assert_eq!(baseline, N, "no loss before the fault");

    let guard = f
        .inject(&InjectCx {
            journal: &j,
            id: FaultId(0),
            name: "loss",
        })
        .await
        .unwrap();
    // Waits out the full window: with loss, not all datagrams will ever arrive.
    let during = tokio::task::block_in_place(|| h.a.udp_delivered(&h.b, N, Duration::from_secs(3)));
    let lost = (N - during) as f64 / N as f64;
    assert!(
        (0.15..=0.25).contains(&lost),
        "lost {:.1} % of {N} datagrams",
        lost * 100.0
    );

    guard.revert().await.unwrap();
    assert!(
        chaosforge_tables(&SystemExecutor, Some(&h.a.ns))
            .await
            .unwrap()
            .is_empty()
    );
    let after = tokio::task::block_in_place(|| h.a.udp_delivered(&h.b, N, Duration::from_secs(5)));
    assert_eq!(after, N, "no loss after revert");
}
