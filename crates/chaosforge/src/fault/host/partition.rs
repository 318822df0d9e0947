//! `partition`: a host stops exchanging packets with some peers (or with everyone), by nftables
//! drop rules in a table of its own.
//!
//! The rules sit in the `input` and `output` hooks of the target's network namespace, so they
//! act on the target's own traffic: new connections fail (their SYNs are dropped) and existing
//! ones stop carrying data (a drop rule matches every packet, not only new flows; nothing in our
//! table accepts first). Reverting deletes the table; TCP connections that outlived the fault
//! carry data again at their next retransmission.
//!
//! Routed traffic (the `forward` hook) is not touched: a host that routes for others (a
//! container host, a gateway) is partitioned itself, its clients are other targets.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;

use super::exec::{Executor, SystemExecutor};
use super::nft;
use crate::fault::{BoxError, Fault, FaultError, Guard, InjectCx, Revert, RevertSpec};

/// Which packets between the target and its peers are dropped, seen from the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionDirection {
    /// Both ways: nothing goes in or out.
    Both,
    /// Only what comes in from the peers (the target can still send to them).
    Ingress,
    /// Only what goes out to the peers (the target still receives from them).
    Egress,
}

/// `partition`: drops the traffic between a target and its peers, in its network namespace.
#[derive(Debug, Clone)]
pub struct PartitionFault {
    /// Target name.
    pub target: String,
    /// The target's network namespace; `None` for the host chaosforge runs in.
    pub netns: Option<String>,
    /// The peers to cut off. Empty: every peer — the target keeps only its loopback traffic.
    pub peers: Vec<IpAddr>,
    /// Which way packets are dropped.
    pub direction: PartitionDirection,
    /// The nft table holding the rules; unique per fault, made with [`nft::table_name`].
    pub table: String,
    /// Runs `nft`.
    pub exec: Arc<dyn Executor>,
}

/// The guard's undo: delete the table.
struct DeleteTable {
    exec: Arc<dyn Executor>,
    netns: Option<String>,
    table: String,
}

/// The nft script of a partition: creates table `inet TABLE` with the drop rules, replacing a
/// table of that name if one is left (so a retried inject never stacks rules). Pure.
///
/// `table` must satisfy [`nft::is_chaosforge_table`] (it is written into the script unquoted).
/// Peers are sorted and deduplicated, so the text depends only on the set of peers. With no
/// peers every packet except loopback's is dropped: chaosforge itself, or an agent, may run in
/// the namespace and talk to itself.
pub fn ruleset(table: &str, peers: &[IpAddr], direction: PartitionDirection) -> String {
    sampled_ruleset(table, peers, direction, None)
}

/// Like [`ruleset`], but each rule drops only a random share of the packets it matches
/// (`numgen random`), in hundredths of a percent: `Some(2000)` drops 20 %. Used by `loss`.
pub fn sampled_ruleset(
    table: &str,
    peers: &[IpAddr],
    direction: PartitionDirection,
    per_10000: Option<u32>,
) -> String {
    let drop = match per_10000 {
        Some(n) => format!("numgen random mod 10000 < {n} drop"),
        None => "drop".to_string(),
    };
    let mut peers = peers.to_vec();
    peers.sort();
    peers.dedup();
    let mut out = String::new();
    // `add` then `delete` is the idiom for "delete if it exists" inside one transaction.
    let _ = writeln!(out, "table inet {table} {{}}");
    let _ = writeln!(out, "delete table inet {table}");
    let _ = writeln!(out, "table inet {table} {{");
    let hooks: &[(&str, &str, &str)] = match direction {
        PartitionDirection::Both => &[
            ("input", "iifname", "saddr"),
            ("output", "oifname", "daddr"),
        ],
        PartitionDirection::Ingress => &[("input", "iifname", "saddr")],
        PartitionDirection::Egress => &[("output", "oifname", "daddr")],
    };
    for (i, (hook, ifname, addr)) in hooks.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "\tchain {hook} {{");
        // A drop verdict is final whatever the priority, so ours only places the chain among
        // others; at `filter` addresses are the real peers' (after output DNAT).
        let _ = writeln!(
            out,
            "\t\ttype filter hook {hook} priority filter; policy accept;"
        );
        if peers.is_empty() {
            let _ = writeln!(out, "\t\t{ifname} != \"lo\" {drop}");
        }
        for (family, list) in [("ip", v4(&peers)), ("ip6", v6(&peers))] {
            if !list.is_empty() {
                let _ = writeln!(out, "\t\t{family} {addr} {{ {} }} {drop}", list.join(", "));
            }
        }
        let _ = writeln!(out, "\t}}");
    }
    out.push_str("}\n");
    out
}

