//! `loss`: a host drops a random share of its packets — to and from some peers, or all but
//! loopback — with an nftables `numgen random` rule in a table of its own, the same mechanism
//! (and the same one-`delete table` revert) as `partition`. Works on kernels without netem.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;

use super::exec::Executor;
use super::partition::{PartitionDirection, inject_table, sampled_ruleset};
use crate::fault::{Fault, FaultError, Guard, InjectCx};
use crate::units::Ratio;

/// `loss`: drops `probability` of the packets between a target and its peers.
#[derive(Debug, Clone)]
pub struct LossFault {
    /// Target name.
    pub target: String,
    /// The target's network namespace; `None` for the host chaosforge runs in.
    pub netns: Option<String>,
    /// Peers whose packets are dropped; empty: every packet but loopback's.
    pub peers: Vec<IpAddr>,
    /// Which way.
    pub direction: PartitionDirection,
    /// Share of matching packets dropped.
    pub probability: Ratio,
    /// The nft table; unique per fault ([`super::nft::table_name`]).
    pub table: String,
    /// Runs `nft`.
    pub exec: Arc<dyn Executor>,
}

#[async_trait]
impl Fault for LossFault {
    fn kind(&self) -> &'static str {
        "loss"
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn inject(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        let per_10000 = (self.probability.get() * 10_000.0).round() as u32;
        let script = sampled_ruleset(&self.table, &self.peers, self.direction, Some(per_10000));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sampled_rule_drops_a_share_of_what_a_partition_would() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let text = sampled_ruleset(
            "chaosforge_t",
            &[peer],
            PartitionDirection::Egress,
            Some(2000),
        );
        assert!(
            text.contains("ip daddr { 10.0.0.2 } numgen random mod 10000 < 2000 drop"),
            "{text}"
        );
        assert!(!text.contains("hook input"), "egress only: {text}");
        let all = sampled_ruleset("chaosforge_t", &[], PartitionDirection::Both, Some(500));
        assert!(
            all.contains("iifname != \"lo\" numgen random mod 10000 < 500 drop"),
            "{all}"
        );
    }
}
