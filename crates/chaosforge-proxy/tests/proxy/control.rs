//! Control-plane contract and robustness: idempotent removal, toxicity 0, half-close, byte
//! integrity while toxics change, shutdown, failed dials, peers that reset.

use std::io::ErrorKind;
use std::time::Duration;

use chaosforge::fault::net::{
    CorruptUnit, ProxyBackend, ProxyControl, ProxyError, ProxyFault, Stream,
};
use chaosforge::units::Ratio;
use chaosforge_proxy::{InProcessBackend, TcpProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_is_idempotent_and_names_are_unique() {
    let proxy = proxy_to(echo_server().await).await;
    assert!(!proxy.remove_toxic("nope").await.unwrap());
    proxy
        .add_toxic(toxic("a", Stream::Upstream, latency(1)))
        .await
        .unwrap();
    // Names are unique across both streams.
    let dup = proxy
        .add_toxic(toxic("a", Stream::Downstream, latency(1)))
        .await
        .unwrap_err();
    assert!(matches!(dup, ProxyError::DuplicateToxic(name) if name == "a"));
    assert!(proxy.remove_toxic("a").await.unwrap());
    assert!(!proxy.remove_toxic("a").await.unwrap());
    assert!(proxy.toxics().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toxicity_zero_never_applies() {
    let proxy = proxy_to(echo_server().await).await;
    let mut zero = toxic("lat", Stream::Downstream, latency(200));
    zero.toxicity = Ratio::ZERO;
    proxy.add_toxic(zero).await.unwrap();
    let mut hold = toxic(
        "hold",
        Stream::Upstream,
        ProxyFault::Timeout { after: None },
    );
    hold.toxicity = Ratio::ZERO;
    proxy.add_toxic(hold).await.unwrap();
    // Several connections, each rolling its own toxicity: none is delayed or held.
    for _ in 0..5 {
        let mut client = connect(proxy.listen_addr()).await;
        let rtt = round_trip(&mut client).await;
        assert!(rtt < Duration::from_millis(100), "{rtt:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_reaches_the_upstream_and_the_reply_still_comes_back() {
    let proxy = proxy_to(count_then_reply_server().await).await;
    // With a latency toxic on the way up, the EOF must also wait behind the data.
    proxy
        .add_toxic(toxic("lat", Stream::Upstream, latency(30)))
        .await
        .unwrap();
    let mut client = connect(proxy.listen_addr()).await;
    client.write_all(b"hello").await.unwrap();
    client.shutdown().await.unwrap();
    let mut reply = Vec::new();
    within(Duration::from_secs(3), client.read_to_end(&mut reply))
        .await
        .unwrap();
    assert_eq!(reply, b"got 5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_stay_whole_and_ordered_while_toxics_change() {
    let _slot = timing_slot().await;
    const TOTAL: usize = 2 * 1024 * 1024;
    let proxy = proxy_to(echo_server().await).await;
    let client = connect(proxy.listen_addr()).await;
    let (mut r, mut w) = client.into_split();
    let sent: Vec<u8> = (0..TOTAL).map(|i| (i * 31 % 251) as u8).collect();
    let to_send = sent.clone();
    let writer = tokio::spawn(async move {
        for piece in to_send.chunks(10_000) {
            w.write_all(piece).await.unwrap();
        }
        w
    });
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; TOTAL];
        r.read_exact(&mut got).await.unwrap();
        got
    });
    // Toggle toxics on both streams while the bytes flow.
    for round in 0..20 {
        let jittery = ProxyFault::Latency {
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(5),
        };
        proxy
            .add_toxic(toxic("lat", Stream::Downstream, jittery))
            .await
            .unwrap();
        proxy
            .add_toxic(toxic(
                "bw",
                Stream::Upstream,
                ProxyFault::Bandwidth { rate: 20_000_000 },
            ))
            .await
            .unwrap();
        let corrupt0 = ProxyFault::Corrupt {
            probability: Ratio::ZERO,
            per: CorruptUnit::Byte,
        };
        proxy
            .add_toxic(toxic("c0", Stream::Downstream, corrupt0))
            .await
            .unwrap();
        if round % 2 == 0 {
            proxy
                .add_toxic(toxic(
                    "hold",
                    Stream::Downstream,
                    ProxyFault::Timeout { after: None },
                ))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
        for name in ["bw", "lat", "hold", "c0"] {
            proxy.remove_toxic(name).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = within(Duration::from_secs(20), reader).await.unwrap();
    let _w = within(Duration::from_secs(5), writer).await.unwrap();
    assert!(got == sent, "bytes were lost, duplicated or reordered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_everything_and_is_idempotent() {
    let proxy = proxy_to(echo_server().await).await;
    let addr = proxy.listen_addr();
    let mut open = connect(addr).await;
    round_trip(&mut open).await;
    proxy.shutdown().await;
    proxy.shutdown().await;
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    let mut buf = [0u8; 1];
    assert_eq!(
        within(Duration::from_secs(2), open.read(&mut buf))
            .await
            .unwrap(),
        0
    );
    let err = proxy
        .add_toxic(toxic("x", Stream::Upstream, latency(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyError::NotRunning(_)));
    assert!(!proxy.remove_toxic("x").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_or_a_resetting_client_only_ends_that_connection() {
    // An upstream address nobody listens on: the client is accepted, then sees EOF.
    let gone = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = TcpProxy::start("dead", "127.0.0.1:0", &gone.to_string(), 1)
        .await
        .unwrap();
    let mut client = connect(dead.listen_addr()).await;
    let mut buf = [0u8; 1];
    let n = within(Duration::from_secs(3), client.read(&mut buf)).await;
    assert!(matches!(n, Ok(0)) || n.is_err());

    // A client that vanishes with RST in the middle of a transfer.
    let proxy = proxy_to(echo_server().await).await;
    proxy
        .add_toxic(toxic("lat", Stream::Downstream, latency(50)))
        .await
        .unwrap();
    let rude = connect(proxy.listen_addr()).await;
    rude.set_zero_linger().unwrap();
    let (_r, mut w) = rude.into_split();
    w.write_all(&[0u8; 100_000]).await.unwrap();
    drop(w);
    drop(_r);
    // The proxy keeps serving, and the broken connection leaves the registry.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut polite = connect(proxy.listen_addr()).await;
    round_trip(&mut polite).await;
    drop(polite);
    for _ in 0..100 {
        if proxy.connection_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(proxy.connection_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_starts_proxies_and_rejects_bad_addresses() {
    let upstream = echo_server().await.to_string();
    let proxy = InProcessBackend
        .start("b", "127.0.0.1:0", &upstream, 3)
        .await
        .unwrap();
    round_trip(&mut connect(proxy.listen_addr()).await).await;
    proxy.shutdown().await;

    let bad = InProcessBackend
        .start("b", "127.0.0.1:0", "no-port", 3)
        .await
        .unwrap_err();
    assert!(matches!(bad, ProxyError::Address { .. }), "{bad}");
    // Keep the first proxy alive: its listener holds the port.
    let holder = proxy_to(upstream.parse().unwrap()).await;
    let taken = holder.listen_addr().to_string();
    let busy = InProcessBackend
        .start("b", &taken, &upstream, 3)
        .await
        .unwrap_err();
    assert!(matches!(busy, ProxyError::Bind { .. }), "{busy}");
}
