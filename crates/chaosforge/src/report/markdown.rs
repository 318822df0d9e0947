//! The Markdown renderer, for pull requests and wikis (GitHub-flavoured tables): the verdict
//! first, then a table of expectations per monitor, faults, findings, policies and the timeline.
//!
//! Built in Rust rather than with a template (DESIGN's minijinja): Markdown has no escaping a
//! template engine knows, so every value goes through [`cell`] or [`inline`] either way, and a
//! template would add a dependency without removing that code.
//!
//! [`render`] takes several reports for one document; [`report_section`] is the part a combined
//! report reuses, under a heading level of its choice.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Judged, Report};
use crate::units;

/// A document: one report, or several after a summary table.
pub fn render(reports: &[Report]) -> String {
    let mut o = String::new();
    if let [one] = reports {
        return report_section(one, 1);
    }
    let _ = writeln!(o, "# chaosforge: {} runs\n", reports.len());
    let _ = writeln!(o, "| experiment | verdict | run |\n|---|---|---|");
    for r in reports {
        let _ = writeln!(
            o,
            "| {} | {} {} | `{}` |",
            cell(&r.plan.name),
            icon(r),
            r.verdict(),
            code(&r.run_id.0)
        );
    }
    for r in reports {
        o.push('\n');
        o.push_str(&report_section(r, 2));
    }
    o
}

/// One run, its title at heading `level` (1 = `#`), its parts one level below.
pub fn report_section(r: &Report, level: usize) -> String {
    let h = "#".repeat(level.clamp(1, 5));
    let p = &r.plan;
    let mut o = String::new();
    let _ = writeln!(o, "{h} {} {}: {}\n", icon(r), r.verdict(), inline(&p.name));
    let _ = writeln!(o, "**{}**\n", inline(&r.headline_detail()));
    if let Some(d) = &p.description {
        let _ = writeln!(o, "{}\n", inline(d));
    }
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(o, "| hypothesis | {} |", cell(&p.title));
    let _ = writeln!(o, "| run | `{}` |", code(&r.run_id.0));
    let _ = writeln!(o, "| started | {} |", r.started_at);
    let _ = writeln!(o, "| duration | {} |", super::format_secs(r.duration));
    let _ = writeln!(o, "| seed | {} |", p.seed);
    let _ = writeln!(o, "| file | `{}` |", code(&p.file));
    let _ = writeln!(
        o,
        "| phases | baseline {}, inject {}, recover within {} |",
        units::format_duration(p.phases.baseline),
        units::format_duration(p.phases.inject),
        units::format_duration(p.phases.recover_within)
    );
    if let Some(t) = r.recovery_text() {
        let _ = writeln!(o, "| time to recover | {} |", cell(&t));
    }
    if let Some(hl) = &r.halted {
        let _ = writeln!(o, "| halted by | {} |", cell(hl));
    }

    let _ = writeln!(o, "\n{h}# Expectations\n");
    if r.monitors.is_empty() {
        let _ = writeln!(o, "No monitors.");
    }
    for m in &r.monitors {
        let _ = writeln!(o, "**{}** — {}\n", inline(&m.name), inline(&m.describe));
        let _ = writeln!(
            o,
            "| expectation | baseline | during fault | delta | after recovery | significance |\n|---|---|---|---|---|---|"
        );
        for e in &m.expectations {
            let mut sig = e
                .significance_text()
                .unwrap_or_else(|| "too few samples to test".into());
            if let Some(t) = e.timing_text() {
                sig.push_str("; ");
                sig.push_str(&t);
            }
            let _ = writeln!(
                o,
                "| `{}`{} | {} | {} | {} | {} | {} |",
                code(&e.expect),
                e.threshold
                    .as_ref()
                    .map(|t| format!(" (threshold {})", cell(t)))
                    .unwrap_or_default(),
                judged(&e.baseline),
                judged(&e.during),
                cell(e.delta.as_deref().unwrap_or("-")),
                judged(&e.after),
                cell(&sig)
            );
        }
        let _ = writeln!(
            o,
            "| samples (ok/total) | {} | {} | | {} | |",
            m.baseline.counts(),
            m.during.counts(),
            m.after.counts()
        );
        let _ = writeln!(
            o,
            "| latency p50 / p99 | {} | {} | | {} | |\n",
            m.baseline.latencies(),
            m.during.latencies(),
            m.after.latencies()
        );
    }

    let _ = writeln!(o, "{h}# Faults\n");
    if r.faults.is_empty() {
        let _ = writeln!(o, "No fault was injected.\n");
    } else {
        let _ = writeln!(
            o,
            "| fault | kind | target | what | injected at | reverted | note |\n|---|---|---|---|---|---|---|"
        );
        for f in &r.faults {
            let reverted = match (&f.reverted_by, f.reverted_at) {
                (Some(by), _) if by == "recover" => "by `chaosforge recover`".to_string(),
                (Some(by), Some(t)) => format!("at {} (by {})", secs(Some(t)), cell(by)),
                _ => "**NOT reverted**".to_string(),
            };
            let note = [f.note.as_deref(), f.error.as_deref()]
                .into_iter()
                .flatten()
                .map(cell)
                .collect::<Vec<_>>()
                .join("; ");
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {reverted} | {note} |",
                cell(&f.name),
                cell(&f.kind),
                cell(&f.target),
                cell(&f.describe),
                secs(f.injected_at)
            );
        }
        o.push('\n');
    }
    for hp in &r.http {
        let _ = writeln!(
            o,
            "HTTP rules on **{}**:\n\n| rule | matched | faulted |\n|---|---|---|",
            inline(&hp.target)
        );
        for rule in &hp.rules {
            let _ = writeln!(
                o,
                "| {} | {} | {} |",
                cell(&rule.name),
                rule.matched,
                rule.faulted
            );
        }
        o.push('\n');
    }

    list(
        &mut o,
        &h,
        "What to fix",
        &r.findings,
        "Nothing to fix: no expectation failed.",
    );
    list(
        &mut o,
        &h,
        "Security findings",
        &r.security_findings,
        "No security finding.",
    );
    list(
        &mut o,
        &h,
        "Policy verdicts",
        &p.policies,
        "No policy applied to this run.",
    );

    let _ = writeln!(
        o,
        "<details><summary>Timeline ({} events)</summary>\n",
        r.timeline.len()
    );
    let _ = writeln!(o, "| at | event | what |\n|---|---|---|");
    for t in &r.timeline {
        let _ = writeln!(o, "| {} | `{}` | {} |", secs(t.at), t.event, cell(&t.text));
    }
    let _ = writeln!(o, "\n</details>");
    o
}

