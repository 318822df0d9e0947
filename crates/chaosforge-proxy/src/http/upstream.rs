//! The upstream side: hyper-util's pooled legacy client over rustls (aws-lc-rs, ALPN
//! `h2`/`http/1.1` for https; HTTP/1.1 for http), the target URI of each request, and the
//! hop-by-hop headers (RFC 9110 §7.6.1) that never cross the proxy.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{Request, Response, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;

use super::HttpProxyError;
use super::body::ProxyBody;

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
        })
    }

    /// The upstream URI for a request the client sent to `original`: the upstream's scheme,
    /// authority and base path, then the original path and query.
    pub(crate) fn target(&self, original: &Uri) -> Result<Uri, hyper::http::Error> {
        let path_and_query = original.path_and_query().map_or("/", PathAndQuery::as_str);
        let path_and_query = if self.base_path.is_empty() {
            PathAndQuery::try_from(path_and_query)?
        } else {
            PathAndQuery::try_from(format!("{}{path_and_query}", self.base_path))?
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
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

    /// Sends a request (its URI from [`UpstreamClient::target`]) on a pooled connection.
    pub(crate) async fn send(
        &self,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        self.client.request(request).await
    }
}

/// Removes hop-by-hop headers: the fixed set and any named in `Connection`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
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
        assert_eq!(plain.target(&uri).unwrap(), "http://127.0.0.1:9000/a/b?x=1");
        let based = client("http://127.0.0.1:9000/v1/");
        assert_eq!(
            based.target(&uri).unwrap(),
            "http://127.0.0.1:9000/v1/a/b?x=1"
        );
        let origin_form: Uri = "/x".parse().unwrap();
        assert_eq!(
            plain.target(&origin_form).unwrap(),
            "http://127.0.0.1:9000/x"
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
