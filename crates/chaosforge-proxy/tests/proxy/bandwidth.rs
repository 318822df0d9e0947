//! A bandwidth toxic caps throughput: 1 MB at 1 MB/s takes one second.

use std::time::Duration;

use chaosforge::fault::net::{ProxyControl, ProxyFault, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::*;

const MB: usize = 1_000_000;

/// Requests `MB` bytes from the source upstream and times their arrival.
async fn fetch(client: &mut TcpStream) -> Duration {
    let started = Instant::now();
    within(Duration::from_secs(10), async {
        client.write_all(&[1]).await.unwrap();
        let mut got = vec![0u8; MB];
        client.read_exact(&mut got).await.unwrap();
    })
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_megabyte_at_one_megabyte_per_second_takes_one_second() {
    let _slot = timing_slot().await;
    let proxy = proxy_to(source_server(MB).await).await;
    let mut client = connect(proxy.listen_addr()).await;
    let baseline = fetch(&mut client).await;

    proxy
        .add_toxic(toxic(
            "bw",
            Stream::Downstream,
            ProxyFault::Bandwidth { rate: MB as u64 },
        ))
        .await
        .unwrap();
    let limited = fetch(&mut client).await;
    eprintln!("1 MB: baseline {baseline:?}, at 1 MB/s {limited:?}");
    // The cap is the only thing that slows this transfer: it must take 1 s ± 10 %.
    let secs = limited.as_secs_f64() - baseline.as_secs_f64();
    assert!(
        (0.9..=1.1).contains(&secs),
        "took {secs:.3} s over the baseline"
    );

    // Removed, the next transfer is fast again.
    assert!(proxy.remove_toxic("bw").await.unwrap());
    let restored = fetch(&mut client).await;
    assert!(restored < Duration::from_millis(500), "{restored:?}");
}
