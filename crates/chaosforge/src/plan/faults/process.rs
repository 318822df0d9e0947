//! The process family: `pause`, `kill` (of a process, its group or its cgroup),
//! `fd-exhaustion`, `process-limit`, `freeze` and `restart` with its readiness check.

use std::time::Duration;

use super::FaultKind;
use crate::fault::params::{KillReach, Readiness, parse_signal};
use crate::plan::Cx;
use crate::spec;

/// `kill the process group with SIGTERM (irreversible)`.
pub(super) fn describe_kill(signal_name: &str, reach: KillReach) -> String {
    match reach {
        KillReach::Process => format!("kill with {signal_name} (irreversible)"),
        KillReach::Group => {
            format!("kill the process group with {signal_name} (irreversible)")
        }
        KillReach::Cgroup => {
            format!("kill every process in the cgroup with {signal_name} (irreversible)")
        }
    }
}

// === impl Cx ===

impl Cx<'_> {
    pub(super) fn kill(&mut self, p: &str, k: &spec::KillSpec) -> Option<FaultKind> {
        let text = k.signal.as_deref().unwrap_or("SIGKILL");
        let reach = match (k.group, k.cgroup) {
            (false, false) => KillReach::Process,
            (true, false) => KillReach::Group,
            (false, true) => KillReach::Cgroup,
            (true, true) => {
                self.err(
                    &format!("{p}.cgroup"),
                    "give `group: true` (the process group) or `cgroup: true` (the cgroup), not both",
                );
                KillReach::Process
            }
        };
        match parse_signal(text) {
            Some((signal, signal_name)) => Some(FaultKind::Kill {
                signal,
                signal_name,
                reach,
            }),
            None => {
                self.err(
                    &format!("{p}.signal"),
                    format!("unknown signal `{text}`; use e.g. SIGKILL, SIGTERM, 9"),
                );
                None
            }
        }
    }

    pub(super) fn restart(&mut self, p: &str, r: &spec::RestartSpec) -> Option<FaultKind> {
        let Some(command) = &r.command else {
            // Only a container target does without one (`container.rs`).
            self.err(p, "missing field `command`");
            return None;
        };
        if command.trim().is_empty() {
            self.err(
                &format!("{p}.command"),
                "empty command; give the shell command that restarts the service",
            );
        }
        let timeout = self.positive_duration(
            &format!("{p}.timeout"),
            r.timeout.as_deref(),
            Duration::from_secs(30),
        );
        let ready = self.readiness(&format!("{p}.ready"), p, r.ready.as_ref())?;
        Some(FaultKind::Restart {
            command: command.clone(),
            ready,
            timeout,
        })
    }

    /// A `headroom`: a count from 0 to 1 000 000, 0 when absent.
    pub(super) fn headroom(&mut self, path: &str, n: Option<i64>) -> u64 {
        match n {
            None => 0,
            Some(n) if (0..=1_000_000).contains(&n) => n as u64,
            Some(n) => {
                self.err(
                    path,
                    format!("`{n}` is not a headroom; give a count from 0 to 1000000"),
                );
                0
            }
        }
    }

    /// A restart's readiness check: exactly one of `tcp`, `http` or `command`.
    fn readiness(
        &mut self,
        path: &str,
        restart: &str,
        r: Option<&spec::ReadySpec>,
    ) -> Option<Readiness> {
        let Some(r) = r else {
            self.err(
                restart,
                "`restart` needs `ready` to know when the service is back: `{ tcp: \"host:port\" }`, `{ http: URL }` or `{ command: … }`",
            );
            return None;
        };
        let given: Vec<&str> = [
            ("tcp", r.tcp.is_some()),
            ("http", r.http.is_some()),
            ("command", r.command.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, g)| g.then_some(k))
        .collect();
        match given.as_slice() {
            [] => {
                self.err(path, "give one of `tcp`, `http` or `command`");
                return None;
            }
            [_] => {}
            [_, second, ..] => {
                self.err(
                    &format!("{path}.{second}"),
                    format!(
                        "one readiness check; this one has {} (keep one)",
                        given.join(" and ")
                    ),
                );
                return None;
            }
        }
        if let Some(a) = &r.tcp {
            self.address(&format!("{path}.tcp"), a);
            Some(Readiness::Tcp(a.clone()))
        } else if let Some(u) = &r.http {
            match reqwest::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                Ok(url) => self.err(
                    &format!("{path}.http"),
                    format!(
                        "scheme `{}` is not supported; use http or https",
                        url.scheme()
                    ),
                ),
                Err(e) => self.err(&format!("{path}.http"), format!("invalid URL `{u}`: {e}")),
            }
            Some(Readiness::Http(u.clone()))
        } else {
            let c = r.command.clone().unwrap_or_default();
            if c.trim().is_empty() {
                self.err(&format!("{path}.command"), "empty command");
            }
            Some(Readiness::Command(c))
        }
    }
}
