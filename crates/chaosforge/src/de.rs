//! A serde decoder over a [`Document`] that reports every problem at once.
//!
//! [`decode`] runs serde over the spanned tree and turns each problem into a [`Diagnostic`] at the
//! node it concerns (`file:line:col: faults[2].latency.delay: message`). It never stops at the
//! first problem:
//!
//! * Unknown struct fields are reported (with a "did you mean") and skipped, never fatal.
//! * A type mismatch the decoder sees itself (a map where a string goes, `-3` for a `u16`, an
//!   unknown enum variant) is reported, then a *placeholder* value (`0`, `""`, empty list, a struct
//!   of placeholders, …) is handed to serde so that decoding carries on with the siblings. The
//!   placeholder never escapes: any problem makes `decode` return `Err`.
//! * A problem raised by a type's own `Deserialize` (`Error::custom`, a missing field) cannot be
//!   recovered in place: serde unwinds the whole value. So `decode` runs again with that node
//!   *poisoned*: next time it gets a placeholder without being read; if even the placeholder is
//!   refused, the node is left out of its list or map (or, in a struct, its parent is poisoned).
//!   Each run poisons one more node, and every run's diagnostics are kept (without repeats), so
//!   siblings after the failing value are checked too.
//! * A missing field is reported at its struct, and the next run hands serde a placeholder for
//!   that field alone, so the struct's other fields are still read (a fault without `target`
//!   still has its `latency` checked).
//!
//! [`decode_partial`] also returns the value of the last run, placeholders and all, with the
//! paths where a placeholder stands ([`Partial`]): `plan` compiles it too, so unit and
//! cross-reference problems show beside the structural ones, and drops what it says about the
//! placeholders.
//!
//! Limits: at most [`MAX_PASSES`] runs; problems a parent raises only because a child was replaced
//! (e.g. a `try_from` check seeing a placeholder) are suppressed, which may also hide a real
//! problem of that parent found in the same run; internally tagged and untagged enums are decoded
//! by serde from a buffered copy, so problems inside them are reported at the enum's node and
//! unknown fields inside them are not reported (serde does not tell us its field list there).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer as _, EnumAccess, IntoDeserializer,
    MapAccess, SeqAccess, VariantAccess, Visitor,
};

use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::source::{Document, Node, Value, parse_int, push_index, push_key};

#[cfg(test)]
mod tests;

/// Most decoding runs per document; each run after the first poisons one more failing node.
pub const MAX_PASSES: usize = 200;

/// What decoding a document with problems still yields: a value with placeholders where the
/// problems were, and the field paths of those placeholders.
#[derive(Debug)]
pub struct Partial<T> {
    /// The value, placeholders included. Never act on it: it only lets later checks run.
    pub value: T,
    /// Paths (`faults[1].target`, `targets[0]`) where a placeholder stands or a node was left
    /// out; anything said about them, or below them, is an artifact.
    pub substituted: Vec<String>,
}

/// Decodes `doc` into a `T`, reporting every problem found, sorted by position, without repeats.
///
/// The non-fatal problems found while parsing ([`Document::diagnostics`]) are included, so a
/// `T` is returned only for a file without any problem.
///
/// # Errors
///
/// Every problem found in the document, each at the node it concerns.
pub fn decode<T: DeserializeOwned>(doc: &Document) -> Result<T, Diagnostics> {
    decode_partial(doc).map_err(|(diags, _)| diags)
}

