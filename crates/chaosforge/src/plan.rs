//! `compile(spec) → Plan | Diagnostics`: the validated, resolved form of an experiment.
//!
//! Everything here is pure (no I/O but reading the file in [`load`]), so it is tested without a
//! runtime. Every problem is collected, never only the first; each names its field path and points
//! into the file. A `Plan` exists only when there are no problems, and nothing is ever injected
//! without one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::fault::net::{CorruptUnit, ProxyFault, Stream};
use crate::hypothesis::Expectation;
use crate::probe::http::{HttpProbeConfig, StatusSet};
use crate::scope::{self, Scope};
use crate::source::Document;
use crate::spec::{self, ExperimentSpec, ScopeName, ScopeSpec};
use crate::units::{self, Ratio, UnitError};

/// The only file format version so far.
pub const API_VERSION: &str = "chaosforge/v1";

/// A validated experiment with its targets resolved. Built only by [`compile`].
#[derive(Debug, Clone)]
pub struct Plan {
    /// The experiment's name.
    pub name: String,
    /// Its description, if any.
    pub description: Option<String>,
    /// The hypothesis title (the file's, or one made from the expectations).
    pub title: String,
    /// The file it came from, as the user named it.
    pub file: String,
    /// The seed of every random choice.
    pub seed: u64,
    /// Targets, in file order.
    pub targets: Vec<Target>,
    /// Monitors, in file order.
    pub monitors: Vec<MonitorPlan>,
    /// Faults, in file order, each with the targets its scope chose.
    pub faults: Vec<PlannedFault>,
    /// Phase durations.
    pub phases: Phases,
    /// Halt rules.
    pub halt_when: Vec<Expectation>,
    /// The sliding window halt rules are judged over.
    pub halt_window: Duration,
}

/// A target, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// Unique name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// What it is.
    pub kind: TargetKind,
}

/// What a target is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// An in-process TCP fault proxy.
    Proxy {
        /// `host:port` to listen on.
        listen: String,
        /// `host:port` to forward to.
        upstream: String,
    },
    /// A proxy on a running `chaosforge proxy` or Toxiproxy server, driven through its API.
    RemoteProxy {
        /// Base URL of the API, without a trailing slash.
        api: String,
        /// The proxy's name there.
        name: String,
    },
    /// An existing process.
    Process(ProcessSelector),
    /// A host: a network namespace, or the local host (`netns: None`).
    Host {
        /// The namespace; `None` for the local host.
        netns: Option<String>,
        /// The interface faults act on; `None`: the one non-loopback interface.
        interface: Option<String>,
    },
    /// An HTTP (L7) fault proxy the runner starts.
    HttpProxy {
        /// `host:port` to listen on.
        listen: String,
        /// `http://…` or `https://…`.
        upstream: String,
        /// A PEM CA trusted for an https upstream.
        upstream_ca: Option<String>,
    },
}

/// How a process target is found when the run starts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessSelector {
    /// By id.
    Pid(i32),
    /// By a file holding its id.
    Pidfile(String),
    /// By a regex on its command line; must match exactly one process.
    Command(String),
}

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

/// A fault with the targets its scope chose.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedFault {
    /// Unique name.
    pub name: String,
    /// What it does.
    pub kind: FaultKind,
    /// The scope it was chosen with.
    pub scope: Scope,
    /// Names of the targets it acts on (at least one).
    pub targets: Vec<String>,
    /// Its position in the file's `faults`, for diagnostics.
    #[serde(skip)]
    pub index: usize,
}

/// The built-in fault kinds: one closed set, so every `match` over it is checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FaultKind {
    /// A toxic on a proxy target, on one or both streams.
    Proxy {
        /// The streams it acts on.
        streams: Vec<Stream>,
        /// Share of connections affected.
        toxicity: Ratio,
        /// What it does.
        fault: ProxyFault,
    },
    /// Drop traffic with nftables: from/to `peers` (everyone when empty), one or both ways.
    Partition {
        /// Addresses or target names.
        peers: Vec<Peer>,
        /// Which way.
        direction: crate::spec::PartitionDirectionSpec,
        /// A group shape: the targets split among themselves, each cut from the other side.
        #[serde(skip_serializing_if = "Option::is_none")]
        shape: Option<GroupSplit>,
    },
    /// Kernel-level degradation of a host's packets (latency, corrupt, duplicate, reorder,
    /// rate), by the mechanism this kernel offers.
    Network {
        /// What happens to the packets.
        effect: NetEffect,
        /// Only packets to/from these; empty: all but loopback.
        peers: Vec<Peer>,
        /// Only packets with one of these ports at either end; empty: every port.
        ports: Vec<u16>,
        /// Which way.
        direction: NetDirection,
        /// How it is done here; chosen by [`choose_mechanisms`] once the kernel's capabilities
        /// are known, `None` before.
        mechanism: Option<Mechanism>,
    },
    /// Drop a random share of packets.
    Loss {
        /// Addresses or target names; empty: all but loopback.
        peers: Vec<Peer>,
        /// Which way.
        direction: crate::spec::PartitionDirectionSpec,
        /// Share dropped.
        probability: Ratio,
    },
    /// CPU workers in a cgroup.
    Cpu {
        /// How many.
        workers: u32,
        /// Each one's share of a core, 1..=100.
        percent: u32,
    },
    /// One worker holding resident memory.
    Memory {
        /// How much.
        bytes: u64,
    },
    /// A ballast file filling a filesystem.
    DiskFill {
        /// A directory on it.
        path: String,
        /// Target share used, 1..=100.
        percent: u32,
        /// Free space that must remain.
        margin: u64,
    },
    /// SIGSTOP, reverted with SIGCONT.
    Pause,
    /// A signal that ends the process (or its group, or its cgroup). Irreversible.
    Kill {
        /// Signal number.
        signal: i32,
        /// Its name, for reports.
        signal_name: String,
        /// Whom it is sent to.
        #[serde(skip_serializing_if = "KillReach::is_process")]
        reach: KillReach,
    },
    /// The process's open-files limit lowered to what it has open (plus `headroom`).
    FdExhaustion {
        /// How many more files it may open.
        headroom: u64,
    },
    /// Its user's process limit lowered to what the user runs now (plus `headroom`).
    ProcessLimit {
        /// How many more processes it may start.
        headroom: u64,
    },
    /// Its cgroup frozen (a cgroup made for the fault when it is in the root one).
    Freeze {
        /// Move its descendants into the fault's cgroup too.
        tree: bool,
    },
    /// A restart by a command, then a bounded wait for readiness. Nothing to undo.
    Restart {
        /// The shell command.
        command: String,
        /// When the service counts as back.
        ready: Readiness,
        /// The longest the command and the wait may take together.
        #[serde(with = "units::duration_text")]
        timeout: Duration,
    },
    /// A rule on an HTTP proxy: which requests, how often, what happens.
    Http {
        /// Which requests.
        matcher: crate::fault::net::HttpMatch,
        /// Share of matching requests.
        probability: Ratio,
        /// What happens.
        action: crate::fault::net::HttpRuleAction,
    },
}

/// Whom a `kill` signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// The sides of a group partition, drawn with the seed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupSplit {
    /// The shape asked for.
    pub shape: crate::spec::PartitionShapeSpec,
    /// One side.
    pub a: Vec<String>,
    /// The other side.
    pub b: Vec<String>,
    /// `bridge`: the node that reaches both sides (it gets no rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
}

/// A partition peer: an address, or a host target whose addresses are found when the run
/// starts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    /// An IP address.
    Address(std::net::IpAddr),
    /// A `netns`/`host` target's name.
    Target(String),
}

/// What kind of target a fault kind needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetClass {
    /// A `proxy` target.
    Proxy,
    /// A `process` target.
    Process,
    /// A `netns` or `host` target.
    Host,
    /// An `http_proxy` target.
    HttpProxy,
}

/// Phase durations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Phases {
    /// Steady-state sampling before any fault.
    #[serde(with = "units::duration_text")]
    pub baseline: Duration,
    /// How long faults are held.
    #[serde(with = "units::duration_text")]
    pub inject: Duration,
    /// The longest acceptable time to recover.
    #[serde(with = "units::duration_text")]
    pub recover_within: Duration,
}

// === impl FaultKind ===

