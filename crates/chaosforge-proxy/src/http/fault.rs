//! The HTTP fault model: what a fault matches ([`RequestMatch`]) and what it does
//! ([`HttpAction`]). Plain data, validated by its types (a [`Regex`], a [`JsonPath`], a
//! [`Ratio`], typed header names and values), so [`HttpProxy::set_fault`](super::HttpProxy::set_fault)
//! cannot fail.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use chaosforge::units::Ratio;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use regex::Regex;
use serde_json_path::JsonPath;

use super::mitm::MitmCert;

/// One HTTP fault on an [`HttpProxy`](super::HttpProxy): the requests it applies to, how
/// often, and what it does to them.
///
/// Faults are evaluated in the order they were first set. Each one whose [`matcher`] accepts
/// the request counts it as *matched*, then draws against [`probability`]; on success it
/// counts it as *faulted* and acts. An action that answers in place of the upstream
/// ([`HttpAction::Abort`], [`HttpAction::Drop`], [`HttpAction::Hang`]) ends the evaluation:
/// later faults do not see that request. Every fault matches the request as the client sent
/// it, before any other fault's edits.
///
/// [`HttpAction::TlsMitm`] is the exception: it acts on connections, not requests. Each new
/// client connection that opens with a TLS ClientHello is offered to the `tls-mitm` faults in
/// the same order (the matcher is not consulted: there is no request yet); the first whose
/// draw succeeds terminates TLS with its certificate. Request faults never see it.
///
/// [`matcher`]: HttpFault::matcher
/// [`probability`]: HttpFault::probability
#[derive(Debug, Clone)]
pub struct HttpFault {
    /// Unique within a proxy: [`set_fault`](super::HttpProxy::set_fault) with the same name
    /// replaces the fault in place, and stats are kept per name.
    pub name: String,
    /// Which requests the fault applies to; [`RequestMatch::default`] matches all.
    pub matcher: RequestMatch,
    /// The chance that a matched request is faulted, drawn per request from the proxy's
    /// seeded RNG (`100%` faults every matched request).
    pub probability: Ratio,
    /// What happens to a faulted request.
    pub action: HttpAction,
}

/// Which requests a fault applies to: every condition given must hold (an empty one always
/// does).
///
/// ```
/// use chaosforge_proxy::http::{HeaderCond, RequestMatch};
/// use hyper::Method;
///
/// // POST or PUT under /api/ carrying an x-tenant header.
/// let m = RequestMatch {
///     methods: vec![Method::POST, Method::PUT],
///     path_prefix: Some("/api/".into()),
///     headers: vec![("x-tenant".parse().unwrap(), HeaderCond::Present)],
///     ..RequestMatch::default()
/// };
/// # let _ = m;
/// ```
#[derive(Debug, Clone, Default)]
pub struct RequestMatch {
    /// Accepted methods; empty accepts any.
    pub methods: Vec<Method>,
    /// The path (without the query) starts with this.
    pub path_prefix: Option<String>,
    /// The path (without the query) matches this regex somewhere (anchor it with `^…$` to
    /// match the whole path).
    pub path_regex: Option<Regex>,
    /// Header conditions, all of which must hold.
    pub headers: Vec<(HeaderName, HeaderCond)>,
}

/// A condition on one request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderCond {
    /// One of the header's values is exactly this (byte-for-byte, case-sensitive).
    Equals(String),
    /// The header is there, with any value.
    Present,
}

