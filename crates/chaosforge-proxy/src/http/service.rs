//! One request through the proxy: match and draw the faults, act on the request, forward it,
//! act on the response. Everything a request needs is in [`Shared`]; the fault list is an
//! `Arc` snapshot taken once per request, so a change applies from the next request on, on
//! every open connection, and never half-way through one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tokio::task::JoinSet;

use super::auth;
use super::body::{self, Collected, ProxyBody};
use super::fault::{BodyCorruption, HeaderEdit, HttpAction, HttpFault};
use super::mitm::MitmCert;
use super::stats::{FaultRecord, Recorder, ReplayOutcome, ReplayRecord};
use super::upstream::{Lane, UpstreamClient, strip_hop_by_hop};
use crate::toxic::{chance, happens, mix};

/// The largest request body `replay` captures (the 1 MiB).
const REPLAY_CAPTURE_LIMIT: usize = 1 << 20;

/// The largest response body `JsonReplace` buffers; a larger one passes unchanged.
const JSON_LIMIT: usize = 8 << 20;

/// How long one replayed copy may take (answer and body) before it is recorded as failed,
/// so a hanging upstream cannot keep a replay task forever.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);

/// Salt of the connection draws of `tls-mitm` (see [`Shared::mitm_for`]).
const TLS_DRAWS: u64 = 0x746c_732d_6d69_746d; // "tls-mitm"

/// What the listener, every connection and every request share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Drives every random choice, with the request number (see [`handle`]).
    pub(crate) seed: u64,
    /// The faults, in evaluation order; replaced whole on every change.
    pub(crate) faults: RwLock<Arc<[Arc<ActiveFault>]>>,
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) upstream: UpstreamClient,
    /// Replay tasks; aborted when the proxy shuts down (or the last connection and handle
    /// go, with this struct).
    pub(crate) replays: Mutex<JoinSet<()>>,
}

/// A fault as set, with its counters.
#[derive(Debug)]
pub(crate) struct ActiveFault {
    pub(crate) fault: HttpFault,
    pub(crate) record: Arc<FaultRecord>,
    /// `replay` only: no request captured yet.
    armed: AtomicBool,
}

/// The service's error: close the connection (HTTP/1.1) or reset the stream (HTTP/2) without
/// an answer. hyper does exactly that when a service fails.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an http-abort fault")]
pub(crate) struct Dropped;

/// A request kept by `replay` to be sent again.
struct Captured {
    fault: String,
    times: u32,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

// === impl Shared ===

impl Shared {
    pub(crate) fn new(seed: u64, recorder: Arc<Recorder>, upstream: UpstreamClient) -> Shared {
        Shared {
            seed,
            faults: RwLock::new(Arc::from(Vec::new())),
            recorder,
            upstream,
            replays: Mutex::new(JoinSet::new()),
        }
    }

