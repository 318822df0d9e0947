//! What a file may say but probably does not mean: phases over an hour (unless
//! `policies.max_duration` allows them) and the cap itself, and a `pause` or `freeze` watched
//! only by monitors that cannot see it.

use std::time::Duration;

use super::faults::{FaultKind, PlannedFault};
use super::monitors::MonitorPlan;
use super::{Cx, Phases};
use crate::spec::ExperimentSpec;
use crate::units::format_duration;

/// A phase longer than this is more often a missing unit or a typo (`30m` for `30s`) than an
/// intent, so it is warned about unless `policies.max_duration` says long runs are meant.
const LONG_PHASE: Duration = Duration::from_secs(3600);

// === impl Cx ===

impl Cx<'_> {
    /// Refuses phases that add up to more than `policies.max_duration`; without that cap, warns
    /// about each phase over an hour.
    pub(super) fn phase_lengths(&mut self, spec: &ExperimentSpec, phases: &Phases) {
        let total = phases.baseline + phases.inject + phases.recover_within;
        let cap =
            spec.policies.max_duration.as_deref().map(|text| {
                self.positive_duration("policies.max_duration", Some(text), Duration::MAX)
            });
        match cap {
            Some(cap) if total > cap => self.err(
                "policies.max_duration",
                format!(
                    "the phases last {} together (baseline {} + inject {} + recover_within {}), over max_duration {}",
                    format_duration(total),
                    format_duration(phases.baseline),
                    format_duration(phases.inject),
                    format_duration(phases.recover_within),
                    format_duration(cap)
                ),
            ),
            Some(_) => {}
            None => {
                for (key, d) in [
                    ("baseline", phases.baseline),
                    ("inject", phases.inject),
                    ("recover_within", phases.recover_within),
                ] {
                    if d > LONG_PHASE {
                        self.warn(
                            &format!("phases.{key}"),
                            format!(
                                "{key} lasts {}, over an hour; if that is meant, say so with `policies.max_duration`",
                                format_duration(d)
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Warns when a `pause` or `freeze` is watched only by connect-only TCP monitors: the kernel
    /// completes handshakes for a stopped process, so they would call it healthy.
    ///
    /// A process target names a pid, not an address, so which monitor watches it cannot be told
    /// from the file; the warning is given when every monitor of the experiment is connect-only.
    pub(super) fn watched_while_stopped(
        &mut self,
        faults: &[PlannedFault],
        monitors: &[MonitorPlan],
    ) {
        if monitors.is_empty() || !monitors.iter().all(|m| m.probe.is_connect_only()) {
            return;
        }
        for f in faults {
            if matches!(f.kind, FaultKind::Pause | FaultKind::Freeze { .. }) {
                let key = f.kind.name();
                self.warn(
                    &format!("faults[{}].{key}", f.index),
                    format!(
                        "`{key}` stops the process, but every monitor only opens a TCP connection, which the kernel completes for a stopped process too; give a tcp monitor `send` and `expect` (e.g. `send: \"PING\\r\\n\", expect: \"+PONG\"`) or use an http or command monitor"
                    ),
                );
            }
        }
    }
}
