//! The HTTP probe: one request, timed until the whole response body has arrived.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Url};
use tokio::time::Instant;

use super::{Probe, ProbeError, Sample, timeout_text};
use crate::units::UnitError;

/// What an HTTP probe sends and which answers count as success.
///
/// Built by the plan from the experiment file's `http:` monitor entry, e.g.
/// `http: { url: "http://127.0.0.1:18080/checkout", timeout: 1s, success: "2xx,304" }`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpProbeConfig {
    /// The request method, e.g. `GET` (the default) or `POST`.
    pub method: String,
    /// The absolute `http://` or `https://` URL to request.
    pub url: String,
    /// Extra request headers, sent in name order.
    pub headers: BTreeMap<String, String>,
    /// An optional request body, sent as is.
    pub body: Option<String>,
    /// The deadline for the whole exchange: connect, request, response and body.
    pub timeout: Duration,
    /// The status codes counted as success; by default `2xx,3xx`.
    pub success: StatusSet,
}

/// A probe that sends one HTTP request per sample.
///
/// * Proxies from the environment (`HTTP_PROXY` …) are ignored: a probe measures the target,
///   never a proxy a developer happened to have configured.
/// * Redirects are not followed: a `3xx` is the answer, judged by the [`StatusSet`].
/// * Connections are kept alive and reused between samples, like a real client's.
/// * `ok` is true when the status is in the success set and the body arrived in time.
#[derive(Debug)]
pub struct HttpProbe {
    name: String,
    client: Client,
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<String>,
    timeout: Duration,
    success: StatusSet,
}

/// A set of HTTP status codes, written `200`, `2xx`, `200-299` or a comma list (`2xx,304`).
///
/// The default is `2xx,3xx`: anything but a client or server error. Display writes the set
/// back as it was given (normalised spacing), so `StatusSet::parse(&s.to_string())` round-trips.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusSet {
    // Inclusive ranges in the order written; a handful at most, so a linear scan is fastest.
    ranges: Vec<(u16, u16)>,
}

// === impl HttpProbeConfig ===

impl HttpProbeConfig {
    /// The default timeout of an HTTP probe when the experiment file gives none.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

    /// A `GET url` with no headers or body, a 1 s timeout and the default success set.
    pub fn get(url: impl Into<String>) -> HttpProbeConfig {
        HttpProbeConfig {
            method: "GET".into(),
            url: url.into(),
            headers: BTreeMap::new(),
            body: None,
            timeout: Self::DEFAULT_TIMEOUT,
            success: StatusSet::default(),
        }
    }
}

// === impl HttpProbe ===

impl HttpProbe {
    /// Validates `cfg` and builds the probe, with its own connection pool.
    ///
    /// Fails on a bad URL or scheme, method, header, a zero timeout, or if the HTTP client
    /// cannot be built. Nothing is sent here.
    pub fn new(name: impl Into<String>, cfg: HttpProbeConfig) -> Result<Self, ProbeError> {
        let url = Url::parse(&cfg.url).map_err(|e| ProbeError::InvalidUrl {
            url: cfg.url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ProbeError::UnsupportedScheme {
                url: cfg.url.clone(),
                scheme: url.scheme().to_string(),
            });
        }
        let method = Method::from_str(&cfg.method).map_err(|_| ProbeError::InvalidMethod {
            method: cfg.method.clone(),
        })?;
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let header_name =
                HeaderName::from_str(name).map_err(|_| ProbeError::InvalidHeader {
                    name: name.clone(),
                    reason: "not a valid header name".into(),
                })?;
            let header_value =
                HeaderValue::from_str(value).map_err(|_| ProbeError::InvalidHeader {
                    name: name.clone(),
                    reason: "the value holds characters HTTP does not allow".into(),
                })?;
            headers.append(header_name, header_value);
        }
        if cfg.timeout.is_zero() {
            return Err(ProbeError::ZeroTimeout);
        }
        let client = super::client_for(&url).map_err(ProbeError::Client)?;
        Ok(HttpProbe {
            name: name.into(),
            client,
            method,
            url,
            headers,
            body: cfg.body,
            timeout: cfg.timeout,
            success: cfg.success,
        })
    }

    /// The URL this probe requests.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Sends the request and reads the whole body, or fails with a short error text.
    async fn exchange(&self) -> Result<u16, String> {
        let mut request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            // reqwest's per-request timeout runs until the body has been read, so a server
            // that sends headers and then stalls is a timeout too.
            .timeout(self.timeout);
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        let mut response = request.send().await.map_err(|e| self.describe(&e))?;
        let status = response.status().as_u16();
        // Latency is until the last byte: a fast header with a slow body is a slow answer.
        // Chunks are dropped as they come, so a large body costs no memory.
        while response
            .chunk()
            .await
            .map_err(|e| self.describe(&e))?
            .is_some()
        {}
        Ok(status)
    }

    /// A short, stable error text for the journal: `timeout after 1s`, `connection refused`.
    fn describe(&self, err: &reqwest::Error) -> String {
        if err.is_timeout() {
            return timeout_text(self.timeout);
        }
        // The useful part is the innermost I/O error; reqwest's own Display repeats the URL,
        // which every sample of this probe shares.
        let mut source = err.source();
        let mut innermost: Option<String> = None;
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<std::io::Error>()
                && let Some(text) = super::tcp::io_error_text(io)
            {
                return text.to_string();
            }
            innermost = Some(cause.to_string());
            source = cause.source();
        }
        let text = innermost.unwrap_or_else(|| err.to_string());
        if err.is_connect() {
            format!("connect failed: {text}")
        } else if err.is_body() || err.is_decode() {
            format!("body failed: {text}")
        } else {
            text
        }
    }
}

