//! The engine's seam: an [`HttpProxy`] behind
//! [`HttpProxyControl`], started by [`InProcessBackend`](crate::InProcessBackend)'s
//! `start_http`.
//!
//! The engine speaks plain data ([`HttpRule`]: strings, numbers); the proxy speaks typed
//! HTTP ([`HttpFault`]: methods, header names, status codes, a compiled regex and JSONPath).
//! The mapping checks every string once, when a rule is set, and reports every problem of a
//! rule at once. The planner validates rules first; this is the second line, so a bad rule
//! is an error, never a panic or a fault that silently never matches.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use chaosforge::fault::net::{
    CredentialRule, ForgeryRule, HeaderEditRule, HttpMatch, HttpProxyControl, HttpProxyReport,
    HttpRule, HttpRuleAction, HttpRuleCounters, MitmVariant, ProxyError,
};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode, Uri};
use regex::Regex;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{self, PemObject};
use serde_json_path::JsonPath;

use super::{
    BodyCorruption, Credential, Forgery, HeaderCond, HeaderEdit, HttpAction, HttpFault, HttpProxy,
    HttpProxyConfig, HttpProxyError, MitmCert, RequestMatch, Upstream,
};

/// An [`HttpProxy`] as the engine drives it: [`HttpRule`]s in, [`HttpProxyReport`]s out.
#[derive(Debug)]
pub(crate) struct HttpProxyHandle {
    /// The target's name, for errors.
    name: String,
    proxy: HttpProxy,
    /// Rule names in the order they were first set: the report's order.
    order: Mutex<Vec<String>>,
}

/// The problems found in one rule, each a short phrase naming the field.
type Problems = Vec<String>;

// === impl HttpProxyHandle ===

impl HttpProxyHandle {
    /// Binds `listen` (`host:port`, IPv4 first) and starts an [`HttpProxy`] in front of
    /// `upstream` (`http://…` or `https://…`), trusting the PEM certificates of
    /// `upstream_ca` besides the system's roots for an https upstream (ignored for http).
    ///
    /// # Errors
    ///
    /// [`ProxyError::Address`] for an unusable listen address or upstream URL, or an https
    /// upstream with no root to trust; [`ProxyError::Io`] for an unreadable or empty CA file
    /// (its path in the message) or certificates that cannot be made;
    /// [`ProxyError::Bind`] when `listen` cannot be bound.
    pub(crate) async fn start(
        name: &str,
        listen: &str,
        upstream: &str,
        upstream_ca: Option<&Path>,
        seed: u64,
    ) -> Result<Arc<HttpProxyHandle>, ProxyError> {
        let listen_addr = crate::proxy::resolve(listen).await?;
        let url: Uri = upstream.parse().map_err(|e| ProxyError::Address {
            addr: upstream.to_owned(),
            reason: format!("not a URL: {e}"),
        })?;
        let https = url.scheme_str() == Some("https");
        let tls_roots = match upstream_ca {
            Some(path) if https => Some(read_ca(path)?),
            _ => None,
        };
        let proxy = HttpProxy::start(HttpProxyConfig {
            listen: listen_addr,
            upstream: Upstream { url, tls_roots },
            mitm: None,
            seed,
        })
        .await
        .map_err(|error| start_error(error, listen, upstream))?;
        tracing::debug!(proxy = name, addr = %proxy.local_addr(), upstream, "http proxy started");
        Ok(Arc::new(HttpProxyHandle {
            name: name.to_owned(),
            proxy,
            order: Mutex::new(Vec::new()),
        }))
    }
}

