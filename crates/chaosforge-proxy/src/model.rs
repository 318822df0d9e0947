//! The proxy crate's own toxic model: [`Toxic`] and the closed set of [`ToxicKind`]s.
//!
//! Toxiproxy's types (`latency`, `bandwidth`, `slow_close`, `timeout`, `reset_peer`, `slicer`,
//! `limit_data`, `noop`) and chaosforge's additions (`corrupt`, `loss`, `blackhole`) are
//! created through the HTTP API from their JSON attributes ([`ToxicKind::from_attributes`]).
//! The engine's [`ProxyFault`]s map onto kinds of their own where their semantics differ
//! (`Hold` for the engine's lossless timeout, `Reset` for its deadline reset, `Down`), so the
//! library crate needs no change when the API grows.

use std::fmt;
use std::time::Duration;

use chaosforge::fault::net::{CorruptUnit, ProxyError, ProxyFault, ProxyToxic, Stream};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

/// A named toxic on one stream of one proxy, as the proxy runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Toxic {
    /// Unique per proxy across both streams.
    pub name: String,
    /// The direction it acts on.
    pub stream: Stream,
    /// The stream as the client spelled it (Toxiproxy echoes `"UPSTREAM"` back verbatim).
    pub stream_text: String,
    /// Probability, in `0..=1`, that the toxic is active on a given link (one direction of
    /// one connection). Kept as `f32` like Toxiproxy, so `0.2` is echoed as `0.2`.
    pub toxicity: f32,
    /// What it does.
    pub kind: ToxicKind,
}

/// What a toxic does. One variant per behaviour; the `match` in `toxic/mod.rs` is the registry.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ToxicKind {
    /// Hold each chunk `latency` ± uniform `jitter` from when it was read.
    Latency {
        /// Added delay.
        latency: Duration,
        /// Uniform spread around `latency`, drawn per chunk.
        jitter: Duration,
    },
    /// At most `rate` bytes per second; 0 lets nothing through (held, not dropped).
    Bandwidth {
        /// Bytes per second (the API speaks KB/s, 1 KB = 1000 bytes).
        rate: u64,
    },
    /// Data passes; the end of the stream is held `delay` before it is passed on.
    SlowClose {
        /// How long the close waits.
        delay: Duration,
    },
    /// Toxiproxy's `timeout`: every chunk is dropped; after `timeout` without a chunk the
    /// connection is closed (zero: never). Removing it closes the connections it applied to.
    Timeout {
        /// Idle time before the close; zero never closes.
        timeout: Duration,
    },
    /// The first chunk (or end of stream) is dropped; `timeout` later the connection is reset.
    ResetPeer {
        /// Wait between the trigger and the reset.
        timeout: Duration,
    },
    /// Cut each chunk into pieces of about `average_size` bytes, `delay` apart.
    Slicer {
        /// Target piece size in bytes, at least 1.
        average_size: u64,
        /// Random variation of the cut point, less than `average_size`.
        size_variation: u64,
        /// Time between two pieces (the API speaks microseconds).
        delay: Duration,
    },
    /// Forward at most `bytes` on the link, then close the connection.
    LimitData {
        /// Byte budget of one link.
        bytes: u64,
    },
    /// Pass everything through.
    Noop,
    /// Flip one random bit of a byte, with `probability` per byte (or per chunk).
    Corrupt {
        /// Chance of corrupting each unit.
        probability: f64,
        /// What the probability applies to.
        per: CorruptUnit,
    },
    /// Drop each chunk with `probability`; the connection stays open.
    Loss {
        /// Chance of dropping each chunk.
        probability: f64,
    },
    /// Drop every chunk of the stream; the end of the stream still passes.
    Blackhole,
    /// The engine's `timeout`: hold data and end of stream; close after `after` (or never).
    /// Removing it releases what was held, in order.
    Hold {
        /// When to close, counted from when the toxic started to apply.
        after: Option<Duration>,
    },
    /// The engine's `reset`: reset the connection `after` the toxic started to apply.
    Reset {
        /// Time before the reset.
        after: Duration,
    },
    /// The proxy stops listening and drops its connections (acts on the proxy, not a link).
    Down,
}

