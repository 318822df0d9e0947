//! The `prometheus` monitor against a real Prometheus server (Debian's `prometheus`), all on
//! loopback: an exporter child process that Prometheus scrapes every second, and a run whose
//! fault acts on the exporter or on Prometheus itself. What the monitor reads is what Prometheus
//! recorded, so these tests prove the whole chain: a paused exporter fails its scrapes, `up`
//! turns 0, the monitor's `value >= 1` breaks and the run is refuted; a Prometheus that dies or
//! was never there fails the monitor's samples with a reason, never a panic.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chaosforge::journal::{self, Event};
use chaosforge::vocab::Phase;

use crate::support::{Dir, alive, http_get, python, report, run_exit, wait_for};

/// `up{job="exporter"}`, URL-encoded for the query API.
const UP_QUERY: &str = "up%7Bjob%3D%22exporter%22%7D";

/// A metrics exporter in a child process of its own (so a `pause` fault stops it and nothing
/// else): Python's HTTP server answering every GET with a two-line exposition. It binds port 0
/// and prints the port, so there is no race for a free port. Killed and reaped when dropped —
/// SIGKILL ends a stopped process too, so a test that fails mid-pause leaves nothing behind.
struct Exporter {
    child: Child,
    port: u16,
}

const EXPORTER: &str = r##"
import http.server
body = b"# TYPE demo_requests counter\ndemo_requests_total 1\n"
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"##;

impl Exporter {
    fn start() -> Exporter {
        chaosforge::testkit::assert_isolated();
        let mut child = Command::new(python())
            .arg("-c")
            .arg(EXPORTER)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // After a pause, Prometheus has closed the timed-out scrape and Python prints the
            // broken pipe: noise, not a result.
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the exporter did not print its port: {line:?}")
        });
        Exporter { child, port }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Prometheus server on a free loopback port with its TSDB in a scratch directory, scraping
/// `targets` every second with a 500 ms scrape timeout. Killed and reaped when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts it and waits (bounded) until `/-/ready` answers and `up{job="exporter"}` is 1:
    /// only then is a baseline meaningful. Prometheus applies new scrape targets on a 5 s
    /// reload tick, so the first scrape comes about 5 s after the start.
    fn start(exporter: &Exporter) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{ scrape_interval: 1s, scrape_timeout: 500ms, evaluation_interval: 1s }}\n\
                 scrape_configs:\n\
                 \x20 - job_name: exporter\n\
                 \x20   static_configs: [{{ targets: [\"127.0.0.1:{}\"] }}]\n",
                exporter.port
            ),
        )
        .unwrap();
        // Prometheus takes its port as a flag: take a free one and release it just before. A
        // clash with another test is possible but rare, and shows as a failed start below.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("`prometheus` is not installed (apt-get install prometheus; .ci/run does)");
        let p = Prometheus { child, port, dir };
        assert!(
            wait_for(Duration::from_secs(20), || p
                .get("/-/ready")
                .is_some_and(|(s, _)| s == 200)),
            "Prometheus never became ready:\n{}",
            p.log()
        );
        assert!(
            wait_for(Duration::from_secs(20), || p.up() == Some(1.0)),
            "Prometheus never scraped the exporter (up = {:?}):\n{}",
            p.up(),
            p.log()
        );
        p
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&format!("127.0.0.1:{}", self.port), path)
    }

    /// The exporter's `up` as Prometheus has it now.
    fn up(&self) -> Option<f64> {
        let (_, body) = self.get(&format!("/api/v1/query?query={UP_QUERY}"))?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An experiment with one `prometheus` monitor reading `up{job="exporter"}` from `url` every
/// 500 ms (the scrape interval is 1 s, so each scrape is seen) and one fault on `target`.
fn experiment(url: &str, target_pid: i32, fault: &str, phases: &str, policies: &str) -> String {
    format!(
        r#"apiVersion: chaosforge/v1
name: prometheus-up
targets:
  - name: victim
    process: {{ pid: {target_pid} }}
    labels: {{ service: victim }}
hypothesis:
  monitors:
    - name: scraped
      prometheus:
        url: "{url}"
        query: 'up{{job="exporter"}}'
        interval: 500ms
        timeout: 1s
      expect: ["value >= 1"]
faults:
  - name: the-fault
    {fault}
    target: {{ select: {{ service: victim }} }}
phases: {phases}
{policies}
"#
    )
}

/// The monitor's samples, with their phase, from the (only) journal under `dir`.
fn samples(dir: &Dir) -> Vec<(Phase, chaosforge::vocab::Sample)> {
    journal::read(&dir.journals()[0])
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            Event::Sample { phase, sample, .. } => Some((phase, sample)),
            _ => None,
        })
        .collect()
}

/// When the (first) fault was injected, by the journal's clock.
fn injected_at(dir: &Dir) -> Duration {
    journal::read(&dir.journals()[0])
        .unwrap()
        .into_iter()
        .find_map(|e| match e {
            Event::Injected { at, .. } => Some(at),
            _ => None,
        })
        .expect("a fault was injected")
}

