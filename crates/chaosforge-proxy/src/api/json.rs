//! Request bodies read the way Toxiproxy's Go server reads them: only the first JSON value
//! counts (trailing bytes are ignored), object keys match case-insensitively, unknown keys are
//! ignored, `null` leaves the default, and a wrong type is a 400 `bad request body: …`.
//!
//! Responses are typed structs, so fields come out in Toxiproxy's order.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::{Attributes, Toxic, json_type};

/// A request body that is not what the route expects; the text follows `bad request body: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodyError(pub(crate) String);

/// A JSON object whose keys are matched case-insensitively.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Obj<'a>(pub(crate) &'a Map<String, Value>);

/// A proxy as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct ProxyOut {
    pub(crate) name: String,
    pub(crate) listen: String,
    pub(crate) upstream: String,
    pub(crate) enabled: bool,
    pub(crate) toxics: Vec<ToxicOut>,
    /// chaosforge's: shown only when set, so the default shape is exactly Toxiproxy's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) reset_unreachable: bool,
}

/// A toxic as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct ToxicOut {
    attributes: Attributes,
    name: String,
    r#type: &'static str,
    stream: String,
    toxicity: Toxicity,
}

/// A toxicity printed like Go prints a float32: `1`, `0.5`, `0.2`.
#[derive(Debug, Clone, Copy)]
struct Toxicity(f32);

/// Reads the first JSON value of `body`.
pub(crate) fn decode(body: &[u8]) -> Result<Value, BodyError> {
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    match values.next() {
        None => Err(BodyError("EOF".into())),
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) if e.is_eof() => Err(BodyError("unexpected EOF".into())),
        Some(Err(e)) => Err(BodyError(e.to_string())),
    }
}

/// The body as an object (`what` names the expected Go type in the message).
pub(crate) fn object<'a>(value: &'a Value, what: &str) -> Result<Obj<'a>, BodyError> {
    match value {
        Value::Object(map) => Ok(Obj(map)),
        other => Err(BodyError(format!(
            "json: cannot unmarshal {} into Go value of type {what}",
            json_type(other)
        ))),
    }
}

// === impl Obj ===

impl<'a> Obj<'a> {
    /// The value of `key`, case-insensitively (the last spelling wins, as in Go); `null` is
    /// absent.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.0
            .iter()
            .filter(|(k, v)| k.eq_ignore_ascii_case(key) && !v.is_null())
            .map(|(_, v)| v)
            .next_back()
    }

    pub(crate) fn string(&self, key: &str, at: &str) -> Result<Option<String>, BodyError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(mistyped(other, at, key, "string")),
        }
    }

    pub(crate) fn bool(&self, key: &str, at: &str) -> Result<Option<bool>, BodyError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(mistyped(other, at, key, "bool")),
        }
    }

    pub(crate) fn number(&self, key: &str, at: &str) -> Result<Option<f64>, BodyError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(mistyped(other, at, key, "float32")),
        }
    }

    pub(crate) fn object(&self, key: &str, at: &str) -> Result<Option<Obj<'a>>, BodyError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj(map))),
            Some(other) => Err(mistyped(other, at, key, "map[string]interface {}")),
        }
    }
}

/// Go's message for a value of the wrong JSON type.
fn mistyped(value: &Value, at: &str, key: &str, go_type: &str) -> BodyError {
    BodyError(format!(
        "json: cannot unmarshal {} into Go struct field {at}.{key} of type {go_type}",
        json_type(value)
    ))
}

// === impl ToxicOut ===

impl From<&Toxic> for ToxicOut {
    fn from(t: &Toxic) -> ToxicOut {
        ToxicOut {
            attributes: t.attributes.clone(),
            name: t.name.clone(),
            r#type: t.kind.type_name(),
            stream: t.stream_text.clone(),
            toxicity: Toxicity(t.toxicity),
        }
    }
}

impl Serialize for Toxicity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.fract() == 0.0 && v.abs() < 1e9 {
            #[allow(clippy::cast_possible_truncation)] // integral and small, checked above
            serializer.serialize_i64(v as i64)
        } else {
            serializer.serialize_f32(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_value_counts_like_go() {
        assert_eq!(decode(b"{\"a\":1} trailing").unwrap()["a"], 1);
        assert_eq!(decode(b"").unwrap_err().0, "EOF");
        assert_eq!(decode(b"  ").unwrap_err().0, "EOF");
        assert_eq!(decode(b"{\"a\":").unwrap_err().0, "unexpected EOF");
        assert!(decode(b"}").is_err());
    }

    #[test]
    fn keys_match_case_insensitively_and_null_is_absent() {
        let v = decode(br#"{"NAME":"x","UpStream":"y","enabled":null}"#).unwrap();
        let o = object(&v, "proxy.Proxy").unwrap();
        assert_eq!(o.string("name", "Proxy").unwrap().as_deref(), Some("x"));
        assert_eq!(o.string("upstream", "Proxy").unwrap().as_deref(), Some("y"));
        assert_eq!(o.bool("enabled", "Proxy").unwrap(), None);
        assert!(o.bool("name", "Proxy").is_err());
    }

    #[test]
    fn toxicity_prints_like_go() {
        let s = |v: f32| serde_json::to_string(&Toxicity(v)).unwrap();
        assert_eq!(s(1.0), "1");
        assert_eq!(s(0.0), "0");
        assert_eq!(s(0.5), "0.5");
        assert_eq!(s(0.2), "0.2");
    }
}
