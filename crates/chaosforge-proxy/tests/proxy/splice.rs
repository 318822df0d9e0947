//! The zero-copy path of links without an active toxic: switching to and from it under a live
//! stream loses, duplicates or reorders nothing, and half-close still propagates on it.

use std::time::Duration;

use chaosforge::fault::net::{ProxyControl, Stream};
use chaosforge::units::Ratio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// The byte at position `i` of the test stream: the little-endian bytes of an 8-byte counter,
/// so any lost, duplicated or moved byte breaks the sequence at once.
fn pattern(i: u64) -> u8 {
    (i / 8).to_le_bytes()[(i % 8) as usize]
}

/// FNV-1a over a stream, fed piece by piece.
fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_stay_whole_and_ordered_while_the_link_switches_paths() {
    let _slot = timing_slot().await;
    const TOTAL: u64 = 64 * 1024 * 1024;
    let proxy = proxy_to(echo_server().await).await;
    let client = connect(proxy.listen_addr()).await;
    let (mut r, mut w) = client.into_split();
    let writer = tokio::spawn(async move {
        let mut hash = FNV_START;
        let mut at = 0u64;
        let mut piece = vec![0u8; 48 * 1024 + 7];
        while at < TOTAL {
            let n = piece.len().min((TOTAL - at) as usize);
            for (k, b) in piece[..n].iter_mut().enumerate() {
                *b = pattern(at + k as u64);
            }
            w.write_all(&piece[..n]).await.unwrap();
            hash = fnv(hash, &piece[..n]);
            at += n as u64;
        }
        (w, hash)
    });
    let reader = tokio::spawn(async move {
        let mut hash = FNV_START;
        let mut at = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        while at < TOTAL {
            let n = r.read(&mut buf).await.unwrap();
            assert!(n > 0, "EOF after {at} bytes");
            for (k, &b) in buf[..n].iter().enumerate() {
                let i = at + k as u64;
                assert_eq!(b, pattern(i), "byte {i} is wrong");
            }
            hash = fnv(hash, &buf[..n]);
            at += n as u64;
        }
        hash
    });
    // Add and remove toxics on both streams while the bytes flow, so each link keeps moving
    // between its spliced and chunked paths (a toxicity-0 toxic leaves it spliced).
    let mut rounds = 0;
    while !reader.is_finished() {
        let mut never = toxic("never", Stream::Upstream, latency(50));
        never.toxicity = Ratio::ZERO;
        proxy.add_toxic(never).await.unwrap();
        proxy
            .add_toxic(toxic("lat", Stream::Downstream, latency(1)))
            .await
            .unwrap();
        proxy
            .add_toxic(toxic("zero", Stream::Upstream, latency(0)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(3 + rounds % 5)).await;
        for name in ["lat", "zero", "never"] {
            proxy.remove_toxic(name).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(2 + rounds % 7)).await;
        rounds += 1;
        assert!(rounds < 10_000, "the stream does not finish");
    }
    let got = within(Duration::from_secs(60), reader).await.unwrap();
    let (_w, sent) = within(Duration::from_secs(5), writer).await.unwrap();
    assert_eq!(got, sent, "checksums differ");
    assert!(rounds >= 5, "only {rounds} switches happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_propagates_on_the_spliced_path() {
    let proxy = proxy_to(count_then_reply_server().await).await;
    for size in [5, 3 * 1024 * 1024 + 1] {
        let mut client = connect(proxy.listen_addr()).await;
        client.write_all(&vec![9u8; size]).await.unwrap();
        // The upstream answers only after EOF: it proves our half-close got through (after
        // every byte), and the reply then comes back on the other, still open direction,
        // followed by the upstream's own EOF.
        client.shutdown().await.unwrap();
        let mut reply = Vec::new();
        within(Duration::from_secs(10), client.read_to_end(&mut reply))
            .await
            .unwrap();
        assert_eq!(reply, format!("got {size}").as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toxic_removed_mid_stream_hands_queued_bytes_to_the_spliced_path() {
    let proxy = proxy_to(echo_server().await).await;
    proxy
        .add_toxic(toxic("lat", Stream::Downstream, latency(200)))
        .await
        .unwrap();
    let mut client = connect(proxy.listen_addr()).await;
    client.write_all(b"first").await.unwrap();
    // "first" waits in the latency toxic when it goes; it must still come, before "second".
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(proxy.remove_toxic("lat").await.unwrap());
    client.write_all(b"second").await.unwrap();
    let mut got = [0u8; 11];
    within(Duration::from_secs(3), client.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(&got, b"firstsecond");
}
