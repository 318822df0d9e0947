//! Probes: one-shot measurements of a target that return a [`Sample`] and never judge it.
//!
//! A probe is built once from validated configuration ([`HttpProbe::new`], [`TcpProbe::new`]),
//! then sampled many times by a monitor (see [`crate::monitor`]). Judging samples against the
//! hypothesis happens elsewhere ([`crate::hypothesis`]), so a probe stays a plain measurement.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

pub mod command;
pub mod http;
pub mod process;
pub mod prometheus;
pub mod tcp;

pub use http::{HttpProbe, HttpProbeConfig, StatusSet};
pub use tcp::TcpProbe;

pub use crate::vocab::{Resource, Sample};

/// A one-shot measurement of a target.
///
/// Contract for implementors:
/// * [`sample`](Probe::sample) measures and returns; it never panics and never judges beyond
///   its own success criteria (a status set, "connected"). Every failure is a `Sample` with
///   `ok: false` and a short `error`, not an `Err`.
/// * It is bounded by the probe's own timeout, so a monitor can wait for in-flight samples.
/// * It may be called concurrently from many tasks (monitors start samples on a fixed schedule
///   without waiting for the previous one), so it takes `&self`.
/// * It leaves [`Sample::at`] at zero; the monitor stamps the start time.
#[async_trait]
pub trait Probe: fmt::Debug + Send + Sync {
    /// The monitor's name this probe measures for, as written in the experiment file.
    fn name(&self) -> &str;

    /// Takes one measurement. See the trait docs for the contract.
    async fn sample(&self) -> Sample;
}

/// Why a probe could not be built from its configuration.
///
/// Sampling never fails with this error: a failed measurement is a `Sample` with `ok: false`.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The URL did not parse.
    #[error("invalid URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as written.
        url: String,
        /// What the URL parser said.
        reason: String,
    },
    /// The URL uses a scheme the HTTP probe does not speak.
    #[error("unsupported URL scheme `{scheme}` in `{url}`; use http or https")]
    UnsupportedScheme {
        /// The URL as written.
        url: String,
        /// The scheme found.
        scheme: String,
    },
    /// The HTTP method is not a valid token.
    #[error("invalid HTTP method `{method}`")]
    InvalidMethod {
        /// The method as written.
        method: String,
    },
    /// A header name or value is not valid HTTP.
    #[error("invalid header `{name}`: {reason}")]
    InvalidHeader {
        /// The header name as written.
        name: String,
        /// Whether the name or the value is at fault.
        reason: String,
    },
    /// The timeout is zero, which would fail every sample.
    #[error("probe timeout must be greater than zero")]
    ZeroTimeout,
    /// The HTTP client could not be built (for instance, TLS initialisation failed).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

// === impl Sample ===

impl Sample {
    /// A successful sample that took `latency`; `at` is zero until the monitor stamps it.
    pub fn success(latency: Duration) -> Sample {
        Sample {
            at: Duration::ZERO,
            latency,
            ok: true,
            status: None,
            error: None,
            value: None,
            resource: None,
        }
    }

    /// A failed sample that took `latency`, with a short reason.
    pub fn failure(latency: Duration, error: impl Into<String>) -> Sample {
        Sample {
            at: Duration::ZERO,
            latency,
            ok: false,
            status: None,
            error: Some(error.into()),
            value: None,
            resource: None,
        }
    }

    /// The same sample with a protocol status attached.
    pub fn with_status(mut self, status: u16) -> Sample {
        self.status = Some(status);
        self
    }

    /// The same sample with the number it yields.
    pub fn with_value(mut self, value: f64) -> Sample {
        self.value = Some(value);
        self
    }

    /// The same sample with resource readings.
    pub fn with_resource(mut self, resource: crate::vocab::Resource) -> Sample {
        self.resource = Some(resource);
        self
    }

    /// The same sample stamped with its start time relative to the run's epoch.
    pub fn started_at(mut self, at: Duration) -> Sample {
        self.at = at;
        self
    }
}

/// Formats a timeout for a sample's error text: `timeout after 1s`.
/// A client for probing `url`: no proxy from the environment, no redirects (a redirect is the
/// answer), our user agent. A plain-`http` URL never does TLS, so it gets no trust store:
/// loading the platform's one reads every file of `/etc/ssl/certs`, tens of milliseconds of a
/// run's start-up for nothing.
pub(crate) fn client_for(url: &reqwest::Url) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("chaosforge-probe/", env!("CARGO_PKG_VERSION")));
    let builder = if url.scheme() == "http" {
        builder.tls_certs_only(std::iter::empty())
    } else {
        builder
    };
    builder.build()
}

pub(crate) fn timeout_text(timeout: Duration) -> String {
    format!("timeout after {}", crate::units::format_duration(timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_json_is_compact_and_round_trips() {
        let s = Sample::failure(Duration::from_micros(1_000_250), "timeout after 1s")
            .started_at(Duration::from_micros(2_500_001));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"at_ms":2500.001,"latency_ms":1000.25,"ok":false,"error":"timeout after 1s"}"#
        );
        let back: Sample = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);

        let ok = Sample::success(Duration::from_micros(3)).with_status(204);
        let back: Sample = serde_json::from_str(&serde_json::to_string(&ok).unwrap()).unwrap();
        assert_eq!(back, ok);
    }

    #[test]
    fn sub_microsecond_precision_is_dropped_on_purpose() {
        let s = Sample::success(Duration::from_nanos(1_234_567));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["latency_ms"], 1.234);
    }

    #[test]
    fn negative_times_are_rejected() {
        let err = serde_json::from_str::<Sample>(r#"{"at_ms":-1,"latency_ms":1,"ok":true}"#);
        assert!(err.is_err());
    }
}