impl FaultKind {
    /// The name users write (`latency`, `pause`, …).
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Proxy { fault, .. } => match fault {
                ProxyFault::Latency { .. } => "latency",
                ProxyFault::Bandwidth { .. } => "bandwidth",
                ProxyFault::Timeout { .. } => "timeout",
                ProxyFault::Reset { .. } => "reset",
                ProxyFault::Down => "down",
                ProxyFault::Corrupt { .. } => "corrupt",
            },
            FaultKind::Partition { .. } => "partition",
            FaultKind::Network { effect, .. } => effect.name(),
            FaultKind::Loss { .. } => "loss",
            FaultKind::Cpu { .. } => "cpu",
            FaultKind::Memory { .. } => "memory",
            FaultKind::DiskFill { .. } => "disk-fill",
            FaultKind::Pause => "pause",
            FaultKind::Kill { .. } => "kill",
            FaultKind::FdExhaustion { .. } => "fd-exhaustion",
            FaultKind::ProcessLimit { .. } => "process-limit",
            FaultKind::Freeze { .. } => "freeze",
            FaultKind::Restart { .. } => "restart",
            FaultKind::Http { action, .. } => http_key(action),
        }
    }

    /// The kind of target it acts on.
    pub fn target_class(&self) -> TargetClass {
        match self {
            FaultKind::Proxy { .. } => TargetClass::Proxy,
            FaultKind::Partition { .. }
            | FaultKind::Network { .. }
            | FaultKind::Loss { .. }
            | FaultKind::Cpu { .. }
            | FaultKind::Memory { .. }
            | FaultKind::DiskFill { .. } => TargetClass::Host,
            FaultKind::Pause
            | FaultKind::Kill { .. }
            | FaultKind::FdExhaustion { .. }
            | FaultKind::ProcessLimit { .. }
            | FaultKind::Freeze { .. }
            | FaultKind::Restart { .. } => TargetClass::Process,
            FaultKind::Http { .. } => TargetClass::HttpProxy,
        }
    }

    /// Why it cannot be undone, if it cannot.
    pub fn irreversible(&self) -> Option<&'static str> {
        match self {
            FaultKind::Kill {
                reach: KillReach::Process,
                ..
            } => Some("a killed process cannot be brought back by chaosforge"),
            FaultKind::Kill { .. } => Some("killed processes cannot be brought back by chaosforge"),
            // A restart leaves nothing to undo, but it is what operators do every day and the
            // service comes back by itself: it needs no permission.
            FaultKind::Restart { .. } => None,
            _ => None,
        }
    }

    /// A one-line description for plans and reports: `latency 200ms ±20ms (downstream)`.
    pub fn describe(&self) -> String {
        match self {
            FaultKind::Proxy {
                streams,
                toxicity,
                fault,
            } => {
                let what = match fault {
                    ProxyFault::Latency { delay, jitter } if jitter.is_zero() => {
                        format!("latency {}", units::format_duration(*delay))
                    }
                    ProxyFault::Latency { delay, jitter } => format!(
                        "latency {} ±{}",
                        units::format_duration(*delay),
                        units::format_duration(*jitter)
                    ),
                    ProxyFault::Bandwidth { rate } => format!("bandwidth {rate} B/s"),
                    ProxyFault::Timeout { after: Some(a) } => {
                        format!("timeout (close after {})", units::format_duration(*a))
                    }
                    ProxyFault::Timeout { after: None } => "timeout (hold forever)".into(),
                    ProxyFault::Reset { after } => {
                        format!("reset after {}", units::format_duration(*after))
                    }
                    ProxyFault::Down => "down".into(),
                    ProxyFault::Corrupt { probability, per } => {
                        format!(
                            "corrupt {probability} per {}",
                            if *per == CorruptUnit::Byte {
                                "byte"
                            } else {
                                "chunk"
                            }
                        )
                    }
                };
                let dir = match streams.as_slice() {
                    [Stream::Upstream] => "upstream",
                    [Stream::Downstream] => "downstream",
                    _ => "both ways",
                };
                let tox = if *toxicity == Ratio::ONE {
                    String::new()
                } else {
                    format!(", toxicity {toxicity}")
                };
                if matches!(fault, ProxyFault::Down) {
                    what
                } else {
                    format!("{what} ({dir}{tox})")
                }
            }
            FaultKind::Partition {
                shape: Some(split), ..
            } => {
                let bridge = split
                    .bridge
                    .as_ref()
                    .map(|b| format!(", bridged by {b}"))
                    .unwrap_or_default();
                format!(
                    "partition ({}): {{{}}} | {{{}}}{bridge}",
                    match split.shape {
                        crate::spec::PartitionShapeSpec::Halves => "halves",
                        crate::spec::PartitionShapeSpec::IsolateOne => "isolate-one",
                        crate::spec::PartitionShapeSpec::Bridge => "bridge",
                    },
                    split.a.join(", "),
                    split.b.join(", ")
                )
            }
            FaultKind::Network {
                effect,
                peers,
                ports,
                direction,
                mechanism,
            } => {
                let what = match effect {
                    NetEffect::Latency { delay, jitter } if jitter.is_zero() => {
                        format!("latency {}", units::format_duration(*delay))
                    }
                    NetEffect::Latency { delay, jitter } => format!(
                        "latency {} ±{}",
                        units::format_duration(*delay),
                        units::format_duration(*jitter)
                    ),
                    NetEffect::Corrupt { probability } => {
                        format!("corrupt {probability} of packets")
                    }
                    NetEffect::Duplicate { probability } => {
                        format!("duplicate {probability} of packets")
                    }
                    NetEffect::Reorder { probability, gap } => format!(
                        "reorder: hold {probability} of packets back by {}",
                        units::format_duration(*gap)
                    ),
                    NetEffect::Rate { bits_per_sec } => {
                        format!("rate {}", format_bits(*bits_per_sec))
                    }
                };
                let mut scope = Vec::new();
                if !peers.is_empty() {
                    scope.push(format!("peers {}", describe_peers(peers)));
                }
                if !ports.is_empty() {
                    let p: Vec<String> = ports.iter().map(u16::to_string).collect();
                    scope.push(format!("ports {}", p.join(", ")));
                }
                scope.push(
                    match direction {
                        NetDirection::Egress => "egress",
                        NetDirection::Ingress => "ingress",
                        NetDirection::Both => "both ways",
                    }
                    .to_string(),
                );
                let how = match mechanism {
                    Some(m) => format!(", via {m}"),
                    None => String::new(),
                };
                format!("{what} ({}{how})", scope.join(", "))
            }
            FaultKind::Partition {
                peers, direction, ..
            } => {
                let who = if peers.is_empty() {
                    "everyone".to_string()
                } else {
                    describe_peers(peers)
                };
                let way = match direction {
                    crate::spec::PartitionDirectionSpec::Both => "both ways",
                    crate::spec::PartitionDirectionSpec::Ingress => "incoming only",
                    crate::spec::PartitionDirectionSpec::Egress => "outgoing only",
                };
                format!("partition from {who} ({way})")
            }
            FaultKind::Loss {
                peers, probability, ..
            } => {
                let who = if peers.is_empty() {
                    "all packets".to_string()
                } else {
                    format!("packets of {}", describe_peers(peers))
                };
                format!("loss of {probability} of {who}")
            }
            FaultKind::Cpu { workers, percent } => {
                format!("cpu: {workers} worker(s) at {percent}% of a core")
            }
            FaultKind::Memory { bytes } => format!("memory: hold {} MiB", bytes / (1024 * 1024)),
            FaultKind::DiskFill { path, percent, .. } => {
                format!("disk-fill: fill the filesystem of {path} to {percent}%")
            }
            FaultKind::Pause => "pause (SIGSTOP, reverted by SIGCONT)".into(),
            FaultKind::Kill {
                signal_name, reach, ..
            } => match reach {
                KillReach::Process => format!("kill with {signal_name} (irreversible)"),
                KillReach::Group => {
                    format!("kill the process group with {signal_name} (irreversible)")
                }
                KillReach::Cgroup => {
                    format!("kill every process in the cgroup with {signal_name} (irreversible)")
                }
            },
            FaultKind::FdExhaustion { headroom: 0 } => {
                "fd-exhaustion: no new file descriptors (RLIMIT_NOFILE)".into()
            }
            FaultKind::FdExhaustion { headroom } => {
                format!("fd-exhaustion: {headroom} more file descriptor(s) (RLIMIT_NOFILE)")
            }
            FaultKind::ProcessLimit { headroom: 0 } => {
                "process-limit: no new processes for its user (RLIMIT_NPROC)".into()
            }
            FaultKind::ProcessLimit { headroom } => {
                format!("process-limit: {headroom} more process(es) for its user (RLIMIT_NPROC)")
            }
            FaultKind::Freeze { tree: false } => "freeze its cgroup (reverted by thawing)".into(),
            FaultKind::Freeze { tree: true } => {
                "freeze its cgroup, with its descendants (reverted by thawing)".into()
            }
            FaultKind::Restart {
                command,
                ready,
                timeout,
            } => format!(
                "restart with `{command}`, ready within {} when {}",
                units::format_duration(*timeout),
                ready.describe()
            ),
            FaultKind::Http {
                matcher,
                probability,
                action,
            } => describe_http(matcher, *probability, action),
        }
    }
}

/// The key users write for an HTTP rule.
fn http_key(action: &crate::fault::net::HttpRuleAction) -> &'static str {
    use crate::fault::net::HttpRuleAction as A;
    match action {
        A::Abort { .. } | A::Drop => "http-abort",
        A::Delay { .. } => "http-delay",
        A::Hang => "http-hang",
        A::Truncate { .. } | A::FlipBytes { .. } | A::JsonReplace { .. } => "http-corrupt",
        A::Headers { .. } => "http-header",
        A::AuthStrip { .. } => "auth-strip",
        A::AuthForge { .. } => "auth-forge",
        A::Replay { .. } => "replay",
        A::TlsMitm { .. } => "tls-mitm",
    }
}

