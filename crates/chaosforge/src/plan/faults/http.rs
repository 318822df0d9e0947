//! The HTTP and security family: rules on an HTTP proxy target (`http-abort`, `http-delay`,
//! `http-hang`, `http-corrupt`, `http-header`, `auth-strip`, `auth-forge`, `replay`,
//! `tls-mitm`), each with a request match and a probability.

use std::time::Duration;

use super::FaultKind;
use crate::fault::net::{
    CredentialRule, ForgeryRule, HeaderCondition, HeaderEditRule, HttpMatch, HttpRuleAction,
    MitmVariant,
};
use crate::plan::{Cx, TargetKind};
use crate::spec;
use crate::units::{self, Ratio};

/// The key users write for an HTTP rule.
pub(super) fn name(action: &HttpRuleAction) -> &'static str {
    use HttpRuleAction as A;
    match action {
        A::Abort { .. } | A::Drop => "http-abort",
        A::Delay { .. } => "http-delay",
        A::Hang => "http-hang",
        A::Truncate { .. } | A::FlipBytes { .. } | A::JsonReplace { .. } => "http-corrupt",
        A::Headers { .. } => "http-header",
        A::AuthStrip { .. } => "auth-strip",
        A::AuthForge { .. } => "auth-forge",
        A::Replay { .. } => "replay",
        A::TlsMitm { .. } => "tls-mitm",
    }
}

/// `answer 503 without calling upstream (GET /api*, 10% of them)`.
pub(super) fn describe(m: &HttpMatch, probability: Ratio, action: &HttpRuleAction) -> String {
    use crate::fault::net::{CredentialRule as C, ForgeryRule as F, HttpRuleAction as A};
    let cred = |c: &C| match c {
        C::Authorization => "the Authorization header".to_string(),
        C::Cookie(n) => format!("cookie `{n}`"),
        C::Header(n) => format!("header `{n}`"),
    };
    let what = match action {
        A::Abort { status, .. } => format!("answer {status} without calling upstream"),
        A::Drop => "drop the connection".into(),
        A::Delay {
            request,
            response,
            jitter,
        } => {
            let (on, d) = if request.is_zero() {
                ("response", response)
            } else {
                ("request", request)
            };
            if jitter.is_zero() {
                format!("delay the {on} by {}", units::format_duration(*d))
            } else {
                format!(
                    "delay the {on} by {} ±{}",
                    units::format_duration(*d),
                    units::format_duration(*jitter)
                )
            }
        }
        A::Hang => "never answer".into(),
        A::Truncate { keep } => format!("truncate the response body to {keep} bytes"),
        A::FlipBytes { probability } => format!("flip bits in {probability} of the body's bytes"),
        A::JsonReplace { path, value } => format!("replace {path} by {value} in the JSON body"),
        A::Headers { request, response } => {
            format!(
                "edit headers ({} on requests, {} on responses)",
                request.len(),
                response.len()
            )
        }
        A::AuthStrip { credential } => format!("strip {}", cred(credential)),
        A::AuthForge {
            credential,
            forgery,
        } => format!(
            "forge {} ({})",
            cred(credential),
            match forgery {
                F::JwtWrongKey => "JWT re-signed with a wrong key".to_string(),
                F::JwtAlgNone => "JWT with alg none".into(),
                F::JwtExpired => "expired JWT".into(),
                F::JwtClaims(c) => format!("JWT with {} claim(s) changed", c.len()),
                F::Token(_) => "a literal token".into(),
            }
        ),
        A::Replay { times } => format!("replay the first matching request {times} time(s)"),
        A::TlsMitm { certificate } => format!(
            "terminate TLS with {} certificate",
            match certificate {
                MitmVariant::Untrusted => "an untrusted",
                MitmVariant::Expired => "an expired",
                MitmVariant::NotYetValid => "a not-yet-valid",
                MitmVariant::WrongHost => "a wrong-host",
            }
        ),
    };
    let mut on = Vec::new();
    if !m.methods.is_empty() {
        on.push(m.methods.join("/"));
    }
    if let Some(p) = &m.path_prefix {
        on.push(format!("{p}*"));
    }
    if let Some(r) = &m.path_regex {
        on.push(format!("~{r}"));
    }
    for h in &m.headers {
        on.push(match &h.equals {
            Some(v) => format!("{}: {v}", h.name),
            None => format!("with {}", h.name),
        });
    }
    let scope = if on.is_empty() {
        "every request".to_string()
    } else {
        on.join(" ")
    };
    let share = if probability == Ratio::ONE {
        String::new()
    } else {
        format!(", {probability} of them")
    };
    format!("{what} ({scope}{share})")
}