fn list(o: &mut String, h: &str, title: &str, items: &[String], none: &str) {
    let _ = writeln!(o, "{h}# {title}\n");
    if items.is_empty() {
        let _ = writeln!(o, "{none}\n");
        return;
    }
    for i in items {
        let _ = writeln!(o, "- {}", inline(i));
    }
    o.push('\n');
}

fn icon(r: &Report) -> &'static str {
    match r.verdict() {
        "CONFIRMED" => "✅",
        "REFUTED" => "❌",
        "HALTED" => "⛔",
        _ => "⚠️",
    }
}

fn judged(j: &Judged) -> String {
    match j.held {
        Some(true) => format!("{} ✓", cell(&j.shown)),
        Some(false) => format!("**{} ✗**", cell(&j.shown)),
        None => cell(&j.shown),
    }
}

/// Text in a table cell: no line breaks, `|` escaped, and as [`inline`].
pub fn cell(text: &str) -> String {
    inline(&text.replace(['\n', '\r'], " "))
}

/// Text that must render as itself: Markdown's and HTML's special characters escaped, so a
/// name like `<script>` or `*x*` shows as written. Backticks in the text keep it outside code.
pub fn inline(text: &str) -> String {
    let mut o = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' => {
                o.push('\\');
                o.push(c);
            }
            c => o.push(c),
        }
    }
    o
}

/// Text inside a code span in a table: backticks would end the span and `|` the cell.
fn code(text: &str) -> String {
    text.replace('`', "'")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".to_string(), |d| format!("{:.2}s", d.as_secs_f64()))
}

// === impl Report ===

impl Report {
    /// Renders this report as Markdown.
    pub fn render_markdown(&self) -> String {
        render(std::slice::from_ref(self))
    }
}