#[async_trait]
impl HttpProxyControl for HttpProxyHandle {
    fn listen_addr(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    async fn set_rule(&self, rule: HttpRule) -> Result<(), ProxyError> {
        if !self.proxy.is_running() {
            return Err(ProxyError::NotRunning(self.name.clone()));
        }
        let fault = fault_of(&rule).map_err(|problems| {
            ProxyError::Remote(format!(
                "rule `{}` of HTTP proxy `{}` is invalid: {}",
                rule.name,
                self.name,
                problems.join("; ")
            ))
        })?;
        {
            let mut order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
            if !order.contains(&rule.name) {
                order.push(rule.name.clone());
            }
        }
        self.proxy.set_fault(fault);
        Ok(())
    }

    async fn remove_rule(&self, name: &str) -> Result<bool, ProxyError> {
        // Also after shutdown: reverting must stay idempotent, and nothing serves the rule.
        Ok(self.proxy.remove_fault(name))
    }

    fn report(&self) -> HttpProxyReport {
        let stats = self.proxy.stats();
        let order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        let rules = order
            .iter()
            .map(|name| {
                let counters = stats.faults.get(name);
                HttpRuleCounters {
                    name: name.clone(),
                    matched: counters.map_or(0, |c| c.matched),
                    faulted: counters.map_or(0, |c| c.faulted),
                }
            })
            .collect();
        HttpProxyReport {
            rules,
            findings: stats.findings().iter().map(ToString::to_string).collect(),
        }
    }

    async fn shutdown(&self) {
        self.proxy.shutdown().await;
    }
}

/// The certificates of a PEM file, at least one.
fn read_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
    let error = |kind: io::ErrorKind, reason: &dyn std::fmt::Display| {
        ProxyError::Io(io::Error::new(
            kind,
            format!("upstream CA `{}`: {reason}", path.display()),
        ))
    };
    let pem_error = |e: pem::Error| match e {
        pem::Error::Io(io) => error(io.kind(), &io),
        other => error(io::ErrorKind::InvalidData, &other),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(error(
            io::ErrorKind::InvalidData,
            &"no PEM `CERTIFICATE` in the file",
        ));
    }
    Ok(certs)
}

/// An [`HttpProxyError`] as the seam's [`ProxyError`], with the address it is about.
fn start_error(error: HttpProxyError, listen: &str, upstream: &str) -> ProxyError {
    match error {
        HttpProxyError::Bind { source, .. } => ProxyError::Bind {
            addr: listen.to_owned(),
            source,
        },
        HttpProxyError::LocalAddr(source) => ProxyError::Io(source),
        HttpProxyError::Upstream { reason, .. } => ProxyError::Address {
            addr: upstream.to_owned(),
            reason: reason.to_owned(),
        },
        HttpProxyError::Tls(error) => ProxyError::Address {
            addr: upstream.to_owned(),
            reason: format!("cannot trust it: {error}"),
        },
        HttpProxyError::Certificate(error) => ProxyError::Io(io::Error::other(format!(
            "cannot make the tls-mitm certificates: {error}"
        ))),
    }
}

/// The proxy's fault for `rule`, or every problem with it.
pub(crate) fn fault_of(rule: &HttpRule) -> Result<HttpFault, Problems> {
    let mut problems = Problems::new();
    if rule.name.is_empty() {
        problems.push("the name is empty".to_owned());
    }
    let matcher = matcher_of(&rule.matcher, &mut problems);
    let action = action_of(&rule.action, &mut problems);
    if matches!(rule.action, HttpRuleAction::TlsMitm { .. }) && rule.matcher != HttpMatch::default()
    {
        problems.push(
            "tls-mitm acts on connections, before any request: it takes no request matcher"
                .to_owned(),
        );
    }
    match action {
        Some(action) if problems.is_empty() => Ok(HttpFault::new(
            &rule.name,
            matcher,
            rule.probability,
            action,
        )),
        _ => Err(problems),
    }
}

