//! The Markdown, JUnit and HTML reports, checked from outside: golden files of fixed journals
//! (insta), JUnit read by a real consumer (Python's `junitparser`), HTML rendered by a real
//! browser (headless Chromium), and `run --report FORMAT:PATH`.
//!
//! `storefront-refuted.jsonl` and `storefront-halted.jsonl` were written by real runs: two
//! proxies in front of a Python `http.server`, a 150 ms latency on one and `down` on the other,
//! three monitors (two HTTP, one TCP); the first ran its course (three expectations refuted),
//! the second was halted by `halt_when: availability < 50%`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Dir, EchoServer, chaosforge, crate_dir};

fn journal(name: &str) -> PathBuf {
    crate_dir().join(format!("tests/data/journals/{name}.jsonl"))
}

/// `chaosforge report JOURNAL --format FORMAT` on stdout; it must succeed.
fn report(journal: &Path, format: &str) -> String {
    let out = chaosforge()
        .arg("report")
        .arg(journal)
        .args(["--format", format])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn markdown_reports_match_their_golden_files() {
    for name in ["storefront-refuted", "storefront-halted", "demo-refuted"] {
        insta::assert_snapshot!(format!("markdown-{name}"), report(&journal(name), "md"));
    }
}

#[test]
fn junit_reports_match_their_golden_files() {
    for name in ["storefront-refuted", "storefront-halted", "demo-confirmed"] {
        insta::assert_snapshot!(format!("junit-{name}"), report(&journal(name), "junit"));
    }
}

/// Several runs in one `report` make one document: a JUnit suite per run, in order.
#[test]
fn several_runs_make_one_junit_document() {
    let out = chaosforge()
        .arg("report")
        .arg(journal("storefront-refuted"))
        .arg(journal("storefront-halted"))
        .args(["--format", "junit"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let xml = String::from_utf8(out.stdout).unwrap();
    insta::assert_snapshot!("junit-two-runs", xml);
    let dir = Dir::new();
    let rows = junitparser(&dir.write("two.xml", &xml));
    let suites: Vec<&[String]> = rows
        .iter()
        .filter(|r| r[0] == "suite")
        .map(|r| &r[1..])
        .collect();
    assert_eq!(
        suites,
        [
            [
                "storefront-survives-slow-api-and-store-outage",
                "7",
                "3",
                "0",
                "0"
            ],
            [
                "storefront-halts-when-the-store-is-down",
                "8",
                "3",
                "1",
                "0"
            ]
        ]
    );
}

#[test]
fn every_format_renders_the_same_bytes_twice_and_to_a_file_as_to_stdout() {
    let dir = Dir::new();
    let j = journal("storefront-refuted");
    for format in ["text", "json", "md", "html", "junit"] {
        let first = report(&j, format);
        assert_eq!(first, report(&j, format), "{format} is not deterministic");
        let file = dir.path().join(format!("r.{format}"));
        let out = chaosforge()
            .arg("report")
            .arg(&j)
            .args(["--format", format, "-o"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert!(out.stdout.is_empty(), "-o must leave stdout alone");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), first, "{format}");
    }
}

/// The time series the charts draw are in the JSON report too: every sample of each monitor,
/// and the phase spans and timeline, all from the journal.
#[test]
fn the_json_report_carries_every_sample_the_phases_and_the_timeline() {
    let j = journal("storefront-refuted");
    let events = chaosforge::journal::read(&j).unwrap();
    let v: serde_json::Value = serde_json::from_str(&report(&j, "json")).unwrap();
    for (i, m) in v["monitors"].as_array().unwrap().iter().enumerate() {
        let samples = events
            .iter()
            .filter(|e| matches!(e, chaosforge::journal::Event::Sample { monitor, .. } if *monitor == i))
            .count();
        let series = m["series"].as_array().unwrap();
        assert_eq!(series.len(), samples, "monitor {i}");
        let ts: Vec<f64> = series.iter().map(|p| p["t_ms"].as_f64().unwrap()).collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "sorted by start");
    }
    // The store was down during the fault: its failed samples are all in the fault window.
    let store = &v["monitors"][1]["series"];
    let failed: Vec<&serde_json::Value> = store
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ok"] == false)
        .collect();
    assert!(!failed.is_empty());
    assert!(
        failed
            .iter()
            .all(|p| p["phase"] == "observe" || p["phase"] == "inject")
    );
    let phases: Vec<&str> = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        ["validate", "baseline", "inject", "observe", "recover"]
    );
    let timeline = v["timeline"].as_array().unwrap();
    assert_eq!(timeline.first().unwrap()["event"], "run_started");
    assert_eq!(timeline.last().unwrap()["event"], "run_finished");
    assert_eq!(
        timeline.iter().filter(|t| t["event"] == "reverted").count(),
        2
    );
}

/// A journal whose names carry markup: what an attacker who can name an experiment, a monitor
/// or a fault would try. Every renderer must show it as text.
fn hostile_journal(dir: &Dir) -> PathBuf {
    let text = std::fs::read_to_string(journal("storefront-refuted"))
        .unwrap()
        .replace(
            "storefront-survives-slow-api-and-store-outage",
            "<script>alert(1)</script>",
        )
        .replace("upstream-port", "<img src=x onerror=alert(2)>")
        .replace("store-down", "down & \\\"out\\\" | <b>");
    dir.write("hostile.jsonl", &text)
}

#[test]
fn markup_in_names_comes_out_escaped() {
    let dir = Dir::new();
    let j = hostile_journal(&dir);
    let html = report(&j, "html");
    assert!(
        !html.contains("<script"),
        "no script element may come through"
    );
    assert!(
        !html.contains("<img"),
        "no element from a name may come through"
    );
    assert!(!html.contains("<b>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("data-series=\"&lt;img src=x onerror=alert(2)&gt;\""));
    assert!(html.contains("down &amp; &quot;out&quot; | &lt;b&gt;"));
    let md = report(&j, "md");
    assert!(!md.contains("<script") && !md.contains("<img") && !md.contains("<b>"));
    assert!(md.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // A `|` in a name must not split a Markdown table cell.
    assert!(md.contains("down &amp; \"out\" \\| &lt;b&gt;"), "{md}");
    let xml = report(&j, "junit");
    assert!(!xml.contains("<script") && !xml.contains("<img"));
}

/// The HTML has one chart per monitor and exactly one series in it, named after the monitor.
#[test]
fn the_html_has_one_series_per_monitor() {
    let html = report(&journal("storefront-refuted"), "html");
    assert_eq!(html.matches("<svg").count(), 3);
    assert_eq!(html.matches("<g class=\"series\"").count(), 3);
    for m in ["api", "store", "upstream-port"] {
        assert_eq!(
            html.matches(&format!("<g class=\"series\" data-series=\"{m}\">"))
                .count(),
            1,
            "{m}"
        );
    }
    // Both faults' instants are marked on every chart, and the three windows shaded.
    assert_eq!(html.matches("class=\"mark inject\"").count(), 2 * 3);
    assert_eq!(html.matches("class=\"mark revert\"").count(), 2 * 3);
    for band in ["baseline", "fault", "recovery"] {
        assert!(html.matches(&format!("class=\"band {band}\"")).count() >= 3);
    }
    // Self-contained: nothing is fetched, nothing runs.
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href=\"http"));
}

