//! `notify:` — each webhook checked (URL scheme, header names and values, durations) and its
//! `{ env: VAR }` values read, so that a run never starts with a webhook it cannot call. Values
//! read from the environment are [`Secret`]s: they print as `<secret>`, so no `Debug` of a plan,
//! message or diagnostic can show them.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use super::Cx;
use crate::spec::{NotifyEventSpec, NotifyFormatSpec, NotifySpec, SecretValueSpec};

pub use crate::spec::{NotifyEventSpec as NotifyEvent, NotifyFormatSpec as NotifyFormat};

/// A validated webhook.
#[derive(Debug, Clone)]
pub struct NotifyPlan {
    /// Its name for messages: the file's `name`, or `notify[N]`.
    pub name: String,
    /// Where to POST.
    pub url: Secret,
    /// The URL as messages may show it: scheme, host and port, and the path only when the
    /// URL was written in the file (a URL from the environment may carry a token in its path).
    pub shown: String,
    /// The events sent, in the order a run can send them.
    pub events: BTreeSet<NotifyEvent>,
    /// How the body is written.
    pub format: NotifyFormat,
    /// Extra headers: name and value.
    pub headers: Vec<(String, Secret)>,
    /// One attempt's limit, and how long the run's end waits for pending deliveries.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
}

/// A value that may be a secret (it came from the environment): `Debug` and `Display` show
/// `<secret>`; only [`Secret::expose`] gives the value, for the request itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    from_env: bool,
}

/// The default per-attempt timeout and end-of-run wait.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The default number of retries.
pub const DEFAULT_RETRIES: u32 = 3;

/// At most this many retries: with the backoff capped at 2 s, more would only keep a dead
/// receiver's queue full.
const MAX_RETRIES: u32 = 10;

// === impl Secret ===

impl Secret {
    /// The value, for the HTTP request only.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Whether it was read from the environment.
    pub fn from_env(&self) -> bool {
        self.from_env
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from_env {
            f.write_str("<secret>")
        } else {
            write!(f, "{:?}", self.value)
        }
    }
}

// === impl Cx ===

impl Cx<'_> {
    /// Every webhook of `notify:`.
    pub(super) fn notify(&mut self, specs: &[NotifySpec]) -> Vec<NotifyPlan> {
        specs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.webhook(&format!("notify[{i}]"), i, s))
            .collect()
    }

    fn webhook(&mut self, base: &str, i: usize, spec: &NotifySpec) -> Option<NotifyPlan> {
        let before = self.diags.len();
        let url = self.secret(&format!("{base}.url"), &spec.url);
        let mut shown = String::new();
        if let Some(url) = &url {
            match checked_url(url.expose()) {
                Ok(u) => {
                    shown = match u.port() {
                        Some(p) => format!("{}://{}:{p}", u.scheme(), u.host_str().unwrap_or("")),
                        None => format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")),
                    };
                    if !url.from_env() {
                        shown.push_str(u.path());
                    }
                }
                // A URL from the environment is not echoed: it may be the secret itself.
                Err(msg) if url.from_env() => self.err(
                    &format!("{base}.url.env"),
                    format!("the variable's value is not a webhook URL: {msg}"),
                ),
                Err(msg) => self.err(&format!("{base}.url"), msg),
            }
        }
        let mut headers = Vec::new();
        for (name, value) in &spec.headers {
            let path = if name.contains(['.', '[', ']', '"']) {
                format!("{base}.headers[{name:?}]")
            } else {
                format!("{base}.headers.{name}")
            };
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.err(&path, format!("`{name}` is not an HTTP header name"));
                continue;
            }
            let Some(v) = self.secret(&path, value) else {
                continue;
            };
            if reqwest::header::HeaderValue::from_str(v.expose()).is_err() {
                let at = if v.from_env() {
                    format!("{path}.env")
                } else {
                    path.clone()
                };
                self.err(
                    &at,
                    "not a valid HTTP header value (control characters or a line break)",
                );
                continue;
            }
            headers.push((name.clone(), v));
        }
        let timeout = self.positive_duration(
            &format!("{base}.timeout"),
            spec.timeout.as_deref(),
            DEFAULT_TIMEOUT,
        );
        let retries = spec.retries.unwrap_or(DEFAULT_RETRIES);
        if retries > MAX_RETRIES {
            self.err(
                &format!("{base}.retries"),
                format!("at most {MAX_RETRIES} retries (the backoff reaches 2 s after 5)"),
            );
        }
        let events: BTreeSet<NotifyEvent> = match &spec.events {
            None => NotifyEventSpec::ALL.into_iter().collect(),
            Some(list) => {
                if list.is_empty() {
                    self.err(
                        &format!("{base}.events"),
                        "no events: remove the webhook, or list the events it wants",
                    );
                }
                list.iter().copied().collect()
            }
        };
        if self.diags.len() > before {
            return None;
        }
        Some(NotifyPlan {
            name: spec.name.clone().unwrap_or_else(|| format!("notify[{i}]")),
            url: url?,
            shown,
            events,
            format: spec.format.unwrap_or(NotifyFormatSpec::Json),
            headers,
            timeout,
            retries,
        })
    }

    /// The value of `spec` at `path`: as written, or read from the environment (an unset or
    /// non-UTF-8 variable is an error at `path.env`).
    fn secret(&mut self, path: &str, spec: &SecretValueSpec) -> Option<Secret> {
        match spec {
            SecretValueSpec::Text(t) => Some(Secret {
                value: t.clone(),
                from_env: false,
            }),
            SecretValueSpec::Env(r) => {
                let at = format!("{path}.env");
                if r.env.is_empty() || r.env.contains(['=', '\0']) {
                    self.err(
                        &at,
                        format!("`{}` is not an environment variable name", r.env),
                    );
                    return None;
                }
                match std::env::var(&r.env) {
                    Ok(v) => Some(Secret {
                        value: v,
                        from_env: true,
                    }),
                    Err(std::env::VarError::NotPresent) => {
                        self.err(&at, format!("environment variable `{}` is not set", r.env));
                        None
                    }
                    Err(std::env::VarError::NotUnicode(_)) => {
                        self.err(
                            &at,
                            format!("environment variable `{}` is not valid UTF-8", r.env),
                        );
                        None
                    }
                }
            }
        }
    }
}

/// `text` as a webhook URL: `http` or `https`, with a host.
fn checked_url(text: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(text.trim()).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!(
            "`{}:` is not supported; webhooks are `http://` or `https://`",
            u.scheme()
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(u)
}
