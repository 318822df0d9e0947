//! Traffic control: rate limits (htb, u32, ifb) and netem where the kernel has it.
//!
//! Everything chaosforge adds to an interface hangs under one root qdisc with handle
//! [`HANDLE`] (`cf00:`), so that reverting is one `tc qdisc del … root handle cf00:`, which the
//! kernel refuses when the root is anyone else's. Ingress traffic cannot be queued where it
//! arrives, so it is redirected (ingress qdisc + u32 match-all + `mirred`) to an `ifb` device of
//! the fault's own ([`ifb_name`]) and shaped on that device's root, where egress rules apply.
//!
//! The layout on the shaping device (the interface for egress, the ifb for ingress):
//!
//! ```text
//! root htb cf00: default 1 (all traffic) | default 0 (filtered: the rest bypasses, unshaped)
//!  └─ class cf00:1 htb rate R ceil R      (R = the rate, or unlimited for a filtered netem)
//!      └─ [qdisc cf01: netem …]           (Netem only)
//!  u32 filters, one per (peer × port), → cf00:1
//! ```
//!
//! A netem shape on all traffic needs no classes: it is the root itself (`root handle cf00:
//! netem …`), including its `rate`.
//!
//! Every function here is a library function over an [`Executor`]; journaling is the caller's.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::exec::{ExecError, Executor};

/// The qdisc handle chaosforge owns on a shaping device's root (major `0xcf00`), so that revert
/// deletes only what is ours.
pub const HANDLE: &str = "cf00:";

/// The shaped class under [`HANDLE`].
const CLASS: &str = "cf00:1";
/// The netem leaf under [`CLASS`].
const LEAF: &str = "cf01:";
/// The ingress qdisc's handle (the only one the kernel allows).
const INGRESS: &str = "ffff:";
/// Prefix of chaosforge's ifb links.
const IFB_PREFIX: &str = "cf";
/// Length of the tail after [`IFB_PREFIX`]: 13 base-36 digits hold a 64-bit hash, and with
/// the prefix make 15 bytes, the kernel's limit for a link name.
const IFB_TAIL: usize = 13;
/// An Ethernet frame, for the smallest sane burst and quantum.
const MTU: u64 = 1514;
/// A class rate that never binds (1 Tbit/s): htb needs a rate even when the class only exists to
/// carry a netem leaf for filtered traffic.
const UNLIMITED_BITS: u64 = 1_000_000_000_000;
/// htb's default queue for unclassified packets is the device's `txqueuelen`, only 32 on an
/// ifb; filtered faults pass the rest of the traffic through it, so give it a normal length.
const DIRECT_QLEN: &str = "1000";

/// Which packets are shaped, seen from the target host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Way {
    /// What the host sends: shaped on the interface's root.
    Egress,
    /// What the host receives: redirected from an ingress qdisc on the interface to an ifb
    /// device, shaped on the ifb's root.
    Ingress,
}

/// Which packets a shape applies to. Empty peers and ports: all traffic of the interface.
///
/// Both are seen from the target: a peer is the remote address (destination on egress, source
/// on ingress), a port a port at either end (so `ports: [5432]` shapes a database's traffic on
/// the server, whose remote ports are ephemeral, and on its clients alike — as the iptables
/// rules of the NFQUEUE mechanism do). Given both, every (peer, port) combination matches.
/// Ports match TCP and UDP alike,
/// at the fixed offset of a header without IPv4 options or IPv6 extension headers (u32 cannot
/// follow those).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    /// Remote addresses, IPv4 or IPv6 (an IPv4-mapped IPv6 address counts as IPv4).
    pub peers: Vec<IpAddr>,
    /// Ports at either end.
    pub ports: Vec<u16>,
}

/// What netem does to the packets of a [`Shape::Netem`]. Probabilities are in `0.0..=1.0`; a
/// zero field adds nothing to the command.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetemParams {
    /// Added to every packet (`delay 50ms`).
    pub delay: Duration,
    /// Random variation of the delay, ± (`delay 50ms 5ms`).
    pub jitter: Duration,
    /// Share of packets dropped (`loss 20%`).
    pub loss: f64,
    /// Share of packets sent twice (`duplicate 5%`).
    pub duplicate: f64,
    /// Share of packets with one bit flipped (`corrupt 1%`).
    pub corrupt: f64,
    /// Reordering: a share of packets is sent at once while the others wait a delay, and
    /// so overtake them (`reorder 25%`). The duration is that wait: netem has one delay for
    /// everything, so the command uses the larger of it and [`delay`](Self::delay), and reorder
    /// needs one of them non-zero.
    pub reorder: Option<(f64, Duration)>,
    /// A link rate in bits per second (`rate 8mbit`), applied by netem itself.
    pub rate_bits: Option<u64>,
}