fn chromium() -> Command {
    let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect(
            "headless Chromium is needed for this test: apt-get install chromium (.ci/run does)",
        );
    let mut c = Command::new(bin);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ]);
    c
}

/// A real browser renders the page: to a PNG that is more than a blank page, without console
/// errors, and its DOM (as the browser parsed it) has one series per monitor.
#[test]
fn headless_chromium_renders_the_html_report() {
    let dir = Dir::new();
    let page = dir.path().join("report.html");
    std::fs::write(&page, report(&journal("storefront-refuted"), "html")).unwrap();
    let url = format!("file://{}", page.display());
    let png = dir.path().join("report.png");
    let out = chromium()
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile-1").display()
        ))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1100,3000")
        .arg(&url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // A blank 1100x3000 page compresses to a few kilobytes; charts and tables do not.
    assert!(
        bytes.len() > 50_000,
        "PNG of {} bytes looks empty",
        bytes.len()
    );
    for bad in ["Uncaught", ":CONSOLE(", "Refused to"] {
        assert!(!stderr.contains(bad), "browser console: {stderr}");
    }

    let out = chromium()
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile-2").display()
        ))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(out.status.success());
    let dom = String::from_utf8_lossy(&out.stdout);
    assert_eq!(dom.matches("<svg").count(), 3, "one chart per monitor");
    for m in ["api", "store", "upstream-port"] {
        assert_eq!(
            dom.matches(&format!("class=\"series\" data-series=\"{m}\""))
                .count(),
            1,
            "{m}"
        );
    }
}

