//! End-to-end tests of the `chaosforge` binary: real processes, loopback only.
#![allow(clippy::unwrap_used)]

mod agent;
mod analysis;
mod claims;
mod containers;
mod ctk;
mod deadman;
mod demo;
mod freeze;
mod gameday;
mod golden;
mod history;
mod http;
mod kill;
mod limits;
mod live;
mod metrics;
mod monitors;
mod notify;
mod plan;
mod policies;
mod prometheus;
mod recover;
mod reports;
mod restart;
mod run;
mod runs;
mod support;
mod validate;
