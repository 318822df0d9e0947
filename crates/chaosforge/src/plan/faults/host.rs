//! The host network family: `partition` and `loss` (nftables), and the kernel-level effects
//! (`latency` and `corrupt` on hosts, `duplicate`, `reorder`, `rate`) whose mechanism is chosen
//! for this kernel later ([`crate::plan::choose_mechanisms`]).

use std::time::Duration;

use serde::Serialize;

use super::FaultKind;
use crate::diag::did_you_mean;
use crate::fault::params::{Mechanism, NetDirection, NetEffect};
use crate::plan::Cx;
use crate::plan::scopes::split_group;
use crate::spec::{self, PartitionDirectionSpec, PartitionShapeSpec};
use crate::units::{self, Ratio};

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

/// `partition from 10.0.0.2, db (both ways)`, or the sides of a group partition.
pub(super) fn describe_partition(
    peers: &[Peer],
    direction: PartitionDirectionSpec,
    shape: Option<&GroupSplit>,
) -> String {
    if let Some(split) = shape {
        let bridge = split
            .bridge
            .as_ref()
            .map(|b| format!(", bridged by {b}"))
            .unwrap_or_default();
        return format!(
            "partition ({}): {{{}}} | {{{}}}{bridge}",
            shape_name(split.shape),
            split.a.join(", "),
            split.b.join(", ")
        );
    }
    let who = if peers.is_empty() {
        "everyone".to_string()
    } else {
        describe_peers(peers)
    };
    let way = match direction {
        PartitionDirectionSpec::Both => "both ways",
        PartitionDirectionSpec::Ingress => "incoming only",
        PartitionDirectionSpec::Egress => "outgoing only",
    };
    format!("partition from {who} ({way})")
}

