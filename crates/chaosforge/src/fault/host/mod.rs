//! Host faults: faults that act on a host (the local one or a network namespace) rather than on
//! a proxy — partitions with nftables, kernel-level network degradation.
//!
//! - [`exec`]: the [`exec::Executor`] seam that runs `ip`/`tc`/`nft` in a namespace (real, or
//!   recording for unit tests).
//! - [`nft`]: one nftables table per fault; applied in one transaction, undone by one delete.
//! - [`partition`]: the `partition` fault.
//! - [`loss`]: the `loss` fault (a random share of packets dropped, nft `numgen`).

pub mod caps;
pub mod exec;
pub mod iptables;
pub mod loss;
pub mod netdeg;
pub mod nfqueue;
pub mod nft;
pub mod partition;
pub mod tc;

#[cfg(test)]
mod tests;
