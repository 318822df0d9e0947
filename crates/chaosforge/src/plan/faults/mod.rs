//! `faults:` — which kind each entry is, what it checks, and which targets it acts on.
//!
//! [`FaultKind`] is the closed set of built-in kinds. Each family's checks live in its own file:
//! `proxy` (toxics on a TCP proxy), `host` (partition, loss and the kernel-level effects),
//! `process` (signals, limits, freeze, restart), `stress` (cpu, memory, disk-fill) and `http`
//! (HTTP and security rules). Adding a kind: a variant here (its name, target class and
//! description line), its checks in its family's file and one branch in [`Cx::fault_kind`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;

use super::Cx;
use super::scopes;
use crate::fault::net::{ProxyFault, Stream};
use crate::fault::params::{KillReach, Mechanism, NetDirection, NetEffect, Readiness};
use crate::scope::Scope;
use crate::spec;
use crate::units::{self, Ratio};

mod container;
mod host;
mod http;
mod process;
mod proxy;
mod stress;

pub use host::{GroupSplit, Peer, format_bits};

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
    /// Every target its selector matched, before the scope chose (the blast radius's
    /// population).
    #[serde(skip)]
    pub population: Vec<String>,
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
        /// How it is done here; chosen by [`choose_mechanisms`](crate::plan::choose_mechanisms) once the kernel's capabilities
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
    /// Pause, stop, kill, restart or limit a container through the Docker Engine API.
    Container {
        /// What is done.
        action: crate::fault::params::ContainerAction,
    },
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
    /// A `container` target.
    Container,
}

// === impl FaultKind ===

impl FaultKind {
    /// The name users write (`latency`, `pause`, …).
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Proxy { fault, .. } => fault.name(),
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
            FaultKind::Http { action, .. } => http::name(action),
            FaultKind::Container { action } => container::name(action),
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
            FaultKind::Container { .. } => TargetClass::Container,
        }
    }

    /// Whether it also takes a `process` target besides its own class: `cpu` on a process pins
    /// its workers to that process's CPUs.
    pub fn also_on_process(&self) -> bool {
        matches!(self, FaultKind::Cpu { .. })
    }

    /// Whether it also acts on `container` targets besides its own class: the host network
    /// faults, inside the container's network namespace; the rlimit faults, on its main process.
    pub fn also_on_container(&self) -> bool {
        matches!(
            self,
            FaultKind::Partition { .. }
                | FaultKind::Network { .. }
                | FaultKind::Loss { .. }
                | FaultKind::FdExhaustion { .. }
                | FaultKind::ProcessLimit { .. }
        )
    }

    /// Why it cannot be undone, if it cannot.
    pub fn irreversible(&self) -> Option<&'static str> {
        match self {
            FaultKind::Container { action } => container::irreversible(action),
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
            } => proxy::describe(streams, *toxicity, fault),
            FaultKind::Partition {
                peers,
                direction,
                shape,
            } => host::describe_partition(peers, *direction, shape.as_ref()),
            FaultKind::Network {
                effect,
                peers,
                ports,
                direction,
                mechanism,
            } => host::describe_network(effect, peers, ports, *direction, *mechanism),
            FaultKind::Loss {
                peers, probability, ..
            } => host::describe_loss(peers, *probability),
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
            } => process::describe_kill(signal_name, *reach),
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
            } => http::describe(matcher, *probability, action),
            FaultKind::Container { action } => container::describe(action),
        }
    }
}

// === impl Cx ===