// === impl Cx ===

impl Cx<'_> {
    /// An HTTP rule from whichever HTTP key `f` has (`None` when it has none, or when the rule
    /// cannot be built at all).
    pub(super) fn http_fault(&mut self, p: &str, f: &spec::FaultSpec) -> Option<FaultKind> {
        use HttpRuleAction as A;
        Some(if let Some(a) = &f.http_abort {
            let action = self.http_abort(p, a);
            self.rule(p, a.matcher.as_ref(), a.probability.as_deref(), action)
        } else if let Some(d) = &f.http_delay {
            let action = self.http_delay(p, d);
            self.rule(p, d.matcher.as_ref(), d.probability.as_deref(), action)
        } else if let Some(h) = &f.http_hang {
            self.rule(p, h.matcher.as_ref(), h.probability.as_deref(), A::Hang)
        } else if let Some(c) = &f.http_corrupt {
            let action = self.http_corrupt(p, c)?;
            self.rule(p, c.matcher.as_ref(), c.probability.as_deref(), action)
        } else if let Some(h) = &f.http_header {
            let action = self.http_header(p, h);
            self.rule(p, h.matcher.as_ref(), h.probability.as_deref(), action)
        } else if let Some(a) = &f.auth_strip {
            let credential = self.credential(p, &a.cookie, &a.header);
            let action = A::AuthStrip { credential };
            self.rule(p, a.matcher.as_ref(), a.probability.as_deref(), action)
        } else if let Some(a) = &f.auth_forge {
            let credential = self.credential(p, &a.cookie, &a.header);
            let forgery = self.forgery(p, a);
            let action = A::AuthForge {
                credential,
                forgery,
            };
            self.rule(p, a.matcher.as_ref(), a.probability.as_deref(), action)
        } else if let Some(r) = &f.replay {
            let times = match r.times {
                None => 1,
                Some(n) if (1..=100).contains(&n) => n as u32,
                Some(n) => {
                    self.err(
                        &format!("{p}.times"),
                        format!("`{n}`: replay 1 to 100 times"),
                    );
                    1
                }
            };
            self.rule(p, r.matcher.as_ref(), None, A::Replay { times })
        } else if let Some(t) = &f.tls_mitm {
            let certificate = match t.certificate {
                spec::MitmCertSpec::Untrusted => MitmVariant::Untrusted,
                spec::MitmCertSpec::Expired => MitmVariant::Expired,
                spec::MitmCertSpec::NotYetValid => MitmVariant::NotYetValid,
                spec::MitmCertSpec::WrongHost => MitmVariant::WrongHost,
            };
            self.rule(p, None, None, A::TlsMitm { certificate })
        } else {
            return None;
        })
    }

    /// `tls-mitm` terminates TLS, so the target's clients must speak it: its upstream is https.
    pub(in crate::plan) fn mitm_upstream(
        &mut self,
        base: &str,
        kind: &FaultKind,
        name: &str,
        target: &TargetKind,
    ) {
        if let (
            FaultKind::Http {
                action: HttpRuleAction::TlsMitm { .. },
                ..
            },
            TargetKind::HttpProxy { upstream, .. },
        ) = (kind, target)
            && !upstream.starts_with("https://")
        {
            self.err(
                &format!("{base}.tls-mitm"),
                format!("`tls-mitm` needs an `https://` upstream, and `{name}` talks to `{upstream}`: its clients do not use TLS"),
            );
        }
    }

    fn rule(
        &mut self,
        p: &str,
        m: Option<&spec::HttpMatchSpec>,
        probability: Option<&str>,
        action: HttpRuleAction,
    ) -> FaultKind {
        let matcher = self.http_match(&format!("{p}.match"), m);
        let probability = self.ratio(&format!("{p}.probability"), probability, Ratio::ONE);
        FaultKind::Http {
            matcher,
            probability,
            action,
        }
    }

    fn http_abort(&mut self, p: &str, a: &spec::HttpAbortSpec) -> HttpRuleAction {
        use HttpRuleAction as A;
        match (a.drop, a.status) {
            (true, None) if a.body.is_none() && a.headers.is_empty() => A::Drop,
            (true, _) => {
                self.err(
                    &format!("{p}.drop"),
                    "`drop` closes the connection without an answer; leave out `status`, `body` and `headers`",
                );
                A::Drop
            }
            (false, None) => {
                self.err(
                    p,
                    "give the `status` to answer with (e.g. 503), or `drop: true`",
                );
                A::Drop
            }
            (false, Some(status)) => {
                if !(100..=599).contains(&status) {
                    self.err(
                        &format!("{p}.status"),
                        format!("`{status}` is not an HTTP status code (100–599)"),
                    );
                }
                for (name, value) in &a.headers {
                    self.header_pair(&format!("{p}.headers.{name}"), name, Some(value));
                }
                A::Abort {
                    status: status.clamp(100, 599) as u16,
                    body: a.body.clone(),
                    headers: a
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                }
            }
        }
    }

    fn http_delay(&mut self, p: &str, d: &spec::HttpDelaySpec) -> HttpRuleAction {
        let before = self.diags.len();
        let delay = self.duration(&format!("{p}.delay"), Some(&d.delay), Duration::ZERO);
        let delay_ok = self.diags.len() == before;
        let jitter = self.duration(&format!("{p}.jitter"), d.jitter.as_deref(), Duration::ZERO);
        if delay_ok && jitter > delay {
            self.err(
                &format!("{p}.jitter"),
                format!(
                    "jitter {} is larger than the delay {}",
                    units::format_duration(jitter),
                    units::format_duration(delay)
                ),
            );
        }
        let (request, response) = match d.on {
            spec::HttpDelayOn::Request => (delay, Duration::ZERO),
            spec::HttpDelayOn::Response => (Duration::ZERO, delay),
        };
        HttpRuleAction::Delay {
            request,
            response,
            jitter,
        }
    }

    fn http_corrupt(&mut self, p: &str, c: &spec::HttpCorruptSpec) -> Option<HttpRuleAction> {
        use HttpRuleAction as A;
        let given = [
            c.truncate.is_some(),
            c.flip.is_some(),
            c.json_path.is_some(),
        ];
        Some(match (c.truncate, &c.flip, &c.json_path) {
            _ if given.iter().filter(|g| **g).count() != 1 => {
                self.err(p, "give exactly one of `truncate`, `flip` or `json_path`");
                A::Truncate { keep: 0 }
            }
            (Some(n), _, _) => {
                if n < 0 {
                    self.err(
                        &format!("{p}.truncate"),
                        format!("`{n}`: give a number of bytes to keep, 0 or more"),
                    );
                }
                A::Truncate {
                    keep: n.max(0) as u64,
                }
            }
            (_, Some(flip), _) => A::FlipBytes {
                probability: self.ratio(&format!("{p}.flip"), Some(flip), Ratio::ZERO),
            },
            (_, _, Some(path)) => {
                if let Err(e) = serde_json_path::JsonPath::parse(path) {
                    self.err(
                        &format!("{p}.json_path"),
                        format!("`{path}` is not a JSONPath: {e}"),
                    );
                }
                let Some(text) = &c.value else {
                    self.err(p, "`json_path` needs the `value` to put there");
                    return None;
                };
                let value = serde_json::from_str(text)
                    .unwrap_or_else(|_| serde_json::Value::String(text.clone()));
                A::JsonReplace {
                    path: path.clone(),
                    value,
                }
            }
            _ => A::Truncate { keep: 0 },
        })
    }

    fn http_header(&mut self, p: &str, h: &spec::HttpHeaderSpec) -> HttpRuleAction {
        let mut edits = |side: &str, e: Option<&spec::HeaderEditsSpec>| {
            let mut out = Vec::new();
            let Some(e) = e else { return out };
            for (name, value) in &e.add {
                self.header_pair(&format!("{p}.{side}.add.{name}"), name, Some(value));
                out.push(HeaderEditRule::Add(name.clone(), value.clone()));
            }
            for (name, value) in &e.set {
                self.header_pair(&format!("{p}.{side}.set.{name}"), name, Some(value));
                out.push(HeaderEditRule::Set(name.clone(), value.clone()));
            }
            for (j, name) in e.remove.iter().enumerate() {
                self.header_pair(&format!("{p}.{side}.remove[{j}]"), name, None);
                out.push(HeaderEditRule::Remove(name.clone()));
            }
            out
        };
        let request = edits("request", h.request.as_ref());
        let response = edits("response", h.response.as_ref());
        if request.is_empty() && response.is_empty() {
            self.err(
                p,
                "no header changes; give `request` or `response` with `add`, `set` or `remove`",
            );
        }
        HttpRuleAction::Headers { request, response }
    }

    /// The credential an auth fault acts on: a cookie, a header, or (neither) Authorization.
    fn credential(
        &mut self,
        p: &str,
        cookie: &Option<String>,
        header: &Option<String>,
    ) -> CredentialRule {
        if let Some(h) = header {
            self.header_pair(&format!("{p}.header"), h, None);
        }
        if let Some(c) = cookie
            && (c.is_empty() || c.contains([';', '=', ' ', ',']))
        {
            self.err(
                &format!("{p}.cookie"),
                format!("`{c}` is not a cookie name"),
            );
        }
        if cookie.is_some() && header.is_some() {
            self.err(
                p,
                "give at most one of `cookie` or `header` (neither: the Authorization header)",
            );
        }
        match (cookie, header) {
            (Some(c), _) => CredentialRule::Cookie(c.clone()),
            (None, Some(h)) => CredentialRule::Header(h.clone()),
            (None, None) => CredentialRule::Authorization,
        }
    }

    fn forgery(&mut self, p: &str, a: &spec::AuthForgeSpec) -> ForgeryRule {
        match a.forgery {
            spec::ForgerySpec::JwtWrongKey => ForgeryRule::JwtWrongKey,
            spec::ForgerySpec::JwtAlgNone => ForgeryRule::JwtAlgNone,
            spec::ForgerySpec::JwtExpired => ForgeryRule::JwtExpired,
            spec::ForgerySpec::JwtClaims => {
                if a.claims.is_empty() {
                    self.err(
                        &format!("{p}.claims"),
                        "`jwt-claims` needs the `claims` to change, e.g. `{ role: admin }`",
                    );
                }
                ForgeryRule::JwtClaims(
                    a.claims
                        .iter()
                        .map(|(k, v)| {
                            let v = serde_json::from_str(v)
                                .unwrap_or_else(|_| serde_json::Value::String(v.clone()));
                            (k.clone(), v)
                        })
                        .collect(),
                )
            }
            spec::ForgerySpec::Token => match &a.token {
                Some(t) => ForgeryRule::Token(t.clone()),
                None => {
                    self.err(
                        &format!("{p}.token"),
                        "`forgery: token` needs the `token` to send",
                    );
                    ForgeryRule::Token(String::new())
                }
            },
        }
    }

    fn http_match(&mut self, base: &str, m: Option<&spec::HttpMatchSpec>) -> HttpMatch {
        let Some(m) = m else {
            return HttpMatch::default();
        };
        for (j, method) in m.methods.iter().enumerate() {
            if method.is_empty() || !method.chars().all(|c| c.is_ascii_alphabetic()) {
                self.err(
                    &format!("{base}.methods[{j}]"),
                    format!("`{method}` is not an HTTP method"),
                );
            }
        }
        if let Some(prefix) = &m.path_prefix
            && !prefix.starts_with('/')
        {
            self.err(
                &format!("{base}.path_prefix"),
                format!("`{prefix}` must start with `/`"),
            );
        }
        if let Some(re) = &m.path_regex
            && let Err(e) = regex::Regex::new(re)
        {
            let msg = e.to_string();
            let why = msg
                .lines()
                .last()
                .unwrap_or("invalid")
                .trim()
                .trim_start_matches("error: ");
            self.err(
                &format!("{base}.path_regex"),
                format!("`{re}` is not a regular expression: {why}"),
            );
        }
        let mut headers = Vec::new();
        for (name, value) in &m.headers {
            self.header_pair(&format!("{base}.headers.{name}"), name, Some(value));
            headers.push(HeaderCondition {
                name: name.clone(),
                equals: Some(value.clone()),
            });
        }
        for (j, name) in m.present.iter().enumerate() {
            self.header_pair(&format!("{base}.present[{j}]"), name, None);
            headers.push(HeaderCondition {
                name: name.clone(),
                equals: None,
            });
        }
        HttpMatch {
            methods: m.methods.iter().map(|x| x.to_ascii_uppercase()).collect(),
            path_prefix: m.path_prefix.clone(),
            path_regex: m.path_regex.clone(),
            headers,
        }
    }

    /// A header name (RFC 9110 token) and, if given, a value without control characters.
    pub(super) fn header_pair(&mut self, path: &str, name: &str, value: Option<&str>) {
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            self.err(path, format!("`{name}` is not a header name"));
        }
        if let Some(v) = value
            && v.chars().any(|c| c.is_control() && c != '\t')
        {
            self.err(
                path,
                "a header value cannot hold control characters (line breaks)",
            );
        }
    }
}