fn describe_http(
    m: &crate::fault::net::HttpMatch,
    probability: Ratio,
    action: &crate::fault::net::HttpRuleAction,
) -> String {
    use crate::fault::net::{CredentialRule as C, ForgeryRule as F, HttpRuleAction as A};
    let cred = |c: &C| match c {
        C::Authorization => "the Authorization header".to_string(),
        C::Cookie(n) => format!("cookie `{n}`"),
        C::Header(n) => format!("header `{n}`"),
    };
    let what = match action {
        A::Abort { status, .. } => format!("answer {status} without calling upstream"),
        A::Drop => "drop the connection".into(),
        A::Delay {
            request,
            response,
            jitter,
        } => {
            let (on, d) = if request.is_zero() {
                ("response", response)
            } else {
                ("request", request)
            };
            if jitter.is_zero() {
                format!("delay the {on} by {}", units::format_duration(*d))
            } else {
                format!(
                    "delay the {on} by {} ±{}",
                    units::format_duration(*d),
                    units::format_duration(*jitter)
                )
            }
        }
        A::Hang => "never answer".into(),
        A::Truncate { keep } => format!("truncate the response body to {keep} bytes"),
        A::FlipBytes { probability } => format!("flip bits in {probability} of the body's bytes"),
        A::JsonReplace { path, value } => format!("replace {path} by {value} in the JSON body"),
        A::Headers { request, response } => {
            format!(
                "edit headers ({} on requests, {} on responses)",
                request.len(),
                response.len()
            )
        }
        A::AuthStrip { credential } => format!("strip {}", cred(credential)),
        A::AuthForge {
            credential,
            forgery,
        } => format!(
            "forge {} ({})",
            cred(credential),
            match forgery {
                F::JwtWrongKey => "JWT re-signed with a wrong key".to_string(),
                F::JwtAlgNone => "JWT with alg none".into(),
                F::JwtExpired => "expired JWT".into(),
                F::JwtClaims(c) => format!("JWT with {} claim(s) changed", c.len()),
                F::Token(_) => "a literal token".into(),
            }
        ),
        A::Replay { times } => format!("replay the first matching request {times} time(s)"),
        A::TlsMitm { certificate } => format!(
            "terminate TLS with {} certificate",
            match certificate {
                crate::fault::net::MitmVariant::Untrusted => "an untrusted",
                crate::fault::net::MitmVariant::Expired => "an expired",
                crate::fault::net::MitmVariant::NotYetValid => "a not-yet-valid",
                crate::fault::net::MitmVariant::WrongHost => "a wrong-host",
            }
        ),
    };
    let mut on = Vec::new();
    if !m.methods.is_empty() {
        on.push(m.methods.join("/"));
    }
    if let Some(p) = &m.path_prefix {
        on.push(format!("{p}*"));
    }
    if let Some(r) = &m.path_regex {
        on.push(format!("~{r}"));
    }
    for h in &m.headers {
        on.push(match &h.equals {
            Some(v) => format!("{}: {v}", h.name),
            None => format!("with {}", h.name),
        });
    }
    let scope = if on.is_empty() {
        "every request".to_string()
    } else {
        on.join(" ")
    };
    let share = if probability == Ratio::ONE {
        String::new()
    } else {
        format!(", {probability} of them")
    };
    format!("{what} ({scope}{share})")
}

// === impl KillReach ===

