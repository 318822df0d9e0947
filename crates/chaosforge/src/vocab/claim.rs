//! Target claims as the journal records them: which resource a run holds, and who holds it.

use serde::{Deserialize, Serialize};

use super::RunId;

/// One exclusive resource a run holds while it may inject: a target, or a kernel resource one
/// of its faults changes.
///
/// `resource` is the key two runs conflict on, independent of how each experiment names its
/// targets: `process:4242@1234567` (pid and start time, so a reused pid is another process),
/// `listen:127.0.0.1:18081` (a proxy's listen address), `host:local`, `host:netns=node-b`,
/// `qdisc:node-b/veth0/egress`, `cgroup:/sys/fs/cgroup/app`, `remote-proxy:http://…/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Claim {
    /// The resource key.
    pub resource: String,
    /// The target of the experiment it belongs to.
    pub target: String,
}

/// Who holds a claim: enough to name the run in a refusal and to tell a dead holder apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimHolder {
    /// The run.
    pub run_id: RunId,
    /// The runner's process id.
    pub pid: u32,
    /// The runner's start time (clock ticks since boot, `/proc/PID/stat` field 22): a pid with
    /// another start time is another process, so the claim is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    /// The experiment's name.
    pub experiment: String,
    /// Since when the claims are held (wall clock).
    pub since: jiff::Timestamp,
}

// === impl ClaimHolder ===

impl ClaimHolder {
    /// `run 0190… (pid 4242, experiment `x`, since 2026-…)`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "run {} (pid {}, experiment `{}`, since {})",
            self.run_id.0, self.pid, self.experiment, self.since
        )
    }
}