/// What a fault does to a request it faults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HttpAction {
    /// `http-abort`: answer with `status`, `body` and `headers` without calling the upstream.
    Abort {
        /// The status the client gets.
        status: StatusCode,
        /// The body (none: empty).
        body: Option<Bytes>,
        /// Extra response headers (`content-length` is set from the body).
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    /// `http-abort` without an answer: close the client's connection (HTTP/1.1) or reset its
    /// stream (HTTP/2), without calling the upstream.
    Drop,
    /// `http-delay`: hold the request before it goes upstream and/or the response before it
    /// goes back, each for its duration ± a uniform draw in `[-jitter, +jitter]` (never below
    /// zero). The body still streams; the response delay starts once the upstream's headers
    /// have arrived.
    Delay {
        /// Time the request waits before it is sent upstream.
        request: Duration,
        /// Time the response waits (after the upstream's headers) before it is returned.
        response: Duration,
        /// Spread of each non-zero delay.
        jitter: Duration,
    },
    /// `http-hang`: never answer, never call the upstream; only the client's own timeout (or
    /// the proxy's shutdown) ends the request.
    Hang,
    /// `http-corrupt`: alter the response body.
    Corrupt(BodyCorruption),
    /// `http-header`: edit request headers before the request goes upstream and response
    /// headers before the response goes back, in order.
    Headers {
        /// Edits to the request, seen by the upstream.
        request: Vec<HeaderEdit>,
        /// Edits to the response, seen by the client.
        response: Vec<HeaderEdit>,
    },
    /// `auth-strip`: remove the credential before the request goes upstream. The upstream's
    /// answer is recorded (a 2xx is a security finding).
    AuthStrip(Credential),
    /// `auth-forge`: replace the credential with a forged one (added if the request had none).
    /// The upstream's answer is recorded (a 2xx is a security finding).
    AuthForge {
        /// Where the credential is.
        credential: Credential,
        /// What to put there.
        forgery: Forgery,
    },
    /// `replay`: capture the first faulted request (method, URI, headers and a body of at
    /// most 1 MiB; a larger one is passed through and the next faulted request is tried),
    /// pass it through, then send it again `times` times, one after the other, unchanged
    /// (same nonce, same timestamp), and record each upstream answer. One capture per fault:
    /// later requests pass through untouched (they still count as matched).
    Replay {
        /// How many copies to send after the original.
        times: u32,
    },
    /// `tls-mitm`: terminate TLS towards clients with this bad certificate (then serve them
    /// as HTTP, every other fault applying), where the proxy would otherwise pass their TLS
    /// through to the upstream untouched. Acts on new connections only: one already passed
    /// through or terminated stays so. The probability is drawn per connection.
    TlsMitm(MitmCert),
}

/// How `http-corrupt` alters a response body.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BodyCorruption {
    /// Keep the first `keep` bytes and end the body there (a known `content-length` is
    /// lowered to match, so the client reads a complete but short body). Streams.
    Truncate {
        /// Bytes kept.
        keep: usize,
    },
    /// Invert each byte (XOR `0xFF`) with this probability, independently. Streams; the
    /// length is unchanged.
    FlipBytes {
        /// Chance per byte.
        probability: Ratio,
    },
    /// Parse the body as JSON (up to 8 MiB, else it passes unchanged) and set every value
    /// `path` selects to `value`; `content-length` is recomputed. A body that is not JSON
    /// (or compressed) passes unchanged. The only corruption that buffers the body.
    JsonReplace {
        /// Which values (RFC 9535 JSONPath), e.g. `$.items[*].price`.
        path: JsonPath,
        /// What they become.
        value: serde_json::Value,
    },
}

/// One header edit of `http-header`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Append a value, keeping the existing ones.
    Add(HeaderName, HeaderValue),
    /// Replace every value with this one.
    Set(HeaderName, HeaderValue),
    /// Remove the header (every value).
    Remove(HeaderName),
}

/// Where a request carries its credential, for `auth-strip` and `auth-forge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The `Authorization` header (a bearer token for JWT forgeries).
    Authorization,
    /// The cookie with this name in the `Cookie` header(s); other cookies are kept.
    Cookie(String),
    /// A header holding the credential alone, e.g. `x-api-key`.
    Header(HeaderName),
}

/// What `auth-forge` puts in place of the credential.
///
/// JWT forgeries start from the request's own JWT when it has one (its header and claims are
/// kept, except what the forgery changes), else from a fresh token with `sub`, `iat` and
/// `exp`. They are signed HS256 with a random key drawn from the proxy's seed, never with
/// the real key, so an upstream that checks signatures rejects every one.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Forgery {
    /// The same claims, re-signed with a wrong key.
    JwtWrongKey,
    /// The same claims with header `alg: none` and an empty signature.
    JwtAlgNone,
    /// `exp` (and `iat`/`nbf`) moved an hour into the past.
    JwtExpired,
    /// These claims merged over the original ones (e.g. `{"role": "admin"}`).
    JwtClaims(serde_json::Map<String, serde_json::Value>),
    /// This token verbatim (after the original scheme, e.g. `Bearer`, for `Authorization`).
    Token(String),
}

// === impl HttpFault ===

impl HttpFault {
    /// A fault that applies `action` to every request `matcher` accepts, with `probability`.
    pub fn new(
        name: impl Into<String>,
        matcher: RequestMatch,
        probability: Ratio,
        action: HttpAction,
    ) -> HttpFault {
        HttpFault {
            name: name.into(),
            matcher,
            probability,
            action,
        }
    }
}

// === impl RequestMatch ===