impl KillReach {
    fn is_process(&self) -> bool {
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

// === compile ===

/// [`load`], then [`choose_mechanisms`] with this machine's capabilities (probed only when
/// the plan has kernel-level network faults): what `plan` and `run` need.
pub fn load_here(path: &Path, seed: Option<u64>) -> Result<(Document, Plan), Diagnostics> {
    let (doc, mut plan) = load(path, seed)?;
    let mut diags = check_hosts(&doc, &plan);
    if plan
        .faults
        .iter()
        .any(|f| matches!(f.kind, FaultKind::Network { .. }))
        && let Err(d) = choose_mechanisms(&doc, &mut plan, crate::fault::host::caps::probe())
    {
        diags.extend(d);
    }
    if diags.is_empty() {
        Ok((doc, plan))
    } else {
        Err(diags)
    }
}

/// Checks, on this machine, that every `netns` target's namespace exists and that every named
/// interface is there: a typo is caught before the run, with its position.
pub fn check_hosts(doc: &Document, plan: &Plan) -> Diagnostics {
    let mut diags = Diagnostics::new();
    // A valid plan holds every target, in file order.
    for (i, t) in plan.targets.iter().enumerate() {
        let TargetKind::Host { netns, interface } = &t.kind else {
            continue;
        };
        if let Some(ns) = netns
            && !Path::new("/run/netns").join(ns).exists()
        {
            diags.push(doc.diag(
                &format!("targets[{i}].netns"),
                format!("network namespace `{ns}` does not exist (see `ip netns list`)"),
            ));
            continue;
        }
        let Some(name) = interface else { continue };
        let mut cmd = std::process::Command::new("ip");
        if let Some(ns) = netns {
            cmd.args(["-n", ns]);
        }
        let found = cmd
            .args(["link", "show", "dev", name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        match found {
            Ok(s) if s.success() => {}
            Ok(_) => {
                let place = netns
                    .as_ref()
                    .map_or("this host".to_string(), |ns| format!("namespace `{ns}`"));
                diags.push(doc.diag(
                    &format!("targets[{i}].interface"),
                    format!("{place} has no interface `{name}` (see `ip link`)"),
                ));
            }
            // Without `ip` the run finds out when it resolves the target; say nothing here.
            Err(_) => {}
        }
    }
    diags
}

/// Reads, parses, decodes and compiles an experiment file. `seed` overrides the file's seed.
pub fn load(path: &Path, seed: Option<u64>) -> Result<(Document, Plan), Diagnostics> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Diagnostic::new(file.clone(), None, "", format!("cannot read file: {e}")))?;
    let doc = Document::parse(&file, &text)?;
    let spec: ExperimentSpec = crate::de::decode(&doc)?;
    let plan = compile(&doc, &spec, seed)?;
    Ok((doc, plan))
}

/// Validates `spec` (decoded from `doc`) and resolves its scopes. Returns every problem found.
///
/// `seed` overrides the file's seed; with neither, a random seed is drawn (and reported).
pub fn compile(
    doc: &Document,
    spec: &ExperimentSpec,
    seed: Option<u64>,
) -> Result<Plan, Diagnostics> {
    let mut cx = Cx {
        doc,
        diags: Diagnostics::new(),
    };
    if spec.api_version != API_VERSION {
        cx.err(
            "apiVersion",
            format!(
                "unsupported apiVersion `{}`; this chaosforge reads `{API_VERSION}`",
                spec.api_version
            ),
        );
    }
    if spec.name.trim().is_empty() {
        cx.err("name", "the experiment needs a name");
    }
    let seed = seed.or(spec.seed).unwrap_or_else(random_seed);

    let targets = cx.targets(&spec.targets);
    let monitors = cx.monitors(&spec.hypothesis.monitors);
    let phases = Phases {
        baseline: cx.positive_duration(
            "phases.baseline",
            spec.phases.baseline.as_deref(),
            Duration::from_secs(10),
        ),
        inject: cx.positive_duration(
            "phases.inject",
            spec.phases.inject.as_deref(),
            Duration::from_secs(30),
        ),
        recover_within: cx.positive_duration(
            "phases.recover_within",
            spec.phases.recover_within.as_deref(),
            Duration::from_secs(30),
        ),
    };
    let faults = cx.faults(
        &spec.faults,
        &spec.targets,
        &targets,
        seed,
        spec.policies.allow_irreversible,
    );
    let halt_when = spec
        .policies
        .halt_when
        .iter()
        .enumerate()
        .filter_map(|(i, t)| cx.expectation(&format!("policies.halt_when[{i}]"), t))
        .collect();
    let halt_window = cx.positive_duration(
        "policies.halt_window",
        spec.policies.halt_window.as_deref(),
        Duration::from_secs(1),
    );

    if !cx.diags.is_empty() {
        let mut d = cx.diags;
        d.sort();
        return Err(d);
    }
    let title = spec.hypothesis.title.clone().unwrap_or_else(|| {
        let all: Vec<String> = monitors
            .iter()
            .flat_map(|m: &MonitorPlan| {
                m.expect
                    .iter()
                    .map(move |e| format!("{}: {}", m.name, e.text))
            })
            .collect();
        all.join(", ")
    });
    Ok(Plan {
        name: spec.name.clone(),
        description: spec.description.clone(),
        title,
        file: doc.file().to_string(),
        seed,
        targets: targets.into_iter().flatten().collect(),
        monitors,
        faults,
        phases,
        halt_when,
        halt_window,
    })
}

fn random_seed() -> u64 {
    // Only the seed itself needs entropy; everything after it is reproducible from the journal.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    scope::SeededRng::new(nanos ^ u64::from(std::process::id()).rotate_left(32)).next_u64() >> 1
}

struct Cx<'a> {
    doc: &'a Document,
    diags: Diagnostics,
}

impl Cx<'_> {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.diags.push(self.doc.diag(path, message));
    }

    fn unit_err(&mut self, path: &str, e: UnitError) {
        self.diags
            .push(self.doc.diag_in(path, e.offset, e.len, e.message));
    }

    fn duration(&mut self, path: &str, text: Option<&str>, default: Duration) -> Duration {
        match text {
            None => default,
            Some(t) => units::parse_duration(t).unwrap_or_else(|e| {
                self.unit_err(path, e);
                default
            }),
        }
    }

    fn positive_duration(&mut self, path: &str, text: Option<&str>, default: Duration) -> Duration {
        let d = self.duration(path, text, default);
        if d.is_zero() {
            self.err(path, "must be longer than zero");
        }
        d
    }

    /// A whole percentage in 1..=100 (`50` or `"50%"`), 100 when absent.
    fn percent(&mut self, path: &str, text: Option<&str>) -> u32 {
        let Some(t) = text else { return 100 };
        let n = t.trim().trim_end_matches('%').trim_end();
        match n.parse::<u32>() {
            Ok(v) if (1..=100).contains(&v) => v,
            _ => {
                self.err(
                    path,
                    format!("`{t}` is not a whole percentage from 1 to 100"),
                );
                100
            }
        }
    }

    /// A `headroom`: a count from 0 to 1 000 000, 0 when absent.
    fn headroom(&mut self, path: &str, n: Option<i64>) -> u64 {
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

    /// A sampling interval: positive, and at least 1 ms (the monitor's scheduling resolution).
    fn interval(&mut self, path: &str, text: Option<&str>) -> Duration {
        let d = self.positive_duration(path, text, Duration::from_secs(1));
        if !d.is_zero() && d < crate::monitor::MIN_INTERVAL {
            self.err(path, "must be at least 1ms");
        }
        d
    }

    fn ratio(&mut self, path: &str, text: Option<&str>, default: Ratio) -> Ratio {
        match text {
            None => default,
            Some(t) => Ratio::parse(t).unwrap_or_else(|e| {
                self.unit_err(path, e);
                default
            }),
        }
    }

    fn expectation(&mut self, path: &str, text: &str) -> Option<Expectation> {
        Expectation::parse(text)
            .map_err(|e| self.unit_err(path, e))
            .ok()
    }

    fn address(&mut self, path: &str, addr: &str) {
        if let Err(msg) = check_host_port(addr) {
            self.err(path, msg);
        }
    }

    fn unique<'s>(&mut self, what: &str, base: &str, names: impl Iterator<Item = &'s str>) {
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

    /// One entry per spec target, `None` where it was invalid (so indices stay aligned).
    fn targets(&mut self, specs: &[spec::TargetSpec]) -> Vec<Option<Target>> {
        self.unique("target", "targets", specs.iter().map(|t| t.name.as_str()));
        specs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let base = format!("targets[{i}]");
                let kinds: Vec<&str> = [
                    ("proxy", t.proxy.is_some()),
                    ("process", t.process.is_some()),
                    ("netns", t.netns.is_some()),
                    ("host", t.host.is_some()),
                    ("http_proxy", t.http_proxy.is_some()),
                ]
                .into_iter()
                .filter_map(|(k, p)| p.then_some(k))
                .collect();
                if let Some(second) = kinds.get(1) {
                    self.err(
                        &format!("{base}.{second}"),
                        format!("a target has one kind; this one has {}", kinds.join(" and ")),
                    );
                    return None;
                }
                if t.interface.is_some() && t.netns.is_none() && t.host.is_none() {
                    self.err(&format!("{base}.interface"), "`interface` goes with `netns` or `host`");
                }
                let kind = if let Some(p) = &t.proxy {
                    self.proxy_target(&format!("{base}.proxy"), p)?
                } else if let Some(h) = &t.http_proxy {
                    self.http_proxy_target(&format!("{base}.http_proxy"), h)
                } else if let Some(p) = &t.process {
                    TargetKind::Process(self.process(&format!("{base}.process"), p)?)
                } else if let Some(ns) = &t.netns {
                    if !valid_netns_name(ns) {
                        self.err(
                            &format!("{base}.netns"),
                            format!("`{ns}` is not a network namespace name (letters, digits, `-`, `_`, `.`)"),
                        );
                    }
                    TargetKind::Host { netns: Some(ns.clone()), interface: t.interface.clone() }
                } else if let Some(h) = &t.host {
                    if h != "local" {
                        self.err(
                            &format!("{base}.host"),
                            format!("`{h}` is not a host chaosforge can reach yet; use `host: local` (remote agents come later)"),
                        );
                    }
                    TargetKind::Host { netns: None, interface: t.interface.clone() }
                } else {
                    self.err(
                        &base,
                        format!("target `{}` needs a kind: `proxy`, `http_proxy`, `process`, `netns` or `host`", t.name),
                    );
                    return None;
                };
                if let Some(i) = &t.interface
                    && !valid_interface_name(i)
                {
                    self.err(&format!("{base}.interface"), format!("`{i}` is not an interface name"));
                }
                Some(Target {
                    name: t.name.clone(),
                    labels: t.labels.clone(),
                    kind,
                })
            })
            .collect()
    }

    fn http_proxy_target(&mut self, base: &str, h: &spec::HttpProxyTargetSpec) -> TargetKind {
        self.address(&format!("{base}.listen"), &h.listen);
        match reqwest::Url::parse(&h.upstream) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {}
            _ => self.err(
                &format!("{base}.upstream"),
                format!("`{}` is not an http(s) URL, e.g. `http://127.0.0.1:8080` or `https://api.internal:8443`", h.upstream),
            ),
        }
        if let Some(ca) = &h.upstream_ca {
            if !h.upstream.starts_with("https://") {
                self.err(
                    &format!("{base}.upstream_ca"),
                    "`upstream_ca` is for an `https://` upstream",
                );
            } else if !Path::new(ca).is_file() {
                self.err(
                    &format!("{base}.upstream_ca"),
                    format!("`{ca}` is not a file"),
                );
            }
        }
        TargetKind::HttpProxy {
            listen: h.listen.clone(),
            upstream: h.upstream.clone(),
            upstream_ca: h.upstream_ca.clone(),
        }
    }

    fn proxy_target(&mut self, base: &str, p: &spec::ProxyTargetSpec) -> Option<TargetKind> {
        match (&p.listen, &p.upstream, &p.api, &p.name) {
            (Some(listen), Some(upstream), None, None) => {
                self.address(&format!("{base}.listen"), listen);
                self.address(&format!("{base}.upstream"), upstream);
                Some(TargetKind::Proxy {
                    listen: listen.clone(),
                    upstream: upstream.clone(),
                })
            }
            (None, None, Some(api), Some(name)) => {
                match reqwest::Url::parse(api) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                    _ => self.err(
                        &format!("{base}.api"),
                        format!("`{api}` is not an http(s) URL of a proxy API, e.g. `http://127.0.0.1:8474`"),
                    ),
                }
                if name.trim().is_empty() {
                    self.err(&format!("{base}.name"), "empty proxy name");
                }
                Some(TargetKind::RemoteProxy {
                    api: api.trim_end_matches('/').to_string(),
                    name: name.clone(),
                })
            }
            _ => {
                self.err(
                    base,
                    "give either `listen` and `upstream` (a proxy the runner starts) or `api` and `name` (a proxy on a running server)",
                );
                None
            }
        }
    }

    fn process(&mut self, base: &str, p: &spec::ProcessTargetSpec) -> Option<ProcessSelector> {
        let given = [p.pid.is_some(), p.pidfile.is_some(), p.command.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            self.err(base, "give exactly one of `pid`, `pidfile` or `command`");
            return None;
        }
        if let Some(pid) = p.pid {
            return match i32::try_from(pid) {
                Ok(pid) if pid > 1 => Some(ProcessSelector::Pid(pid)),
                _ => {
                    self.err(
                        &format!("{base}.pid"),
                        format!(
                            "`{pid}` is not a process id a fault may act on (it must be above 1)"
                        ),
                    );
                    None
                }
            };
        }
        if let Some(f) = &p.pidfile {
            if f.trim().is_empty() {
                self.err(&format!("{base}.pidfile"), "empty path");
                return None;
            }
            return Some(ProcessSelector::Pidfile(f.clone()));
        }
        let c = p.command.as_deref().unwrap_or_default();
        match regex::Regex::new(c) {
            Ok(_) if !c.is_empty() => Some(ProcessSelector::Command(c.to_string())),
            Ok(_) => {
                self.err(
                    &format!("{base}.command"),
                    "empty pattern would match every process",
                );
                None
            }
            Err(e) => {
                let msg = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or("invalid")
                    .trim()
                    .trim_start_matches("error: ")
                    .to_string();
                self.err(
                    &format!("{base}.command"),
                    format!("invalid regular expression: {msg}"),
                );
                None
            }
        }
    }

    fn monitors(&mut self, specs: &[spec::MonitorSpec]) -> Vec<MonitorPlan> {
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
                (Some(h), None) => {
                    let p = format!("{base}.http");
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
                        Err(e) => {
                            self.err(&format!("{p}.url"), format!("invalid URL `{}`: {e}", h.url))
                        }
                    }
                    let method = h.method.clone().unwrap_or_else(|| "GET".into());
                    if reqwest::Method::from_bytes(method.as_bytes()).is_err() || method.is_empty()
                    {
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

    fn faults(
        &mut self,
        specs: &[spec::FaultSpec],
        target_specs: &[spec::TargetSpec],
        targets: &[Option<Target>],
        seed: u64,
        allow_irreversible: bool,
    ) -> Vec<PlannedFault> {
        self.unique("fault", "faults", specs.iter().map(|f| f.name.as_str()));
        let mut out = Vec::new();
        for (i, f) in specs.iter().enumerate() {
            let base = format!("faults[{i}]");
            // Whether `latency` and `corrupt` act on a proxy or on hosts depends on the targets.
            let on_host = target_specs
                .iter()
                .enumerate()
                .filter(|(_, t)| scope::matches(&f.target.select, &t.name, &t.labels))
                .any(|(ti, _)| {
                    matches!(
                        targets.get(ti),
                        Some(Some(Target {
                            kind: TargetKind::Host { .. },
                            ..
                        }))
                    )
                });
            let Some((key, kind)) = self.fault_kind(&base, f, on_host) else {
                continue;
            };
            if let Some(why) = kind.irreversible()
                && !allow_irreversible
            {
                self.err(
                    &format!("{base}.{key}"),
                    format!("`{key}` is irreversible ({why}); set `policies.allow_irreversible: true` to allow it"),
                );
            }
            if let FaultKind::Partition { peers, .. }
            | FaultKind::Loss { peers, .. }
            | FaultKind::Network { peers, .. } = &kind
            {
                for (j, peer) in peers.iter().enumerate() {
                    let Peer::Target(name) = peer else { continue };
                    let found = target_specs.iter().find(|t| &t.name == name);
                    let path = format!("{base}.{key}.peers[{j}]");
                    match found {
                        Some(t) if t.netns.is_some() || t.host.is_some() => {}
                        Some(_) => self.err(
                            &path,
                            format!("peer `{name}` is a target, but not a `netns` or `host` one, so it has no address"),
                        ),
                        None => {
                            let names = target_specs.iter().map(|t| t.name.as_str());
                            let hint = did_you_mean(name, names)
                                .map(|n| format!("; did you mean `{n}`?"))
                                .unwrap_or_default();
                            self.err(
                                &path,
                                format!("`{name}` is neither an IP address nor the name of a target{hint}"),
                            );
                        }
                    }
                }
            }
            let scope = self.scope(&format!("{base}.target.scope"), f.target.scope.as_ref());
            let class = kind.target_class();
            let selected: Vec<(usize, &spec::TargetSpec)> = target_specs
                .iter()
                .enumerate()
                .filter(|(_, t)| scope::matches(&f.target.select, &t.name, &t.labels))
                .collect();
            let sel_path = format!("{base}.target.select");
            if selected.is_empty() {
                let names: Vec<&str> = target_specs.iter().map(|t| t.name.as_str()).collect();
                let hint = f
                    .target
                    .select
                    .get("name")
                    .and_then(|n| did_you_mean(n, names.iter().copied()))
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_default();
                let sel = if f.target.select.is_empty() {
                    "every target, but there are none".to_string()
                } else {
                    format!("{:?}, which no target has", f.target.select)
                };
                self.err(
                    &sel_path,
                    format!("selects zero targets: it asks for {sel}{hint}"),
                );
                continue;
            }
            let mut wrong = Vec::new();
            for (ti, t) in &selected {
                let Some(Some(target)) = targets.get(*ti) else {
                    continue;
                };
                let ok = matches!(
                    (&target.kind, class),
                    (
                        TargetKind::Proxy { .. } | TargetKind::RemoteProxy { .. },
                        TargetClass::Proxy
                    ) | (TargetKind::Process(_), TargetClass::Process)
                        | (TargetKind::Host { .. }, TargetClass::Host)
                        | (TargetKind::HttpProxy { .. }, TargetClass::HttpProxy)
                );
                if let (
                    FaultKind::Http {
                        action: crate::fault::net::HttpRuleAction::TlsMitm { .. },
                        ..
                    },
                    TargetKind::HttpProxy { upstream, .. },
                ) = (&kind, &target.kind)
                    && !upstream.starts_with("https://")
                {
                    self.err(
                        &format!("{base}.tls-mitm"),
                        format!("`tls-mitm` needs an `https://` upstream, and `{}` talks to `{upstream}`: its clients do not use TLS", t.name),
                    );
                }
                if !ok {
                    wrong.push(t.name.as_str());
                }
            }
            if !wrong.is_empty() {
                let need = match class {
                    TargetClass::Proxy => "proxy",
                    TargetClass::Process => "process",
                    TargetClass::Host => "netns or host",
                    TargetClass::HttpProxy => "http_proxy",
                };
                self.err(
                    &sel_path,
                    format!(
                        "`{key}` acts on {need} targets, but the selector matches {}",
                        wrong.join(", ")
                    ),
                );
                continue;
            }
            if let Scope::Count(n) = scope
                && n > selected.len()
            {
                self.err(
                    &format!("{base}.target.scope"),
                    format!(
                        "scope asks for {n} targets but only {} match",
                        selected.len()
                    ),
                );
                continue;
            }
            if let FaultKind::Partition { peers, .. } = &kind
                && peers.is_empty()
                && let Some((_, local)) = selected.iter().find(|(_, t)| t.host.is_some())
            {
                // Full isolation of the machine chaosforge runs on would cut the operator's own
                // session (and the runner's way to report) along with everything else.
                self.err(
                    &format!("{base}.partition"),
                    format!(
                        "isolating the local host `{}` from everyone would cut off this machine; list the `peers` to cut it from",
                        local.name
                    ),
                );
                continue;
            }
            let names: Vec<String> = selected.iter().map(|(_, t)| t.name.clone()).collect();
            let mut chosen = scope.choose(&names, seed, &f.name);
            let mut kind = kind;
            if let FaultKind::Partition {
                shape: Some(split),
                peers,
                direction,
            } = &mut kind
            {
                if !peers.is_empty() {
                    self.err(
                        &format!("{base}.partition.peers"),
                        "a group `shape` splits the selected targets among themselves; leave out `peers`",
                    );
                    continue;
                }
                if *direction != crate::spec::PartitionDirectionSpec::Both {
                    self.err(
                        &format!("{base}.partition.direction"),
                        "a group `shape` cuts both ways; leave out `direction`",
                    );
                    continue;
                }
                let need = if split.shape == crate::spec::PartitionShapeSpec::Bridge {
                    3
                } else {
                    2
                };
                if chosen.len() < need {
                    self.err(
                        &format!("{base}.target.scope"),
                        format!(
                            "shape `{}` needs at least {need} targets, but the scope chooses {} ({}); use `scope: all` or select more",
                            shape_name(split.shape),
                            chosen.len(),
                            chosen.join(", ")
                        ),
                    );
                    continue;
                }
                *split = split_group(split.shape, &chosen, seed, &f.name);
                // The bridge gets no rules: its peers are everyone else, who reach it.
                if let Some(b) = &split.bridge {
                    chosen.retain(|t| t != b);
                }
            }
            out.push(PlannedFault {
                name: f.name.clone(),
                kind,
                scope,
                targets: chosen,
                index: i,
            });
        }
        out
    }

    fn scope(&mut self, path: &str, spec: Option<&ScopeSpec>) -> Scope {
        match spec {
            None | Some(ScopeSpec::Named(ScopeName::Single)) => Scope::Single,
            Some(ScopeSpec::Named(ScopeName::All)) => Scope::All,
            Some(ScopeSpec::Sized(s)) => match (s.count, &s.percent) {
                (Some(n), None) if n >= 1 => Scope::Count(n as usize),
                (Some(n), None) => {
                    self.err(
                        &format!("{path}.count"),
                        format!("count must be at least 1, not {n}"),
                    );
                    Scope::Single
                }
                (None, Some(p)) => {
                    let text = if p.trim_end().ends_with('%') {
                        p.clone()
                    } else {
                        format!("{p}%")
                    };
                    match Ratio::parse(&text) {
                        Ok(r) if r.get() > 0.0 => Scope::Fraction(r.get()),
                        Ok(_) => {
                            self.err(&format!("{path}.percent"), "percent must be above 0");
                            Scope::Single
                        }
                        Err(e) => {
                            self.err(&format!("{path}.percent"), e.message);
                            Scope::Single
                        }
                    }
                }
                _ => {
                    self.err(path, "give exactly one of `count` or `percent`");
                    Scope::Single
                }
            },
        }
    }

    /// A proxy fault's streams; `egress`/`ingress` are host words.
    fn proxy_streams(&mut self, p: &str, d: Option<spec::DirectionSpec>) -> Vec<Stream> {
        match d.unwrap_or_default() {
            spec::DirectionSpec::Upstream => vec![Stream::Upstream],
            spec::DirectionSpec::Downstream => vec![Stream::Downstream],
            spec::DirectionSpec::Both => vec![Stream::Upstream, Stream::Downstream],
            d @ (spec::DirectionSpec::Egress | spec::DirectionSpec::Ingress) => {
                self.err(
                    &format!("{p}.direction"),
                    format!(
                        "`{}` is for host targets; on a proxy write `upstream`, `downstream` or `both`",
                        if d == spec::DirectionSpec::Egress { "egress" } else { "ingress" }
                    ),
                );
                vec![Stream::Downstream]
            }
        }
    }

    /// `peers` and `ports` narrow host faults only.
    fn proxy_only(&mut self, p: &str, peers: &[String], ports: &[u16]) {
        for (field, given) in [("peers", !peers.is_empty()), ("ports", !ports.is_empty())] {
            if given {
                self.err(
                    &format!("{p}.{field}"),
                    format!(
                        "`{field}` is for host (`netns`/`host`) targets; this fault acts on a proxy"
                    ),
                );
            }
        }
    }

    /// A kernel-level network fault; its mechanism is chosen later ([`choose_mechanisms`]).
    fn network(
        &mut self,
        p: &str,
        effect: NetEffect,
        peers: &[String],
        ports: &[u16],
        direction: Option<spec::DirectionSpec>,
    ) -> FaultKind {
        let direction =
            match direction.unwrap_or(spec::DirectionSpec::Egress) {
                spec::DirectionSpec::Egress => NetDirection::Egress,
                spec::DirectionSpec::Ingress => NetDirection::Ingress,
                spec::DirectionSpec::Both => NetDirection::Both,
                d @ (spec::DirectionSpec::Upstream | spec::DirectionSpec::Downstream) => {
                    self.err(
                    &format!("{p}.direction"),
                    format!(
                        "`{}` is for proxy targets; on a host write `egress`, `ingress` or `both`",
                        if d == spec::DirectionSpec::Upstream { "upstream" } else { "downstream" }
                    ),
                );
                    NetDirection::Egress
                }
            };
        for (j, port) in ports.iter().enumerate() {
            if *port == 0 {
                self.err(
                    &format!("{p}.ports[{j}]"),
                    "port 0 matches nothing; give 1–65535",
                );
            }
        }
        FaultKind::Network {
            effect,
            peers: parse_peers(peers),
            ports: ports.to_vec(),
            direction,
            mechanism: None,
        }
    }

    /// The fault's one kind, or a diagnostic when it has none or several. `on_host`: the
    /// selector matches host targets, so `latency` and `corrupt` act on packets.
    fn fault_kind(
        &mut self,
        base: &str,
        f: &spec::FaultSpec,
        on_host: bool,
    ) -> Option<(&'static str, FaultKind)> {
        let present: Vec<&'static str> = [
            ("latency", f.latency.is_some()),
            ("bandwidth", f.bandwidth.is_some()),
            ("timeout", f.timeout.is_some()),
            ("reset", f.reset.is_some()),
            ("down", f.down.is_some()),
            ("corrupt", f.corrupt.is_some()),
            ("duplicate", f.duplicate.is_some()),
            ("reorder", f.reorder.is_some()),
            ("rate", f.rate.is_some()),
            ("pause", f.pause.is_some()),
            ("kill", f.kill.is_some()),
            ("partition", f.partition.is_some()),
            ("loss", f.loss.is_some()),
            ("cpu", f.cpu.is_some()),
            ("memory", f.memory.is_some()),
            ("disk-fill", f.disk_fill.is_some()),
            ("fd-exhaustion", f.fd_exhaustion.is_some()),
            ("process-limit", f.process_limit.is_some()),
            ("freeze", f.freeze.is_some()),
            ("restart", f.restart.is_some()),
            ("http-abort", f.http_abort.is_some()),
            ("http-delay", f.http_delay.is_some()),
            ("http-hang", f.http_hang.is_some()),
            ("http-corrupt", f.http_corrupt.is_some()),
            ("http-header", f.http_header.is_some()),
            ("auth-strip", f.auth_strip.is_some()),
            ("auth-forge", f.auth_forge.is_some()),
            ("replay", f.replay.is_some()),
            ("tls-mitm", f.tls_mitm.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.then_some(k))
        .collect();
        match present.as_slice() {
            [] => {
                self.err(
                    base,
                    format!(
                        "fault `{}` names no fault kind; add one of: latency, bandwidth, timeout, reset, down, corrupt, duplicate, reorder, rate, partition, loss, cpu, memory, disk-fill, pause, kill, freeze, fd-exhaustion, process-limit, restart, http-abort, http-delay, http-hang, http-corrupt, http-header, auth-strip, auth-forge, replay, tls-mitm",
                        f.name
                    ),
                );
                return None;
            }
            [_] => {}
            [_, second, ..] => {
                self.err(
                    &format!("{base}.{second}"),
                    format!(
                        "a fault has one kind; this one has {} (split it into several faults)",
                        present.join(" and ")
                    ),
                );
                return None;
            }
        }
        let key = present[0];
        let p = format!("{base}.{key}");
        let proxy = |streams, toxicity, fault| FaultKind::Proxy {
            streams,
            toxicity,
            fault,
        };
        let kind = if let Some(l) = &f.latency {
            let delay = self.duration(&format!("{p}.delay"), Some(&l.delay), Duration::ZERO);
            let jitter = self.duration(&format!("{p}.jitter"), l.jitter.as_deref(), Duration::ZERO);
            if on_host {
                if l.toxicity.is_some() {
                    self.err(
                        &format!("{p}.toxicity"),
                        "`toxicity` is for proxy targets; on a host every matching packet is delayed (narrow it with `peers` or `ports`)",
                    );
                }
                if jitter > delay {
                    self.err(
                        &format!("{p}.jitter"),
                        format!(
                            "jitter {} is larger than the delay {}: a packet cannot leave before it was sent",
                            units::format_duration(jitter),
                            units::format_duration(delay)
                        ),
                    );
                }
                self.network(
                    &p,
                    NetEffect::Latency { delay, jitter },
                    &l.peers,
                    &l.ports,
                    l.direction,
                )
            } else {
                self.proxy_only(&p, &l.peers, &l.ports);
                let tox = self.ratio(&format!("{p}.toxicity"), l.toxicity.as_deref(), Ratio::ONE);
                proxy(
                    self.proxy_streams(&p, l.direction),
                    tox,
                    ProxyFault::Latency { delay, jitter },
                )
            }
        } else if let Some(d) = &f.duplicate {
            let probability = self.ratio(
                &format!("{p}.probability"),
                Some(&d.probability),
                Ratio::ZERO,
            );
            self.network(
                &p,
                NetEffect::Duplicate { probability },
                &d.peers,
                &d.ports,
                d.direction,
            )
        } else if let Some(r) = &f.reorder {
            let probability = self.ratio(
                &format!("{p}.probability"),
                Some(&r.probability),
                Ratio::ZERO,
            );
            let gap = self.duration(
                &format!("{p}.gap"),
                Some(r.gap.as_deref().unwrap_or("10ms")),
                Duration::from_millis(10),
            );
            if gap.is_zero() {
                self.err(
                    &format!("{p}.gap"),
                    "a gap of 0 reorders nothing; give e.g. `10ms`",
                );
            }
            self.network(
                &p,
                NetEffect::Reorder { probability, gap },
                &r.peers,
                &r.ports,
                r.direction,
            )
        } else if let Some(r) = &f.rate {
            let bits_per_sec = match units::parse_byte_rate(&r.rate) {
                Ok(bytes) => bytes.saturating_mul(8),
                Err(e) => {
                    self.unit_err(&format!("{p}.rate"), e);
                    8
                }
            };
            self.network(
                &p,
                NetEffect::Rate { bits_per_sec },
                &r.peers,
                &r.ports,
                r.direction,
            )
        } else if let Some(b) = &f.bandwidth {
            let rate = units::parse_byte_rate(&b.rate).unwrap_or_else(|e| {
                self.unit_err(&format!("{p}.rate"), e);
                1
            });
            let tox = self.ratio(&format!("{p}.toxicity"), b.toxicity.as_deref(), Ratio::ONE);
            proxy(
                self.proxy_streams(&p, Some(b.direction)),
                tox,
                ProxyFault::Bandwidth { rate },
            )
        } else if let Some(t) = &f.timeout {
            let after = t
                .after
                .as_deref()
                .map(|a| self.duration(&format!("{p}.after"), Some(a), Duration::ZERO));
            let tox = self.ratio(&format!("{p}.toxicity"), t.toxicity.as_deref(), Ratio::ONE);
            proxy(
                self.proxy_streams(&p, Some(t.direction)),
                tox,
                ProxyFault::Timeout { after },
            )
        } else if let Some(r) = &f.reset {
            let after = self.duration(&format!("{p}.after"), r.after.as_deref(), Duration::ZERO);
            let tox = self.ratio(&format!("{p}.toxicity"), r.toxicity.as_deref(), Ratio::ONE);
            proxy(vec![Stream::Downstream], tox, ProxyFault::Reset { after })
        } else if f.down.is_some() {
            proxy(vec![Stream::Downstream], Ratio::ONE, ProxyFault::Down)
        } else if let Some(c) = &f.corrupt {
            let probability = self.ratio(
                &format!("{p}.probability"),
                Some(&c.probability),
                Ratio::ZERO,
            );
            if on_host {
                if c.toxicity.is_some() {
                    self.err(
                        &format!("{p}.toxicity"),
                        "`toxicity` is for proxy targets; on a host `probability` is the share of packets",
                    );
                }
                if c.per.is_some() {
                    self.err(
                        &format!("{p}.per"),
                        "`per` is for proxy targets; on a host one bit of a packet is flipped",
                    );
                }
                self.network(
                    &p,
                    NetEffect::Corrupt { probability },
                    &c.peers,
                    &c.ports,
                    c.direction,
                )
            } else {
                self.proxy_only(&p, &c.peers, &c.ports);
                let tox = self.ratio(&format!("{p}.toxicity"), c.toxicity.as_deref(), Ratio::ONE);
                let per = match c.per.unwrap_or_default() {
                    spec::CorruptPerSpec::Byte => CorruptUnit::Byte,
                    spec::CorruptPerSpec::Chunk => CorruptUnit::Chunk,
                };
                proxy(
                    self.proxy_streams(&p, c.direction),
                    tox,
                    ProxyFault::Corrupt { probability, per },
                )
            }
        } else if let Some(p) = &f.partition {
            FaultKind::Partition {
                peers: parse_peers(&p.peers),
                direction: p.direction,
                // The sides are drawn once the targets are chosen.
                shape: p.shape.map(|shape| GroupSplit {
                    shape,
                    a: Vec::new(),
                    b: Vec::new(),
                    bridge: None,
                }),
            }
        } else if let Some(l) = &f.loss {
            let probability = self.ratio(
                &format!("{p}.probability"),
                Some(&l.probability),
                Ratio::ZERO,
            );
            FaultKind::Loss {
                peers: parse_peers(&l.peers),
                direction: l.direction,
                probability,
            }
        } else if let Some(c) = &f.cpu {
            let workers = match c.workers {
                None => 1,
                Some(n) if (1..=1024).contains(&n) => n as u32,
                Some(n) => {
                    self.err(
                        &format!("{p}.workers"),
                        format!("`{n}` workers: give 1 to 1024"),
                    );
                    1
                }
            };
            let percent = self.percent(&format!("{p}.percent"), c.percent.as_deref());
            FaultKind::Cpu { workers, percent }
        } else if let Some(m) = &f.memory {
            let bytes = units::parse_bytes(&m.size).unwrap_or_else(|e| {
                self.unit_err(&format!("{p}.size"), e);
                1
            });
            if bytes == 0 {
                self.err(&format!("{p}.size"), "must be more than 0 bytes");
            }
            FaultKind::Memory { bytes }
        } else if let Some(d) = &f.disk_fill {
            let dir = std::path::Path::new(&d.path);
            if !dir.is_absolute() {
                self.err(
                    &format!("{p}.path"),
                    format!("`{}` must be an absolute path", d.path),
                );
            } else if dir.components().count() <= 1 {
                self.err(
                    &format!("{p}.path"),
                    "refusing to fill the root filesystem `/`",
                );
            }
            let percent = self.percent(&format!("{p}.percent"), d.percent.as_deref());
            let margin = match &d.margin {
                None => 0,
                Some(m) => units::parse_bytes(m).unwrap_or_else(|e| {
                    self.unit_err(&format!("{p}.margin"), e);
                    0
                }),
            };
            FaultKind::DiskFill {
                path: d.path.clone(),
                percent,
                margin,
            }
        } else if f.pause.is_some() {
            FaultKind::Pause
        } else if let Some(k) = &f.kill {
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
            match crate::fault::process::parse_signal(text) {
                Some((signal, signal_name)) => FaultKind::Kill {
                    signal,
                    signal_name,
                    reach,
                },
                None => {
                    self.err(
                        &format!("{p}.signal"),
                        format!("unknown signal `{text}`; use e.g. SIGKILL, SIGTERM, 9"),
                    );
                    return None;
                }
            }
        } else if let Some(fd) = &f.fd_exhaustion {
            FaultKind::FdExhaustion {
                headroom: self.headroom(&format!("{p}.headroom"), fd.headroom),
            }
        } else if let Some(pl) = &f.process_limit {
            FaultKind::ProcessLimit {
                headroom: self.headroom(&format!("{p}.headroom"), pl.headroom),
            }
        } else if let Some(fr) = &f.freeze {
            FaultKind::Freeze { tree: fr.tree }
        } else if let Some(r) = &f.restart {
            if r.command.trim().is_empty() {
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
            let ready = self.readiness(&format!("{p}.ready"), &p, r.ready.as_ref())?;
            FaultKind::Restart {
                command: r.command.clone(),
                ready,
                timeout,
            }
        } else {
            self.http_fault(&p, f)?
        };
        Some((key, kind))
    }

    /// An HTTP rule from whichever HTTP key `f` has.
    fn http_fault(&mut self, p: &str, f: &spec::FaultSpec) -> Option<FaultKind> {
        use crate::fault::net::{
            CredentialRule, ForgeryRule, HeaderEditRule, HttpRuleAction as A, MitmVariant,
        };
        let mk = |cx: &mut Self, m: Option<&spec::HttpMatchSpec>, prob: Option<&str>, action| {
            let matcher = cx.http_match(&format!("{p}.match"), m);
            let probability = cx.ratio(&format!("{p}.probability"), prob, Ratio::ONE);
            FaultKind::Http {
                matcher,
                probability,
                action,
            }
        };
        for (cookie, header) in [
            f.auth_strip.as_ref().map(|a| (&a.cookie, &a.header)),
            f.auth_forge.as_ref().map(|a| (&a.cookie, &a.header)),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(h) = header {
                self.header_pair(&format!("{p}.header"), h, None);
            }
            if let Some(c) = cookie
                && (c.is_empty() || c.contains([';', '=', ' ', ',']))
            {
                self.err(
                    &format!("{p}.cookie"),
                    format!("`{c}` is not a cookie name"),
                );
            }
        }
        let credential = |cookie: &Option<String>, header: &Option<String>| match (cookie, header) {
            (Some(c), _) => CredentialRule::Cookie(c.clone()),
            (None, Some(h)) => CredentialRule::Header(h.clone()),
            (None, None) => CredentialRule::Authorization,
        };
        Some(if let Some(a) = &f.http_abort {
            let action = match (a.drop, a.status) {
                (true, None) if a.body.is_none() && a.headers.is_empty() => A::Drop,
                (true, _) => {
                    self.err(
                        &format!("{p}.drop"),
                        "`drop` closes the connection without an answer; leave out `status`, `body` and `headers`",
                    );
                    A::Drop
                }
                (false, None) => {
                    self.err(
                        p,
                        "give the `status` to answer with (e.g. 503), or `drop: true`",
                    );
                    A::Drop
                }
                (false, Some(status)) => {
                    if !(100..=599).contains(&status) {
                        self.err(
                            &format!("{p}.status"),
                            format!("`{status}` is not an HTTP status code (100–599)"),
                        );
                    }
                    for (name, value) in &a.headers {
                        self.header_pair(&format!("{p}.headers.{name}"), name, Some(value));
                    }
                    A::Abort {
                        status: status.clamp(100, 599) as u16,
                        body: a.body.clone(),
                        headers: a
                            .headers
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    }
                }
            };
            mk(self, a.matcher.as_ref(), a.probability.as_deref(), action)
        } else if let Some(d) = &f.http_delay {
            let delay = self.duration(&format!("{p}.delay"), Some(&d.delay), Duration::ZERO);
            let jitter = self.duration(&format!("{p}.jitter"), d.jitter.as_deref(), Duration::ZERO);
            if jitter > delay {
                self.err(
                    &format!("{p}.jitter"),
                    format!(
                        "jitter {} is larger than the delay {}",
                        units::format_duration(jitter),
                        units::format_duration(delay)
                    ),
                );
            }
            let (request, response) = match d.on {
                spec::HttpDelayOn::Request => (delay, Duration::ZERO),
                spec::HttpDelayOn::Response => (Duration::ZERO, delay),
            };
            mk(
                self,
                d.matcher.as_ref(),
                d.probability.as_deref(),
                A::Delay {
                    request,
                    response,
                    jitter,
                },
            )
        } else if let Some(h) = &f.http_hang {
            mk(self, h.matcher.as_ref(), h.probability.as_deref(), A::Hang)
        } else if let Some(c) = &f.http_corrupt {
            let given = [
                c.truncate.is_some(),
                c.flip.is_some(),
                c.json_path.is_some(),
            ];
            let action = match (c.truncate, &c.flip, &c.json_path) {
                _ if given.iter().filter(|g| **g).count() != 1 => {
                    self.err(p, "give exactly one of `truncate`, `flip` or `json_path`");
                    A::Truncate { keep: 0 }
                }
                (Some(n), _, _) => {
                    if n < 0 {
                        self.err(
                            &format!("{p}.truncate"),
                            format!("`{n}`: give a number of bytes to keep, 0 or more"),
                        );
                    }
                    A::Truncate {
                        keep: n.max(0) as u64,
                    }
                }
                (_, Some(flip), _) => A::FlipBytes {
                    probability: self.ratio(&format!("{p}.flip"), Some(flip), Ratio::ZERO),
                },
                (_, _, Some(path)) => {
                    if let Err(e) = serde_json_path::JsonPath::parse(path) {
                        self.err(
                            &format!("{p}.json_path"),
                            format!("`{path}` is not a JSONPath: {e}"),
                        );
                    }
                    let Some(text) = &c.value else {
                        self.err(p, "`json_path` needs the `value` to put there");
                        return None;
                    };
                    let value = serde_json::from_str(text)
                        .unwrap_or_else(|_| serde_json::Value::String(text.clone()));
                    A::JsonReplace {
                        path: path.clone(),
                        value,
                    }
                }
                _ => A::Truncate { keep: 0 },
            };
            mk(self, c.matcher.as_ref(), c.probability.as_deref(), action)
        } else if let Some(h) = &f.http_header {
            let mut edits = |side: &str, e: Option<&spec::HeaderEditsSpec>| {
                let mut out = Vec::new();
                let Some(e) = e else { return out };
                for (name, value) in &e.add {
                    self.header_pair(&format!("{p}.{side}.add.{name}"), name, Some(value));
                    out.push(HeaderEditRule::Add(name.clone(), value.clone()));
                }
                for (name, value) in &e.set {
                    self.header_pair(&format!("{p}.{side}.set.{name}"), name, Some(value));
                    out.push(HeaderEditRule::Set(name.clone(), value.clone()));
                }
                for (j, name) in e.remove.iter().enumerate() {
                    self.header_pair(&format!("{p}.{side}.remove[{j}]"), name, None);
                    out.push(HeaderEditRule::Remove(name.clone()));
                }
                out
            };
            let request = edits("request", h.request.as_ref());
            let response = edits("response", h.response.as_ref());
            if request.is_empty() && response.is_empty() {
                self.err(
                    p,
                    "no header changes; give `request` or `response` with `add`, `set` or `remove`",
                );
            }
            mk(
                self,
                h.matcher.as_ref(),
                h.probability.as_deref(),
                A::Headers { request, response },
            )
        } else if let Some(a) = &f.auth_strip {
            if a.cookie.is_some() && a.header.is_some() {
                self.err(
                    p,
                    "give at most one of `cookie` or `header` (neither: the Authorization header)",
                );
            }
            let credential = credential(&a.cookie, &a.header);
            mk(
                self,
                a.matcher.as_ref(),
                a.probability.as_deref(),
                A::AuthStrip { credential },
            )
        } else if let Some(a) = &f.auth_forge {
            if a.cookie.is_some() && a.header.is_some() {
                self.err(
                    p,
                    "give at most one of `cookie` or `header` (neither: the Authorization header)",
                );
            }
            let forgery = match a.forgery {
                spec::ForgerySpec::JwtWrongKey => ForgeryRule::JwtWrongKey,
                spec::ForgerySpec::JwtAlgNone => ForgeryRule::JwtAlgNone,
                spec::ForgerySpec::JwtExpired => ForgeryRule::JwtExpired,
                spec::ForgerySpec::JwtClaims => {
                    if a.claims.is_empty() {
                        self.err(
                            &format!("{p}.claims"),
                            "`jwt-claims` needs the `claims` to change, e.g. `{ role: admin }`",
                        );
                    }
                    ForgeryRule::JwtClaims(
                        a.claims
                            .iter()
                            .map(|(k, v)| {
                                let v = serde_json::from_str(v)
                                    .unwrap_or_else(|_| serde_json::Value::String(v.clone()));
                                (k.clone(), v)
                            })
                            .collect(),
                    )
                }
                spec::ForgerySpec::Token => match &a.token {
                    Some(t) => ForgeryRule::Token(t.clone()),
                    None => {
                        self.err(
                            &format!("{p}.token"),
                            "`forgery: token` needs the `token` to send",
                        );
                        ForgeryRule::Token(String::new())
                    }
                },
            };
            let credential = credential(&a.cookie, &a.header);
            mk(
                self,
                a.matcher.as_ref(),
                a.probability.as_deref(),
                A::AuthForge {
                    credential,
                    forgery,
                },
            )
        } else if let Some(r) = &f.replay {
            let times = match r.times {
                None => 1,
                Some(n) if (1..=100).contains(&n) => n as u32,
                Some(n) => {
                    self.err(
                        &format!("{p}.times"),
                        format!("`{n}`: replay 1 to 100 times"),
                    );
                    1
                }
            };
            mk(self, r.matcher.as_ref(), None, A::Replay { times })
        } else if let Some(t) = &f.tls_mitm {
            let certificate = match t.certificate {
                spec::MitmCertSpec::Untrusted => MitmVariant::Untrusted,
                spec::MitmCertSpec::Expired => MitmVariant::Expired,
                spec::MitmCertSpec::NotYetValid => MitmVariant::NotYetValid,
                spec::MitmCertSpec::WrongHost => MitmVariant::WrongHost,
            };
            mk(self, None, None, A::TlsMitm { certificate })
        } else {
            return None;
        })
    }

    fn http_match(
        &mut self,
        base: &str,
        m: Option<&spec::HttpMatchSpec>,
    ) -> crate::fault::net::HttpMatch {
        use crate::fault::net::{HeaderCondition, HttpMatch};
        let Some(m) = m else {
            return HttpMatch::default();
        };
        for (j, method) in m.methods.iter().enumerate() {
            if method.is_empty() || !method.chars().all(|c| c.is_ascii_alphabetic()) {
                self.err(
                    &format!("{base}.methods[{j}]"),
                    format!("`{method}` is not an HTTP method"),
                );
            }
        }
        if let Some(prefix) = &m.path_prefix
            && !prefix.starts_with('/')
        {
            self.err(
                &format!("{base}.path_prefix"),
                format!("`{prefix}` must start with `/`"),
            );
        }
        if let Some(re) = &m.path_regex
            && let Err(e) = regex::Regex::new(re)
        {
            let msg = e.to_string();
            let why = msg
                .lines()
                .last()
                .unwrap_or("invalid")
                .trim()
                .trim_start_matches("error: ");
            self.err(
                &format!("{base}.path_regex"),
                format!("`{re}` is not a regular expression: {why}"),
            );
        }
        let mut headers = Vec::new();
        for (name, value) in &m.headers {
            self.header_pair(&format!("{base}.headers.{name}"), name, Some(value));
            headers.push(HeaderCondition {
                name: name.clone(),
                equals: Some(value.clone()),
            });
        }
        for (j, name) in m.present.iter().enumerate() {
            self.header_pair(&format!("{base}.present[{j}]"), name, None);
            headers.push(HeaderCondition {
                name: name.clone(),
                equals: None,
            });
        }
        HttpMatch {
            methods: m.methods.iter().map(|x| x.to_ascii_uppercase()).collect(),
            path_prefix: m.path_prefix.clone(),
            path_regex: m.path_regex.clone(),
            headers,
        }
    }

    /// A header name (RFC 9110 token) and, if given, a value without control characters.
    fn header_pair(&mut self, path: &str, name: &str, value: Option<&str>) {
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            self.err(path, format!("`{name}` is not a header name"));
        }
        if let Some(v) = value
            && v.chars().any(|c| c.is_control() && c != '\t')
        {
            self.err(
                path,
                "a header value cannot hold control characters (line breaks)",
            );
        }
    }
}

fn shape_name(shape: crate::spec::PartitionShapeSpec) -> &'static str {
    match shape {
        crate::spec::PartitionShapeSpec::Halves => "halves",
        crate::spec::PartitionShapeSpec::IsolateOne => "isolate-one",
        crate::spec::PartitionShapeSpec::Bridge => "bridge",
    }
}

