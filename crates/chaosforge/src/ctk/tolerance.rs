//! Chaos Toolkit tolerances, judged exactly as chaoslib 1.44's `within_tolerance`.
//!
//! chaoslib dispatches on the Python type of the tolerance, and several of its cases surprise
//! (and users' files rely on them), so they are kept on purpose:
//! - a two-item list against an HTTP/process output (a dict with `status`) is *membership* of the
//!   status, but against a raw value it is the *inclusive range* `tol[0] <= value <= tol[1]`;
//! - booleans compare as Python does (`True == 1`, `1.0 == 1`);
//! - a string tolerance is never unwrapped from a status (`"200"` against `{status: 200}` fails);
//! - a float or `null` tolerance, and a dict of an unknown `type`, return `None` in Python, which
//!   the hypothesis treats as not met.
//!
//! Where Python would raise (ordering a dict, a regex over a number, `Decimal(dict)`), the result
//! is [`Raised`], which the caller records as chaoslib records the exception.

use std::cmp::Ordering;

use serde_json::Value;

/// What Python raised while judging a tolerance (`TypeError`, `AttributeError`, `re.error`, …):
/// the message says which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised(pub String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Judges `value` (a probe's output) against `tolerance`, as chaoslib's `within_tolerance`.
///
/// `tolerance` must already have had its `${…}` references substituted (chaoslib substitutes the
/// `pattern`, `path` and `expect` of dict tolerances; the caller does it for all of them).
/// `probe` runs a `type: probe` tolerance with `value` as its `value` argument and says whether it
/// returned something truthy (an `ActivityFailed` is `false`, as in chaoslib).
pub fn within_tolerance(
    tolerance: &Value,
    value: &Value,
    probe: &mut dyn FnMut(&Value, &Value) -> bool,
) -> Result<bool, Raised> {
    match tolerance {
        Value::Bool(_) | Value::String(_) => Ok(py_eq(value, tolerance)),
        Value::Number(n) if is_int(n) => Ok(match status_of(value) {
            Some(status) => py_eq(status, tolerance),
            None => py_eq(value, tolerance),
        }),
        // A float or None tolerance falls to the undecorated base function, which returns None.
        Value::Number(_) | Value::Null => Ok(false),
        Value::Array(items) => {
            if let Some(status) = status_of(value) {
                return Ok(items.iter().any(|t| py_eq(status, t)));
            }
            if items.len() == 2 {
                // Python's chained comparison: stop at the first false, so the second
                // comparison (and its TypeError) only happens when the first holds.
                if py_cmp(&items[0], value)? == Ordering::Greater {
                    return Ok(false);
                }
                return Ok(py_cmp(value, &items[1])? != Ordering::Greater);
            }
            Ok(items.iter().any(|t| py_eq(value, t)))
        }
        Value::Object(map) => match map.get("type").and_then(Value::as_str) {
            Some("probe") => Ok(probe(tolerance, value)),
            Some("regex") => regex_tolerance(map, value),
            Some("jsonpath") => jsonpath_tolerance(map, value),
            Some("range") => range_tolerance(map, value),
            _ => Ok(false),
        },
    }
}

fn is_int(n: &serde_json::Number) -> bool {
    n.is_i64() || n.is_u64()
}

/// The `status` of an HTTP or process output, which int and list tolerances look through.
fn status_of(value: &Value) -> Option<&Value> {
    value.as_object().and_then(|m| m.get("status"))
}

/// `value.get(target, value)` when a target is given; Python raises on a non-dict value.
fn targeted<'a>(
    map: &serde_json::Map<String, Value>,
    value: &'a Value,
) -> Result<&'a Value, Raised> {
    match map.get("target") {
        // chaoslib tests `if target:`, so an empty or null target means "the value itself".
        Some(t) if py_truthy(t) => match value {
            Value::Object(m) => Ok(t.as_str().and_then(|k| m.get(k)).unwrap_or(value)),
            other => Err(Raised(format!(
                "AttributeError: '{}' object has no attribute 'get'",
                py_type(other)
            ))),
        },
        _ => Ok(value),
    }
}

