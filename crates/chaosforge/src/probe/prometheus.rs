//! The Prometheus probe: one PromQL instant query per sample, its result the sample's value.
//!
//! Talks to the HTTP API (`GET /api/v1/query?query=…`) directly with the client the HTTP probe
//! uses: the API is a single JSON document, and decoding it here keeps every failure (a server
//! that is down, a query error, an empty or ambiguous result) a failed sample with a reason
//! a user can act on.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Url};
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::time::Instant;

use super::{Probe, ProbeError, Sample, timeout_text};

/// How a result of several series becomes one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// The sum of the series' values.
    Sum,
    /// The largest value.
    Max,
    /// The smallest value.
    Min,
    /// The mean of the values.
    Avg,
}

/// What a Prometheus probe asks and of whom, validated by the planner.
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusProbeConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:9090` (a path prefix is kept).
    pub url: String,
    /// The PromQL expression.
    pub query: String,
    /// Extra request headers (a tenant id, say), sent in name order.
    pub headers: BTreeMap<String, String>,
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// How several series become one number; without it several series fail the sample.
    pub aggregate: Option<Aggregate>,
    /// The deadline of one query, request to last byte.
    pub timeout: Duration,
}

/// A probe that evaluates a PromQL instant query per sample.
///
/// `ok` means the server answered `success` with a scalar, or a vector of exactly one series
/// (or several, with an [`Aggregate`]), whose value is a finite number. The value is the
/// sample's [`Sample::value`]; the latency is the query's. The query's own `timeout` parameter
/// is set to the probe's timeout, so the server gives up when the probe does.
#[derive(Debug)]
pub struct PrometheusProbe {
    name: String,
    client: Client,
    endpoint: Url,
    headers: HeaderMap,
    aggregate: Option<Aggregate>,
    timeout: Duration,
}

// === impl Aggregate ===

impl Aggregate {
    /// The word used in the experiment file.
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregate::Sum => "sum",
            Aggregate::Max => "max",
            Aggregate::Min => "min",
            Aggregate::Avg => "avg",
        }
    }

    fn apply(self, values: &[f64]) -> f64 {
        match self {
            Aggregate::Sum => values.iter().sum(),
            Aggregate::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Aggregate::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Aggregate::Avg => values.iter().sum::<f64>() / values.len() as f64,
        }
    }
}

// === impl PrometheusProbe ===

impl PrometheusProbe {
    /// Validates `cfg` and builds the probe. Nothing is sent here.
    pub fn new(name: impl Into<String>, cfg: PrometheusProbeConfig) -> Result<Self, ProbeError> {
        let base = Url::parse(&cfg.url).map_err(|e| ProbeError::InvalidUrl {
            url: cfg.url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ProbeError::UnsupportedScheme {
                url: cfg.url.clone(),
                scheme: base.scheme().to_string(),
            });
        }
        if cfg.timeout.is_zero() {
            return Err(ProbeError::ZeroTimeout);
        }
        let mut endpoint = base.clone();
        // Keep a path prefix (`https://host/prometheus`), as a reverse proxy in front of
        // Prometheus needs.
        let path = format!("{}/api/v1/query", base.path().trim_end_matches('/'));
        endpoint.set_path(&path);
        endpoint
            .query_pairs_mut()
            .clear()
            .append_pair("query", &cfg.query)
            .append_pair("timeout", &prometheus_duration(cfg.timeout));

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
        if let Some(token) = &cfg.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ProbeError::InvalidHeader {
                    name: "bearer_token".into(),
                    reason: "the token holds characters HTTP does not allow".into(),
                }
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let client = super::client_for(&endpoint).map_err(ProbeError::Client)?;
        Ok(PrometheusProbe {
            name: name.into(),
            client,
            endpoint,
            headers,
            aggregate: cfg.aggregate,
            timeout: cfg.timeout,
        })
    }

    /// The full query URL this probe requests.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    async fn query(&self) -> Result<f64, String> {
        let response = self
            .client
            .get(self.endpoint.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.describe(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.describe(&e))?;
        interpret(status.as_u16(), &body, self.aggregate)
    }

    fn describe(&self, err: &reqwest::Error) -> String {
        if err.is_timeout() {
            return timeout_text(self.timeout);
        }
        let mut source = std::error::Error::source(err);
        let mut innermost = None;
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<std::io::Error>()
                && let Some(text) = super::tcp::io_error_text(io)
            {
                return format!("prometheus: {text}");
            }
            innermost = Some(cause.to_string());
            source = cause.source();
        }
        format!(
            "prometheus: {}",
            innermost.unwrap_or_else(|| err.to_string())
        )
    }
}

