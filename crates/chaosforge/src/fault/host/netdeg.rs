//! Kernel-level network degradation of a host: `latency`, `corrupt`, `duplicate`, `reorder`
//! and `rate`, each carried out by the mechanism the plan chose for this kernel
//! ([`crate::fault::params::Mechanism`]):
//!
//! - `netem` / `htb`: a qdisc tree on the target's interface ([`super::tc`]), ingress through
//!   an `ifb` device; undone by deleting our root qdisc (handle `cf00:`) and the `ifb`.
//! - `nfqueue`: iptables rules queue the matching packets ([`super::iptables`]) to a handler
//!   thread of the runner ([`super::nfqueue`]) that delays, corrupts or reorders them. The rules
//!   fail open, so if the runner dies the packets flow again; `recover` deletes the rules.
//! - `nft dup`: an nftables table duplicating a share of the outgoing packets.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::exec::Executor;
use super::iptables::{self, Family, Hook, QueueChain, QueueRules};
use super::nfqueue::{self, QueueHandle};
use super::{nft, tc};
use crate::fault::params::{Mechanism, NetDirection, NetEffect};
use crate::fault::{BoxError, Fault, FaultError, Guard, InjectCx, Revert, RevertSpec};

/// A kernel-level network fault on one host target.
#[derive(Debug, Clone)]
pub struct NetFault {
    /// Target name.
    pub target: String,
    /// The target's network namespace; `None` for the host chaosforge runs in.
    pub netns: Option<String>,
    /// The interface; needed by qdisc mechanisms, optional for NFQUEUE and nft.
    pub interface: Option<String>,
    /// Only packets to/from these; empty: all but loopback.
    pub peers: Vec<IpAddr>,
    /// Only packets with one of these ports at either end.
    pub ports: Vec<u16>,
    /// Which way.
    pub direction: NetDirection,
    /// What happens to the packets.
    pub effect: NetEffect,
    /// How.
    pub mechanism: Mechanism,
    /// Unique per run and fault instance: names the qdisc's ifb, chains and tables.
    pub unique: String,
    /// Seeds the NFQUEUE handler's random choices.
    pub seed: u64,
    /// Runs `tc`, `ip`, `iptables`, `nft`.
    pub exec: Arc<dyn Executor>,
}

impl NetFault {
    fn hooks(&self) -> Vec<Hook> {
        match self.direction {
            NetDirection::Egress => vec![Hook::Output],
            NetDirection::Ingress => vec![Hook::Input],
            NetDirection::Both => vec![Hook::Output, Hook::Input],
        }
    }

    fn ways(&self) -> Vec<tc::Way> {
        match self.direction {
            NetDirection::Egress => vec![tc::Way::Egress],
            NetDirection::Ingress => vec![tc::Way::Ingress],
            NetDirection::Both => vec![tc::Way::Egress, tc::Way::Ingress],
        }
    }

    fn fail(&self, message: impl std::fmt::Display) -> FaultError {
        FaultError::Target {
            target: self.target.clone(),
            message: message.to_string(),
        }
    }

    fn shape(&self) -> tc::Shape {
        let mut n = tc::NetemParams::default();
        match self.effect {
            NetEffect::Rate { bits_per_sec } => return tc::Shape::Rate { bits_per_sec },
            NetEffect::Latency { delay, jitter } => {
                n.delay = delay;
                n.jitter = jitter;
            }
            NetEffect::Corrupt { probability } => n.corrupt = probability.get(),
            NetEffect::Duplicate { probability } => n.duplicate = probability.get(),
            NetEffect::Reorder { probability, gap } => n.reorder = Some((probability.get(), gap)),
        }
        tc::Shape::Netem(n)
    }

