//! Chain behaviour without sockets: reconciling, toxicity rolls, and chunks kept whole and in
//! order while toxics come and go.

use std::time::Duration;

use chaosforge::fault::net::{CorruptUnit, ProxyFault, ProxyToxic};
use chaosforge::units::Ratio;

use super::*;

fn entry(id: u64, stream: Stream, toxicity: f64, fault: ProxyFault) -> ToxicEntry {
    ToxicEntry {
        id,
        rev: 0,
        toxic: Toxic::from_engine(ProxyToxic {
            name: format!("t{id}"),
            stream,
            toxicity: Ratio::new(toxicity).unwrap(),
            fault,
        })
        .unwrap(),
    }
}

fn latency(ms: u64) -> ProxyFault {
    ProxyFault::Latency {
        delay: Duration::from_millis(ms),
        jitter: Duration::ZERO,
    }
}

fn chunk(bytes: &[u8], stamp: Instant) -> Chunk {
    Chunk::new(BytesMut::from(bytes), stamp)
}

/// Runs the writer's loop on a virtual clock: advances, "writes" (collects) ready chunks and
/// jumps to the next release time. Returns the bytes written and the clock at the end.
fn drain(
    chain: &mut Chain,
    work: &mut VecDeque<Chunk>,
    mut now: Instant,
    out: &mut Vec<u8>,
) -> Instant {
    for _ in 0..100_000 {
        match chain.advance(work, now) {
            Next::Write => out.extend_from_slice(&work.pop_front().unwrap().data),
            Next::Wait(at) => now = at,
            Next::Hold | Next::Idle => return now,
        }
    }
    panic!("drain did not finish");
}

#[test]
fn toxicity_is_rolled_once_per_link_and_is_deterministic() {
    let list = vec![entry(0, Stream::Downstream, 0.5, latency(10))];
    let now = Instant::now();
    let rolls = |seed: u64| -> Vec<bool> {
        (0..200)
            .map(|conn| {
                let mut chain = Chain::new(Stream::Downstream, mix(seed, conn));
                chain.reconcile(&list, now);
                chain.counts().1 == 1
            })
            .collect()
    };
    let first = rolls(7);
    assert_eq!(first, rolls(7), "same seed, same decisions");
    assert_ne!(first, rolls(8), "another seed decides differently");
    let active = first.iter().filter(|&&a| a).count();
    assert!(
        (70..130).contains(&active),
        "about half of 200 links: {active}"
    );
}

#[test]
fn toxicity_zero_never_and_one_always_applies() {
    let list = vec![
        entry(0, Stream::Upstream, 0.0, latency(10)),
        entry(1, Stream::Upstream, 1.0, latency(10)),
    ];
    for seed in 0..100 {
        let mut chain = Chain::new(Stream::Upstream, seed);
        chain.reconcile(&list, Instant::now());
        assert_eq!(chain.counts(), (2, 1));
    }
}

#[test]
fn reconcile_keeps_existing_state_and_skips_other_streams_and_down() {
    let now = Instant::now();
    let mut chain = Chain::new(Stream::Upstream, 1);
    let a = entry(0, Stream::Upstream, 0.5, latency(10));
    let mut list = vec![a.clone()];
    chain.reconcile(&list, now);
    let before = chain.toxics[0].active;
    list.push(entry(1, Stream::Downstream, 1.0, latency(10)));
    list.push(entry(2, Stream::Upstream, 1.0, ProxyFault::Down));
    list.push(entry(
        3,
        Stream::Upstream,
        1.0,
        ProxyFault::Timeout { after: None },
    ));
    chain.reconcile(&list, now + Duration::from_secs(1));
    assert_eq!(
        chain.toxics.iter().map(|t| t.id).collect::<Vec<_>>(),
        [0, 3]
    );
    assert_eq!(
        chain.toxics[0].active, before,
        "a surviving toxic is not re-rolled"
    );
    assert_eq!(chain.toxics[0].since, now, "nor restarted");
    chain.reconcile(&[a], now);
    assert_eq!(chain.counts().0, 1);
}

#[test]
fn latency_counts_from_the_read_time_and_chained_latencies_add_up() {
    let t0 = Instant::now();
    let mut chain = Chain::new(Stream::Downstream, 1);
    chain.reconcile(
        &[
            entry(0, Stream::Downstream, 1.0, latency(100)),
            entry(1, Stream::Downstream, 1.0, latency(50)),
        ],
        t0,
    );
    let mut work = VecDeque::from([chunk(b"a", t0), chunk(b"b", t0 + Duration::from_millis(10))]);
    assert_eq!(
        chain.advance(&mut work, t0),
        Next::Wait(t0 + Duration::from_millis(100))
    );
    assert_eq!(
        chain.advance(&mut work, t0 + Duration::from_millis(100)),
        Next::Wait(t0 + Duration::from_millis(150))
    );
    assert_eq!(
        chain.advance(&mut work, t0 + Duration::from_millis(150)),
        Next::Write
    );
    work.pop_front();
    // The second chunk was read 10 ms later, so it is due 10 ms later: the first one's wait did
    // not add to it.
    assert_eq!(
        chain.advance(&mut work, t0 + Duration::from_millis(150)),
        Next::Wait(t0 + Duration::from_millis(160))
    );
}

