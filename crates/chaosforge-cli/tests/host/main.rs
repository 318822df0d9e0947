//! Host faults against real hosts: network namespaces joined by a bridge (`netns`), with all
//! traffic sent from inside them by agents (`agent`). Needs root, `ip` (iproute2) and `nft`
//! (nftables); creates and deletes its own namespaces, so it runs the same inside or outside
//! `scripts/test`.
#![allow(clippy::unwrap_used)]
// Agents measure timeouts on the real clock, in their own process.
#![allow(clippy::disallowed_types)]

mod agent;
mod loss;
mod netdeg;
mod netns;
mod partition;
mod run;
mod torture;
