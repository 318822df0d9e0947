//! The HTTP (L7) fault proxy: a reverse proxy the system under test calls instead of its real
//! upstream, with HTTP faults and security-breach faults that change while it runs.
//!
//! Where to start: [`HttpProxy::start`] with an [`HttpProxyConfig`], then
//! [`HttpProxy::set_fault`] / [`HttpProxy::remove_fault`] (inject / revert) and
//! [`HttpProxy::stats`] (counters and [`Finding`]s for the report). The engine drives it
//! through [`HttpProxyControl`](chaosforge::fault::net::HttpProxyControl) instead, from
//! [`InProcessBackend`](crate::InProcessBackend)'s `start_http`.
//!
//! Module map:
//! - `fault`: the fault model ([`HttpFault`], [`RequestMatch`], [`HttpAction`]), plain data.
//! - `control`: the engine's seam: [`HttpRule`](chaosforge::fault::net::HttpRule)s checked and
//!   mapped onto [`HttpFault`]s, reports, `start_http`'s address and CA parsing.
//! - `conn`: one client connection: peek, then plain HTTP, TLS terminated (`tls-mitm`) or TLS
//!   passed through to the upstream.
//! - `service`: one request: match, draw, act on the request, forward, act on the response.
//! - `body`: streaming wrappers (truncate, flip bytes) and bounded buffering (JSONPath, replay).
//! - `auth`: `auth-strip` and `auth-forge` (cookies, headers, JWT forgery with HS256).
//! - `upstream`: the pooled hyper-util client (rustls for https), target URIs, hop-by-hop headers.
//! - `mitm`: `tls-mitm` certificates (own CA, untrusted, expired, not yet valid, wrong host)
//!   via rcgen, all made at start.
//! - `stats`: counters, replay and TLS records, [`Finding`]s.
//!
//! How it behaves:
//! - Clients speak HTTP/1.1 or HTTP/2 (prior knowledge on plain TCP, ALPN `h2` over TLS); the
//!   upstream gets HTTP/1.1 (http) or whatever ALPN gives (https), on pooled connections.
//! - Bodies stream both ways; only `JsonReplace` (the response) and `replay` (the request)
//!   buffer, each with a size limit above which the body passes unchanged.
//! - Faults reach open keep-alive connections at their next request: each request reads the
//!   current fault list once. Changing faults never closes a connection.
//! - One port serves plain HTTP and TLS: the first byte of a connection tells them apart.
//!   TLS is passed through at the TCP level to an https upstream (the client sees the real
//!   certificate; no HTTP fault applies), unless a `tls-mitm` fault ([`HttpAction::TlsMitm`])
//!   applies to the new connection: then the proxy terminates TLS with that fault's bad
//!   certificate and serves HTTP, every fault applying. With a plain `http://` upstream and no
//!   `tls-mitm`, a TLS client is closed: there is no TLS upstream to pass it to.
//! - Every random choice comes from the seed: request `n` draws from `mix(seed, n)`, TLS
//!   connection `n` from a sequence of its own.
//! - Failing to reach the upstream gives the client a `502` with a one-line reason.
//!
//! ```
//! use chaosforge::units::Ratio;
//! use chaosforge_proxy::http::{
//!     HttpAction, HttpFault, HttpProxy, HttpProxyConfig, RequestMatch, Upstream,
//! };
//! use hyper::StatusCode;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # chaosforge::testkit::assert_isolated();
//! // Nothing listens on the upstream's port: pass-through requests get a 502.
//! let proxy = HttpProxy::start(HttpProxyConfig {
//!     listen: "127.0.0.1:0".parse()?,
//!     upstream: Upstream::new("http://127.0.0.1:9".parse()?),
//!     mitm: None,
//!     seed: 42,
//! })
//! .await?;
//! let url = format!("http://{}/orders", proxy.local_addr());
//! let client = reqwest::Client::builder().no_proxy().build()?;
//! assert_eq!(client.get(&url).send().await?.status(), 502);
//!
//! // Inject: every request under /orders is answered 503 without calling the upstream.
//! proxy.set_fault(HttpFault::new(
//!     "orders-down",
//!     RequestMatch { path_prefix: Some("/orders".into()), ..RequestMatch::default() },
//!     Ratio::ONE,
//!     HttpAction::Abort { status: StatusCode::SERVICE_UNAVAILABLE, body: None, headers: vec![] },
//! ));
//! assert_eq!(client.get(&url).send().await?.status(), 503);
//!
//! // Revert, idempotently; the counters stay for the report.
//! assert!(proxy.remove_fault("orders-down"));
//! assert!(!proxy.remove_fault("orders-down"));
//! assert_eq!(client.get(&url).send().await?.status(), 502);
//! let stats = proxy.stats();
//! assert_eq!((stats.faults["orders-down"].matched, stats.faults["orders-down"].faulted), (1, 1));
//! proxy.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use chaosforge::units::Ratio;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod auth;
mod body;
mod conn;
mod control;
mod fault;
mod mitm;
mod service;
mod stats;
mod upstream;

