//! The plain data a fault is built from: what `plan` validates and `fault` implementations
//! consume. It sits below both (it imports only `units`), so a fault never reaches up into the
//! planner and the planner never owns what a fault needs to run.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::{self, Ratio};

/// How a process target is found when the run starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessSelector {
    /// By id.
    Pid(i32),
    /// By a file holding its id.
    Pidfile(String),
    /// By a regex on its command line; must match exactly one process.
    Command(String),
}

/// Whom a `kill` signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KillReach {
    /// The target process.
    #[default]
    Process,
    /// Its process group.
    Group,
    /// Every process in its cgroup and the cgroups below.
    Cgroup,
}

/// How a restarted service shows that it is back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// A TCP connect to `host:port` succeeds.
    Tcp(String),
    /// An HTTP GET answers 2xx or 3xx.
    Http(String),
    /// A shell command exits 0.
    Command(String),
}

/// What a kernel-level network fault does to each packet it matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "kebab-case")]
pub enum NetEffect {
    /// Delay every packet by `delay` ± `jitter`.
    Latency {
        /// Added delay.
        #[serde(with = "units::duration_text")]
        delay: Duration,
        /// Uniform spread.
        #[serde(with = "units::duration_text")]
        jitter: Duration,
    },
    /// Flip one bit in a share of packets.
    Corrupt {
        /// Share of packets.
        probability: Ratio,
    },
    /// Send a share of packets twice.
    Duplicate {
        /// Share of packets.
        probability: Ratio,
    },
    /// Hold a share of packets back by `gap`.
    Reorder {
        /// Share of packets.
        probability: Ratio,
        /// How long they are held.
        #[serde(with = "units::duration_text")]
        gap: Duration,
    },
    /// At most this many bits per second.
    Rate {
        /// Bits per second.
        bits_per_sec: u64,
    },
}

impl NetEffect {
    /// The key users write (`latency`, `rate`, …).
    pub fn name(&self) -> &'static str {
        match self {
            NetEffect::Latency { .. } => "latency",
            NetEffect::Corrupt { .. } => "corrupt",
            NetEffect::Duplicate { .. } => "duplicate",
            NetEffect::Reorder { .. } => "reorder",
            NetEffect::Rate { .. } => "rate",
        }
    }
}

/// Which of a host's packets a kernel-level fault acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetDirection {
    /// Packets it sends.
    Egress,
    /// Packets it receives.
    Ingress,
    /// Both.
    Both,
}

/// How a kernel-level network fault is carried out on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// The `netem` qdisc (with an `htb` + `u32` tree for peers and ports, `ifb` for ingress).
    Netem,
    /// chaosforge's own NFQUEUE handler in userspace, fed by iptables `NFQUEUE --queue-bypass`
    /// rules (fail open: a dead runner never blackholes the host).
    Nfqueue,
    /// nftables `dup` (with `numgen` for the share).
    NftDup,
    /// An `htb` class (with `u32` filters for peers and ports, `ifb` for ingress).
    Htb,
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mechanism::Netem => "netem",
            Mechanism::Nfqueue => "nfqueue (userspace)",
            Mechanism::NftDup => "nft dup",
            Mechanism::Htb => "htb",
        })
    }
}

// === impl KillReach ===

impl KillReach {
    /// The default reach, left out of serialized plans.
    pub fn is_process(&self) -> bool {
        *self == KillReach::Process
    }
}

// === impl Readiness ===

impl Readiness {
    /// `tcp 127.0.0.1:8080 accepts`, for plans and reports.
    pub fn describe(&self) -> String {
        match self {
            Readiness::Tcp(a) => format!("tcp {a} accepts"),
            Readiness::Http(u) => format!("{u} answers 2xx/3xx"),
            Readiness::Command(c) => format!("`{c}` exits 0"),
        }
    }
}

/// Parses `SIGKILL`, `KILL`, `kill` or `9` into (number, canonical name).
pub fn parse_signal(text: &str) -> Option<(i32, String)> {
    const SIGNALS: &[(&str, i32)] = &[
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ABRT", 6),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("USR2", 12),
        ("TERM", 15),
    ];
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return SIGNALS
            .iter()
            .find(|(_, v)| *v == n)
            .map(|(name, v)| (*v, format!("SIG{name}")));
    }
    let upper = t.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, v)| (*v, format!("SIG{n}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGKILL"), Some((9, "SIGKILL".into())));
        assert_eq!(parse_signal("term"), Some((15, "SIGTERM".into())));
        assert_eq!(parse_signal("9"), Some((9, "SIGKILL".into())));
        assert_eq!(parse_signal("SIGFOO"), None);
        assert_eq!(parse_signal("19"), None, "SIGSTOP is `pause`, not `kill`");
    }
}

/// How a `container:` target is found on the Docker engine when the run starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerRef {
    /// By name (without the leading `/`).
    Name(String),
    /// By id or an unambiguous id prefix.
    Id(String),
    /// The one running container with this label: `KEY=VALUE` or `KEY`.
    Label(String),
}

/// A `container:` target: which container, on which engine socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerSelector {
    /// Which container.
    pub by: ContainerRef,
    /// The engine's unix socket; `None`: `DOCKER_HOST` (`unix://…`), else
    /// `/var/run/docker.sock`, read when the run starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// The interface inside its namespace that interface-shaping faults act on; `None`: its
    /// one non-loopback interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

/// What a container fault does through the Docker Engine API.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum ContainerAction {
    /// `docker pause` (the cgroup freezer), reverted by `docker unpause`.
    Pause,
    /// `docker stop` with this grace period. Irreversible.
    Stop {
        /// Time between SIGTERM and SIGKILL.
        #[serde(with = "units::duration_text")]
        timeout: Duration,
    },
    /// `docker kill` with a signal. Irreversible.
    Kill {
        /// The signal's name (`SIGKILL`, `SIGTERM`, …), as the engine takes it.
        signal: String,
    },
    /// `docker restart`, then a bounded wait until it runs again. Nothing to undo.
    Restart {
        /// The stop grace period and the wait for running again, each.
        #[serde(with = "units::duration_text")]
        timeout: Duration,
    },
    /// `docker update --cpus/--memory`, reverted to the limits read before.
    Limit {
        /// CPUs in billionths (`docker update --cpus 0.5` = 500 000 000).
        #[serde(skip_serializing_if = "Option::is_none")]
        nano_cpus: Option<i64>,
        /// Memory in bytes.
        #[serde(skip_serializing_if = "Option::is_none")]
        memory: Option<i64>,
    },
}