/// Like [`decode`], and on failure also the [`Partial`] value of the last run, when one run got
/// through with placeholders.
///
/// # Errors
///
/// Every problem found in the document, and the partial value if there is one.
pub fn decode_partial<T: DeserializeOwned>(
    doc: &Document,
) -> Result<T, (Diagnostics, Option<Partial<T>>)> {
    let cx = Cx {
        doc,
        diags: RefCell::new(Vec::new()),
        poison: RefCell::new(HashMap::new()),
        replaced: Cell::new(0),
        omitted: Cell::new(0),
        omitted_fields: RefCell::new(HashSet::new()),
        failure: Cell::new(None),
        missing: RefCell::new(HashMap::new()),
        retry: Cell::new(false),
        substituted: RefCell::new(Vec::new()),
    };
    for d in doc.diagnostics() {
        cx.report(d.clone());
    }
    let mut partial = None;
    for _ in 0..MAX_PASSES {
        cx.failure.set(None);
        cx.retry.set(false);
        cx.omitted_fields.borrow_mut().clear();
        cx.substituted.borrow_mut().clear();
        let root = De::new(doc.root(), "", &cx);
        match cx.settle(root.node, root.path, T::deserialize(root)) {
            Ok(value) => {
                if cx.diags.borrow().is_empty() {
                    return Ok(value);
                }
                partial = Some(Partial {
                    value,
                    substituted: cx.substituted.take(),
                });
                break;
            }
            Err(_) => {
                let Some(id) = cx.failure.get() else {
                    // Only missing fields failed: the next run fills them with placeholders.
                    if cx.retry.get() {
                        continue;
                    }
                    break;
                };
                let mut poison = cx.poison.borrow_mut();
                let mode = poison.entry(id).or_insert(Mode::Fresh);
                *mode = match mode {
                    Mode::Fresh => Mode::Placeholder,
                    Mode::Placeholder => Mode::Omit,
                    Mode::Omit => break,
                };
                if id == node_id(doc.root()) && *mode == Mode::Omit {
                    break;
                }
            }
        }
    }
    let mut diags = cx.diags.into_inner();
    if diags.is_empty() {
        // Defensive: a failure is always reported somewhere, but never fail without a message.
        diags.push(Diagnostic::new(
            doc.file(),
            Some(doc.root().span),
            "",
            "could not decode this document",
        ));
    }
    drop_missing_explained_by_typos(&mut diags);
    let mut diags = Diagnostics(diags);
    diags.sort();
    Err((diags, partial))
}

// === impl Partial ===