    async fn inject_qdisc(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        let Some(iface) = self.interface.clone() else {
            return Err(self.fail(format!(
                "`{}` by {} shapes one interface, and this host has several: name it with `interface:` on the target",
                self.kind(),
                self.mechanism
            )));
        };
        let ways = self.ways();
        let egress = ways.contains(&tc::Way::Egress);
        let ifb = ways
            .contains(&tc::Way::Ingress)
            .then(|| tc::ifb_name(&self.unique));
        cx.announce(
            &self.target,
            self.kind(),
            RevertSpec::Qdisc {
                netns: self.netns.clone(),
                interface: iface.clone(),
                egress,
                ifb: ifb.clone(),
            },
        )?;
        let m = tc::Match {
            peers: self.peers.clone(),
            ports: self.ports.clone(),
        };
        let shape = self.shape();
        for way in ways {
            let r = tc::apply(
                &*self.exec,
                self.netns.as_deref(),
                &iface,
                way,
                ifb.as_deref().unwrap_or(""),
                &m,
                &shape,
            )
            .await;
            if let Err(e) = r {
                let undone = remove_qdiscs(
                    &*self.exec,
                    self.netns.as_deref(),
                    &iface,
                    egress,
                    ifb.as_deref(),
                )
                .await
                .is_ok();
                return Err(FaultError::Apply {
                    message: format!("{} on `{}`: {e}", self.kind(), self.target),
                    undone,
                });
            }
        }
        Ok(cx.guard(Box::new(RemoveQdisc {
            exec: self.exec.clone(),
            netns: self.netns.clone(),
            interface: iface,
            egress,
            ifb,
        })))
    }

    async fn inject_dup(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        let NetEffect::Duplicate { probability } = self.effect else {
            return Err(self.fail("nft dup only duplicates packets"));
        };
        let Some(iface) = self.interface.clone() else {
            return Err(self.fail(
                "`duplicate` by nft dup sends the copies through one interface, and this host has several: name it with `interface:` on the target",
            ));
        };
        let table = nft::table_name(&self.unique);
        let per_10000 = (probability.get() * 10_000.0).round() as u32;
        let script = dup_ruleset(&table, &iface, &self.peers, &self.ports, per_10000);
        cx.announce(
            &self.target,
            self.kind(),
            RevertSpec::NftTable {
                netns: self.netns.clone(),
                table: table.clone(),
                families: vec!["ip".into(), "ip6".into()],
            },
        )?;
        if let Err(e) = nft::apply_table(&*self.exec, self.netns.as_deref(), &script).await {
            let undone =
                nft::delete_tables(&*self.exec, self.netns.as_deref(), &table, &["ip", "ip6"])
                    .await
                    .is_ok();
            return Err(FaultError::Apply {
                message: format!("duplicate on `{}`: {e}", self.target),
                undone,
            });
        }
        Ok(cx.guard(Box::new(DeleteTables {
            exec: self.exec.clone(),
            netns: self.netns.clone(),
            table,
        })))
    }

    async fn inject_queue(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        let behaviour = match self.effect {
            NetEffect::Latency { delay, jitter } => nfqueue::Behaviour {
                delay,
                jitter,
                corrupt: 0.0,
                reorder: None,
            },
            NetEffect::Corrupt { probability } => nfqueue::Behaviour {
                delay: Default::default(),
                jitter: Default::default(),
                corrupt: probability.get(),
                reorder: None,
            },
            NetEffect::Reorder { probability, gap } => nfqueue::Behaviour {
                delay: Default::default(),
                jitter: Default::default(),
                corrupt: 0.0,
                reorder: Some(nfqueue::Reorder {
                    probability: probability.get(),
                    gap,
                }),
            },
            NetEffect::Duplicate { .. } | NetEffect::Rate { .. } => {
                return Err(self.fail(format!(
                    "`{}` cannot be done by the NFQUEUE handler",
                    self.kind()
                )));
            }
        };
        let chains: Vec<QueueChain> = self
            .hooks()
            .into_iter()
            .map(|hook| QueueChain {
                hook,
                chain: iptables::chain_name(&self.unique, hook),
            })
            .collect();
        let families = iptables::families(&self.peers, have_ip6tables());
        cx.announce(
            &self.target,
            self.kind(),
            RevertSpec::QueueChains {
                netns: self.netns.clone(),
                chains: chains.clone(),
                families: families.clone(),
            },
        )?;
        // Bind first, then add the rules: packets never reach an unbound queue (they would
        // bypass it, but the fault would silently not happen).
        let handle = self.bind_queue(behaviour).await?;
        let rules = QueueRules {
            chains: chains.clone(),
            interface: self.interface.clone(),
            peers: self.peers.clone(),
            ports: self.ports.clone(),
            queue: handle.0,
        };
        if let Err(e) = iptables::apply(&*self.exec, self.netns.as_deref(), &rules, &families).await
        {
            stop_queue(handle.1).await;
            return Err(FaultError::Apply {
                message: format!("{} on `{}`: {e}", self.kind(), self.target),
                undone: true,
            });
        }
        Ok(cx.guard(Box::new(RemoveQueue {
            exec: self.exec.clone(),
            netns: self.netns.clone(),
            chains,
            families,
            handle: Mutex::new(Some(handle.1)),
        })))
    }

