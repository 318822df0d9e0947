//! The upstream side: hyper-util's pooled legacy client over rustls (aws-lc-rs, ALPN
//! `h2`/`http/1.1` for https; HTTP/1.1 for http), each client connection's own upstream
//! connection to a plain http upstream (a [`Lane`]), the target URI of each request, and the
//! hop-by-hop headers (RFC 9110 §7.6.1) that never cross the proxy.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{self, Authority, PathAndQuery, Scheme};
use hyper::{Request, Response, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;

use super::HttpProxyError;
use super::body::{BoxError, ProxyBody};

/// Connection attempts to the upstream give up after this, so an unreachable upstream turns
/// into a `502` rather than a request that waits for the kernel's SYN retries (and a TLS
/// client passed through gets a closed connection).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle pooled upstream connections are closed after this.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// The real service behind an [`HttpProxy`](super::HttpProxy).
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `http://host:port` or `https://host:port`, optionally with a base path that is
    /// prepended to every request's path (e.g. `https://api.internal:8443/v1`).
    pub url: Uri,
    /// CA certificates trusted for an https upstream in addition to the system's roots (for
    /// an upstream with a private CA); ignored for http.
    pub tls_roots: Option<Vec<CertificateDer<'static>>>,
}

/// A cheap-to-clone handle on the pooled upstream client and where it sends requests.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamClient {
    client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
    scheme: Scheme,
    authority: Authority,
    /// The URL's path without its trailing `/`, prepended to each request path ("" for none).
    base_path: Arc<str>,
    /// `Some` for a plain http upstream: what a [`Lane`] connects to and the `Host` it sends.
    plain: Option<Arc<PlainTarget>>,
}

/// Where a [`Lane`] connects, with the `Host` header hyper-util's client would have made.
#[derive(Debug)]
struct PlainTarget {
    /// `host:port` (port 80 if the URL has none), resolved at each connect.
    addr: String,
    host: HeaderValue,
}

/// One client connection's own upstream connection, for a plain http upstream.
///
/// A client connection carries one request at a time (HTTP/1.1) or mostly so, so it can
/// keep one upstream connection to itself, made at its first request and closed with it. That
/// takes the pool (its locks, a task spawned per request to return the connection, a boxed
/// future, a formatted `Host`) off the path of every request; a request that finds the lane
/// busy (concurrent HTTP/2 streams) takes the pooled client instead.
///
/// The upstream connection is driven by the client connection's own task
/// ([`Lane::poll_drive`], from `conn::serve`), not a task of its own: a request and its answer
/// then cross no task boundary, so the runtime never has to wake another worker thread for
/// them, which on loopback cost more than everything else the proxy does.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    state: Mutex<LaneState>,
    driver: Mutex<Driver>,
}

/// hyper's future of a lane's upstream connection.
type LaneConnection = http1::Connection<TokioIo<TcpStream>, ProxyBody>;

/// The lane's upstream connection future and the task that drives it.
#[derive(Default)]
struct Driver {
    conn: Option<Pin<Box<LaneConnection>>>,
    /// The client connection's task, woken when a connection is set from another task (an
    /// HTTP/2 stream's).
    waker: Option<Waker>,
}

#[derive(Debug, Default)]
enum LaneState {
    /// No upstream connection yet, or the last one closed.
    #[default]
    Empty,
    /// An open upstream connection, idle.
    Idle(http1::SendRequest<ProxyBody>),
    /// A request of this client connection is using it.
    Busy,
}

/// The lane's connection while a request uses it; gives it back (or clears the lane if the
/// request ended without it, e.g. dropped by a client that went away) when dropped.
struct Checkout<'a> {
    lane: &'a Lane,
    sender: Option<http1::SendRequest<ProxyBody>>,
}

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy `keep-alive` and
/// `proxy-connection`): they describe one connection, so a proxy must not forward them.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

// === impl Upstream ===

impl Upstream {
    /// A plain or https upstream trusting only the system's roots.
    pub fn new(url: Uri) -> Upstream {
        Upstream {
            url,
            tls_roots: None,
        }
    }
}

// === impl UpstreamClient ===