#[test]
fn a_paused_exporter_turns_up_to_zero_and_refutes_the_run() {
    let exporter = Exporter::start();
    let prometheus = Prometheus::start(&exporter);
    let dir = Dir::new();
    let exp = dir.write(
        "prom-pause.yaml",
        &experiment(
            &prometheus.url(),
            exporter.pid(),
            "pause: {}",
            "{ baseline: 2s, inject: 4s, recover_within: 15s }",
            "",
        ),
    );
    let stdout = run_exit(&exp, &dir, 1);
    assert!(stdout.contains("REFUTED"), "{stdout}");
    assert!(
        stdout.contains("scraped: `value >= 1` did not hold"),
        "the reason names the monitor and its expectation: {stdout}"
    );

    let samples = samples(&dir);
    // The baseline read up = 1 from Prometheus, every time: the monitor really talks to it.
    let baseline: Vec<_> = samples
        .iter()
        .filter(|(p, _)| *p == Phase::Baseline)
        .collect();
    assert!(baseline.len() >= 3, "{baseline:?}");
    assert!(
        baseline.iter().all(|(_, s)| s.ok && s.value == Some(1.0)),
        "{baseline:?}"
    );
    // The pause made Prometheus's scrapes time out, which it records as up = 0; the monitor saw
    // it soon after: within a scrape interval, a scrape timeout and a monitor interval.
    let at = injected_at(&dir);
    let first_zero = samples
        .iter()
        .find(|(_, s)| s.at >= at && s.value == Some(0.0))
        .map(|(_, s)| s.at)
        .unwrap_or_else(|| panic!("the monitor never saw up = 0: {samples:?}"));
    let seen_after = first_zero - at;
    assert!(seen_after < Duration::from_secs(4), "{seen_after:?}");
    // The exporter was thawed and Prometheus scraped it again: up = 1 before the run ended,
    // so recovery was measured, not timed out.
    let ttr = journal::read(&dir.journals()[0])
        .unwrap()
        .into_iter()
        .find_map(|e| match e {
            Event::Recovery { ttr, .. } => Some(ttr),
            _ => None,
        })
        .expect("recovery was measured");
    eprintln!("up = 0 seen {seen_after:?} after the pause; up = 1 again {ttr:?} after the revert");
    assert!(ttr.is_some(), "{stdout}");
    let text = report(&dir).render_text();
    assert!(!text.contains("did not recover"), "{text}");
    assert_eq!(samples.last().map(|(_, s)| s.value), Some(Some(1.0)));
    assert!(alive(exporter.pid()));
    assert_ne!(
        chaosforge::fault::process::state_of(exporter.pid()),
        Some('T'),
        "the pause is reverted"
    );
}

#[test]
fn a_prometheus_killed_during_the_run_fails_samples_with_a_reason() {
    let exporter = Exporter::start();
    let prometheus = Prometheus::start(&exporter);
    let dir = Dir::new();
    // The fault is Prometheus's own death: chaosforge SIGKILLs the server its monitor reads.
    let exp = dir.write(
        "prom-kill.yaml",
        &experiment(
            &prometheus.url(),
            prometheus.pid(),
            "kill: {}",
            "{ baseline: 2s, inject: 2s, recover_within: 2s }",
            "policies: { allow_irreversible: true }",
        ),
    );
    let stdout = run_exit(&exp, &dir, 1);
    assert!(stdout.contains("REFUTED"), "{stdout}");
    assert!(stdout.contains("did not recover within 2s"), "{stdout}");

    let samples = samples(&dir);
    let at = injected_at(&dir);
    assert!(
        samples
            .iter()
            .any(|(p, s)| *p == Phase::Baseline && s.ok && s.value == Some(1.0)),
        "the baseline read Prometheus: {samples:?}"
    );
    let failed: Vec<_> = samples.iter().filter(|(_, s)| s.at > at).collect();
    assert!(failed.len() >= 3, "{failed:?}");
    // A query in flight on a pooled connection when the server died may see the connection
    // go; every one after that finds nothing listening.
    for (_, s) in &failed {
        assert!(!s.ok, "{s:?}");
        assert_eq!(s.value, None);
        assert!(
            matches!(
                s.error.as_deref(),
                Some(
                    "prometheus: connection refused"
                        | "prometheus: connection reset"
                        | "prometheus: connection closed early"
                )
            ),
            "a dead server is named as such: {s:?}"
        );
    }
    assert_eq!(
        failed.last().unwrap().1.error.as_deref(),
        Some("prometheus: connection refused")
    );
    let report = report(&dir).render_text();
    assert!(
        report.contains("scraped: `value >= 1` could not be judged during the fault (no data)"),
        "{report}"
    );
}

#[test]
fn a_prometheus_that_is_not_there_is_not_steady() {
    let exporter = Exporter::start();
    let dir = Dir::new();
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exp = dir.write(
        "prom-closed.yaml",
        &experiment(
            &format!("http://127.0.0.1:{port}"),
            exporter.pid(),
            "pause: {}",
            "{ baseline: 1s, inject: 1s, recover_within: 1s }",
            "",
        ),
    );
    let stdout = run_exit(&exp, &dir, 2);
    assert!(stdout.contains("NOT STEADY"), "{stdout}");
    let samples = samples(&dir);
    assert!(!samples.is_empty());
    assert!(
        samples
            .iter()
            .all(|(_, s)| !s.ok && s.error.as_deref() == Some("prometheus: connection refused")),
        "{samples:?}"
    );
    // Not steady: nothing was injected.
    assert!(
        !journal::read(&dir.journals()[0])
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::Injecting { .. })),
    );
    assert_ne!(
        chaosforge::fault::process::state_of(exporter.pid()),
        Some('T')
    );
}