/// What happens to the matched packets.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A rate limit (htb; no queueing discipline beyond it).
    Rate {
        /// Bits per second, on the wire (Ethernet headers included).
        bits_per_sec: u64,
    },
    /// Delay, loss, duplication, corruption, reordering, rate: netem, which not every kernel
    /// has (see [`probe`]).
    Netem(NetemParams),
}

/// What this kernel supports, from [`probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcCapabilities {
    /// The netem qdisc.
    pub netem: bool,
    /// The htb qdisc with u32 filters.
    pub htb_u32: bool,
    /// ifb devices, the ingress qdisc and the mirred action (ingress shaping).
    pub ifb: bool,
}

/// Why traffic control could not be applied, removed or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TcError {
    /// A command failed, could not run, or was refused a name (an interface name `tc` would
    /// misread, an ifb name that is not chaosforge's).
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The interface already has traffic control that is not ours to replace; nothing was
    /// changed.
    #[error("refusing to shape `{iface}`: {reason}")]
    Busy {
        /// The interface.
        iface: String,
        /// What is there.
        reason: String,
    },
    /// A shape or match that cannot be expressed; nothing was changed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field (`loss`, `reorder`, …).
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A tool printed something we cannot read.
    #[error("cannot read the output of `{command}`: {reason}")]
    Output {
        /// The command line.
        command: String,
        /// What was wrong.
        reason: String,
    },
    /// A command failed after earlier ones had changed the namespace. `undone` tells whether
    /// everything added before it was removed again; if not, `left` lists the removals that
    /// failed, and the journal record is what `recover` works from.
    #[error("{error}; {}", if *undone { "what was added is removed again".to_string() } else { format!("could not remove all that was added: {}", left.join("; ")) })]
    Apply {
        /// The failure.
        error: ExecError,
        /// Whether the partial change was removed.
        undone: bool,
        /// The removals that failed.
        left: Vec<String>,
    },
}

/// One command line: a program and its arguments, never through a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cmd {
    program: &'static str,
    args: Vec<String>,
}

/// A command of [`apply`], and for one that creates something, the command that deletes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    cmd: Cmd,
    undo: Option<Cmd>,
}

/// One qdisc from `tc -j qdisc show`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Qdisc {
    dev: Option<String>,
    kind: String,
    handle: String,
    root: bool,
}

/// The ifb name for a fault, from anything unique to it (a run id and a fault id): `cf`, then
/// a 64-bit hash of `unique` as 13 base-36 digits. 15 bytes, the kernel's limit, so the tail
/// is a hash rather than the text; it is deterministic, so the same fault always gets the same
/// name.
pub fn ifb_name(unique: &str) -> String {
    // FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in unique.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut tail = [b'0'; IFB_TAIL];
    for slot in tail.iter_mut().rev() {
        *slot = b"0123456789abcdefghijklmnopqrstuvwxyz"[(h % 36) as usize];
        h /= 36;
    }
    let tail: String = tail.iter().map(|&b| char::from(b)).collect();
    format!("{IFB_PREFIX}{tail}")
}

