//! Integration tests of the TCP fault proxy, all through real loopback sockets.
//!
//! Timing assertions compare a figure measured from a client outside the proxy with a baseline
//! measured in the same test, so a slow or noisy machine shifts both alike. Every loop and wait
//! is bounded (see `support::within`).

#![allow(clippy::unwrap_used)]

mod bandwidth;
mod control;
mod corrupt;
mod down;
mod latency;
mod splice;
mod support;
mod timeout_reset;
