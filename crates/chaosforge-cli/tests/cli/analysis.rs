//! Statistics on a real run: a 10 ms latency fault on a ~1 ms loopback service is a significant
//! degradation (the threshold alone would call it fine), detected within two sampling intervals
//! of the injection and back in control within two intervals of the revert.

use std::io::{Read, Write};
use std::time::Duration;

use crate::support::{Dir, chaosforge, serve_loopback};

/// A keep-alive HTTP server answering every request with `200 ok`.
fn http_server() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    serve_loopback(|mut c| {
        let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
        let mut buf = [0u8; 4096];
        let mut pending = Vec::new();
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 {
                break;
            }
            pending.extend_from_slice(&buf[..n]);
            while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                pending.drain(..end + 4);
                let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if c.write_all(answer).is_err() {
                    return;
                }
            }
        }
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_10ms_fault_is_a_significant_degradation_detected_and_recovered_within_two_intervals() {
    let (upstream, stop) = http_server();
    let dir = Dir::new();
    let port = free_port();
    let exp = dir.write(
        "significance.yaml",
        &format!(
            r#"apiVersion: chaosforge/v1
name: significance
seed: 7
targets:
  - name: backend
    proxy: {{ listen: "127.0.0.1:{port}", upstream: "{upstream}" }}
    labels: {{ service: backend }}
hypothesis:
  significance: 0.01
  monitors:
    - name: api
      http: {{ url: "http://127.0.0.1:{port}/", interval: 50ms, timeout: 1s }}
      expect: ["latency.p99 < 300ms", "latency.p50 < baseline + 100ms"]
faults:
  - name: slow
    latency: {{ delay: 10ms }}
    target: {{ select: {{ service: backend }} }}
phases: {{ baseline: 2s, inject: 2s, recover_within: 3s }}
"#
        ),
    );
    let json = dir.path().join("report.json");
    let out = chaosforge()
        .arg("run")
        .arg(&exp)
        .arg("--state-dir")
        .arg(dir.state())
        .arg("--report-json")
        .arg(&json)
        .output()
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    // Both thresholds hold (10 ms is far under 300 ms and under baseline + 100 ms); only the
    // significance requirement refutes the hypothesis.
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("degraded significantly"), "{stdout}");
    // Faults are named on stderr as on stdout, and what was undone is said in words.
    assert!(stderr.contains("reverted slow on backend"), "{stderr}");
    assert!(
        stdout.contains("stopped on the downstream stream"),
        "{stdout}"
    );
    assert!(!stdout.contains("no degradation observed"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let e = &report["monitors"][0]["expectations"][0];
    assert_eq!(e["during"]["held"], true, "{e}");
    let change = &e["change"];
    assert_eq!(change["degraded"], true, "{change}");
    assert!(change["p_value"].as_f64().unwrap() < 1e-6, "{change}");
    assert_eq!(change["magnitude"], "large", "{change}");
    let shift = change["shift"].as_f64().unwrap();
    assert!(
        (0.008..0.014).contains(&shift),
        "Hodges–Lehmann shift {shift}s, expected ~10ms"
    );
    // The relative threshold is shown as computed.
    let rel = &report["monitors"][0]["expectations"][1];
    assert!(
        rel["threshold"]
            .as_str()
            .unwrap()
            .ends_with("(baseline + 100ms)"),
        "{rel}"
    );

    let secs = |v: &serde_json::Value| -> f64 {
        let text = v.as_str().unwrap_or_else(|| panic!("not a duration: {v}"));
        chaosforge::units::parse_duration(text)
            .unwrap()
            .as_secs_f64()
    };
    let interval = 0.050;
    let ttd = secs(&e["timing"]["detected_after"]);
    let ttr = secs(&e["timing"]["recovered_after"]);
    eprintln!("time to detect {ttd:.3}s, time to recover {ttr:.3}s (interval {interval}s)");
    assert!(ttd <= 2.0 * interval, "detected {ttd}s after the injection");
    assert!(
        ttr <= 2.0 * interval,
        "back in control {ttr}s after the revert"
    );
}