fn regex_tolerance(map: &serde_json::Map<String, Value>, value: &Value) -> Result<bool, Raised> {
    let value = targeted(map, value)?;
    let pattern = match map.get("pattern") {
        Some(Value::String(p)) => p,
        Some(other) => {
            return Err(Raised(format!(
                "TypeError: first argument must be string or compiled pattern, not {}",
                py_type(other)
            )));
        }
        None => {
            return Err(Raised(
                "TypeError: first argument must be string or compiled pattern".into(),
            ));
        }
    };
    let rx = py_regex(pattern).map_err(|e| Raised(format!("re.error: {e}")))?;
    match value {
        Value::String(s) => Ok(rx.is_match(s)),
        other => Err(Raised(format!(
            "TypeError: expected string or bytes-like object, got '{}'",
            py_type(other)
        ))),
    }
}

fn jsonpath_tolerance(map: &serde_json::Map<String, Value>, value: &Value) -> Result<bool, Raised> {
    let value = targeted(map, value)?;
    let path = map
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| Raised("TypeError: the jsonpath `path` must be a string".into()))?;
    let px = serde_json_path::JsonPath::parse(path)
        .map_err(|e| Raised(format!("ValueError: invalid jsonpath `{path}`: {e}")))?;
    // A string body is decoded when it is JSON, and matched as the string otherwise.
    let decoded;
    let value = match value {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(v) => {
                decoded = v;
                &decoded
            }
            Err(_) => value,
        },
        other => other,
    };
    let values: Vec<&Value> = px.query(value).all();
    let mut result = !values.is_empty();
    if let Some(count) = map.get("count").filter(|c| !c.is_null()) {
        result = py_eq(&Value::from(values.len()), count);
    }
    if let Some(expect) = map.get("expect") {
        result = match expect {
            Value::Array(want) => {
                values.len() == want.len() && values.iter().zip(want).all(|(a, b)| py_eq(a, b))
            }
            one => values.len() == 1 && py_eq(values[0], one),
        };
    }
    Ok(result)
}

fn range_tolerance(map: &serde_json::Map<String, Value>, value: &Value) -> Result<bool, Raised> {
    let value = targeted(map, value)?;
    // Decimal("abc") is InvalidOperation, which chaoslib turns into False; Decimal(dict) is a
    // TypeError, which it does not catch.
    let Some(v) = py_decimal(value)? else {
        return Ok(false);
    };
    let the_range = match map.get("range") {
        Some(Value::Array(r)) if r.len() >= 2 => r,
        Some(Value::Array(_)) => return Err(Raised("IndexError: list index out of range".into())),
        _ => {
            return Err(Raised(
                "TypeError: the range tolerance needs a `range` list".into(),
            ));
        }
    };
    let min = py_decimal(&the_range[0])?
        .ok_or_else(|| Raised("decimal.InvalidOperation: range minimum".into()))?;
    let max = py_decimal(&the_range[1])?
        .ok_or_else(|| Raised("decimal.InvalidOperation: range maximum".into()))?;
    Ok(min <= v && v <= max)
}

/// `Decimal(x)`: `Ok(None)` where Python raises `InvalidOperation` (an unparsable string),
/// `Err` where it raises `TypeError`.
fn py_decimal(value: &Value) -> Result<Option<f64>, Raised> {
    match value {
        Value::Bool(b) => Ok(Some(f64::from(u8::from(*b)))),
        Value::Number(n) => Ok(n.as_f64()),
        Value::String(s) => Ok(parse_decimal(s.trim())),
        other => Err(Raised(format!(
            "TypeError: conversion from {} to Decimal is not supported",
            py_type(other)
        ))),
    }
}

/// Decimal's string syntax: digits with an optional sign, point and exponent, or
/// `Infinity`/`Inf` (NaN never compares, so it is treated as out of range).
fn parse_decimal(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if lower == "infinity" || lower == "inf" {
        return s.parse::<f64>().ok().or(Some(if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        }));
    }
    let (mantissa, exp) = match lower.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (lower.as_str(), None),
    };
    let digits_ok = {
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        (!int.is_empty() || !frac.is_empty())
            && int.bytes().all(|b| b.is_ascii_digit() || b == b'_')
            && frac.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    };
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    if !digits_ok || !exp_ok {
        return None;
    }
    s.replace('_', "").parse::<f64>().ok()
}

