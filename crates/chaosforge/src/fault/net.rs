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

pub use crate::vocab::{HttpProxyReport, HttpRuleCounters};

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

impl ProxyFault {
    /// The key users write for a toxic (`latency`, `down`, …).
    pub fn name(&self) -> &'static str {
        match self {
            ProxyFault::Latency { .. } => "latency",
            ProxyFault::Bandwidth { .. } => "bandwidth",
            ProxyFault::Timeout { .. } => "timeout",
            ProxyFault::Reset { .. } => "reset",
            ProxyFault::Down => "down",
            ProxyFault::Corrupt { .. } => "corrupt",
        }
    }
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

    /// Starts an HTTP (L7) fault proxy for an `http_proxy` target: it listens on `listen` and
    /// forwards every request to `upstream` (`http://…` or `https://…`, trusting the PEM CA
    /// `upstream_ca` besides the system roots). TLS clients are passed through to an https
    /// upstream untouched until a [`HttpRuleAction::TlsMitm`] rule is set (with an http
    /// upstream they are closed). Backends without one refuse.
    async fn start_http(
        &self,
        name: &str,
        listen: &str,
        upstream: &str,
        upstream_ca: Option<&std::path::Path>,
        seed: u64,
    ) -> Result<Arc<dyn HttpProxyControl>, ProxyError> {
        let _ = (listen, upstream, upstream_ca, seed);
        Err(ProxyError::Remote(format!(
            "`{name}`: this proxy backend has no HTTP proxy"
        )))
    }
}

/// A running HTTP fault proxy. Rules apply to the next request of every connection, open ones
/// included; changing them never drops a connection. [`HttpRuleAction::TlsMitm`] is the
/// exception: it acts on the TLS handshake, so it applies to new connections only.
#[async_trait]
pub trait HttpProxyControl: fmt::Debug + Send + Sync {
    /// The address clients connect to (concrete, after binding `:0`).
    fn listen_addr(&self) -> SocketAddr;

    /// Adds a rule, or replaces the rule of that name.
    async fn set_rule(&self, rule: HttpRule) -> Result<(), ProxyError>;

    /// Removes a rule by name. Idempotent: `false` when no such rule existed.
    async fn remove_rule(&self, name: &str) -> Result<bool, ProxyError>;

    /// What each rule did so far, and the security findings (a client that accepted a bad
    /// certificate, an upstream that accepted forged credentials or a replay).
    fn report(&self) -> HttpProxyReport;

    /// Stops listening and closes every connection. Idempotent.
    async fn shutdown(&self);
}

/// One fault on an HTTP proxy: which requests, how often, what happens. Plain data, so that
/// plans and journals can hold it; the proxy maps it onto its HTTP types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRule {
    /// Unique per proxy; removing by name is how the fault is reverted.
    pub name: String,
    /// Which requests.
    pub matcher: HttpMatch,
    /// Share of the matching requests that are faulted, drawn per request (per new TLS
    /// connection for [`HttpRuleAction::TlsMitm`]).
    pub probability: Ratio,
    /// What happens to them.
    pub action: HttpRuleAction,
}

/// Which requests a rule acts on; every given condition must hold (empty: every request).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HttpMatch {
    /// Methods (`GET`, `POST`, …); empty: any.
    pub methods: Vec<String>,
    /// The path starts with this.
    pub path_prefix: Option<String>,
    /// The path matches this regular expression (checked when planning).
    pub path_regex: Option<String>,
    /// Headers that must be present (`equals: None`) or equal a value.
    pub headers: Vec<HeaderCondition>,
}

/// A header a request must have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeaderCondition {
    /// Header name.
    pub name: String,
    /// The value it must equal; `None`: present with any value.
    pub equals: Option<String>,
}

/// What an HTTP rule does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum HttpRuleAction {
    /// Answer with `status` (and body, headers) without calling upstream.
    Abort {
        /// The status code (100–599, checked when planning).
        status: u16,
        /// The body.
        body: Option<String>,
        /// Extra response headers.
        headers: Vec<(String, String)>,
    },
    /// Close the connection without an answer.
    Drop,
    /// Delay the request before forwarding it and/or the response before returning it.
    Delay {
        /// Before forwarding.
        #[serde(with = "crate::units::millis")]
        request: Duration,
        /// Before answering.
        #[serde(with = "crate::units::millis")]
        response: Duration,
        /// Uniform spread around each delay.
        #[serde(with = "crate::units::millis")]
        jitter: Duration,
    },
    /// Never answer.
    Hang,
    /// Cut the response body after `keep` bytes.
    Truncate {
        /// Bytes kept.
        keep: u64,
    },
    /// Flip a bit in each byte of the response body with this chance.
    FlipBytes {
        /// Per byte.
        probability: Ratio,
    },
    /// Replace the JSON values at a JSONPath in the response body.
    JsonReplace {
        /// RFC 9535 JSONPath (checked when planning).
        path: String,
        /// The new value.
        value: serde_json::Value,
    },
    /// Add, replace or remove headers.
    Headers {
        /// On the request, before forwarding.
        request: Vec<HeaderEditRule>,
        /// On the response, before answering.
        response: Vec<HeaderEditRule>,
    },
    /// Remove a credential from the request.
    AuthStrip {
        /// Which.
        credential: CredentialRule,
    },
    /// Replace a credential with a forged one.
    AuthForge {
        /// Which.
        credential: CredentialRule,
        /// The forgery.
        forgery: ForgeryRule,
    },
    /// Pass the first matching request through, then send it again `times` times.
    Replay {
        /// Copies sent.
        times: u32,
    },
    /// Terminate TLS towards clients with a bad certificate (instead of passing TLS through),
    /// then apply the other rules to their requests. Takes no matcher (there is no request
    /// yet at the handshake); makes sense on an https upstream only.
    TlsMitm {
        /// The certificate's defect.
        certificate: MitmVariant,
    },
}

/// One header change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderEditRule {
    /// Add a value (keeping others).
    Add(String, String),
    /// Replace every value.
    Set(String, String),
    /// Remove the header.
    Remove(String),
}

/// Where a request carries its credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialRule {
    /// The `Authorization` header.
    Authorization,
    /// A cookie of this name.
    Cookie(String),
    /// A header of this name (an API key).
    Header(String),
}

/// A forged credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForgeryRule {
    /// The request's JWT re-signed with a wrong key.
    JwtWrongKey,
    /// The request's JWT with `alg: none` and no signature.
    JwtAlgNone,
    /// The request's JWT, expired.
    JwtExpired,
    /// The request's JWT with these claims changed.
    JwtClaims(serde_json::Map<String, serde_json::Value>),
    /// This literal token.
    Token(String),
}

/// The defect of a man-in-the-middle certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MitmVariant {
    /// Signed by a CA nobody trusts.
    Untrusted,
    /// Past its `not_after`.
    Expired,
    /// Before its `not_before`.
    NotYetValid,
    /// For another host name.
    WrongHost,
}