/// Draws the sides of a group partition from `chosen` (at least 2 targets, 3 for a bridge) with
/// the seed, salted by the fault's name so that two faults split differently. Pure.
pub fn split_group(
    shape: crate::spec::PartitionShapeSpec,
    chosen: &[String],
    seed: u64,
    salt: &str,
) -> GroupSplit {
    use crate::spec::PartitionShapeSpec as S;
    let mut order = chosen.to_vec();
    let mut rng = scope::SeededRng::new(seed ^ scope::fnv1a(&format!("{salt}/shape")));
    for i in (1..order.len()).rev() {
        let j = rng.below(i + 1);
        order.swap(i, j);
    }
    let (bridge, rest) = match shape {
        S::Bridge if !order.is_empty() => (Some(order.remove(0)), order),
        _ => (None, order),
    };
    let k = match shape {
        S::IsolateOne => 1.min(rest.len()),
        S::Halves | S::Bridge => rest.len().div_ceil(2),
    };
    let mut a = rest[..k].to_vec();
    let mut b = rest[k..].to_vec();
    a.sort();
    b.sort();
    GroupSplit {
        shape,
        a,
        b,
        bridge,
    }
}

/// The peers a target of a group partition is cut from: the other side.
pub fn group_peers(split: &GroupSplit, target: &str) -> Vec<Peer> {
    let other = if split.a.iter().any(|t| t == target) {
        &split.b
    } else if split.b.iter().any(|t| t == target) {
        &split.a
    } else {
        return Vec::new();
    };
    other.iter().cloned().map(Peer::Target).collect()
}

