//! A latency toxic adds its delay to the round trip a client measures, on new connections and
//! on connections that were already open, and its removal restores the baseline.

use std::time::Duration;

use chaosforge::fault::net::{ProxyControl, Stream};

use crate::support::*;

/// Round trips per measurement: the median of 25 is stable against a few scheduling hiccups.
const N: usize = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_adds_its_delay_to_new_connections() {
    let _slot = timing_slot().await;
    let proxy = proxy_to(echo_server().await).await;
    let mut before = connect(proxy.listen_addr()).await;
    let baseline = p50_rtt(&mut before, N).await;

    proxy
        .add_toxic(toxic("lat", Stream::Downstream, latency(100)))
        .await
        .unwrap();
    let mut after = connect(proxy.listen_addr()).await;
    let faulty = p50_rtt(&mut after, N).await;

    // Only the reply is delayed, so the whole round trip grows by exactly the delay.
    let added = ms_diff(faulty, baseline);
    eprintln!(
        "new connection: baseline p50 {baseline:?}, with latency {faulty:?} (+{added:.2} ms)"
    );
    assert!((95.0..=105.0).contains(&added), "added {added:.2} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_applies_to_an_open_connection_and_removal_restores_it() {
    let _slot = timing_slot().await;
    let proxy = proxy_to(echo_server().await).await;
    let mut client = connect(proxy.listen_addr()).await;
    let baseline = p50_rtt(&mut client, N).await;

    // Same connection throughout: the toxic reaches it through the watch channel.
    proxy
        .add_toxic(toxic("lat", Stream::Downstream, latency(100)))
        .await
        .unwrap();
    let faulty = p50_rtt(&mut client, N).await;
    assert!(proxy.remove_toxic("lat").await.unwrap());
    let restored = p50_rtt(&mut client, N).await;

    let added = ms_diff(faulty, baseline);
    let left = ms_diff(restored, baseline);
    eprintln!(
        "open connection: baseline p50 {baseline:?}, with latency {faulty:?} (+{added:.2} ms), \
         removed {restored:?} ({left:+.2} ms)"
    );
    assert!((95.0..=105.0).contains(&added), "added {added:.2} ms");
    assert!(
        left.abs() <= 5.0,
        "after removal {left:.2} ms from baseline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_latency_delays_requests() {
    let _slot = timing_slot().await;
    let proxy = proxy_to(echo_server().await).await;
    let mut client = connect(proxy.listen_addr()).await;
    let baseline = p50_rtt(&mut client, 5).await;
    proxy
        .add_toxic(toxic("lat", Stream::Upstream, latency(50)))
        .await
        .unwrap();
    let faulty = p50_rtt(&mut client, 5).await;
    let added = ms_diff(faulty, baseline);
    assert!((45.0..=60.0).contains(&added), "added {added:.2} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_does_not_throttle_a_stream_of_chunks() {
    let _slot = timing_slot().await;
    // 50 pings written back to back: each is delayed 100 ms from when it was read, so all
    // replies arrive after about 100 ms, not 50 × 100 ms.
    let proxy = proxy_to(echo_server().await).await;
    let mut client = connect(proxy.listen_addr()).await;
    proxy
        .add_toxic(toxic("lat", Stream::Downstream, latency(100)))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    within(Duration::from_secs(5), async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for _ in 0..50 {
            client.write_all(&[1u8; PING]).await.unwrap();
        }
        let mut back = vec![0u8; 50 * PING];
        client.read_exact(&mut back).await.unwrap();
    })
    .await;
    let took = started.elapsed();
    // A release may come up to one timer tick (1 ms) early by design (`TIMER_SLACK` in
    // link.rs), which shows now that the undelayed upstream direction is spliced.
    assert!(
        took >= Duration::from_millis(99) && took < Duration::from_millis(400),
        "{took:?}"
    );
}