/// An invalid attribute, with the message the API returns (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AttributeError(pub String);

/// One attribute value as echoed by the API.
#[derive(Debug, Clone, Copy)]
enum Attr {
    Int(u64),
    Float(f64),
}

/// The attributes of a kind, serialized in Toxiproxy's field order.
#[derive(Debug)]
pub struct Attributes(Vec<(&'static str, Attr)>);

/// Every toxic type the API accepts, in the order of the docs.
pub const API_TYPES: &[&str] = &[
    "latency",
    "bandwidth",
    "slow_close",
    "timeout",
    "reset_peer",
    "slicer",
    "limit_data",
    "noop",
    "corrupt",
    "loss",
    "blackhole",
];

// === impl Toxic ===

impl Toxic {
    /// A toxic with the stream spelled the canonical way (`upstream`/`downstream`).
    pub fn new(name: impl Into<String>, stream: Stream, toxicity: f32, kind: ToxicKind) -> Toxic {
        Toxic {
            name: name.into(),
            stream,
            stream_text: stream_name(stream).to_owned(),
            toxicity,
            kind,
        }
    }

    /// The engine's toxic in this crate's model.
    ///
    /// # Errors
    ///
    /// [`ProxyError::Io`] (unsupported) for a [`ProxyFault`] kind this proxy does not know.
    pub fn from_engine(toxic: ProxyToxic) -> Result<Toxic, ProxyError> {
        let kind = match toxic.fault {
            ProxyFault::Latency { delay, jitter } => ToxicKind::Latency {
                latency: delay,
                jitter,
            },
            ProxyFault::Bandwidth { rate } => ToxicKind::Bandwidth { rate: rate.max(1) },
            ProxyFault::Timeout { after } => ToxicKind::Hold { after },
            ProxyFault::Reset { after } => ToxicKind::Reset { after },
            ProxyFault::Down => ToxicKind::Down,
            ProxyFault::Corrupt { probability, per } => ToxicKind::Corrupt {
                probability: probability.get(),
                per,
            },
            other => {
                return Err(ProxyError::Io(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    format!("unsupported proxy fault {other:?}"),
                )));
            }
        };
        #[allow(clippy::cast_possible_truncation)] // a probability fits f32 for our purpose
        let toxicity = toxic.toxicity.get() as f32;
        Ok(Toxic::new(toxic.name, toxic.stream, toxicity, kind))
    }
}

// === impl ToxicKind ===

impl ToxicKind {
    /// The API type name (`latency`, `reset_peer`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            ToxicKind::Latency { .. } => "latency",
            ToxicKind::Bandwidth { .. } => "bandwidth",
            ToxicKind::SlowClose { .. } => "slow_close",
            ToxicKind::Timeout { .. } => "timeout",
            ToxicKind::ResetPeer { .. } => "reset_peer",
            ToxicKind::Slicer { .. } => "slicer",
            ToxicKind::LimitData { .. } => "limit_data",
            ToxicKind::Noop => "noop",
            ToxicKind::Corrupt { .. } => "corrupt",
            ToxicKind::Loss { .. } => "loss",
            ToxicKind::Blackhole => "blackhole",
            ToxicKind::Hold { .. } => "chaosforge_hold",
            ToxicKind::Reset { .. } => "chaosforge_reset",
            ToxicKind::Down => "chaosforge_down",
        }
    }

    /// Builds a kind of API type `type_name` from JSON attributes (keys matched
    /// case-insensitively, unknown keys ignored, missing ones 0). `base` holds the current
    /// attributes on an update: given keys override them, the others are kept.
    ///
    /// Returns `Ok(None)` for an unknown type.
    ///
    /// # Errors
    ///
    /// Every invalid attribute at once, one message each: a non-integer where Toxiproxy takes
    /// an integer, a negative value, `average_size` 0, a probability outside `0..=1`.
    pub fn from_attributes(
        type_name: &str,
        attrs: &Map<String, Value>,
        base: Option<&ToxicKind>,
    ) -> Result<Option<ToxicKind>, AttributeError> {
        let mut p = Parser {
            type_name,
            given: attrs,
            base: base.map(ToxicKind::attributes),
            errors: Vec::new(),
        };
        let kind = match type_name {
            "latency" => ToxicKind::Latency {
                latency: p.millis("latency"),
                jitter: p.millis("jitter"),
            },
            "bandwidth" => ToxicKind::Bandwidth {
                rate: p.int("rate").saturating_mul(1000),
            },
            "slow_close" => ToxicKind::SlowClose {
                delay: p.millis("delay"),
            },
            "timeout" => ToxicKind::Timeout {
                timeout: p.millis("timeout"),
            },
            "reset_peer" => ToxicKind::ResetPeer {
                timeout: p.millis("timeout"),
            },
            "slicer" => {
                let average_size = p.int("average_size");
                let size_variation = p.int("size_variation");
                let delay = Duration::from_micros(p.int("delay"));
                if p.errors.is_empty() {
                    if average_size == 0 {
                        p.errors
                            .push("slicer attribute average_size must be at least 1".into());
                    } else if size_variation >= average_size {
                        p.errors.push(
                            "slicer attribute size_variation must be less than average_size".into(),
                        );
                    }
                }
                ToxicKind::Slicer {
                    average_size,
                    size_variation,
                    delay,
                }
            }
            "limit_data" => ToxicKind::LimitData {
                bytes: p.int("bytes"),
            },
            "noop" => ToxicKind::Noop,
            "corrupt" => ToxicKind::Corrupt {
                probability: p.probability("probability"),
                per: CorruptUnit::Byte,
            },
            "loss" => ToxicKind::Loss {
                probability: p.probability("probability"),
            },
            "blackhole" => ToxicKind::Blackhole,
            _ => return Ok(None),
        };
        if p.errors.is_empty() {
            Ok(Some(kind))
        } else {
            Err(AttributeError(p.errors.join("; ")))
        }
    }

    /// The attributes as the API shows them: every attribute of the type, in Toxiproxy's order.
    pub fn attributes(&self) -> Attributes {
        let ms = |d: &Duration| Attr::Int(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let us = |d: &Duration| Attr::Int(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Attributes(match self {
            ToxicKind::Latency { latency, jitter } => {
                vec![("latency", ms(latency)), ("jitter", ms(jitter))]
            }
            ToxicKind::Bandwidth { rate } => vec![("rate", Attr::Int(rate / 1000))],
            ToxicKind::SlowClose { delay } => vec![("delay", ms(delay))],
            ToxicKind::Timeout { timeout } | ToxicKind::ResetPeer { timeout } => {
                vec![("timeout", ms(timeout))]
            }
            ToxicKind::Slicer {
                average_size,
                size_variation,
                delay,
            } => vec![
                ("average_size", Attr::Int(*average_size)),
                ("size_variation", Attr::Int(*size_variation)),
                ("delay", us(delay)),
            ],
            ToxicKind::LimitData { bytes } => vec![("bytes", Attr::Int(*bytes))],
            ToxicKind::Corrupt { probability, .. } | ToxicKind::Loss { probability } => {
                vec![("probability", Attr::Float(*probability))]
            }
            ToxicKind::Hold { after } => {
                vec![("after", after.as_ref().map_or(Attr::Int(0), ms))]
            }
            ToxicKind::Reset { after } => vec![("after", ms(after))],
            ToxicKind::Noop | ToxicKind::Blackhole | ToxicKind::Down => Vec::new(),
        })
    }
}

/// Reads attributes for [`ToxicKind::from_attributes`], collecting every error.
struct Parser<'a> {
    type_name: &'a str,
    given: &'a Map<String, Value>,
    base: Option<Attributes>,
    errors: Vec<String>,
}

