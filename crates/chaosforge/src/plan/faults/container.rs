//! Container faults: `pause`, `kill` and `restart` when the selector matches `container`
//! targets (the Docker engine does them), and `stop` and `resource-limit`, which only
//! containers have.

use std::time::Duration;

use super::{Cx, FaultKind};
use crate::fault::params::{ContainerAction, parse_signal};
use crate::spec;
use crate::units;

/// The name users write.
pub(super) fn name(a: &ContainerAction) -> &'static str {
    match a {
        ContainerAction::Pause => "pause",
        ContainerAction::Stop { .. } => "stop",
        ContainerAction::Kill { .. } => "kill",
        ContainerAction::Restart { .. } => "restart",
        ContainerAction::Limit { .. } => "resource-limit",
    }
}

/// Why it cannot be undone, if it cannot.
pub(super) fn irreversible(a: &ContainerAction) -> Option<&'static str> {
    match a {
        ContainerAction::Stop { .. } => {
            Some("a stopped container is not started again by chaosforge")
        }
        ContainerAction::Kill { .. } => {
            Some("a killed container is not started again by chaosforge")
        }
        _ => None,
    }
}

/// One line for plans and reports.
pub(super) fn describe(a: &ContainerAction) -> String {
    match a {
        ContainerAction::Pause => "pause the container (docker pause, reverted by unpause)".into(),
        ContainerAction::Stop { timeout } => format!(
            "stop the container (SIGTERM, SIGKILL after {})",
            units::format_duration(*timeout)
        ),
        ContainerAction::Kill { signal } => format!("kill the container with {signal}"),
        ContainerAction::Restart { timeout } => format!(
            "restart the container through the engine, running again within {}",
            units::format_duration(*timeout)
        ),
        ContainerAction::Limit { nano_cpus, memory } => {
            let mut parts = Vec::new();
            if let Some(n) = nano_cpus {
                parts.push(format!("{} CPUs", *n as f64 / 1e9));
            }
            if let Some(m) = memory {
                parts.push(format!("{} MiB memory", m / (1024 * 1024)));
            }
            format!(
                "resource-limit: {} (reverted to the old limits)",
                parts.join(", ")
            )
        }
    }
}

// === impl Cx ===

impl Cx<'_> {
    /// The fault as a container fault, when it is one: `stop` and `resource-limit` always;
    /// `pause`, `kill` and `restart` when its selector matches container targets. `None`: not a
    /// container fault, compile it as usual. `Some(None)`: it is one, and invalid.
    pub(super) fn container_fault(
        &mut self,
        base: &str,
        f: &spec::FaultSpec,
        on_container: bool,
    ) -> Option<Option<(&'static str, FaultKind)>> {
        let own = f.stop.is_some() || f.resource_limit.is_some();
        let shared = f.pause.is_some() || f.kill.is_some() || f.restart.is_some();
        if !(own || (on_container && shared)) {
            return None;
        }
        let Some(key) = self.kind_key(base, f) else {
            return Some(None);
        };
        let p = format!("{base}.{key}");
        let action = if let Some(s) = &f.stop {
            ContainerAction::Stop {
                timeout: self.positive_duration(
                    &format!("{p}.timeout"),
                    s.timeout.as_deref(),
                    Duration::from_secs(10),
                ),
            }
        } else if let Some(r) = &f.resource_limit {
            match self.resource_limit(&p, r) {
                Some(a) => a,
                None => return Some(None),
            }
        } else if f.pause.is_some() {
            ContainerAction::Pause
        } else if let Some(k) = &f.kill {
            for (on, field) in [(k.group, "group"), (k.cgroup, "cgroup")] {
                if on {
                    self.err(
                        &format!("{p}.{field}"),
                        "a container is killed whole by the engine; leave out `group` and `cgroup`",
                    );
                }
            }
            let text = k.signal.as_deref().unwrap_or("SIGKILL");
            match parse_signal(text) {
                Some((_, signal)) => ContainerAction::Kill { signal },
                None => {
                    self.err(
                        &format!("{p}.signal"),
                        format!("unknown signal `{text}`; use e.g. SIGKILL, SIGTERM, 9"),
                    );
                    return Some(None);
                }
            }
        } else if let Some(r) = &f.restart {
            if r.command.is_some() {
                self.err(
                    &format!("{p}.command"),
                    "a container is restarted by the Docker engine; leave out `command`",
                );
            }
            if r.ready.is_some() {
                self.err(
                    &format!("{p}.ready"),
                    "a container counts as back when the engine runs it again; leave out `ready`",
                );
            }
            ContainerAction::Restart {
                timeout: self.positive_duration(
                    &format!("{p}.timeout"),
                    r.timeout.as_deref(),
                    Duration::from_secs(30),
                ),
            }
        } else {
            return None;
        };
        Some(Some((key, FaultKind::Container { action })))
    }

    fn resource_limit(&mut self, p: &str, r: &spec::ResourceLimitSpec) -> Option<ContainerAction> {
        if r.cpus.is_none() && r.memory.is_none() {
            self.err(p, "give `cpus`, `memory` or both");
            return None;
        }
        let nano_cpus = r.cpus.and_then(|c| {
            // Docker's own floor is 0.01 CPU; a fraction of that would be refused at inject.
            if c.is_finite() && (0.01..=1024.0).contains(&c) {
                Some((c * 1e9).round() as i64)
            } else {
                self.err(
                    &format!("{p}.cpus"),
                    format!("`{c}` is not a CPU limit; give 0.01 to 1024 (e.g. 0.5)"),
                );
                None
            }
        });
        let memory = r
            .memory
            .as_deref()
            .and_then(|m| match units::parse_bytes(m) {
                // The engine refuses less than 6 MiB.
                Ok(b) if b >= 6 * 1024 * 1024 => i64::try_from(b).ok(),
                Ok(_) => {
                    self.err(
                        &format!("{p}.memory"),
                        "the Docker engine needs at least 6MiB",
                    );
                    None
                }
                Err(e) => {
                    self.unit_err(&format!("{p}.memory"), e);
                    None
                }
            });
        Some(ContainerAction::Limit { nano_cpus, memory })
    }
}
