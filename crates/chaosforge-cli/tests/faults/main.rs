//! Every fault kind passes the fault compliance harness (`chaosforge::testkit`), measured from
//! outside: a client's round trip through the proxy, `/proc/PID/stat` of a real process.
#![allow(clippy::unwrap_used)]
// Round trips are measured on the real clock, from outside the proxy, as a client would see them.
#![allow(clippy::disallowed_types)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use chaosforge::fault::net::{CorruptUnit, ProxyControl, ProxyFault, Stream};
use chaosforge::fault::process::{PauseFault, resolve};
use chaosforge::fault::proxy::ProxyToxicFault;
use chaosforge::plan::ProcessSelector;
use chaosforge::testkit::assert_fault_compliance;
use chaosforge::units::Ratio;
use chaosforge_proxy::TcpProxy;

/// An echo upstream on loopback (a thread per connection; the test process ends them).
fn echo() -> std::net::SocketAddr {
    chaosforge::testkit::assert_isolated();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let mut buf = [0u8; 1024];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// One ping-pong through the proxy on a fresh connection: its round trip and whether the bytes
/// came back intact. `None` when the connection failed.
fn round_trip(addr: std::net::SocketAddr) -> Option<(Duration, bool)> {
    let start = std::time::Instant::now();
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let msg = [0x55u8; 64];
    c.write_all(&msg).ok()?;
    let mut back = [0u8; 64];
    c.read_exact(&mut back).ok()?;
    Some((start.elapsed(), back == msg))
}

async fn proxy_case(fault: ProxyFault, faulted: fn(Option<(Duration, bool)>) -> bool) {
    let up = echo();
    let proxy: Arc<dyn ProxyControl> = TcpProxy::start("p", "127.0.0.1:0", &up.to_string(), 1)
        .await
        .unwrap();
    let addr = proxy.listen_addr();
    let kind = match &fault {
        ProxyFault::Latency { .. } => "latency",
        ProxyFault::Down => "down",
        ProxyFault::Corrupt { .. } => "corrupt",
        ProxyFault::Reset { .. } => "reset",
        _ => "proxy",
    };
    let f = ProxyToxicFault {
        target: "p".into(),
        kind,
        proxy: proxy.clone(),
        toxics: ProxyToxicFault::toxics(kind, &[Stream::Downstream], Ratio::ONE, &fault),
    };
    let dir = tempfile::tempdir().unwrap();
    assert_fault_compliance(&f, dir.path(), || async move {
        faulted(
            tokio::task::spawn_blocking(move || round_trip(addr))
                .await
                .unwrap(),
        )
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_complies() {
    proxy_case(
        ProxyFault::Latency {
            delay: Duration::from_millis(150),
            jitter: Duration::ZERO,
        },
        |r| r.is_some_and(|(rtt, _)| rtt >= Duration::from_millis(140)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_complies() {
    proxy_case(ProxyFault::Down, |r| r.is_none()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_complies() {
    proxy_case(
        ProxyFault::Corrupt {
            probability: Ratio::ONE,
            per: CorruptUnit::Byte,
        },
        |r| r.is_some_and(|(_, intact)| !intact),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_complies() {
    proxy_case(
        ProxyFault::Reset {
            after: Duration::ZERO,
        },
        |r| r.is_none(),
    )
    .await;
}

/// A `sleep` process killed and reaped when the test ends, whatever happened.
struct Victim(std::process::Child);

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_complies_and_recover_resumes_a_forgotten_pause() {
    let victim = Victim(
        std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap(),
    );
    let pid = victim.0.id() as i32;
    let process = resolve(&ProcessSelector::Pid(pid)).unwrap();
    let f = PauseFault {
        target: "victim".into(),
        process,
    };
    let dir = tempfile::tempdir().unwrap();
    // Stopped (`T`) is the fault, seen from outside in /proc.
    assert_fault_compliance(&f, dir.path(), || async move {
        chaosforge::fault::process::state_of(pid) == Some('T')
    })
    .await;
}