/// Python's name for a JSON value's type, for the messages of what it would raise.
pub(crate) fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if is_int(n) => "int",
        Value::Number(_) => "float",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Python's truthiness of a JSON value.
pub fn py_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// A bool or number as Python's numeric tower sees it (`bool` is an `int`).
enum Num {
    Int(i128),
    Float(f64),
}

fn as_num(v: &Value) -> Option<Num> {
    match v {
        Value::Bool(b) => Some(Num::Int(i128::from(*b))),
        Value::Number(n) => n
            .as_i64()
            .map(|i| Num::Int(i128::from(i)))
            .or_else(|| n.as_u64().map(|u| Num::Int(i128::from(u))))
            .or_else(|| n.as_f64().map(Num::Float)),
        _ => None,
    }
}

fn num_cmp(a: &Num, b: &Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(y)),
        // i128 → f64 rounds only beyond 2^53, where JSON floats have no exact integers either.
        #[allow(clippy::cast_precision_loss)]
        (Num::Int(x), Num::Float(y)) => (*x as f64).partial_cmp(y),
        #[allow(clippy::cast_precision_loss)]
        (Num::Float(x), Num::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(y),
    }
}

/// Python's `==` between two JSON values.
pub fn py_eq(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return num_cmp(&x, &y) == Some(Ordering::Equal);
    }
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        _ => false,
    }
}