/// What a qdisc tree lacks here: htb with u32 filters (when `htb` is needed) and ifb (for
/// `ingress`).
fn qdisc_tree_missing(
    htb: bool,
    ingress: bool,
    caps: &crate::fault::host::caps::NetCapabilities,
) -> Vec<String> {
    let mut missing = Vec::new();
    if htb && !caps.htb_u32 {
        missing.push("the htb qdisc with the u32 classifier".to_string());
    }
    if ingress && !caps.ifb {
        missing.push(
            "ifb devices with the ingress qdisc and mirred (to shape incoming packets)".to_string(),
        );
    }
    missing
}

/// How a kernel-level network fault can be carried out with `caps`, preferring netem; `Err`
/// names what is missing.
pub fn mechanism_for(
    effect: &NetEffect,
    filtered: bool,
    direction: NetDirection,
    caps: &crate::fault::host::caps::NetCapabilities,
) -> Result<Mechanism, String> {
    let ingress = direction != NetDirection::Egress;
    if let NetEffect::Rate { .. } = effect {
        let missing = qdisc_tree_missing(true, ingress, caps);
        return if missing.is_empty() {
            Ok(Mechanism::Htb)
        } else {
            Err(format!("`rate` needs {}", missing.join(" and ")))
        };
    }
    let mut missing = Vec::new();
    if caps.netem {
        missing = qdisc_tree_missing(filtered, ingress, caps);
        if missing.is_empty() {
            return Ok(Mechanism::Netem);
        }
    } else {
        missing.push("the netem qdisc (sch_netem)".to_string());
    }
    match effect {
        NetEffect::Duplicate { .. } => {
            if caps.nft_dup && !ingress {
                return Ok(Mechanism::NftDup);
            }
            if ingress {
                missing.push(
                    "(nft `dup` only duplicates outgoing packets: use `direction: egress`)"
                        .to_string(),
                );
            } else {
                missing.push("nftables `dup` (nft_dup_ipv4/ipv6)".to_string());
            }
        }
        _ => match &caps.nfqueue {
            Ok(()) => return Ok(Mechanism::Nfqueue),
            Err(why) => missing.push(format!("NFQUEUE ({why})")),
        },
    }
    let kind = effect.name();
    Err(format!(
        "kernel-level `{kind}` is not possible on this machine: missing {}",
        missing.join("; ")
    ))
}

