//! Integration tests of the HTTP fault proxy, through real loopback sockets, measured with a
//! real HTTP client (reqwest) against real upstreams (hyper servers in `support`).
//!
//! Timing assertions compare a figure measured from outside the proxy with a baseline measured
//! in the same test, so a slow or noisy machine shifts both alike. Every loop is bounded in
//! count, and every wait in time (`support::within`, `support::eventually`).

#![allow(clippy::unwrap_used)]

mod abort;
mod adapter;
mod auth;
mod corrupt;
mod delay;
mod headers;
mod live;
mod mitm;
mod passthrough;
mod replay;
mod support;