impl<T> Partial<T> {
    /// Whether `path` is a substituted path or lies below one.
    pub fn covers(&self, path: &str) -> bool {
        self.substituted.iter().any(|s| {
            s.is_empty()
                || path
                    .strip_prefix(s.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }
}

/// `delya: 1s` yields both "unknown field `delya`, did you mean `delay`?" and "missing field
/// `delay`"; the second says nothing the first does not, so it goes.
fn drop_missing_explained_by_typos(diags: &mut Vec<Diagnostic>) {
    let explained: HashSet<(String, String)> = diags
        .iter()
        .filter_map(|d| {
            let (_, suggested) = d.message.split_once("did you mean `")?;
            let field = suggested.strip_suffix("`?")?;
            let parent = d.path.rsplit_once('.').map_or("", |(p, _)| p);
            Some((parent.to_string(), field.to_string()))
        })
        .collect();
    diags.retain(|d| {
        let Some(field) = d
            .message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        else {
            return true;
        };
        !explained.contains(&(d.path.clone(), field.to_string()))
    });
}

/// What a later run does with a node that failed in an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Fresh,
    /// Hand serde a placeholder without reading the node.
    Placeholder,
    /// Leave the node out of its list or map.
    Omit,
}

/// Shared state of one `decode` call.
struct Cx<'d> {
    doc: &'d Document,
    diags: RefCell<Vec<Diagnostic>>,
    /// Nodes (by address in `doc`) that failed in an earlier run.
    poison: RefCell<HashMap<usize, Mode>>,
    /// Placeholders handed out so far in this run: an error raised above one may be an artifact.
    replaced: Cell<usize>,
    /// Nodes left out so far in this run: an error above one may be an artifact.
    omitted: Cell<usize>,
    /// Fields left out of structs in this run, by struct node: their "missing field" is an
    /// artifact, while other missing fields of the same struct are real.
    omitted_fields: RefCell<HashSet<(usize, String)>>,
    /// The first node that failed unrecoverably in this run.
    failure: Cell<Option<usize>>,
    /// Fields found missing, by struct node: later runs hand serde a placeholder for each.
    missing: RefCell<HashMap<usize, Vec<&'static str>>>,
    /// A field was found missing for the first time in this run: run again to fill it.
    retry: Cell<bool>,
    /// Paths where this run handed out a placeholder or left a node out.
    substituted: RefCell<Vec<String>>,
}

/// The decoder's error. Problems are recorded in [`Cx`] where they happen, so what travels up
/// through serde only says "already reported" — or carries a message raised by a `Deserialize`
/// impl, which the nearest node boundary records at its node.
#[derive(Debug)]
enum Error {
    Reported,
    Msg(String),
    Missing(&'static str),
}

/// Counters at the start of a node, to tell whether its error may be caused by a substitute.
#[derive(Clone, Copy)]
struct Mark {
    replaced: usize,
    omitted: usize,
}

/// A deserializer for one node. The path is borrowed from the caller, which keeps it for
/// reporting after serde consumed the deserializer: one path string per node, never a copy.
#[derive(Clone, Copy)]
struct De<'a, 'd> {
    node: &'a Node,
    path: &'a str,
    cx: &'a Cx<'d>,
}

/// Hands serde a value of whatever type it asks for, without reading anything.
struct Placeholder;

struct SeqAcc<'a, 'd> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    path: &'a str,
    cx: &'a Cx<'d>,
}

struct MapAcc<'a, 'd> {
    node: &'a Node,
    entries: std::slice::Iter<'a, (Node, Node)>,
    /// The struct's field names; `None` for a plain map.
    fields: Option<&'static [&'static str]>,
    /// The value of the entry whose key was just returned, with its path; `None` as the node
    /// for a missing field, filled with a placeholder.
    value: Option<(Option<&'a Node>, String)>,
    /// How many of the struct's missing fields were handed out so far.
    filled: usize,
    path: &'a str,
    cx: &'a Cx<'d>,
}

/// A variant: its name node and, for `{variant: value}`, the value node.
struct EnumAcc<'a, 'd> {
    name: &'a str,
    value: Option<&'a Node>,
    node: &'a Node,
    path: String,
    cx: &'a Cx<'d>,
}

struct PlaceholderSeq(usize);
struct PlaceholderStruct(std::slice::Iter<'static, &'static str>);
struct PlaceholderEnum(&'static str);

fn node_id(node: &Node) -> usize {
    std::ptr::from_ref(node) as usize
}

// === impl Cx ===

impl Cx<'_> {
    fn report(&self, d: Diagnostic) {
        let mut diags = self.diags.borrow_mut();
        // Later runs find the same problems again; keep one of each.
        if !diags.contains(&d) {
            diags.push(d);
        }
    }

    fn report_at(&self, node: &Node, path: &str, message: String) {
        self.report(Diagnostic::new(
            self.doc.file(),
            Some(node.span),
            path,
            message,
        ));
    }

    fn mode(&self, node: &Node) -> Mode {
        // Asked for every node; a valid file's first run has nothing poisoned, so skip hashing.
        let poison = self.poison.borrow();
        if poison.is_empty() {
            return Mode::Fresh;
        }
        poison.get(&node_id(node)).copied().unwrap_or(Mode::Fresh)
    }

    fn mark(&self) -> Mark {
        Mark {
            replaced: self.replaced.get(),
            omitted: self.omitted.get(),
        }
    }

    fn fail(&self, node: &Node) -> Error {
        if self.failure.get().is_none() {
            self.failure.set(Some(node_id(node)));
        }
        Error::Reported
    }

    /// Records a message that reached the boundary of `node` and marks `node` as failed, unless
    /// the message is an artifact of a substitute handed out below it (see [`Mark`]).
    fn settle<T>(&self, node: &Node, path: &str, result: Result<T, Error>) -> Result<T, Error> {
        self.settle_from(
            node,
            path,
            result,
            Mark {
                replaced: 0,
                omitted: 0,
            },
        )
    }

    fn settle_from<T>(
        &self,
        node: &Node,
        path: &str,
        result: Result<T, Error>,
        before: Mark,
    ) -> Result<T, Error> {
        let now = self.mark();
        match result {
            Ok(v) => Ok(v),
            Err(Error::Reported) => Err(Error::Reported),
            Err(Error::Missing(field)) => {
                let artifact = self
                    .omitted_fields
                    .borrow()
                    .contains(&(node_id(node), field.to_owned()));
                if !artifact {
                    self.report_at(node, path, format!("missing field `{field}`"));
                }
                // First time: fill the field next run and keep the struct's other fields. Again
                // (the struct's map is not ours to fill, or the placeholder was refused): fail
                // the struct as any other value.
                if matches!(node.value, Value::Map(_)) {
                    let mut missing = self.missing.borrow_mut();
                    let fields = missing.entry(node_id(node)).or_default();
                    if !fields.contains(&field) {
                        fields.push(field);
                        self.retry.set(true);
                        return Err(Error::Reported);
                    }
                }
                Err(self.fail(node))
            }
            Err(Error::Msg(msg)) => {
                if now.replaced == before.replaced && now.omitted == before.omitted {
                    self.report_at(node, path, msg);
                }
                Err(self.fail(node))
            }
        }
    }

    /// Deserializes `seed` from `node`, recording its problems at `node`.
    fn child<'de, S: DeserializeSeed<'de>>(
        &self,
        seed: S,
        node: &Node,
        path: String,
    ) -> Result<S::Value, Error> {
        let before = self.mark();
        let result = seed.deserialize(De::new(node, &path, self));
        self.settle_from(node, &path, result, before)
    }
}

// === impl Error ===

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Reported => f.write_str("already reported"),
            Error::Msg(m) => f.write_str(m),
            Error::Missing(field) => write!(f, "missing field `{field}`"),
        }
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::Msg(msg.to_string())
    }

    fn missing_field(field: &'static str) -> Self {
        Error::Missing(field)
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Error::Msg(unknown("value", variant, expected))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Error::Msg(unknown("field", field, expected))
    }
}