#[async_trait]
impl Probe for HttpProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn sample(&self) -> Sample {
        let started = Instant::now();
        let result = self.exchange().await;
        let latency = started.elapsed();
        match result {
            Ok(status) if self.success.contains(status) => {
                Sample::success(latency).with_status(status)
            }
            Ok(status) => {
                Sample::failure(latency, format!("status {status} not in {}", self.success))
                    .with_status(status)
            }
            Err(error) => Sample::failure(latency, error),
        }
    }
}

// === impl StatusSet ===

impl StatusSet {
    /// Parses `200`, `2xx`, `200-299` or a comma-separated list of these (`2xx,304`).
    ///
    /// Codes lie in `100..=599`. Errors point (byte offset and length) at the bad item.
    pub fn parse(text: &str) -> Result<StatusSet, UnitError> {
        let mut ranges = Vec::new();
        let mut start = 0;
        for item in text.split(',') {
            let lead = item.len() - item.trim_start().len();
            let trimmed = item.trim();
            let offset = start + lead;
            ranges.push(parse_status_item(trimmed, offset, text)?);
            start += item.len() + 1;
        }
        Ok(StatusSet { ranges })
    }

    /// Whether `status` is in the set.
    pub fn contains(&self, status: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

fn parse_status_item(item: &str, offset: usize, whole: &str) -> Result<(u16, u16), UnitError> {
    let err = |message: String| UnitError {
        message,
        offset,
        len: item.len(),
    };
    if item.is_empty() {
        return Err(UnitError {
            message: format!(
                "empty status in `{whole}`; write e.g. `200`, `2xx`, `200-299` or `2xx,304`"
            ),
            offset,
            len: 0,
        });
    }
    let code = |s: &str| -> Result<u16, UnitError> {
        match s.trim().parse::<u16>() {
            Ok(c) if (100..=599).contains(&c) => Ok(c),
            Ok(c) => Err(err(format!(
                "status `{c}` is out of range; HTTP statuses lie in 100..=599"
            ))),
            Err(_) => Err(err(format!(
                "`{item}` is not a status; write e.g. `200`, `2xx`, `200-299` or `2xx,304`"
            ))),
        }
    };
    let lower = item.to_ascii_lowercase();
    if let Some(class) = lower.strip_suffix("xx") {
        return match class.parse::<u16>() {
            Ok(c) if (1..=5).contains(&c) && class.len() == 1 => Ok((c * 100, c * 100 + 99)),
            _ => Err(err(format!(
                "`{item}` is not a status class; use 1xx, 2xx, 3xx, 4xx or 5xx"
            ))),
        };
    }
    if let Some((lo, hi)) = item.split_once('-') {
        let (lo, hi) = (code(lo)?, code(hi)?);
        if lo > hi {
            return Err(err(format!(
                "status range `{item}` is empty; write the lower bound first"
            )));
        }
        return Ok((lo, hi));
    }
    code(item).map(|c| (c, c))
}

impl Default for StatusSet {
    /// `2xx,3xx`: redirects are answers too, since the probe does not follow them.
    fn default() -> Self {
        StatusSet {
            ranges: vec![(200, 299), (300, 399)],
        }
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else if lo % 100 == 0 && hi == lo + 99 {
                write!(f, "{}xx", lo / 100)?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for StatusSet {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StatusSet::parse(s)
    }
}

impl serde::Serialize for StatusSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for StatusSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        StatusSet::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
