//! `chaosforge history`: runs recorded at the end of `run`, figures (MTTR, MTTD, MTBF, the
//! score term by term, the trends) checked against values computed here from the journals'
//! reports, concurrent runs, a corrupt or unwritable database that does not fail a run, and
//! `--rebuild`.

use std::collections::BTreeMap;
use std::process::Stdio;

use chaosforge::report::Report;
use chaosforge::vocab::Outcome;

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
      tcp: {{ address: "127.0.0.1:{port}", interval: 25ms, timeout: 1s }}
      expect: ["availability >= 90%", "latency.p99 < 1s"]
faults:
  - name: f
    {fault}
    target: {{ select: {{ service: {service} }} }}
phases: {{ baseline: 200ms, inject: 300ms, recover_within: 2s }}
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

/// The reports of the runs of `experiment`, oldest first.
fn reports(dir: &Dir, experiment: &str) -> Vec<Report> {
    let mut reports: Vec<Report> = dir
        .journals()
        .iter()
        .map(|j| Report::from_events(&chaosforge::journal::read(j).unwrap()).unwrap())
        .filter(|r| r.plan.name == experiment)
        .collect();
    // The history's order: start time (to the millisecond it stores), then run id.
    reports.sort_by_key(|r| (r.started_at.as_millisecond(), r.run_id.0.clone()));
    reports
}

/// The standard normal upper tail by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), so the
/// expected p-values do not come from the code under test.
fn normal_sf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-x * x).exp();
    if z >= 0.0 {
        erfc / 2.0
    } else {
        1.0 - erfc / 2.0
    }
}

/// What the docs say a trend is, computed from one series: (S, z, p, Theil–Sen slope, verdict).
fn expected_trend(values: &[f64], expect: &str) -> (i64, f64, f64, f64, &'static str) {
    let n = values.len();
    let mut s = 0i64;
    let mut slopes = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            s += (values[j] > values[i]) as i64 - (values[j] < values[i]) as i64;
            slopes.push((values[j] - values[i]) / (j - i) as f64);
        }
    }
    let mut groups: BTreeMap<u64, f64> = BTreeMap::new();
    for v in values {
        *groups.entry(v.to_bits()).or_default() += 1.0;
    }
    let ties: f64 = groups
        .values()
        .map(|t| t * (t - 1.0) * (2.0 * t + 5.0))
        .sum();
    let nf = n as f64;
    let var = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
    let z = if s == 0 || var <= 0.0 {
        0.0
    } else {
        (s - s.signum()) as f64 / var.sqrt()
    };
    let p = 2.0 * normal_sf(z.abs());
    slopes.sort_by(f64::total_cmp);
    let m = slopes.len();
    let slope = if m % 2 == 1 {
        slopes[m / 2]
    } else {
        (slopes[m / 2 - 1] + slopes[m / 2]) / 2.0
    };
    // `<` and `<=` expectations (latency) get worse upwards.
    let worse_up = expect.contains('<');
    let verdict = if n < 4 || p >= 0.05 || s == 0 {
        "no_trend"
    } else if (s > 0) == worse_up {
        "worsening"
    } else {
        "improving"
    };
    (s, z, p, slope, verdict)
}