    /// The current fault list (a cheap `Arc` clone).
    fn snapshot(&self) -> Arc<[Arc<ActiveFault>]> {
        self.faults
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Adds `fault`, or replaces the one with its name in place (keeping its position, so the
    /// evaluation order does not change under a running experiment).
    pub(crate) fn set_fault(&self, fault: HttpFault) {
        let record = self.recorder.fault_set(&fault.name, &fault.action);
        let entry = Arc::new(ActiveFault {
            fault,
            record,
            armed: AtomicBool::new(true),
        });
        let mut faults = self.faults.write().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<_> = faults.iter().cloned().collect();
        match list.iter().position(|f| f.fault.name == entry.fault.name) {
            Some(at) => list[at] = entry,
            None => list.push(entry),
        }
        *faults = list.into();
    }

    /// Removes the fault named `name`; whether there was one.
    pub(crate) fn remove_fault(&self, name: &str) -> bool {
        let mut faults = self.faults.write().unwrap_or_else(PoisonError::into_inner);
        let before = faults.len();
        let list: Vec<_> = faults
            .iter()
            .filter(|f| f.fault.name != name)
            .cloned()
            .collect();
        let removed = list.len() != before;
        *faults = list.into();
        drop(faults);
        if removed {
            self.recorder.fault_removed(name);
        }
        removed
    }

    /// The `tls-mitm` certificate for new TLS connection number `conn`, if any: the first
    /// `tls-mitm` fault, in evaluation order, whose draw succeeds. Each one asked counts the
    /// connection as matched, the one chosen also as faulted.
    ///
    /// Connection `n` draws from `mix(mix(seed, TLS_DRAWS), n)`, a sequence apart from the
    /// requests' own.
    pub(crate) fn mitm_for(&self, conn: u64) -> Option<MitmCert> {
        let mut rng = SmallRng::seed_from_u64(mix(mix(self.seed, TLS_DRAWS), conn));
        for active in self.snapshot().iter() {
            let HttpAction::TlsMitm(variant) = active.fault.action else {
                continue;
            };
            active.record.matched.fetch_add(1, Ordering::Relaxed);
            if happens(&mut rng, chance(active.fault.probability.get())) {
                active.record.faulted.fetch_add(1, Ordering::Relaxed);
                return Some(variant);
            }
        }
        None
    }

    /// Starts a task in the replay set, reaping finished ones first so the set stays small.
    fn spawn_replay(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut replays = self.replays.lock().unwrap_or_else(PoisonError::into_inner);
        while replays.try_join_next().is_some() {}
        replays.spawn(task);
    }
}

/// Handles one request from a client, on the client connection whose upstream connection is
/// `lane`.
///
/// Request `n` (in arrival order) draws from an RNG seeded with `mix(seed, n)`, so a client
/// that sends its requests one at a time sees the same decisions on every run with the same
/// seed.
///
/// # Errors
///
/// [`Dropped`] when an `http-abort` fault drops the connection.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    lane: Arc<Lane>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Dropped> {
    let n = shared.recorder.requests.fetch_add(1, Ordering::Relaxed);
    let mut rng = SmallRng::seed_from_u64(mix(shared.seed, n));
    let faults = shared.snapshot();
    let (mut parts, client_body) = request.into_parts();

    // Decide first, on the request as the client sent it.
    let mut fired: Vec<&ActiveFault> = Vec::new();
    for active in faults.iter() {
        let fault = &active.fault;
        if fault.action.acts_on_connections() {
            continue;
        }
        if !fault
            .matcher
            .matches(&parts.method, parts.uri.path(), &parts.headers)
        {
            continue;
        }
        active.record.matched.fetch_add(1, Ordering::Relaxed);
        // Always draw, even at 0 % or 100 %, so one fault's probability never shifts the
        // draws of the faults after it.
        if !happens(&mut rng, chance(fault.probability.get())) {
            continue;
        }
        if let HttpAction::Replay { .. } = fault.action {
            // Counted as faulted once the capture succeeds (below).
            if !active.armed.swap(false, Ordering::AcqRel) {
                continue;
            }
        } else {
            active.record.faulted.fetch_add(1, Ordering::Relaxed);
        }
        fired.push(active);
        if fault.action.is_terminal() {
            break;
        }
    }

    // Answer in place of the upstream.
    if let Some(last) = fired.last() {
        match &last.fault.action {
            HttpAction::Abort {
                status,
                body,
                headers,
            } => {
                let mut response = Response::new(body.clone().map_or_else(body::empty, body::full));
                *response.status_mut() = *status;
                for (name, value) in headers {
                    response.headers_mut().append(name.clone(), value.clone());
                }
                return Ok(response);
            }
            HttpAction::Drop => return Err(Dropped),
            HttpAction::Hang => {
                drop(client_body);
                // Only the client's timeout (it closes the connection, and hyper drops this
                // future) or the proxy's shutdown (it aborts the connection) ends this.
                std::future::pending::<()>().await;
                return Err(Dropped);
            }
            _ => {}
        }
    }

    // The request side.
    strip_hop_by_hop(&mut parts.headers);
    let mut request_delay = Duration::ZERO;
    let mut response_delay = Duration::ZERO;
    for active in &fired {
        match &active.fault.action {
            HttpAction::Delay {
                request,
                response,
                jitter,
            } => {
                request_delay += jittered(*request, *jitter, &mut rng);
                response_delay += jittered(*response, *jitter, &mut rng);
            }
            HttpAction::Headers { request, .. } => edit_headers(&mut parts.headers, request),
            HttpAction::AuthStrip(credential) => auth::strip(&mut parts.headers, credential),
            HttpAction::AuthForge {
                credential,
                forgery,
            } => auth::forge(&mut parts.headers, credential, forgery, &mut rng),
            _ => {}
        }
    }
    if !request_delay.is_zero() {
        tokio::time::sleep(request_delay).await;
    }

    let method = parts.method.clone();
    // One request at a time on an HTTP/1 client connection: the next may wait for the lane.
    let sequential = parts.version < Version::HTTP_2;
    let uri = match shared.upstream.target(std::mem::take(&mut parts.uri)) {
        Ok(uri) => uri,
        Err(_) => {
            return Ok(plain(
                StatusCode::BAD_REQUEST,
                "chaosforge: bad request target\n",
            ));
        }
    };
    parts.uri = uri;
    // The pooled client picks HTTP/1.1 or HTTP/2 per upstream connection (ALPN); it refuses
    // an HTTP/2 request on an HTTP/1.1 connection, so the version is left to it.
    parts.version = Version::HTTP_11;
    // The upstream is the real service: it gets its own name (the client from its URI), as
    // TLS SNI and virtual hosting expect.
    parts.headers.remove(header::HOST);

    // `replay` needs the request's bytes; everything else streams.
    let mut upstream_body = body::incoming(client_body);
    let mut captured = None;
    if let Some(at) = fired
        .iter()
        .position(|f| matches!(f.fault.action, HttpAction::Replay { .. }))
    {
        let active = fired[at];
        match body::collect_up_to(upstream_body, REPLAY_CAPTURE_LIMIT).await {
            Ok(Collected::Whole { data, trailers }) => {
                active.record.faulted.fetch_add(1, Ordering::Relaxed);
                let times = match active.fault.action {
                    HttpAction::Replay { times } => times,
                    _ => 0,
                };
                captured = Some(Captured {
                    fault: active.fault.name.clone(),
                    times,
                    method: parts.method.clone(),
                    uri: parts.uri.clone(),
                    headers: parts.headers.clone(),
                    body: data.clone(),
                });
                upstream_body = body::rebuilt(data, trailers);
            }
            Ok(Collected::TooLarge(rest)) => {
                // Too big to keep: pass it on and capture the next faulted request instead.
                active.armed.store(true, Ordering::Release);
                fired.remove(at);
                upstream_body = rest;
            }
            Err(_) => {
                active.armed.store(true, Ordering::Release);
                return Ok(plain(
                    StatusCode::BAD_REQUEST,
                    "chaosforge: could not read the request body\n",
                ));
            }
        }
    }

    let response = match shared
        .upstream
        .send_on(&lane, sequential, Request::from_parts(parts, upstream_body))
        .await
    {
        Ok(response) => response,
        Err(error) => {
            shared
                .recorder
                .upstream_errors
                .fetch_add(1, Ordering::Relaxed);
            for active in &fired {
                active.record.upstream(None);
            }
            if let Some(captured) = captured {
                start_replays(&shared, captured, None);
            }
            tracing::debug!(error = %chain(&*error), "upstream request failed");
            return Ok(plain(
                StatusCode::BAD_GATEWAY,
                &format!("chaosforge: bad gateway: {}\n", chain(&*error)),
            ));
        }
    };
    let status = response.status();
    for active in &fired {
        active.record.upstream(Some(status.as_u16()));
    }
    if let Some(captured) = captured {
        start_replays(&shared, captured, Some(status.as_u16()));
    }

    // The response side.
    let (mut parts, upstream_body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if !response_delay.is_zero() {
        tokio::time::sleep(response_delay).await;
    }
    let mut body = body::incoming(upstream_body);
    // HEAD answers and these statuses have no body, whatever their headers say.
    let has_body = method != Method::HEAD
        && !status.is_informational()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::NOT_MODIFIED;
    for active in &fired {
        match &active.fault.action {
            HttpAction::Headers { response, .. } => edit_headers(&mut parts.headers, response),
            HttpAction::Corrupt(corruption) if has_body => {
                body = corrupt(body, &mut parts.headers, corruption, &mut rng).await;
            }
            _ => {}
        }
    }
    Ok(Response::from_parts(parts, body))
}

/// Applies one `http-corrupt` to a response body, fixing `content-length` where the length
/// changes (hyper then frames the body from its exact size, or chunks it).
async fn corrupt(
    body: ProxyBody,
    headers: &mut HeaderMap,
    corruption: &BodyCorruption,
    rng: &mut SmallRng,
) -> ProxyBody {
    match corruption {
        BodyCorruption::Truncate { keep } => {
            headers.remove(header::CONTENT_LENGTH);
            body::truncate(body, *keep)
        }
        BodyCorruption::FlipBytes { probability } => {
            let stream_rng = SmallRng::seed_from_u64(rng.random());
            body::flip(body, chance(probability.get()), stream_rng)
        }
        BodyCorruption::JsonReplace { path, value } => {
            match body::collect_up_to(body, JSON_LIMIT).await {
                Ok(Collected::Whole { data, trailers }) => {
                    match body::json_replace(&data, path, value) {
                        Some(changed) => {
                            headers.remove(header::CONTENT_LENGTH);
                            body::rebuilt(changed, trailers)
                        }
                        None => body::rebuilt(data, trailers),
                    }
                }
                Ok(Collected::TooLarge(rest)) => rest,
                // The upstream's body failed: the client sees a body that fails too.
                Err(error) => body::failed(error),
            }
        }
    }
}

/// Sends `captured` again `times` times in a task, recording each answer.
fn start_replays(shared: &Shared, captured: Captured, original: Option<u16>) {
    let index = shared.recorder.replay_started(ReplayRecord {
        fault: captured.fault.clone(),
        method: captured.method.to_string(),
        uri: captured
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string),
        original,
        times: captured.times,
        replays: Vec::new(),
    });
    let recorder = shared.recorder.clone();
    let upstream = shared.upstream.clone();
    shared.spawn_replay(async move {
        for _ in 0..captured.times {
            let mut request = Request::new(body::full(captured.body.clone()));
            *request.method_mut() = captured.method.clone();
            *request.uri_mut() = captured.uri.clone();
            *request.headers_mut() = captured.headers.clone();
            let outcome = tokio::time::timeout(REPLAY_TIMEOUT, async {
                match upstream.send(request).await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        // Read the answer to its end so the pooled connection can be reused;
                        // its content does not matter.
                        let _ =
                            http_body_util::BodyExt::collect(body::incoming(response.into_body()))
                                .await;
                        ReplayOutcome::Status(status)
                    }
                    Err(error) => ReplayOutcome::Failed(chain(&*error)),
                }
            })
            .await
            .unwrap_or_else(|_| ReplayOutcome::Failed("no answer within 30s".into()));
            recorder.replayed(index, outcome);
        }
    });
}

