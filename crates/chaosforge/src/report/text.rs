//! The terminal renderer: plain text, no colour codes, aligned columns.

use std::fmt::Write as _;
use std::time::Duration;

use super::{ExpectationReport, Judged, Report, WindowSummary};
use crate::units::{self, format_duration};

// === impl Report ===

impl Report {
    /// Renders the report for a terminal (plain text, no colour codes).
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let p = &self.plan;
        let _ = writeln!(
            o,
            "experiment  {}  (run {}, seed {})",
            p.name, self.run_id.0, p.seed
        );
        let _ = writeln!(o, "hypothesis  {}", p.title);
        for v in &p.policies {
            let _ = writeln!(o, "policy      {v}");
        }
        let verdict = match &self.outcome {
            Some(oc) => oc.headline(),
            None => {
                "UNFINISHED — the runner stopped before the end; run `chaosforge recover`".into()
            }
        };
        let _ = writeln!(o, "outcome     {verdict}");
        for m in &self.monitors {
            let _ = writeln!(o, "\nmonitor {} ({})", m.name, m.describe);
            let mut rows = vec![[
                "".to_string(),
                "baseline".into(),
                "during fault".into(),
                "delta".into(),
                "after recovery".into(),
            ]];
            for e in &m.expectations {
                rows.push([
                    e.expect.clone(),
                    e.baseline.cell(),
                    e.during.cell(),
                    e.delta.clone().unwrap_or_else(|| "-".into()),
                    e.after.cell(),
                ]);
            }
            rows.push([
                "samples (ok/total)".into(),
                m.baseline.counts(),
                m.during.counts(),
                String::new(),
                m.after.counts(),
            ]);
            rows.push([
                "latency p50 / p99".into(),
                m.baseline.latencies(),
                m.during.latencies(),
                String::new(),
                m.after.latencies(),
            ]);
            let widths: Vec<usize> = (0..5)
                .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
                .collect();
            for r in &rows {
                let mut line = String::from(" ");
                for (c, cell) in r.iter().enumerate() {
                    let _ = write!(line, " {cell:<w$} ", w = widths[c]);
                }
                let _ = writeln!(o, "{}", line.trim_end());
            }
            for e in &m.expectations {
                if let Some(line) = e.analysis_line() {
                    let _ = writeln!(o, "  {}: {line}", e.expect);
                }
            }
        }
        if !self.faults.is_empty() {
            let _ = writeln!(o, "\nfaults");
            for f in &self.faults {
                let at = |d: Option<Duration>| {
                    d.map_or("-".to_string(), |d| format!("{:.2}s", d.as_secs_f64()))
                };
                let reverted = match (&f.reverted_by, f.reverted_at) {
                    (Some(by), _) if by == "recover" => "by `chaosforge recover`".to_string(),
                    (Some(_), Some(t)) => format!("at {}", at(Some(t))),
                    _ => "NOT reverted".to_string(),
                };
                let _ = writeln!(
                    o,
                    "  {} on {}: {}; injected at {}, reverted {}{}{}",
                    f.name,
                    f.target,
                    f.describe,
                    at(f.injected_at),
                    reverted,
                    f.note
                        .as_ref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default(),
                    f.error
                        .as_ref()
                        .map(|e| format!("; ERROR: {e}"))
                        .unwrap_or_default(),
                );
            }
        }
        if let Some(line) = self.recovery_text() {
            let _ = writeln!(o, "\ntime to recover  {line}");
        }
        if let Some(h) = &self.halted {
            let _ = writeln!(o, "halted by   {h}");
        }
        for h in &self.http {
            let _ = writeln!(o, "\nHTTP rules on {}", h.target);
            for r in &h.rules {
                let _ = writeln!(
                    o,
                    "  {:<24} matched {:>6}, faulted {:>6}",
                    r.name, r.matched, r.faulted
                );
            }
        }
        if !self.security_findings.is_empty() {
            let _ = writeln!(o, "\nsecurity findings");
            for f in &self.security_findings {
                let _ = writeln!(o, "  - {f}");
            }
        }
        if !self.findings.is_empty() {
            let _ = writeln!(o, "\nwhat to fix");
            for f in &self.findings {
                let _ = writeln!(o, "  - {f}");
            }
        }
        o
    }
}

impl ExpectationReport {
    /// `significant change (p = 2.1e-9, …), Cliff's δ +0.98 large, shift +9.8ms; detected …`.
    pub(super) fn analysis_line(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(t) = &self.threshold {
            parts.push(format!("threshold {t}"));
        }
        if let Some(c) = &self.change {
            parts.push(format!(
                "{} (Mann–Whitney p = {}, {}, n = {}/{}), Cliff's δ {:+.2} {}{}",
                super::change_verdict(c),
                crate::analysis::format_p(c.p_value),
                c.method,
                c.n_baseline,
                c.n_during,
                c.cliffs_delta,
                c.magnitude,
                c.shift_text
                    .as_deref()
                    .map(|s| format!(", shift {s}"))
                    .unwrap_or_default()
            ));
        }
        let t = &self.timing;
        if let Some(d) = t.detected_after {
            let back = match (t.recovered_after, t.too_few_after_revert) {
                (Some(r), _) => format!("back in control {} after the revert", format_duration(r)),
                (None, Some((had, need))) => format!(
                    "too few samples after the revert to time the recovery ({had}, needs {need})"
                ),
                (None, None) => "not back in control after the revert".into(),
            };
            parts.push(format!(
                "detected {} after the injection, {back}",
                format_duration(d)
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

impl WindowSummary {
    pub(super) fn counts(&self) -> String {
        if self.samples == 0 {
            "-".into()
        } else {
            format!("{}/{}", self.ok, self.samples)
        }
    }

    pub(super) fn latencies(&self) -> String {
        match (self.latency_p50, self.latency_p99) {
            (Some(a), Some(b)) => format!(
                "{} / {}",
                units::format_duration_short(a),
                units::format_duration_short(b)
            ),
            _ => "-".into(),
        }
    }
}

impl Judged {
    pub(super) fn cell(&self) -> String {
        match self.held {
            Some(true) => format!("{} ok", self.shown),
            Some(false) => format!("{} FAIL", self.shown),
            None => self.shown.clone(),
        }
    }
}
