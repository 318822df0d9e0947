//! The Toxiproxy-compatible HTTP API (`chaosforge proxy`): routes, status codes, bodies and
//! headers as in Toxiproxy 2.12 (see `docs` / the compatibility contract), with chaosforge's
//! additions: `GET /proxies/{name}/connections`, live byte counts in `/metrics`, attribute
//! validation (400 instead of a crashed server), and the `corrupt`, `loss` and `blackhole`
//! toxic types.
//!
//! Every change goes through one async mutex over the proxy map, so concurrent requests see
//! each other's effects in some order and a 409 is never raced.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use chaosforge::fault::net::{ProxyControl, ProxyError, Stream};
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::metrics::Metrics;
use crate::model::{Toxic, ToxicKind};
use crate::proxy::{ProxyOptions, TcpProxy};
use crate::toxic::mix;

use self::json::{BodyError, Obj, ProxyOut, ToxicOut, decode, object};

mod json;

/// The version `/version` reports: the Toxiproxy release whose API this server implements, so
/// clients that gate features on it behave as with that release.
pub const TOXIPROXY_VERSION: &str = "2.12.0";

/// A Toxiproxy-compatible server: the proxies, their toxics and the metrics registry.
///
/// Build it with [`ApiServer::new`], fill it with [`ApiServer::populate`] (what `--config`
/// does), then [`ApiServer::serve`] it on a listener.
#[derive(Debug)]
pub struct ApiServer {
    proxies: Mutex<BTreeMap<String, Arc<TcpProxy>>>,
    metrics: Arc<Metrics>,
    seed: u64,
    next_request: AtomicU64,
}

/// Settings of an [`ApiServer`].
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Seeds every proxy's random choices (each proxy mixes in its name), so a run with the
    /// same seed, names and order of connections decides the same way.
    pub seed: u64,
}

/// A failed request: status and the `error` text of Toxiproxy's error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The message.
    pub message: String,
}

/// Populate's result: the proxies processed, and the error that stopped it, if any.
#[derive(Debug)]
pub struct Populated {
    /// Proxies created or kept, in input order; `None` when the body was not an array.
    proxies: Option<Vec<ProxyOut>>,
    /// The first failure.
    error: Option<ApiError>,
}

/// One validated item of a populate body.
struct PopulateItem {
    name: String,
    listen: String,
    upstream: String,
    enabled: bool,
    reset_unreachable: bool,
    toxics: Vec<Toxic>,
}

type ApiResult = Result<Response, ApiError>;
type Shared = State<Arc<ApiServer>>;

// === impl ApiServer ===

impl ApiServer {
    /// An empty server.
    pub fn new(options: ServeOptions) -> Arc<ApiServer> {
        Arc::new(ApiServer {
            proxies: Mutex::new(BTreeMap::new()),
            metrics: Arc::new(Metrics::new()),
            seed: options.seed,
            next_request: AtomicU64::new(0),
        })
    }

