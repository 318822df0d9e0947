//! `chaosforge history`: the runs recorded in `<state-dir>/history.sqlite3`, MTTR, MTTD, MTBF,
//! the trend of each expectation under the fault and the resilience score per experiment and
//! per service; `--rebuild` re-imports every journal. And
//! [`record`], which `run` calls for each finished run: a history error only warns.

use std::collections::BTreeMap;
use std::path::Path;

use chaosforge::history::trend::{self, Verdict};
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
    format: crate::Format,
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
    match format {
        crate::Format::Json => {
            println!("{}", serde_json::to_string_pretty(&summary)?);
            return Ok(0);
        }
        crate::Format::Html => {
            print!("{}", html(&summary));
            return Ok(0);
        }
        crate::Format::Text => {}
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
            print_figures(kind, name, f);
        }
    }
    Ok(0)
}

/// Prints one experiment's or service's figures, the score term by term.
pub(crate) fn print_figures(kind: &str, name: &str, f: &history::Figures) {
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
        "  MTTD  {} over {} runs with a detected change",
        f.mttd_ms.map_or("-".into(), |m| format!("{m:.0}ms")),
        f.detected
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
    // A missing term's weight goes to the others in proportion, so the printed products add
    // up to the total only when every term is there; say the divisor otherwise.
    let present: f64 = [
        (f.score.held, history::W_HELD),
        (f.score.recovery, history::W_RECOVERY),
        (f.score.trend, history::W_TREND),
    ]
    .iter()
    .filter(|(v, _)| v.is_some())
    .map(|(_, w)| w)
    .sum();
    let rescaled = if present > 0.0 && present < 1.0 {
        format!(" (÷ {present:.2}, the weight of the terms present)")
    } else {
        String::new()
    };
    println!(
        "  score {} = held {} + recovery {} + trend {}{rescaled}",
        f.score.total.map_or("-".into(), |t| format!("{t:.1}")),
        term(f.score.held, history::W_HELD),
        term(f.score.recovery, history::W_RECOVERY),
        term(f.score.trend, history::W_TREND)
    );
    for t in &f.trends {
        println!("  trend {} {}: {}", t.monitor, t.expect, trend_text(t));
    }
}

/// One trend in words: the verdict, then S, z, p and the slope behind it.
fn trend_text(t: &history::ExpectationTrend) -> String {
    let verdict = match t.verdict {
        Verdict::Worsening => "worsening",
        Verdict::Improving => "improving",
        Verdict::NoTrend => "no trend",
    };
    let n = t.values.len();
    match (&t.mann_kendall, t.slope_per_run) {
        (Some(mk), Some(slope)) => {
            let few = if n < trend::MIN_RUNS {
                format!(", fewer than {} runs", trend::MIN_RUNS)
            } else {
                String::new()
            };
            format!(
                "{verdict} over {n} runs (Mann–Kendall S = {}, z = {:.2}, p = {:.3}; \
                 Theil–Sen slope {slope:+.4} per run{few})",
                mk.s, mk.z, mk.p_value
            )
        }
        _ => format!("{verdict} ({n} runs with a value under the fault)"),
    }
}

