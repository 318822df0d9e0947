//! Reports rebuilt from journals written by earlier versions render the same bytes: the journal
//! format and the report are contracts, so a refactoring that changes either fails here.
//!
//! The journals in `tests/data/journals/` were written by real runs (the built-in demo's two
//! gateways, a `pause` of a Python web server) before the run's vocabulary moved into
//! `chaosforge::vocab`; the `.txt` and `.json` files are what `chaosforge report` printed then.

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
        assert_report(name, "json", "json");
    }
}
