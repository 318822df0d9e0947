//! `loss` measured from outside: 20 % loss on `a`'s egress to `b` drops 15–25 % of 2000 UDP
//! datagrams, counted where they arrive — by an nftables counter in `b`'s input hook, so that
//! a busy machine dropping datagrams from a slow receiving socket (after that hook) cannot blur
//! the figure; revert delivers them all again.

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

use crate::netns::{Hosts, UDP_PORT};

const N: usize = 2000;
// Not `chaosforge_…`: residue checks must not count the test's own table.
const COUNTER: &str = "cftest_arrivals";

pub fn nft(ns: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "nft"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Datagrams that reached `b`'s IP input so far.
pub fn arrivals(h: &Hosts) -> usize {
    let text = nft(&h.b.ns, &["list", "table", "inet", COUNTER]);
    let after = text.split("packets ").nth(1).unwrap_or("0");
    after
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap()
}

/// Sends `N` datagrams from `a` to `b` in bursts of 100 and returns how many arrived at `b`.
pub fn send(h: &Hosts) -> usize {
    let before = arrivals(h);
    for _ in 0..N / 100 {
        h.a.agent.ask(&format!("udp-send {} 100", h.b.udp()));
    }
    // Arrival is immediate on a bridge; a short wait covers a busy scheduler.
    std::thread::sleep(Duration::from_millis(300));
    arrivals(h) - before
}

/// Counts the datagrams to `b`'s UDP port in `b`'s input hook (read with [`arrivals`]).
pub fn count_arrivals(h: &Hosts) {
    nft(&h.b.ns, &["add", "table", "inet", COUNTER]);
    nft(
        &h.b.ns,
        &[
            "add",
            "chain",
            "inet",
            COUNTER,
            "input",
            "{ type filter hook input priority -10; policy accept; }",
        ],
    );
    let port = UDP_PORT.to_string();
    nft(
        &h.b.ns,
        &[
            "add", "rule", "inet", COUNTER, "input", "udp", "dport", &port, "counter",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_loss_drops_about_a_fifth_of_the_datagrams() {
    let h = Hosts::new();
    count_arrivals(&h);
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
    let baseline = tokio::task::block_in_place(|| send(&h));
    assert_eq!(baseline, N, "no loss before the fault");

    let guard = f
        .inject(&InjectCx {
            journal: &j,
            id: FaultId(0),
            name: "loss",
        })
        .await
        .unwrap();
    let during = tokio::task::block_in_place(|| send(&h));
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
    let after = tokio::task::block_in_place(|| send(&h));
    assert_eq!(after, N, "no loss after revert");
}