    /// The routes of the API, bound to this server.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/version", get(version))
            .route("/proxies", get(list_proxies).post(create_proxy))
            .route(
                "/proxies/{proxy}",
                get(show_proxy)
                    .post(update_proxy)
                    .patch(update_proxy)
                    .delete(delete_proxy),
            )
            .route(
                "/proxies/{proxy}/toxics",
                get(list_toxics).post(create_toxic),
            )
            .route(
                "/proxies/{proxy}/toxics/{toxic}",
                get(show_toxic)
                    .post(update_toxic)
                    .patch(update_toxic)
                    .delete(delete_toxic),
            )
            .route("/proxies/{proxy}/connections", get(list_connections))
            .route("/populate", axum::routing::post(populate))
            .route("/reset", axum::routing::post(reset))
            .route("/metrics", any(metrics))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(
                Arc::clone(self),
                toxiproxy_headers,
            ))
            .with_state(Arc::clone(self))
    }

    /// Serves the API on `listener` until `shutdown` resolves, then shuts every proxy down.
    ///
    /// # Errors
    ///
    /// The I/O error that stopped the HTTP server.
    pub async fn serve(
        self: &Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        self.shutdown().await;
        served
    }

    /// Shuts every proxy down and forgets them.
    pub async fn shutdown(&self) {
        let proxies = std::mem::take(&mut *self.proxies.lock().await);
        for proxy in proxies.values() {
            proxy.shutdown().await;
        }
    }

    /// The metrics registry (what `/metrics` serves).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Creates the proxies of a populate body (a JSON array of proxies, each optionally with a
    /// `toxics` array), as `POST /populate` and `--config` do. Returns the proxies' JSON.
    ///
    /// # Errors
    ///
    /// The first failure, as the API reports it (400 for the body, 500 for a bind error).
    pub async fn populate(&self, body: &[u8]) -> Result<Value, ApiError> {
        let done = self.populate_inner(body).await;
        match done.error {
            None => serde_json::to_value(&done.proxies).map_err(|e| ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: e.to_string(),
            }),
            Some(error) => Err(error),
        }
    }

    async fn populate_inner(&self, body: &[u8]) -> Populated {
        let fail = |status, message: String| Populated {
            proxies: None,
            error: Some(ApiError { status, message }),
        };
        let value = match decode(body) {
            Ok(value) => value,
            Err(e) => return fail(StatusCode::BAD_REQUEST, bad_body(&e)),
        };
        let Value::Array(items) = value else {
            let e = BodyError(format!(
                "json: cannot unmarshal {} into Go value of type []proxy.Proxy",
                crate::model::json_type(&value)
            ));
            return fail(StatusCode::BAD_REQUEST, bad_body(&e));
        };
        // Pass 1: every item is checked before anything changes.
        let mut valid = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match populate_item(item, i + 1) {
                Ok(item) => valid.push(item),
                Err(error) => {
                    return Populated {
                        proxies: None,
                        error: Some(error),
                    };
                }
            }
        }
        // Pass 2: create or keep, in order; the first failure stops, keeping what was done.
        let mut proxies = self.proxies.lock().await;
        let mut out = Vec::new();
        for item in valid {
            if let Some(existing) = proxies.get(&item.name)
                && existing.same_addresses(&item.listen, &item.upstream).await
            {
                out.push(proxy_out(existing).await);
                continue;
            }
            if let Some(old) = proxies.remove(&item.name) {
                old.shutdown().await;
            }
            let created = self
                .create(
                    &item.name,
                    &item.listen,
                    &item.upstream,
                    item.enabled,
                    item.reset_unreachable,
                )
                .await;
            let proxy = match created {
                Ok(proxy) => proxy,
                Err(error) => {
                    return Populated {
                        proxies: Some(out),
                        error: Some(error),
                    };
                }
            };
            for toxic in item.toxics {
                if let Err(e) = proxy.add(toxic).await {
                    proxy.shutdown().await;
                    return Populated {
                        proxies: Some(out),
                        error: Some(proxy_error(&e)),
                    };
                }
            }
            out.push(proxy_out(&proxy).await);
            proxies.insert(item.name, proxy);
        }
        Populated {
            // Go marshals an empty slice it never appended to as `null`.
            proxies: (!out.is_empty()).then_some(out),
            error: None,
        }
    }

    async fn create(
        &self,
        name: &str,
        listen: &str,
        upstream: &str,
        enabled: bool,
        reset_unreachable: bool,
    ) -> Result<Arc<TcpProxy>, ApiError> {
        let options = ProxyOptions {
            seed: mix(self.seed, name_hash(name)),
            metrics: Some(Arc::clone(&self.metrics)),
            reset_unreachable,
        };
        TcpProxy::create(name, listen, upstream, enabled, options)
            .await
            .map_err(|e| proxy_error(&e))
    }

    async fn proxy(&self, name: &str) -> Result<Arc<TcpProxy>, ApiError> {
        self.proxies
            .lock()
            .await
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "proxy not found"))
    }

    /// A Toxiproxy-style request id: 20 characters of base32hex, unique per server.
    fn request_id(&self) -> String {
        const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        let mut v = (u128::from(self.seed) << 64) | u128::from(n);
        let mut out = [b'0'; 20];
        for slot in out.iter_mut().rev() {
            *slot = DIGITS[(v & 31) as usize];
            v >>= 5;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

// === impl ApiError ===

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_body(e: &BodyError) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, bad_body(e))
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> ApiError {
        ApiError::bad_body(&e)
    }
}

impl IntoResponse for ApiError {
    /// Toxiproxy's error body, through Go's `http.Error`: plain text type, `nosniff`, newline.
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            status: u16,
        }
        let mut text = serde_json::to_string(&Body {
            error: &self.message,
            status: self.status.as_u16(),
        })
        .unwrap_or_default();
        text.push('\n');
        (
            self.status,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            text,
        )
            .into_response()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for ApiError {}

// === handlers ===

/// Blocks browsers (Toxiproxy's CSRF guard) and stamps every routed response with a request id.
async fn toxiproxy_headers(State(server): Shared, request: Request, next: Next) -> Response {
    let browser = request
        .headers()
        .get(header::USER_AGENT)
        .is_some_and(|ua| ua.as_bytes().starts_with(b"Mozilla/"));
    if browser {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "User agent not allowed\n",
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED
        && let Ok(id) = HeaderValue::from_str(&server.request_id())
    {
        response.headers_mut().insert("x-toxiproxy-request-id", id);
    }
    response
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        "404 page not found\n",
    )
        .into_response()
}

