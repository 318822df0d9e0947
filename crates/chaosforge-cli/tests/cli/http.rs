//! `chaosforge run` with an `http_proxy` target, end to end: a small HTTP/1.1 upstream in this
//! test, monitors that call it through the proxy, HTTP and security faults from the experiment
//! file, and the verdict, counters and security findings in the report.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::{Dir, report, run_exit, serve_loopback};

/// An HTTP/1.1 upstream on loopback: `/orders` needs `Authorization: Bearer good` when
/// `checks_auth`, else answers 200 to anything; every answer is a small JSON body. Keep-alive.
struct Upstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    fn start(checks_auth: bool) -> Upstream {
        let (addr, stop) = serve_loopback(move |c| serve(c, checks_auth));
        Upstream { addr, stop }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(c: TcpStream, checks_auth: bool) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut w) = c.try_clone() else { return };
    let mut r = BufReader::new(c);
    // Bounded: a connection serves at most this many requests.
    for _ in 0..10_000 {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut auth = None;
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "authorization" => auth = Some(v.trim().to_string()),
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if std::io::Read::read_exact(&mut r, &mut body).is_err() {
            return;
        }
        let ok =
            !checks_auth || !path.starts_with("/orders") || auth.as_deref() == Some("Bearer good");
        let (status, text) = if ok {
            ("200 OK", r#"{"ok":true,"total":42}"#)
        } else {
            ("401 Unauthorized", r#"{"ok":false}"#)
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if w.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// A free loopback port for the proxy to listen on (bound and released: the monitors need the
/// address in the file before the run starts).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_http_abort_refutes_availability_and_is_counted() {
    let up = Upstream::start(false);
    let port = free_port();
    let dir = Dir::new();
    let exp = dir.write(
        "abort.yaml",
        &format!(
            r#"apiVersion: chaosforge/v1
name: abort-orders
targets:
  - name: api
    http_proxy: {{ listen: "127.0.0.1:{port}", upstream: "http://{up}" }}
hypothesis:
  monitors:
    - name: orders
      http: {{ url: "http://127.0.0.1:{port}/orders", interval: 20ms, timeout: 1s }}
      expect: ["availability >= 90%"]
faults:
  - name: half-fail
    http-abort: {{ status: 503, probability: 50%, match: {{ path_prefix: /orders }} }}
    target: {{ select: {{ name: api }} }}
phases: {{ baseline: 300ms, inject: 1500ms, recover_within: 5s }}
"#,
            up = up.addr
        ),
    );
    let stdout = run_exit(&exp, &dir, 1);
    assert!(stdout.contains("REFUTED"), "{stdout}");
    assert!(
        stdout.contains("answer 503 without calling upstream (/orders*, 50% of them)"),
        "{stdout}"
    );
    let r = report(&dir);
    let m = &r.monitors[0];
    assert_eq!(m.baseline.ok, m.baseline.samples, "{m:?}");
    let during = m.during.ok as f64 / m.during.samples as f64;
    assert!(
        m.during.samples >= 30 && (0.3..=0.7).contains(&during),
        "{m:?}"
    );
    assert_eq!(m.after.ok, m.after.samples, "{m:?}");
    let rules = &r.http[0].rules;
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(rules[0].matched >= 30 && rules[0].faulted > 0, "{rules:?}");
    assert!(r.security_findings.is_empty(), "{:?}", r.security_findings);
}

fn auth_experiment(port: u16, up: SocketAddr) -> String {
    format!(
        r#"apiVersion: chaosforge/v1
name: orders-refuse-missing-credentials
targets:
  - name: api
    http_proxy: {{ listen: "127.0.0.1:{port}", upstream: "http://{up}" }}
hypothesis:
  monitors:
    # Calls with valid credentials; while the fault strips them the upstream must refuse, so a
    # 401 is what success looks like here.
    - name: orders
      http: {{ url: "http://127.0.0.1:{port}/orders", headers: {{ authorization: "Bearer good" }}, interval: 20ms, success: "200,401" }}
      expect: ["availability >= 99%"]
faults:
  - name: strip
    auth-strip: {{ match: {{ path_prefix: /orders }} }}
    target: {{ select: {{ name: api }} }}
phases: {{ baseline: 300ms, inject: 1s, recover_within: 5s }}
"#
    )
}

#[test]
fn an_upstream_that_refuses_stripped_credentials_confirms() {
    let up = Upstream::start(true);
    let port = free_port();
    let dir = Dir::new();
    let exp = dir.write("auth.yaml", &auth_experiment(port, up.addr));
    run_exit(&exp, &dir, 0);
    let r = report(&dir);
    assert!(r.security_findings.is_empty(), "{:?}", r.security_findings);
    assert!(r.http[0].rules[0].faulted >= 20, "{:?}", r.http);
}

#[test]
fn an_upstream_that_accepts_stripped_credentials_refutes_with_the_finding() {
    let up = Upstream::start(false);
    let port = free_port();
    let dir = Dir::new();
    let exp = dir.write("auth.yaml", &auth_experiment(port, up.addr));
    let stdout = run_exit(&exp, &dir, 1);
    assert!(stdout.contains("security findings"), "{stdout}");
    let r = report(&dir);
    assert_eq!(r.security_findings.len(), 1, "{:?}", r.security_findings);
    let finding = &r.security_findings[0];
    assert!(finding.starts_with("api: upstream accepted"), "{finding}");
}
