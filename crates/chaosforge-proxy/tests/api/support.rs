//! Shared helpers: the server under test, a raw HTTP client, upstreams and socket clients.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use chaosforge_proxy::{ApiServer, ServeOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

/// Held by tests that measure time, so that on 2 cores they do not measure each other.
static TIMING: Mutex<()> = Mutex::const_new(());

pub async fn timing_slot() -> MutexGuard<'static, ()> {
    TIMING.lock().await
}

/// Fails the test if `fut` takes longer than `limit`, so no test can hang.
pub async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .expect("test step timed out")
}

/// A running API server.
pub struct Api {
    pub addr: SocketAddr,
}

/// An HTTP response, as received.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Starts a server on 127.0.0.1:0.
pub async fn api() -> Api {
    chaosforge::testkit::assert_isolated();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = ApiServer::new(ServeOptions { seed: 3 });
    tokio::spawn(async move { server.serve(listener, std::future::pending()).await });
    Api { addr }
}

impl Api {
    /// One request with `Connection: close`; `body` is sent as is.
    pub async fn raw(&self, method: &str, path: &str, headers: &str, body: &[u8]) -> Resp {
        let mut s = within(Duration::from_secs(5), TcpStream::connect(self.addr))
            .await
            .unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
            body.len()
        );
        let mut out = Vec::new();
        within(Duration::from_secs(10), async {
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(body).await.unwrap();
            s.read_to_end(&mut out).await.unwrap();
        })
        .await;
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Resp {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    pub async fn req(&self, method: &str, path: &str, body: &str) -> Resp {
        self.raw(method, path, "", body.as_bytes()).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.req("GET", path, "").await
    }

    /// Creates a proxy on 127.0.0.1:0 in front of `upstream`; returns its listen address.
    pub async fn proxy(&self, name: &str, upstream: SocketAddr) -> SocketAddr {
        let r = self
            .req(
                "POST",
                "/proxies",
                &format!(r#"{{"name":"{name}","listen":"127.0.0.1:0","upstream":"{upstream}"}}"#),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["listen"].as_str().unwrap().parse().unwrap()
    }

    /// Adds a toxic; panics unless 200.
    pub async fn toxic(&self, proxy: &str, body: &str) -> Value {
        let r = self
            .req("POST", &format!("/proxies/{proxy}/toxics"), body)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }
}

/// Starts an upstream on 127.0.0.1:0 that runs `serve` for each connection.
pub async fn upstream<F, Fut>(serve: F) -> SocketAddr
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

/// An upstream that echoes everything back.
pub async fn echo() -> SocketAddr {
    upstream(|mut socket| async move {
        let (mut r, mut w) = socket.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await
}

/// An upstream that sends `data` and closes.
pub async fn sender(data: Vec<u8>) -> SocketAddr {
    upstream(move |mut socket| {
        let data = data.clone();
        async move {
            let _ = socket.write_all(&data).await;
        }
    })
    .await
}

pub async fn connect(addr: SocketAddr) -> TcpStream {
    chaosforge::testkit::assert_isolated();
    let s = within(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .unwrap();
    // Fails only if the peer already reset the connection, which some tests expect.
    let _ = s.set_nodelay(true);
    s
}

/// One 4-byte ping through an echo upstream; the round-trip time.
pub async fn rtt(s: &mut TcpStream) -> Duration {
    let started = Instant::now();
    within(Duration::from_secs(5), async {
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    })
    .await;
    started.elapsed()
}

/// Reads until EOF or error; returns the bytes and how it ended.
pub async fn read_all(s: &mut TcpStream) -> (Vec<u8>, std::io::Result<()>) {
    let mut out = Vec::new();
    let end = within(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    (out, end.map(|_| ()))
}

/// Whether a connect to `addr` is refused.
pub async fn refused(addr: SocketAddr) -> bool {
    matches!(
        within(Duration::from_secs(5), TcpStream::connect(addr)).await,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}
