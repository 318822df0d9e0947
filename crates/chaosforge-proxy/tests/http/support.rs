//! Shared helpers: upstream servers (echo, JWT-checking, broken, nonce-checking; plain or
//! TLS), proxies in front of them, reqwest clients, timing.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use chaosforge::units::Ratio;
use chaosforge_proxy::http::{
    HttpAction, HttpFault, HttpProxy, HttpProxyConfig, MitmCert, RequestMatch, Upstream,
};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Mutex as AsyncMutex, MutexGuard};
use tokio::time::Instant;

/// The key the JWT-checking upstream trusts (and valid test tokens are signed with).
pub const JWT_KEY: &[u8] = b"the upstream's real HS256 key";

/// A JSON document served at `/fixed` (for JSONPath replacement).
pub const FIXED: &str = r#"{"items":[{"id":1,"price":10},{"id":2,"price":20}],"owner":"alice"}"#;

/// Held by tests that measure time or send many requests: on a 2-core machine, running them
/// side by side would measure each other's CPU use rather than the proxy.
static TIMING: AsyncMutex<()> = AsyncMutex::const_new(());

/// Waits for the timing slot; hold the guard for the whole test.
pub async fn timing_slot() -> MutexGuard<'static, ()> {
    TIMING.lock().await
}

/// Fails the test if `fut` takes longer than `limit`, so no test can hang.
pub async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .expect("test step timed out")
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How an upstream decides its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Echoes the request as JSON; also serves `/fixed`, `/bytes/<n>`, `/stream`.
    Echo,
    /// 200 only for a bearer JWT with `alg: HS256`, a valid signature under [`JWT_KEY`] and
    /// an `exp` in the future; 401 otherwise.
    CheckJwt,
    /// The deliberately broken upstream: skips the credential check, always 200.
    Broken,
    /// 200 for the first request with a given `x-nonce`, 409 for any repeat.
    CheckNonce,
}

/// A running test upstream.
#[derive(Clone)]
pub struct TestUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its CA, when it serves TLS.
    pub ca: Option<CertificateDer<'static>>,
    /// The certificate it presents, when it serves TLS.
    pub leaf: Option<CertificateDer<'static>>,
    /// Requests it has received.
    pub hits: Arc<AtomicU64>,
    /// When the last request arrived.
    pub last_arrival: Arc<Mutex<Option<Instant>>>,
}

struct State {
    behaviour: Behaviour,
    hits: Arc<AtomicU64>,
    last_arrival: Arc<Mutex<Option<Instant>>>,
    nonces: Mutex<HashSet<String>>,
}

// === impl TestUpstream ===

impl TestUpstream {
    /// `http://127.0.0.1:port` or `https://…`.
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The proxy's view of it.
    pub fn upstream(&self) -> Upstream {
        Upstream {
            url: self.url().parse().unwrap(),
            tls_roots: self.ca.clone().map(|ca| vec![ca]),
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Writes its CA as a PEM file (as an experiment's `upstream_ca` names one) and returns
    /// the path; the caller removes it.
    pub fn ca_pem_file(&self) -> std::path::PathBuf {
        use base64::engine::general_purpose::STANDARD;
        let der = self.ca.as_ref().expect("a TLS upstream");
        let text = STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in text.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        let path = std::env::temp_dir().join(format!(
            "chaosforge-test-ca-{}-{}.pem",
            std::process::id(),
            self.addr.port()
        ));
        std::fs::write(&path, pem).unwrap();
        path
    }
}

/// A plain HTTP upstream (HTTP/1.1 and h2c) with this behaviour.
pub async fn upstream(behaviour: Behaviour) -> TestUpstream {
    start_upstream(behaviour, None).await
}

/// An HTTPS upstream (ALPN h2/http1.1) with this behaviour and its own CA.
pub async fn tls_upstream(behaviour: Behaviour) -> TestUpstream {
    let (ca, leaf, config) = upstream_tls_config();
    let mut upstream = start_upstream(behaviour, Some((ca, config))).await;
    upstream.leaf = Some(leaf);
    upstream
}

async fn start_upstream(
    behaviour: Behaviour,
    tls: Option<(CertificateDer<'static>, Arc<rustls::ServerConfig>)>,
) -> TestUpstream {
    chaosforge::testkit::assert_isolated();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let last_arrival = Arc::new(Mutex::new(None));
    let state = Arc::new(State {
        behaviour,
        hits: hits.clone(),
        last_arrival: last_arrival.clone(),
        nonces: Mutex::new(HashSet::new()),
    });
    let (ca, acceptor) = match tls {
        Some((ca, config)) => (Some(ca), Some(tokio_rustls::TlsAcceptor::from(config))),
        None => (None, None),
    };
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            stream.set_nodelay(true).unwrap();
            let state = state.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(answer(&state, peer, req).await) }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                }
            });
        }
    });
    TestUpstream {
        addr,
        ca,
        leaf: None,
        hits,
        last_arrival,
    }
}

/// A CA, and a leaf for `127.0.0.1`/`localhost` signed by it with its server config.
fn upstream_tls_config() -> (
    CertificateDer<'static>,
    CertificateDer<'static>,
    Arc<rustls::ServerConfig>,
) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test upstream CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (ca.der().clone(), leaf.der().clone(), Arc::new(config))
}

