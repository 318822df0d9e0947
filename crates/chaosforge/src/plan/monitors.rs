//! `hypothesis.monitors`: what each sample does (an HTTP request, a TCP connect, a command, a
//! process reading, a PromQL query), how often, and the expectations over a phase's samples.

use std::path::PathBuf;
use std::time::Duration;

use super::Cx;
use super::targets::{Target, TargetKind};
use crate::hypothesis::{Expectation, Metric};
use crate::probe::command::{CommandProbeConfig, ValueExtract};
use crate::probe::http::{HttpProbeConfig, StatusSet};
use crate::probe::process::ResourceSource;
use crate::probe::prometheus::{Aggregate, PrometheusProbeConfig};
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
    /// A TCP connect, and optionally an exchange of bytes.
    Tcp {
        /// `host:port`.
        address: String,
        /// How long the connect (and the exchange) may take.
        timeout: Duration,
        /// Bytes sent once connected.
        send: Option<String>,
        /// Bytes the answer must contain; with `send` alone, any answer.
        expect: Option<String>,
    },
    /// A program run.
    Command(CommandProbeConfig),
    /// A process's or a cgroup's resource readings.
    Process(ResourceSource),
    /// A PromQL instant query.
    Prometheus(PrometheusProbeConfig),
}

/// How long reading `/proc` or cgroupfs may take at most, the first CPU window included.
const PROCESS_READ_TIMEOUT: Duration = Duration::from_secs(1);

impl ProbePlan {
    /// How long one sample may take.
    pub fn timeout(&self) -> Duration {
        match self {
            ProbePlan::Http(h) => h.timeout,
            ProbePlan::Tcp { timeout, .. } => *timeout,
            ProbePlan::Command(c) => c.timeout,
            ProbePlan::Process(_) => PROCESS_READ_TIMEOUT,
            ProbePlan::Prometheus(p) => p.timeout,
        }
    }

    /// The probe's kind as written in the file: `http`, `tcp`, `command`, …
    pub fn kind(&self) -> &'static str {
        match self {
            ProbePlan::Http(_) => "http",
            ProbePlan::Tcp { .. } => "tcp",
            ProbePlan::Command(_) => "command",
            ProbePlan::Process(_) => "process",
            ProbePlan::Prometheus(_) => "prometheus",
        }
    }

    /// Whether its samples carry a number (`value` expectations).
    pub fn yields_value(&self) -> bool {
        match self {
            ProbePlan::Command(c) => c.value.is_some(),
            ProbePlan::Prometheus(_) => true,
            _ => false,
        }
    }

    /// Whether it only opens a TCP connection, which a stopped or frozen process still
    /// accepts (the kernel completes the handshake).
    pub fn is_connect_only(&self) -> bool {
        matches!(
            self,
            ProbePlan::Tcp {
                send: None,
                expect: None,
                ..
            }
        )
    }

    /// Whether its samples carry resource readings (`resource.*` expectations).
    pub fn yields_resources(&self) -> bool {
        matches!(self, ProbePlan::Process(_))
    }

    /// Whether `metric` can have data from this probe; `Err` says why not.
    pub fn supports(&self, metric: &Metric) -> Result<(), String> {
        match metric {
            Metric::Value(_) if !self.yields_value() => Err(match self {
                ProbePlan::Command(_) => "this command monitor reads no value; add \
                                         `value: { regex: \"…\" }` or `value: { json: \"$.…\" }`"
                    .to_string(),
                other => format!(
                    "a {} monitor yields no value; `value` is the number a command (with \
                     `value:`) or prometheus monitor yields",
                    other.kind()
                ),
            }),
            Metric::Resource(..) if !self.yields_resources() => Err(format!(
                "`{metric}` needs a process monitor (`process: {{ target: … }}` or \
                 `process: {{ cgroup: … }}`); this one is {}",
                self.kind()
            )),
            _ => Ok(()),
        }
    }
}

// === impl Cx ===