/// The issue's proof: 20 runs of one fast experiment (200ms baseline, 300ms under the fault),
/// some confirmed and some refuted, and every figure `history` shows for it computed again here
/// from the runs' own reports, by the definitions in docs/resilience-score.md.
#[test]
fn twenty_runs_give_the_mttr_mttd_mtbf_score_and_trend_the_reports_give() {
    let up = EchoServer::start();
    let dir = Dir::new();
    let up = up.addr.to_string();
    // Latency on the downstream path does not slow a TCP connect (confirmed); `down` refuses
    // every connect (refuted, recovers once reverted). Refuted runs become more common in the
    // second half, so availability under the fault falls over the runs: a worsening trend.
    let down = [3, 7, 10, 11, 13, 14, 15, 17, 18, 19];
    // One `chaosforge run` after the other: several files in one invocation run in parallel,
    // and a trend or MTBF over runs that all started together would mean nothing.
    let mut codes = Vec::new();
    for i in 0..20 {
        let fault = if down.contains(&i) {
            "down: {}"
        } else {
            "latency: { delay: 50ms }"
        };
        let exp = dir.write(
            &format!("e{i:02}.yaml"),
            &experiment("hist", &up, fault, "dep"),
        );
        let out = crate::support::run(&exp, &dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("run history not updated"), "{stderr}");
        codes.push(out.status.code());
    }
    assert!(
        codes.iter().all(|c| matches!(c, Some(0 | 1))),
        "every run confirmed or refuted: {codes:?}"
    );
    let other = dir.write(
        "other.yaml",
        &experiment("other", &up, "down: {}", "other-svc"),
    );
    assert_eq!(crate::support::run(&other, &dir).status.code(), Some(1));

    let reports = reports(&dir, "hist");
    assert_eq!(reports.len(), 20);
    let refuted: Vec<i64> = reports
        .iter()
        .filter(|r| matches!(r.outcome, Some(Outcome::Refuted { .. })))
        .map(|r| r.started_at.as_millisecond())
        .collect();
    let confirmed = reports
        .iter()
        .filter(|r| matches!(r.outcome, Some(Outcome::Confirmed)))
        .count();
    assert!(refuted.len() >= 2 && confirmed >= 1, "a mix is needed");
    let gaps: Vec<f64> = refuted.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    let mtbf = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let degraded = |r: &Report| {
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
    let ttds: Vec<f64> = reports
        .iter()
        .filter_map(|r| {
            r.monitors
                .iter()
                .flat_map(|m| &m.expectations)
                .filter_map(|e| e.timing.detected_after)
                .min()
        })
        .map(|t| t.as_millis() as f64)
        .collect();
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
    // Each expectation's values under the fault, oldest run first.
    let mut series: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for r in &reports {
        for m in &r.monitors {
            for e in &m.expectations {
                let values = series
                    .entry((m.name.clone(), e.expect.clone()))
                    .or_default();
                values.extend(e.during.value.filter(|v| v.is_finite()));
            }
        }
    }
    assert_eq!(series.len(), 2, "{series:?}");

    // Shown with --nocapture: the figures this test expects.
    eprintln!(
        "expected from the reports: {confirmed} confirmed, {} refuted, MTTR {mttr:.1}ms over {}, \
         MTTD {ttds:?}, MTBF {mtbf:.1}ms, held {held:.4}, recovery {recovery:.4}, series {series:?}",
        refuted.len(),
        ttrs.len()
    );
    let all = json(&dir, &[]);
    assert_eq!(all["runs"].as_array().unwrap().len(), 21);
    let f = &all["experiments"]["hist"];
    let close = |v: &serde_json::Value, want: f64, tol: f64| {
        let got = v
            .as_f64()
            .unwrap_or_else(|| panic!("{v} is no number: {f}"));
        assert!((got - want).abs() <= tol, "{got} != {want}: {f}");
    };
    assert_eq!(f["runs"], 20);
    close(&f["mtbf_ms"], mtbf, 1e-6);
    close(&f["mttr_ms"], mttr, 1e-6);
    if ttds.is_empty() {
        assert!(f["mttd_ms"].is_null(), "{f}");
    } else {
        close(
            &f["mttd_ms"],
            ttds.iter().sum::<f64>() / ttds.len() as f64,
            1e-6,
        );
    }
    assert_eq!(f["detected"], ttds.len());
    let trends = f["trends"].as_array().unwrap();
    assert_eq!(trends.len(), series.len());
    let mut judged = 0;
    let mut not_worsening = 0;
    for (t, ((monitor, expect), values)) in trends.iter().zip(&series) {
        assert_eq!(
            (&t["monitor"], &t["expect"]),
            (&(*monitor).clone().into(), &(*expect).clone().into())
        );
        let got: Vec<f64> = serde_json::from_value(t["values"].clone()).unwrap();
        assert_eq!(&got, values, "{expect}");
        let (s, z, p, slope, verdict) = expected_trend(values, expect);
        assert_eq!(t["mann_kendall"]["s"], s, "{expect}: {t}");
        close(&t["mann_kendall"]["z"], z, 1e-9);
        close(&t["mann_kendall"]["p_value"], p, 1e-6);
        close(&t["slope_per_run"], slope, 1e-12);
        assert_eq!(t["verdict"], verdict, "{expect}: {t}");
        if values.len() >= 4 {
            judged += 1;
            not_worsening += (verdict != "worsening") as usize;
        }
    }
    // The scenario does what it is built for: availability under the fault falls.
    let availability = &trends[0];
    assert_eq!(availability["expect"], "availability >= 90%");
    assert_eq!(availability["verdict"], "worsening", "{availability}");
    let trend = not_worsening as f64 / judged as f64;
    let score = 100.0 * (0.45 * held + 0.30 * recovery + 0.25 * trend);
    eprintln!("expected: trend term {trend:.4}, score {score:.3}");
    close(&f["score"]["held"], held, 1e-9);
    close(&f["score"]["recovery"], recovery, 1e-9);
    close(&f["score"]["trend"], trend, 1e-9);
    close(&f["score"]["total"], score, 1e-6);
    assert_eq!(all["services"]["dep"]["runs"], 20);

    // The text summary says the same, term by term.
    let text = history(&dir, &["--experiment", "hist"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(&format!("  score {score:.1} = held {held:.3} × 45")),
        "{text}"
    );
    assert!(text.contains(&format!("trend {trend:.3} × 25")), "{text}");
    assert!(
        text.contains(&format!(
            "  MTTR  {mttr:.0}ms over {} recovered runs",
            ttrs.len()
        )),
        "{text}"
    );
    let mttd = match ttds.len() {
        0 => "-".to_string(),
        n => format!("{:.0}ms", ttds.iter().sum::<f64>() / n as f64),
    };
    assert!(
        text.contains(&format!(
            "  MTTD  {mttd} over {} runs with a detected change",
            ttds.len()
        )),
        "{text}"
    );
    assert!(
        text.contains("  trend port availability >= 90%: worsening over 20 runs"),
        "{text}"
    );

    // The HTML history: one chart per experiment and per service, each with one series whose
    // points are that set's reverted runs (a red cross for each refuted one), and the trends.
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
    // The experiment `hist` and its service `dep` are the same runs: each worsening trend
    // (availability by construction; latency too when the machine slowed over the runs) is a
    // row under both.
    assert_eq!(
        page.matches("<tr class=\"worsening\">").count(),
        2 * (judged - not_worsening),
        "{page}"
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
        21
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

/// Two `chaosforge run` processes on one state directory, started together, each record their
/// run: the second writer waits on SQLite's lock (busy timeout) instead of failing, and the
/// schema is created once even when both open a new database.
#[test]
fn two_concurrent_runs_both_land_in_the_history() {
    let up = EchoServer::start();
    let dir = Dir::new();
    let up = up.addr.to_string();
    let children: Vec<_> = ["a", "b"]
        .iter()
        .map(|name| {
            let exp = dir.write(
                &format!("{name}.yaml"),
                &experiment(name, &up, "down: {}", "dep"),
            );
            chaosforge()
                .arg("run")
                .arg(exp)
                .arg("--state-dir")
                .arg(dir.state())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(!stderr.contains("run history not updated"), "{stderr}");
    }
    let all = json(&dir, &[]);
    let mut names: Vec<&str> = all["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["experiment"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "b"], "{all}");
}

/// A database that can be read but not written — a directory where SQLite must create its
/// rollback journal, which stops root too (unlike file modes) — gives one warning; the run's
/// exit code is the one it has without history, and its journal is kept for `--rebuild`.
#[test]
fn an_unwritable_database_warns_once_and_keeps_the_exit_code_and_journal() {
    let up = EchoServer::start();
    let dir = Dir::new();
    let up = up.addr.to_string();
    let first = dir.write("first.yaml", &experiment("first", &up, "down: {}", "dep"));
    assert_eq!(crate::support::run(&first, &dir).status.code(), Some(1));
    assert_eq!(json(&dir, &[])["runs"].as_array().unwrap().len(), 1);

    let blocker = dir.state().join("history.sqlite3-journal");
    std::fs::create_dir(&blocker).unwrap();
    let exp = dir.write(
        "e.yaml",
        &experiment("second", &up, "latency: { delay: 50ms }", "dep"),
    );
    let out = crate::support::run(&exp, &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Confirmed, as without history.
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("run history not updated"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("history.sqlite3"), "{stderr}");
    assert_eq!(dir.journals().len(), 2);

    std::fs::remove_dir(&blocker).unwrap();
    let runs = json(&dir, &[]);
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        1,
        "the run was not recorded"
    );
    assert_eq!(history(&dir, &["--rebuild"]).status.code(), Some(0));
    let runs = json(&dir, &[]);
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2, "{runs}");
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