async fn version() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        format!("{{\"version\": \"{TOXIPROXY_VERSION}\"}}\n"),
    )
        .into_response()
}

async fn list_proxies(State(server): Shared) -> ApiResult {
    let proxies: Vec<(String, Arc<TcpProxy>)> = server
        .proxies
        .lock()
        .await
        .iter()
        .map(|(k, v)| (k.clone(), Arc::clone(v)))
        .collect();
    let mut out = BTreeMap::new();
    for (name, proxy) in proxies {
        out.insert(name, proxy_out(&proxy).await);
    }
    json(StatusCode::OK, &out)
}

async fn create_proxy(State(server): Shared, body: Bytes) -> ApiResult {
    let value = decode(&body)?;
    let o = object(&value, "proxy.Proxy")?;
    let name = o.string("name", "Proxy")?.unwrap_or_default();
    let upstream = o.string("upstream", "Proxy")?.unwrap_or_default();
    let listen = o.string("listen", "Proxy")?.unwrap_or_default();
    let enabled = o.bool("enabled", "Proxy")?.unwrap_or(true);
    let reset_unreachable = o.bool("reset_unreachable", "Proxy")?.unwrap_or(false);
    if name.is_empty() {
        return Err(missing("name"));
    }
    if upstream.is_empty() {
        return Err(missing("upstream"));
    }
    let mut proxies = server.proxies.lock().await;
    if proxies.contains_key(&name) {
        return Err(ApiError::new(StatusCode::CONFLICT, "proxy already exists"));
    }
    let proxy = server
        .create(&name, &listen, &upstream, enabled, reset_unreachable)
        .await?;
    proxies.insert(name, Arc::clone(&proxy));
    drop(proxies);
    json(StatusCode::CREATED, &proxy_out(&proxy).await)
}

async fn show_proxy(State(server): Shared, Path(name): Path<String>) -> ApiResult {
    let proxy = server.proxy(&name).await?;
    json(StatusCode::OK, &proxy_out(&proxy).await)
}

async fn update_proxy(State(server): Shared, Path(name): Path<String>, body: Bytes) -> ApiResult {
    let proxies = server.proxies.lock().await;
    let proxy = proxies
        .get(&name)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "proxy not found"))?;
    let value = decode(&body)?;
    let o = object(&value, "proxy.Proxy")?;
    // Decoded on top of the current values: any subset may be sent; the name cannot change.
    let listen = match o.string("listen", "Proxy")? {
        Some(listen) => listen,
        None => proxy.listen().await,
    };
    let upstream = o
        .string("upstream", "Proxy")?
        .unwrap_or_else(|| proxy.upstream());
    let enabled = match o.bool("enabled", "Proxy")? {
        Some(enabled) => enabled,
        None => proxy.enabled().await,
    };
    if let Some(reset) = o.bool("reset_unreachable", "Proxy")? {
        proxy.set_reset_unreachable(reset);
    }
    proxy
        .update(&listen, &upstream, enabled)
        .await
        .map_err(|e| proxy_error(&e))?;
    drop(proxies);
    json(StatusCode::OK, &proxy_out(&proxy).await)
}

async fn delete_proxy(State(server): Shared, Path(name): Path<String>) -> ApiResult {
    let proxy = server
        .proxies
        .lock()
        .await
        .remove(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "proxy not found"))?;
    proxy.shutdown().await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_toxics(State(server): Shared, Path(name): Path<String>) -> ApiResult {
    let proxy = server.proxy(&name).await?;
    json(StatusCode::OK, &toxics_out(&proxy.toxics().await))
}

async fn create_toxic(State(server): Shared, Path(name): Path<String>, body: Bytes) -> ApiResult {
    let proxy = server.proxy(&name).await?;
    let value = decode(&body)?;
    let o = object(&value, "toxics.ToxicWrapper")?;
    // Names are checked here for Toxiproxy's order of errors (409 before attribute errors);
    // `add` checks again under its lock.
    let names: Vec<String> = proxy.toxics().await.into_iter().map(|t| t.name).collect();
    let toxic = parse_toxic(o, |name| names.iter().any(|n| n == name))?;
    let out = ToxicOut::from(&toxic);
    proxy.add(toxic).await.map_err(|e| proxy_error(&e))?;
    json(StatusCode::OK, &out)
}