impl RequestMatch {
    /// Whether a request with this method, path and headers is accepted.
    pub fn matches(&self, method: &Method, path: &str, headers: &HeaderMap) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return false;
        }
        if let Some(prefix) = &self.path_prefix
            && !path.starts_with(prefix.as_str())
        {
            return false;
        }
        if let Some(regex) = &self.path_regex
            && !regex.is_match(path)
        {
            return false;
        }
        self.headers.iter().all(|(name, cond)| match cond {
            HeaderCond::Present => headers.contains_key(name),
            HeaderCond::Equals(want) => headers
                .get_all(name)
                .iter()
                .any(|v| v.as_bytes() == want.as_bytes()),
        })
    }
}

// === impl HttpAction ===

impl HttpAction {
    /// The fault kind as the experiment file names it: `http-abort` (also for
    /// [`HttpAction::Drop`]), `http-delay`, `http-hang`, `http-corrupt`, `http-header`,
    /// `auth-strip`, `auth-forge`, `replay` or `tls-mitm`.
    pub fn kind(&self) -> &'static str {
        match self {
            HttpAction::Abort { .. } | HttpAction::Drop => "http-abort",
            HttpAction::Delay { .. } => "http-delay",
            HttpAction::Hang => "http-hang",
            HttpAction::Corrupt(_) => "http-corrupt",
            HttpAction::Headers { .. } => "http-header",
            HttpAction::AuthStrip(_) => "auth-strip",
            HttpAction::AuthForge { .. } => "auth-forge",
            HttpAction::Replay { .. } => "replay",
            HttpAction::TlsMitm(_) => "tls-mitm",
        }
    }

    /// Whether it acts on connections (at the TLS handshake) rather than on requests.
    pub(crate) fn acts_on_connections(&self) -> bool {
        matches!(self, HttpAction::TlsMitm(_))
    }

    /// Whether the proxy answers in place of the upstream (ending fault evaluation).
    pub(crate) fn is_terminal(&self) -> bool {
        matches!(
            self,
            HttpAction::Abort { .. } | HttpAction::Drop | HttpAction::Hang
        )
    }
}

// === impl Credential ===

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Authorization => f.write_str("Authorization header"),
            Credential::Cookie(name) => write!(f, "cookie `{name}`"),
            Credential::Header(name) => write!(f, "header `{name}`"),
        }
    }
}

// === impl Forgery ===

impl fmt::Display for Forgery {
    /// What the forged credential is, as a report names it ("alg none").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Forgery::JwtWrongKey => f.write_str("a JWT signed with a wrong key"),
            Forgery::JwtAlgNone => f.write_str("alg none"),
            Forgery::JwtExpired => f.write_str("an expired JWT"),
            Forgery::JwtClaims(_) => f.write_str("altered JWT claims"),
            Forgery::Token(_) => f.write_str("an arbitrary token"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn empty_match_accepts_everything() {
        let m = RequestMatch::default();
        assert!(m.matches(&Method::DELETE, "/x", &HeaderMap::new()));
    }

    #[test]
    fn every_condition_must_hold() {
        let m = RequestMatch {
            methods: vec![Method::GET],
            path_prefix: Some("/api/".into()),
            path_regex: Some(Regex::new(r"^/api/v\d+/").unwrap()),
            headers: vec![
                (HeaderName::from_static("x-a"), HeaderCond::Present),
                (
                    HeaderName::from_static("x-b"),
                    HeaderCond::Equals("yes".into()),
                ),
            ],
        };
        let good = headers(&[("x-a", ""), ("x-b", "no"), ("x-b", "yes")]);
        assert!(m.matches(&Method::GET, "/api/v2/items", &good));
        assert!(!m.matches(&Method::POST, "/api/v2/items", &good));
        assert!(!m.matches(&Method::GET, "/other/v2/", &good));
        assert!(!m.matches(&Method::GET, "/api/vx/", &good));
        assert!(!m.matches(&Method::GET, "/api/v2/", &headers(&[("x-b", "yes")])));
        assert!(!m.matches(
            &Method::GET,
            "/api/v2/",
            &headers(&[("x-a", "1"), ("x-b", "YES")])
        ));
    }

    #[test]
    fn kinds_follow_the_experiment_file() {
        assert_eq!(HttpAction::Drop.kind(), "http-abort");
        assert_eq!(HttpAction::Hang.kind(), "http-hang");
        assert_eq!(HttpAction::Replay { times: 1 }.kind(), "replay");
        assert!(HttpAction::Hang.is_terminal());
        assert!(!HttpAction::Replay { times: 1 }.is_terminal());
        let mitm = HttpAction::TlsMitm(MitmCert::Expired);
        assert_eq!(mitm.kind(), "tls-mitm");
        assert!(mitm.acts_on_connections() && !mitm.is_terminal());
    }
}
