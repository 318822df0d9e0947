//! The TCP probe: can a connection be opened within the timeout, and, when asked, does the
//! service answer?
//!
//! A bare connect proves little: the kernel completes the handshake for a listening socket
//! whatever its process is doing, so a SIGSTOPped or frozen server still "accepts". With
//! `send`/`expect` the probe writes bytes and waits for an answer, which only a running process
//! gives.

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Probe, Sample, timeout_text};

/// The most bytes read while waiting for `expect`: an answer that never contains it fails the
/// sample instead of filling memory.
pub const MAX_ANSWER: usize = 64 * 1024;

/// A probe that opens one TCP connection per sample, optionally sends bytes and waits for an
/// answer, then closes it.
///
/// `ok` means the connection was established within the timeout and, with an exchange, that the
/// answer came within the same timeout: the bytes of `expect` somewhere in what was read, or,
/// without `expect`, any byte at all. The address is resolved on every sample, so a DNS change
/// during a run is seen, and resolving counts toward the timeout.
#[derive(Debug, Clone)]
pub struct TcpProbe {
    name: String,
    address: String,
    timeout: Duration,
    send: Option<Vec<u8>>,
    expect: Option<Vec<u8>>,
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
            send: None,
            expect: None,
        }
    }

    /// The same probe, sending `send` once connected and then reading until `expect` appears
    /// (or, without `expect`, until any byte arrives). With neither, the probe only connects.
    pub fn with_exchange(mut self, send: Option<Vec<u8>>, expect: Option<Vec<u8>>) -> Self {
        self.send = send;
        self.expect = expect;
        self
    }

    /// The `host:port` this probe connects to.
    pub fn address(&self) -> &str {
        &self.address
    }

    async fn connect_and_ask(&self) -> Result<(), String> {
        let mut stream = TcpStream::connect(self.address.as_str())
            .await
            .map_err(|e| io_text(&e))?;
        if self.send.is_none() && self.expect.is_none() {
            // Dropping the stream closes it: the probe only asks whether the port accepts.
            return Ok(());
        }
        if let Some(send) = &self.send {
            stream.write_all(send).await.map_err(|e| io_text(&e))?;
        }
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.map_err(|e| io_text(&e))?;
            if n == 0 {
                return Err(match &self.expect {
                    Some(e) => format!("connection closed before `{}`", show(e)),
                    None => "connection closed without an answer".into(),
                });
            }
            answer.extend_from_slice(&buf[..n]);
            match &self.expect {
                None => return Ok(()),
                Some(e) if contains(&answer, e) => return Ok(()),
                Some(e) if answer.len() >= MAX_ANSWER => {
                    return Err(format!(
                        "no `{}` in the first {MAX_ANSWER} bytes of the answer",
                        show(e)
                    ));
                }
                Some(_) => {}
            }
        }
    }
}

#[async_trait]
impl Probe for TcpProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn sample(&self) -> Sample {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.connect_and_ask()).await;
        let latency = started.elapsed();
        match result {
            Ok(Ok(())) => Sample::success(latency),
            Ok(Err(e)) => Sample::failure(latency, e),
            Err(_) if self.send.is_some() || self.expect.is_some() => Sample::failure(
                latency,
                format!(
                    "no answer within {}",
                    crate::units::format_duration(self.timeout)
                ),
            ),
            Err(_) => Sample::failure(latency, timeout_text(self.timeout)),
        }
    }
}

fn io_text(e: &io::Error) -> String {
    io_error_text(e).map_or_else(|| e.to_string(), str::to_string)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Bytes as a reader of the file wrote them: text with `\r`, `\n` and other control bytes
/// escaped.
fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).escape_debug().to_string()
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

    /// A PING server in its own process (Python, as the CLI tests' victims), so that it can be
    /// stopped with SIGSTOP while its listening socket stays open. Killed when dropped.
    struct PingServer {
        child: std::process::Child,
        address: String,
    }

    impl PingServer {
        fn start() -> PingServer {
            use std::io::BufRead;
            crate::testkit::assert_isolated();
            let script = r#"
import socket, sys, threading
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
def serve(c):
    buf = b""
    while True:
        d = c.recv(4096)
        if not d:
            return
        buf += d
        while b"\r\n" in buf:
            line, buf = buf.split(b"\r\n", 1)
            c.sendall(b"+PONG\r\n" if line == b"PING" else b"-ERR\r\n")
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;
            let python = if std::path::Path::new("/usr/bin/python3").exists() {
                "/usr/bin/python3"
            } else {
                "python3"
            };
            let mut child = std::process::Command::new(python)
                .args(["-c", script])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            let address = format!("127.0.0.1:{}", line.trim());
            PingServer { child, address }
        }

        fn signal(&self, sig: rustix::process::Signal) {
            let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
            rustix::process::kill_process(pid, sig).unwrap();
        }
    }

    impl Drop for PingServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// The reason for `send`/`expect`: a stopped process still "accepts" (the kernel completes
    /// the handshake into the listen backlog), so only a probe that needs an answer sees it.
    #[tokio::test]
    async fn a_stopped_server_passes_a_connect_but_not_an_exchange() {
        let server = PingServer::start();
        let timeout = Duration::from_millis(500);
        let connect = TcpProbe::new("redis", server.address.clone(), timeout);
        let ping = TcpProbe::new("redis", server.address.clone(), timeout)
            .with_exchange(Some(b"PING\r\n".to_vec()), Some(b"+PONG".to_vec()));
        let s = ping.sample().await;
        assert!(s.ok, "a running server answers PING: {s:?}");

        server.signal(rustix::process::Signal::STOP);
        let s = connect.sample().await;
        assert!(s.ok, "the kernel accepts for a stopped process: {s:?}");
        let s = ping.sample().await;
        assert!(!s.ok, "a stopped server cannot answer: {s:?}");
        assert_eq!(s.error.as_deref(), Some("no answer within 500ms"));

        server.signal(rustix::process::Signal::CONT);
        let s = ping.sample().await;
        assert!(s.ok, "answers again once continued: {s:?}");
    }

    #[tokio::test]
    async fn a_wrong_answer_or_a_closed_connection_fails() {
        let server = PingServer::start();
        let timeout = Duration::from_secs(2);
        let wrong = TcpProbe::new("redis", server.address.clone(), timeout)
            .with_exchange(Some(b"HELLO\r\n".to_vec()), Some(b"+PONG".to_vec()));
        // The server answers `-ERR` and keeps the connection open, so the wait ends at the
        // timeout rather than early.
        let s = tokio::time::timeout(Duration::from_secs(5), wrong.sample())
            .await
            .unwrap();
        assert!(!s.ok, "{s:?}");

        // A listener that closes every connection at once: the answer never comes.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((c, _)) = listener.accept().await {
                drop(c);
            }
        });
        let s = TcpProbe::new("x", address, timeout)
            .with_exchange(None, Some(b"SSH-".to_vec()))
            .sample()
            .await;
        assert!(!s.ok);
        assert_eq!(s.error.as_deref(), Some("connection closed before `SSH-`"));
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