/// Python's ordering of two JSON values, or the `TypeError` it raises for unorderable types.
/// NaN compares as Python's does: neither less nor greater, so `<=` is false (`Greater` here).
pub fn py_cmp(a: &Value, b: &Value) -> Result<Ordering, Raised> {
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return Ok(num_cmp(&x, &y).unwrap_or(Ordering::Greater));
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x.chars().cmp(y.chars())),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                if !py_eq(p, q) {
                    return py_cmp(p, q);
                }
            }
            Ok(x.len().cmp(&y.len()))
        }
        _ => Err(Raised(format!(
            "TypeError: '<=' not supported between instances of '{}' and '{}'",
            py_type(a),
            py_type(b)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn judge(tol: Value, value: Value) -> Result<bool, Raised> {
        within_tolerance(&tol, &value, &mut |_, _| panic!("no probe tolerance here"))
    }

    #[test]
    fn bool_and_int_compare_as_python() {
        assert_eq!(judge(json!(true), json!(true)), Ok(true));
        assert_eq!(judge(json!(true), json!(1)), Ok(true));
        assert_eq!(judge(json!(true), json!(1.0)), Ok(true));
        assert_eq!(judge(json!(false), json!(0)), Ok(true));
        assert_eq!(judge(json!(true), json!("true")), Ok(false));
        assert_eq!(
            judge(json!(200), json!({"status": 200, "body": ""})),
            Ok(true)
        );
        assert_eq!(judge(json!(200), json!({"status": 500})), Ok(false));
        assert_eq!(judge(json!(1), json!(true)), Ok(true));
        assert_eq!(judge(json!(0), json!({"stdout": ""})), Ok(false));
    }

    #[test]
    fn strings_are_not_unwrapped_from_a_status() {
        assert_eq!(judge(json!("200"), json!({"status": 200})), Ok(false));
        assert_eq!(judge(json!("200"), json!(200)), Ok(false));
        assert_eq!(judge(json!("ok"), json!("ok")), Ok(true));
    }

    #[test]
    fn float_and_null_tolerances_are_python_none() {
        assert_eq!(judge(json!(0.5), json!(0.5)), Ok(false));
        assert_eq!(judge(Value::Null, Value::Null), Ok(false));
        assert_eq!(judge(json!({"type": "nope"}), json!(1)), Ok(false));
    }

    #[test]
    fn two_item_list_is_membership_for_outputs_and_a_range_for_values() {
        assert_eq!(judge(json!([200, 204]), json!({"status": 201})), Ok(false));
        assert_eq!(judge(json!([200, 204]), json!({"status": 204})), Ok(true));
        assert_eq!(judge(json!([200, 204]), json!(201)), Ok(true));
        assert_eq!(judge(json!([200, 204]), json!(204)), Ok(true));
        assert_eq!(judge(json!([200, 204]), json!(205)), Ok(false));
        assert_eq!(judge(json!([1, 2, 3]), json!(2)), Ok(true));
        assert_eq!(judge(json!([1, 2, 3]), json!(2.5)), Ok(false));
        assert_eq!(judge(json!(["a", "c"]), json!("b")), Ok(true));
        assert!(judge(json!([1, 2]), json!("x")).is_err());
        // The chained comparison stops at the first false, before the unorderable pair.
        assert_eq!(judge(json!([5, "z"]), json!(1)), Ok(false));
    }

    #[test]
    fn regex_searches_anywhere_and_follows_target() {
        let tol = json!({"type": "regex", "pattern": "wor.d", "target": "stdout"});
        assert_eq!(
            judge(tol.clone(), json!({"status": 0, "stdout": "hello world\n"})),
            Ok(true)
        );
        assert_eq!(
            judge(tol, json!({"status": 0, "stdout": "hello"})),
            Ok(false)
        );
        let bare = json!({"type": "regex", "pattern": "^ok$"});
        assert_eq!(judge(bare.clone(), json!("ok")), Ok(true));
        assert!(judge(bare, json!(5)).is_err());
    }

    #[test]
    fn range_coerces_through_decimal() {
        let tol = json!({"type": "range", "range": [1, "2.5"]});
        assert_eq!(judge(tol.clone(), json!("2.5")), Ok(true));
        assert_eq!(judge(tol.clone(), json!(" 1 ")), Ok(true));
        assert_eq!(judge(tol.clone(), json!(3)), Ok(false));
        assert_eq!(judge(tol.clone(), json!("abc")), Ok(false));
        assert_eq!(judge(tol.clone(), json!(true)), Ok(true));
        assert!(judge(tol, json!({"status": 2})).is_err());
        let targeted = json!({"type": "range", "range": [200, 299], "target": "status"});
        assert_eq!(judge(targeted, json!({"status": 204})), Ok(true));
    }

    #[test]
    fn jsonpath_cases() {
        let body = json!({"status": 200, "body": {"items": [{"id": 1}, {"id": 2}]}});
        let found = json!({"type": "jsonpath", "path": "$.items[*].id", "target": "body"});
        assert_eq!(judge(found, body.clone()), Ok(true));
        let count = json!({"type": "jsonpath", "path": "$.items[*]", "target": "body", "count": 2});
        assert_eq!(judge(count, body.clone()), Ok(true));
        let list = json!({"type": "jsonpath", "path": "$.items[*].id", "target": "body", "expect": [1, 2]});
        assert_eq!(judge(list, body.clone()), Ok(true));
        let scalar =
            json!({"type": "jsonpath", "path": "$.items[0].id", "target": "body", "expect": 1});
        assert_eq!(judge(scalar, body.clone()), Ok(true));
        let wrong =
            json!({"type": "jsonpath", "path": "$.items[*].id", "target": "body", "expect": 1});
        assert_eq!(judge(wrong, body), Ok(false));
        let string_body = json!({"body": "{\"ok\": true}"});
        let decoded = json!({"type": "jsonpath", "path": "$.ok", "target": "body", "expect": true});
        assert_eq!(judge(decoded, string_body), Ok(true));
        let missing = json!({"type": "jsonpath", "path": "$.nope", "target": "body"});
        assert_eq!(judge(missing, json!({"body": {}})), Ok(false));
    }

    #[test]
    fn probe_tolerance_gets_the_value() {
        let mut seen = None;
        let tol =
            json!({"type": "probe", "name": "p", "provider": {"type": "process", "path": "true"}});
        let met = within_tolerance(&tol, &json!(7), &mut |_, v| {
            seen = Some(v.clone());
            true
        });
        assert_eq!(met, Ok(true));
        assert_eq!(seen, Some(json!(7)));
    }
}

/// Compiles a Python `re` pattern with the `regex` crate. The syntax tolerances use is the
/// same but for what Python reads differently: `\Z` for the end of the text (`\z` here), `$`
/// matching before a final newline too, and a `{` that does not open a repetition
/// (`${name}`), which Python reads as a literal brace.
pub fn py_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut in_class = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                match chars.get(i + 1) {
                    Some('Z') if !in_class => out.push_str("\\z"),
                    Some(n) => {
                        out.push('\\');
                        out.push(*n);
                    }
                    None => out.push('\\'),
                }
                i += 2;
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // `[]…]` and `[^]…]`: a `]` first is a literal.
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '{' if !in_class && !is_repetition(&chars[i..]) => out.push_str("\\{"),
            '}' if !in_class => out.push_str("\\}"),
            // Python's `$` also matches just before a newline that ends the text (a process's
            // stdout always has one); only a yes/no is asked of the match, so consuming that
            // newline changes nothing.
            '$' if !in_class => out.push_str("(?:\\n?\\z)"),
            _ => out.push(c),
        }
        if c == '{' && !in_class && is_repetition(&chars[i..]) {
            // Copy the repetition whole, so its `}` is not escaped.
            let close = chars[i..].iter().position(|&c| c == '}').unwrap_or(0);
            // Python's `{,n}` is `regex`'s `{0,n}`.
            if chars.get(i + 1) == Some(&',') {
                out.push('0');
            }
            out.extend(&chars[i + 1..=i + close]);
            i += close + 1;
            continue;
        }
        i += 1;
    }
    regex::Regex::new(&out)
}

