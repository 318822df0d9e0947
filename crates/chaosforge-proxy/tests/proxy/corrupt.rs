//! `corrupt` flips bits with its probability: 1 changes every byte (or chunk), 0 none.

use std::time::Duration;

use chaosforge::fault::net::{CorruptUnit, ProxyControl, ProxyFault, Stream};
use chaosforge::units::Ratio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const SIZE: usize = 4096;

/// Sends a pattern through the echo upstream and returns, per byte, how many bits differ.
async fn flipped_bits(client: &mut TcpStream) -> Vec<u32> {
    let sent: Vec<u8> = (0..SIZE).map(|i| (i % 256) as u8).collect();
    let mut got = vec![0u8; SIZE];
    within(Duration::from_secs(5), async {
        client.write_all(&sent).await.unwrap();
        client.read_exact(&mut got).await.unwrap();
    })
    .await;
    sent.iter()
        .zip(&got)
        .map(|(a, b)| (a ^ b).count_ones())
        .collect()
}

fn corrupt(p: Ratio, per: CorruptUnit) -> ProxyFault {
    ProxyFault::Corrupt {
        probability: p,
        per,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probability_one_changes_every_byte_and_zero_none() {
    let proxy = proxy_to(echo_server().await).await;
    let mut client = connect(proxy.listen_addr()).await;

    proxy
        .add_toxic(toxic(
            "c",
            Stream::Downstream,
            corrupt(Ratio::ONE, CorruptUnit::Byte),
        ))
        .await
        .unwrap();
    let bits = flipped_bits(&mut client).await;
    assert!(
        bits.iter().all(|&b| b == 1),
        "every byte has exactly one bit flipped"
    );
    proxy.remove_toxic("c").await.unwrap();

    proxy
        .add_toxic(toxic(
            "c0",
            Stream::Downstream,
            corrupt(Ratio::ZERO, CorruptUnit::Byte),
        ))
        .await
        .unwrap();
    assert!(flipped_bits(&mut client).await.iter().all(|&b| b == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_chunk_flips_one_bit_per_chunk() {
    let proxy = proxy_to(echo_server().await).await;
    let mut client = connect(proxy.listen_addr()).await;
    proxy
        .add_toxic(toxic(
            "c",
            Stream::Upstream,
            corrupt(Ratio::ONE, CorruptUnit::Chunk),
        ))
        .await
        .unwrap();
    let bits = flipped_bits(&mut client).await;
    // 4 KiB may arrive in one or a few chunks: at least one bit, each in a different byte.
    let changed = bits.iter().filter(|&&b| b > 0).count();
    assert!((1..64).contains(&changed), "{changed} bytes changed");
    assert!(bits.iter().all(|&b| b <= 1));
}