fn v4(peers: &[IpAddr]) -> Vec<String> {
    peers
        .iter()
        .filter(|p| p.is_ipv4())
        .map(IpAddr::to_string)
        .collect()
}

fn v6(peers: &[IpAddr]) -> Vec<String> {
    peers
        .iter()
        .filter(|p| p.is_ipv6())
        .map(IpAddr::to_string)
        .collect()
}

/// Deletes a partition's table from the journal record alone (what `recover` calls), with the
/// system's `nft`. Idempotent: a table (or namespace) already gone is success.
pub async fn revert_nft_table(netns: Option<&str>, table: &str) -> Result<String, BoxError> {
    delete_with_note(&SystemExecutor, netns, table).await
}

async fn delete_with_note(
    exec: &dyn Executor,
    netns: Option<&str>,
    table: &str,
) -> Result<String, BoxError> {
    let place = match netns {
        Some(ns) => format!("netns {ns}"),
        None => "the host".to_string(),
    };
    if nft::delete_table(exec, netns, table).await? {
        Ok(format!("deleted nft table {table} in {place}"))
    } else {
        Ok(format!("nft table {table} already gone ({place})"))
    }
}

// === impl PartitionDirection ===

impl fmt::Display for PartitionDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PartitionDirection::Both => "both",
            PartitionDirection::Ingress => "ingress",
            PartitionDirection::Egress => "egress",
        })
    }
}

// === impl PartitionFault ===

#[async_trait]
impl Fault for PartitionFault {
    fn kind(&self) -> &'static str {
        "partition"
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn inject(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        let script = ruleset(&self.table, &self.peers, self.direction);
        inject_table(
            cx,
            &self.target,
            self.kind(),
            self.netns.as_deref(),
            &self.table,
            &script,
            &self.exec,
        )
        .await
    }
}

/// Injects a fault that is one nftables table: journals `NftTable` first, applies `script` in one
/// transaction, and returns a guard that deletes the table. Shared by `partition` and `loss`.
pub(super) async fn inject_table(
    cx: &InjectCx<'_>,
    target: &str,
    kind: &str,
    netns: Option<&str>,
    table: &str,
    script: &str,
    exec: &Arc<dyn Executor>,
) -> Result<Guard, FaultError> {
    if !nft::is_chaosforge_table(table) {
        return Err(FaultError::Target {
            target: target.to_string(),
            message: format!("`{table}` is not a chaosforge nft table name"),
        });
    }
    cx.announce(
        target,
        kind,
        RevertSpec::NftTable {
            netns: netns.map(str::to_string),
            table: table.to_string(),
            families: vec!["inet".to_string()],
        },
    )?;
    if let Err(e) = nft::apply_table(&**exec, netns, script).await {
        // `nft -f` is one transaction, so a failure normally leaves nothing behind; but after
        // a timeout we cannot know, so delete to be sure. If that fails too, the journal
        // entry stays open for `recover`.
        let undone = nft::delete_table(&**exec, netns, table).await.is_ok();
        return Err(FaultError::Apply {
            message: format!("{kind} on `{target}`: {e}"),
            undone,
        });
    }
    Ok(cx.guard(Box::new(DeleteTable {
        exec: exec.clone(),
        netns: netns.map(str::to_string),
        table: table.to_string(),
    })))
}

#[async_trait]
impl Revert for DeleteTable {
    async fn revert(self: Box<Self>) -> Result<String, BoxError> {
        delete_with_note(&*self.exec, self.netns.as_deref(), &self.table).await
    }
}
