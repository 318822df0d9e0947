//! `chaosforge runs` lists the runs under the state directory with short ids, and `report`
//! takes a unique prefix of a run id.

use std::path::Path;

use crate::support::{Dir, chaosforge, crate_dir};

/// The three golden journals, each in its run's directory; two of their ids share the first
/// eight characters (UUIDv7 ids start with the time), so short ids must grow past eight.
fn state_with_golden_runs(dir: &Dir) -> std::path::PathBuf {
    let state = dir.state();
    for name in ["demo-confirmed", "demo-refuted", "pause-refuted"] {
        let src = crate_dir().join(format!("tests/data/journals/{name}.jsonl"));
        let text = std::fs::read_to_string(&src).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let id = first["run_id"].as_str().unwrap();
        let run = state.join("runs").join(id);
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("journal.jsonl"), text).unwrap();
    }
    state
}

fn cmd(state: &Path, args: &[&str]) -> (i32, String, String) {
    let out = chaosforge()
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn runs_lists_short_ids_start_experiment_and_outcome() {
    let dir = Dir::new();
    let state = state_with_golden_runs(&dir);
    let (code, stdout, stderr) = cmd(&state, &["runs"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "\
ID          STARTED (UTC)         EXPERIMENT                                 OUTCOME
01a24ae3    2026-12-06T10:26:20Z  checkout-survives-slow-payments-resilient  confirmed
01a24ae4-0  2026-12-06T10:26:26Z  checkout-survives-slow-payments-naive      refuted
01a24ae4-3  2026-12-06T10:26:40Z  pause-web                                  refuted
"
    );
    let empty = Dir::new();
    let (code, stdout, _) = cmd(&empty.state(), &["runs"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("no runs under "), "{stdout}");
}

#[test]
fn report_takes_a_unique_prefix_and_lists_the_candidates_of_an_ambiguous_one() {
    let dir = Dir::new();
    let state = state_with_golden_runs(&dir);
    let (code, stdout, stderr) = cmd(&state, &["report", "01a24ae4-3"]);
    assert_eq!(code, 0, "{stderr}");
    let want =
        std::fs::read_to_string(crate_dir().join("tests/data/journals/pause-refuted.txt")).unwrap();
    assert_eq!(stdout, want);

    let (code, _, stderr) = cmd(&state, &["report", "01a24ae4"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("`01a24ae4` is the start of 2 run ids; give more of it:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("01a24ae4-029f-75a3-af64-9861f6b3416e"),
        "{stderr}"
    );
    assert!(
        stderr.contains("01a24ae4-3a35-778a-a0c0-5f40453e469b"),
        "{stderr}"
    );

    let (code, _, stderr) = cmd(&state, &["report", "ffff"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no run whose id starts with it"),
        "{stderr}"
    );
}