    /// Binds a queue number no other process holds: tries a few, derived from the seed.
    async fn bind_queue(
        &self,
        behaviour: nfqueue::Behaviour,
    ) -> Result<(u16, QueueHandle), FaultError> {
        let netns = self.netns.clone();
        let seed = self.seed;
        let r = tokio::task::spawn_blocking(move || {
            let mut last = None;
            for attempt in 0..16u64 {
                let num = 0x4000 + ((seed.wrapping_add(attempt * 7919)) % 0xb000) as u16;
                match QueueHandle::start(netns.as_deref(), num, behaviour.clone(), seed) {
                    Ok(h) => return Ok((num, h)),
                    Err(e) => last = Some(e.to_string()),
                }
            }
            Err(last.unwrap_or_default())
        })
        .await;
        match r {
            Ok(Ok(h)) => Ok(h),
            Ok(Err(e)) => Err(FaultError::Apply {
                message: format!("cannot bind an NFQUEUE queue: {e}"),
                undone: true,
            }),
            Err(e) => Err(FaultError::Apply {
                message: format!("NFQUEUE handler: {e}"),
                undone: true,
            }),
        }
    }
}

/// Whether `ip6tables` can be run here (IPv6 rules are skipped without it).
fn have_ip6tables() -> bool {
    std::process::Command::new("ip6tables")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

async fn stop_queue(h: QueueHandle) -> String {
    match tokio::task::spawn_blocking(move || h.stop()).await {
        Ok(Ok(s)) => format!(
            "{} packets through the handler ({} delayed, {} corrupted, {} reordered)",
            s.received, s.delayed, s.corrupted, s.reordered
        ),
        Ok(Err(e)) => format!("handler stopped with an error: {e}"),
        Err(e) => format!("handler thread: {e}"),
    }
}

/// The nft script of a `duplicate`: tables `ip TABLE` and `ip6 TABLE` (nft `dup` exists only
/// in those families) whose output chains send a copy of a share of the matching packets
/// through `iface`. Pure.
pub fn dup_ruleset(
    table: &str,
    iface: &str,
    peers: &[IpAddr],
    ports: &[u16],
    per_10000: u32,
) -> String {
    let mut out = String::new();
    let ports_set: Vec<String> = ports.iter().map(u16::to_string).collect();
    for (family, addr) in [("ip", "ip"), ("ip6", "ip6")] {
        let list: Vec<String> = peers
            .iter()
            .filter(|p| p.is_ipv4() == (family == "ip"))
            .map(IpAddr::to_string)
            .collect();
        if !peers.is_empty() && list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "table {family} {table} {{}}");
        let _ = writeln!(out, "delete table {family} {table}");
        let _ = writeln!(out, "table {family} {table} {{");
        let _ = writeln!(out, "\tchain output {{");
        let _ = writeln!(
            out,
            "\t\ttype filter hook output priority filter; policy accept;"
        );
        let who = if list.is_empty() {
            String::new()
        } else {
            format!("{addr} daddr {{ {} }} ", list.join(", "))
        };
        let dup =
            format!("numgen random mod 10000 < {per_10000} dup to {addr} daddr device \"{iface}\"");
        if ports_set.is_empty() {
            let _ = writeln!(out, "\t\toifname \"{iface}\" {who}{dup}");
        } else {
            for end in ["sport", "dport"] {
                let _ = writeln!(
                    out,
                    "\t\toifname \"{iface}\" {who}meta l4proto {{ tcp, udp }} th {end} {{ {} }} {dup}",
                    ports_set.join(", ")
                );
            }
        }
        let _ = writeln!(out, "\t}}");
        out.push_str("}\n");
    }
    out
}