pub use self::fault::{
    BodyCorruption, Credential, Forgery, HeaderCond, HeaderEdit, HttpAction, HttpFault,
    RequestMatch,
};
pub use self::mitm::MitmCert;
pub use self::stats::{
    FaultStats, Finding, ProxyStats, ReplayOutcome, ReplayRecord, Tamper, TlsStats,
};
pub use self::upstream::Upstream;

pub(crate) use self::control::HttpProxyHandle;

use self::mitm::MitmTls;
use self::service::Shared;
use self::stats::Recorder;
use self::upstream::UpstreamClient;

/// How an [`HttpProxy`] is set up.
#[derive(Debug, Clone)]
pub struct HttpProxyConfig {
    /// Where clients connect (port 0 for any free port; see [`HttpProxy::local_addr`]).
    pub listen: SocketAddr,
    /// The real service requests are forwarded to.
    pub upstream: Upstream,
    /// `tls-mitm` from the start: the proxy begins with a fault named
    /// [`HttpProxyConfig::MITM_FAULT`] that terminates every TLS client connection with this
    /// bad certificate (remove it to pass TLS through again). `None` starts without one:
    /// TLS clients are passed through to an https upstream. Plain HTTP (HTTP/1.1, or HTTP/2
    /// with prior knowledge) is served either way, on the same port.
    pub mitm: Option<MitmCert>,
    /// Drives every random choice (probability draws, jitter, flipped bytes, forged keys).
    pub seed: u64,
}