async fn show_toxic(
    State(server): Shared,
    Path((name, toxic)): Path<(String, String)>,
) -> ApiResult {
    let proxy = server.proxy(&name).await?;
    let toxic = proxy.toxic(&toxic).await.ok_or_else(toxic_not_found)?;
    json(StatusCode::OK, &ToxicOut::from(&toxic))
}

async fn update_toxic(
    State(server): Shared,
    Path((name, toxic)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let proxy = server.proxy(&name).await?;
    if proxy.toxic(&toxic).await.is_none() {
        return Err(toxic_not_found());
    }
    let value = decode(&body)?;
    let o = object(&value, "toxics.ToxicWrapper")?;
    let attributes = o.object("attributes", "ToxicWrapper")?;
    let toxicity = o.number("toxicity", "ToxicWrapper")?;
    let updated = proxy
        .update_toxic(&toxic, |current| {
            let mut next = current.clone();
            if let Some(attrs) = attributes {
                let parsed = ToxicKind::from_attributes(
                    current.kind.type_name(),
                    attrs.0,
                    Some(&current.attributes),
                )
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.0))?;
                // Kinds the API cannot create (the engine's) keep their attributes.
                if let Some((kind, attributes)) = parsed {
                    next.kind = kind;
                    next.attributes = attributes;
                }
            }
            if let Some(t) = toxicity {
                next.toxicity = check_toxicity(t)?;
            }
            Ok::<_, ApiError>(next)
        })
        .await?
        .ok_or_else(toxic_not_found)?;
    json(StatusCode::OK, &ToxicOut::from(&updated))
}

async fn delete_toxic(
    State(server): Shared,
    Path((name, toxic)): Path<(String, String)>,
) -> ApiResult {
    let proxy = server.proxy(&name).await?;
    match proxy.remove_toxic(&toxic).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(false) => Err(toxic_not_found()),
        Err(e) => Err(proxy_error(&e)),
    }
}

async fn list_connections(State(server): Shared, Path(name): Path<String>) -> ApiResult {
    #[derive(Serialize)]
    struct ConnOut {
        id: u64,
        client: String,
        upstream_bytes: u64,
        downstream_bytes: u64,
        age_ms: u64,
    }
    let proxy = server.proxy(&name).await?;
    let out: Vec<ConnOut> = proxy
        .connections()
        .into_iter()
        .map(|c| ConnOut {
            id: c.id,
            client: c.client.to_string(),
            upstream_bytes: c.upstream_bytes,
            downstream_bytes: c.downstream_bytes,
            age_ms: u64::try_from(c.age.as_millis()).unwrap_or(u64::MAX),
        })
        .collect();
    json(StatusCode::OK, &out)
}

async fn populate(State(server): Shared, body: Bytes) -> Response {
    #[derive(Serialize)]
    struct Failed<'a> {
        error: &'a str,
        status: u16,
        proxies: &'a Option<Vec<ProxyOut>>,
    }
    #[derive(Serialize)]
    struct Done<'a> {
        proxies: &'a Option<Vec<ProxyOut>>,
    }
    let done = server.populate_inner(&body).await;
    let (status, text) = match &done.error {
        None => (
            StatusCode::CREATED,
            serde_json::to_string(&Done {
                proxies: &done.proxies,
            }),
        ),
        Some(error) => (
            error.status,
            serde_json::to_string(&Failed {
                error: &error.message,
                status: error.status.as_u16(),
                proxies: &done.proxies,
            }),
        ),
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        text.unwrap_or_default(),
    )
        .into_response()
}

async fn reset(State(server): Shared) -> ApiResult {
    let proxies = server.proxies.lock().await;
    for proxy in proxies.values() {
        if !proxy.enabled().await {
            let listen = proxy.listen().await;
            proxy
                .update(&listen, &proxy.upstream(), true)
                .await
                .map_err(|e| proxy_error(&e))?;
        }
        proxy.clear_toxics().await.map_err(|e| proxy_error(&e))?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn metrics(State(server): Shared) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        server.metrics.encode(),
    )
        .into_response()
}

// === helpers ===

/// A JSON response of `value`.
fn json(status: StatusCode, value: &impl Serialize) -> ApiResult {
    let body = serde_json::to_vec(value)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response())
}

async fn proxy_out(proxy: &TcpProxy) -> ProxyOut {
    ProxyOut {
        name: proxy.name().to_owned(),
        listen: proxy.listen().await,
        upstream: proxy.upstream(),
        enabled: proxy.enabled().await,
        toxics: toxics_out(&proxy.toxics().await),
        reset_unreachable: proxy.resets_unreachable(),
    }
}

