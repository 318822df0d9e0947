//! The HTTP (L7) fault proxy: a reverse proxy the system under test calls instead of its real
//! upstream, with HTTP faults and security-breach faults that change while it runs.
//!
//! Where to start: [`HttpProxy::start`] with an [`HttpProxyConfig`], then
//! [`HttpProxy::set_fault`] / [`HttpProxy::remove_fault`] (inject / revert) and
//! [`HttpProxy::stats`] (counters and [`Finding`]s for the report).
//!
//! Module map:
//! - `fault`: the fault model ([`HttpFault`], [`RequestMatch`], [`HttpAction`]), plain data.
//! - `service`: one request: match, draw, act on the request, forward, act on the response.
//! - `body`: streaming wrappers (truncate, flip bytes) and bounded buffering (JSONPath, replay).
//! - `auth`: `auth-strip` and `auth-forge` (cookies, headers, JWT forgery with HS256).
//! - `upstream`: the pooled hyper-util client (rustls for https), target URIs, hop-by-hop headers.
//! - `mitm`: `tls-mitm` certificates (own CA, expired, not yet valid, wrong host) via rcgen.
//! - `stats`: counters, replay and TLS records, [`Finding`]s.
//!
//! How it behaves:
//! - Clients speak HTTP/1.1 or HTTP/2 (prior knowledge on plain TCP, ALPN `h2` over TLS); the
//!   upstream gets HTTP/1.1 (http) or whatever ALPN gives (https), on pooled connections.
//! - Bodies stream both ways; only `JsonReplace` (the response) and `replay` (the request)
//!   buffer, each with a size limit above which the body passes unchanged.
//! - Faults reach open keep-alive connections at their next request: each request reads the
//!   current fault list once. Changing faults never closes a connection.
//! - Every random choice comes from the seed: request `n` draws from `mix(seed, n)`.
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
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

mod auth;
mod body;
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

use self::mitm::MitmTls;
use self::service::Shared;
use self::stats::Recorder;
use self::upstream::UpstreamClient;

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// A client that has not finished its TLS handshake by then is dropped (and counted as a
/// rejection), so idle sockets cannot pile up in a `tls-mitm` proxy.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How an [`HttpProxy`] is set up.
#[derive(Debug, Clone)]
pub struct HttpProxyConfig {
    /// Where clients connect (port 0 for any free port; see [`HttpProxy::local_addr`]).
    pub listen: SocketAddr,
    /// The real service requests are forwarded to.
    pub upstream: Upstream,
    /// `tls-mitm`: terminate TLS towards clients with this bad certificate; `None` serves
    /// plain HTTP (HTTP/1.1, or HTTP/2 with prior knowledge).
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
#[derive(Debug)]
pub struct HttpProxy {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    ca: Option<CertificateDer<'static>>,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
}

// === impl HttpProxy ===

impl HttpProxy {
    /// Binds `cfg.listen` and starts serving, with no fault set: every request passes
    /// through to the upstream. With `cfg.mitm`, makes the proxy's CA and bad certificate
    /// first.
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
        let tls = match cfg.mitm {
            Some(variant) => Some(MitmTls::new(
                variant,
                &certificate_names(local_addr, &cfg.upstream),
            )?),
            None => None,
        };
        let recorder = Arc::new(Recorder::new(cfg.mitm));
        let shared = Arc::new(Shared::new(cfg.seed, recorder, upstream));
        let (stop, stopped) = watch::channel(false);
        let ca = tls.as_ref().map(|t| t.ca.clone());
        let acceptor = tls.map(|t| TlsAcceptor::from(t.config));
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), acceptor, stopped));
        Ok(HttpProxy {
            shared,
            local_addr,
            ca,
            stop,
            accept: Some(accept),
        })
    }

    /// The address the proxy listens on (with the real port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The proxy's own CA certificate when it terminates TLS (`tls-mitm`): no client trusts
    /// it unless told to, which is the point; tests trust it to isolate one certificate
    /// defect from the unknown issuer.
    pub fn mitm_ca(&self) -> Option<&CertificateDer<'static>> {
        self.ca.as_ref()
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

    /// Stops accepting, closes every connection (requests in flight, hung ones included,
    /// end without an answer) and stops replays, then returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(accept) = self.accept.take() {
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
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
    }
}

/// Counts a client connection as open from accept until its task ends or is aborted.
struct OpenConnection(Arc<Recorder>);

impl OpenConnection {
    fn new(recorder: Arc<Recorder>) -> OpenConnection {
        recorder.connections.fetch_add(1, Ordering::Relaxed);
        recorder.open_connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(recorder)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
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

/// Accepts clients until `stopped`; then ends every connection (dropping the set aborts
/// them) and returns.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            // `true` is the only value ever sent; a dropped sender (no handle left) stops too.
            _ = stopped.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Small requests and answers must not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    let open = OpenConnection::new(shared.recorder.clone());
                    let shared = shared.clone();
                    match tls.clone() {
                        None => conns.spawn(async move {
                            serve(stream, shared).await;
                            drop(open);
                        }),
                        Some(acceptor) => conns.spawn(async move {
                            handshake_then_serve(acceptor, stream, shared).await;
                            drop(open);
                        }),
                    };
                }
                Err(error) => {
                    tracing::warn!(%error, "http proxy accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    conns.shutdown().await;
}

/// Completes the TLS handshake (recording whether the client accepted the certificate),
/// then serves the connection.
async fn handshake_then_serve(
    acceptor: TlsAcceptor,
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
) {
    let reason = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            shared.recorder.handshake(Ok(()));
            serve(tls, shared).await;
            return;
        }
        Ok(Err(error)) => handshake_failure(&error),
        Err(_) => "no handshake within 10s".to_owned(),
    };
    tracing::debug!(%reason, "tls-mitm handshake failed");
    shared.recorder.handshake(Err(reason));
}

/// Why a handshake failed, in rustls' words when it has them (the client's alert).
fn handshake_failure(error: &io::Error) -> String {
    match error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(tls) => tls.to_string(),
        None => error.to_string(),
    }
}

/// Serves HTTP/1.1 and HTTP/2 on one client connection until it closes.
async fn serve<I>(io: I, shared: Arc<Shared>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| service::handle(shared.clone(), request));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's HTTP/1.1 header-read timeout and HTTP/2 keep-alive need a timer.
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    if let Err(error) = builder.serve_connection(TokioIo::new(io), service).await {
        // A dropped connection (http-abort drop), a client that went away: normal here.
        tracing::debug!(%error, "http proxy connection ended with an error");
    }
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