/// Counts a JUnit file as Python's `junitparser` reads it: per suite `name tests failures
/// errors skipped`, then per failed or errored case `suite/case kind message`.
const JUNITPARSER: &str = r#"
import sys
from junitparser import JUnitXml, Failure, Error, Skipped
xml = JUnitXml.fromfile(sys.argv[1])
for suite in xml:
    print("suite", suite.name, suite.tests, suite.failures, suite.errors, suite.skipped, sep="\t")
    for case in suite:
        for r in case.result:
            kind = {Failure: "failure", Error: "error", Skipped: "skipped"}[type(r)]
            print("case", suite.name + "/" + case.name, kind, r.type, r.message, sep="\t")
"#;

fn junitparser(xml: &Path) -> Vec<Vec<String>> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(JUNITPARSER)
        .arg(xml)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "junitparser (pip install junitparser; .ci/run does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

#[test]
fn junitparser_reads_the_refuted_and_the_halted_run() {
    let dir = Dir::new();
    let refuted = dir.write(
        "refuted.xml",
        &report(&journal("storefront-refuted"), "junit"),
    );
    let rows = junitparser(&refuted);
    // 5 expectations (api 3, store 1, upstream-port 1) + recovery + faults reverted; the three
    // expectations the run refuted are failures carrying what was observed and the threshold.
    let name = "storefront-survives-slow-api-and-store-outage";
    assert_eq!(rows[0], ["suite", name, "7", "3", "0", "0"]);
    let failed: Vec<&Vec<String>> = rows.iter().filter(|r| r[0] == "case").collect();
    assert_eq!(failed.len(), 3);
    assert_eq!(failed[0][1], format!("{name}/api: latency.p99 < 100ms"));
    assert_eq!(failed[0][2], "failure");
    assert!(failed[0][4].contains("observed 162ms"), "{:?}", failed[0]);
    assert!(failed[0][4].contains("latency.p99 < 100ms"));
    assert!(
        failed[1][4].contains("threshold 7.51ms (baseline * 3)"),
        "{:?}",
        failed[1]
    );
    assert_eq!(failed[2][1], format!("{name}/store: availability >= 90%"));
    assert!(failed[2][4].contains("observed 0.0%"));

    let halted = dir.write(
        "halted.xml",
        &report(&journal("storefront-halted"), "junit"),
    );
    let rows = junitparser(&halted);
    // The halt is visible as an errored `run` case with the policy and its reason.
    assert_eq!(
        rows[0],
        [
            "suite",
            "storefront-halts-when-the-store-is-down",
            "8",
            "3",
            "1",
            "0"
        ]
    );
    let run = rows.iter().find(|r| r[1].ends_with("/run")).unwrap();
    assert_eq!(run[2..4], ["error", "halted"]);
    assert!(run[4].contains("HALTED by halt_when"), "{run:?}");
}