impl Parser<'_> {
    /// The given value of `key` (case-insensitive, last spelling wins as in Go), if not null.
    fn given(&self, key: &str) -> Option<&Value> {
        self.given
            .iter()
            .filter(|(k, v)| k.eq_ignore_ascii_case(key) && !v.is_null())
            .map(|(_, v)| v)
            .next_back()
    }

    fn base(&self, key: &str) -> Option<Attr> {
        let base = self.base.as_ref()?;
        base.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// A non-negative JSON integer (Go `int64` semantics: `1.5` and `1e3` are refused).
    fn int(&mut self, key: &str) -> u64 {
        let Some(value) = self.given(key) else {
            return match self.base(key) {
                Some(Attr::Int(v)) => v,
                _ => 0,
            };
        };
        if let Some(v) = value.as_u64() {
            return v;
        }
        let what = if value.as_i64().is_some() {
            format!("must not be negative, got {value}")
        } else if value.is_number() {
            format!("must be an integer, got {value}")
        } else {
            format!("must be an integer, got {}", json_type(value))
        };
        self.errors
            .push(format!("{} attribute {key} {what}", self.type_name));
        0
    }

    fn millis(&mut self, key: &str) -> Duration {
        Duration::from_millis(self.int(key))
    }

    /// A number in `0..=1`.
    fn probability(&mut self, key: &str) -> f64 {
        let Some(value) = self.given(key) else {
            return match self.base(key) {
                Some(Attr::Float(v)) => v,
                _ => 0.0,
            };
        };
        match value.as_f64() {
            Some(p) if (0.0..=1.0).contains(&p) => p,
            _ => {
                self.errors.push(format!(
                    "{} attribute {key} must be a number between 0 and 1, got {value}",
                    self.type_name
                ));
                0.0
            }
        }
    }
}