/// "unknown field `delya`, did you mean `delay`?" or "…, expected one of: a, b".
fn unknown(what: &str, name: &str, expected: &[&str]) -> String {
    match did_you_mean_in(name, expected) {
        Some(close) => format!("unknown {what} `{name}`, did you mean `{close}`?"),
        None if expected.is_empty() => format!("unknown {what} `{name}`, none are expected here"),
        None => format!(
            "unknown {what} `{name}`, expected one of: {}",
            expected.join(", ")
        ),
    }
}

fn did_you_mean_in<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    did_you_mean(word, candidates.iter().copied())
}

// === impl De ===

/// Generates `Deserializer` methods that first honour poisoning, then run `$imp`.
macro_rules! guarded {
    ($($method:ident => $imp:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            if self.cx.mode(self.node) == Mode::Placeholder {
                return self.placeholder(visitor, |p, v| p.$method(v));
            }
            self.$imp(visitor)
        }
    )*};
}

/// Integer methods: read the exact value, check the range, visit.
macro_rules! integers {
    ($($method:ident: $ty:ty => $visit:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            if self.cx.mode(self.node) == Mode::Placeholder {
                return self.placeholder(visitor, |p, v| p.$method(v));
            }
            match self.integer(<$ty>::MIN.into(), <$ty>::MAX.into()) {
                // The range was just checked against `$ty`, so the conversion cannot fail.
                Ok(n) => match <$ty>::try_from(n) {
                    Ok(n) => visitor.$visit(n.into()),
                    Err(_) => self.mismatch(visitor, "an integer".to_owned(), |p, v| p.$method(v)),
                },
                Err(expected) => self.mismatch(visitor, expected, |p, v| p.$method(v)),
            }
        }
    )*};
}

