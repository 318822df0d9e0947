//! `chaosforge history`: runs recorded at the end of `run`, figures checked against values
//! computed here from the journals' reports, a corrupt database that does not fail a run, and
//! `--rebuild`.

use crate::support::{Dir, EchoServer, chaosforge};

fn experiment(name: &str, upstream: &str, fault: &str, service: &str) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!(
        r#"apiVersion: chaosforge/v1
name: {name}
targets:
  - name: dep
    proxy: {{ listen: "127.0.0.1:{port}", upstream: "{upstream}" }}
    labels: {{ service: {service} }}
hypothesis:
  monitors:
    - name: port
      tcp: {{ address: "127.0.0.1:{port}", interval: 50ms, timeout: 1s }}
      expect: ["availability >= 90%"]
faults:
  - name: f
    {fault}
    target: {{ select: {{ service: {service} }} }}
phases: {{ baseline: 300ms, inject: 300ms, recover_within: 2s }}
"#
    )
}

fn history(dir: &Dir, args: &[&str]) -> std::process::Output {
    chaosforge()
        .arg("history")
        .args(args)
        .arg("--state-dir")
        .arg(dir.state())
        .output()
        .unwrap()
}

fn json(dir: &Dir, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    let out = history(dir, &a);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn runs_are_recorded_and_mttr_mtbf_and_score_match_the_reports() {
    let up = EchoServer::start();
    let dir = Dir::new();
    let up = up.addr.to_string();
    // Latency on the downstream path does not slow a TCP connect (confirmed); `down` refuses
    // every connect (refuted, recovers once reverted).
    let mut files = Vec::new();
    for (i, fault) in [
        "latency: { delay: 50ms }",
        "down: {}",
        "down: {}",
        "latency: { delay: 50ms }",
        "down: {}",
    ]
    .iter()
    .enumerate()
    {
        files.push(dir.write(
            &format!("e{i}.yaml"),
            &experiment("hist", &up, fault, "dep"),
        ));
    }
    files.push(dir.write(
        "other.yaml",
        &experiment("other", &up, "down: {}", "other-svc"),
    ));
    let out = chaosforge()
        .arg("run")
        .args(&files)
        .arg("--state-dir")
        .arg(dir.state())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("run history not updated"), "{stderr}");

    // The expected figures, computed from the reports by the definitions in
    // docs/resilience-score.md.
    let mut reports: Vec<_> = dir
        .journals()
        .iter()
        .map(|j| {
            chaosforge::report::Report::from_events(&chaosforge::journal::read(j).unwrap()).unwrap()
        })
        .filter(|r| r.plan.name == "hist")
        .collect();
    reports.sort_by_key(|r| r.started_at);
    assert_eq!(reports.len(), 5);
    let refuted: Vec<i64> = reports
        .iter()
        .filter(|r| matches!(r.outcome, Some(chaosforge::vocab::Outcome::Refuted { .. })))
        .map(|r| r.started_at.as_millisecond())
        .collect();
    let confirmed = reports
        .iter()
        .filter(|r| matches!(r.outcome, Some(chaosforge::vocab::Outcome::Confirmed)))
        .count();
    assert!(refuted.len() >= 2 && confirmed >= 1, "a mix is needed");
    let gaps: Vec<f64> = refuted.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    let mtbf = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let degraded = |r: &chaosforge::report::Report| {
        r.monitors.iter().any(|m| {
            m.expectations
                .iter()
                .any(|e| e.during.held == Some(false) || e.timing.detected_after.is_some())
        })
    };
    let ttrs: Vec<f64> = reports
        .iter()
        .filter(|r| degraded(r))
        .filter_map(|r| r.recovery.as_ref()?.ttr)
        .map(|t| t.as_millis() as f64)
        .collect();
    let mttr = ttrs.iter().sum::<f64>() / ttrs.len() as f64;
    let held = confirmed as f64 / (confirmed + refuted.len()) as f64;
    let rec: Vec<f64> = reports
        .iter()
        .filter_map(|r| r.recovery.as_ref())
        .map(|r| match r.ttr {
            Some(t) => {
                (1.0 - t.as_millis() as f64 / r.recover_within.as_millis() as f64).clamp(0.0, 1.0)
            }
            None => 0.0,
        })
        .collect();
    let recovery = rec.iter().sum::<f64>() / rec.len() as f64;
    let score = 100.0 * (0.6 * held + 0.4 * recovery);

    let all = json(&dir, &[]);
    assert_eq!(all["runs"].as_array().unwrap().len(), 6);
    let f = &all["experiments"]["hist"];
    let close = |v: &serde_json::Value, want: f64| {
        let got = v.as_f64().unwrap();
        assert!((got - want).abs() < 1e-6, "{got} != {want}: {f}");
    };
    close(&f["mtbf_ms"], mtbf);
    close(&f["mttr_ms"], mttr);
    close(&f["score"]["held"], held);
    close(&f["score"]["recovery"], recovery);
    close(&f["score"]["total"], score);
    assert_eq!(all["services"]["dep"]["runs"], 5);

    // The HTML history: one chart per experiment and per service, each with one series whose
    // points are that set's reverted runs (a red cross for each refuted one).
    let page = history(&dir, &["--format", "html"]);
    assert!(page.status.success());
    let page = String::from_utf8(page.stdout).unwrap();
    let sets =
        all["experiments"].as_object().unwrap().len() + all["services"].as_object().unwrap().len();
    assert_eq!(page.matches("<g class=\"series\"").count(), sets, "{page}");
    assert_eq!(
        page.matches("<g class=\"series\" data-series=\"hist\">")
            .count(),
        1
    );
    assert!(
        page.contains(&format!("{score:.1}")),
        "the score is on the page"
    );
    assert!(!page.contains("<script"));

    // Filters.
    let other = json(&dir, &["--experiment", "other"]);
    assert_eq!(other["runs"].as_array().unwrap().len(), 1);
    assert_eq!(
        json(&dir, &["--service", "other-svc"])["runs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        json(&dir, &["--since", "30d"])["runs"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        json(&dir, &["--since", "0s"])["runs"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // Rebuilding from the journals gives the same history (the run id is the key).
    let out = history(&dir, &["--rebuild"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&dir, &[]), all);
}

#[test]
fn a_corrupt_database_does_not_fail_a_run_and_rebuild_repairs_it() {
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "e.yaml",
        &experiment("corrupt", &up.addr.to_string(), "down: {}", "dep"),
    );
    std::fs::create_dir_all(dir.state()).unwrap();
    let db = dir.state().join("history.sqlite3");
    std::fs::write(&db, vec![0x5Au8; 16384]).unwrap();
    let out = crate::support::run(&exp, &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The same exit code as without history: refuted.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("run history not updated"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("history.sqlite3")
            && warnings[0].contains("chaosforge history --rebuild")
    );
    assert_eq!(dir.journals().len(), 1);
    assert!(
        history(&dir, &[]).status.code() != Some(0),
        "the corrupt file is reported"
    );
    let out = history(&dir, &["--rebuild"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = json(&dir, &[]);
    assert_eq!(runs["runs"][0]["outcome"], "refuted");
    assert_eq!(runs["runs"][0]["file_hash"].as_str().unwrap().len(), 64);
}