impl UpstreamClient {
    /// A client for `upstream`.
    ///
    /// # Errors
    ///
    /// [`HttpProxyError::Upstream`] for a URL that is not `http(s)://authority[/path]`;
    /// [`HttpProxyError::Tls`] if an https upstream has no root to trust (no system roots and
    /// no `tls_roots`) or a root does not parse.
    pub(crate) fn new(upstream: &Upstream) -> Result<UpstreamClient, HttpProxyError> {
        let url = &upstream.url;
        let bad = |reason: &'static str| HttpProxyError::Upstream {
            url: url.to_string(),
            reason,
        };
        let scheme = url.scheme().cloned().ok_or_else(|| bad("no scheme"))?;
        let https = if scheme == Scheme::HTTPS {
            true
        } else if scheme == Scheme::HTTP {
            false
        } else {
            return Err(bad("the scheme must be http or https"));
        };
        let authority = url.authority().cloned().ok_or_else(|| bad("no host"))?;
        if url.query().is_some() {
            return Err(bad("a query is not allowed"));
        }
        let base_path: Arc<str> = url.path().trim_end_matches('/').into();
        let plain = if https {
            None
        } else {
            let port = authority.port_u16().unwrap_or(80);
            let host = authority.host();
            // What hyper-util's client sends: the port only when it is not the default.
            let host_header = if authority.port_u16().is_some_and(|p| p != 80) {
                format!("{host}:{port}")
            } else {
                host.to_owned()
            };
            Some(Arc::new(PlainTarget {
                addr: format!("{host}:{port}"),
                host: HeaderValue::try_from(host_header).map_err(|_| bad("bad host"))?,
            }))
        };

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let tls = if https {
            let roots = upstream.tls_roots.clone().unwrap_or_default();
            let verifier =
                rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        } else {
            // Never used (every request goes to the http upstream), but the connector type is
            // the same for both schemes; an empty store does not read the system's roots.
            builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        };

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(UpstreamClient {
            client,
            scheme,
            authority,
            base_path,
            plain,
        })
    }

    /// The upstream URI for a request the client sent to `original`: the upstream's scheme,
    /// authority and base path, then the original path and query.
    ///
    /// Without a base path the original path and query are moved over as they are (already
    /// parsed by hyper): no copy, no second parse.
    pub(crate) fn target(&self, original: Uri) -> Result<Uri, hyper::http::Error> {
        let mut parts = original.into_parts();
        let path_and_query = match parts.path_and_query.take() {
            Some(path_and_query) if self.base_path.is_empty() => path_and_query,
            None if self.base_path.is_empty() => PathAndQuery::from_static("/"),
            original => PathAndQuery::try_from(format!(
                "{}{}",
                self.base_path,
                original.as_ref().map_or("/", PathAndQuery::as_str)
            ))?,
        };
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path_and_query);
        Ok(Uri::from_parts(parts)?)
    }

    /// Where a TLS client is passed through to: the https upstream's `host:port` (port 443
    /// if the URL has none); `None` for a plain http upstream.
    pub(crate) fn tls_address(&self) -> Option<String> {
        if self.scheme != Scheme::HTTPS {
            return None;
        }
        let host = self.authority.host();
        let port = self.authority.port_u16().unwrap_or(443);
        // An IPv6 literal needs its brackets back to be followed by a port.
        Some(if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    }

    /// Sends a request (its URI from [`UpstreamClient::target`], no `Host`) on a pooled
    /// connection.
    pub(crate) async fn send(
        &self,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, BoxError> {
        Ok(self.client.request(request).await?)
    }

    /// Sends a request (as for [`UpstreamClient::send`]) on `lane`'s connection to a plain
    /// http upstream, making it first if needed; on a pooled one when the lane is busy or the
    /// upstream is https.
    ///
    /// `sequential`: the client connection sends one request at a time (HTTP/1), so the lane's
    /// connection is waited for while it finishes the previous answer; otherwise (HTTP/2) a
    /// request never waits behind another stream's body, it takes the pool.
    pub(crate) async fn send_on(
        &self,
        lane: &Lane,
        sequential: bool,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, BoxError> {
        let Some(plain) = &self.plain else {
            return self.send(request).await;
        };
        let Some(mut checkout) = lane.checkout(sequential) else {
            return self.send(request).await;
        };
        // The connection is to the upstream itself: origin-form, and the upstream's own name.
        let mut origin = uri::Parts::default();
        origin.path_and_query = request.uri().path_and_query().cloned();
        *request.uri_mut() = Uri::from_parts(origin)?;
        request
            .headers_mut()
            .insert(header::HOST, plain.host.clone());

        let mut fresh = false;
        loop {
            let reused = match checkout.sender.take() {
                Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
                None => None,
            };
            let mut sender = match reused {
                Some(sender) => sender,
                // None yet, or closed by the upstream while idle (its keep-alive timeout).
                None => {
                    fresh = true;
                    lane.connect(&plain.addr).await?
                }
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    checkout.sender = Some(sender);
                    return Ok(response);
                }
                // Not sent (the connection closed just then): once more on a new connection,
                // as hyper-util's client retries a request its pooled connection lost.
                Err(mut error) => match error.take_message() {
                    Some(unsent) if !fresh => request = unsent,
                    _ => return Err(error.into_error().into()),
                },
            }
        }
    }
}

// === impl Lane ===

impl Lane {
    /// A new HTTP/1.1 connection to `addr`, driven from now on by [`Lane::poll_drive`] (a
    /// connection it drove before is dropped: it was closed or failed).
    async fn connect(&self, addr: &str) -> Result<http1::SendRequest<ProxyBody>, BoxError> {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(connected) => connected.map_err(|e| format!("cannot connect to {addr}: {e}"))?,
            Err(_) => return Err(format!("cannot connect to {addr} within 5s").into()),
        };
        // Small requests and answers must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        let mut driver = self.driver.lock().unwrap_or_else(PoisonError::into_inner);
        driver.conn = Some(Box::pin(conn));
        if let Some(waker) = &driver.waker {
            waker.wake_by_ref();
        }
        Ok(sender)
    }

    /// Drives the lane's upstream connection, if any; called from every poll of the client
    /// connection's task, which it wakes when the upstream connection can make progress.
    pub(crate) fn poll_drive(&self, cx: &mut Context<'_>) {
        let mut driver = self.driver.lock().unwrap_or_else(PoisonError::into_inner);
        if !driver
            .waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            driver.waker = Some(cx.waker().clone());
        }
        if let Some(conn) = driver.conn.as_mut()
            && let Poll::Ready(ended) = conn.as_mut().poll(cx)
        {
            if let Err(error) = ended {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
            driver.conn = None;
        }
    }

    /// The lane's connection (`None` inside when there is none yet), or `None` if another
    /// request of the connection is using it, or (unless `wait`) is still reading an answer.
    fn checkout(&self, wait: bool) -> Option<Checkout<'_>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = match std::mem::replace(&mut *state, LaneState::Busy) {
            LaneState::Empty => None,
            LaneState::Idle(sender) if wait || sender.is_ready() => Some(sender),
            LaneState::Idle(sender) => {
                *state = LaneState::Idle(sender);
                return None;
            }
            LaneState::Busy => return None,
        };
        Some(Checkout { lane: self, sender })
    }
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        let next = match self.sender.take() {
            Some(sender) if !sender.is_closed() => LaneState::Idle(sender),
            _ => LaneState::Empty,
        };
        *self
            .lane
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = next;
    }
}