impl<'a, 'd> De<'a, 'd> {
    fn new(node: &'a Node, path: &'a str, cx: &'a Cx<'d>) -> Self {
        De { node, path, cx }
    }

    /// Reports "expected …, found …" here, then carries on with a placeholder.
    fn mismatch<'de, V: Visitor<'de>>(
        self,
        visitor: V,
        expected: String,
        with: impl FnOnce(Placeholder, V) -> Result<V::Value, Error>,
    ) -> Result<V::Value, Error> {
        let message = format!("expected {expected}, found {}", self.node.describe());
        self.cx.report_at(self.node, self.path, message);
        self.placeholder(visitor, with)
    }

    fn placeholder<'de, V: Visitor<'de>>(
        self,
        visitor: V,
        with: impl FnOnce(Placeholder, V) -> Result<V::Value, Error>,
    ) -> Result<V::Value, Error> {
        self.cx.replaced.set(self.cx.replaced.get() + 1);
        self.cx.substituted.borrow_mut().push(self.path.to_owned());
        with(Placeholder, visitor).map_err(|_| self.cx.fail(self.node))
    }

    /// The exact integer written here, within `min..=max`; otherwise what was expected.
    fn integer(&self, min: i128, max: i128) -> Result<i128, String> {
        let kind = if min == 0 {
            "an unsigned integer"
        } else {
            "an integer"
        };
        let n = match &self.node.value {
            Value::Int(i) => i128::from(*i),
            // Integers beyond `i64` are stored as floats; their text is still exact.
            Value::Float(_) if !self.node.is_quoted() => {
                parse_int(&self.node.raw).ok_or_else(|| kind.to_owned())?
            }
            _ => return Err(kind.to_owned()),
        };
        if n < 0 && min == 0 {
            return Err(kind.to_owned());
        }
        if n < min || n > max {
            return Err(format!("an integer from {min} to {max}"));
        }
        Ok(n)
    }