/// Why an [`HttpProxy`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpProxyError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The bound address could not be read back.
    #[error("cannot read the proxy's bound address: {0}")]
    LocalAddr(#[source] io::Error),
    /// The upstream URL is not usable.
    #[error("upstream `{url}`: {reason}")]
    Upstream {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The `tls-mitm` certificates could not be made.
    #[error("cannot make the tls-mitm certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A TLS configuration could not be built (e.g. no roots to trust an https upstream).
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// A running HTTP fault proxy.
///
/// [`HttpProxy::start`] binds and starts serving in the background; faults are added and
/// removed on the live proxy; [`HttpProxy::shutdown`] (or dropping the handle) stops the
/// listener and closes every connection. All methods but `start` and `shutdown` are
/// synchronous and cheap: they touch a list behind a lock no request holds for long.
///
/// The engine drives one through
/// [`HttpProxyControl`](chaosforge::fault::net::HttpProxyControl), as
/// [`InProcessBackend`](crate::InProcessBackend)'s `start_http` returns it.
#[derive(Debug)]
pub struct HttpProxy {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    ca: CertificateDer<'static>,
    stop: watch::Sender<bool>,
    /// The accept loop; taken by the first shutdown.
    accept: Mutex<Option<JoinHandle<()>>>,
}

// === impl HttpProxyConfig ===

impl HttpProxyConfig {
    /// The name of the `tls-mitm` fault [`HttpProxyConfig::mitm`] starts the proxy with.
    pub const MITM_FAULT: &'static str = "tls-mitm";
}

// === impl HttpProxy ===

impl HttpProxy {
    /// Binds `cfg.listen` and starts serving, with no fault set (but `cfg.mitm`'s): every
    /// request passes through to the upstream, every TLS connection to an https upstream. Makes
    /// the proxy's CA and its `tls-mitm` certificates first, so that setting a `tls-mitm`
    /// fault later cannot fail.
    ///
    /// Must be called inside a Tokio runtime (it spawns the accept loop).
    ///
    /// # Errors
    ///
    /// [`HttpProxyError::Upstream`] for an unusable upstream URL; [`HttpProxyError::Tls`] if
    /// an https upstream has no root to trust; [`HttpProxyError::Certificate`] if the MITM
    /// certificates cannot be made; [`HttpProxyError::Bind`] / [`HttpProxyError::LocalAddr`]
    /// for the listener.
    pub async fn start(cfg: HttpProxyConfig) -> Result<HttpProxy, HttpProxyError> {
        let upstream = UpstreamClient::new(&cfg.upstream)?;
        let listener =
            TcpListener::bind(cfg.listen)
                .await
                .map_err(|source| HttpProxyError::Bind {
                    addr: cfg.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(HttpProxyError::LocalAddr)?;
        let tls = Arc::new(MitmTls::new(&certificate_names(local_addr, &cfg.upstream))?);
        let recorder = Arc::new(Recorder::default());
        let shared = Arc::new(Shared::new(cfg.seed, recorder, upstream));
        if let Some(variant) = cfg.mitm {
            shared.set_fault(HttpFault::new(
                HttpProxyConfig::MITM_FAULT,
                RequestMatch::default(),
                Ratio::ONE,
                HttpAction::TlsMitm(variant),
            ));
        }
        let (stop, stopped) = watch::channel(false);
        let ca = tls.ca.clone();
        let accept = tokio::spawn(conn::accept_loop(listener, shared.clone(), tls, stopped));
        Ok(HttpProxy {
            shared,
            local_addr,
            ca,
            stop,
            accept: Mutex::new(Some(accept)),
        })
    }

    /// The address the proxy listens on (with the real port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The proxy's own CA certificate, the issuer of every `tls-mitm` certificate: no client
    /// trusts it unless told to, which is the point; tests trust it to isolate one
    /// certificate defect from the unknown issuer.
    pub fn mitm_ca(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    /// Injects `fault`, or replaces the fault with the same name in place (same evaluation
    /// position, counters kept). Applies from the next request on every connection, open
    /// keep-alive connections included; none is closed. Setting the same fault again is
    /// harmless (a `replay` fault is re-armed).
    pub fn set_fault(&self, fault: HttpFault) {
        self.shared.set_fault(fault);
    }

    /// Reverts the fault named `name`: later requests pass it by. Returns whether it was
    /// set, so a second call is a no-op returning `false`. Its counters stay in
    /// [`HttpProxy::stats`] (marked inactive); a `replay` already started still completes.
    pub fn remove_fault(&self, name: &str) -> bool {
        self.shared.remove_fault(name)
    }

    /// A copy of the counters and records so far.
    pub fn stats(&self) -> ProxyStats {
        self.shared.recorder.snapshot()
    }

    /// Whether the proxy is serving (not shut down).
    pub fn is_running(&self) -> bool {
        !*self.stop.borrow()
    }

    /// Stops accepting, closes every connection (requests in flight, hung ones included,
    /// end without an answer, TLS passed through included) and stops replays, then returns.
    /// Idempotent. Faults can still be set and stats read afterwards; nothing serves them.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let accept = self
            .accept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(accept) = accept {
            // The accept loop ends its connections before it returns; a panic in it has
            // nothing left to clean up.
            let _ = accept.await;
        }
        let mut replays = self
            .shared
            .replays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        replays.abort_all();
    }
}

impl Drop for HttpProxy {
    /// Stops the listener and, with it, every connection (the backstop of
    /// [`HttpProxy::shutdown`], which waits for them).
    fn drop(&mut self) {
        let accept = self
            .accept
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(accept) = accept.take() {
            accept.abort();
        }
    }
}

/// The names a `tls-mitm` certificate is for: loopback, the proxy's own address, and the
/// upstream's host (a system under test pointed at the proxy may still use that name).
fn certificate_names(local: SocketAddr, upstream: &Upstream) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let mut add = |name: String| {
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    };
    if !local.ip().is_unspecified() {
        add(local.ip().to_string());
    }
    if let Some(host) = upstream.url.host() {
        add(host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handle_can_be_shared_across_tasks() {
        // The engine keeps the proxy behind an `Arc` in a `Box<dyn …>` used from any task.
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<HttpProxy>();
        assert_send_sync::<ProxyStats>();
    }

    #[test]
    fn certificates_name_loopback_the_proxy_and_the_upstream() {
        let upstream = Upstream::new("https://api.internal:8443".parse().unwrap());
        let names = certificate_names("10.1.2.3:80".parse().unwrap(), &upstream);
        assert_eq!(
            names,
            ["localhost", "127.0.0.1", "::1", "10.1.2.3", "api.internal"]
        );
        let names = certificate_names("127.0.0.1:0".parse().unwrap(), &upstream);
        assert_eq!(names.len(), 4);
    }
}