fn experiment(name: &str, monitor_addr: &str, upstream: &str) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!(
        r#"apiVersion: chaosforge/v1
name: {name}
seed: 1
targets:
  - name: backend
    proxy: {{ listen: "127.0.0.1:{port}", upstream: "{upstream}" }}
    labels: {{ service: backend }}
hypothesis:
  monitors:
    - name: port
      tcp: {{ address: "{monitor_addr}", interval: 50ms, timeout: 300ms }}
      expect: ["availability >= 99%"]
faults:
  - name: slow
    latency: {{ delay: 10ms }}
    target: {{ select: {{ service: backend }} }}
phases: {{ baseline: 400ms, inject: 400ms, recover_within: 2s }}
"#
    )
}

/// Two files in one `run` give one JUnit document with a suite each, one HTML page with both,
/// and `--report-json` still writes the JSON array; a run that was not steady is errored.
#[test]
fn run_writes_every_report_and_several_files_make_one_document() {
    let up = EchoServer::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let dir = Dir::new();
    let a = dir.write(
        "a.yaml",
        &experiment("holds", &up.addr.to_string(), &up.addr.to_string()),
    );
    let b = dir.write(
        "b.yaml",
        &experiment("not-steady", &closed_addr, &up.addr.to_string()),
    );
    let (xml, html, md, json) = (
        dir.path().join("r.xml"),
        dir.path().join("r.html"),
        dir.path().join("r.md"),
        dir.path().join("r.json"),
    );
    let out = chaosforge()
        .arg("run")
        .arg(&a)
        .arg(&b)
        .arg("--state-dir")
        .arg(dir.state())
        .arg(format!("--report=junit:{}", xml.display()))
        .arg(format!("--report=html:{}", html.display()))
        .arg(format!("--report=md:{}", md.display()))
        .arg("--report-json")
        .arg(&json)
        .output()
        .unwrap();
    // Not steady is an error (2), worse than confirmed.
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = junitparser(&xml);
    let suites: Vec<&Vec<String>> = rows.iter().filter(|r| r[0] == "suite").collect();
    assert_eq!(suites.len(), 2);
    // holds: its expectation, recovery, faults reverted — all pass.
    assert_eq!(*suites[0], ["suite", "holds", "3", "0", "0", "0"]);
    // not steady: nothing was injected, so only the expectation, errored.
    assert_eq!(*suites[1], ["suite", "not-steady", "1", "0", "1", "0"]);
    let case = rows.iter().find(|r| r[0] == "case").unwrap();
    assert_eq!(
        case[1..4],
        [
            "not-steady/port: availability >= 99%",
            "error",
            "not-steady"
        ]
    );
    assert!(
        case[4].contains("did not hold at baseline: observed 0.0%"),
        "{case:?}"
    );

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("chaosforge — 2 runs"));
    assert_eq!(page.matches("<section class=\"run\"").count(), 3);
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(md.starts_with("# chaosforge: 2 runs"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
}

/// A bad `--report` fails before anything runs: exit 2, a message naming the formats, no
/// journal (so nothing was injected).
#[test]
fn a_bad_report_format_is_refused_before_anything_runs() {
    let up = EchoServer::start();
    let dir = Dir::new();
    let a = dir.write(
        "a.yaml",
        &experiment("x", &up.addr.to_string(), &up.addr.to_string()),
    );
    for bad in ["pdf:out.pdf", "html", "junit:"] {
        let out = chaosforge()
            .arg("run")
            .arg(&a)
            .arg("--state-dir")
            .arg(dir.state())
            .arg(format!("--report={bad}"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--report"), "{bad}: {stderr}");
        assert!(dir.journals().is_empty(), "{bad}: a run started");
    }
    let out = chaosforge()
        .arg("report")
        .arg(journal("demo-refuted"))
        .args(["--format", "pdf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("html"));
}