/// Applies header edits in order.
fn edit_headers(headers: &mut HeaderMap, edits: &[HeaderEdit]) {
    for edit in edits {
        match edit {
            HeaderEdit::Add(name, value) => {
                headers.append(name.clone(), value.clone());
            }
            HeaderEdit::Set(name, value) => {
                headers.insert(name.clone(), value.clone());
            }
            HeaderEdit::Remove(name) => {
                headers.remove(name);
            }
        }
    }
}

/// `delay` plus a uniform offset in `[-jitter, +jitter]`, never below zero; zero stays zero
/// (a delay that is not asked for gets no jitter).
fn jittered(delay: Duration, jitter: Duration, rng: &mut SmallRng) -> Duration {
    if delay.is_zero() || jitter.is_zero() {
        return delay;
    }
    let offset = rng.random_range(-1.0..=1.0) * jitter.as_secs_f64();
    Duration::try_from_secs_f64((delay.as_secs_f64() + offset).max(0.0)).unwrap_or(delay)
}

/// A short plain-text answer from the proxy itself.
fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(text.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// An error and its sources, `: `-separated (hyper-util's own message is only "client
/// error (Connect)").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_spreads_around_the_delay_and_zero_stays_zero() {
        let mut rng = SmallRng::seed_from_u64(3);
        let d = Duration::from_millis(100);
        let j = Duration::from_millis(20);
        let draws: Vec<_> = (0..1000).map(|_| jittered(d, j, &mut rng)).collect();
        assert!(draws.iter().all(|x| (80..=120).contains(&x.as_millis())));
        assert!(draws.iter().any(|x| x.as_millis() < 90));
        assert!(draws.iter().any(|x| x.as_millis() > 110));
        assert_eq!(jittered(Duration::ZERO, j, &mut rng), Duration::ZERO);
    }

    #[test]
    fn header_edits_apply_in_order() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        let name = |s: &'static str| hyper::header::HeaderName::from_static(s);
        edit_headers(
            &mut headers,
            &[
                HeaderEdit::Add(name("x-a"), HeaderValue::from_static("2")),
                HeaderEdit::Set(name("x-b"), HeaderValue::from_static("3")),
                HeaderEdit::Remove(name("x-c")),
                HeaderEdit::Set(name("x-c"), HeaderValue::from_static("4")),
            ],
        );
        let a: Vec<_> = headers.get_all("x-a").iter().collect();
        assert_eq!(a, ["1", "2"]);
        assert_eq!(headers["x-b"], "3");
        assert_eq!(headers["x-c"], "4");
    }
}