/// Upstream toxics first, then downstream ones, each in chain order (as Toxiproxy lists them).
fn toxics_out(toxics: &[Toxic]) -> Vec<ToxicOut> {
    let up = toxics.iter().filter(|t| t.stream == Stream::Upstream);
    let down = toxics.iter().filter(|t| t.stream == Stream::Downstream);
    up.chain(down).map(ToxicOut::from).collect()
}

/// Reads a toxic to create, checking in Toxiproxy's order: stream, type, duplicate name
/// (`taken`), then attributes; toxicity range last (chaosforge's check).
fn parse_toxic(o: Obj<'_>, taken: impl FnOnce(&str) -> bool) -> Result<Toxic, ApiError> {
    let at = "ToxicWrapper";
    let name = o.string("name", at)?.unwrap_or_default();
    let type_name = o.string("type", at)?.unwrap_or_default();
    let stream_text = o
        .string("stream", at)?
        .unwrap_or_else(|| "downstream".to_owned());
    let toxicity = o.number("toxicity", at)?;
    let attributes = o.object("attributes", at)?;
    let stream = match stream_text.to_ascii_lowercase().as_str() {
        "upstream" => Stream::Upstream,
        "downstream" => Stream::Downstream,
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "stream was invalid, can be either upstream or downstream",
            ));
        }
    };
    let empty = serde_json::Map::new();
    let attrs = attributes.map_or(&empty, |a| a.0);
    let kind = ToxicKind::from_attributes(&type_name, attrs, None);
    if matches!(kind, Ok(None)) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid toxic type"));
    }
    let name = if name.is_empty() {
        format!("{type_name}_{stream_text}")
    } else {
        name
    };
    if taken(&name) {
        return Err(ApiError::new(StatusCode::CONFLICT, "toxic already exists"));
    }
    let (kind, attributes) = match kind {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid toxic type")),
        Err(e) => return Err(ApiError::new(StatusCode::BAD_REQUEST, e.0)),
    };
    let toxicity = check_toxicity(toxicity.unwrap_or(1.0))?;
    Ok(Toxic {
        name,
        stream,
        stream_text,
        toxicity,
        kind,
        attributes,
    })
}

/// A toxicity in `0..=1` (Toxiproxy accepts anything; outside the range it means nothing).
fn check_toxicity(t: f64) -> Result<f32, ApiError> {
    if (0.0..=1.0).contains(&t) {
        #[allow(clippy::cast_possible_truncation)] // in 0..=1, Toxiproxy's float32
        Ok(t as f32)
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("toxicity must be a number between 0 and 1, got {t}"),
        ))
    }
}

/// Validates one populate item (1-based `n`), including its optional `toxics`.
fn populate_item(item: &Value, n: usize) -> Result<PopulateItem, ApiError> {
    let o = object(item, "proxy.Proxy")?;
    let name = o.string("name", "Proxy")?.unwrap_or_default();
    let upstream = o.string("upstream", "Proxy")?.unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("missing required field: name at proxy {n}"),
        ));
    }
    if upstream.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("missing required field: upstream at proxy {n}"),
        ));
    }
    let mut toxics: Vec<Toxic> = Vec::new();
    if let Some(list) = o.get("toxics") {
        let Value::Array(list) = list else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("toxics of proxy {n} must be an array"),
            ));
        };
        for t in list {
            let to = object(t, "toxics.ToxicWrapper")?;
            let toxic = parse_toxic(to, |name| toxics.iter().any(|t| t.name == name))?;
            toxics.push(toxic);
        }
    }
    Ok(PopulateItem {
        name,
        listen: o.string("listen", "Proxy")?.unwrap_or_default(),
        upstream,
        enabled: o.bool("enabled", "Proxy")?.unwrap_or(true),
        reset_unreachable: o.bool("reset_unreachable", "Proxy")?.unwrap_or(false),
        toxics,
    })
}

fn bad_body(e: &BodyError) -> String {
    format!("bad request body: {}", e.0)
}

fn missing(field: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("missing required field: {field}"),
    )
}

fn toxic_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "toxic not found")
}

/// The status of a proxy error: a taken toxic name is a conflict, the rest server-side.
fn proxy_error(e: &ProxyError) -> ApiError {
    match e {
        ProxyError::DuplicateToxic(_) => {
            ApiError::new(StatusCode::CONFLICT, "toxic already exists")
        }
        ProxyError::NotRunning(_) => ApiError::new(StatusCode::NOT_FOUND, "proxy not found"),
        ProxyError::Bind { addr, source } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("listen tcp {addr}: {source}"),
        ),
        other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// A stable hash of a proxy name (FNV-1a), so a proxy's seed does not depend on creation order.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
