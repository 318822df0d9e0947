//! `down` closes the listener (ECONNREFUSED) and drops open connections; removing it rebinds
//! the same address.

use std::io::ErrorKind;
use std::time::Duration;

use chaosforge::fault::net::{ProxyControl, ProxyFault, Stream};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_refuses_and_drops_then_comes_back_on_the_same_address() {
    let proxy = proxy_to(echo_server().await).await;
    let addr = proxy.listen_addr();
    let mut open = connect(addr).await;
    round_trip(&mut open).await;

    proxy
        .add_toxic(toxic("down", Stream::Downstream, ProxyFault::Down))
        .await
        .unwrap();
    assert!(!proxy.is_listening().await);
    // The listener is closed before add_toxic returns, so this connect is refused outright.
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    // The open connection is closed by the proxy: the client reads EOF.
    let mut buf = [0u8; 1];
    let n = within(Duration::from_secs(2), open.read(&mut buf))
        .await
        .unwrap();
    assert_eq!(n, 0);

    assert!(proxy.remove_toxic("down").await.unwrap());
    assert_eq!(proxy.listen_addr(), addr);
    let mut again = connect(addr).await;
    round_trip(&mut again).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_with_toxicity_zero_does_nothing_and_two_downs_need_two_removals() {
    let proxy = proxy_to(echo_server().await).await;
    let addr = proxy.listen_addr();
    let mut never = toxic("never", Stream::Downstream, ProxyFault::Down);
    never.toxicity = chaosforge::units::Ratio::ZERO;
    proxy.add_toxic(never).await.unwrap();
    round_trip(&mut connect(addr).await).await;

    proxy
        .add_toxic(toxic("d1", Stream::Upstream, ProxyFault::Down))
        .await
        .unwrap();
    proxy
        .add_toxic(toxic("d2", Stream::Downstream, ProxyFault::Down))
        .await
        .unwrap();
    assert!(proxy.remove_toxic("d1").await.unwrap());
    assert!(!proxy.is_listening().await, "still down while d2 remains");
    assert!(proxy.remove_toxic("d2").await.unwrap());
    round_trip(&mut connect(addr).await).await;
}