    fn any<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => match u64::try_from(*i) {
                Ok(u) => visitor.visit_u64(u),
                Err(_) => visitor.visit_i64(*i),
            },
            Value::Float(f) => match parse_int(&self.node.raw).map(u64::try_from) {
                Some(Ok(u)) => visitor.visit_u64(u),
                _ => visitor.visit_f64(*f),
            },
            Value::Str(s) => visitor.visit_str(s),
            Value::Seq(_) => self.seq(visitor),
            Value::Map(_) => self.map(visitor, None),
        }
    }

    fn bool<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.value {
            Value::Bool(b) => visitor.visit_bool(b),
            _ => self.mismatch(visitor, "`true` or `false`".into(), |p, v| {
                p.deserialize_bool(v)
            }),
        }
    }

    fn float<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.value {
            #[allow(clippy::cast_precision_loss)]
            Value::Int(i) => visitor.visit_f64(i as f64),
            Value::Float(f) => visitor.visit_f64(f),
            _ => self.mismatch(visitor, "a number".into(), |p, v| p.deserialize_f64(v)),
        }
    }

    fn char<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut chars = self.node.raw.chars();
        match (&self.node.value, chars.next(), chars.next()) {
            (Value::Str(_), Some(c), None) => visitor.visit_char(c),
            _ => self.mismatch(visitor, "a single character".into(), |p, v| {
                p.deserialize_char(v)
            }),
        }
    }

    fn str<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Str(s) => visitor.visit_str(s),
            // `name: 123` or `version: 1.10` means the text as written (YAML users rarely quote).
            Value::Bool(_) | Value::Int(_) | Value::Float(_) if !self.node.raw.is_empty() => {
                visitor.visit_str(&self.node.raw)
            }
            _ => self.mismatch(visitor, "a string".into(), |p, v| p.deserialize_str(v)),
        }
    }

    fn bytes<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Str(s) => visitor.visit_bytes(s.as_bytes()),
            _ => self.mismatch(visitor, "a string".into(), |p, v| p.deserialize_bytes(v)),
        }
    }

    fn option<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn unit<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.value {
            Value::Null => visitor.visit_unit(),
            _ => self.mismatch(visitor, "nothing (`null`)".into(), |p, v| {
                p.deserialize_unit(v)
            }),
        }
    }

    fn seq<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Seq(items) => visitor.visit_seq(SeqAcc {
                items: items.iter(),
                index: 0,
                path: self.path,
                cx: self.cx,
            }),
            _ => self.mismatch(visitor, "a sequence".into(), |p, v| p.deserialize_seq(v)),
        }
    }

    fn map<'de, V: Visitor<'de>>(
        self,
        visitor: V,
        fields: Option<&'static [&'static str]>,
    ) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Map(entries) => visitor.visit_map(MapAcc {
                node: self.node,
                entries: entries.iter(),
                fields,
                value: None,
                filled: 0,
                path: self.path,
                cx: self.cx,
            }),
            _ => match fields {
                Some(fields) => self.mismatch(visitor, "a map".into(), |p, v| {
                    p.deserialize_struct("", fields, v)
                }),
                None => self.mismatch(visitor, "a map".into(), |p, v| p.deserialize_map(v)),
            },
        }
    }

    fn enumeration<'de, V: Visitor<'de>>(
        self,
        visitor: V,
        variants: &'static [&'static str],
    ) -> Result<V::Value, Error> {
        let (name_node, value) = match &self.node.value {
            Value::Map(entries) if entries.len() == 1 => (&entries[0].0, Some(&entries[0].1)),
            Value::Str(_) | Value::Int(_) | Value::Bool(_) => (self.node, None),
            _ => {
                let expected = format!(
                    "one of: {} (a name, or a map with one key)",
                    variants.join(", ")
                );
                return self.mismatch(visitor, expected, |p, v| {
                    p.deserialize_enum("", variants, v)
                });
            }
        };
        let name = name_node.raw.as_str();
        if !variants.contains(&name) {
            // Checked here rather than by serde so decoding can carry on with a placeholder.
            self.cx
                .report_at(name_node, self.path, unknown("value", name, variants));
            return self.placeholder(visitor, |p, v| p.deserialize_enum("", variants, v));
        }
        let mut path = self.path.to_owned();
        if value.is_some() {
            push_key(&mut path, name);
        }
        visitor.visit_enum(EnumAcc {
            name,
            value,
            node: self.node,
            path,
            cx: self.cx,
        })
    }
}

impl<'de> de::Deserializer<'de> for De<'_, '_> {
    type Error = Error;

    guarded! {
        deserialize_any => any;
        deserialize_bool => bool;
        deserialize_f32 => float;
        deserialize_f64 => float;
        deserialize_char => char;
        deserialize_str => str;
        deserialize_string => str;
        deserialize_identifier => str;
        deserialize_bytes => bytes;
        deserialize_byte_buf => bytes;
        deserialize_option => option;
        deserialize_unit => unit;
        deserialize_seq => seq;
    }

