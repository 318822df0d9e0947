//! The HTML renderer: one self-contained page (inline CSS and SVG, no script, no network) that
//! reads offline and can be attached to a ticket.
//!
//! Why no template engine (DESIGN's minijinja): the page is built with [`Markup`], whose only
//! way to add markup is a `&'static str` — text from the journal (names, descriptions, error
//! strings) can only go in through [`Markup::text`], which escapes it. The compiler checks that
//! every user string is escaped, where a template's auto-escape is checked when it renders, and
//! the charts (built the same way) need no `|safe` hole through which a string could slip.
//!
//! [`render`] takes several reports (one `run` of several files, a game day) for one page;
//! [`page`] and [`report_section`] are the parts a combined or history page reuses.

use std::fmt::Display;
use std::time::Duration;

use super::chart::{self, Band, BandKind, Mark, MarkKind, Point, Series, TimeChart};
use super::{Judged, MonitorReport, Report};
use crate::units;
use crate::vocab::Phase;

/// HTML under construction: raw markup only from string literals, everything else escaped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Markup(String);

/// The page's style: readable on screen and printed, no external font.
const STYLE: &str = r#"
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       margin: 0; background: #f6f8fa; }
main { max-width: 1040px; margin: 0 auto; padding: 24px; }
section.run { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 20px 24px;
              margin-bottom: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; }
