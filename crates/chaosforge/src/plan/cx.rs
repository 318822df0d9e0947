//! The compile context every section of the file adds to: the document (to point into it) and
//! the diagnostics collected so far, with the value checks all sections share.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::diag::Diagnostics;
use crate::hypothesis::Expectation;
use crate::source::Document;
use crate::units::{self, Ratio, UnitError};

/// The document being compiled and every problem found in it so far.
pub(super) struct Cx<'a> {
    pub(super) doc: &'a Document,
    pub(super) diags: Diagnostics,
    /// What is valid but probably not meant; never stops a run.
    pub(super) warnings: Diagnostics,
    /// The agents `agent: NAME` may name: an inventory file's `agents:`.
    pub(super) agents: std::collections::BTreeMap<String, crate::spec::AgentRefSpec>,
}

// === impl Cx ===

impl<'a> Cx<'a> {
    pub(super) fn new(doc: &'a Document) -> Cx<'a> {
        Cx {
            doc,
            diags: Diagnostics::new(),
            warnings: Diagnostics::new(),
            agents: std::collections::BTreeMap::new(),
        }
    }
}

impl Cx<'_> {
    pub(super) fn err(&mut self, path: &str, message: impl Into<String>) {
        self.diags.push(self.doc.diag(path, message));
    }

    pub(super) fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.warnings.push(self.doc.diag(path, message));
    }

    pub(super) fn unit_err(&mut self, path: &str, e: UnitError) {
        self.diags
            .push(self.doc.diag_in(path, e.offset, e.len, e.message));
    }

    pub(super) fn duration(
        &mut self,
        path: &str,
        text: Option<&str>,
        default: Duration,
    ) -> Duration {
        match text {
            None => default,
            Some(t) => units::parse_duration(t).unwrap_or_else(|e| {
                self.unit_err(path, e);
                default
            }),
        }
    }

    pub(super) fn positive_duration(
        &mut self,
        path: &str,
        text: Option<&str>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(path, text, default);
        if d.is_zero() {
            self.err(path, "must be longer than zero");
        }
        d
    }

    /// A sampling interval: positive, and at least 1 ms (the monitor's scheduling resolution).
    pub(super) fn interval(&mut self, path: &str, text: Option<&str>) -> Duration {
        let d = self.positive_duration(path, text, Duration::from_secs(1));
        if !d.is_zero() && d < crate::monitor::MIN_INTERVAL {
            self.err(path, "must be at least 1ms");
        }
        d
    }

    pub(super) fn ratio(&mut self, path: &str, text: Option<&str>, default: Ratio) -> Ratio {
        match text {
            None => default,
            Some(t) => Ratio::parse(t).unwrap_or_else(|e| {
                self.unit_err(path, e);
                default
            }),
        }
    }

    pub(super) fn expectation(&mut self, path: &str, text: &str) -> Option<Expectation> {
        Expectation::parse(text)
            .map_err(|e| self.unit_err(path, e))
            .ok()
    }

    pub(super) fn address(&mut self, path: &str, addr: &str) {
        if let Err(msg) = check_host_port(addr) {
            self.err(path, msg);
        }
    }

    pub(super) fn unique<'s>(
        &mut self,
        what: &str,
        base: &str,
        names: impl Iterator<Item = &'s str>,
    ) {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, n) in names.enumerate() {
            if let Some(first) = seen.insert(n, i) {
                seen.insert(n, first);
                self.err(
                    &format!("{base}[{i}].name"),
                    format!("duplicate {what} name `{n}` (first used at {base}[{first}])"),
                );
            }
            if n.trim().is_empty() {
                self.err(
                    &format!("{base}[{i}].name"),
                    format!("the {what} needs a name"),
                );
            }
        }
    }
}

/// Checks `host:port` (a name or IP, `[v6]:port`), with a numeric port.
fn check_host_port(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("`{addr}` is not `host:port` (e.g. `127.0.0.1:8080`)"))?;
    if host.is_empty() {
        return Err(format!(
            "`{addr}` has no host; write e.g. `127.0.0.1{}`",
            &addr[addr.len() - port.len() - 1..]
        ));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            "`{addr}`: write IPv6 addresses in brackets, e.g. `[::1]:8080`"
        ));
    }
    port.parse::<u16>()
        .map(|_| ())
        .map_err(|_| format!("`{port}` in `{addr}` is not a port number (0–65535)"))
}