    integers! {
        deserialize_i8: i8 => visit_i64;
        deserialize_i16: i16 => visit_i64;
        deserialize_i32: i32 => visit_i64;
        deserialize_i64: i64 => visit_i64;
        deserialize_i128: i128 => visit_i128;
        deserialize_u8: u8 => visit_u64;
        deserialize_u16: u16 => visit_u64;
        deserialize_u32: u32 => visit_u64;
        deserialize_u64: u64 => visit_u64;
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // `integer` works in `i128`, which holds every integer a file can write that fits u64
        // and more; u128 values beyond i128 are refused as out of range.
        if self.cx.mode(self.node) == Mode::Placeholder {
            return self.placeholder(visitor, |p, v| p.deserialize_u128(v));
        }
        match self.integer(0, i128::MAX) {
            Ok(n) => visitor.visit_u128(n.unsigned_abs()),
            Err(expected) => self.mismatch(visitor, expected, |p, v| p.deserialize_u128(v)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        if self.cx.mode(self.node) == Mode::Placeholder {
            return self.placeholder(visitor, |p, v| p.deserialize_tuple(len, v));
        }
        match self.node.value {
            Value::Seq(_) => self.seq(visitor),
            _ => self.mismatch(visitor, format!("a sequence of {len}"), |p, v| {
                p.deserialize_tuple(len, v)
            }),
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.cx.mode(self.node) == Mode::Placeholder {
            return self.placeholder(visitor, |p, v| p.deserialize_map(v));
        }
        self.map(visitor, None)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if self.cx.mode(self.node) == Mode::Placeholder {
            return self.placeholder(visitor, |p, v| p.deserialize_struct(name, fields, v));
        }
        self.map(visitor, Some(fields))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if self.cx.mode(self.node) == Mode::Placeholder {
            return self.placeholder(visitor, |p, v| p.deserialize_enum(name, variants, v));
        }
        self.enumeration(visitor, variants)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

// === impl SeqAcc ===

impl<'de> SeqAccess<'de> for SeqAcc<'_, '_> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        for item in self.items.by_ref() {
            let index = self.index;
            self.index += 1;
            let mut path = self.path.to_owned();
            push_index(&mut path, index);
            if self.cx.mode(item) == Mode::Omit {
                self.cx.omitted.set(self.cx.omitted.get() + 1);
                self.cx.substituted.borrow_mut().push(path);
                continue;
            }
            return self.cx.child(seed, item, path).map(Some);
        }
        Ok(None)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

// === impl MapAcc ===

impl<'de> MapAccess<'de> for MapAcc<'_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let cx = self.cx;
        for (key, value) in self.entries.by_ref() {
            let mut path = self.path.to_owned();
            if cx.mode(key) == Mode::Omit || cx.mode(value) == Mode::Omit {
                cx.omitted.set(cx.omitted.get() + 1);
                cx.omitted_fields
                    .borrow_mut()
                    .insert((node_id(self.node), key.raw.clone()));
                push_key(&mut path, &key.raw);
                cx.substituted.borrow_mut().push(path);
                continue;
            }
            let Some(fields) = self.fields else {
                push_key(&mut path, &key.raw);
                self.value = Some((Some(value), path.clone()));
                return cx.child(seed, key, path).map(Some);
            };
            if !matches!(key.value, Value::Str(_) | Value::Int(_) | Value::Bool(_)) {
                cx.report_at(
                    key,
                    &path,
                    format!("expected a field name, found {}", key.describe()),
                );
                continue;
            }
            push_key(&mut path, &key.raw);
            if !fields.contains(&key.raw.as_str()) {
                // Reported and skipped, never fatal, so every unknown field in the file shows.
                cx.report_at(key, &path, unknown("field", &key.raw, fields));
                continue;
            }
            self.value = Some((Some(value), path));
            let name: StrDeserializer<'_, Error> = key.raw.as_str().into_deserializer();
            return seed.deserialize(name).map(Some);
        }
        // The fields an earlier run found missing, each with a placeholder.
        if self.fields.is_some() {
            let field = cx
                .missing
                .borrow()
                .get(&node_id(self.node))
                .and_then(|f| f.get(self.filled).copied());
            if let Some(field) = field {
                self.filled += 1;
                let mut path = self.path.to_owned();
                push_key(&mut path, field);
                self.value = Some((None, path));
                let name: StrDeserializer<'_, Error> = field.into_deserializer();
                return seed.deserialize(name).map(Some);
            }
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let Some((value, path)) = self.value.take() else {
            return Err(Error::Msg(
                "a map value was asked for before its key".into(),
            ));
        };
        let Some(value) = value else {
            // A missing field: already reported at its struct.
            self.cx.replaced.set(self.cx.replaced.get() + 1);
            self.cx.substituted.borrow_mut().push(path);
            return seed
                .deserialize(Placeholder)
                .map_err(|_| self.cx.fail(self.node));
        };
        self.cx.child(seed, value, path)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

// === impl EnumAcc ===

impl<'de> EnumAccess<'de> for EnumAcc<'_, '_> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Error> {
        let name: StrDeserializer<'_, Error> = self.name.into_deserializer();
        Ok((seed.deserialize(name)?, self))
    }
}

impl<'de> VariantAccess<'de> for EnumAcc<'_, '_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.value {
            None => Ok(()),
            Some(v) if v.value == Value::Null => Ok(()),
            Some(v) => {
                let msg = format!("`{}` takes no value, found {}", self.name, v.describe());
                self.cx.report_at(v, &self.path, msg);
                Ok(())
            }
        }
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Error> {
        let node = self.value_node()?;
        self.cx.child(seed, node, self.path)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        let node = self.value_node()?;
        let before = self.cx.mark();
        let result =
            de::Deserializer::deserialize_tuple(De::new(node, &self.path, self.cx), len, visitor);
        self.cx.settle_from(node, &self.path, result, before)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let node = self.value_node()?;
        let before = self.cx.mark();
        let de = De::new(node, &self.path, self.cx);
        let result = de::Deserializer::deserialize_struct(de, "", fields, visitor);
        self.cx.settle_from(node, &self.path, result, before)
    }
}

impl<'a> EnumAcc<'a, '_> {
    /// The value of `{variant: value}`; a bare name has none, which is reported here.
    fn value_node(&self) -> Result<&'a Node, Error> {
        match self.value {
            Some(v) if self.cx.mode(v) == Mode::Omit => {
                // Left out after failing earlier: the enum as a whole fails (silently, as an
                // artifact) so that the next run replaces it.
                self.cx.omitted.set(self.cx.omitted.get() + 1);
                Err(Error::Msg("left out".into()))
            }
            Some(v) => Ok(v),
            None => {
                let msg = format!(
                    "`{}` needs a value: write it as a map, `{}: …`",
                    self.name, self.name
                );
                self.cx.report_at(self.node, &self.path, msg);
                Err(self.cx.fail(self.node))
            }
        }
    }
}

// === impl Placeholder ===

impl<'de> de::Deserializer<'de> for Placeholder {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bool(false)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i64(0)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(0)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f64(0.0)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f64(0.0)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_char(' ')
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("")
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("")
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("")
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bytes(&[])
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bytes(&[])
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_none()
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(PlaceholderSeq(0))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(PlaceholderSeq(len))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_seq(PlaceholderSeq(len))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(PlaceholderStruct([].iter()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(PlaceholderStruct(fields.iter()))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let first = variants.first().ok_or(Error::Reported)?;
        visitor.visit_enum(PlaceholderEnum(first))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

impl<'de> SeqAccess<'de> for PlaceholderSeq {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        if self.0 == 0 {
            return Ok(None);
        }
        self.0 -= 1;
        seed.deserialize(Placeholder).map(Some)
    }
}

impl<'de> MapAccess<'de> for PlaceholderStruct {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.0.next() {
            Some(field) => {
                let name: StrDeserializer<'_, Error> = field.into_deserializer();
                seed.deserialize(name).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        seed.deserialize(Placeholder)
    }
}

impl<'de> EnumAccess<'de> for PlaceholderEnum {
    type Error = Error;
    type Variant = Placeholder;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Placeholder), Error> {
        let name: StrDeserializer<'_, Error> = self.0.into_deserializer();
        Ok((seed.deserialize(name)?, Placeholder))
    }
}

impl<'de> VariantAccess<'de> for Placeholder {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Error> {
        seed.deserialize(Placeholder)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}