#[async_trait]
impl Probe for PrometheusProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn sample(&self) -> Sample {
        let started = Instant::now();
        let result = self.query().await;
        let latency = started.elapsed();
        match result {
            Ok(value) => Sample::success(latency).with_value(value),
            Err(error) => Sample::failure(latency, error),
        }
    }
}

/// The API's envelope: `{"status":"success","data":{…}}` or `{"status":"error","error":…}`.
#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Series>),
    Scalar(Point),
    Matrix(IgnoredAny),
    String(IgnoredAny),
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: Point,
}

/// `[<unix time>, "<value>"]`: the value is a string so that `NaN` and `±Inf` survive JSON.
#[derive(Deserialize)]
struct Point(IgnoredAny, String);

/// Turns one HTTP answer of `/api/v1/query` into the sample's number, or a reason.
fn interpret(status: u16, body: &[u8], aggregate: Option<Aggregate>) -> Result<f64, String> {
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(_) if !(200..300).contains(&status) => {
            return Err(format!("prometheus: HTTP status {status}"));
        }
        Err(e) => {
            return Err(format!(
                "prometheus: the answer is not the query API's JSON: {e}"
            ));
        }
    };
    if envelope.status != "success" {
        let kind = envelope.error_type.as_deref().unwrap_or("error");
        let text = envelope.error.as_deref().unwrap_or("no reason given");
        return Err(format!("prometheus {kind}: {text}"));
    }
    let value = |p: &Point| -> Result<f64, String> {
        // Go's ParseFloat spellings: `NaN`, `+Inf`, `-Inf`; Rust parses all three.
        f64::from_str(&p.1).map_err(|_| format!("prometheus: `{}` is not a number", p.1))
    };
    let number = match envelope.data {
        Some(Data::Scalar(p)) => value(&p)?,
        Some(Data::Vector(series)) => match (series.as_slice(), aggregate) {
            ([], _) => return Err("prometheus: the query returned no series".into()),
            ([one], _) => value(&one.value)?,
            (many, Some(agg)) => {
                let values = many
                    .iter()
                    .map(|s| value(&s.value))
                    .collect::<Result<Vec<_>, _>>()?;
                agg.apply(&values)
            }
            (many, None) => {
                return Err(format!(
                    "prometheus: the query returned {} series ({}, …); aggregate them in PromQL \
                     or set `aggregate: sum|max|min|avg`",
                    many.len(),
                    labels(&many[0].metric),
                ));
            }
        },
        Some(Data::Matrix(_)) => {
            return Err(
                "prometheus: the query returned a range vector; an instant query needs an \
                 instant vector or a scalar (drop the `[…]` range or wrap it in a function)"
                    .into(),
            );
        }
        Some(Data::String(_)) => return Err("prometheus: the query returned a string".into()),
        None => return Err("prometheus: the answer holds no data".into()),
    };
    if number.is_nan() {
        return Err("prometheus: the query returned NaN".into());
    }
    Ok(number)
}

fn labels(metric: &BTreeMap<String, String>) -> String {
    let inner = metric
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(",");
    format!("{{{inner}}}")
}