/// The Go-ish name of a JSON value's type, for error messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `upstream` or `downstream`.
pub fn stream_name(stream: Stream) -> &'static str {
    match stream {
        Stream::Upstream => "upstream",
        Stream::Downstream => "downstream",
    }
}

// === impl Attributes ===

impl Serialize for Attributes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            match value {
                Attr::Int(v) => map.serialize_entry(key, v)?,
                Attr::Float(v) => map.serialize_entry(key, v)?,
            }
        }
        map.end()
    }
}

impl fmt::Display for ToxicKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.type_name())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(t: &str, v: Value) -> Result<Option<ToxicKind>, AttributeError> {
        ToxicKind::from_attributes(t, v.as_object().unwrap(), None)
    }

    #[test]
    fn every_api_type_parses_with_defaults_and_echoes_every_attribute() {
        // Slicer's default average_size 0 is refused (it crashes Toxiproxy).
        for t in API_TYPES.iter().filter(|t| **t != "slicer") {
            let kind = parse(t, json!({})).unwrap().unwrap();
            assert_eq!(kind.type_name(), *t);
        }
        let kind = parse("slicer", json!({"average_size": 10}))
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::to_string(&kind.attributes()).unwrap(),
            r#"{"average_size":10,"size_variation":0,"delay":0}"#
        );
    }

    #[test]
    fn keys_are_case_insensitive_and_updates_merge() {
        let kind = parse("latency", json!({"LATENCY": 100})).unwrap().unwrap();
        let merged = ToxicKind::from_attributes(
            "latency",
            json!({"jitter": 5}).as_object().unwrap(),
            Some(&kind),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            serde_json::to_string(&merged.attributes()).unwrap(),
            r#"{"latency":100,"jitter":5}"#
        );
    }

    #[test]
    fn invalid_attributes_are_all_reported() {
        let err = parse("latency", json!({"latency": 1.5, "jitter": -1})).unwrap_err();
        assert!(
            err.0.contains("latency must be an integer, got 1.5"),
            "{err}"
        );
        assert!(err.0.contains("jitter must not be negative"), "{err}");
        assert!(parse("bandwidth", json!({"rate": -1})).is_err());
        assert!(parse("slicer", json!({"average_size": 0})).is_err());
        assert!(parse("slicer", json!({"average_size": 4, "size_variation": 4})).is_err());
        assert!(parse("corrupt", json!({"probability": 1.5})).is_err());
        assert!(parse("latency", json!({"latency": "1"})).is_err());
        assert_eq!(parse("nope", json!({})).unwrap(), None);
    }
}
