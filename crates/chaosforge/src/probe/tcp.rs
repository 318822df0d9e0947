//! The TCP probe: can a connection be opened within the timeout?

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Probe, Sample, timeout_text};

/// A probe that opens (and at once closes) one TCP connection per sample.
///
/// `ok` means the connection was established within the timeout. The address is resolved on
/// every sample, so a DNS change during a run is seen, and resolving counts toward the timeout.
#[derive(Debug, Clone)]
pub struct TcpProbe {
    name: String,
    address: String,
    timeout: Duration,
}

// === impl TcpProbe ===

impl TcpProbe {
    /// A probe connecting to `address` (`host:port`, e.g. `127.0.0.1:5432` or `db:5432`).
    ///
    /// Nothing is resolved or checked here; a bad address gives failed samples, each saying why.
    pub fn new(name: impl Into<String>, address: String, timeout: Duration) -> Self {
        TcpProbe {
            name: name.into(),
            address,
            timeout,
        }
    }

    /// The `host:port` this probe connects to.
    pub fn address(&self) -> &str {
        &self.address
    }
}

#[async_trait]
impl Probe for TcpProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn sample(&self) -> Sample {
        let started = Instant::now();
        let result =
            tokio::time::timeout(self.timeout, TcpStream::connect(self.address.as_str())).await;
        let latency = started.elapsed();
        match result {
            // Dropping the stream closes it: the probe only asks whether the port accepts.
            Ok(Ok(_stream)) => Sample::success(latency),
            Ok(Err(e)) => Sample::failure(
                latency,
                io_error_text(&e).map_or_else(|| e.to_string(), str::to_string),
            ),
            Err(_) => Sample::failure(latency, timeout_text(self.timeout)),
        }
    }
}

/// A short, stable text for the I/O errors a probe commonly meets, or `None` for the rest.
///
/// Stable texts keep journals greppable and reports groupable by cause.
pub(super) fn io_error_text(e: &io::Error) -> Option<&'static str> {
    Some(match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset => "connection reset",
        io::ErrorKind::ConnectionAborted => "connection aborted",
        io::ErrorKind::UnexpectedEof => "connection closed early",
        io::ErrorKind::HostUnreachable => "host unreachable",
        io::ErrorKind::NetworkUnreachable => "network unreachable",
        io::ErrorKind::AddrNotAvailable => "address not available",
        io::ErrorKind::TimedOut => "connect timed out",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn connects_to_an_open_port() {
        crate::testkit::assert_isolated();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let probe = TcpProbe::new("db", address, Duration::from_secs(1));
        let s = probe.sample().await;
        assert!(s.ok, "{s:?}");
        assert_eq!(s.error, None);
        assert_eq!(probe.name(), "db");
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        // Bind then drop: the port was just free, and nothing listens on it now.
        crate::testkit::assert_isolated();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let probe = TcpProbe::new("db", address, Duration::from_secs(1));
        let s = probe.sample().await;
        assert!(!s.ok);
        assert_eq!(s.error.as_deref(), Some("connection refused"));
        assert!(s.latency < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn unresolvable_address_fails_with_a_reason() {
        let probe = TcpProbe::new("db", "no-port-here".into(), Duration::from_secs(1));
        let s = probe.sample().await;
        assert!(!s.ok);
        assert!(s.error.is_some_and(|e| !e.is_empty()));
    }

    #[tokio::test]
    async fn timeout_is_a_failure_with_latency_of_the_timeout() {
        // Linux drops a SYN when the listener's accept queue is full, so once a never-accepting
        // listener with a backlog of 1 is saturated, further connects hang: a loopback-only way
        // to make a connect outlive the probe's timeout.
        crate::testkit::assert_isolated();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let address = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for _ in 0..16 {
            let connect = TcpStream::connect(address);
            match tokio::time::timeout(Duration::from_millis(100), connect).await {
                Ok(Ok(stream)) => held.push(stream),
                _ => break,
            }
        }
        let timeout = Duration::from_millis(200);
        let probe = TcpProbe::new("db", address.to_string(), timeout);
        let s = probe.sample().await;
        assert!(!s.ok, "the saturated listener still accepted: {s:?}");
        assert_eq!(s.error.as_deref(), Some("timeout after 200ms"));
        assert!(s.latency >= timeout && s.latency < timeout * 3, "{s:?}");
    }
}
