//! End-to-end tests of the `chaosforge` binary: real processes, loopback only.
#![allow(clippy::unwrap_used)]

mod demo;
mod recover;
mod run;
mod support;
mod validate;
