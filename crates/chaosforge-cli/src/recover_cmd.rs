//! `chaosforge recover [--watch [--interval 1s]]`: revert what dead or stuck runs left, once or
//! as a watchdog. A run is stuck when its runner holds its lock but has not beaten for longer
//! than its heartbeat timeout (`chaosforge::deadman`), so a fault of a runner that stops beating
//! is reverted within that timeout, plus one interval, plus the revert itself.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chaosforge::recover::{self, RecoverSummary};

/// Recovers once (`watch` is `None`), or every `watch` until SIGINT or SIGTERM. Exit code 2 when
/// a revert failed (in watch mode: any revert since it started), else 0.
pub(crate) async fn recover(state_dir: &Path, watch: Option<Duration>) -> anyhow::Result<u8> {
    let Some(interval) = watch else {
        let summary = recover::recover(state_dir).await?;
        print(&summary, false);
        if summary.is_empty() {
            println!("nothing to recover");
        }
        return Ok(if summary.has_failures() { 2 } else { 0 });
    };
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    eprintln!(
        "watching {} every {} (SIGINT or SIGTERM to stop)",
        state_dir.display(),
        chaosforge::units::format_duration(interval)
    );
    let mut failed = false;
    let mut tick = tokio::time::interval(interval);
    // A pass that took longer than the interval (a slow revert) is followed by the next one at
    // once, not by a burst of catch-up passes.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = tick.tick() => {}
        }
        // One bad pass (an unreadable state directory) is reported, and the watch goes on: a
        // watchdog that gives up is worse than one that complains.
        match recover::recover(state_dir).await {
            Ok(summary) => {
                print(&summary, true);
                failed |= summary.has_failures();
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                failed = true;
            }
        }
    }
    eprintln!("stopped watching");
    Ok(if failed { 2 } else { 0 })
}

/// One line per thing done. In watch mode a live run's skip is not news at every pass, so it
/// is left out, and each line is stamped.
fn print(summary: &RecoverSummary, watching: bool) {
    let stamp = || {
        if watching {
            format!("{} ", jiff::Timestamp::now())
        } else {
            String::new()
        }
    };
    for (r, why) in &summary.stuck_runs {
        println!("{}took over run {}: {why}", stamp(), r.0);
    }
    for f in &summary.faults {
        match &f.result {
            Ok(note) => println!(
                "{}reverted {} on {} (run {}): {note}",
                stamp(),
                f.name,
                f.target,
                f.run.0
            ),
            Err(e) => println!(
                "{}FAILED to revert {} on {} (run {}): {e}",
                stamp(),
                f.name,
                f.target,
                f.run.0
            ),
        }
    }
    for r in &summary.closed_runs {
        println!("{}closed the journal of unfinished run {}", stamp(), r.0);
    }
    if !watching {
        for r in &summary.live_runs {
            println!(
                "skipped run {}: it is still running and in charge of its faults",
                r.0
            );
        }
    }
    for (r, e) in &summary.failed_runs {
        println!("{}FAILED to recover run {}: {e}", stamp(), r.0);
    }
    for c in &summary.freed_claims {
        println!(
            "{}freed claim {} (target `{}`) of dead {}",
            stamp(),
            c.claim.resource,
            c.claim.target,
            c.holder.describe()
        );
    }
    if let Some(e) = &summary.claims_error {
        println!("{}FAILED to free the claims of dead runs: {e}", stamp());
    }
}
