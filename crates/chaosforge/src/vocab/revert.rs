//! How to undo a fault from the journal alone, in any process: the record `Injecting` carries,
//! durably, before the first change. Carrying it out is `fault`'s job
//! (`RevertSpec::revert_detached`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How to undo a fault from the journal alone, in any process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RevertSpec {
    /// Toxics on a proxy running inside the runner process: they end when the runner ends, so a
    /// dead runner left nothing behind.
    InProcessToxics {
        /// The proxy target.
        target: String,
        /// Toxic names on it.
        toxics: Vec<String>,
    },
    /// Toxics on a proxy of a running proxy server (it outlives the runner): delete them, and
    /// re-enable the proxy if a `down` was in force, through its HTTP API.
    RemoteToxics {
        /// Base URL of the API.
        api: String,
        /// The proxy's name.
        proxy: String,
        /// Toxic names.
        toxics: Vec<String>,
        /// Whether the proxy was disabled (`down`).
        reenable: bool,
    },
    /// A fault held by a `chaosforge agent` on another host: revert it there with
    /// `DELETE {url}/faults/{fault_id}`. The bearer token is never journaled: whoever reverts
    /// reads it from the environment variable `token_env`; `fingerprint` pins a self-signed
    /// agent's certificate (SHA-256 of its DER, hex).
    RemoteAgent {
        /// The agent's base URL, `https://host:port`.
        url: String,
        /// The fault's id on the agent (chosen by the runner, so it is known before the request).
        fault_id: String,
        /// The environment variable holding the agent's token.
        token_env: String,
        /// The pinned certificate fingerprint, for a self-signed agent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
    },
    /// Delete an nftables table (a partition's rules) in a network namespace (`None`: the host).
    NftTable {
        /// The namespace, `None` for the host's own.
        netns: Option<String>,
        /// The table.
        table: String,
        /// Its families: `inet` (partition, loss) when absent, `ip` and `ip6` for `dup`.
        #[serde(default = "inet", skip_serializing_if = "is_inet")]
        families: Vec<String>,
    },
    /// Delete chaosforge's qdiscs on an interface (root handle `cf00:`) and its `ifb` device.
    Qdisc {
        /// The namespace, `None` for the host's own.
        netns: Option<String>,
        /// The interface.
        interface: String,
        /// Whether the interface's root (egress) is shaped.
        egress: bool,
        /// The `ifb` device of an ingress shape.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ifb: Option<String>,
    },
    /// Delete the iptables chains (and their jump rules) that fed an NFQUEUE handler.
    QueueChains {
        /// The namespace, `None` for the host's own.
        netns: Option<String>,
        /// The chains.
        chains: Vec<QueueChain>,
        /// `iptables`, `ip6tables` or both.
        families: Vec<Family>,
    },
    /// Kill every process in a cgroup chaosforge made for a fault, then remove it.
    Cgroup {
        /// The cgroup's directory.
        path: PathBuf,
    },
    /// Delete a ballast file (disk fill).
    Ballast {
        /// The file.
        path: PathBuf,
    },
    /// Play a Chaos Toolkit experiment's rollbacks (a run killed between its method's start
    /// and its rollbacks). Only references are kept: the declared rollbacks and configuration,
    /// and the `--var` values; secrets are read again from the experiment file and the
    /// environment of whoever replays, so none is ever written here.
    CtkRollbacks {
        /// The experiment file (for its `secrets`).
        file: PathBuf,
        /// The rollbacks as declared.
        rollbacks: Vec<serde_json::Value>,
        /// The experiment's `configuration` as declared.
        #[serde(default)]
        configuration: serde_json::Value,
        /// `--var` values.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        vars: std::collections::BTreeMap<String, serde_json::Value>,
    },
    /// Send SIGCONT to a stopped process — if it is still the same process (pid and start time
    /// match), so that a recycled pid is never touched.
    ContinueProcess {
        /// Process id.
        pid: i32,
        /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
        start_time: u64,
    },
    /// Restore a process's resource limit (soft and hard, `null` for unlimited) — if it is
    /// still the same process (pid and start time match).
    RestoreLimit {
        /// Process id.
        pid: i32,
        /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
        start_time: u64,
        /// Which limit.
        resource: LimitResource,
        /// The soft limit before.
        soft: Option<u64>,
        /// The hard limit before.
        hard: Option<u64>,
    },
    /// Thaw a frozen cgroup; if a freeze made it (`moved`), move its processes back where they
    /// came from and remove it.
    Thaw {
        /// The cgroup's directory.
        cgroup: PathBuf,
        /// `cgroup.freeze` (v2) rather than `freezer.state` (v1).
        v2: bool,
        /// The processes moved into a cgroup made for the fault.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        moved: Option<Moved>,
    },
    /// Unpause a Docker container (`docker pause` reverted) through the engine's API socket.
    ContainerUnpause {
        /// The engine's unix socket.
        socket: String,
        /// The container's full id (a name could be given to another container later).
        id: String,
    },
    /// Set a Docker container's CPU and memory limits back to what they were (`docker update`),
    /// the values read through the API just before they were lowered.
    ContainerResources {
        /// The engine's unix socket.
        socket: String,
        /// The container's full id.
        id: String,
        /// The old `HostConfig` values; `None`: that one was not changed.
        old: ContainerLimits,
    },
    /// Nothing to undo, and nothing lost: the fault is over once injected (a restart).
    Nothing {
        /// What was done.
        note: String,
    },
    /// Nothing can undo it.
    Irreversible {
        /// Why.
        reason: String,
    },
}

