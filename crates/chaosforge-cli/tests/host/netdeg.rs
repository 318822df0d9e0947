//! Kernel-level network faults measured from outside, each by the mechanism this machine's
//! kernel offers (netem where it exists; here NFQUEUE, nft dup and htb): latency on TCP connect
//! times, rate on a 1 MB transfer, duplicate and corrupt on datagram counts, reorder on
//! sequence numbers. Every figure is compared with a baseline taken in the same test.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chaosforge::fault::host::caps;
use chaosforge::fault::host::exec::SystemExecutor;
use chaosforge::fault::host::netdeg::NetFault;
use chaosforge::fault::host::{iptables, tc};
use chaosforge::fault::{Fault, Guard, InjectCx};
use chaosforge::journal::{self, FaultId, Journal};
use chaosforge::plan::{NetDirection, NetEffect, mechanism_for};
use chaosforge::units::Ratio;

use crate::loss::{arrivals, count_arrivals, send};
use crate::netns::{Host, Hosts};

const SEQ_PORT: u16 = 7002;

fn fault(on: &Host, peer: &Host, effect: NetEffect, unique: &str) -> NetFault {
    let peers: Vec<IpAddr> = vec![peer.addr.into()];
    let mechanism = mechanism_for(&effect, true, NetDirection::Egress, caps::probe())
        .unwrap_or_else(|e| panic!("{e}"));
    NetFault {
        target: "t".into(),
        netns: Some(on.ns.clone()),
        interface: Some("eth0".into()),
        peers,
        ports: vec![],
        direction: NetDirection::Egress,
        effect,
        mechanism,
        unique: unique.into(),
        seed: 7,
        exec: Arc::new(SystemExecutor),
    }
}

async fn inject(f: &NetFault, j: &Journal) -> Guard {
    f.inject(&InjectCx {
        journal: j,
        id: FaultId(0),
        name: f.kind(),
    })
    .await
    .unwrap()
}

fn journal() -> (tempfile::TempDir, Journal) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::create(dir.path(), &journal::new_run_id()).unwrap();
    (dir, j)
}

