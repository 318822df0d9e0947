//! Shared helpers: upstream servers, clients, timing.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chaosforge::fault::net::{ProxyFault, ProxyToxic, Stream};
use chaosforge::units::Ratio;
use chaosforge_proxy::TcpProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

/// Size of a ping (and its echoed pong).
pub const PING: usize = 16;

/// Held by tests that measure time and by the heaviest test: on a 2-core machine, running them
/// side by side would measure each other's CPU use rather than the proxy.
static TIMING: Mutex<()> = Mutex::const_new(());

/// Waits for the timing slot (see [`TIMING`]); hold the guard for the whole test.
pub async fn timing_slot() -> MutexGuard<'static, ()> {
    TIMING.lock().await
}

/// Fails the test if `fut` takes longer than `limit`, so no test can hang.
pub async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .expect("test step timed out")
}

/// Starts an upstream on 127.0.0.1:0 that runs `serve` for each accepted connection.
async fn upstream<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    chaosforge::testkit::assert_isolated();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            socket.set_nodelay(true).unwrap();
            tokio::spawn(serve(socket));
        }
    });
    addr
}

/// An upstream that echoes everything back, and closes when the client does.
pub async fn echo_server() -> SocketAddr {
    upstream(|mut socket| async move {
        let (mut r, mut w) = socket.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await
}

/// An upstream that reads until EOF, then answers `got <n>` and closes: sees half-closes.
pub async fn count_then_reply_server() -> SocketAddr {
    upstream(|mut socket| async move {
        let mut all = Vec::new();
        if socket.read_to_end(&mut all).await.is_ok() {
            let _ = socket
                .write_all(format!("got {}", all.len()).as_bytes())
                .await;
        }
    })
    .await
}

/// An upstream that, for each 1-byte request, sends `size` bytes.
pub async fn source_server(size: usize) -> SocketAddr {
    upstream(move |mut socket| async move {
        let data = vec![7u8; size];
        let mut request = [0u8; 1];
        while socket.read_exact(&mut request).await.is_ok() {
            if socket.write_all(&data).await.is_err() {
                return;
            }
        }
    })
    .await
}

/// A proxy on 127.0.0.1:0 in front of `upstream`.
pub async fn proxy_to(upstream: SocketAddr) -> Arc<TcpProxy> {
    TcpProxy::start("test", "127.0.0.1:0", &upstream.to_string(), 42)
        .await
        .unwrap()
}

/// A toxic with toxicity 1.
pub fn toxic(name: &str, stream: Stream, fault: ProxyFault) -> ProxyToxic {
    ProxyToxic {
        name: name.into(),
        stream,
        toxicity: Ratio::ONE,
        fault,
    }
}

/// A latency fault without jitter.
pub fn latency(ms: u64) -> ProxyFault {
    ProxyFault::Latency {
        delay: Duration::from_millis(ms),
        jitter: Duration::ZERO,
    }
}

/// A client connection with Nagle off (so small pings go out at once).
pub async fn connect(addr: SocketAddr) -> TcpStream {
    chaosforge::testkit::assert_isolated();
    let stream = within(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// One ping-pong through an echo upstream; returns the round-trip time.
pub async fn round_trip(client: &mut TcpStream) -> Duration {
    let ping = [0xA5u8; PING];
    let mut pong = [0u8; PING];
    let started = Instant::now();
    within(Duration::from_secs(5), async {
        client.write_all(&ping).await.unwrap();
        client.read_exact(&mut pong).await.unwrap();
    })
    .await;
    assert_eq!(pong, ping);
    started.elapsed()
}

/// The median of `n` round trips.
pub async fn p50_rtt(client: &mut TcpStream, n: usize) -> Duration {
    let mut rtts = Vec::with_capacity(n);
    for _ in 0..n {
        rtts.push(round_trip(client).await);
    }
    rtts.sort();
    rtts[n / 2]
}

/// Signed difference `a - b` in milliseconds, for readable assertions.
pub fn ms_diff(a: Duration, b: Duration) -> f64 {
    (a.as_secs_f64() - b.as_secs_f64()) * 1000.0
}
