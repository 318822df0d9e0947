//! Each toxic's semantics, created through the API and measured from a client socket.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_applies_to_open_connections_and_is_removed_cleanly() {
    let _slot = timing_slot().await;
    let api = api().await;
    let listen = api.proxy("p", echo().await).await;
    let mut c = connect(listen).await;
    let base = rtt(&mut c).await;
    api.toxic("p", r#"{"type":"latency","attributes":{"latency":150}}"#)
        .await;
    let slow = rtt(&mut c).await;
    assert!(
        slow >= Duration::from_millis(145) && slow < base + Duration::from_millis(400),
        "{slow:?}"
    );
    api.req("DELETE", "/proxies/p/toxics/latency_downstream", "")
        .await;
    assert!(rtt(&mut c).await < Duration::from_millis(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_close_delays_the_eof_not_the_data() {
    let _slot = timing_slot().await;
    let api = api().await;
    let listen = api.proxy("p", sender(b"hello".to_vec()).await).await;
    api.toxic("p", r#"{"type":"slow_close","attributes":{"delay":300}}"#)
        .await;
    let started = Instant::now();
    let mut c = connect(listen).await;
    let mut buf = [0; 5];
    within(Duration::from_secs(5), c.read_exact(&mut buf))
        .await
        .unwrap();
    let data_at = started.elapsed();
    let (rest, end) = read_all(&mut c).await;
    assert!(rest.is_empty() && end.is_ok());
    assert!(data_at < Duration::from_millis(150), "{data_at:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(295),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_drops_data_and_closes_when_idle() {
    let _slot = timing_slot().await;
    let api = api().await;
    let listen = api.proxy("p", echo().await).await;
    api.toxic(
        "p",
        r#"{"type":"timeout","stream":"upstream","attributes":{"timeout":300}}"#,
    )
    .await;
    let mut c = connect(listen).await;
    let started = Instant::now();
    // A byte every 100 ms keeps re-arming the idle timer: still open after 500 ms.
    for _ in 0..5 {
        c.write_all(b"x").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = Instant::now();
    let (got, _) = read_all(&mut c).await;
    assert!(got.is_empty(), "data is dropped");
    let closed_after = last.elapsed();
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert!(
        closed_after >= Duration::from_millis(150) && closed_after < Duration::from_secs(2),
        "{closed_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_timeout_toxic_closes_its_connections() {
    let api = api().await;
    let listen = api.proxy("p", echo().await).await;
    api.toxic("p", r#"{"type":"timeout","attributes":{"timeout":0}}"#)
        .await;
    let mut c = connect(listen).await;
    c.write_all(b"lost").await.unwrap();
    let mut buf = [0; 4];
    let quiet = tokio::time::timeout(Duration::from_millis(200), c.read(&mut buf)).await;
    assert!(
        quiet.is_err(),
        "timeout 0 keeps the connection open and silent"
    );
    assert_eq!(
        api.req("DELETE", "/proxies/p/toxics/timeout_downstream", "")
            .await
            .status,
        204
    );
    let (got, end) = read_all(&mut c).await;
    assert!(got.is_empty() && end.is_ok(), "EOF after removal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_peer_resets_after_its_timeout() {
    let _slot = timing_slot().await;
    let api = api().await;
    let listen = api.proxy("p", echo().await).await;
    api.toxic(
        "p",
        r#"{"type":"reset_peer","stream":"upstream","attributes":{"timeout":200}}"#,
    )
    .await;
    let mut c = connect(listen).await;
    let started = Instant::now();
    c.write_all(b"trigger").await.unwrap();
    let (got, end) = read_all(&mut c).await;
    assert!(got.is_empty(), "the trigger is not forwarded");
    assert_eq!(end.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
    assert!(
        started.elapsed() >= Duration::from_millis(195),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slicer_cuts_into_delayed_pieces() {
    let _slot = timing_slot().await;
    let api = api().await;
    let data: Vec<u8> = (0..2000u32).map(|i| (i % 251) as u8).collect();
    let listen = api.proxy("p", sender(data.clone()).await).await;
    api.toxic(
        "p",
        r#"{"type":"slicer","attributes":{"average_size":100,"size_variation":0,"delay":20000}}"#,
    )
    .await;
    let started = Instant::now();
    let mut c = connect(listen).await;
    let mut got = Vec::new();
    let mut reads = 0;
    let mut buf = [0; 4096];
    loop {
        let n = within(Duration::from_secs(5), c.read(&mut buf))
            .await
            .unwrap();
        if n == 0 {
            break;
        }
        assert!(n <= 100, "a piece is at most average_size: {n}");
        got.extend_from_slice(&buf[..n]);
        reads += 1;
    }
    assert_eq!(got, data);
    // 32 pieces 20 ms apart (Toxiproxy measured 32 reads in 0.63 s).
    assert!(reads >= 20, "{reads}");
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slicer_with_variation_at_or_above_average_keeps_bytes_whole_and_pieces_bounded() {
    let _slot = timing_slot().await;
    let api = api().await;
    // (1000, 1000) is what toxiproxy-node-client's own suite creates; at (10, 1000) a cut of
    // Toxiproxy's can fall outside its piece and the server panics.
    for (avg, var, len) in [(1000, 1000, 20_000u32), (10, 1000, 8000)] {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let name = format!("s{avg}");
        let listen = api.proxy(&name, sender(data.clone()).await).await;
        // 50 ms between pieces, so each piece reaches the client as a read of its own: a read
        // over the bound would be a piece over the bound.
        api.toxic(
            &name,
            &format!(
                r#"{{"type":"slicer","attributes":{{"average_size":{avg},"size_variation":{var},"delay":50000}}}}"#
            ),
        )
        .await;
        let mut c = connect(listen).await;
        let mut got = Vec::new();
        let mut reads = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = within(Duration::from_secs(10), c.read(&mut buf))
                .await
                .unwrap();
            if n == 0 {
                break;
            }
            reads.push(n);
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            got == data,
            "avg {avg} var {var}: bytes changed, lost or reordered"
        );
        assert!(
            reads.iter().all(|&n| n <= avg + var),
            "avg {avg} var {var}: a read over {}: {reads:?}",
            avg + var
        );
        // The bound alone would also hold for a slicer that cut everything into single bytes.
        assert!(
            reads.len() < data.len() / 4,
            "avg {avg} var {var}: {} reads",
            reads.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_data_truncates_then_closes() {
    let api = api().await;
    let listen = api.proxy("p", echo().await).await;
    api.toxic("p", r#"{"type":"limit_data","attributes":{"bytes":10}}"#)
        .await;
    let mut c = connect(listen).await;
    c.write_all(b"1234567").await.unwrap();
    let mut first = [0; 7];
    within(Duration::from_secs(5), c.read_exact(&mut first))
        .await
        .unwrap();
    c.write_all(b"abcdefghi").await.unwrap();
    let (rest, _) = read_all(&mut c).await;
    assert_eq!(rest, b"abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_limits_the_rate_in_kilobytes() {
    let _slot = timing_slot().await;
    let api = api().await;
    let listen = api.proxy("p", sender(vec![1; 20_000]).await).await;
    api.toxic("p", r#"{"type":"bandwidth","attributes":{"rate":20}}"#)
        .await;
    let started = Instant::now();
    let mut c = connect(listen).await;
    let (got, _) = read_all(&mut c).await;
    let took = started.elapsed();
    assert_eq!(got.len(), 20_000);
    // 20 000 bytes at 20 KB/s (1 KB = 1000 bytes) take one second.
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2000),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop_corrupt_loss_and_blackhole() {
    let api = api().await;
    let zeros = sender(vec![0; 1000]).await;
    let listen = api.proxy("c", zeros).await;
    api.toxic("c", r#"{"type":"noop"}"#).await;
    api.toxic("c", r#"{"type":"corrupt","attributes":{"probability":1}}"#)
        .await;
    let mut c = connect(listen).await;
    let (got, _) = read_all(&mut c).await;
    assert_eq!(got.len(), 1000);
    assert!(
        got.iter().all(|b| b.count_ones() == 1),
        "one bit flipped in every byte"
    );

    for kind in [
        r#"{"type":"loss","stream":"upstream","attributes":{"probability":1}}"#,
        r#"{"type":"blackhole","stream":"upstream"}"#,
    ] {
        let listen = api.proxy("h", echo().await).await;
        let t = api.toxic("h", kind).await;
        let mut c = connect(listen).await;
        c.write_all(b"gone").await.unwrap();
        let mut buf = [0; 4];
        assert!(
            tokio::time::timeout(Duration::from_millis(200), c.read(&mut buf))
                .await
                .is_err(),
            "{kind}"
        );
        // The connection stays open: after removal new bytes flow again.
        let name = t["name"].as_str().unwrap();
        api.req("DELETE", &format!("/proxies/h/toxics/{name}"), "")
            .await;
        assert!(rtt(&mut c).await < Duration::from_secs(1));
        api.req("DELETE", "/proxies/h", "").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toxicity_is_per_connection() {
    let api = api().await;
    let listen = api.proxy("p", echo().await).await;
    api.toxic(
        "p",
        r#"{"type":"blackhole","stream":"upstream","toxicity":0.5}"#,
    )
    .await;
    let mut dropped = 0;
    for _ in 0..30 {
        let mut c = connect(listen).await;
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0; 4];
        if tokio::time::timeout(Duration::from_millis(100), c.read_exact(&mut buf))
            .await
            .is_err()
        {
            dropped += 1;
        }
    }
    assert!((5..=25).contains(&dropped), "about half of 30: {dropped}");
}