/// Chooses how each kernel-level network fault of `plan` is carried out with the capabilities
/// of this machine. A fault no mechanism can carry out is a plan-time error at its key, naming
/// the missing capability.
pub fn choose_mechanisms(
    doc: &Document,
    plan: &mut Plan,
    caps: &crate::fault::host::caps::NetCapabilities,
) -> Result<(), Diagnostics> {
    let mut diags = Diagnostics::new();
    for f in &mut plan.faults {
        let name = f.kind.name();
        if let FaultKind::Network {
            effect,
            peers,
            ports,
            direction,
            mechanism,
        } = &mut f.kind
        {
            let filtered = !peers.is_empty() || !ports.is_empty();
            match mechanism_for(effect, filtered, *direction, caps) {
                Ok(m) => *mechanism = Some(m),
                Err(why) => diags.push(doc.diag(&format!("faults[{}].{name}", f.index), why)),
            }
        }
    }
    if diags.is_empty() { Ok(()) } else { Err(diags) }
}

/// `8Mbit/s`, `1.5Gbit/s`, `64kbit/s`: decimal units, as `tc` and users write them.
pub fn format_bits(bits_per_sec: u64) -> String {
    let b = bits_per_sec as f64;
    if bits_per_sec >= 1_000_000_000 {
        format!("{}Gbit/s", trim_float(b / 1e9))
    } else if bits_per_sec >= 1_000_000 {
        format!("{}Mbit/s", trim_float(b / 1e6))
    } else if bits_per_sec >= 1_000 {
        format!("{}kbit/s", trim_float(b / 1e3))
    } else {
        format!("{bits_per_sec}bit/s")
    }
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn parse_peers(peers: &[String]) -> Vec<Peer> {
    peers
        .iter()
        .map(|peer| match peer.parse::<std::net::IpAddr>() {
            Ok(a) => Peer::Address(a),
            Err(_) => Peer::Target(peer.clone()),
        })
        .collect()
}

fn describe_peers(peers: &[Peer]) -> String {
    peers
        .iter()
        .map(|p| match p {
            Peer::Address(a) => a.to_string(),
            Peer::Target(t) => t.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ip netns` names: what iproute2 accepts as a file name under /run/netns, kept conservative.
fn valid_netns_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n != "."
        && n != ".."
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Linux interface names: at most 15 bytes, no `/`, no whitespace.
fn valid_interface_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 15 && !n.contains('/') && !n.chars().any(char::is_whitespace)
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

/// Names of distinct targets used by any fault (for reports and locking).
pub fn targets_in_use(plan: &Plan) -> BTreeSet<&str> {
    plan.faults
        .iter()
        .flat_map(|f| f.targets.iter().map(String::as_str))
        .collect()
}

#[cfg(test)]
mod tests;
