//! Scenario 4, resilience metrics: what the demo's runs say, from their reports — each run's
//! outcome, what the fault did to its first monitor, and its time to recover; then the mean
//! time to recover over the runs that recovered.
//!
//! Then the runs go into the run history (`<state-dir>/history.sqlite3`, as every `run`'s do),
//! whose figures per demo experiment — MTTR, MTBF, the resilience score term by term — are
//! printed from the database, over every demo run it holds; and one HTML report of the demo's
//! runs is written.

use std::path::Path;
use std::time::Duration;

use chaosforge::units::format_duration;

use super::{DemoRun, as_expected};

/// Prints the demo's resilience summary, records the runs in the history and writes the HTML
/// report to `html` (a failure to write either is a warning: the journals hold the runs).
pub(super) fn finish(state_dir: &Path, runs: &[DemoRun], skipped: &[(u8, String)], html: &Path) {
    println!("\n##### demo scenario 4: resilience metrics\n");
    println!("journals under {}", state_dir.join("runs").display());
    println!(
        "{:<3} {:<38} {:<10} {:<9} {:<28} recovered",
        "#", "variant", "outcome", "expected", "during the fault"
    );
    for r in runs {
        let rep = &r.result.report;
        let during = rep
            .monitors
            .first()
            .map(|m| {
                let avail = m
                    .during
                    .availability
                    .map(|a| format!("{:.1}%", a * 100.0))
                    .unwrap_or_else(|| "-".into());
                let p99 = m
                    .during
                    .latency_p99
                    .map(format_duration)
                    .unwrap_or_else(|| "-".into());
                format!("avail {avail} p99 {p99}")
            })
            .unwrap_or_default();
        let recovered = match &rep.recovery {
            Some(rec) => match rec.ttr {
                Some(t) => format!("in {}", format_duration(t)),
                None => format!("not within {}", format_duration(rec.recover_within)),
            },
            None => "-".into(),
        };
        println!(
            "{:<3} {:<38} {:<10} {:<9} {:<28} {recovered}",
            r.scenario,
            r.variant,
            crate::outcome_word(&r.result.outcome),
            if as_expected(r) { "yes" } else { "NO" },
            during,
        );
    }
    for (n, why) in skipped {
        println!("{n:<3} skipped: {why}");
    }
    let ttrs: Vec<Duration> = runs
        .iter()
        .filter_map(|r| r.result.report.recovery.as_ref().and_then(|rec| rec.ttr))
        .collect();
    if let Some(mttr) = mean(&ttrs) {
        println!(
            "MTTR {} (mean time to recover over {} of {} runs)",
            format_duration(mttr),
            ttrs.len(),
            runs.len()
        );
    }
    let held = runs.iter().filter(|r| as_expected(r)).count();
    println!(
        "{held} of {} runs showed what their variant should",
        runs.len()
    );
    history(state_dir, runs);
    let reports: Vec<_> = runs.iter().map(|r| r.result.report.clone()).collect();
    if !reports.is_empty() {
        match std::fs::write(html, chaosforge::report::html::render(&reports)) {
            Ok(()) => println!("\nreport: {} (open it in a browser)", html.display()),
            Err(e) => eprintln!("warning: could not write {}: {e}", html.display()),
        }
    }
}

/// Records the runs and prints the history's figures for each demo experiment.
fn history(state_dir: &Path, runs: &[DemoRun]) {
    for r in runs {
        crate::history_cmd::record(state_dir, &r.result.report);
    }
    let mut names: Vec<&str> = runs
        .iter()
        .map(|r| r.result.report.plan.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let db = match chaosforge::history::History::open(state_dir) {
        Ok(db) => db,
        Err(e) => {
            eprintln!(
                "warning: run history unreadable: {e}; `chaosforge history --rebuild` rebuilds it"
            );
            return;
        }
    };
    println!(
        "\nrun history ({}):",
        state_dir.join("history.sqlite3").display()
    );
    for name in names {
        match db.runs(Some(name), None, None) {
            Ok(rows) => {
                let rows: Vec<_> = rows.iter().collect();
                crate::history_cmd::print_figures(
                    "experiment",
                    name,
                    &chaosforge::history::figures(&rows),
                );
            }
            Err(e) => eprintln!("warning: run history unreadable: {e}"),
        }
    }
    println!(
        "\n(all runs: chaosforge history --state-dir {})",
        state_dir.display()
    );
}

fn mean(d: &[Duration]) -> Option<Duration> {
    let n = u32::try_from(d.len()).ok().filter(|n| *n > 0)?;
    Some(d.iter().sum::<Duration>() / n)
}