impl Cx<'_> {
    /// Every valid fault with the targets its scope chose.
    pub(super) fn faults(
        &mut self,
        specs: &[spec::FaultSpec],
        target_specs: &[spec::TargetSpec],
        targets: &[Option<super::Target>],
        seed: u64,
        allow_irreversible: bool,
    ) -> Vec<PlannedFault> {
        self.unique("fault", "faults", specs.iter().map(|f| f.name.as_str()));
        let mut out = Vec::new();
        let mut matched_by: HashMap<&BTreeMap<String, String>, Vec<usize>> = HashMap::new();
        for (i, f) in specs.iter().enumerate() {
            let base = format!("faults[{i}]");
            // Each selector is matched once: faults often share one, and kind, class and
            // selection all read the same list.
            let matched: &[usize] = matched_by.entry(&f.target.select).or_insert_with(|| {
                target_specs
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| crate::scope::matches(&f.target.select, &t.name, &t.labels))
                    .map(|(ti, _)| ti)
                    .collect()
            });
            // Whether `latency` and `corrupt` act on a proxy or on hosts depends on the targets.
            let on_host = scopes::selects_hosts(matched, targets);
            // `pause`, `kill` and `restart` on containers go through the Docker engine.
            let on_container = scopes::selects_containers(matched, targets);
            let found = match self.container_fault(&base, f, on_container) {
                Some(found) => found,
                None => self.fault_kind(&base, f, on_host),
            };
            let Some((key, kind)) = found else {
                continue;
            };
            self.irreversible(&base, key, &kind, allow_irreversible);
            self.peer_targets(&base, key, &kind, target_specs);
            let mut scope = self.scope(&base, f.target.scope.as_ref());
            let Some(mut selected) =
                self.select(&base, key, f, matched, &kind, target_specs, targets)
            else {
                continue;
            };
            // A group scope narrows the selection; the share a policy checks is of all it matched.
            let grouped: Option<Vec<String>> = matches!(scope, Scope::Group { .. })
                .then(|| selected.iter().map(|(_, t)| t.name.clone()).collect());
            if !self.choose_group(&base, &mut scope, &mut selected, seed, &f.name) {
                continue;
            }
            if !self.fits(&base, &scope, selected.len())
                || !self.isolation_allowed(&base, &kind, &selected)
            {
                continue;
            }
            let names: Vec<String> = selected.iter().map(|(_, t)| t.name.clone()).collect();
            let mut chosen = scope.choose(&names, seed, &f.name);
            let population = grouped.unwrap_or(names);
            let mut kind = kind;
            if !self.group_sides(&base, &mut kind, &mut chosen, seed, &f.name) {
                continue;
            }
            out.push(PlannedFault {
                name: f.name.clone(),
                kind,
                scope,
                targets: chosen,
                index: i,
                population,
            });
        }
        out
    }

    /// The fault's one kind, or a diagnostic when it has none or several. `on_host`: the
    /// selector matches host targets, so `latency` and `corrupt` act on packets.
    pub(super) fn fault_kind(
        &mut self,
        base: &str,
        f: &spec::FaultSpec,
        on_host: bool,
    ) -> Option<(&'static str, FaultKind)> {
        let key = self.kind_key(base, f)?;
        let p = format!("{base}.{key}");
        let kind = if let Some(l) = &f.latency {
            if on_host {
                self.host_latency(&p, l)
            } else {
                self.proxy_latency(&p, l)
            }
        } else if let Some(c) = &f.corrupt {
            if on_host {
                self.host_corrupt(&p, c)
            } else {
                self.proxy_corrupt(&p, c)
            }
        } else if let Some(d) = &f.duplicate {
            self.duplicate(&p, d)
        } else if let Some(r) = &f.reorder {
            self.reorder(&p, r)
        } else if let Some(r) = &f.rate {
            self.rate(&p, r)
        } else if let Some(b) = &f.bandwidth {
            self.bandwidth(&p, b)
        } else if let Some(t) = &f.timeout {
            self.timeout(&p, t)
        } else if let Some(r) = &f.reset {
            self.reset(&p, r)
        } else if f.down.is_some() {
            proxy::down()
        } else if let Some(pt) = &f.partition {
            host::partition(pt)
        } else if let Some(l) = &f.loss {
            self.loss(&p, l)
        } else if let Some(c) = &f.cpu {
            self.cpu(&p, c)
        } else if let Some(m) = &f.memory {
            self.memory(&p, m)
        } else if let Some(d) = &f.disk_fill {
            self.disk_fill(&p, d)
        } else if f.pause.is_some() {
            FaultKind::Pause
        } else if let Some(k) = &f.kill {
            self.kill(&p, k)?
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
            self.restart(&p, r)?
        } else {
            self.http_fault(&p, f)?
        };
        Some((key, kind))
    }

    /// The one kind key `f` has, or a diagnostic when it has none or several.
    fn kind_key(&mut self, base: &str, f: &spec::FaultSpec) -> Option<&'static str> {
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
            ("stop", f.stop.is_some()),
            ("resource-limit", f.resource_limit.is_some()),
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
                        "fault `{}` names no fault kind; add one of: latency, bandwidth, timeout, reset, down, corrupt, duplicate, reorder, rate, partition, loss, cpu, memory, disk-fill, pause, kill, freeze, fd-exhaustion, process-limit, restart, stop, resource-limit, http-abort, http-delay, http-hang, http-corrupt, http-header, auth-strip, auth-forge, replay, tls-mitm",
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
        Some(present[0])
    }
}
