//! `chaosforge run --metrics-listen`: scraped while the run goes, `/metrics` follows it — the
//! phase gauge moves through the phases, sample counters grow, the fault gauge is 1 exactly
//! while the victim is stopped and 0 after the revert, and the outcome is there at the end, after
//! which the runner exits without waiting out its grace period.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tokio::time::Instant;

use crate::support::{Dir, EchoServer, Victim, chaosforge, http_get, wait_for};

/// A `chaosforge run` child, killed and reaped when dropped, whatever the test did.
struct Runner(Child);

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of `series` (name and labels exactly as written) in an exposition.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

const FAULT: &str = r#"chaosforge_fault_active{fault="freeze",kind="pause",target="victim"}"#;
const SAMPLES: &str = r#"chaosforge_monitor_samples_total{monitor="port"}"#;

fn phase(p: &str) -> String {
    format!(r#"chaosforge_phase{{phase="{p}"}}"#)
}

fn outcome(o: &str) -> String {
    format!(r#"chaosforge_last_run_outcome{{outcome="{o}"}}"#)
}

fn experiment(victim: &Victim, up: &EchoServer) -> String {
    format!(
        r#"apiVersion: chaosforge/v1
name: metrics-test
targets: [{{ name: victim, process: {{ pid: {pid} }} }}]
hypothesis:
  monitors: [{{ name: port, tcp: {{ address: "{up}", interval: 50ms }}, expect: ["availability >= 90%"] }}]
faults: [{{ name: freeze, pause: {{}}, target: {{ select: {{ name: victim }} }} }}]
phases: {{ baseline: 1s, inject: 2s, recover_within: 2s }}
"#,
        pid = victim.pid(),
        up = up.addr
    )
}

/// One scrape, and what the victim's state was right after it.
struct Snapshot {
    text: String,
    stopped: bool,
}

#[test]
fn the_metrics_endpoint_follows_the_run_and_serves_its_outcome() {
    let victim = Victim::start();
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write("metrics.yaml", &experiment(&victim, &up));
    let mut runner = Runner(
        chaosforge()
            .arg("run")
            .arg(&exp)
            .arg("--state-dir")
            .arg(dir.state())
            .args(["--metrics-listen", "127.0.0.1:0"])
            // Far longer than the wait below, so exiting in time can only mean the scrape ended it.
            .args(["--metrics-grace", "120s"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Port 0: the runner prints the address it bound on stderr. The rest of stderr (progress
    // lines) is kept for failure messages.
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = runner.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no metrics address on stderr: {log:?}"));
        let found = line
            .strip_prefix("metrics: serving http://")
            .and_then(|rest| rest.strip_suffix("/metrics"))
            .map(str::to_string);
        log.push(line);
        if let Some(a) = found {
            break a;
        }
    };
    assert_ne!(addr, "127.0.0.1:0", "the bound port, not the requested one");

    let (status, _) = http_get(&addr, "/other").unwrap();
    assert_eq!(status, 404);

    // Scrape every 50 ms until the outcome shows (bounded): that scrape is the final one.
    let start = Instant::now();
    let mut snaps: Vec<Snapshot> = Vec::new();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no outcome on /metrics within 30 s"
        );
        if let Some((200, text)) = http_get(&addr, "/metrics") {
            let stopped = victim.state() == 'T';
            let done = value(&text, &outcome("confirmed")) == Some(1.0);
            snaps.push(Snapshot { text, stopped });
            if done {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let final_at = Instant::now();

    let v = |s: &Snapshot, series: &str| value(&s.text, series);
    // The phase gauge went through the timed phases, one at a time.
    for p in ["baseline", "observe", "recover"] {
        assert!(
            snaps.iter().any(|s| v(s, &phase(p)) == Some(1.0)),
            "{p} was never the current phase"
        );
    }
    for s in &snaps {
        let current: f64 = ["validate", "baseline", "inject", "observe", "recover"]
            .iter()
            .map(|p| v(s, &phase(p)).unwrap())
            .sum();
        assert!(current <= 1.0, "two current phases:\n{}", s.text);
    }
    // Sample counters only grow, and grew during the run (50 ms interval over 3 s and more).
    let counts: Vec<f64> = snaps.iter().map(|s| v(s, SAMPLES).unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert!(counts.last().unwrap() - counts[0] >= 20.0, "{counts:?}");
    // The fault gauge is 1 while the victim is stopped and 0 while it is not: it tracks the
    // fault itself, not the phase (a scrape and the state read are a few ms apart, so allow an
    // edge or two).
    let active: Vec<(f64, bool)> = snaps
        .iter()
        .map(|s| (v(s, FAULT).unwrap(), s.stopped))
        .collect();
    let first_on = active
        .iter()
        .position(|(g, _)| *g == 1.0)
        .expect("the fault gauge was never 1");
    let last_on = active.iter().rposition(|(g, _)| *g == 1.0).unwrap();
    assert!(last_on - first_on >= 10, "injected for 2 s: {active:?}");
    let disagreements = active.iter().filter(|(g, st)| (*g == 1.0) != *st).count();
    eprintln!(
        "{} scrapes; samples {} → {}; fault gauge 1 in scrapes {first_on}..={last_on}, \
         {disagreements} disagreeing with the victim's state",
        snaps.len(),
        counts[0],
        counts.last().unwrap()
    );
    assert!(disagreements <= 2, "{active:?}");
    assert!(
        active[last_on + 1..].iter().all(|(g, st)| *g == 0.0 && !st),
        "0 after the revert: {active:?}"
    );

    // The final scrape: the outcome, when, and no phase any more.
    let last = snaps.last().unwrap();
    for o in ["refuted", "not_steady", "halted", "errored"] {
        assert_eq!(v(last, &outcome(o)), Some(0.0), "{}", last.text);
    }
    let ended = v(last, "chaosforge_last_run_finished_timestamp_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - ended).abs() < 30.0, "{ended} vs {now}");
    assert_eq!(v(last, &phase("recover")), Some(0.0));
    assert!(
        last.text
            .contains(r#"chaosforge_monitor_latency_seconds_bucket{le="0.001",monitor="port"}"#),
        "{}",
        last.text
    );

    // Once the outcome was scraped the runner exits, well before its grace is over (the bound is
    // generous: a loaded machine may be slow to tear the runtime down).
    let mut status = None;
    assert!(
        wait_for(Duration::from_secs(30), || {
            status = runner.0.try_wait().unwrap();
            status.is_some()
        }),
        "the runner still serves after the final scrape"
    );
    assert_eq!(status.unwrap().code(), Some(0));
    eprintln!("exited {:?} after the final scrape", final_at.elapsed());
    assert!(
        http_get(&addr, "/metrics").is_none(),
        "nothing listens after exit"
    );
}

#[test]
fn a_metrics_address_in_use_is_an_error_before_anything_runs() {
    let victim = Victim::start();
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write("metrics.yaml", &experiment(&victim, &up));
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = chaosforge()
        .arg("run")
        .arg(&exp)
        .arg("--state-dir")
        .arg(dir.state())
        .arg("--metrics-listen")
        .arg(taken.local_addr().unwrap().to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--metrics-listen: cannot listen on"),
        "{stderr}"
    );
    assert!(dir.journals().is_empty(), "no run was started");
    assert_ne!(victim.state(), 'T');
}
