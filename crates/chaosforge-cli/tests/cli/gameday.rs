//! Game days end to end: two sequential and two parallel scenarios against loopback HTTP
//! servers (order and overlap read from the runs' journals), the approver role, a halt while a
//! scenario holds a fault, and a bad game day file that runs nothing.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::time::Instant;

use chaosforge::gameday::log::{self, GameDayEvent};
use chaosforge::journal::{self, Event};

use crate::support::{Dir, chaosforge, recover, serve_loopback, wait_for};

/// A loopback HTTP server answering `200 ok` to every request, closing each connection.
fn http_server() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    serve_loopback(|mut c| {
        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = [0u8; 2048];
        let _ = c.read(&mut buf);
        let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An experiment with a latency fault on a proxy in front of `up`, watched through the proxy.
fn experiment(name: &str, up: std::net::SocketAddr, inject: &str, policies: &str) -> (String, u16) {
    let port = free_port();
    (
        format!(
            r#"apiVersion: chaosforge/v1
name: {name}
seed: 1
targets:
  - name: backend
    proxy: {{ listen: "127.0.0.1:{port}", upstream: "{up}" }}
    labels: {{ service: backend }}
hypothesis:
  monitors:
    - name: web
      http: {{ url: "http://127.0.0.1:{port}/", interval: 50ms, timeout: 2s }}
      expect: ["availability >= 50%"]
faults:
  - name: slow
    latency: {{ delay: 300ms }}
    target: {{ select: {{ service: backend }} }}
phases: {{ baseline: 300ms, inject: {inject}, recover_within: 3s }}
{policies}"#
        ),
        port,
    )
}

/// (experiment name, wall-clock start, wall-clock end) of every run under `state`.
fn spans(state: &Path) -> Vec<(String, i64, i64)> {
    let mut out = Vec::new();
    for r in journal::runs(state).unwrap() {
        let ev = journal::read(&r.dir.join("journal.jsonl")).unwrap();
        let Some(Event::RunStarted {
            started_at, plan, ..
        }) = ev.first()
        else {
            panic!()
        };
        let end = ev.iter().find_map(|e| match e {
            Event::RunFinished { at, .. } => Some(*at),
            _ => None,
        });
        let start = started_at.as_millisecond();
        out.push((
            plan.name.clone(),
            start,
            start + end.unwrap().as_millis() as i64,
        ));
    }
    out
}

fn gameday_events(state: &Path) -> Vec<GameDayEvent> {
    let dirs = log::all(state).unwrap();
    assert_eq!(dirs.len(), 1);
    log::read(&dirs[0].join(log::FILE)).unwrap()
}

#[test]
fn sequential_scenarios_run_in_order_and_parallel_ones_overlap() {
    let (up, _stop) = http_server();
    let dir = Dir::new();
    for n in ["a", "b", "c"] {
        dir.write(
            &format!("{n}.yaml"),
            &experiment(&format!("exp-{n}"), up, "500ms", "").0,
        );
    }
    // `d` requires carol's approval: the game day's approver gives it.
    let (d, _) = experiment(
        "exp-d",
        up,
        "500ms",
        "policies:\n  approval: { approvers: [carol] }\n",
    );
    dir.write("d.yaml", &d);
    let gd = dir.write(
        "gd.yaml",
        "name: day\nroles: { owner: alice, observers: [bob], approver: carol }\n\
         start: 2020-01-01T00:00:00Z\ntimeline:\n  - scenario: a.yaml\n  - pause: 100ms\n  \
         - scenario: b.yaml\n  - parallel:\n      - scenario: c.yaml\n      - scenario: d.yaml\n",
    );
    let json = dir.path().join("r.json");
    let out = chaosforge()
        .arg("gameday")
        .arg(&gd)
        .arg("--state-dir")
        .arg(dir.state())
        .arg("--report-json")
        .arg(&json)
        .arg("--report")
        .arg(format!("junit:{}", dir.path().join("gd.xml").display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = spans(&dir.state());
    assert_eq!(s.len(), 4, "{s:?}");
    let by = |n: &str| s.iter().find(|x| x.0 == n).unwrap().clone();
    let (a, b, c, d) = (by("exp-a"), by("exp-b"), by("exp-c"), by("exp-d"));
    // Sequential: a ends before b starts (with the pause between), b before c and d.
    assert!(a.2 + 100 <= b.1, "a {a:?} b {b:?}");
    assert!(b.2 <= c.1 && b.2 <= d.1, "b {b:?} c {c:?} d {d:?}");
    // Parallel: c and d overlap.
    assert!(c.1 < d.2 && d.1 < c.2, "c {c:?} d {d:?}");
    // The game day journal links every scenario to its run, write-ahead.
    let ev = gameday_events(&dir.state());
    let linked = ev
        .iter()
        .filter(|e| matches!(e, GameDayEvent::ScenarioStarted { .. }))
        .count();
    assert_eq!(linked, 4);
    assert!(matches!(
        ev.last(),
        Some(GameDayEvent::GameDayEnded { exit_code: 0, .. })
    ));
    // The approver role approved `d`, journaled and audited.
    let audit = std::fs::read_to_string(dir.state().join("audit.jsonl")).unwrap();
    assert!(
        audit.contains("\"action\":\"approval\"") && audit.contains("approved by carol"),
        "{audit}"
    );
    assert!(stdout.contains("approval: approved by carol"), "{stdout}");
    // One combined report: every scenario, fault and report hint.
    assert_eq!(
        stdout.matches("injected slow (latency) on backend").count(),
        4,
        "{stdout}"
    );
    assert_eq!(stdout.matches("chaosforge report ").count(), 4, "{stdout}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["scenarios"].as_array().unwrap().len(), 4);
    assert_eq!(r["outcome"]["status"], "completed");
    // And as JUnit: a test suite per scenario.
    let xml = std::fs::read_to_string(dir.path().join("gd.xml")).unwrap();
    assert_eq!(xml.matches("<testsuite ").count(), 4, "{xml}");
}

#[test]
fn halting_the_game_day_reverts_the_held_fault_and_runs_no_further_step() {
    let (up, _stop) = http_server();
    let dir = Dir::new();
    let (a, port) = experiment("hold", up, "60s", "");
    dir.write("a.yaml", &a);
    dir.write("b.yaml", &experiment("never", up, "1s", "").0);
    let gd = dir.write(
        "gd.yaml",
        "name: day\nroles: { owner: alice }\ntimeline:\n  - scenario: a.yaml\n  - scenario: b.yaml\n",
    );
    let mut child = chaosforge()
        .arg("gameday")
        .arg(&gd)
        .arg("--now")
        .arg("--state-dir")
        .arg(dir.state())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let injected = wait_for(Duration::from_secs(30), || {
        journal::runs(&dir.state()).unwrap().iter().any(|r| {
            journal::read(&r.dir.join("journal.jsonl"))
                .unwrap_or_default()
                .iter()
                .any(|e| matches!(e, Event::Injected { .. }))
        })
    });
    assert!(injected, "the scenario never injected");
    // Seen from outside: requests through the proxy are slow while the fault is held.
    let t = Instant::now();
    assert!(crate::support::http_get(&format!("127.0.0.1:{port}"), "/").is_some());
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "no latency: {:?}",
        t.elapsed()
    );
    let id = match &gameday_events(&dir.state())[0] {
        GameDayEvent::GameDayStarted { gameday_id, .. } => gameday_id.clone(),
        _ => panic!(),
    };
    let out = chaosforge()
        .args(["halt", &id[..23], "--state-dir"])
        .arg(dir.state())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("halted game day") && said.contains("reverted slow (latency) on backend"),
        "{said}"
    );
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(status.code(), Some(3), "{stdout}");
    // The fault is gone: the proxy either answers fast or is no longer there.
    let t = Instant::now();
    let _ = crate::support::http_get(&format!("127.0.0.1:{port}"), "/");
    assert!(t.elapsed() < Duration::from_millis(250), "latency still on");
    // One run only (the second step never started), reverted and halted.
    let runs = journal::runs(&dir.state()).unwrap();
    assert_eq!(runs.len(), 1);
    let ev = journal::read(&runs[0].dir.join("journal.jsonl")).unwrap();
    assert!(ev.iter().any(|e| matches!(e, Event::Reverted { .. })));
    assert!(journal::open_faults(&ev).is_empty());
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Halted { policy, .. } if policy == "halt"))
    );
    let gev = gameday_events(&dir.state());
    assert!(
        gev.iter()
            .any(|e| matches!(e, GameDayEvent::Halted { by, .. } if by == "halt"))
    );
    assert!(matches!(
        gev.last(),
        Some(GameDayEvent::GameDayEnded { exit_code: 3, .. })
    ));
    assert!(stdout.contains("HALTED by halt"), "{stdout}");
    let rec = recover(&dir);
    let rec_out = String::from_utf8_lossy(&rec.stdout);
    assert!(
        !rec_out.contains("reverted"),
        "recover found something: {rec_out}"
    );
}

