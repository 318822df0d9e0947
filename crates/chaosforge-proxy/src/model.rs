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
    /// The attributes as the API echoes them. For a toxic created through the API these are
    /// the values the client wrote, which `kind` may read differently (Toxiproxy echoes a
    /// `latency` of -100 back as -100 and runs it as 0; so does chaosforge), and an update
    /// merges into them; otherwise they are derived from `kind`.
    pub attributes: Attributes,
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
    /// Cut each chunk into pieces of about `average_size` bytes, `delay` apart; every piece is
    /// `1..=average_size + size_variation` bytes.
    Slicer {
        /// Target piece size in bytes, at least 1.
        average_size: u64,
        /// Random variation of the cut point, any size: a cut never leaves the piece it cuts
        /// (see `toxic/slicer.rs`).
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

/// One attribute value as echoed by the API: Toxiproxy's attributes are Go `int64`s (and
/// chaosforge's probabilities floats).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Attr {
    Int(i64),
    Float(f64),
}

/// The attributes of a toxic, serialized in Toxiproxy's field order.
#[derive(Debug, Clone, PartialEq)]
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
    /// A toxic with the stream spelled the canonical way (`upstream`/`downstream`), showing
    /// the attributes of `kind`.
    pub fn new(name: impl Into<String>, stream: Stream, toxicity: f32, kind: ToxicKind) -> Toxic {
        Toxic {
            name: name.into(),
            stream,
            stream_text: stream_name(stream).to_owned(),
            toxicity,
            attributes: kind.attributes(),
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
    /// case-insensitively, unknown keys ignored, missing ones 0), with the attributes as the
    /// API echoes them. `base` holds the current attributes on an update: given keys override
    /// them, the others are kept.
    ///
    /// Values are accepted wherever Toxiproxy 2.12 accepts them and survives them, and given
    /// the meaning Toxiproxy gives them: a negative time or byte count runs as zero, a
    /// `size_variation` of any size is clamped per cut (docs/toxiproxy-attributes.md has the
    /// table). Returns `Ok(None)` for an unknown type.
    ///
    /// # Errors
    ///
    /// Every invalid attribute at once, one message each: what Toxiproxy refuses too (a
    /// non-integer, or an integer beyond `int64`, where it takes an integer), what crashes
    /// Toxiproxy (a negative bandwidth `rate`, a slicer `average_size` below 1), and
    /// chaosforge's own probabilities outside `0..=1`.
    pub fn from_attributes(
        type_name: &str,
        attrs: &Map<String, Value>,
        base: Option<&Attributes>,
    ) -> Result<Option<(ToxicKind, Attributes)>, AttributeError> {
        let mut p = Parser {
            type_name,
            given: attrs,
            base,
            written: Vec::new(),
            errors: Vec::new(),
        };
        let kind = match type_name {
            "latency" => ToxicKind::Latency {
                latency: p.millis("latency"),
                jitter: p.millis("jitter"),
            },
            "bandwidth" => ToxicKind::Bandwidth {
                // Toxiproxy slices a chunk at `rate * 100` bytes: a negative rate panics the
                // whole server (slice bounds out of range).
                rate: p.at_least("rate", 0).saturating_mul(1000),
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
            "slicer" => ToxicKind::Slicer {
                // Toxiproxy's halving never reaches a piece of at most 0 bytes: a stack
                // overflow that ends the whole server at the first byte.
                average_size: p.at_least("average_size", 1),
                size_variation: p.count("size_variation"),
                delay: Duration::from_micros(p.count("delay")),
            },
            "limit_data" => ToxicKind::LimitData {
                bytes: p.count("bytes"),
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
            Ok(Some((kind, Attributes(p.written))))
        } else {
            Err(AttributeError(p.errors.join("; ")))
        }
    }

    /// The attributes as the API shows them: every attribute of the type, in Toxiproxy's order.
    pub fn attributes(&self) -> Attributes {
        let int = |v: u64| Attr::Int(i64::try_from(v).unwrap_or(i64::MAX));
        let ms = |d: &Duration| Attr::Int(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let us = |d: &Duration| Attr::Int(i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        Attributes(match self {
            ToxicKind::Latency { latency, jitter } => {
                vec![("latency", ms(latency)), ("jitter", ms(jitter))]
            }
            ToxicKind::Bandwidth { rate } => vec![("rate", int(rate / 1000))],
            ToxicKind::SlowClose { delay } => vec![("delay", ms(delay))],
            ToxicKind::Timeout { timeout } | ToxicKind::ResetPeer { timeout } => {
                vec![("timeout", ms(timeout))]
            }
            ToxicKind::Slicer {
                average_size,
                size_variation,
                delay,
            } => vec![
                ("average_size", int(*average_size)),
                ("size_variation", int(*size_variation)),
                ("delay", us(delay)),
            ],
            ToxicKind::LimitData { bytes } => vec![("bytes", int(*bytes))],
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

/// Reads attributes for [`ToxicKind::from_attributes`], collecting every error and the values
/// to echo. Each attribute is read once, in Toxiproxy's field order, which is the echo's order.
struct Parser<'a> {
    type_name: &'a str,
    given: &'a Map<String, Value>,
    base: Option<&'a Attributes>,
    written: Vec<(&'static str, Attr)>,
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
        let base = self.base?;
        base.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// A JSON integer that fits Go's `int64` (`1.5`, `1e3` and `2^63` are refused, as
    /// Toxiproxy's decoder refuses them), echoed as written.
    fn int(&mut self, key: &'static str) -> i64 {
        let value = match self.given(key) {
            None => match self.base(key) {
                Some(Attr::Int(v)) => v,
                _ => 0,
            },
            Some(value) => {
                if let Some(v) = value.as_i64() {
                    v
                } else {
                    let what = if value.is_u64() {
                        format!("must fit a 64-bit signed integer, got {value}")
                    } else if value.is_number() {
                        format!("must be an integer, got {value}")
                    } else {
                        format!("must be an integer, got {}", json_type(value))
                    };
                    self.errors
                        .push(format!("{} attribute {key} {what}", self.type_name));
                    0
                }
            }
        };
        self.written.push((key, Attr::Int(value)));
        value
    }

    /// A count where Toxiproxy takes a negative value as zero (its comparisons and sleeps do).
    fn count(&mut self, key: &'static str) -> u64 {
        u64::try_from(self.int(key)).unwrap_or(0)
    }

    fn millis(&mut self, key: &'static str) -> Duration {
        Duration::from_millis(self.count(key))
    }

    /// An integer of at least `min`: below it Toxiproxy crashes, so it is refused.
    fn at_least(&mut self, key: &'static str, min: i64) -> u64 {
        let v = self.int(key);
        if v < min {
            let rule = if min == 0 {
                "must not be negative".to_owned()
            } else {
                format!("must be at least {min}")
            };
            self.errors.push(format!(
                "{} attribute {key} {rule}, got {v} (Toxiproxy 2.12 crashes on it)",
                self.type_name
            ));
        }
        u64::try_from(v).unwrap_or(0)
    }

    /// A number in `0..=1`.
    fn probability(&mut self, key: &'static str) -> f64 {
        let p = match self.given(key) {
            None => match self.base(key) {
                Some(Attr::Float(v)) => v,
                _ => 0.0,
            },
            Some(value) => match value.as_f64() {
                Some(p) if (0.0..=1.0).contains(&p) => p,
                _ => {
                    self.errors.push(format!(
                        "{} attribute {key} must be a number between 0 and 1, got {value}",
                        self.type_name
                    ));
                    0.0
                }
            },
        };
        self.written.push((key, Attr::Float(p)));
        p
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

    fn parse(t: &str, v: Value) -> Result<Option<(ToxicKind, Attributes)>, AttributeError> {
        ToxicKind::from_attributes(t, v.as_object().unwrap(), None)
    }

    fn echo(a: &Attributes) -> String {
        serde_json::to_string(a).unwrap()
    }

    #[test]
    fn every_api_type_parses_with_defaults_and_echoes_every_attribute() {
        // Slicer's default average_size 0 is refused (it crashes Toxiproxy).
        for t in API_TYPES.iter().filter(|t| **t != "slicer") {
            let (kind, written) = parse(t, json!({})).unwrap().unwrap();
            assert_eq!(kind.type_name(), *t);
            assert_eq!(written, kind.attributes(), "{t}: defaults echo as they run");
        }
        let (kind, written) = parse("slicer", json!({"average_size": 10}))
            .unwrap()
            .unwrap();
        assert_eq!(
            echo(&written),
            r#"{"average_size":10,"size_variation":0,"delay":0}"#
        );
        assert_eq!(written, kind.attributes());
    }

    #[test]
    fn keys_are_case_insensitive_and_updates_merge_into_what_was_written() {
        let (_, written) = parse("latency", json!({"LATENCY": -100})).unwrap().unwrap();
        let (kind, merged) = ToxicKind::from_attributes(
            "latency",
            json!({"jitter": 5}).as_object().unwrap(),
            Some(&written),
        )
        .unwrap()
        .unwrap();
        // The written -100 survives an update of the jitter alone, as in Toxiproxy.
        assert_eq!(echo(&merged), r#"{"latency":-100,"jitter":5}"#);
        assert_eq!(
            kind,
            ToxicKind::Latency {
                latency: Duration::ZERO,
                jitter: Duration::from_millis(5)
            }
        );
    }

    #[test]
    fn negative_times_and_counts_are_echoed_and_run_as_zero() {
        for (t, attrs, runs) in [
            (
                "latency",
                json!({"latency": -100, "jitter": -5}),
                ToxicKind::Latency {
                    latency: Duration::ZERO,
                    jitter: Duration::ZERO,
                },
            ),
            (
                "slow_close",
                json!({"delay": -1}),
                ToxicKind::SlowClose {
                    delay: Duration::ZERO,
                },
            ),
            (
                "timeout",
                json!({"timeout": -1}),
                ToxicKind::Timeout {
                    timeout: Duration::ZERO,
                },
            ),
            (
                "reset_peer",
                json!({"timeout": -1}),
                ToxicKind::ResetPeer {
                    timeout: Duration::ZERO,
                },
            ),
            (
                "limit_data",
                json!({"bytes": -1}),
                ToxicKind::LimitData { bytes: 0 },
            ),
            (
                "slicer",
                json!({"average_size": 4, "size_variation": -3, "delay": -7}),
                ToxicKind::Slicer {
                    average_size: 4,
                    size_variation: 0,
                    delay: Duration::ZERO,
                },
            ),
        ] {
            let (kind, written) = parse(t, attrs.clone()).unwrap().unwrap();
            assert_eq!(kind, runs, "{t}");
            assert_eq!(
                serde_json::to_value(&written).unwrap(),
                attrs,
                "{t} echoes what was written"
            );
        }
    }

    #[test]
    fn slicer_variation_at_or_above_the_average_is_accepted_as_written() {
        // What toxiproxy-node-client's own test suite sends and expects back.
        let (kind, written) = parse(
            "slicer",
            json!({"average_size": 1000, "delay": 1000, "size_variation": 1000}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            echo(&written),
            r#"{"average_size":1000,"size_variation":1000,"delay":1000}"#
        );
        assert_eq!(written, kind.attributes());
        assert!(
            parse(
                "slicer",
                json!({"average_size": 1, "size_variation": i64::MAX})
            )
            .is_ok()
        );
    }

    #[test]
    fn invalid_attributes_are_all_reported() {
        let err = parse("slicer", json!({"average_size": 1.5, "delay": "1"})).unwrap_err();
        assert!(
            err.0.contains("average_size must be an integer, got 1.5"),
            "{err}"
        );
        assert!(
            err.0.contains("delay must be an integer, got string"),
            "{err}"
        );
        let err = parse("bandwidth", json!({"rate": -1})).unwrap_err();
        assert!(err.0.contains("rate must not be negative, got -1"), "{err}");
        for avg in [0, -3] {
            let err = parse("slicer", json!({"average_size": avg})).unwrap_err();
            assert!(
                err.0
                    .contains(&format!("average_size must be at least 1, got {avg}")),
                "{err}"
            );
        }
        let err = parse("latency", json!({"latency": u64::MAX})).unwrap_err();
        assert!(err.0.contains("must fit a 64-bit signed integer"), "{err}");
        assert!(parse("latency", json!({"latency": 1e3})).is_err());
        assert!(parse("corrupt", json!({"probability": 1.5})).is_err());
        assert_eq!(parse("nope", json!({})).unwrap(), None);
    }

    #[test]
    fn the_largest_values_echo_without_overflow() {
        let (kind, written) = parse("latency", json!({"latency": i64::MAX}))
            .unwrap()
            .unwrap();
        assert_eq!(
            echo(&written),
            format!(r#"{{"latency":{},"jitter":0}}"#, i64::MAX)
        );
        // Derived from the kind the value saturates rather than wrapping to a negative one.
        assert_eq!(echo(&kind.attributes()), echo(&written));
        let (kind, _) = parse("bandwidth", json!({"rate": i64::MAX}))
            .unwrap()
            .unwrap();
        assert_eq!(kind, ToxicKind::Bandwidth { rate: u64::MAX });
    }
}