/// The typed matcher; problems are added for what does not parse.
fn matcher_of(m: &HttpMatch, problems: &mut Problems) -> RequestMatch {
    let methods = m
        .methods
        .iter()
        .filter_map(|name| method(name, problems))
        .collect();
    let path_regex = m.path_regex.as_deref().and_then(|re| match Regex::new(re) {
        Ok(re) => Some(re),
        Err(e) => {
            problems.push(format!("matcher.path_regex `{re}`: {}", regex_error(&e)));
            None
        }
    });
    let headers = m
        .headers
        .iter()
        .filter_map(|cond| {
            let name = header_name(&cond.name, "matcher.headers", problems)?;
            let cond = match &cond.equals {
                None => HeaderCond::Present,
                Some(value) => {
                    // A value no request can carry would never match: say so instead.
                    header_value(value, "matcher.headers", problems)?;
                    HeaderCond::Equals(value.clone())
                }
            };
            Some((name, cond))
        })
        .collect();
    RequestMatch {
        methods,
        path_prefix: m.path_prefix.clone(),
        path_regex,
        headers,
    }
}

/// The typed action, or `None` with the problems added.
fn action_of(action: &HttpRuleAction, problems: &mut Problems) -> Option<HttpAction> {
    let before = problems.len();
    let action = match action {
        HttpRuleAction::Abort {
            status,
            body,
            headers,
        } => {
            let status = match StatusCode::from_u16(*status) {
                Ok(code) if (100..=599).contains(status) => Some(code),
                _ => {
                    problems.push(format!("abort.status: {status} is not in 100..=599"));
                    None
                }
            };
            let headers = headers
                .iter()
                .filter_map(|(name, value)| {
                    let name = header_name(name, "abort.headers", problems)?;
                    Some((name, header_value(value, "abort.headers", problems)?))
                })
                .collect();
            HttpAction::Abort {
                status: status?,
                body: body.clone().map(Bytes::from),
                headers,
            }
        }
        HttpRuleAction::Drop => HttpAction::Drop,
        HttpRuleAction::Delay {
            request,
            response,
            jitter,
        } => HttpAction::Delay {
            request: *request,
            response: *response,
            jitter: *jitter,
        },
        HttpRuleAction::Hang => HttpAction::Hang,
        HttpRuleAction::Truncate { keep } => HttpAction::Corrupt(BodyCorruption::Truncate {
            // More than the address space keeps everything, as any body is shorter.
            keep: usize::try_from(*keep).unwrap_or(usize::MAX),
        }),
        HttpRuleAction::FlipBytes { probability } => {
            HttpAction::Corrupt(BodyCorruption::FlipBytes {
                probability: *probability,
            })
        }
        HttpRuleAction::JsonReplace { path, value } => match JsonPath::parse(path) {
            Ok(path) => HttpAction::Corrupt(BodyCorruption::JsonReplace {
                path,
                value: value.clone(),
            }),
            Err(e) => {
                problems.push(format!("json-replace.path `{path}`: {e}"));
                return None;
            }
        },
        HttpRuleAction::Headers { request, response } => HttpAction::Headers {
            request: edits(request, "headers.request", problems),
            response: edits(response, "headers.response", problems),
        },
        HttpRuleAction::AuthStrip { credential } => {
            HttpAction::AuthStrip(credential_of(credential, problems)?)
        }
        HttpRuleAction::AuthForge {
            credential,
            forgery,
        } => {
            let credential = credential_of(credential, problems);
            let forgery = match forgery {
                ForgeryRule::JwtWrongKey => Forgery::JwtWrongKey,
                ForgeryRule::JwtAlgNone => Forgery::JwtAlgNone,
                ForgeryRule::JwtExpired => Forgery::JwtExpired,
                ForgeryRule::JwtClaims(claims) => Forgery::JwtClaims(claims.clone()),
                ForgeryRule::Token(token) => {
                    // Otherwise the proxy would strip the credential instead of forging it.
                    header_value(token, "auth-forge.forgery.token", problems)?;
                    Forgery::Token(token.clone())
                }
            };
            HttpAction::AuthForge {
                credential: credential?,
                forgery,
            }
        }
        HttpRuleAction::Replay { times } => HttpAction::Replay { times: *times },
        HttpRuleAction::TlsMitm { certificate } => HttpAction::TlsMitm((*certificate).into()),
    };
    (problems.len() == before).then_some(action)
}

