//! Reports rebuilt from journals written by earlier versions render the same bytes: the journal
//! format and the report are contracts, so a refactoring that changes either fails here.
//!
//! The journals in `tests/data/journals/` were written by real runs (the built-in demo's two
//! gateways, a `pause` of a Python web server) before the run's vocabulary moved into
//! `chaosforge::vocab`; the `.txt` and `.json` files are what `chaosforge report` printed then (the JSON
//! report has grown keys since, and keeps every one it had).

use crate::support::{chaosforge, crate_dir};

fn assert_report(name: &str, format: &str, ext: &str) {
    let data = crate_dir().join("tests/data/journals");
    let out = chaosforge()
        .arg("report")
        .arg(data.join(format!("{name}.jsonl")))
        .args(["--format", format])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = std::fs::read(data.join(format!("{name}.{ext}"))).unwrap();
    // Compared as text so that a failure shows the difference; equal text is equal bytes.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&want),
        "`chaosforge report {name}.jsonl --format {format}` changed"
    );
}

#[test]
fn reports_of_old_journals_render_the_same_bytes() {
    for name in ["demo-confirmed", "demo-refuted", "pause-refuted"] {
        assert_report(name, "text", "txt");
    }
}

/// The JSON report may grow (issue 12 added each monitor's `series`, the `phases` and the
/// `timeline`) but never rename or change what it had: every key and value of the earlier
/// report is still there, in the same place.
#[test]
fn json_reports_of_old_journals_keep_every_earlier_key_and_value() {
    let data = crate_dir().join("tests/data/journals");
    for name in ["demo-confirmed", "demo-refuted", "pause-refuted"] {
        let out = chaosforge()
            .arg("report")
            .arg(data.join(format!("{name}.jsonl")))
            .args(["--format", "json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let now: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let then: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data.join(format!("{name}.json"))).unwrap())
                .unwrap();
        assert_contains(&now, &then, name);
    }
}

fn assert_contains(now: &serde_json::Value, then: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (now, then) {
        (Value::Object(n), Value::Object(t)) => {
            for (k, v) in t {
                let Some(nv) = n.get(k) else {
                    panic!("{at}.{k} is gone from the JSON report");
                };
                assert_contains(nv, v, &format!("{at}.{k}"));
            }
        }
        (Value::Array(n), Value::Array(t)) => {
            assert_eq!(n.len(), t.len(), "{at}: length changed");
            for (i, (nv, tv)) in n.iter().zip(t).enumerate() {
                assert_contains(nv, tv, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(now, then, "{at} changed"),
    }
}
