//! Faults applied by a TCP fault proxy: the data ([`ProxyToxic`]) and the seam
//! ([`ProxyControl`], [`ProxyBackend`]) that `chaosforge-proxy` implements.
//!
//! The engine never opens a socket itself (this crate has no listeners): it asks a
//! [`ProxyBackend`] to start a proxy per `proxy` target, then adds and removes toxics through
//! [`ProxyControl`]. A toxic is named, so removing it is idempotent and can be done from the
//! journal alone.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::units::{Ratio, duration_text, opt_duration_text};

/// The direction of the bytes a toxic acts on, as Toxiproxy names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Client → upstream (requests).
    Upstream,
    /// Upstream → client (responses).
    Downstream,
}

/// What a toxic does to the bytes (or connections) of its stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProxyFault {
    /// Hold every chunk for `delay` ± a uniform `jitter` before forwarding it; order is kept.
    Latency {
        /// Added delay.
        #[serde(with = "duration_text")]
        delay: Duration,
        /// Uniform spread around `delay` (never below zero).
        #[serde(with = "duration_text")]
        jitter: Duration,
    },
    /// Forward at most `rate` bytes per second.
    Bandwidth {
        /// Bytes per second, at least 1.
        rate: u64,
    },
    /// Stop forwarding; close the connection after `after`, or hold it open forever (`None`).
    Timeout {
        /// When to close; `None` never closes.
        #[serde(with = "opt_duration_text", default)]
        after: Option<Duration>,
    },
    /// Reset the connection (TCP RST, via `SO_LINGER` 0) after `after`.
    Reset {
        /// Time after the toxic applies to a connection before the reset.
        #[serde(with = "duration_text")]
        after: Duration,
    },
    /// The proxy is down: new connections are refused, existing ones are dropped.
    /// Applies to the whole proxy, whatever the stream.
    Down,
    /// Flip one random bit of a byte, with `probability` per byte or per chunk.
    Corrupt {
        /// Chance of corrupting each unit.
        probability: Ratio,
        /// What the probability applies to.
        per: CorruptUnit,
    },
}

/// The unit a corruption probability applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CorruptUnit {
    /// Each byte independently.
    #[default]
    Byte,
    /// Each chunk (one read from the socket) as a whole: one bit of it flipped.
    Chunk,
}

/// A named fault on one stream of one proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyToxic {
    /// Unique per proxy; removing by name is how a toxic is reverted.
    pub name: String,
    /// Which direction it acts on (ignored by [`ProxyFault::Down`]).
    pub stream: Stream,
    /// Chance that the toxic applies to a given connection, decided once per connection when the
    /// toxic is added or the connection is opened (Toxiproxy's semantics).
    pub toxicity: Ratio,
    /// What it does.
    pub fault: ProxyFault,
}

/// Errors of a proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address as given.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// An address did not parse or resolve.
    #[error("bad address `{addr}`: {reason}")]
    Address {
        /// The address as given.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A toxic of that name exists already.
    #[error("toxic `{0}` already exists")]
    DuplicateToxic(String),
    /// The proxy is gone (shut down).
    #[error("proxy `{0}` is not running")]
    NotRunning(String),
    /// A remote proxy's API refused or failed.
    #[error("proxy API: {0}")]
    Remote(String),
    /// Any other I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A running TCP fault proxy. Toxics apply to new **and** already open connections.
#[async_trait]
pub trait ProxyControl: fmt::Debug + Send + Sync {
    /// The address clients connect to (concrete, after binding `:0`).
    fn listen_addr(&self) -> SocketAddr;

    /// Adds a toxic. Open connections pick it up without losing or reordering bytes.
    async fn add_toxic(&self, toxic: ProxyToxic) -> Result<(), ProxyError>;

    /// Removes a toxic by name. Idempotent: returns `false` when no such toxic existed.
    async fn remove_toxic(&self, name: &str) -> Result<bool, ProxyError>;

    /// Stops listening and closes every connection. Idempotent.
    async fn shutdown(&self);

    /// How `chaosforge recover` undoes `toxics` from the journal alone. An in-process proxy ends
    /// with its runner, so by default there is nothing left to undo after a crash.
    fn revert_spec(&self, target: &str, toxics: &[ProxyToxic]) -> super::RevertSpec {
        super::RevertSpec::InProcessToxics {
            target: target.to_string(),
            toxics: toxics.iter().map(|t| t.name.clone()).collect(),
        }
    }
}

/// Starts proxies for `proxy` targets. `chaosforge-proxy` implements it in-process.
#[async_trait]
pub trait ProxyBackend: Send + Sync {
    /// Binds `listen` (`host:port`, port 0 for any) and forwards each connection to `upstream`
    /// (dialled per connection). `seed` drives every random choice of its toxics.
    async fn start(
        &self,
        name: &str,
        listen: &str,
        upstream: &str,
        seed: u64,
    ) -> Result<Arc<dyn ProxyControl>, ProxyError>;
}