/// Header edits; problems are added for names and values that do not parse.
fn edits(edits: &[HeaderEditRule], at: &str, problems: &mut Problems) -> Vec<HeaderEdit> {
    edits
        .iter()
        .filter_map(|edit| match edit {
            HeaderEditRule::Add(name, value) => Some(HeaderEdit::Add(
                header_name(name, at, problems)?,
                header_value(value, at, problems)?,
            )),
            HeaderEditRule::Set(name, value) => Some(HeaderEdit::Set(
                header_name(name, at, problems)?,
                header_value(value, at, problems)?,
            )),
            HeaderEditRule::Remove(name) => {
                Some(HeaderEdit::Remove(header_name(name, at, problems)?))
            }
        })
        .collect()
}

fn credential_of(credential: &CredentialRule, problems: &mut Problems) -> Option<Credential> {
    match credential {
        CredentialRule::Authorization => Some(Credential::Authorization),
        CredentialRule::Header(name) => Some(Credential::Header(header_name(
            name,
            "credential.header",
            problems,
        )?)),
        CredentialRule::Cookie(name) => {
            // RFC 6265 cookie-name: a token, so no separators, spaces or `=`.
            let bad = name.is_empty()
                || name.bytes().any(|b| {
                    b.is_ascii_control()
                        || b.is_ascii_whitespace()
                        || b"()<>@,;:\\\"/[]?={}".contains(&b)
                        || !b.is_ascii()
                });
            if bad {
                problems.push(format!("credential.cookie `{name}` is not a cookie name"));
                return None;
            }
            Some(Credential::Cookie(name.clone()))
        }
    }
}

/// A method; a standard one written in lower case (`get`) is that method, since nobody sends
/// an extension method named `get`.
fn method(name: &str, problems: &mut Problems) -> Option<Method> {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::PATCH,
        Method::TRACE,
    ];
    if let Some(standard) = STANDARD
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(name))
    {
        return Some(standard);
    }
    match Method::from_bytes(name.as_bytes()) {
        Ok(method) if !name.is_empty() => Some(method),
        _ => {
            problems.push(format!("matcher.methods: `{name}` is not an HTTP method"));
            None
        }
    }
}

/// A regex error on one line: its syntax errors span three (the pattern, a caret, the
/// reason), and the pattern is quoted already.
fn regex_error(error: &regex::Error) -> String {
    match error {
        regex::Error::Syntax(text) => text
            .lines()
            .last()
            .map_or(text.as_str(), |last| {
                last.trim().trim_start_matches("error: ")
            })
            .to_owned(),
        other => other.to_string(),
    }
}

/// A header name (any case; HTTP names are case-insensitive).
fn header_name(name: &str, at: &str, problems: &mut Problems) -> Option<HeaderName> {
    match HeaderName::from_bytes(name.as_bytes()) {
        Ok(name) => Some(name),
        Err(_) => {
            problems.push(format!("{at}: `{name}` is not a header name"));
            None
        }
    }
}

fn header_value(value: &str, at: &str, problems: &mut Problems) -> Option<HeaderValue> {
    match HeaderValue::from_str(value) {
        Ok(value) => Some(value),
        Err(_) => {
            problems.push(format!(
                "{at}: {value:?} is not a header value (control characters or non-ASCII)"
            ));
            None
        }
    }
}

// === impl MitmCert ===

impl From<MitmVariant> for MitmCert {
    fn from(variant: MitmVariant) -> MitmCert {
        match variant {
            MitmVariant::Untrusted => MitmCert::Untrusted,
            MitmVariant::Expired => MitmCert::Expired,
            MitmVariant::NotYetValid => MitmCert::NotYetValid,
            MitmVariant::WrongHost => MitmCert::WrongHost,
        }
    }
}

#[cfg(test)]
mod tests;