fn inet() -> Vec<String> {
    vec!["inet".to_string()]
}

/// Whether `families` is the default (`inet`), left out of the journal.
pub(crate) fn is_inet(families: &[String]) -> bool {
    families.len() == 1 && families[0] == "inet"
}

/// A hook a chain is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Hook {
    /// Packets the host sends.
    Output,
    /// Packets the host receives.
    Input,
}

/// One chain of a fault and where it is hooked: what the journal records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueChain {
    /// `OUTPUT` or `INPUT` of table `mangle`.
    pub hook: Hook,
    /// The chain's name.
    pub chain: String,
}

/// Which iptables programs a fault uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// `iptables`.
    V4,
    /// `ip6tables`.
    V6,
}

/// The limits these faults lower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitResource {
    /// `RLIMIT_NOFILE`: open file descriptors of the process.
    Nofile,
    /// `RLIMIT_NPROC`: processes (threads) of the process's real user.
    Nproc,
}

/// The processes a freeze moved into a cgroup made for it, and where each came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    /// The target's cgroup before: where processes forked in the made cgroup go.
    pub home: PathBuf,
    /// Each moved process.
    pub processes: Vec<MovedProcess>,
}

/// A process a freeze moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedProcess {
    /// Process id.
    pub pid: i32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
    /// Its cgroup before.
    pub from: PathBuf,
}

/// A Docker container's CPU and memory limits as its `HostConfig` says them; each `None` where
/// the fault left that value alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerLimits {
    /// `NanoCpus` (`--cpus` × 10⁹).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    /// `CpuQuota` in µs per period (`0`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<i64>,
    /// `CpuPeriod` in µs (`0`: the kernel's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_period: Option<i64>,
    /// `Memory` in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// `MemorySwap` in bytes (`-1`: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<i64>,
    /// Limits written into the container's cgroup files directly, past the engine, with what
    /// each file held before: the Engine API cannot lift a limit on a container that had none
    /// (it reads `0` as "unchanged" and refuses `-1` for memory), so those are never given to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroup: Vec<CgroupFile>,
}

/// One cgroup control file and its content before a fault wrote it (`cpu.max`,
/// `memory.limit_in_bytes`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupFile {
    /// The file, e.g. `/sys/fs/cgroup/memory/docker/ID/memory.limit_in_bytes`.
    pub path: PathBuf,
    /// Its content before, trimmed (e.g. `max`, `-1`, `max 100000`).
    pub old: String,
}