/// A duration as Prometheus parses it: `1500ms`, `2s`.
fn prometheus_duration(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Result<f64, String> {
        interpret(200, body.as_bytes(), None)
    }

    #[test]
    fn one_series_and_scalars_yield_their_value() {
        let one = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"job":"api"},"value":[1700000000.1,"0.25"]}]}}"#;
        assert_eq!(ok(one), Ok(0.25));
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"42"]}}"#;
        assert_eq!(ok(scalar), Ok(42.0));
        let inf = r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"+Inf"]}}"#;
        assert_eq!(ok(inf), Ok(f64::INFINITY));
    }

    #[test]
    fn several_series_need_an_aggregate() {
        let two = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"instance":"a"},"value":[1,"1"]},
            {"metric":{"instance":"b"},"value":[1,"3"]}]}}"#;
        let err = ok(two).unwrap_err();
        assert!(err.contains("2 series"), "{err}");
        assert!(err.contains(r#"{instance="a"}"#), "{err}");
        assert!(err.contains("aggregate: sum|max|min|avg"), "{err}");
        let with = |a| interpret(200, two.as_bytes(), Some(a));
        assert_eq!(with(Aggregate::Sum), Ok(4.0));
        assert_eq!(with(Aggregate::Max), Ok(3.0));
        assert_eq!(with(Aggregate::Min), Ok(1.0));
        assert_eq!(with(Aggregate::Avg), Ok(2.0));
    }

    #[test]
    fn empty_nan_errors_and_garbage_fail() {
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(
            ok(empty),
            Err("prometheus: the query returned no series".into())
        );
        let nan = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#;
        assert_eq!(ok(nan), Err("prometheus: the query returned NaN".into()));
        let bad = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#;
        assert_eq!(
            interpret(400, bad.as_bytes(), None),
            Err("prometheus bad_data: parse error at char 4".into())
        );
        assert_eq!(
            interpret(502, b"<html>bad gateway</html>", None),
            Err("prometheus: HTTP status 502".into())
        );
        assert!(
            ok("not json")
                .unwrap_err()
                .contains("not the query API's JSON")
        );
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(ok(matrix).unwrap_err().contains("range vector"));
    }

    #[test]
    fn the_endpoint_keeps_a_path_prefix_and_encodes_the_query() {
        let probe = PrometheusProbe::new(
            "p",
            PrometheusProbeConfig {
                url: "http://127.0.0.1:9090/prom/".into(),
                query: r#"sum(rate(http_requests_total{code=~"5.."}[1m]))"#.into(),
                headers: BTreeMap::new(),
                bearer_token: Some("s3cret".into()),
                aggregate: None,
                timeout: Duration::from_millis(1500),
            },
        )
        .unwrap();
        let url = probe.endpoint();
        assert_eq!(url.path(), "/prom/api/v1/query");
        let pairs: BTreeMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs["query"],
            r#"sum(rate(http_requests_total{code=~"5.."}[1m]))"#
        );
        assert_eq!(pairs["timeout"], "1500ms");
        // The token is marked sensitive, so Debug output of the probe does not leak it.
        assert!(!format!("{probe:?}").contains("s3cret"));
    }

    #[test]
    fn bad_configuration_is_refused() {
        let cfg = |url: &str| PrometheusProbeConfig {
            url: url.into(),
            query: "up".into(),
            headers: BTreeMap::new(),
            bearer_token: None,
            aggregate: None,
            timeout: Duration::from_secs(1),
        };
        assert!(matches!(
            PrometheusProbe::new("p", cfg("ftp://x")),
            Err(ProbeError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            PrometheusProbe::new("p", cfg("not a url")),
            Err(ProbeError::InvalidUrl { .. })
        ));
        let mut zero = cfg("http://127.0.0.1:9090");
        zero.timeout = Duration::ZERO;
        assert!(matches!(
            PrometheusProbe::new("p", zero),
            Err(ProbeError::ZeroTimeout)
        ));
    }
}