/// `true` for a name [`ifb_name`] could have made: `cf` and 13 of `a-z0-9`. Every deletion of
/// a link checks it, so that a damaged journal can never delete someone else's link.
pub fn is_chaosforge_ifb(name: &str) -> bool {
    name.strip_prefix(IFB_PREFIX).is_some_and(|tail| {
        tail.len() == IFB_TAIL
            && tail
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// Applies `shape` to the packets of `iface` (in `netns`) that match `m`, going `way`.
///
/// `ifb` is the fault's ifb device ([`ifb_name`]), created here for [`Way::Ingress`] and
/// ignored for egress. Nothing is changed, and [`TcError::Busy`] returned, when the interface
/// already has traffic control that is not the kernel's default: for egress a root qdisc with a
/// handle of its own (ours included: one shaping fault per interface and way), for ingress an
/// ingress or clsact qdisc. If a command fails midway, what was added is removed (best effort)
/// and [`TcError::Apply`] says whether that worked.
///
/// The caller journals `(netns, iface, ifb)` before calling, so that [`remove`] can undo a
/// crash midway.
pub async fn apply(
    exec: &dyn Executor,
    netns: Option<&str>,
    iface: &str,
    way: Way,
    ifb: &str,
    m: &Match,
    shape: &Shape,
) -> Result<(), TcError> {
    let steps = apply_commands(iface, way, ifb, m, shape)?;
    let qdiscs = list_qdiscs(exec, netns, Some(iface)).await?;
    check_free(iface, way, &qdiscs)?;
    // The check above gives a clear message; the real guard against a race is that `tc qdisc
    // add` (without `replace`) fails rather than replace an existing root or ingress qdisc.
    let mut undo: Vec<Cmd> = Vec::new();
    for step in steps {
        match run(exec, netns, &step.cmd).await {
            Ok(_) => undo.extend(step.undo),
            Err(error) => {
                // A refused netlink request changed nothing, but after a timeout we cannot know.
                if matches!(error, ExecError::Timeout { .. }) {
                    undo.extend(step.undo);
                }
                let left = rollback(exec, netns, undo).await;
                return Err(TcError::Apply {
                    error,
                    undone: left.is_empty(),
                    left,
                });
            }
        }
    }
    Ok(())
}

/// Removes what [`apply`] added, from the journal record alone. Idempotent: what is already
/// gone (the qdisc, the interface, the whole namespace) is skipped, and the text says so.
///
/// `ifb` is `None` for an egress fault: the root qdisc of `iface` is deleted if its handle is
/// [`HANDLE`]. It is `Some` for an ingress fault: then the root of `iface` is left alone (it
/// may be an egress fault's), the ingress qdisc is deleted if one of its filters redirects to
/// `ifb`, and the `ifb` link is deleted if it exists and is an ifb. An `ifb` that is not a
/// chaosforge name ([`is_chaosforge_ifb`]) is refused before anything runs.
pub async fn remove(
    exec: &dyn Executor,
    netns: Option<&str>,
    iface: &str,
    ifb: Option<&str>,
) -> Result<String, TcError> {
    check_dev(iface)?;
    if let Some(ifb) = ifb {
        check_ifb(ifb)?;
    }
    let place = match netns {
        Some(ns) => format!("netns {ns}"),
        None => "the host".to_string(),
    };
    let qdiscs = match list_qdiscs(exec, netns, Some(iface)).await {
        Ok(q) => q,
        Err(e) if is_netns_gone(&e) => return Ok(format!("{place} is gone: nothing to revert")),
        // The interface went away, and its qdiscs with it; an ifb may still be there.
        Err(e) if is_dev_gone(&e) => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut done = Vec::new();
    match ifb {
        None => {
            if qdiscs.iter().any(|q| q.root && q.handle == HANDLE)
                && gone_is_ok(run(exec, netns, &del_root(iface)).await)?
            {
                done.push(format!("deleted root qdisc {HANDLE} of {iface}"));
            }
        }
        Some(ifb) => {
            if qdiscs.iter().any(|q| q.kind == "ingress")
                && redirects_to(exec, netns, iface, ifb).await?
                && gone_is_ok(run(exec, netns, &del_ingress(iface)).await)?
            {
                done.push(format!("deleted ingress qdisc of {iface}"));
            }
            // After the ingress qdisc: an ingress redirect to a missing device drops everything.
            match link_kind(exec, netns, ifb).await?.as_deref() {
                Some("ifb") => {
                    let deleted = gone_is_ok(run(exec, netns, &del_link(ifb)).await)?;
                    if deleted {
                        done.push(format!("deleted ifb {ifb}"));
                    }
                }
                Some(kind) => {
                    done.push(format!("left link {ifb} alone: it is a {kind}, not an ifb"));
                }
                None => {}
            }
        }
    }
    if done.is_empty() {
        Ok(format!("tc on {iface} already gone ({place})"))
    } else {
        Ok(format!("{} ({place})", done.join(", ")))
    }
}

/// Chaosforge traffic control left in `netns`: a root qdisc with handle [`HANDLE`] on any
/// device, an ingress qdisc redirecting to a chaosforge ifb, a chaosforge ifb link. Empty when
/// clean, or when the namespace does not exist. For torture tests and `recover`'s final check.
pub async fn residue(exec: &dyn Executor, netns: Option<&str>) -> Result<Vec<String>, TcError> {
    let qdiscs = match list_qdiscs(exec, netns, None).await {
        Ok(q) => q,
        Err(e) if is_netns_gone(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for q in &qdiscs {
        let dev = q.dev.as_deref().unwrap_or("?");
        if q.root && q.handle == HANDLE {
            found.push(format!("root qdisc {} {HANDLE} on {dev}", q.kind));
        }
        if q.kind == "ingress" || q.kind == "clsact" {
            let Some(dev) = q.dev.as_deref() else {
                continue;
            };
            let cmd = show_ingress_filters(dev);
            let out = run(exec, netns, &cmd).await?;
            for target in redirect_targets(&out.stdout) {
                if is_chaosforge_ifb(&target) {
                    found.push(format!("{} qdisc on {dev} redirecting to {target}", q.kind));
                }
            }
        }
    }
    let cmd = Cmd::new("ip", ["-j", "-d", "link", "show", "type", "ifb"]);
    let out = run(exec, netns, &cmd).await?;
    for (name, _) in parse_links(&cmd, &out.stdout)? {
        if is_chaosforge_ifb(&name) {
            found.push(format!("ifb link {name}"));
        }
    }
    Ok(found)
}

/// Probes what this kernel supports, each in a throwaway network namespace (`unshare --net`,
/// from util-linux) so that nothing on the host is touched: `netem` adds a netem root on `lo`,
/// `htb_u32` an htb root with a class and a u32 filter, `ifb` an ifb link with an ingress
/// qdisc and a mirred redirect. A probe that cannot run (no `unshare`, no privileges) reports
/// `false`. Blocks for up to a few seconds; creating the first ifb may load the `ifb` module,
/// which adds `ifb0` and `ifb1` to the host's namespace.
pub fn probe() -> TcCapabilities {
    TcCapabilities {
        netem: probe_script("tc qdisc add dev lo root netem delay 1ms"),
        htb_u32: probe_script(
            "tc qdisc add dev lo root handle cf00: htb default 1 \
             && tc class add dev lo parent cf00: classid cf00:1 htb rate 1mbit \
             && tc filter add dev lo parent cf00: protocol ip prio 1 u32 \
                match ip dst 127.0.0.1/32 match ip dport 1 0xffff flowid cf00:1",
        ),
        ifb: probe_script(
            "ip link add name cfprobe type ifb && ip link set dev cfprobe up \
             && tc qdisc add dev lo handle ffff: ingress \
             && tc filter add dev lo parent ffff: protocol all prio 1 u32 match u32 0 0 \
                action mirred egress redirect dev cfprobe",
        ),
    }
}

// === impl Cmd ===

impl Cmd {
    fn new<I, S>(program: &'static str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            program,
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.program)?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

// === command builders (pure) ===

/// Every command [`apply`] runs, in order, with the undo of each that creates something.
/// Validates names and the shape first. Pure.
fn apply_commands(
    iface: &str,
    way: Way,
    ifb: &str,
    m: &Match,
    shape: &Shape,
) -> Result<Vec<Step>, TcError> {
    check_dev(iface)?;
    let dev = match way {
        Way::Egress => iface,
        Way::Ingress => {
            check_ifb(ifb)?;
            ifb
        }
    };
    let filtered = !m.peers.is_empty() || !m.ports.is_empty();
    let mut steps = Vec::new();
    if way == Way::Ingress {
        steps.push(Step {
            cmd: Cmd::new("ip", ["link", "add", "name", ifb, "type", "ifb"]),
            undo: Some(del_link(ifb)),
        });
        steps.push(Step {
            cmd: Cmd::new("ip", ["link", "set", "dev", ifb, "up"]),
            undo: None,
        });
    }
    let root = ["qdisc", "add", "dev", dev, "root", "handle", HANDLE];
    match shape {
        Shape::Netem(p) if !filtered => {
            let netem = netem_args(p)?;
            steps.push(Step {
                cmd: Cmd::new(
                    "tc",
                    root.into_iter()
                        .chain(["netem"])
                        .map(String::from)
                        .chain(netem),
                ),
                undo: Some(del_root(dev)),
            });
        }
        _ => {
            let (bits, netem) = match shape {
                Shape::Rate { bits_per_sec: 0 } => {
                    return Err(TcError::Invalid {
                        field: "rate",
                        reason: "must be more than 0 bits per second".into(),
                    });
                }
                Shape::Rate { bits_per_sec } => (*bits_per_sec, None),
                Shape::Netem(p) => (UNLIMITED_BITS, Some(netem_args(p)?)),
            };
            let default = if filtered { "0" } else { "1" };
            steps.push(Step {
                cmd: Cmd::new(
                    "tc",
                    root.into_iter()
                        .chain(["htb", "default", default, "direct_qlen", DIRECT_QLEN]),
                ),
                undo: Some(del_root(dev)),
            });
            let (rate, burst, quantum) = (rate(bits), burst(bits), quantum(bits));
            steps.push(Step {
                cmd: Cmd::new(
                    "tc",
                    [
                        "class",
                        "add",
                        "dev",
                        dev,
                        "parent",
                        HANDLE,
                        "classid",
                        CLASS,
                        "htb",
                        "rate",
                        rate.as_str(),
                        "ceil",
                        &rate,
                        "burst",
                        &burst,
                        "cburst",
                        &burst,
                        "quantum",
                        &quantum,
                    ],
                ),
                undo: None,
            });
            if let Some(netem) = netem {
                let leaf = [
                    "qdisc", "add", "dev", dev, "parent", CLASS, "handle", LEAF, "netem",
                ];
                steps.push(Step {
                    cmd: Cmd::new("tc", leaf.into_iter().map(String::from).chain(netem)),
                    undo: None,
                });
            }
            steps.extend(
                filter_commands(dev, way, m)
                    .into_iter()
                    .map(|cmd| Step { cmd, undo: None }),
            );
        }
    }
    if way == Way::Ingress {
        // Last: traffic is redirected only once the ifb is ready to shape it.
        steps.push(Step {
            cmd: Cmd::new(
                "tc",
                ["qdisc", "add", "dev", iface, "handle", INGRESS, "ingress"],
            ),
            undo: Some(del_ingress(iface)),
        });
        steps.push(Step {
            cmd: Cmd::new(
                "tc",
                [
                    "filter", "add", "dev", iface, "parent", INGRESS, "protocol", "all", "prio",
                    "1", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect",
                    "dev", ifb,
                ],
            ),
            undo: None,
        });
    }
    Ok(steps)
}

/// u32 filters sending the matched packets of `dev` to the shaped class: one per peer × port,
/// IPv4 at prio 1 and IPv6 at prio 2 (a prio holds filters of one protocol only). Sorted and
/// deduplicated, so the commands depend only on the sets.
fn filter_commands(dev: &str, way: Way, m: &Match) -> Vec<Cmd> {
    let (addr, port_fields) = match way {
        Way::Egress => ("dst", ["dport", "sport"]),
        Way::Ingress => ("src", ["sport", "dport"]),
    };
    let mut peers: Vec<IpAddr> = m.peers.iter().map(IpAddr::to_canonical).collect();
    peers.sort();
    peers.dedup();
    let mut ports = m.ports.clone();
    ports.sort_unstable();
    ports.dedup();
    if peers.is_empty() && ports.is_empty() {
        // All traffic: htb's default class takes it, no filter needed.
        return Vec::new();
    }
    // (is IPv6, peer match) pairs; a port-only match needs both families.
    let targets: Vec<(bool, Option<String>)> = if peers.is_empty() {
        vec![(false, None), (true, None)]
    } else {
        peers
            .iter()
            .map(|p| match p {
                IpAddr::V4(a) => (false, Some(format!("{a}/32"))),
                IpAddr::V6(a) => (true, Some(format!("{a}/128"))),
            })
            .collect()
    };
    let ports: Vec<Option<u16>> = if ports.is_empty() {
        vec![None]
    } else {
        ports.into_iter().map(Some).collect()
    };
    let mut out = Vec::new();
    for (v6, peer) in &targets {
        let (protocol, prio, family) = if *v6 {
            ("ipv6", "2", "ip6")
        } else {
            ("ip", "1", "ip")
        };
        let each: Vec<(Option<u16>, &str)> = ports
            .iter()
            .flat_map(|p| match p {
                Some(_) => port_fields.iter().map(|f| (*p, *f)).collect::<Vec<_>>(),
                None => vec![(None, "")],
            })
            .collect();
        for (p, port) in &each {
            let mut args: Vec<String> = [
                "filter", "add", "dev", dev, "parent", HANDLE, "protocol", protocol, "prio", prio,
                "u32",
            ]
            .map(String::from)
            .into();
            if let Some(peer) = peer {
                args.extend(["match", family, addr, peer].map(String::from));
            }
            if let Some(p) = p {
                args.extend([
                    "match".into(),
                    family.into(),
                    (*port).into(),
                    p.to_string(),
                    "0xffff".into(),
                ]);
            }
            args.extend(["flowid", CLASS].map(String::from));
            out.push(Cmd {
                program: "tc",
                args,
            });
        }
    }
    out
}

/// netem's options for `p`, in tc's syntax. Pure; checks the probabilities and reorder.
fn netem_args(p: &NetemParams) -> Result<Vec<String>, TcError> {
    for (field, r) in [
        ("loss", p.loss),
        ("duplicate", p.duplicate),
        ("corrupt", p.corrupt),
        ("reorder", p.reorder.map_or(0.0, |(r, _)| r)),
    ] {
        if !(0.0..=1.0).contains(&r) {
            return Err(TcError::Invalid {
                field,
                reason: format!("{r} is not a probability between 0 and 1"),
            });
        }
    }
    let mut delay = p.delay;
    let mut reorder = None;
    if let Some((r, wait)) = p.reorder
        && r > 0.0
    {
        delay = delay.max(wait);
        if delay.is_zero() {
            return Err(TcError::Invalid {
                field: "reorder",
                reason: "netem reorders by delaying the other packets: give a delay".into(),
            });
        }
        reorder = Some(r);
    }
    let mut args = Vec::new();
    if !delay.is_zero() || !p.jitter.is_zero() {
        args.extend(["delay".to_string(), time(delay)]);
        if !p.jitter.is_zero() {
            args.push(time(p.jitter));
        }
    }
    for (name, r) in [
        ("loss", p.loss),
        ("duplicate", p.duplicate),
        ("corrupt", p.corrupt),
    ] {
        if r > 0.0 {
            args.extend([name.to_string(), percent(r)]);
        }
    }
    if let Some(r) = reorder {
        args.extend(["reorder".to_string(), percent(r)]);
    }
    match p.rate_bits {
        Some(0) => {
            return Err(TcError::Invalid {
                field: "rate",
                reason: "must be more than 0 bits per second".into(),
            });
        }
        Some(bits) => args.extend(["rate".to_string(), rate(bits)]),
        None => {}
    }
    Ok(args)
}

fn del_root(dev: &str) -> Cmd {
    // With `handle`, the kernel deletes the root only if it is ours ("Invalid handle" if not).
    Cmd::new("tc", ["qdisc", "del", "dev", dev, "root", "handle", HANDLE])
}

fn del_ingress(iface: &str) -> Cmd {
    Cmd::new(
        "tc",
        ["qdisc", "del", "dev", iface, "handle", INGRESS, "ingress"],
    )
}

fn del_link(ifb: &str) -> Cmd {
    Cmd::new("ip", ["link", "del", "dev", ifb])
}

fn show_ingress_filters(iface: &str) -> Cmd {
    Cmd::new("tc", ["filter", "show", "dev", iface, "parent", INGRESS])
}

/// `8mbit`: tc's decimal units (`mbit` = 10⁶ bit/s), the largest that is exact.
fn rate(bits: u64) -> String {
    for (unit, scale) in [
        ("gbit", 1_000_000_000),
        ("mbit", 1_000_000),
        ("kbit", 1_000),
    ] {
        if bits.is_multiple_of(scale) {
            return format!("{}{unit}", bits / scale);
        }
    }
    format!("{bits}bit")
}

/// Bytes htb may send at once: 10 ms at the rate, so that a kernel ticking at 100 Hz still
/// reaches it, and at least two frames.
fn burst(bits: u64) -> String {
    (bits / 8 / 100)
        .clamp(2 * MTU, u64::from(u32::MAX))
        .to_string()
}

/// htb's default quantum is rate / r2q (10), and it warns outside 1000..=200000 bytes; the
/// quantum only matters between sibling classes, and ours has none.
fn quantum(bits: u64) -> String {
    (bits / 8 / 10).clamp(MTU, 200_000).to_string()
}

/// `50ms`, or `1500us` when not a whole number of milliseconds.
fn time(d: Duration) -> String {
    let us = d.as_nanos().div_ceil(1000);
    if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

/// `20%` for 0.2: up to four decimals, no trailing zeros.
fn percent(r: f64) -> String {
    let s = format!("{:.4}", r * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

// === checks and parsing ===

/// Refuses names that tc or ip would misread, as the kernel would refuse them.
fn check_dev(name: &str) -> Result<(), ExecError> {
    let bad = name.is_empty()
        || name.len() > 15
        || name.starts_with('-')
        || name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.chars().any(|c| c.is_whitespace() || c.is_control());
    if bad {
        return Err(ExecError::Refused {
            value: name.to_string(),
            reason: "not a network interface name".into(),
        });
    }
    Ok(())
}

fn check_ifb(name: &str) -> Result<(), ExecError> {
    if is_chaosforge_ifb(name) {
        Ok(())
    } else {
        Err(ExecError::Refused {
            value: name.to_string(),
            reason: format!(
                "not a chaosforge ifb name (`{IFB_PREFIX}` and {IFB_TAIL} of a-z, 0-9)"
            ),
        })
    }
}

/// [`TcError::Busy`] unless `way` is free on `iface`, whose qdiscs are `qdiscs`.
fn check_free(iface: &str, way: Way, qdiscs: &[Qdisc]) -> Result<(), TcError> {
    let busy = |reason: String| {
        Err(TcError::Busy {
            iface: iface.to_string(),
            reason,
        })
    };
    match way {
        Way::Egress => match qdiscs.iter().find(|q| q.root) {
            // The kernel's own default (noqueue, pfifo_fast, fq_codel, mq… whatever
            // `net.core.default_qdisc` says) has handle 0; anything added by hand has another.
            None => Ok(()),
            Some(q) if q.handle == "0:" => Ok(()),
            Some(q) if q.handle == HANDLE => busy(format!(
                "its root qdisc is already chaosforge's ({} {HANDLE}): another fault shapes it, \
                 or one was left behind (run `chaosforge recover`)",
                q.kind
            )),
            Some(q) => busy(format!(
                "it has a root qdisc that is not ours ({} {})",
                q.kind, q.handle
            )),
        },
        Way::Ingress => match qdiscs
            .iter()
            .find(|q| q.kind == "ingress" || q.kind == "clsact")
        {
            None => Ok(()),
            Some(q) => busy(format!(
                "it already has an {} qdisc (an ingress fault, or someone else's filters)",
                q.kind
            )),
        },
    }
}

/// The qdiscs of `dev` (all devices when `None`), from `tc -j qdisc show`.
async fn list_qdiscs(
    exec: &dyn Executor,
    netns: Option<&str>,
    dev: Option<&str>,
) -> Result<Vec<Qdisc>, TcError> {
    let mut args = vec!["-j", "qdisc", "show"];
    if let Some(dev) = dev {
        check_dev(dev)?;
        args.extend(["dev", dev]);
    }
    let cmd = Cmd::new("tc", args);
    let out = run(exec, netns, &cmd).await?;
    parse_qdiscs(&cmd, &out.stdout)
}

/// The array `tc -j` / `ip -j` printed (nothing printed: empty), or an error naming `cmd`.
fn json_list(cmd: &Cmd, stdout: &str) -> Result<Vec<serde_json::Value>, TcError> {
    if stdout.trim().is_empty() {
        return Ok(Vec::new());
    }
    let bad = |reason: String| TcError::Output {
        command: cmd.to_string(),
        reason,
    };
    match serde_json::from_str(stdout).map_err(|e| bad(e.to_string()))? {
        serde_json::Value::Array(list) => Ok(list),
        _ => Err(bad("not a JSON array".into())),
    }
}

fn parse_qdiscs(cmd: &Cmd, stdout: &str) -> Result<Vec<Qdisc>, TcError> {
    let bad = |reason: String| TcError::Output {
        command: cmd.to_string(),
        reason,
    };
    json_list(cmd, stdout)?
        .iter()
        .map(|q| {
            let text = |key: &str| q.get(key).and_then(|v| v.as_str()).map(str::to_string);
            Ok(Qdisc {
                dev: text("dev"),
                kind: text("kind").ok_or_else(|| bad(format!("a qdisc without kind: {q}")))?,
                handle: text("handle")
                    .ok_or_else(|| bad(format!("a qdisc without handle: {q}")))?,
                root: q.get("root").and_then(|v| v.as_bool()).unwrap_or(false),
            })
        })
        .collect()
}

/// `(name, kind)` of each link in `ip -j -d link show` output; kind is `info_kind`, empty
/// for a link without one (a physical device).
fn parse_links(cmd: &Cmd, stdout: &str) -> Result<Vec<(String, String)>, TcError> {
    let bad = |reason: String| TcError::Output {
        command: cmd.to_string(),
        reason,
    };
    json_list(cmd, stdout)?
        .iter()
        .map(|l| {
            let name = l
                .get("ifname")
                .and_then(|v| v.as_str())
                .ok_or_else(|| bad(format!("a link without ifname: {l}")))?;
            let kind = l
                .pointer("/linkinfo/info_kind")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            Ok((name.to_string(), kind.to_string()))
        })
        .collect()
}

/// The kind of link `name` (`Some("ifb")`, `Some("")` for one without a kind), `None` if there
/// is no such link.
async fn link_kind(
    exec: &dyn Executor,
    netns: Option<&str>,
    name: &str,
) -> Result<Option<String>, TcError> {
    let cmd = Cmd::new("ip", ["-j", "-d", "link", "show", "dev", name]);
    match run(exec, netns, &cmd).await {
        Ok(out) => Ok(parse_links(&cmd, &out.stdout)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, kind)| kind)),
        Err(e) => {
            let e = TcError::Exec(e);
            if is_dev_gone(&e) || is_netns_gone(&e) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Whether a filter of the ingress qdisc of `iface` redirects to `ifb`.
async fn redirects_to(
    exec: &dyn Executor,
    netns: Option<&str>,
    iface: &str,
    ifb: &str,
) -> Result<bool, TcError> {
    match run(exec, netns, &show_ingress_filters(iface)).await {
        Ok(out) => Ok(redirect_targets(&out.stdout).iter().any(|t| t == ifb)),
        Err(e) => {
            let e = TcError::Exec(e);
            if is_dev_gone(&e) || is_netns_gone(&e) {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// The devices `mirred` actions redirect to, in `tc filter show`'s text output: `mirred
/// (Egress Redirect to device cf…) stolen`. The text form, because iproute2 versions disagree
/// on the JSON of actions; a device deleted since reads `*`.
fn redirect_targets(stdout: &str) -> Vec<String> {
    const MARK: &str = "Redirect to device ";
    stdout
        .match_indices(MARK)
        .filter_map(|(i, _)| {
            let rest = &stdout[i + MARK.len()..];
            rest.find(')').map(|end| rest[..end].to_string())
        })
        .collect()
}

/// `ip netns exec` on a namespace that does not exist (run with `LC_ALL=C`).
fn is_netns_gone(e: &TcError) -> bool {
    matches!(e, TcError::Exec(ExecError::Failed { stderr, .. })
        if stderr.contains("Cannot open network namespace"))
}

/// tc (`Cannot find device "X"`) or ip (`Device "X" does not exist.`) on a missing device.
fn is_dev_gone(e: &TcError) -> bool {
    matches!(e, TcError::Exec(ExecError::Failed { stderr, .. })
        if stderr.contains("Cannot find device") || stderr.contains("does not exist"))
}

/// For a deletion: `Ok(true)` if it deleted, `Ok(false)` if what it deletes was already gone —
/// the device, the namespace, or the qdisc (tc says "Invalid handle" when the root or ingress
/// qdisc is not there, or is not ours).
fn gone_is_ok(result: Result<super::exec::ExecOutput, ExecError>) -> Result<bool, TcError> {
    match result {
        Ok(_) => Ok(true),
        Err(e) => {
            let e = TcError::Exec(e);
            let invalid = matches!(&e, TcError::Exec(ExecError::Failed { stderr, .. })
                if stderr.contains("Invalid handle"));
            if invalid || is_dev_gone(&e) || is_netns_gone(&e) {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

async fn run(
    exec: &dyn Executor,
    netns: Option<&str>,
    cmd: &Cmd,
) -> Result<super::exec::ExecOutput, ExecError> {
    let args: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
    exec.run(netns, cmd.program, &args, None).await
}

/// Runs the undo commands in reverse; returns the failures (empty: all undone).
async fn rollback(exec: &dyn Executor, netns: Option<&str>, undo: Vec<Cmd>) -> Vec<String> {
    let mut left = Vec::new();
    for cmd in undo.into_iter().rev() {
        if let Err(e) = gone_is_ok(run(exec, netns, &cmd).await) {
            left.push(format!("`{cmd}`: {e}"));
        }
    }
    left
}

/// Runs `script` with `sh` in a new network namespace; `true` if it exits 0 within 10 s.
fn probe_script(script: &str) -> bool {
    use std::process::{Command, Stdio};
    let mut cmd = Command::new("unshare");
    cmd.arg("--net");
    if !rustix::process::geteuid().is_root() {
        // A user namespace makes us root over the new network namespace.
        cmd.arg("--map-root-user");
    }
    cmd.args(["--", "sh", "-c", script])
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    for _ in 0..500 {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

#[cfg(test)]
mod tests;
