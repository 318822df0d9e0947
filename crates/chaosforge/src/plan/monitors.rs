//! `hypothesis.monitors`: what each sample does (an HTTP request, a TCP connect), how often,
//! and the expectations over a phase's samples.

use std::time::Duration;

use super::Cx;
use crate::hypothesis::Expectation;
use crate::probe::http::{HttpProbeConfig, StatusSet};
use crate::spec;

/// A monitor, validated.
#[derive(Debug, Clone)]
pub struct MonitorPlan {
    /// Unique name.
    pub name: String,
    /// What one sample does.
    pub probe: ProbePlan,
    /// Time between sample starts.
    pub interval: Duration,
    /// Expectations over a phase's samples.
    pub expect: Vec<Expectation>,
}

/// What one sample of a monitor does.
#[derive(Debug, Clone)]
pub enum ProbePlan {
    /// An HTTP request.
    Http(HttpProbeConfig),
    /// A TCP connect.
    Tcp {
        /// `host:port`.
        address: String,
        /// Connect timeout.
        timeout: Duration,
    },
}

impl ProbePlan {
    /// How long one sample may take.
    pub fn timeout(&self) -> Duration {
        match self {
            ProbePlan::Http(h) => h.timeout,
            ProbePlan::Tcp { timeout, .. } => *timeout,
        }
    }
}

// === impl Cx ===

impl Cx<'_> {
    pub(super) fn monitors(&mut self, specs: &[spec::MonitorSpec]) -> Vec<MonitorPlan> {
        if specs.is_empty() {
            self.err(
                "hypothesis.monitors",
                "the hypothesis needs at least one monitor",
            );
        }
        self.unique(
            "monitor",
            "hypothesis.monitors",
            specs.iter().map(|m| m.name.as_str()),
        );
        let mut out = Vec::new();
        for (i, m) in specs.iter().enumerate() {
            let base = format!("hypothesis.monitors[{i}]");
            let expect: Vec<Expectation> = m
                .expect
                .iter()
                .enumerate()
                .filter_map(|(j, t)| self.expectation(&format!("{base}.expect[{j}]"), t))
                .collect();
            let (probe, interval) = match (&m.http, &m.tcp) {
                (Some(h), None) => self.http_probe(&format!("{base}.http"), h),
                (None, Some(t)) => {
                    let p = format!("{base}.tcp");
                    let interval = self.interval(&format!("{p}.interval"), t.interval.as_deref());
                    let timeout = self.positive_duration(
                        &format!("{p}.timeout"),
                        t.timeout.as_deref(),
                        Duration::from_secs(1),
                    );
                    self.address(&format!("{p}.address"), &t.address);
                    (
                        ProbePlan::Tcp {
                            address: t.address.clone(),
                            timeout,
                        },
                        interval,
                    )
                }
                (None, None) => {
                    self.err(
                        &base,
                        format!("monitor `{}` needs a probe: `http` or `tcp`", m.name),
                    );
                    continue;
                }
                (Some(_), Some(_)) => {
                    self.err(
                        &format!("{base}.tcp"),
                        "a monitor has one probe; this one has both `http` and `tcp`",
                    );
                    continue;
                }
            };
            out.push(MonitorPlan {
                name: m.name.clone(),
                probe,
                interval,
                expect,
            });
        }
        out
    }

    /// An `http` probe and its interval.
    fn http_probe(&mut self, p: &str, h: &spec::HttpProbeSpec) -> (ProbePlan, Duration) {
        let interval = self.interval(&format!("{p}.interval"), h.interval.as_deref());
        let timeout = self.positive_duration(
            &format!("{p}.timeout"),
            h.timeout.as_deref(),
            Duration::from_secs(1),
        );
        match reqwest::Url::parse(&h.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(u) => self.err(
                &format!("{p}.url"),
                format!(
                    "scheme `{}` is not supported; use http or https",
                    u.scheme()
                ),
            ),
            Err(e) => self.err(&format!("{p}.url"), format!("invalid URL `{}`: {e}", h.url)),
        }
        let method = h.method.clone().unwrap_or_else(|| "GET".into());
        if reqwest::Method::from_bytes(method.as_bytes()).is_err() || method.is_empty() {
            self.err(
                &format!("{p}.method"),
                format!("`{method}` is not an HTTP method"),
            );
        }
        for k in h.headers.keys() {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                self.err(
                    &format!("{p}.headers.{k}"),
                    format!("`{k}` is not a valid header name"),
                );
            }
        }
        let success = match &h.success {
            None => StatusSet::default(),
            Some(t) => StatusSet::parse(t).unwrap_or_else(|e| {
                self.unit_err(&format!("{p}.success"), e);
                StatusSet::default()
            }),
        };
        let cfg = HttpProbeConfig {
            method: method.to_ascii_uppercase(),
            url: h.url.clone(),
            headers: h.headers.clone(),
            body: h.body.clone(),
            timeout,
            success,
        };
        (ProbePlan::Http(cfg), interval)
    }
}
