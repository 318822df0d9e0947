//! Scenario 4, resilience metrics: what the demo's runs say, from their reports — each run's
//! outcome, what the fault did to its first monitor, and its time to recover; then the mean
//! time to recover over the runs that recovered.
//!
//! This is the step the run history and the HTML report plug into: `finish` gets the state
//! directory the runs were journaled in and the runs themselves.

use std::path::Path;
use std::time::Duration;

use chaosforge::units::format_duration;

use super::{DemoRun, as_expected};

/// Prints the demo's resilience summary.
pub(super) fn finish(state_dir: &Path, runs: &[DemoRun], skipped: &[(u8, String)]) {
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
}

fn mean(d: &[Duration]) -> Option<Duration> {
    let n = u32::try_from(d.len()).ok().filter(|n| *n > 0)?;
    Some(d.iter().sum::<Duration>() / n)
}
