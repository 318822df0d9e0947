//! HTTP probe tests against a tiny HTTP/1.1 server on 127.0.0.1:0.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use super::*;

/// A loopback server answering by path, counting connections and recording requests.
struct Server {
    base: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server() -> Server {
    crate::testkit::assert_isolated();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (c, r) = (connections.clone(), requests.clone());
    let task = tokio::spawn(async move {
        // Bounded: a test makes a handful of connections, and the task is aborted on drop.
        for _ in 0..64 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream, r.clone()));
        }
    });
    Server {
        base,
        connections,
        requests,
        task,
    }
}

/// Serves keep-alive requests on one connection until the client closes it.
async fn serve(mut stream: TcpStream, requests: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    for _ in 0..64 {
        let Some(head_end) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
        buf.drain(..head_end + length);
        requests.lock().await.push(format!("{head}{body}"));
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let response = match path.as_str() {
            "/ok" => "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_string(),
            "/503" => "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_string(),
            "/304" => "HTTP/1.1 304 Not Modified\r\n\r\n".to_string(),
            "/redirect" => {
                "HTTP/1.1 302 Found\r\nlocation: /503\r\ncontent-length: 0\r\n\r\n".to_string()
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_string()
            }
            "/slow-body" => {
                // Headers at once, then the body stalls: still a timeout for the probe.
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
                    .await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                return;
            }
            "/close" => {
                // Close without answering.
                return;
            }
            _ => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_string(),
        };
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads until the end of a request head; returns the index just past `\r\n\r\n`.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn probe(url: String, timeout: Duration, success: &str) -> HttpProbe {
    let cfg = HttpProbeConfig {
        timeout,
        success: StatusSet::parse(success).unwrap(),
        ..HttpProbeConfig::get(url)
    };
    HttpProbe::new("web", cfg).unwrap()
}

#[tokio::test]
async fn success_and_connection_reuse() {
    let srv = server().await;
    let p = probe(format!("{}/ok", srv.base), Duration::from_secs(2), "2xx");
    for _ in 0..3 {
        let s = p.sample().await;
        assert!(s.ok, "{s:?}");
        assert_eq!(s.status, Some(200));
        assert_eq!(s.error, None);
        assert_eq!(
            s.at,
            Duration::ZERO,
            "the monitor stamps `at`, not the probe"
        );
    }
    // Keep-alive: three samples, one connection, as a real client would behave.
    assert_eq!(srv.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn non_success_status_is_a_failure_with_its_status() {
    let srv = server().await;
    let p = probe(format!("{}/503", srv.base), Duration::from_secs(2), "2xx");
    let s = p.sample().await;
    assert!(!s.ok);
    assert_eq!(s.status, Some(503));
    assert_eq!(s.error.as_deref(), Some("status 503 not in 2xx"));

    // The same status is a success when the set says so.
    let p = probe(
        format!("{}/503", srv.base),
        Duration::from_secs(2),
        "2xx,503",
    );
    assert!(p.sample().await.ok);
}

#[tokio::test]
async fn redirects_are_answers_not_followed() {
    let srv = server().await;
    // Following the redirect would land on /503 and fail; the default set takes the 302.
    let cfg = HttpProbeConfig::get(format!("{}/redirect", srv.base));
    let p = HttpProbe::new("web", cfg).unwrap();
    let s = p.sample().await;
    assert!(s.ok, "{s:?}");
    assert_eq!(s.status, Some(302));
    let p = probe(
        format!("{}/304", srv.base),
        Duration::from_secs(2),
        "2xx,304",
    );
    assert_eq!(p.sample().await.status, Some(304));
    assert!(
        srv.requests
            .lock()
            .await
            .iter()
            .all(|r| !r.contains("/503"))
    );
}

#[tokio::test]
async fn method_headers_and_body_are_sent() {
    let srv = server().await;
    let cfg = HttpProbeConfig {
        method: "POST".into(),
        headers: BTreeMap::from([("x-probe".to_string(), "chaos".to_string())]),
        body: Some("{\"hello\":1}".into()),
        ..HttpProbeConfig::get(format!("{}/ok", srv.base))
    };
    let s = HttpProbe::new("web", cfg).unwrap().sample().await;
    assert!(s.ok, "{s:?}");
    let requests = srv.requests.lock().await;
    let r = &requests[0];
    assert!(r.starts_with("POST /ok HTTP/1.1"), "{r}");
    assert!(r.contains("x-probe: chaos"), "{r}");
    assert!(r.ends_with("{\"hello\":1}"), "{r}");
}

#[tokio::test]
async fn timeout_is_a_failure_with_latency_near_the_timeout() {
    let srv = server().await;
    let timeout = Duration::from_millis(200);
    for path in ["/slow", "/slow-body"] {
        let p = probe(format!("{}{path}", srv.base), timeout, "2xx");
        let s = p.sample().await;
        assert!(!s.ok, "{path}: {s:?}");
        assert_eq!(s.error.as_deref(), Some("timeout after 200ms"), "{path}");
        assert!(
            s.latency >= timeout && s.latency < timeout * 3,
            "{path}: latency {:?} should be about the timeout",
            s.latency
        );
    }
}

#[tokio::test]
async fn closed_port_is_connection_refused() {
    crate::testkit::assert_isolated();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let p = probe(format!("http://{addr}/"), Duration::from_secs(2), "2xx");
    let s = p.sample().await;
    assert!(!s.ok);
    assert_eq!(s.status, None);
    assert_eq!(s.error.as_deref(), Some("connection refused"));
}

#[tokio::test]
async fn server_closing_without_answer_is_a_failure() {
    let srv = server().await;
    let p = probe(format!("{}/close", srv.base), Duration::from_secs(2), "2xx");
    let s = p.sample().await;
    assert!(!s.ok);
    assert!(s.error.as_deref().is_some_and(|e| !e.is_empty()), "{s:?}");
}

#[test]
fn bad_configuration_is_refused() {
    let bad = |cfg: HttpProbeConfig| HttpProbe::new("web", cfg).unwrap_err().to_string();
    assert!(bad(HttpProbeConfig::get("not a url")).starts_with("invalid URL `not a url`"));
    assert_eq!(
        bad(HttpProbeConfig::get("ftp://x/")),
        "unsupported URL scheme `ftp` in `ftp://x/`; use http or https"
    );
    let cfg = HttpProbeConfig {
        method: "GE T".into(),
        ..HttpProbeConfig::get("http://127.0.0.1:1/")
    };
    assert_eq!(bad(cfg), "invalid HTTP method `GE T`");
    let cfg = HttpProbeConfig {
        headers: BTreeMap::from([("bad header".to_string(), "v".to_string())]),
        ..HttpProbeConfig::get("http://127.0.0.1:1/")
    };
    assert_eq!(
        bad(cfg),
        "invalid header `bad header`: not a valid header name"
    );
    let cfg = HttpProbeConfig {
        headers: BTreeMap::from([("x".to_string(), "a\nb".to_string())]),
        ..HttpProbeConfig::get("http://127.0.0.1:1/")
    };
    assert!(bad(cfg).starts_with("invalid header `x`: the value"));
    let cfg = HttpProbeConfig {
        timeout: Duration::ZERO,
        ..HttpProbeConfig::get("http://127.0.0.1:1/")
    };
    assert_eq!(bad(cfg), "probe timeout must be greater than zero");
}

#[test]
fn status_sets() {
    let set = StatusSet::parse("2xx, 304,500-502").unwrap();
    for (status, inside) in [
        (200, true),
        (299, true),
        (304, true),
        (301, false),
        (500, true),
        (502, true),
        (503, false),
        (404, false),
    ] {
        assert_eq!(set.contains(status), inside, "{status}");
    }
    assert_eq!(set.to_string(), "2xx,304,500-502");
    assert_eq!(StatusSet::parse(&set.to_string()).unwrap(), set);
    assert_eq!(StatusSet::default().to_string(), "2xx,3xx");
    assert!(StatusSet::default().contains(302) && !StatusSet::default().contains(404));
    assert_eq!(StatusSet::parse("2XX").unwrap().to_string(), "2xx");
    assert_eq!(StatusSet::parse("200-299").unwrap().to_string(), "2xx");
    let json = serde_json::to_string(&set).unwrap();
    assert_eq!(json, "\"2xx,304,500-502\"");
    assert_eq!(serde_json::from_str::<StatusSet>(&json).unwrap(), set);
}

#[test]
fn bad_status_sets_point_at_the_item() {
    let cases: &[(&str, &str, usize, usize)] = &[
        ("", "empty status", 0, 0),
        ("2xx,", "empty status", 4, 0),
        ("2xx, ok", "`ok` is not a status", 5, 2),
        ("6xx", "not a status class", 0, 3),
        ("200,99", "status `99` is out of range", 4, 2),
        ("299-200", "is empty; write the lower bound first", 0, 7),
        ("200-abc", "`200-abc` is not a status", 0, 7),
        ("22xx", "not a status class", 0, 4),
    ];
    for &(text, message, offset, len) in cases {
        let e = StatusSet::parse(text).unwrap_err();
        assert!(e.message.contains(message), "{text:?}: {}", e.message);
        assert_eq!((e.offset, e.len), (offset, len), "{text:?}: {}", e.message);
    }
}
