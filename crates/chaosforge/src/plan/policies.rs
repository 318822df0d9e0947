//! `policies:` — the rules that keep a run safe: halt rules judged over a sliding window, and
//! the permission irreversible faults need.

use std::time::Duration;

use super::Cx;
use super::faults::FaultKind;
use crate::hypothesis::Expectation;
use crate::spec::PoliciesSpec;

// === impl Cx ===

impl Cx<'_> {
    /// The halt rules and the window they are judged over.
    pub(super) fn policies(&mut self, spec: &PoliciesSpec) -> (Vec<Expectation>, Duration) {
        let halt_when = spec
            .halt_when
            .iter()
            .enumerate()
            .filter_map(|(i, t)| self.expectation(&format!("policies.halt_when[{i}]"), t))
            .collect();
        let halt_window = self.positive_duration(
            "policies.halt_window",
            spec.halt_window.as_deref(),
            Duration::from_secs(1),
        );
        (halt_when, halt_window)
    }

    /// An irreversible fault (at `faults[i].key`) is refused unless the file allows it.
    pub(super) fn irreversible(&mut self, base: &str, key: &str, kind: &FaultKind, allowed: bool) {
        if let Some(why) = kind.irreversible()
            && !allowed
        {
            self.err(
                &format!("{base}.{key}"),
                format!("`{key}` is irreversible ({why}); set `policies.allow_irreversible: true` to allow it"),
            );
        }
    }
}
