//! `timeout` holds data and closes after its delay (or releases the data when removed);
//! `reset` ends connections with RST.

use std::io::ErrorKind;
use std::time::Duration;

use chaosforge::fault::net::{ProxyControl, ProxyFault, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_holds_data_then_closes_after_its_delay() {
    let _slot = timing_slot().await;
    let proxy = proxy_to(echo_server().await).await;
    let mut client = connect(proxy.listen_addr()).await;
    round_trip(&mut client).await;

    let started = Instant::now();
    let fault = ProxyFault::Timeout {
        after: Some(Duration::from_millis(300)),
    };
    proxy
        .add_toxic(toxic("t", Stream::Downstream, fault))
        .await
        .unwrap();
    client.write_all(&[1u8; PING]).await.unwrap();
    // No byte of the reply may come through: the first read sees the close (EOF).
    let mut buf = [0u8; PING];
    let n = within(Duration::from_secs(3), client.read(&mut buf))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(n, 0, "data leaked through a timeout toxic");
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_millis(1000),
        "closed after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_timeout_releases_the_held_data() {
    let proxy = proxy_to(echo_server().await).await;
    let mut client = connect(proxy.listen_addr()).await;
    proxy
        .add_toxic(toxic(
            "t",
            Stream::Downstream,
            ProxyFault::Timeout { after: None },
        ))
        .await
        .unwrap();
    client.write_all(b"held back please").await.unwrap();
    let mut buf = [0u8; 16];
    let early = tokio::time::timeout(Duration::from_millis(300), client.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "nothing arrives while the timeout toxic is there"
    );

    assert!(proxy.remove_toxic("t").await.unwrap());
    within(Duration::from_secs(2), client.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"held back please");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_on_an_open_connection_sends_rst_after_its_delay() {
    let _slot = timing_slot().await;
    let proxy = proxy_to(echo_server().await).await;
    let mut client = connect(proxy.listen_addr()).await;
    round_trip(&mut client).await;

    let started = Instant::now();
    let fault = ProxyFault::Reset {
        after: Duration::from_millis(200),
    };
    proxy
        .add_toxic(toxic("r", Stream::Downstream, fault))
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    let err = within(Duration::from_secs(3), client.read(&mut buf))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    assert!(
        took >= Duration::from_millis(180) && took < Duration::from_millis(1000),
        "reset after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_zero_resets_new_connections_at_once() {
    let proxy = proxy_to(echo_server().await).await;
    proxy
        .add_toxic(toxic(
            "r",
            Stream::Upstream,
            ProxyFault::Reset {
                after: Duration::ZERO,
            },
        ))
        .await
        .unwrap();
    // A plain connect: the RST may arrive before any socket option could be set.
    let mut client = within(
        Duration::from_secs(3),
        TcpStream::connect(proxy.listen_addr()),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 1];
    let err = within(Duration::from_secs(3), client.read(&mut buf))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
}