impl Cx<'_> {
    pub(super) fn monitors(
        &mut self,
        specs: &[spec::MonitorSpec],
        targets: &[Option<Target>],
        target_specs: &[spec::TargetSpec],
    ) -> Vec<MonitorPlan> {
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
            let given: Vec<&str> = [
                ("http", m.http.is_some()),
                ("tcp", m.tcp.is_some()),
                ("command", m.command.is_some()),
                ("process", m.process.is_some()),
                ("prometheus", m.prometheus.is_some()),
            ]
            .into_iter()
            .filter_map(|(k, on)| on.then_some(k))
            .collect();
            if given.len() != 1 {
                let (at, message) = match given.as_slice() {
                    [] => (
                        base.clone(),
                        format!(
                            "monitor `{}` needs a probe: `http`, `tcp`, `command`, `process` or \
                             `prometheus`",
                            m.name
                        ),
                    ),
                    [.., last] => (
                        format!("{base}.{last}"),
                        format!(
                            "a monitor has one probe; this one has {}",
                            given
                                .iter()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(" and ")
                        ),
                    ),
                };
                self.err(&at, message);
                continue;
            }
            let found = if let Some(h) = &m.http {
                Some(self.http_probe(&format!("{base}.http"), h))
            } else if let Some(t) = &m.tcp {
                let p = format!("{base}.tcp");
                let interval = self.interval(&format!("{p}.interval"), t.interval.as_deref());
                let timeout = self.positive_duration(
                    &format!("{p}.timeout"),
                    t.timeout.as_deref(),
                    Duration::from_secs(1),
                );
                self.address(&format!("{p}.address"), &t.address);
                for (key, text) in [("send", &t.send), ("expect", &t.expect)] {
                    if text.as_deref() == Some("") {
                        self.err(
                            &format!("{p}.{key}"),
                            format!("`{key}` is empty; leave it out (without `expect`, any answer to `send` will do)"),
                        );
                    }
                }
                Some((
                    ProbePlan::Tcp {
                        address: t.address.clone(),
                        timeout,
                        send: t.send.clone(),
                        expect: t.expect.clone(),
                    },
                    interval,
                ))
            } else if let Some(c) = &m.command {
                self.command_probe(&format!("{base}.command"), c)
            } else if let Some(p) = &m.process {
                self.process_probe(&format!("{base}.process"), p, targets, target_specs)
            } else if let Some(p) = &m.prometheus {
                self.prometheus_probe(&format!("{base}.prometheus"), p)
            } else {
                None
            };
            let Some((probe, interval)) = found else {
                continue;
            };
            for (j, e) in expect.iter().enumerate() {
                if let Err(message) = probe.supports(&e.metric) {
                    self.err(&format!("{base}.expect[{j}]"), message);
                }
            }
            out.push(MonitorPlan {
                name: m.name.clone(),
                probe,
                interval,
                expect,
            });
        }
        out
    }

    /// A `command` probe and its interval.
    fn command_probe(
        &mut self,
        p: &str,
        c: &spec::CommandProbeSpec,
    ) -> Option<(ProbePlan, Duration)> {
        let interval = self.interval(&format!("{p}.interval"), c.interval.as_deref());
        let timeout = self.positive_duration(
            &format!("{p}.timeout"),
            c.timeout.as_deref(),
            Duration::from_secs(5),
        );
        let argv = match &c.run {
            spec::CommandRunSpec::Argv(argv) => {
                if argv.first().is_none_or(|a| a.trim().is_empty()) {
                    self.err(
                        &format!("{p}.run"),
                        "the command is empty; write e.g. `[\"redis-cli\", \"ping\"]`",
                    );
                }
                argv.clone()
            }
            spec::CommandRunSpec::Shell(line) => {
                if line.trim().is_empty() {
                    self.err(&format!("{p}.run"), "the command line is empty");
                }
                vec!["sh".into(), "-c".into(), line.clone()]
            }
        };
        let value = c
            .value
            .as_ref()
            .and_then(|v| self.value_extract(&format!("{p}.value"), v));
        let failed_value = c.value.is_some() && value.is_none();
        if failed_value {
            return None;
        }
        Some((
            ProbePlan::Command(CommandProbeConfig {
                argv,
                timeout,
                value,
            }),
            interval,
        ))
    }

    fn value_extract(&mut self, p: &str, v: &spec::ValueSpec) -> Option<ValueExtract> {
        match (&v.regex, &v.json) {
            (Some(re), None) => {
                let regex = match regex::Regex::new(re) {
                    Ok(r) => r,
                    Err(e) => {
                        // The regex crate's message spans lines with a caret diagram; keep its
                        // last line, the reason.
                        let reason = e.to_string();
                        let reason = reason
                            .lines()
                            .rev()
                            .find(|l| !l.trim().is_empty())
                            .unwrap_or("invalid")
                            .trim_start_matches("error: ")
                            .to_string();
                        self.err(
                            &format!("{p}.regex"),
                            format!("the regex does not compile: {reason}"),
                        );
                        return None;
                    }
                };
                let groups = regex.captures_len() - 1;
                let group = match v.group {
                    None => usize::from(groups > 0),
                    Some(g) if g >= 0 && (g as usize) <= groups => g as usize,
                    Some(g) => {
                        self.err(
                            &format!("{p}.group"),
                            format!(
                                "group {g} does not exist: the regex has {groups} capture \
                                 group(s) (0 is the whole match)"
                            ),
                        );
                        return None;
                    }
                };
                Some(ValueExtract::Regex { regex, group })
            }
            (None, Some(path)) => {
                if v.group.is_some() {
                    self.err(
                        &format!("{p}.group"),
                        "`group` goes with `regex`, not `json`",
                    );
                }
                match serde_json_path::JsonPath::parse(path) {
                    Ok(parsed) => Some(ValueExtract::Json {
                        text: path.clone(),
                        path: parsed,
                    }),
                    Err(e) => {
                        self.err(
                            &format!("{p}.json"),
                            format!("`{path}` is not a JSONPath (RFC 9535): {e}"),
                        );
                        None
                    }
                }
            }
            (Some(_), Some(_)) => {
                self.err(
                    &format!("{p}.json"),
                    "a value is read one way: `regex` or `json`, not both",
                );
                None
            }
            (None, None) => {
                self.err(
                    p,
                    "say how to read the number: `{ regex: \"depth=(\\d+)\" }` or \
                     `{ json: \"$.depth\" }`",
                );
                None
            }
        }
    }

    /// A `process` probe and its interval.
    fn process_probe(
        &mut self,
        p: &str,
        spec: &spec::ProcessProbeSpec,
        targets: &[Option<Target>],
        target_specs: &[spec::TargetSpec],
    ) -> Option<(ProbePlan, Duration)> {
        let interval = self.interval(&format!("{p}.interval"), spec.interval.as_deref());
        let source = match (&spec.target, &spec.cgroup) {
            (Some(name), None) => {
                let Some(i) = target_specs.iter().position(|t| &t.name == name) else {
                    let names: Vec<&str> = target_specs.iter().map(|t| t.name.as_str()).collect();
                    self.err(
                        &format!("{p}.target"),
                        format!(
                            "unknown target `{name}`{}",
                            crate::diag::did_you_mean(name, names.iter().copied())
                                .map(|n| format!(" (did you mean `{n}`?)"))
                                .unwrap_or_default()
                        ),
                    );
                    return None;
                };
                match targets.get(i).and_then(Option::as_ref).map(|t| &t.kind) {
                    Some(TargetKind::Process(sel)) => ResourceSource::Process(sel.clone()),
                    Some(_) => {
                        self.err(
                            &format!("{p}.target"),
                            format!(
                                "target `{name}` is not a process; a process monitor reads a \
                                 `process` target or a `cgroup`"
                            ),
                        );
                        return None;
                    }
                    // The target itself was refused and reported.
                    None => return None,
                }
            }
            (None, Some(dir)) => {
                let path = PathBuf::from(dir);
                if !path.is_absolute() {
                    self.err(
                        &format!("{p}.cgroup"),
                        format!(
                            "`{dir}` is not an absolute path; write the cgroup's directory, \
                             e.g. `/sys/fs/cgroup/system.slice/redis.service`"
                        ),
                    );
                    return None;
                }
                ResourceSource::Cgroup(path)
            }
            (Some(_), Some(_)) => {
                self.err(
                    &format!("{p}.cgroup"),
                    "a process monitor reads one source: `target` or `cgroup`, not both",
                );
                return None;
            }
            (None, None) => {
                self.err(
                    p,
                    "name a `target` (a process target) or a `cgroup` directory",
                );
                return None;
            }
        };
        Some((ProbePlan::Process(source), interval))
    }

    /// A `prometheus` probe and its interval.
    fn prometheus_probe(
        &mut self,
        p: &str,
        spec: &spec::PrometheusProbeSpec,
    ) -> Option<(ProbePlan, Duration)> {
        let interval = match &spec.interval {
            None => Duration::from_secs(5),
            Some(_) => self.interval(&format!("{p}.interval"), spec.interval.as_deref()),
        };
        let timeout = self.positive_duration(
            &format!("{p}.timeout"),
            spec.timeout.as_deref(),
            Duration::from_secs(2),
        );
        self.http_url(&format!("{p}.url"), &spec.url);
        if spec.query.trim().is_empty() {
            self.err(
                &format!("{p}.query"),
                "the PromQL query is empty; write e.g. `sum(rate(http_requests_total[1m]))`",
            );
        }
        for k in spec.headers.keys() {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                self.err(
                    &format!("{p}.headers.{k}"),
                    format!("`{k}` is not a valid header name"),
                );
            }
        }
        let aggregate = spec.aggregate.map(|a| match a {
            spec::AggregateSpec::Sum => Aggregate::Sum,
            spec::AggregateSpec::Max => Aggregate::Max,
            spec::AggregateSpec::Min => Aggregate::Min,
            spec::AggregateSpec::Avg => Aggregate::Avg,
        });
        Some((
            ProbePlan::Prometheus(PrometheusProbeConfig {
                url: spec.url.clone(),
                query: spec.query.clone(),
                headers: spec.headers.clone(),
                bearer_token: spec.bearer_token.clone(),
                aggregate,
                timeout,
            }),
            interval,
        ))
    }

    fn http_url(&mut self, path: &str, url: &str) {
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(u) => self.err(
                path,
                format!(
                    "scheme `{}` is not supported; use http or https",
                    u.scheme()
                ),
            ),
            Err(e) => self.err(path, format!("invalid URL `{url}`: {e}")),
        }
    }

    /// An `http` probe and its interval.
    fn http_probe(&mut self, p: &str, h: &spec::HttpProbeSpec) -> (ProbePlan, Duration) {
        let interval = self.interval(&format!("{p}.interval"), h.interval.as_deref());
        let timeout = self.positive_duration(
            &format!("{p}.timeout"),
            h.timeout.as_deref(),
            Duration::from_secs(1),
        );
        self.http_url(&format!("{p}.url"), &h.url);
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