/// Removes hop-by-hop headers: the fixed set and any named in `Connection`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over their few names settles that, instead of a
    // lookup per hop-by-hop name.
    if !headers
        .keys()
        .any(|name| *name == header::UPGRADE || HOP_BY_HOP.contains(name))
    {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    // `Upgrade` is hop-by-hop too; the proxy does not tunnel upgrades (WebSocket), so the
    // upstream must not be offered one.
    headers.remove(header::UPGRADE);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> UpstreamClient {
        UpstreamClient::new(&Upstream::new(url.parse().unwrap())).unwrap()
    }

    #[tokio::test]
    async fn targets_keep_path_and_query_under_the_base() {
        let plain = client("http://127.0.0.1:9000");
        let uri: Uri = "http://proxy:1/a/b?x=1".parse().unwrap();
        assert_eq!(
            plain.target(uri.clone()).unwrap(),
            "http://127.0.0.1:9000/a/b?x=1"
        );
        let based = client("http://127.0.0.1:9000/v1/");
        assert_eq!(
            based.target(uri).unwrap(),
            "http://127.0.0.1:9000/v1/a/b?x=1"
        );
        let origin_form: Uri = "/x".parse().unwrap();
        assert_eq!(
            plain.target(origin_form).unwrap(),
            "http://127.0.0.1:9000/x"
        );
        let authority_form: Uri = "proxy:1".parse().unwrap();
        assert_eq!(
            based.target(authority_form).unwrap(),
            "http://127.0.0.1:9000/v1/"
        );
    }

    #[test]
    fn tls_clients_pass_through_to_the_https_host_and_port() {
        assert_eq!(client("http://127.0.0.1:9000").tls_address(), None);
        let tls = |url| client(url).tls_address().unwrap();
        assert_eq!(tls("https://api.internal:8443/v1"), "api.internal:8443");
        assert_eq!(tls("https://api.internal"), "api.internal:443");
        assert_eq!(tls("https://[::1]:8443"), "[::1]:8443");
    }

    #[test]
    fn bad_upstreams_are_refused() {
        for url in ["ftp://h:1", "/path", "http://h:1/?q=1"] {
            let err = UpstreamClient::new(&Upstream::new(url.parse().unwrap())).unwrap_err();
            assert!(
                matches!(err, HttpProxyError::Upstream { .. }),
                "{url}: {err}"
            );
        }
    }

    #[test]
    fn hop_by_hop_headers_go_including_those_connection_names() {
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-hop"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("x-end", "2"),
        ] {
            headers.append(HeaderName::from_static(k), v.parse().unwrap());
        }
        strip_hop_by_hop(&mut headers);
        let left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-end"]);
    }
}
