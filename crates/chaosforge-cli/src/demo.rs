//! `chaosforge demo`: the mission's four scenarios against small systems it starts on loopback,
//! each a bundled experiment file run against a resilient and a naive variant of the system:
//!
//! 1. [`checkout`]: network latency on the gateway's dependency (a TCP proxy fault);
//! 2. [`breaker`]: the dependency unavailable (HTTP 503s), with and without a circuit breaker;
//! 3. [`db`]: CPU stress on a database service that runs as its own process, pinned to one CPU,
//!    with the stress workers pinned alongside it (needs root and a cgroup hierarchy; skipped
//!    with a message elsewhere);
//! 4. [`finish`]: what the runs say about resilience — outcomes and times to recover.
//!
//! Ports are chosen free at start; nothing outside 127.0.0.1 is touched.

use std::path::Path;

use chaosforge::engine::{Outcome, RunResult};
use chaosforge::source::Document;

mod breaker;
mod checkout;
pub(crate) mod db;
mod finish;
mod serve;

/// What a variant's run should show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// The hypothesis holds.
    Confirmed,
    /// It does not.
    Refuted,
}

/// One variant of a scenario's system, and the experiment aimed at it.
pub(crate) struct Variant {
    /// In the heading.
    label: String,
    /// In the summary.
    short: &'static str,
    /// The name diagnostics and the journal give the experiment.
    file: String,
    /// The experiment, with the real ports and pids in place.
    text: String,
    /// What it should show.
    expect: Expect,
}

/// A scenario ready to run: its variants, and what keeps its services alive until it ends.
pub(crate) struct Scenario {
    variants: Vec<Variant>,
    /// What the expected outcomes show, for the summary.
    note: &'static str,
}

/// One run of the demo, for the summary.
pub(crate) struct DemoRun {
    /// 1, 2 or 3.
    pub scenario: u8,
    /// Which variant.
    pub variant: &'static str,
    /// What it should have shown.
    pub expect: Expect,
    /// What it did.
    pub result: RunResult,
}

/// The scenarios `--list` prints and `--only N` picks.
const SCENARIOS: [(u8, &str); 4] = [
    (
        1,
        "network latency on the gateway's dependency (payments), with and without a timeout",
    ),
    (
        2,
        "the inventory service unavailable (HTTP 503), with and without a circuit breaker",
    ),
    (
        3,
        "CPU stress on the database process, with and without timeout + cache + bulkhead (root)",
    ),
    (
        4,
        "resilience metrics: every run's outcome and time to recover (always, at the end)",
    ),
];

/// Runs the demo: every scenario, or only `only`; `list` prints them instead.
pub(crate) async fn run(
    state_dir: &Path,
    shutdown: tokio::sync::watch::Receiver<bool>,
    only: Option<u8>,
    list: bool,
    html: &Path,
) -> anyhow::Result<u8> {
    if list {
        for (n, what) in SCENARIOS {
            println!("{n}  {what}");
        }
        return Ok(0);
    }
    if let Some(n) = only
        && !(1..=3).contains(&n)
    {
        anyhow::bail!("--only {n}: the scenarios are 1, 2 and 3 (4, the summary, always runs)");
    }
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    for (n, what) in &SCENARIOS[..3] {
        if only.is_some_and(|o| o != *n) {
            continue;
        }
        println!("\n##### demo scenario {n}: {what}\n");
        // The database process lives as long as this value: it is killed when it drops.
        let mut db_service = None;
        let scenario = match n {
            1 => checkout::prepare().await?,
            2 => breaker::prepare().await?,
            _ => match db::prepare().await? {
                db::Prepared::Ready(s, child) => {
                    db_service = Some(child);
                    s
                }
                db::Prepared::Skip(why) => {
                    println!("demo: scenario 3 skipped: {why}");
                    skipped.push((3, why));
                    continue;
                }
            },
        };
        let mut mine = Vec::new();
        for v in scenario.variants {
            println!("\n=== demo {n}: {} ===\n", v.label);
            let result = run_text(&v.file, &v.text, state_dir, shutdown.clone()).await?;
            print!("{}", result.report.render_text());
            mine.push(DemoRun {
                scenario: *n,
                variant: v.short,
                expect: v.expect,
                result,
            });
            if *shutdown.borrow() {
                println!("\ndemo interrupted; the rest is skipped");
                finish::finish(state_dir, &runs, &skipped, html);
                return Ok(3);
            }
        }
        if mine.iter().all(as_expected) {
            println!("\ndemo {n}: as expected: {}.", scenario.note);
        }
        runs.extend(mine);
        drop(db_service);
    }
    finish::finish(state_dir, &runs, &skipped, html);
    if runs.iter().all(as_expected) {
        Ok(0)
    } else {
        println!(
            "unexpected: each scenario should confirm its resilient variant and refute the naive one."
        );
        Ok(1)
    }
}

/// Whether a run showed what its variant should.
fn as_expected(r: &DemoRun) -> bool {
    matches!(
        (r.expect, &r.result.outcome),
        (Expect::Confirmed, Outcome::Confirmed) | (Expect::Refuted, Outcome::Refuted { .. })
    )
}

/// Compiles a bundled experiment and runs it like `chaosforge run` would.
async fn run_text(
    file: &str,
    text: &str,
    state_dir: &Path,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<RunResult> {
    let doc = Document::parse(file, text)
        .map_err(|d| anyhow::anyhow!("bundled experiment is invalid:\n{d}"))?;
    let spec = chaosforge::de::decode(&doc)
        .map_err(|d| anyhow::anyhow!("bundled experiment is invalid:\n{d}"))?;
    let plan = chaosforge::plan::compile(&doc, &spec, None)
        .map_err(|d| anyhow::anyhow!("bundled experiment is invalid:\n{d}"))?;
    crate::run(&plan, state_dir, shutdown, None).await
}