/// The history as one self-contained page: per experiment and per service the figures, the
/// score term by term, and a chart of each run's time to recover over time (a refuted run is a
/// red cross; a run that did not recover is drawn at its `recover_within`).
fn html(summary: &Summary) -> String {
    use chaosforge::report::chart::{Point, Series, TimeChart};
    use chaosforge::report::html::{Markup, page};

    // Minutes since the first run shown: Unix times would crowd every run at the right edge of
    // an axis that starts at 0.
    fn since(min: f64) -> String {
        match min {
            _ if min < 2.0 => format!("+{:.0}s", min * 60.0),
            _ if min < 120.0 => format!("+{min:.0}m"),
            _ if min < 2880.0 => format!("+{:.1}h", min / 60.0),
            _ => format!("+{:.1}d", min / 1440.0),
        }
    }
    let first = summary.runs.iter().map(|r| r.started_ms).min().unwrap_or(0);
    let first_text = jiff::Timestamp::from_millisecond(first)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    fn ms(v: f64) -> String {
        format!("{v:.0}ms")
    }
    let cell = |m: &mut Markup, v: String| {
        m.raw("<td class=\"num\">").text(&v).raw("</td>");
    };
    let mut body = Markup::new();
    body.raw("<section class=\"run\"><h1>Run history</h1><p class=\"describe\">")
        .show(summary.runs.len())
        .raw(" runs. Score = 100 × (0.45 · held + 0.30 · recovery + 0.25 · trend); see docs/resilience-score.md.</p></section>");
    for (kind, map) in [
        ("experiment", &summary.experiments),
        ("service", &summary.services),
    ] {
        for (name, f) in map {
            body.raw("<section class=\"run\"><h2>")
                .text(kind)
                .raw(" ")
                .text(name)
                .raw("</h2>");
            body.raw("<table><tr><th>runs</th><th>confirmed</th><th>refuted</th><th>halted</th>");
            body.raw(
                "<th>MTTR</th><th>MTTD</th><th>MTBF</th><th>held</th><th>recovery</th><th>trend</th><th>score</th></tr><tr>",
            );
            for v in [f.runs, f.confirmed, f.refuted, f.halted] {
                cell(&mut body, v.to_string());
            }
            cell(&mut body, f.mttr_ms.map_or("-".into(), ms));
            cell(&mut body, f.mttd_ms.map_or("-".into(), ms));
            cell(
                &mut body,
                f.mtbf_ms
                    .map_or("-".into(), |m| format!("{:.1}s", m / 1000.0)),
            );
            cell(
                &mut body,
                f.score.held.map_or("n/a".into(), |v| format!("{v:.3}")),
            );
            cell(
                &mut body,
                f.score.recovery.map_or("n/a".into(), |v| format!("{v:.3}")),
            );
            cell(
                &mut body,
                f.score.trend.map_or("n/a".into(), |v| format!("{v:.3}")),
            );
            cell(
                &mut body,
                f.score.total.map_or("-".into(), |v| format!("{v:.1}")),
            );
            body.raw("</tr></table>");
            if !f.trends.is_empty() {
                body.raw("<table class=\"trends\"><tr><th>monitor</th><th>expectation</th><th>trend under the fault</th></tr>");
                for t in &f.trends {
                    let class = match t.verdict {
                        Verdict::Worsening => "worsening",
                        Verdict::Improving => "improving",
                        Verdict::NoTrend => "no-trend",
                    };
                    body.raw("<tr class=\"")
                        .text(class)
                        .raw("\"><td>")
                        .text(&t.monitor)
                        .raw("</td><td>")
                        .text(&t.expect)
                        .raw("</td><td>")
                        .text(&trend_text(t))
                        .raw("</td></tr>");
                }
                body.raw("</table>");
            }
            let points: Vec<Point> = summary
                .runs
                .iter()
                .filter(|r| r.reverted)
                .filter(|r| match kind {
                    "experiment" => &r.experiment == name,
                    _ => r.services.contains(name),
                })
                .map(|r| Point {
                    x: (r.started_ms - first) as f64 / 60_000.0,
                    y: r.ttr_ms.unwrap_or(r.recover_within_ms) as f64,
                    ok: r.outcome == "confirmed",
                })
                .collect();
            if !points.is_empty() {
                let chart = TimeChart {
                    title: "time to recover per run".into(),
                    x_label: format!("run start, after the first run ({first_text})"),
                    y_label: "time to recover".into(),
                    x_format: since,
                    y_format: ms,
                    bands: Vec::new(),
                    marks: Vec::new(),
                    series: vec![Series {
                        name: name.clone(),
                        points,
                    }],
                };
                body.append(&chart.render());
            }
            body.raw("</section>");
        }
    }
    page("chaosforge — run history", &body)
}
