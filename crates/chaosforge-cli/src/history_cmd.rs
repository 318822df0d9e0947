//! `chaosforge history`: the runs recorded in `<state-dir>/history.sqlite3`, MTTR, MTBF and the
//! resilience score per experiment and per service; `--rebuild` re-imports every journal. And
//! [`record`], which `run` calls for each finished run: a history error only warns.

use std::collections::BTreeMap;
use std::path::Path;

use chaosforge::history::{self, Figures, History, RunRow};
use serde::Serialize;

/// The summary `history` prints (JSON with `--format json`).
#[derive(Debug, Serialize)]
struct Summary {
    runs: Vec<RunRow>,
    experiments: BTreeMap<String, Figures>,
    services: BTreeMap<String, Figures>,
}

/// Records a finished run; on any history error, one warning line and the run goes on.
pub(crate) fn record(state_dir: &Path, report: &chaosforge::report::Report) {
    let hash = history::file_hashes(state_dir).remove(&report.run_id.0);
    if let Err(e) = History::open(state_dir).and_then(|mut h| h.record(report, hash)) {
        eprintln!(
            "warning: run history not updated: {e}; the journal has the run, `chaosforge history --rebuild` re-imports it"
        );
    }
}

/// `history`.
pub(crate) fn history(
    state_dir: &Path,
    rebuild: bool,
    experiment: Option<&str>,
    service: Option<&str>,
    since: Option<std::time::Duration>,
    json: bool,
) -> anyhow::Result<u8> {
    if rebuild {
        let r = history::rebuild(state_dir)?;
        if let Some(p) = &r.moved_aside {
            eprintln!(
                "the old database could not be read; moved aside to {}",
                p.display()
            );
        }
        for s in &r.skipped {
            eprintln!("skipped {s}");
        }
        println!("imported {} runs from their journals", r.imported);
        return Ok(0);
    }
    let since_ms = since.map(|d| jiff::Timestamp::now().as_millisecond() - d.as_millis() as i64);
    let runs = History::open(state_dir)?.runs(experiment, service, since_ms)?;
    let mut experiments: BTreeMap<String, Vec<&RunRow>> = BTreeMap::new();
    let mut services: BTreeMap<String, Vec<&RunRow>> = BTreeMap::new();
    for r in &runs {
        experiments.entry(r.experiment.clone()).or_default().push(r);
        for s in &r.services {
            services.entry(s.clone()).or_default().push(r);
        }
    }
    let summary = Summary {
        experiments: experiments
            .iter()
            .map(|(k, v)| (k.clone(), history::figures(v)))
            .collect(),
        services: services
            .iter()
            .map(|(k, v)| (k.clone(), history::figures(v)))
            .collect(),
        runs,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(0);
    }
    println!(
        "{:<24}  {:<36}  {:<12}  TTR",
        "STARTED (UTC)", "EXPERIMENT", "OUTCOME"
    );
    for r in &summary.runs {
        let at = jiff::Timestamp::from_millisecond(r.started_ms)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let ttr = match (r.reverted, r.ttr_ms) {
            (false, _) => "-".to_string(),
            (true, Some(t)) => format!("{t}ms"),
            (true, None) => "not recovered".into(),
        };
        println!("{at:<24}  {:<36}  {:<12}  {ttr}", r.experiment, r.outcome);
    }
    for (kind, map) in [
        ("experiment", &summary.experiments),
        ("service", &summary.services),
    ] {
        for (name, f) in map {
            println!(
                "\n{kind} {name}: {} runs ({} confirmed, {} refuted, {} halted, {} without verdict)",
                f.runs, f.confirmed, f.refuted, f.halted, f.no_verdict
            );
            println!(
                "  MTTR  {} over {} recovered runs; {} did not recover in time",
                f.mttr_ms.map_or("-".into(), |m| format!("{m:.0}ms")),
                f.recovered,
                f.not_recovered
            );
            println!(
                "  MTBF  {}",
                f.mtbf_ms
                    .map_or("- (fewer than 2 refuted runs)".into(), |m| format!(
                        "{:.1}s between refuted runs",
                        m / 1000.0
                    ))
            );
            let term = |v: Option<f64>, w: f64| {
                v.map_or("n/a".into(), |v| {
                    format!("{v:.3} × {:.0} = {:.1}", w * 100.0, v * w * 100.0)
                })
            };
            println!(
                "  score {} = held {} + recovery {}",
                f.score.total.map_or("-".into(), |t| format!("{t:.1}")),
                term(f.score.held, history::W_HELD),
                term(f.score.recovery, history::W_RECOVERY)
            );
        }
    }
    Ok(0)
}