async fn answer(state: &State, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    *state.last_arrival.lock().unwrap() = Some(Instant::now());
    let path = req.uri().path().to_owned();
    match state.behaviour {
        Behaviour::Echo => {
            if path == "/fixed" {
                return json_response(StatusCode::OK, FIXED.into());
            }
            if let Some(n) = path.strip_prefix("/bytes/") {
                let n: usize = n.parse().unwrap();
                return Response::new(full(vec![b'a'; n]));
            }
            if path == "/stream" {
                return streaming_response();
            }
            echo(peer, req).await
        }
        Behaviour::CheckJwt => {
            let ok = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(jwt_is_valid);
            status_only(if ok {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            })
        }
        Behaviour::Broken => status_only(StatusCode::OK),
        Behaviour::CheckNonce => {
            let nonce = req
                .headers()
                .get("x-nonce")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let fresh = nonce.is_some_and(|n| state.nonces.lock().unwrap().insert(n));
            status_only(if fresh {
                StatusCode::OK
            } else {
                StatusCode::CONFLICT
            })
        }
    }
}

/// The request as JSON: method, path, query, version, headers (in order), body, peer.
async fn echo(peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: Vec<Value> = parts
        .headers
        .iter()
        .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
        .collect();
    let doc = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "body_len": body.len(),
        "peer": peer.to_string(),
    });
    let mut response = json_response(StatusCode::OK, doc.to_string());
    response
        .headers_mut()
        .insert("x-upstream", "echo".parse().unwrap());
    response
}

/// Two chunks 300 ms apart: a client that gets the first early proves the proxy streams.
fn streaming_response() -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    tokio::spawn(async move {
        let _ = tx.send(Bytes::from_static(b"first;")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = tx.send(Bytes::from_static(b"second")).await;
    });
    Response::new(ChannelBody(rx).boxed_unsync())
}

/// A body fed through a channel, chunk by chunk.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| Ok(Frame::data(data))))
    }
}

fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).boxed_unsync()
}

fn json_response(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

fn status_only(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(full(status.as_str().to_owned()));
    *response.status_mut() = status;
    response
}

/// The checking upstream's verdict on a token, written independently of the proxy's code.
fn jwt_is_valid(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return false;
    }
    let decode = |s: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).ok()?).ok()
    };
    let (Some(header), Some(claims)) = (decode(parts[0]), decode(parts[1])) else {
        return false;
    };
    if header["alg"] != "HS256" {
        return false;
    }
    let Ok(signature) = URL_SAFE_NO_PAD.decode(parts[2]) else {
        return false;
    };
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, JWT_KEY);
    let input = format!("{}.{}", parts[0], parts[1]);
    if aws_lc_rs::hmac::verify(&key, input.as_bytes(), &signature).is_err() {
        return false;
    }
    claims["exp"].as_i64().is_some_and(|exp| exp > unix_now())
}

/// A valid token for the checking upstream: `sub: alice`, `role: user`, ten minutes left.
pub fn valid_jwt() -> String {
    let segment = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!(
        "{}.{}",
        segment(json!({"alg": "HS256", "typ": "JWT"})),
        segment(json!({"sub": "alice", "role": "user", "exp": unix_now() + 600}))
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, JWT_KEY);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// The claims of a JWT (not verified).
pub fn jwt_claims(token: &str) -> Value {
    let claims = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A plain proxy on 127.0.0.1:0 in front of `upstream`.
pub async fn proxy_to(upstream: &TestUpstream) -> HttpProxy {
    proxy_with(upstream, None).await
}

/// A proxy in front of `upstream`, terminating TLS with `mitm` if given.
pub async fn proxy_with(upstream: &TestUpstream, mitm: Option<MitmCert>) -> HttpProxy {
    chaosforge::testkit::assert_isolated();
    HttpProxy::start(HttpProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: upstream.upstream(),
        mitm,
        seed: 42,
    })
    .await
    .unwrap()
}

/// A fault on every request.
pub fn fault(name: &str, probability: f64, action: HttpAction) -> HttpFault {
    HttpFault::new(
        name,
        RequestMatch::default(),
        Ratio::new(probability).unwrap(),
        action,
    )
}

/// A reqwest client for plain HTTP/1.1 that ignores any proxy settings of the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// `http://<proxy><path>`.
pub fn url(proxy: &HttpProxy, path: &str) -> String {
    format!("http://{}{path}", proxy.local_addr())
}

/// The echo upstream's JSON for a GET through `proxy`.
pub async fn echoed(client: &reqwest::Client, url: &str) -> Value {
    let response = within(Duration::from_secs(10), client.get(url).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Values of header `name` in an echo document, in order.
pub fn header_values(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str().unwrap().to_owned())
        .collect()
}

/// The median of `n` timed GETs of `url`, after one warm-up request.
pub async fn p50_get(client: &reqwest::Client, url: &str, n: usize) -> Duration {
    within(Duration::from_secs(10), client.get(url).send())
        .await
        .unwrap();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let response = within(Duration::from_secs(10), client.get(url).send())
            .await
            .unwrap();
        response.bytes().await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    times[n / 2]
}

/// Signed difference `a - b` in milliseconds.
pub fn ms_diff(a: Duration, b: Duration) -> f64 {
    (a.as_secs_f64() - b.as_secs_f64()) * 1000.0
}

/// Polls `check` every 10 ms until it holds, for at most `limit`.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) {
    within(limit, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