#[test]
fn a_bad_game_day_file_names_every_problem_and_runs_nothing() {
    let (up, _stop) = http_server();
    let dir = Dir::new();
    let (a, _) = experiment("a", up, "1s", "");
    dir.write("a.yaml", &a.replace("delay: 300ms", "delay: 300 ms"));
    let gd = dir.write(
        "gd.yaml",
        "name: day\nroles: { owner: alice, approvr: carol }\nstop_on: sometimes\ntimeline:\n  \
         - scenario: a.yaml\n  - pause: soon\n",
    );
    let out = chaosforge()
        .arg("gameday")
        .arg(&gd)
        .arg("--now")
        .arg("--state-dir")
        .arg(dir.state())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let g = gd.display().to_string();
    for want in [
        format!("{g}:2:24: roles.approvr: unknown field"),
        format!("{g}:3:10: stop_on: unknown stop_on `sometimes`"),
        format!("{g}:6:12: timeline[1].pause:"),
        "a.yaml:15:26: faults[0].latency.delay".to_string(),
        "faults[0].latency.delay".to_string(),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    assert!(!dir.state().join("runs").exists() && !dir.state().join("gamedays").exists());
}

/// `chaosforge report <gameday-id>` rebuilds the combined report from the journals alone: the
/// same text `gameday` printed, the same JSON it wrote with `--report-json`, and (other formats)
/// the same document as `gameday --report`; a unique prefix of the id is enough.
#[test]
fn report_rebuilds_a_game_days_combined_report() {
    let (up, _stop) = http_server();
    let dir = Dir::new();
    dir.write("a.yaml", &experiment("exp-a", up, "300ms", "").0);
    let gd = dir.write(
        "gd.yaml",
        "name: day\nroles: { owner: alice }\ntimeline:\n  - scenario: a.yaml\n",
    );
    let (json, html) = (dir.path().join("gd.json"), dir.path().join("gd.html"));
    let out = chaosforge()
        .arg("gameday")
        .arg(&gd)
        .arg("--state-dir")
        .arg(dir.state())
        .arg("--report-json")
        .arg(&json)
        .arg("--report")
        .arg(format!("html:{}", html.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dirs = log::all(&dir.state()).unwrap();
    let id = dirs[0].file_name().unwrap().to_str().unwrap().to_string();
    let report = |id: &str, format: &str| {
        let out = chaosforge()
            .args(["report", id, "--format", format, "--state-dir"])
            .arg(dir.state())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = report(&id, "text");
    assert!(text.contains("day") && text.contains("exp-a"), "{text}");
    assert!(stdout.ends_with(&text), "{stdout}\n---\n{text}");
    let written = std::fs::read_to_string(&json).unwrap();
    assert_eq!(report(&id, "json").trim_end(), written.trim_end());
    assert_eq!(
        report(&id[..13], "html"),
        std::fs::read_to_string(&html).unwrap()
    );
    // A game day's run is still reported by its own id.
    let r: serde_json::Value = serde_json::from_str(&written).unwrap();
    let run = r["scenarios"][0]["run_id"].as_str().unwrap();
    let one: serde_json::Value = serde_json::from_str(&report(run, "json")).unwrap();
    assert_eq!(one["plan"]["name"], "exp-a");
}
