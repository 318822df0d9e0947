//! `notify:` webhooks, seen from a receiver on loopback: every event once and in order with its
//! fields, retries after failures delivering exactly once, a receiver that never answers
//! delaying the run by at most its timeout, and secret header values kept out of the journal.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::support::{Dir, EchoServer, Victim, chaosforge, serve_loopback};

/// Requests the receiver got: (headers in lower case, body), and the statuses it answers with
/// in turn (200 once they run out).
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    accepted: Arc<Mutex<Vec<serde_json::Value>>>,
    calls: Arc<AtomicUsize>,
}

fn receiver(fail_first: usize) -> (String, Receiver) {
    let r = Receiver::default();
    let rr = r.clone();
    let (addr, _stop) = serve_loopback(move |c: TcpStream| {
        let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
        let mut reader = BufReader::new(c.try_clone().unwrap());
        let mut head = String::new();
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&line.to_ascii_lowercase());
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let n = rr.calls.fetch_add(1, Ordering::SeqCst);
        rr.seen.lock().unwrap().push((head, json.clone()));
        let status = if n < fail_first {
            "503 Service Unavailable"
        } else {
            rr.accepted.lock().unwrap().push(json);
            "200 OK"
        };
        let mut c = c;
        let _ = write!(
            c,
            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    });
    std::mem::forget(_stop);
    (format!("http://{addr}/hook"), r)
}

fn experiment(victim: &Victim, up: &EchoServer, notify: &str) -> String {
    format!(
        r#"apiVersion: chaosforge/v1
name: notify-test
targets: [{{ name: victim, process: {{ pid: {pid} }} }}]
hypothesis:
  monitors: [{{ name: port, tcp: {{ address: "{up}", interval: 50ms }}, expect: ["availability >= 90%"] }}]
faults: [{{ name: freeze, pause: {{}}, target: {{ select: {{ name: victim }} }} }}]
phases: {{ baseline: 300ms, inject: 500ms, recover_within: 2s }}
{notify}
"#,
        pid = victim.pid(),
        up = up.addr
    )
}

fn run(dir: &Dir, exp: &std::path::Path) -> (std::process::Output, Duration) {
    let start = Instant::now();
    let out = chaosforge()
        .arg("run")
        .arg(exp)
        .arg("--state-dir")
        .arg(dir.state())
        .env("HOOK_TOKEN", "s3cr3t-t0ken-value")
        .output()
        .unwrap();
    (out, start.elapsed())
}

#[test]
fn every_event_arrives_once_in_order_and_the_secret_stays_out_of_the_journal() {
    let (victim, up, dir) = (Victim::start(), EchoServer::start(), Dir::new());
    let (url, r) = receiver(0);
    let exp = dir.write(
        "n.yaml",
        &experiment(
            &victim,
            &up,
            &format!(
                "notify: [{{ url: \"{url}\", headers: {{ Authorization: {{ env: HOOK_TOKEN }} }} }}]"
            ),
        ),
    );
    let (out, _) = run(&dir, &exp);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let accepted = r.accepted.lock().unwrap().clone();
    let events: Vec<&str> = accepted
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    // The run's own order: started, the fault in and out, then its verdict; each once.
    assert_eq!(events, ["started", "injected", "reverted", "confirmed"]);
    let run_id = accepted[0]["run_id"].as_str().unwrap().to_string();
    assert!(dir.journals()[0].to_string_lossy().contains(&run_id));
    for (i, e) in accepted.iter().enumerate() {
        assert_eq!(e["run_id"], run_id.as_str());
        assert_eq!(e["experiment"], "notify-test");
        assert_eq!(e["seq"], i as u64 + 1);
        assert!(e["at"].as_str().unwrap().parse::<jiff::Timestamp>().is_ok());
    }
    for e in &accepted[1..3] {
        assert_eq!(e["fault"], "freeze");
        assert_eq!(e["kind"], "pause");
        assert_eq!(e["target"], "victim");
    }
    assert_eq!(accepted[3]["outcome"]["status"], "confirmed");
    assert_eq!(accepted[3]["summary"]["faults"], 1);
    // The header was sent, read from the environment ...
    let heads = r.seen.lock().unwrap();
    assert!(
        heads
            .iter()
            .all(|(h, _)| h.contains("authorization: s3cr3t-t0ken-value"))
    );
    // ... and appears nowhere the run writes.
    let journal = std::fs::read_to_string(&dir.journals()[0]).unwrap();
    assert!(
        !journal.contains("s3cr3t"),
        "the secret leaked into the journal"
    );
    assert!(!stderr.contains("s3cr3t") && !String::from_utf8_lossy(&out.stdout).contains("s3cr3t"));
}

#[test]
fn a_receiver_failing_twice_gets_the_event_after_retries_exactly_once() {
    let (victim, up, dir) = (Victim::start(), EchoServer::start(), Dir::new());
    let (url, r) = receiver(2);
    let exp = dir.write(
        "n.yaml",
        &experiment(
            &victim,
            &up,
            &format!("notify: [{{ url: \"{url}\", events: [started], retries: 3 }}]"),
        ),
    );
    let (out, _) = run(&dir, &exp);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two 503s, then the same event (same id) accepted once; nothing else subscribed.
    assert_eq!(r.calls.load(Ordering::SeqCst), 3);
    let seen = r.seen.lock().unwrap();
    assert!(seen.iter().all(|(_, b)| b["id"] == seen[0].1["id"]));
    let accepted = r.accepted.lock().unwrap();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["event"], "started");
}

#[test]
fn a_receiver_that_never_answers_delays_the_run_at_most_its_timeout() {
    let (victim, up, dir) = (Victim::start(), EchoServer::start(), Dir::new());
    // Accepts, reads nothing, never answers (holds the connection until the test ends).
    let (addr, _stop) = serve_loopback(|c: TcpStream| {
        std::thread::sleep(Duration::from_secs(60));
        drop(c);
    });
    let plain = dir.write("plain.yaml", &experiment(&victim, &up, ""));
    let hooked = dir.write(
        "hooked.yaml",
        &experiment(
            &victim,
            &up,
            &format!("notify: [{{ url: \"http://{addr}/\", timeout: 1s, retries: 5 }}]"),
        ),
    );
    let (out, without) = run(&dir, &plain);
    assert_eq!(out.status.code(), Some(0));
    let (out, with) = run(&dir, &hooked);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The end waits the webhook's 1 s timeout at most; 5 retries of 1 s each on every event
    // would be far more. Generous tolerance for a loaded machine.
    assert!(
        with < without + Duration::from_secs(1) + Duration::from_millis(1500),
        "with webhook {with:?}, without {without:?}"
    );
    assert!(stderr.contains("undelivered"), "{stderr}");
}

#[test]
fn a_missing_env_var_and_a_bad_scheme_are_refused_with_their_position() {
    let dir = Dir::new();
    let exp = dir.write(
        "bad.yaml",
        r#"apiVersion: chaosforge/v1
name: bad-notify
hypothesis:
  monitors: [{ name: port, tcp: { address: "127.0.0.1:1", interval: 50ms }, expect: ["availability >= 90%"] }]
notify:
  - url: ftp://example.invalid/x
  - url: http://127.0.0.1:9/
    headers: { Authorization: { env: CF_TEST_SURELY_UNSET } }
"#,
    );
    let out = chaosforge().arg("validate").arg(&exp).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.yaml:6:10: notify[0].url:"), "{stderr}");
    assert!(stderr.contains("bad.yaml:8:38: notify[1].headers.Authorization.env: environment variable `CF_TEST_SURELY_UNSET` is not set"), "{stderr}");
}