h3 { font-size: 15px; margin: 20px 0 4px; }
.verdict { border-radius: 6px; padding: 14px 18px; margin: 0 0 16px; color: #fff; }
.verdict .word { font-size: 24px; font-weight: 700; letter-spacing: .04em; }
.verdict.confirmed { background: #1a7f37; } .verdict.refuted { background: #cf222e; }
.verdict.halted { background: #bc4c00; } .verdict.error, .verdict.not-steady,
.verdict.unfinished { background: #57606a; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.meta dt { color: #57606a; } dl.meta dd { margin: 0; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.ok { background: #dafbe1; } td.fail { background: #ffebe9; font-weight: 600; }
td.num { white-space: nowrap; }
.describe { color: #57606a; margin: 0 0 6px; }
svg.chart { width: 100%; height: auto; border: 1px solid #d0d7de; border-radius: 6px; }
ul.findings li { margin: 4px 0; } .none { color: #57606a; }
.error-text { color: #cf222e; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; background: #eff1f3;
       padding: 1px 4px; border-radius: 4px; }
footer { color: #57606a; font-size: 12px; margin-top: 8px; }
"#;

// === impl Markup ===

impl Markup {
    /// Empty.
    pub fn new() -> Self {
        Markup(String::new())
    }

    /// Appends markup. Only literals: anything computed goes through [`Markup::text`].
    pub fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    /// Appends text, escaped for element content and quoted attribute values alike.
    pub fn text(&mut self, text: &str) -> &mut Self {
        for c in text.chars() {
            match c {
                '&' => self.0.push_str("&amp;"),
                '<' => self.0.push_str("&lt;"),
                '>' => self.0.push_str("&gt;"),
                '"' => self.0.push_str("&quot;"),
                '\'' => self.0.push_str("&#39;"),
                c => self.0.push(c),
            }
        }
        self
    }

    /// Appends anything printable, escaped.
    pub fn show(&mut self, v: impl Display) -> &mut Self {
        self.text(&v.to_string())
    }

    /// Appends a coordinate with one decimal, so the same data gives the same bytes.
    pub fn num(&mut self, v: f64) -> &mut Self {
        let v = if v.is_finite() { v } else { 0.0 };
        let s = format!("{v:.1}");
        self.0.push_str(if s == "-0.0" { "0.0" } else { &s });
        self
    }

    /// Appends other markup, already safe.
    pub fn append(&mut self, other: &Markup) -> &mut Self {
        self.0.push_str(&other.0);
        self
    }

    /// The HTML.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The HTML so far.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A whole page: one report, or several with a summary table first.
pub fn render(reports: &[Report]) -> String {
    let mut body = Markup::new();
    let title = match reports {
        [one] => format!("{} — {}", one.plan.name, one.verdict()),
        _ => format!("chaosforge — {} runs", reports.len()),
    };
    if reports.len() != 1 {
        body.raw("<section class=\"run\"><h1>")
            .text(&title)
            .raw("</h1>");
        body.raw("<table><tr><th>experiment</th><th>verdict</th><th>run</th></tr>");
        for (i, r) in reports.iter().enumerate() {
            body.raw("<tr><td><a href=\"#run-").show(i).raw("\">");
            body.text(&r.plan.name)
                .raw("</a></td><td>")
                .text(r.verdict());
            body.raw("</td><td><code>")
                .text(&r.run_id.0)
                .raw("</code></td></tr>");
        }
        body.raw("</table></section>");
    }
    for (i, r) in reports.iter().enumerate() {
        body.append(&report_section(r, &format!("run-{i}")));
    }
    page(&title, &body)
}

/// Wraps `body` in a complete document with the report's style.
pub fn page(title: &str, body: &Markup) -> String {
    let mut m = Markup::new();
    m.raw("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    m.raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    m.raw("<title>")
        .text(title)
        .raw("</title><style>")
        .raw(STYLE);
    m.raw("</style></head><body><main>").append(body);
    m.raw("<footer>Generated by chaosforge from the run journal alone; ");
    m.raw("<code>chaosforge report RUN --format html</code> rebuilds the same page.</footer>");
    m.raw("</main></body></html>\n");
    m.into_string()
}

/// One run: verdict, monitors with their charts and expectations, faults, findings, policies,
/// timeline. `id` is the section's anchor.
pub fn report_section(r: &Report, id: &str) -> Markup {
    let p = &r.plan;
    let mut m = Markup::new();
    m.raw("<section class=\"run\" id=\"").text(id).raw("\">");
    let class = r.verdict().to_lowercase().replace(' ', "-");
    m.raw("<div class=\"verdict ")
        .text(&class)
        .raw("\"><div class=\"word\">");
    m.text(r.verdict())
        .raw("</div><div>")
        .text(&r.headline_detail())
        .raw("</div></div>");
    m.raw("<h1>").text(&p.name).raw("</h1>");
    if let Some(d) = &p.description {
        m.raw("<p class=\"describe\">").text(d).raw("</p>");
    }
    m.raw("<dl class=\"meta\">");
    let mut meta = |k: &'static str, v: &str| {
        m.raw("<dt>").raw(k).raw("</dt><dd>").text(v).raw("</dd>");
    };
    meta("hypothesis", &p.title);
    meta("run", &r.run_id.0);
    meta("started", &r.started_at.to_string());
    meta("duration", &super::format_secs(r.duration));
    meta("seed", &p.seed.to_string());
    meta("file", &p.file);
    meta(
        "phases",
        &format!(
            "baseline {}, inject {}, recover within {}",
            units::format_duration(p.phases.baseline),
            units::format_duration(p.phases.inject),
            units::format_duration(p.phases.recover_within)
        ),
    );
    if let Some(t) = r.recovery_text() {
        meta("time to recover", &t);
    }
    if let Some(h) = &r.halted {
        meta("halted by", h);
    }
    m.raw("</dl>");

    m.raw("<h2>Monitors</h2>");
    if r.monitors.is_empty() {
        m.raw("<p class=\"none\">No monitors.</p>");
    }
    for mon in &r.monitors {
        monitor(&mut m, r, mon);
    }

    m.raw("<h2>Faults</h2>");
    if r.faults.is_empty() {
        m.raw("<p class=\"none\">No fault was injected.</p>");
    } else {
        m.raw("<table><tr><th>fault</th><th>kind</th><th>target</th><th>what</th>");
        m.raw("<th>injected at</th><th>reverted</th><th>note</th></tr>");
        for f in &r.faults {
            m.raw("<tr><td>")
                .text(&f.name)
                .raw("</td><td>")
                .text(&f.kind);
            m.raw("</td><td>")
                .text(&f.target)
                .raw("</td><td>")
                .text(&f.describe);
            m.raw("</td><td class=\"num\">")
                .text(&secs(f.injected_at))
                .raw("</td><td>");
            match (&f.reverted_by, f.reverted_at) {
                (Some(by), _) if by == "recover" => m.raw("by <code>chaosforge recover</code>"),
                (Some(by), Some(t)) => m.text(&format!("at {} (by {by})", secs(Some(t)))),
                _ => m.raw("<strong class=\"error-text\">NOT reverted</strong>"),
            };
            m.raw("</td><td>");
            if let Some(n) = &f.note {
                m.text(n);
            }
            if let Some(e) = &f.error {
                m.raw("<span class=\"error-text\">").text(e).raw("</span>");
            }
            m.raw("</td></tr>");
        }
        m.raw("</table>");
    }
    for h in &r.http {
        m.raw("<h3>HTTP rules on ").text(&h.target).raw("</h3>");
        m.raw("<table><tr><th>rule</th><th>matched</th><th>faulted</th></tr>");
        for rule in &h.rules {
            m.raw("<tr><td>")
                .text(&rule.name)
                .raw("</td><td class=\"num\">");
            m.show(rule.matched)
                .raw("</td><td class=\"num\">")
                .show(rule.faulted);
            m.raw("</td></tr>");
        }
        m.raw("</table>");
    }

    list(
        &mut m,
        "What to fix",
        &r.findings,
        "Nothing to fix: no expectation failed.",
    );
    list(
        &mut m,
        "Security findings",
        &r.security_findings,
        "No security finding.",
    );
    list(
        &mut m,
        "Policy verdicts",
        &p.policies,
        "No policy applied to this run.",
    );

    m.raw("<h2>Timeline</h2><table><tr><th>at</th><th>event</th><th>what</th></tr>");
    for t in &r.timeline {
        m.raw("<tr><td class=\"num\">")
            .text(&secs(t.at))
            .raw("</td><td><code>");
        m.text(t.event)
            .raw("</code></td><td>")
            .text(&t.text)
            .raw("</td></tr>");
    }
    m.raw("</table></section>");
    m
}

/// A monitor: its chart, then its expectations in each window.
fn monitor(m: &mut Markup, r: &Report, mon: &MonitorReport) {
    m.raw("<h3>")
        .text(&mon.name)
        .raw("</h3><p class=\"describe\">");
    m.text(&mon.describe).raw("</p>");
    m.append(&monitor_chart(r, mon).render());
    m.raw("<table><tr><th>expectation</th><th>baseline</th><th>during fault</th>");
    m.raw("<th>delta</th><th>after recovery</th><th>significance</th></tr>");
    for e in &mon.expectations {
        m.raw("<tr><td><code>").text(&e.expect).raw("</code>");
        if let Some(t) = &e.threshold {
            m.raw("<br>threshold ").text(t);
        }
        m.raw("</td>");
        judged(m, &e.baseline);
        judged(m, &e.during);
        m.raw("<td class=\"num\">")
            .text(e.delta.as_deref().unwrap_or("-"));
        m.raw("</td>");
        judged(m, &e.after);
        m.raw("<td>");
        match e.significance_text() {
            Some(s) => m.text(&s),
            None => m.raw("<span class=\"none\">too few samples to test</span>"),
        };
        if let Some(t) = e.timing_text() {
            m.raw("<br>").text(&t);
        }
        m.raw("</td></tr>");
    }
    m.raw("<tr><td>samples (ok/total)</td><td class=\"num\">")
        .text(&mon.baseline.counts());
    m.raw("</td><td class=\"num\">")
        .text(&mon.during.counts())
        .raw("</td><td></td>");
    m.raw("<td class=\"num\">")
        .text(&mon.after.counts())
        .raw("</td><td></td></tr>");
    m.raw("<tr><td>latency p50 / p99</td><td class=\"num\">");
    m.text(&mon.baseline.latencies())
        .raw("</td><td class=\"num\">");
    m.text(&mon.during.latencies())
        .raw("</td><td></td><td class=\"num\">");
    m.text(&mon.after.latencies())
        .raw("</td><td></td></tr></table>");
}

/// Every sample of a monitor over the run, the phases shaded, each fault's instants marked.
pub fn monitor_chart(r: &Report, mon: &MonitorReport) -> TimeChart {
    let s = |d: Duration| d.as_secs_f64();
    let bands = r
        .phases
        .iter()
        .filter_map(|span| {
            let (kind, label) = match span.phase {
                Phase::Validate => return None,
                Phase::Baseline => (BandKind::Baseline, "baseline"),
                Phase::Inject | Phase::Observe => (BandKind::Fault, "fault"),
                Phase::Recover => (BandKind::Recovery, "recovery"),
            };
            Some(Band {
                from: s(span.start),
                to: s(span.end),
                kind,
                // Inject is a short phase just before observe: label the fault window once.
                label: if span.phase == Phase::Inject {
                    String::new()
                } else {
                    label.into()
                },
            })
        })
        .collect();
    let mut marks = Vec::new();
    for f in &r.faults {
        if let Some(t) = f.injected_at {
            marks.push(Mark {
                at: s(t),
                kind: MarkKind::Inject,
                label: format!("{} injected on {} at {}", f.name, f.target, secs(Some(t))),
            });
        }
        if let (Some(t), Some(_)) = (f.reverted_at, &f.reverted_by) {
            marks.push(Mark {
                at: s(t),
                kind: MarkKind::Revert,
                label: format!("{} reverted on {} at {}", f.name, f.target, secs(Some(t))),
            });
        }
    }
    TimeChart {
        title: format!("{}: latency of every sample", mon.name),
        x_label: "seconds since the start of the run".into(),
        y_label: "latency (ms)".into(),
        x_format: |x| format!("{}s", chart::short_number(x)),
        y_format: chart::short_number,
        bands,
        marks,
        series: vec![Series {
            name: mon.name.clone(),
            points: mon
                .series
                .iter()
                .map(|p| Point {
                    x: s(p.t),
                    y: p.latency.as_secs_f64() * 1000.0,
                    ok: p.ok,
                })
                .collect(),
        }],
    }
}

fn judged(m: &mut Markup, j: &Judged) {
    match j.held {
        Some(true) => m.raw("<td class=\"num ok\">").text(&j.shown).raw(" ✓"),
        Some(false) => m.raw("<td class=\"num fail\">").text(&j.shown).raw(" ✗"),
        None => m.raw("<td class=\"num\">").text(&j.shown),
    };
    m.raw("</td>");
}

fn list(m: &mut Markup, title: &'static str, items: &[String], none: &'static str) {
    m.raw("<h2>").raw(title).raw("</h2>");
    if items.is_empty() {
        m.raw("<p class=\"none\">").raw(none).raw("</p>");
        return;
    }
    m.raw("<ul class=\"findings\">");
    for i in items {
        m.raw("<li>").text(i).raw("</li>");
    }
    m.raw("</ul>");
}

/// `12.34s`, or `-` when unknown.
fn secs(d: Option<Duration>) -> String {
    d.map_or("-".to_string(), |d| format!("{:.2}s", d.as_secs_f64()))
}

// === impl Report ===

impl Report {
    /// Renders this report as a self-contained HTML page.
    pub fn render_html(&self) -> String {
        render(std::slice::from_ref(self))
    }
}