#[test]
fn removing_toxics_mid_chunk_loses_and_reorders_nothing() {
    let t0 = Instant::now();
    let payload: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let mut work: VecDeque<Chunk> = payload.chunks(7_000).map(|c| chunk(c, t0)).collect();
    let mut chain = Chain::new(Stream::Upstream, 3);
    let bandwidth = entry(
        0,
        Stream::Upstream,
        1.0,
        ProxyFault::Bandwidth { rate: 100_000 },
    );
    let hold = entry(
        1,
        Stream::Upstream,
        1.0,
        ProxyFault::Timeout { after: None },
    );
    chain.reconcile(&[bandwidth.clone(), hold.clone()], t0);
    let mut out = Vec::new();
    // Bandwidth slices the first chunk, the timeout holds the first slice.
    let now = drain(&mut chain, &mut work, t0, &mut out);
    assert!(out.is_empty());
    assert_eq!(chain.advance(&mut work, now), Next::Hold);
    assert_eq!(chain.poll_eof(now), Poll::Hold);
    // Remove the timeout: slices flow at 100 kB/s (1000-byte slices).
    chain.reconcile(std::slice::from_ref(&bandwidth), now);
    let mut now = now;
    for _ in 0..5 {
        match chain.advance(&mut work, now) {
            Next::Write => out.extend_from_slice(&work.pop_front().unwrap().data),
            Next::Wait(at) => now = at,
            other => panic!("{other:?}"),
        }
    }
    assert!(!out.is_empty() && out.len() < payload.len());
    // Add a new toxic after the bandwidth one, then remove the bandwidth toxic mid-chunk.
    let corrupt0 = entry(
        2,
        Stream::Upstream,
        1.0,
        ProxyFault::Corrupt {
            probability: Ratio::ZERO,
            per: CorruptUnit::Byte,
        },
    );
    chain.reconcile(&[bandwidth, corrupt0.clone()], now);
    chain.reconcile(&[corrupt0], now);
    drain(&mut chain, &mut work, now, &mut out);
    assert!(work.is_empty());
    assert_eq!(out, payload);
}

#[test]
fn deadline_is_the_earliest_timeout_or_reset() {
    let t0 = Instant::now();
    let mut chain = Chain::new(Stream::Downstream, 1);
    assert_eq!(chain.deadline(), None);
    chain.reconcile(
        &[
            entry(
                0,
                Stream::Downstream,
                1.0,
                ProxyFault::Timeout {
                    after: Some(Duration::from_millis(300)),
                },
            ),
            entry(
                1,
                Stream::Downstream,
                1.0,
                ProxyFault::Reset {
                    after: Duration::from_millis(100),
                },
            ),
            entry(
                2,
                Stream::Downstream,
                0.0,
                ProxyFault::Reset {
                    after: Duration::ZERO,
                },
            ),
        ],
        t0,
    );
    assert_eq!(
        chain.deadline(),
        Some((t0 + Duration::from_millis(100), Ending::Reset))
    );
}

#[test]
fn the_extremes_the_api_accepts_never_panic_a_link() {
    use serde_json::json;

    // Every value at the ends of Go's int64 that the API lets through: no overflow in a
    // release time, a slice size or a cut, and the bytes that pass are the bytes sent.
    let (max, min) = (i64::MAX, i64::MIN);
    let extremes = [
        ("latency", json!({"latency": max, "jitter": max})),
        ("latency", json!({"latency": min, "jitter": min})),
        ("latency", json!({"latency": 0, "jitter": max})),
        ("bandwidth", json!({"rate": max})),
        ("slow_close", json!({"delay": max})),
        ("timeout", json!({"timeout": max})),
        ("reset_peer", json!({"timeout": min})),
        (
            "slicer",
            json!({"average_size": 1, "size_variation": max, "delay": max}),
        ),
        (
            "slicer",
            json!({"average_size": max, "size_variation": max}),
        ),
        (
            "slicer",
            json!({"average_size": 1, "size_variation": min, "delay": min}),
        ),
        ("limit_data", json!({"bytes": max})),
        ("limit_data", json!({"bytes": min})),
    ];
    let sent: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    for (t, attrs) in extremes {
        let (kind, _) = ToxicKind::from_attributes(t, attrs.as_object().unwrap(), None)
            .unwrap()
            .unwrap();
        let list = vec![ToxicEntry {
            id: 0,
            rev: 0,
            toxic: Toxic::new("x", Stream::Downstream, 1.0, kind),
        }];
        let t0 = Instant::now();
        let mut chain = Chain::new(Stream::Downstream, 1);
        chain.reconcile(&list, t0);
        let mut work = VecDeque::from([chunk(&sent, t0)]);
        let mut out = Vec::new();
        let end = drain(&mut chain, &mut work, t0, &mut out);
        let _ = chain.poll_eof(end);
        let _ = chain.deadline();
        assert!(sent.starts_with(&out), "{t} {attrs}: bytes changed");
    }
}