/// `latency 100ms (peers db, ports 5432, egress, via netem)`.
pub(super) fn describe_network(
    effect: &NetEffect,
    peers: &[Peer],
    ports: &[u16],
    direction: NetDirection,
    mechanism: Option<Mechanism>,
) -> String {
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

/// `loss of 30% of packets of db`.
pub(super) fn describe_loss(peers: &[Peer], probability: Ratio) -> String {
    let who = if peers.is_empty() {
        "all packets".to_string()
    } else {
        format!("packets of {}", describe_peers(peers))
    };
    format!("loss of {probability} of {who}")
}

/// A partition; the sides of a group shape are drawn once the targets are chosen.
pub(super) fn partition(p: &spec::PartitionSpec) -> FaultKind {
    FaultKind::Partition {
        peers: parse_peers(&p.peers),
        direction: p.direction,
        shape: p.shape.map(|shape| GroupSplit {
            shape,
            a: Vec::new(),
            b: Vec::new(),
            bridge: None,
        }),
    }
}

fn shape_name(shape: PartitionShapeSpec) -> &'static str {
    match shape {
        PartitionShapeSpec::Halves => "halves",
        PartitionShapeSpec::IsolateOne => "isolate-one",
        PartitionShapeSpec::Bridge => "bridge",
    }
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

// === impl Cx ===

impl Cx<'_> {
    pub(super) fn host_latency(&mut self, p: &str, l: &spec::LatencySpec) -> FaultKind {
        let before = self.diags.len();
        let delay = self.duration(&format!("{p}.delay"), Some(&l.delay), Duration::ZERO);
        // A delay that did not parse stands at zero; comparing the jitter with it would only
        // repeat that problem.
        let delay_ok = self.diags.len() == before;
        let jitter = self.duration(&format!("{p}.jitter"), l.jitter.as_deref(), Duration::ZERO);
        if l.toxicity.is_some() {
            self.err(
                &format!("{p}.toxicity"),
                "`toxicity` is for proxy targets; on a host every matching packet is delayed (narrow it with `peers` or `ports`)",
            );
        }
        if delay_ok && jitter > delay {
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
            p,
            NetEffect::Latency { delay, jitter },
            &l.peers,
            &l.ports,
            l.direction,
        )
    }

    pub(super) fn host_corrupt(&mut self, p: &str, c: &spec::CorruptSpec) -> FaultKind {
        let probability = self.ratio(
            &format!("{p}.probability"),
            Some(&c.probability),
            Ratio::ZERO,
        );
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
            p,
            NetEffect::Corrupt { probability },
            &c.peers,
            &c.ports,
            c.direction,
        )
    }

    pub(super) fn duplicate(&mut self, p: &str, d: &spec::DuplicateSpec) -> FaultKind {
        let probability = self.ratio(
            &format!("{p}.probability"),
            Some(&d.probability),
            Ratio::ZERO,
        );
        self.network(
            p,
            NetEffect::Duplicate { probability },
            &d.peers,
            &d.ports,
            d.direction,
        )
    }

    pub(super) fn reorder(&mut self, p: &str, r: &spec::ReorderSpec) -> FaultKind {
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
            p,
            NetEffect::Reorder { probability, gap },
            &r.peers,
            &r.ports,
            r.direction,
        )
    }

    pub(super) fn rate(&mut self, p: &str, r: &spec::RateSpec) -> FaultKind {
        let bits_per_sec = match units::parse_byte_rate(&r.rate) {
            Ok(bytes) => bytes.saturating_mul(8),
            Err(e) => {
                self.unit_err(&format!("{p}.rate"), e);
                8
            }
        };
        self.network(
            p,
            NetEffect::Rate { bits_per_sec },
            &r.peers,
            &r.ports,
            r.direction,
        )
    }

    pub(super) fn loss(&mut self, p: &str, l: &spec::LossSpec) -> FaultKind {
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

    /// Peers named by target must be `netns` or `host` targets: those have addresses.
    pub(super) fn peer_targets(
        &mut self,
        base: &str,
        key: &str,
        kind: &FaultKind,
        target_specs: &[spec::TargetSpec],
    ) {
        let (FaultKind::Partition { peers, .. }
        | FaultKind::Loss { peers, .. }
        | FaultKind::Network { peers, .. }) = kind
        else {
            return;
        };
        for (j, peer) in peers.iter().enumerate() {
            let Peer::Target(name) = peer else { continue };
            let found = target_specs.iter().find(|t| &t.name == name);
            let path = format!("{base}.{key}.peers[{j}]");
            match found {
                Some(t) if t.netns.is_some() || t.host.is_some() || t.container.is_some() => {}
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

    /// `false` (with a diagnostic) for a partition from everyone of the local host.
    pub(super) fn isolation_allowed(
        &mut self,
        base: &str,
        kind: &FaultKind,
        selected: &[(usize, &spec::TargetSpec)],
    ) -> bool {
        if let FaultKind::Partition { peers, .. } = kind
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
            return false;
        }
        true
    }

    /// Draws the sides of a group partition among `chosen` (the bridge leaves `chosen`: it
    /// gets no rules); `false` (with a diagnostic) when the shape cannot be drawn. Any other
    /// kind passes unchanged.
    pub(super) fn group_sides(
        &mut self,
        base: &str,
        kind: &mut FaultKind,
        chosen: &mut Vec<String>,
        seed: u64,
        salt: &str,
    ) -> bool {
        let FaultKind::Partition {
            shape: Some(split),
            peers,
            direction,
        } = kind
        else {
            return true;
        };
        if !peers.is_empty() {
            self.err(
                &format!("{base}.partition.peers"),
                "a group `shape` splits the selected targets among themselves; leave out `peers`",
            );
            return false;
        }
        if *direction != PartitionDirectionSpec::Both {
            self.err(
                &format!("{base}.partition.direction"),
                "a group `shape` cuts both ways; leave out `direction`",
            );
            return false;
        }
        let need = if split.shape == PartitionShapeSpec::Bridge {
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
            return false;
        }
        *split = split_group(split.shape, chosen, seed, salt);
        // The bridge gets no rules: its peers are everyone else, who reach it.
        if let Some(b) = &split.bridge {
            chosen.retain(|t| t != b);
        }
        true
    }
}
