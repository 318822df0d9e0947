//! chaosforge's in-process TCP fault proxy: forwards each client connection to an upstream and
//! applies Toxiproxy-style toxics to its bytes, and a Toxiproxy-compatible HTTP API over it.
//!
//! Where to start: [`TcpProxy::start`], then the [`ProxyControl`] methods (the engine); or
//! [`ApiServer`] (what `chaosforge proxy` serves).
//!
//! Module map (what each module owns; what it may import from this crate). The TCP proxy is a
//! one-way chain, listener → connection → link, over the leaf `state`; shared state is handed
//! down, never imported up (`scripts/check-proxy-layers` keeps it so):
//! - `api`: [`ApiServer`], the Toxiproxy 2.12 HTTP API (routes, JSON shapes, errors, populate);
//!   imports `proxy`, `model`, `metrics`, `toxic`.
//! - `proxy`: [`TcpProxy`] (listener, accept loop handing connections to one current-thread
//!   runtime per core, toxic list changes, enable/disable,
//!   `down`/up, live listen/upstream changes) and [`InProcessBackend`]; imports `conn`,
//!   `state`, `model`, `metrics`, `toxic`.
//! - `conn`: serving one connection: dials the upstream, runs its two links, deregisters it;
//!   imports `link`, `state`, `toxic`.
//! - `link`: one direction of a connection: chunks through the toxic chain, or `splice(2)`
//!   through a pipe while no toxic applies; half-close. Takes the proxy's name and metrics from
//!   `conn`; imports `state`, `toxic`, `metrics`, `model` only.
//! - `state`: what the three share: `Shared` (the proxy's toxic list, connection registry,
//!   upstream, seed, options, metrics), one connection's `Conn` handle and `ConnState`, and
//!   [`ConnectionInfo`]; imports `toxic`, `metrics`, `model` only.
//! - `toxic`: the per-link toxic chain, and one file per behaviour (`latency`, `bandwidth`,
//!   `slow_close`, `timeout`, `reset_peer`, `slicer`, `limit_data`, `corrupt`, the engine's
//!   `hold` and `reset`; `noop`, `loss`, `blackhole` are one line each in the chain). `down`
//!   acts on the listener, in `proxy`. Imports `model` only.
//! - `model`: [`Toxic`] and [`ToxicKind`], this crate's toxic model; the engine's
//!   [`ProxyToxic`]s map onto it. Imports nothing of this crate.
//! - `metrics`: [`Metrics`], Prometheus counters updated while bytes flow. Imports nothing of
//!   this crate.
//! - `http`: the HTTP (L7) fault proxy, [`http::HttpProxy`]; the engine starts it through
//!   [`InProcessBackend`]'s `start_http` and drives it with `HttpRule`s. Imports `toxic` and
//!   `proxy` (address resolution).
//!
//! How toxics reach open connections: the proxy publishes its toxic list through a
//! `tokio::sync::watch` channel; every link reconciles its own chain with the latest list
//! between two steps, so a change applies at the next chunk boundary without losing,
//! duplicating or reordering bytes. A link with no active toxic copies small reads straight
//! socket to socket and moves bulk data with `splice(2)` (zero-copy), and switches to chunks once its pipe is empty. Toxicity is rolled once per link and toxic, with an RNG
//! seeded from (proxy seed, connection number, stream, toxic number).
//!
//! ```
//! use std::time::Duration;
//!
//! use chaosforge::fault::net::{ProxyControl, ProxyFault, ProxyToxic, Stream};
//! use chaosforge::units::Ratio;
//! use chaosforge_proxy::TcpProxy;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tokio::net::{TcpListener, TcpStream};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # chaosforge::testkit::assert_isolated();
//! // An upstream that answers "pong".
//! let upstream = TcpListener::bind("127.0.0.1:0").await?;
//! let upstream_addr = upstream.local_addr()?.to_string();
//! tokio::spawn(async move {
//!     while let Ok((mut socket, _)) = upstream.accept().await {
//!         let _ = socket.write_all(b"pong").await;
//!     }
//! });
//!
//! let proxy = TcpProxy::start("db", "127.0.0.1:0", &upstream_addr, 42).await?;
//! proxy
//!     .add_toxic(ProxyToxic {
//!         name: "slow".into(),
//!         stream: Stream::Downstream,
//!         toxicity: Ratio::ONE,
//!         fault: ProxyFault::Latency { delay: Duration::from_millis(50), jitter: Duration::ZERO },
//!     })
//!     .await?;
//!
//! let started = tokio::time::Instant::now();
//! let mut client = TcpStream::connect(proxy.listen_addr()).await?;
//! let mut reply = [0; 4];
//! client.read_exact(&mut reply).await?;
//! assert_eq!(&reply, b"pong");
//! assert!(started.elapsed() >= Duration::from_millis(50));
//!
//! assert!(proxy.remove_toxic("slow").await?);
//! assert!(!proxy.remove_toxic("slow").await?); // idempotent
//! proxy.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod api;
mod conn;
pub mod http;
mod link;
pub mod metrics;
pub mod model;
mod proxy;
mod state;
mod toxic;

pub use chaosforge::fault::net::{
    ProxyBackend, ProxyControl, ProxyError, ProxyFault, ProxyToxic, Stream,
};

pub use crate::api::{ApiServer, ServeOptions};
pub use crate::metrics::Metrics;
pub use crate::model::{Toxic, ToxicKind};
pub use crate::proxy::{InProcessBackend, ProxyOptions, TcpProxy};
pub use crate::state::ConnectionInfo;