/// Nothing of ours is left in `ns`: no chain or NFQUEUE rule, no qdisc or ifb, no nft table.
async fn assert_clean(ns: &str) {
    let exec = SystemExecutor;
    assert_eq!(
        iptables::residue(&exec, Some(ns)).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        tc::residue(&exec, Some(ns)).await.unwrap(),
        Vec::<String>::new()
    );
    assert!(
        chaosforge::fault::host::nft::chaosforge_tables(&exec, Some(ns))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Median TCP connect time from `from` to `to`, in milliseconds, over 60 connects.
fn connect_p50(from: &Host, to: &Host) -> f64 {
    let answer = from.agent.ask(&format!("connect-p50 {} 60", to.tcp()));
    let (p50, ok) = answer.split_once(' ').unwrap();
    assert_eq!(ok, "60", "every connect succeeds");
    p50.parse::<f64>().unwrap() / 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_50ms_adds_50ms_to_tcp_connect_time() {
    let h = Hosts::new();
    let (_dir, j) = journal();
    let before = connect_p50(&h.a, &h.b);
    // On b's egress: the SYN-ACK waits, so every connect from a takes 50 ms longer.
    let f = fault(
        &h.b,
        &h.a,
        NetEffect::Latency {
            delay: Duration::from_millis(50),
            jitter: Duration::ZERO,
        },
        "lat",
    );
    let guard = inject(&f, &j).await;
    let during = connect_p50(&h.a, &h.b);
    guard.revert().await.unwrap();
    let after = connect_p50(&h.a, &h.b);
    let added = during - before;
    eprintln!(
        "latency via {}: connect p50 {before:.2} ms → {during:.2} ms (+{added:.2}), after {after:.2}",
        f.mechanism
    );
    assert!(
        (45.0..=55.0).contains(&added),
        "added {added:.2} ms, want 50 ± 5"
    );
    assert!(
        after - before < 5.0,
        "after revert {after:.2} ms vs {before:.2}"
    );
    assert_clean(&h.b.ns).await;
}

/// Milliseconds for 1 MB from `from` to the echo server of `to` and back.
fn bulk_ms(from: &Host, to: &Host) -> f64 {
    from.agent
        .ask(&format!("bulk {} 1000000", to.tcp()))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_8mbit_moves_1mb_in_about_a_second() {
    let h = Hosts::new();
    let (_dir, j) = journal();
    let before = bulk_ms(&h.a, &h.b);
    let f = fault(
        &h.a,
        &h.b,
        NetEffect::Rate {
            bits_per_sec: 8_000_000,
        },
        "rate",
    );
    let guard = inject(&f, &j).await;
    let during = bulk_ms(&h.a, &h.b);
    guard.revert().await.unwrap();
    let after = bulk_ms(&h.a, &h.b);
    eprintln!(
        "rate via {}: 1 MB in {before} ms → {during} ms, after {after} ms",
        f.mechanism
    );
    assert!(
        (850.0..=1150.0).contains(&during),
        "1 MB took {during} ms at 8 Mbit/s, want 1 s ± 15 %"
    );
    assert!(
        after < 400.0 && before < 400.0,
        "unshaped: {before} ms before, {after} ms after"
    );
    assert_clean(&h.a.ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_20_percent_delivers_about_a_fifth_more() {
    let h = Hosts::new();
    count_arrivals(&h);
    let (_dir, j) = journal();
    let n = tokio::task::block_in_place(|| send(&h));
    assert_eq!(n, 2000, "no duplicates before the fault");
    let f = fault(
        &h.a,
        &h.b,
        NetEffect::Duplicate {
            probability: Ratio::new(0.2).unwrap(),
        },
        "dup",
    );
    let guard = inject(&f, &j).await;
    let during = tokio::task::block_in_place(|| send(&h));
    guard.revert().await.unwrap();
    let after = tokio::task::block_in_place(|| send(&h));
    let extra = (during as f64 - 2000.0) / 2000.0;
    eprintln!(
        "duplicate via {}: {during} arrivals for 2000 sent (+{:.1} %)",
        f.mechanism,
        extra * 100.0
    );
    assert!(
        (0.15..=0.25).contains(&extra),
        "{:.1} % extra",
        extra * 100.0
    );
    assert_eq!(after, 2000, "no duplicates after revert");
    let _ = arrivals(&h);
    assert_clean(&h.a.ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_30_percent_loses_about_that_share_to_checksums() {
    let h = Hosts::new();
    let (_dir, j) = journal();
    let wait = Duration::from_secs(2);
    let delivered =
        |h: &Hosts| -> usize { (0..20).map(|_| h.a.udp_delivered(&h.b, 100, wait)).sum() };
    assert_eq!(delivered(&h), 2000, "all delivered before the fault");
    let f = fault(
        &h.a,
        &h.b,
        NetEffect::Corrupt {
            probability: Ratio::new(0.3).unwrap(),
        },
        "corrupt",
    );
    let guard = inject(&f, &j).await;
    let during = delivered(&h);
    guard.revert().await.unwrap();
    let after = delivered(&h);
    let share = during as f64 / 2000.0;
    eprintln!(
        "corrupt via {}: {during} of 2000 datagrams passed their checksum",
        f.mechanism
    );
    assert!(
        (0.65..=0.75).contains(&share),
        "{:.1} % delivered, want 70 ± 5",
        share * 100.0
    );
    assert_eq!(after, 2000, "all delivered after revert");
    assert_clean(&h.a.ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorder_25_percent_lets_later_datagrams_overtake() {
    let h = Hosts::new();
    let (_dir, j) = journal();
    h.b.agent.ask(&format!("listen-seq {SEQ_PORT}"));
    let to = format!("{}:{SEQ_PORT}", h.b.addr);
    let stats = |h: &Hosts| -> (u64, u64) {
        let s = h.b.agent.ask("seq-stats");
        let (a, b) = s.split_once(' ').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    };
    let run = |h: &Hosts, first: u64| -> (u64, u64) {
        let (r0, o0) = stats(h);
        h.a.agent.ask(&format!("send-seq {to} {first} 1000 1000"));
        std::thread::sleep(Duration::from_millis(300));
        let (r1, o1) = stats(h);
        (r1 - r0, o1 - o0)
    };
    let (got, late) = tokio::task::block_in_place(|| run(&h, 0));
    assert_eq!((got, late), (1000, 0), "in order before the fault");
    let f = fault(
        &h.a,
        &h.b,
        NetEffect::Reorder {
            probability: Ratio::new(0.25).unwrap(),
            gap: Duration::from_millis(10),
        },
        "reorder",
    );
    let guard = inject(&f, &j).await;
    // Numbered above the baseline's, which the receiver's "highest so far" remembers.
    let (got, late) = tokio::task::block_in_place(|| run(&h, 1000));
    guard.revert().await.unwrap();
    let share = late as f64 / got as f64;
    eprintln!(
        "reorder via {}: {late} of {got} datagrams overtaken",
        f.mechanism
    );
    assert_eq!(got, 1000, "reordering loses nothing");
    assert!(
        (0.15..=0.35).contains(&share),
        "{:.1} % out of order",
        share * 100.0
    );
    assert_clean(&h.a.ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_removes_the_queue_rules_of_a_crashed_run() {
    let h = Hosts::new();
    let (dir, j) = journal();
    let f = fault(
        &h.b,
        &h.a,
        NetEffect::Latency {
            delay: Duration::from_millis(50),
            jitter: Duration::ZERO,
        },
        "crash",
    );
    // As if the runner were SIGKILLed: nothing reverts; its handler (in this process) stops.
    let _ = inject(&f, &j).await.forget();
    drop(j);
    assert!(
        !iptables::residue(&SystemExecutor, Some(&h.b.ns))
            .await
            .unwrap()
            .is_empty()
            || !tc::residue(&SystemExecutor, Some(&h.b.ns))
                .await
                .unwrap()
                .is_empty(),
        "the fault left its rules in place"
    );
    let summary = chaosforge::recover::recover(dir.path()).await.unwrap();
    assert_eq!(summary.faults.len(), 1, "{summary:?}");
    assert!(summary.faults[0].result.is_ok(), "{summary:?}");
    assert_clean(&h.b.ns).await;
    let p50 = connect_p50(&h.a, &h.b);
    assert!(p50 < 10.0, "connects fast again: {p50:.2} ms");
}

/// The fault contract, mechanism by mechanism: NFQUEUE (latency), htb (rate), nft dup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mechanism_passes_the_fault_compliance_harness() {
    let h = Hosts::new();
    count_arrivals(&h);
    let latency = fault(
        &h.b,
        &h.a,
        NetEffect::Latency {
            delay: Duration::from_millis(50),
            jitter: Duration::ZERO,
        },
        "clat",
    );
    let dir = tempfile::tempdir().unwrap();
    let observe = || {
        let h = &h;
        async move {
            let ms: f64 =
                h.a.agent
                    .ask(&format!("connect-p50 {} 3", h.b.tcp()))
                    .split_once(' ')
                    .unwrap()
                    .0
                    .parse::<f64>()
                    .unwrap()
                    / 1000.0;
            ms > 30.0
        }
    };
    chaosforge::testkit::assert_fault_compliance(&latency, dir.path(), observe).await;
    assert_clean(&h.b.ns).await;

    let rate = fault(
        &h.a,
        &h.b,
        NetEffect::Rate {
            bits_per_sec: 8_000_000,
        },
        "crate",
    );
    let dir = tempfile::tempdir().unwrap();
    // 100 kB at 8 Mbit/s takes 100 ms; unshaped, a few.
    let observe = || {
        let h = &h;
        async move {
            let ms: f64 =
                h.a.agent
                    .ask(&format!("bulk {} 100000", h.b.tcp()))
                    .parse()
                    .unwrap();
            ms > 50.0
        }
    };
    chaosforge::testkit::assert_fault_compliance(&rate, dir.path(), observe).await;
    assert_clean(&h.a.ns).await;

    let dup = fault(
        &h.a,
        &h.b,
        NetEffect::Duplicate {
            probability: Ratio::new(0.5).unwrap(),
        },
        "cdup",
    );
    let dir = tempfile::tempdir().unwrap();
    // 50 datagrams at 50 %: some arrive twice (all-single has odds of 2^-50).
    let observe = || {
        let h = &h;
        async move {
            tokio::task::block_in_place(|| {
                let before = arrivals(h);
                h.a.agent.ask(&format!("udp-send {} 50", h.b.udp()));
                std::thread::sleep(Duration::from_millis(100));
                arrivals(h) - before > 50
            })
        }
    };
    chaosforge::testkit::assert_fault_compliance(&dup, dir.path(), observe).await;
    assert_clean(&h.a.ns).await;
}