#[async_trait]
impl Fault for NetFault {
    fn kind(&self) -> &'static str {
        self.effect.name()
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn inject(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        match self.mechanism {
            Mechanism::Netem | Mechanism::Htb => self.inject_qdisc(cx).await,
            Mechanism::NftDup => self.inject_dup(cx).await,
            Mechanism::Nfqueue => self.inject_queue(cx).await,
        }
    }
}

struct RemoveQdisc {
    exec: Arc<dyn Executor>,
    netns: Option<String>,
    interface: String,
    egress: bool,
    ifb: Option<String>,
}

#[async_trait]
impl Revert for RemoveQdisc {
    async fn revert(self: Box<Self>) -> Result<String, BoxError> {
        remove_qdiscs(
            &*self.exec,
            self.netns.as_deref(),
            &self.interface,
            self.egress,
            self.ifb.as_deref(),
        )
        .await
    }
}

/// Removes the egress root (when `egress`) and the ingress shape (when `ifb` is given); both
/// are attempted even if the first fails.
async fn remove_qdiscs(
    exec: &dyn Executor,
    netns: Option<&str>,
    interface: &str,
    egress: bool,
    ifb: Option<&str>,
) -> Result<String, BoxError> {
    let mut notes = Vec::new();
    let mut first_err = None;
    if egress {
        match tc::remove(exec, netns, interface, None).await {
            Ok(n) => notes.push(n),
            Err(e) => first_err = Some(e),
        }
    }
    if let Some(ifb) = ifb {
        match tc::remove(exec, netns, interface, Some(ifb)).await {
            Ok(n) => notes.push(n),
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    match first_err {
        Some(e) => Err(e.into()),
        None => Ok(notes.join("; ")),
    }
}

struct DeleteTables {
    exec: Arc<dyn Executor>,
    netns: Option<String>,
    table: String,
}

#[async_trait]
impl Revert for DeleteTables {
    async fn revert(self: Box<Self>) -> Result<String, BoxError> {
        let n = nft::delete_tables(
            &*self.exec,
            self.netns.as_deref(),
            &self.table,
            &["ip", "ip6"],
        )
        .await?;
        Ok(format!("deleted {n} nft table(s) {}", self.table))
    }
}

struct RemoveQueue {
    exec: Arc<dyn Executor>,
    netns: Option<String>,
    chains: Vec<QueueChain>,
    families: Vec<Family>,
    handle: Mutex<Option<QueueHandle>>,
}

#[async_trait]
impl Revert for RemoveQueue {
    async fn revert(self: Box<Self>) -> Result<String, BoxError> {
        // Rules first, so that no new packet is queued; then the handler lets go of the
        // packets it still holds.
        let removed = iptables::remove(
            &*self.exec,
            self.netns.as_deref(),
            &self.chains,
            &self.families,
        )
        .await;
        let handle = self.handle.lock().ok().and_then(|mut h| h.take());
        let stats = match handle {
            Some(h) => stop_queue(h).await,
            None => String::new(),
        };
        let n = removed?;
        Ok(format!("removed {n} iptables chain(s); {stats}"))
    }
}

/// Undoes a `QueueChains` record (what `recover` calls): the handler died with its runner.
pub async fn revert_queue_chains(
    netns: Option<&str>,
    chains: &[QueueChain],
    families: &[Family],
) -> Result<String, BoxError> {
    let n = iptables::remove(&super::exec::SystemExecutor, netns, chains, families).await?;
    Ok(format!("removed {n} iptables chain(s)"))
}

/// Undoes a `Qdisc` record (what `recover` calls).
pub async fn revert_qdisc(
    netns: Option<&str>,
    interface: &str,
    egress: bool,
    ifb: Option<&str>,
) -> Result<String, BoxError> {
    remove_qdiscs(&super::exec::SystemExecutor, netns, interface, egress, ifb).await
}