/// Whether `rest` (starting at a `{`) is a repetition to Python: `{m}`, `{m,}`, `{m,n}`, `{,n}`.
fn is_repetition(rest: &[char]) -> bool {
    let Some(close) = rest.iter().position(|&c| c == '}') else {
        return false;
    };
    let body: String = rest[1..close].iter().collect();
    let (lo, hi) = match body.split_once(',') {
        Some((lo, hi)) => (lo, Some(hi)),
        None => (body.as_str(), None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    match hi {
        None => !lo.is_empty() && digits(lo),
        Some(hi) => digits(lo) && digits(hi) && !(lo.is_empty() && hi.is_empty()),
    }
}

#[cfg(test)]
mod py_regex_tests {
    #[test]
    fn python_end_of_text_is_understood() {
        let rx = super::py_regex(r"\Aa\nb\n\Z").unwrap();
        assert!(rx.is_match("a\nb\n"));
        assert!(!rx.is_match("a\nb\nc"));
        // An escaped backslash before Z is a backslash and a Z.
        assert!(super::py_regex(r"\\Z").unwrap().is_match("\\Z"));
        // `$` matches before the newline that ends the text, and at the end.
        assert!(
            super::py_regex(r"^ready \d+$")
                .unwrap()
                .is_match("ready 42\n")
        );
        assert!(
            super::py_regex(r"^ready \d+$")
                .unwrap()
                .is_match("ready 42")
        );
        assert!(
            !super::py_regex(r"^ready \d+$")
                .unwrap()
                .is_match("ready 42\n\n")
        );
        assert!(super::py_regex(r"[$]").unwrap().is_match("$"));
    }

    #[test]
    fn a_brace_that_is_no_repetition_is_a_literal_as_in_python() {
        // Compiles as in Python (validation sees the pattern before substitution); `$` is still
        // the end anchor, so, as in Python, it matches nothing with text after it.
        let rx = super::py_regex(r#""status": "${word}""#).unwrap();
        assert!(!rx.is_match(r#""status": "${word}""#));
        assert!(super::py_regex("a{2}").unwrap().is_match("aa"));
        assert!(!super::py_regex("^a{2}$").unwrap().is_match("a"));
        assert!(super::py_regex("^a{1,}$").unwrap().is_match("aaa"));
        assert!(super::py_regex("^a{,2}$").unwrap().is_match("aa"));
        assert!(super::py_regex("[{}]").unwrap().is_match("}"));
        assert!(super::py_regex("x{y}").unwrap().is_match("x{y}"));
    }
}
