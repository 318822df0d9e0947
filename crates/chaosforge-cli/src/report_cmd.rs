//! `chaosforge report RUN|GAMEDAY --format FORMAT [-o FILE]` and the `run --report FORMAT:PATH`
//! files: reports rebuilt from journals, in every format the library renders.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chaosforge::gameday::log as gdlog;
use chaosforge::gameday::report::GameDayReport;
use chaosforge::journal;
use chaosforge::report::{self, Report};

/// A report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReportFormat {
    /// Plain text, as `run` prints it
    Text,
    /// The report model as JSON (an array of them for several runs)
    Json,
    /// Markdown for pull requests and wikis
    #[value(alias = "markdown")]
    Md,
    /// One self-contained HTML page with charts
    Html,
    /// JUnit XML: a test suite per experiment, a test case per expectation
    #[value(alias = "xml")]
    Junit,
}

/// `--report FORMAT:PATH`: a report `run` writes when its runs are over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReportTarget {
    pub format: ReportFormat,
    pub path: PathBuf,
}

/// Parses `FORMAT:PATH` for clap, so a bad value fails before anything runs (exit 2).
pub(crate) fn parse_target(s: &str) -> Result<ReportTarget, String> {
    let Some((format, path)) = s.split_once(':') else {
        return Err(format!(
            "`{s}` is not FORMAT:PATH (e.g. html:report.html); formats: {}",
            FORMATS
        ));
    };
    let format = <ReportFormat as clap::ValueEnum>::from_str(format, true)
        .map_err(|_| format!("unknown report format `{format}` in `{s}`; formats: {FORMATS}"))?;
    if path.is_empty() {
        return Err(format!("`{s}` has no path after the `:`"));
    }
    Ok(ReportTarget {
        format,
        path: PathBuf::from(path),
    })
}

const FORMATS: &str = "text, json, md, html, junit";

/// One document of `reports` in `format`. JSON keeps `--report-json`'s shape: one object for
/// one run, an array in order for several.
pub(crate) fn render(format: ReportFormat, reports: &[Report]) -> anyhow::Result<String> {
    render_as(format, reports, reports.len() > 1)
}

/// [`render`], with `many` choosing JSON's array (a `run` of several files writes an array even
/// when only one of them produced a report).
pub(crate) fn render_as(
    format: ReportFormat,
    reports: &[Report],
    many: bool,
) -> anyhow::Result<String> {
    Ok(match format {
        ReportFormat::Text => match reports {
            [one] => one.render_text(),
            _ => reports
                .iter()
                .map(|r| format!("=== {} ===\n{}", r.plan.file, r.render_text()))
                .collect::<Vec<_>>()
                .join("\n"),
        },
        ReportFormat::Json => match reports {
            [one] if !many => one.render_json(),
            _ => format!(
                "[{}]",
                reports
                    .iter()
                    .map(Report::render_json)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        },
        ReportFormat::Md => report::markdown::render(reports),
        ReportFormat::Html => report::html::render(reports),
        ReportFormat::Junit => report::junit::render(reports)?,
    })
}

/// Writes every `--report` file of a `run` of one file or `many`.
pub(crate) fn write_targets(
    targets: &[ReportTarget],
    reports: &[Report],
    many: bool,
) -> anyhow::Result<()> {
    for t in targets {
        let text = render_as(t.format, reports, many)?;
        write(&t.path, &text)?;
    }
    Ok(())
}

/// `chaosforge report`: the report of each run, as one document, on stdout or in `output`. A
/// game day id (or a prefix of one no run id shares) stands for its scenarios' runs; given
/// alone, its text and JSON are the game day's combined report, as `gameday` prints and
/// writes it with `--report-json`.
pub(crate) fn report(
    runs: &[String],
    state_dir: Option<PathBuf>,
    format: ReportFormat,
    output: Option<&Path>,
) -> anyhow::Result<u8> {
    let mut reports = Vec::new();
    let mut gamedays = Vec::new();
    for run in runs {
        let state = state_dir
            .clone()
            .context("neither --state-dir, CHAOSFORGE_STATE_DIR, XDG_STATE_HOME nor HOME is set");
        if let Some(dir) = state.as_ref().ok().and_then(|s| gameday_dir(s, run)) {
            let state = state?;
            let gd = GameDayReport::load(&state, &dir)
                .with_context(|| format!("the game day in {}", dir.display()))?;
            reports.extend(gd.scenarios.iter().filter_map(|s| s.report.clone()));
            gamedays.push(gd);
            continue;
        }
        let path = crate::runs_cmd::journal_path(run, state)?;
        let events = journal::read(&path)?;
        reports.push(Report::from_events(&events).with_context(|| format!("{}", path.display()))?);
    }
    let mut text = match (gamedays.as_slice(), runs.len(), format) {
        ([gd], 1, ReportFormat::Text) => gd.render_text(),
        ([gd], 1, ReportFormat::Json) => gd.render_json(),
        // As `gameday --report` writes them: its runs' reports as one document.
        ([_], 1, _) => render_as(format, &reports, true)?,
        _ => render(format, &reports)?,
    };
    // JSON has always ended with a newline on stdout; the other formats end with their own.
    if format == ReportFormat::Json {
        text.push('\n');
    }
    match output {
        Some(p) => write(p, &text)?,
        None => print!("{text}"),
    }
    Ok(0)
}

/// The directory of the game day `id` names: its full id, or a prefix of exactly one game day
/// id that no run id starts with (both are UUIDv7s, so a short prefix can name either).
fn gameday_dir(state_dir: &Path, id: &str) -> Option<PathBuf> {
    if id.is_empty() || Path::new(id).is_file() {
        return None;
    }
    let dirs = gdlog::all(state_dir).ok()?;
    let name = |d: &PathBuf| d.file_name().map(|n| n.to_string_lossy().into_owned());
    if let Some(d) = dirs.iter().find(|d| name(d).as_deref() == Some(id)) {
        return Some(d.clone());
    }
    let found: Vec<&PathBuf> = dirs
        .iter()
        .filter(|d| name(d).is_some_and(|n| n.starts_with(id)))
        .collect();
    let runs = journal::runs(state_dir).unwrap_or_default();
    match found.as_slice() {
        [one] if !runs.iter().any(|r| r.id.0.starts_with(id)) => Some((*one).clone()),
        _ => None,
    }
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing the report {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_targets_parse_and_bad_ones_say_why() {
        assert_eq!(
            parse_target("html:out/r.html"),
            Ok(ReportTarget {
                format: ReportFormat::Html,
                path: "out/r.html".into()
            })
        );
        assert_eq!(
            parse_target("markdown:a:b.md").map(|t| (t.format, t.path)),
            Ok((ReportFormat::Md, "a:b.md".into()))
        );
        let e = parse_target("pdf:x.pdf").unwrap_err();
        assert!(e.contains("unknown report format `pdf`"), "{e}");
        assert!(parse_target("html").unwrap_err().contains("FORMAT:PATH"));
        assert!(parse_target("junit:").unwrap_err().contains("no path"));
    }
}
