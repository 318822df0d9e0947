//! Experiment files as a spanned tree: every value remembers where it was written.
//!
//! [`Document::parse`] reads YAML 1.2 (and JSON, which is checked with `serde_json` first and then
//! read by a small spanned JSON reader, because YAML has no UTF-16 surrogate escapes). Anchors,
//! aliases and merge keys (`<<`) are resolved here, so the decoder ([`crate::de`]) sees a plain
//! tree. Problems that leave a usable tree (duplicate keys, a bad merge, an unknown tag) are kept
//! in [`Document::diagnostics`] and reported again by [`crate::de::decode`], so that one run of
//! `chaosforge validate` shows everything; problems that leave no tree (syntax errors, several
//! documents, an empty file, an alias bomb) make `parse` fail.

use std::collections::HashMap;
use std::fmt::Write as _;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, ScanError, Tag};

use crate::diag::{Diagnostic, Diagnostics, Span};

/// Most nodes that aliases may add to a document (copies of anchored values), on top of the
/// nodes written in the file.
///
/// A few lines of nested aliases ("billion laughs") can otherwise expand to gigabytes. Written
/// nodes are not counted: their number is bounded by the file's length, and a generated
/// 1,000-fault experiment (about 17 nodes a fault) is a file users do write.
pub const MAX_NODES: usize = 10_000;

/// Deepest nesting of collections accepted; the decoder and `Drop` recurse over the tree.
pub const MAX_DEPTH: usize = 128;

/// A parsed experiment file: its name, its text and its spanned tree.
#[derive(Debug, Clone)]
pub struct Document {
    file: String,
    text: String,
    root: Node,
    diagnostics: Vec<Diagnostic>,
}

/// One value of the tree, with where it was written.
///
/// A value reached through an alias is a copy of the anchored value and keeps the anchored
/// value's spans: problems inside it are reported where its text is.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the value is written: a scalar including its quotes and tag, a flow collection from
    /// its opening to its closing bracket, a block collection from its first to its last entry.
    pub span: Span,
    /// The value, typed by the YAML 1.2 core schema.
    pub value: Value,
    /// How it was written.
    pub style: Style,
    /// For scalars, the text after unescaping and line folding but before typing (`0x1F`, `~`,
    /// `123`), so that a string field can take `name: 123` as written. Empty for collections.
    pub raw: String,
}

/// A value typed by the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits in an `i64` (decimal, `0x` or `0o`). Larger ones are [`Value::Float`],
    /// and the decoder re-reads them exactly from [`Node::raw`].
    Int(i64),
    /// A float, including `.inf`, `-.inf` and `.nan`.
    Float(f64),
    /// A string: any quoted scalar, and plain scalars that are nothing else.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order, with merge keys resolved and later duplicates dropped.
    Map(Vec<(Node, Node)>),
}

/// How a node was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// An unquoted scalar.
    Plain,
    /// `'…'`
    SingleQuoted,
    /// `"…"` (every JSON string).
    DoubleQuoted,
    /// `|` block scalar.
    Literal,
    /// `>` block scalar.
    Folded,
    /// An indented collection.
    Block,
    /// A `[…]` or `{…}` collection (every JSON array and object).
    Flow,
}

/// One step of a field path: `.name`, `[3]` or `["odd key"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// Maps byte offsets to 1-based lines and character columns.
struct LineIndex<'t> {
    text: &'t str,
    starts: Vec<usize>,
    /// Whether `text` is all ASCII: then a column is a byte distance.
    ascii: bool,
    /// The line of the last span asked for: the parser asks in file order, so the next one is
    /// most often on that line or the next, found without a binary search.
    last: std::cell::Cell<usize>,
}

// === impl Document ===

impl Document {
    /// Parses `text` (YAML 1.2 or JSON) read from `file` (used in diagnostics, as given).
    ///
    /// # Errors
    ///
    /// Every problem that leaves no usable tree: a syntax error (with its line and column), an
    /// empty file, more than one document, an alias or anchor problem, aliases that add more than
    /// [`MAX_NODES`] nodes, a document that nests deeper than [`MAX_DEPTH`]. Problems found before the
    /// fatal one are returned too.
    pub fn parse(file: &str, text: &str) -> Result<Document, Diagnostics> {
        let lines = LineIndex::new(text);
        // JSON goes through its own reader: YAML rejects JSON's surrogate-pair escapes
        // (`"\ud83d\ude00"`). Only text that serde_json accepts takes this path, so YAML flow
        // documents such as `{a: 1}` are still read as YAML.
        let looks_json = matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'['));
        let (root, diagnostics) =
            if looks_json && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
                let mut reader = JsonReader {
                    file,
                    lines: &lines,
                    pos: 0,
                    diags: Vec::new(),
                };
                reader.skip_ws();
                let root = reader.value(&mut Vec::new());
                (root, reader.diags)
            } else {
                let mut builder = Builder::new(file, &lines);
                let root = builder.run();
                (root, builder.diags)
            };
        match root {
            Some(root) => Ok(Document {
                file: file.to_owned(),
                text: text.to_owned(),
                root,
                diagnostics,
            }),
            None => {
                let mut diagnostics = diagnostics;
                if diagnostics.is_empty() {
                    // Defensive: every path to `None` records why, but never fail silently.
                    diagnostics.push(Diagnostic::new(file, None, "", "could not read the file"));
                }
                let mut d = Diagnostics(diagnostics);
                d.sort();
                Err(d)
            }
        }
    }

    /// Reads `path` and parses it, named in diagnostics as `path` is displayed.
    ///
    /// # Errors
    ///
    /// An unreadable file, or what [`Document::parse`] finds.
    pub fn read(path: &std::path::Path) -> Result<Document, Diagnostics> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic::new(
                file.clone(),
                None,
                "",
                format!("cannot read file: {e}"),
            )])
        })?;
        Document::parse(&file, &text)
    }

    /// The file name as given to [`Document::parse`].
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The whole source text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The root value.
    pub fn root(&self) -> &Node {
        &self.root
    }

    /// The value at `path` as a document of its own, with this file's name and text so that
    /// every position stays where it is written: how an experiment written inline in a game
    /// day file is decoded and compiled. Parse problems stay with `self`. `None` when `path`
    /// does not exist.
    pub fn subtree(&self, path: &str) -> Option<Document> {
        Some(Document {
            file: self.file.clone(),
            text: self.text.clone(),
            root: self.node_at(path)?.clone(),
            diagnostics: Vec::new(),
        })
    }

    /// Non-fatal problems found while parsing (duplicate keys, bad merge keys, unknown tags).
    /// [`crate::de::decode`] includes them in its result.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// The node at `path` (`faults[2].latency.delay`, `targets[0].labels.zone`,
    /// `labels["a.b"]`); `""` is the root. `None` when the path does not exist or is malformed.
    pub fn node_at(&self, path: &str) -> Option<&Node> {
        let segments = parse_path(path)?;
        let mut node = &self.root;
        for seg in &segments {
            node = node.child(seg)?.1;
        }
        Some(node)
    }

    /// The span of the value at `path`; if it does not exist, the span of its nearest existing
    /// ancestor (so "missing field" points at the enclosing map). `None` only for a malformed path.
    pub fn span_at(&self, path: &str) -> Option<Span> {
        let segments = parse_path(path)?;
        let mut node = &self.root;
        for seg in &segments {
            match node.child(seg) {
                Some((_, child)) => node = child,
                None => break,
            }
        }
        Some(node.span)
    }

    /// The span of the key of the map entry at `path` (for "unknown field" and "duplicate key");
    /// falls back to [`Document::span_at`] when `path` does not end in an existing key.
    pub fn key_span_at(&self, path: &str) -> Option<Span> {
        let segments = parse_path(path)?;
        if let Some((last, parents)) = segments.split_last() {
            let mut node = Some(&self.root);
            for seg in parents {
                node = node.and_then(|n| n.child(seg)).map(|(_, c)| c);
            }
            if let Some(Some(key)) = node.and_then(|n| n.child(last)).map(|(k, _)| k) {
                return Some(key.span);
            }
        }
        self.span_at(path)
    }

    /// A diagnostic about the value at `path`: this file, [`Document::span_at`]`(path)`, `path`.
    pub fn diag(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(&self.file, self.span_at(path), path, message)
    }

    /// A diagnostic pointing inside the scalar at `path`: `offset`/`len` are bytes of the scalar's
    /// value (e.g. the unit of `10 sex`).
    ///
    /// The column is exact when the value is written as-is in the file (plain or quoted on one
    /// line, without escapes); otherwise the diagnostic falls back to the whole node's span,
    /// because the value's bytes no longer line up with the file's.
    pub fn diag_in(
        &self,
        path: &str,
        offset: usize,
        len: usize,
        message: impl Into<String>,
    ) -> Diagnostic {
        let span = self
            .node_at(path)
            .and_then(|n| self.inner_span(n, offset, len));
        let span = span.or_else(|| self.span_at(path));
        Diagnostic::new(&self.file, span, path, message)
    }

    /// The span of `value[offset..offset + len]` for a scalar whose value is written verbatim.
    fn inner_span(&self, node: &Node, offset: usize, len: usize) -> Option<Span> {
        let quote = match node.style {
            Style::Plain => 0,
            Style::SingleQuoted | Style::DoubleQuoted => 1,
            _ => return None,
        };
        let written = self
            .text
            .get(node.span.offset..node.span.offset + node.span.len)?;
        // A tag (`!!str x`) precedes the value inside the span; find the value at its end.
        let body_len = node.raw.len() + 2 * quote;
        let body_start = written.len().checked_sub(body_len)?;
        let inner = written.get(body_start + quote..written.len() - quote)?;
        if inner != node.raw || node.raw.contains('\n') {
            return None;
        }
        let prefix = node.raw.get(..offset)?;
        let len = len.min(node.raw.len() - offset);
        let chars = written[..body_start + quote].chars().count() + prefix.chars().count();
        Some(Span {
            offset: node.span.offset + body_start + quote + offset,
            len,
            line: node.span.line,
            col: node.span.col + u32::try_from(chars).unwrap_or(0),
        })
    }
}

// === impl Node ===

impl Node {
    /// `true` for `'…'` and `"…"` scalars: their text is always a string, never a number.
    pub fn is_quoted(&self) -> bool {
        matches!(self.style, Style::SingleQuoted | Style::DoubleQuoted)
    }

    /// What the value is, for "expected …, found …" messages: `a map`, `a sequence`, `null`,
    /// or the scalar as written in backticks.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null if self.raw.is_empty() => "nothing".to_owned(),
            Value::Seq(_) => "a sequence".to_owned(),
            Value::Map(_) => "a map".to_owned(),
            _ if self.is_quoted() => format!("the string {:?}", self.raw),
            _ => format!("`{}`", self.raw),
        }
    }

    /// The map entry with the scalar key `key` (first one; later duplicates were dropped).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.child(&Segment::Key(key.to_owned())).map(|(_, v)| v)
    }

    /// The child at `seg`, with its key node for map entries.
    fn child(&self, seg: &Segment) -> Option<(Option<&Node>, &Node)> {
        match (&self.value, seg) {
            (Value::Map(entries), Segment::Key(k)) => entries
                .iter()
                .find(|(key, _)| key.is_scalar() && key.raw == *k)
                .map(|(key, v)| (Some(key), v)),
            (Value::Seq(items), Segment::Index(i)) => items.get(*i).map(|n| (None, n)),
            _ => None,
        }
    }

    fn is_scalar(&self) -> bool {
        !matches!(self.value, Value::Seq(_) | Value::Map(_))
    }

    /// Nodes in this subtree, for the expansion budget.
    fn size(&self) -> usize {
        1 + match &self.value {
            Value::Seq(items) => items.iter().map(Node::size).sum(),
            Value::Map(entries) => entries.iter().map(|(k, v)| k.size() + v.size()).sum(),
            _ => 0,
        }
    }
}

// === paths ===

/// Appends `.key` (or `["key"]` when the key is not a plain word) to `path`.
pub fn push_key(path: &mut String, key: &str) {
    let word = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if word {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        let _ = write!(path, "[{key:?}]");
    }
}

/// Appends `[index]` to `path`.
pub fn push_index(path: &mut String, index: usize) {
    let _ = write!(path, "[{index}]");
}

/// Splits a path written by [`push_key`]/[`push_index`] into steps.
fn parse_path(path: &str) -> Option<Vec<Segment>> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            if after.starts_with('"') {
                // A quoted key: reuse JSON string syntax, which `{:?}` of a plain key matches.
                let mut stream = serde_json::Deserializer::from_str(after).into_iter::<String>();
                let key = stream.next()?.ok()?;
                rest = after.get(stream.byte_offset()..)?.strip_prefix(']')?;
                out.push(Segment::Key(key));
            } else {
                let end = after.find(']')?;
                out.push(Segment::Index(after[..end].parse().ok()?));
                rest = &after[end + 1..];
            }
        } else {
            let rest2 = if out.is_empty() {
                rest
            } else {
                rest.strip_prefix('.')?
            };
            let end = rest2.find(['.', '[']).unwrap_or(rest2.len());
            if end == 0 {
                return None;
            }
            out.push(Segment::Key(rest2[..end].to_owned()));
            rest = &rest2[end..];
        }
    }
    Some(out)
}

// === scalars ===

/// Types a plain scalar by the YAML 1.2 core schema.
fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(n) = parse_int(s) {
        return match i64::try_from(n) {
            Ok(i) => Value::Int(i),
            // Kept as a float so that it is still a number; the decoder re-reads `raw` exactly.
            #[allow(clippy::cast_precision_loss)]
            Err(_) => Value::Float(n as f64),
        };
    }
    if is_core_float(s)
        && let Ok(f) = s.parse::<f64>()
    {
        return Value::Float(f);
    }
    Value::Str(s.to_owned())
}

/// An integer in core-schema syntax (`-12`, `+3`, `0x1F`, `0o17`), exactly.
pub fn parse_int(s: &str) -> Option<i128> {
    let digits = |t: &str, radix: u32| {
        !t.is_empty() && t.len() <= 40 && t.chars().all(|c| c.is_digit(radix))
    };
    if let Some(hex) = s.strip_prefix("0x") {
        return digits(hex, 16).then(|| i128::from_str_radix(hex, 16).ok())?;
    }
    if let Some(oct) = s.strip_prefix("0o") {
        return digits(oct, 8).then(|| i128::from_str_radix(oct, 8).ok())?;
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    digits(unsigned, 10).then(|| s.parse::<i128>().ok())?
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, checked by hand because Rust's float
/// parser also takes `inf`, `nan` and `infinity`, which YAML reads as strings.
fn is_core_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = all_digits(int)
        && frac.is_none_or(all_digits)
        && (!int.is_empty() || frac.is_some_and(|f| !f.is_empty()));
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exp_ok
}

// === impl LineIndex ===

impl<'t> LineIndex<'t> {
    fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex {
            text,
            starts,
            ascii: text.is_ascii(),
            last: std::cell::Cell::new(1),
        }
    }

    /// The span of bytes `start..end` (clamped to the text).
    fn span(&self, start: usize, end: usize) -> Span {
        let start = self.floor(start.min(self.text.len()));
        let end = self.floor(end.clamp(start, self.text.len()));
        let line = self.line_of(start);
        let line_start = self.starts[line - 1];
        // Columns count characters; in ASCII text (most files) that is the byte distance.
        let col = if self.ascii {
            start - line_start + 1
        } else {
            self.text[line_start..start].chars().count() + 1
        };
        Span {
            offset: start,
            len: end - start,
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX),
        }
    }

    /// The 1-based line holding byte `at`.
    fn line_of(&self, at: usize) -> usize {
        // `starts[line - 1] <= at < starts[line]` (or `line` is the last line).
        let on = |line: usize| {
            self.starts.get(line - 1).is_some_and(|&s| s <= at)
                && self.starts.get(line).is_none_or(|&next| at < next)
        };
        let last = self.last.get();
        let line = if on(last) {
            last
        } else if on(last + 1) {
            last + 1
        } else {
            self.starts.partition_point(|&s| s <= at).max(1)
        };
        self.last.set(line);
        line
    }

    fn floor(&self, mut i: usize) -> usize {
        while !self.text.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

// === YAML ===

/// Builds the tree from saphyr's events with an explicit stack (no recursion on input depth).
struct Builder<'a, 't> {
    file: &'a str,
    lines: &'a LineIndex<'t>,
    /// Byte offset of each character (saphyr's markers count characters); `None` for ASCII.
    char_bytes: Option<Vec<usize>>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    diags: Vec<Diagnostic>,
    root: Option<Node>,
}

/// A collection being built.
struct Frame {
    anchor: usize,
    start: usize,
    flow: bool,
    kind: FrameKind,
}

enum FrameKind {
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>, Option<Node>),
}

/// Why building stopped early; the diagnostic is already recorded.
struct Fatal;

impl<'a, 't> Builder<'a, 't> {
    fn new(file: &'a str, lines: &'a LineIndex<'t>) -> Self {
        let text = lines.text;
        let char_bytes = (!lines.ascii).then(|| {
            text.char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(text.len()))
                .collect()
        });
        Builder {
            file,
            lines,
            char_bytes,
            stack: Vec::new(),
            anchors: HashMap::new(),
            nodes: 0,
            diags: Vec::new(),
            root: None,
        }
    }

    /// Runs the parser to the end; `None` after a fatal problem.
    fn run(&mut self) -> Option<Node> {
        let text = self.lines.text;
        let mut parser = Parser::new_from_str(text);
        let mut documents = 0;
        while let Some(event) = parser.next_event() {
            let (event, span) = match event {
                Ok(ev) => ev,
                Err(e) => {
                    self.syntax_error(&e);
                    return None;
                }
            };
            let (start, end) = (self.byte(span.start), self.byte(span.end));
            let step = match event {
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        let at = self.lines.span(start, end);
                        self.fatal_at(
                            Some(at),
                            "",
                            "a file holds one document; found a second one (`---`)",
                        )
                    } else {
                        Ok(())
                    }
                }
                Event::Scalar(value, style, anchor, tag) => {
                    let node = self.scalar(value.into_owned(), style, tag.as_deref(), start, end);
                    self.finish(node, anchor)
                }
                Event::Alias(id) => self.alias(id, start, end),
                Event::SequenceStart(anchor, tag) => {
                    self.open(anchor, tag.as_deref(), start, false)
                }
                Event::MappingStart(anchor, tag) => self.open(anchor, tag.as_deref(), start, true),
                Event::SequenceEnd | Event::MappingEnd => self.close(end),
                Event::StreamEnd => break,
                _ => Ok(()),
            };
            if step.is_err() {
                return None;
            }
        }
        if documents == 0 {
            self.diags.push(Diagnostic::new(
                self.file,
                // Point at the start, so every diagnostic reads file:line:col.
                Some(Span {
                    offset: 0,
                    len: 0,
                    line: 1,
                    col: 1,
                }),
                "",
                "the file is empty: expected a YAML or JSON document",
            ));
        }
        self.root.take()
    }

    fn byte(&self, m: Marker) -> usize {
        match &self.char_bytes {
            None => m.index(),
            Some(table) => table
                .get(m.index())
                .copied()
                .unwrap_or(self.lines.text.len()),
        }
    }

    fn syntax_error(&mut self, e: &ScanError) {
        let at = self.byte(*e.marker());
        let span = self.lines.span(at, at);
        // No field path: the text is broken, and the field being read may not be the culprit.
        self.diags.push(Diagnostic::new(
            self.file,
            Some(span),
            "",
            format!("syntax error: {}", e.info()),
        ));
    }

    fn fatal_at(&mut self, span: Option<Span>, path: &str, msg: &str) -> Result<(), Fatal> {
        self.diags
            .push(Diagnostic::new(self.file, span, path, msg.to_owned()));
        Err(Fatal)
    }

    /// Counts `n` more alias copies against [`MAX_NODES`].
    fn charge(&mut self, n: usize, at: Span) -> Result<(), Fatal> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            let path = self.path();
            let msg =
                format!("aliases expand the document by more than {MAX_NODES} values; refusing it");
            return self.fatal_at(Some(at), &path, &msg);
        }
        Ok(())
    }

    /// The path of the value being built, for parse diagnostics.
    fn path(&self) -> String {
        let mut path = String::new();
        for frame in &self.stack {
            match &frame.kind {
                FrameKind::Seq(items) => push_index(&mut path, items.len()),
                FrameKind::Map(_, Some(key)) => push_key(&mut path, &key.raw),
                FrameKind::Map(_, None) => {}
            }
        }
        path
    }

    /// Takes the scanner's own string as `raw` (it allocated one per scalar already).
    fn scalar(
        &mut self,
        value: String,
        style: ScalarStyle,
        tag: Option<&Tag>,
        start: usize,
        end: usize,
    ) -> Node {
        let span = self.lines.span(start, end);
        let style = match style {
            ScalarStyle::Plain => Style::Plain,
            ScalarStyle::SingleQuoted => Style::SingleQuoted,
            ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
            ScalarStyle::Literal => Style::Literal,
            ScalarStyle::Folded => Style::Folded,
        };
        let typed = if style == Style::Plain {
            resolve_plain(&value)
        } else {
            Value::Str(value.clone())
        };
        let typed = match tag {
            None => typed,
            Some(tag) => self.apply_tag(tag, &value, typed, span),
        };
        Node {
            span,
            value: typed,
            style,
            raw: value,
        }
    }

    /// Applies an explicit core tag (`!!str 123`); other tags are reported and ignored.
    fn apply_tag(&mut self, tag: &Tag, raw: &str, typed: Value, span: Span) -> Value {
        let wanted = if tag.is_yaml_core_schema() {
            tag.suffix.as_str()
        } else if tag.handle == "!" && tag.suffix.is_empty() {
            // The non-specific tag `!` means "a string".
            "str"
        } else {
            ""
        };
        let resolved = resolve_plain(raw);
        let ok = match wanted {
            "str" => return Value::Str(raw.to_owned()),
            "int" => matches!(resolved, Value::Int(_)),
            "float" => matches!(resolved, Value::Float(_) | Value::Int(_)),
            "bool" => matches!(resolved, Value::Bool(_)),
            "null" => matches!(resolved, Value::Null),
            _ => {
                let path = self.path();
                self.diags.push(Diagnostic::new(
                    self.file,
                    Some(span),
                    path,
                    format!("unsupported tag `{tag}`"),
                ));
                return typed;
            }
        };
        if ok {
            match (wanted, resolved) {
                ("float", Value::Int(i)) =>
                {
                    #[allow(clippy::cast_precision_loss)]
                    Value::Float(i as f64)
                }
                (_, v) => v,
            }
        } else {
            let path = self.path();
            self.diags.push(Diagnostic::new(
                self.file,
                Some(span),
                path,
                format!("`{raw}` is not a valid `!!{wanted}`"),
            ));
            typed
        }
    }

    fn alias(&mut self, id: usize, start: usize, end: usize) -> Result<(), Fatal> {
        let at = self.lines.span(start, end);
        let Some(node) = self.anchors.get(&id) else {
            let path = self.path();
            return self.fatal_at(
                Some(at),
                &path,
                "alias to an anchor that is not defined yet (or refers to itself)",
            );
        };
        let size = node.size();
        let node = node.clone();
        self.charge(size, at)?;
        self.attach(node)
    }

    fn open(
        &mut self,
        anchor: usize,
        tag: Option<&Tag>,
        start: usize,
        map: bool,
    ) -> Result<(), Fatal> {
        let at = self.lines.span(start, start);
        if self.stack.len() >= MAX_DEPTH {
            let path = self.path();
            let msg = format!("values nest deeper than {MAX_DEPTH} levels");
            return self.fatal_at(Some(at), &path, &msg);
        }
        if let Some(tag) = tag {
            let expected = if map { "map" } else { "seq" };
            if !(tag.is_yaml_core_schema() && tag.suffix == expected) {
                let path = self.path();
                self.diags.push(Diagnostic::new(
                    self.file,
                    Some(at),
                    path,
                    format!("unsupported tag `{tag}`"),
                ));
            }
        }
        let flow = matches!(self.lines.text.as_bytes().get(start), Some(b'[' | b'{'));
        let kind = if map {
            FrameKind::Map(Vec::new(), None)
        } else {
            FrameKind::Seq(Vec::new())
        };
        self.stack.push(Frame {
            anchor,
            start,
            flow,
            kind,
        });
        Ok(())
    }

    fn close(&mut self, end: usize) -> Result<(), Fatal> {
        let Some(frame) = self.stack.pop() else {
            return Ok(());
        };
        let (first, last) = match &frame.kind {
            FrameKind::Seq(items) => (items.first().map(|n| n.span), items.last().map(|n| n.span)),
            FrameKind::Map(entries, _) => (
                entries.first().map(|(k, _)| k.span),
                entries.last().map(|(_, v)| v.span),
            ),
        };
        let span = if frame.flow {
            self.lines.span(frame.start, end)
        } else {
            // A block collection's start event sits at its anchor or first `-`; spanning its
            // entries keeps "missing field" on the line of the first key.
            let start = match (&frame.kind, first) {
                (FrameKind::Map(..), Some(f)) => f.offset,
                _ => frame.start,
            };
            let end = last.map_or(start, |l| l.offset + l.len);
            self.lines.span(start, end)
        };
        let (value, style) = match frame.kind {
            FrameKind::Seq(items) => (Value::Seq(items), frame.flow),
            FrameKind::Map(entries, _) => (Value::Map(self.merge(entries)?), frame.flow),
        };
        let node = Node {
            span,
            value,
            style: if style { Style::Flow } else { Style::Block },
            raw: String::new(),
        };
        self.finish(node, frame.anchor)
    }

    /// Resolves merge keys: entries of `<<: *base` (or `<<: [*a, *b]`, earlier wins) are added
    /// unless the map sets that key itself.
    fn merge(&mut self, entries: Vec<(Node, Node)>) -> Result<Vec<(Node, Node)>, Fatal> {
        let is_merge = |k: &Node| k.style == Style::Plain && k.raw == "<<";
        if !entries.iter().any(|(k, _)| is_merge(k)) {
            return Ok(entries);
        }
        let (merges, mut out): (Vec<_>, Vec<_>) =
            entries.into_iter().partition(|(k, _)| is_merge(k));
        for (_, value) in merges {
            let sources = match value.value {
                Value::Map(m) => vec![m],
                Value::Seq(items) => {
                    let mut maps = Vec::new();
                    for item in items {
                        match item.value {
                            Value::Map(m) => maps.push(m),
                            _ => self.bad_merge(item.span),
                        }
                    }
                    maps
                }
                _ => {
                    self.bad_merge(value.span);
                    continue;
                }
            };
            for (k, v) in sources.into_iter().flatten() {
                let present = out.iter().any(|(e, _): &(Node, Node)| same_key(e, &k));
                if !present {
                    // Copies were charged when the alias was expanded; merging moves them.
                    out.push((k, v));
                }
            }
        }
        Ok(out)
    }

    fn bad_merge(&mut self, span: Span) {
        let mut path = self.path();
        push_key(&mut path, "<<");
        self.diags.push(Diagnostic::new(
            self.file,
            Some(span),
            path,
            "a merge key `<<` takes a map or a list of maps",
        ));
    }

    /// Records `node` as an anchor target and attaches it to its parent.
    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), Fatal> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        self.attach(node)
    }

    fn attach(&mut self, node: Node) -> Result<(), Fatal> {
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        match &mut frame.kind {
            FrameKind::Seq(items) => items.push(node),
            FrameKind::Map(_, key @ None) => *key = Some(node),
            FrameKind::Map(entries, key @ Some(_)) => {
                let Some(k) = key.take() else {
                    return Ok(());
                };
                if let Some((first, _)) = entries.iter().find(|(e, _)| same_key(e, &k)) {
                    let first = first.span;
                    let mut path = self.path();
                    push_key(&mut path, &k.raw);
                    self.diags.push(duplicate(self.file, &k, first, path));
                    return Ok(());
                }
                entries.push((k, node));
            }
        }
        Ok(())
    }
}

/// Two keys are the same when both are scalars with the same text (`1` and `"1"` too: both
/// become the same field name).
fn same_key(a: &Node, b: &Node) -> bool {
    a.is_scalar() && b.is_scalar() && a.raw == b.raw
}

fn duplicate(file: &str, key: &Node, first: Span, path: String) -> Diagnostic {
    Diagnostic::new(
        file,
        Some(key.span),
        path,
        format!(
            "duplicate key `{}` (first defined at line {}, column {}); this one is ignored",
            key.raw, first.line, first.col
        ),
    )
}

// === JSON ===

/// A spanned reader for text that `serde_json` already accepted, so its error paths are only
/// defensive (they report instead of panicking).
struct JsonReader<'a, 't> {
    file: &'a str,
    lines: &'a LineIndex<'t>,
    pos: usize,
    diags: Vec<Diagnostic>,
}

impl JsonReader<'_, '_> {
    fn bytes(&self) -> &[u8] {
        self.lines.text.as_bytes()
    }

    fn skip_ws(&mut self) {
        while matches!(
            self.bytes().get(self.pos),
            Some(b' ' | b'\t' | b'\n' | b'\r')
        ) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        self.skip_ws();
        if self.bytes().get(self.pos) == Some(&b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn error(&mut self, path: &[String]) -> Option<Node> {
        let span = self.lines.span(self.pos, self.pos);
        self.diags.push(Diagnostic::new(
            self.file,
            Some(span),
            path.concat(),
            "invalid JSON",
        ));
        None
    }

    /// One value; `path` holds the pieces of the current field path.
    fn value(&mut self, path: &mut Vec<String>) -> Option<Node> {
        self.skip_ws();
        if path.len() > MAX_DEPTH {
            return self.error(path);
        }
        let start = self.pos;
        match self.bytes().get(start)? {
            b'{' => {
                self.pos += 1;
                let mut entries: Vec<(Node, Node)> = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.skip_ws();
                        let key = self.string()?;
                        if !self.eat(b':') {
                            return self.error(path);
                        }
                        let mut seg = String::new();
                        push_key(&mut seg, &key.raw);
                        if !seg.starts_with('[') && !path.is_empty() {
                            seg.insert(0, '.');
                        }
                        path.push(seg);
                        let value = self.value(path)?;
                        if let Some((first, _)) = entries.iter().find(|(e, _)| same_key(e, &key)) {
                            let d = duplicate(self.file, &key, first.span, path.concat());
                            self.diags.push(d);
                        } else {
                            entries.push((key, value));
                        }
                        path.pop();
                        if self.eat(b'}') {
                            break;
                        }
                        if !self.eat(b',') {
                            return self.error(path);
                        }
                    }
                }
                Some(self.node(start, Value::Map(entries), Style::Flow, String::new()))
            }
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        path.push(format!("[{}]", items.len()));
                        items.push(self.value(path)?);
                        path.pop();
                        if self.eat(b']') {
                            break;
                        }
                        if !self.eat(b',') {
                            return self.error(path);
                        }
                    }
                }
                Some(self.node(start, Value::Seq(items), Style::Flow, String::new()))
            }
            b'"' => self.string(),
            _ => {
                let len = self.bytes()[start..]
                    .iter()
                    .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')))
                    .unwrap_or(self.bytes().len() - start);
                self.pos = start + len;
                let raw = self.lines.text[start..start + len].to_owned();
                let value = match resolve_plain(&raw) {
                    v @ (Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_)) => v,
                    _ => return self.error(path),
                };
                Some(self.node(start, value, Style::Plain, raw))
            }
        }
    }

    fn string(&mut self) -> Option<Node> {
        let start = self.pos;
        let rest = self.lines.text.get(start..)?;
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<String>();
        let s = stream.next()?.ok()?;
        self.pos = start + stream.byte_offset();
        Some(self.node(start, Value::Str(s.clone()), Style::DoubleQuoted, s))
    }

    fn node(&self, start: usize, value: Value, style: Style, raw: String) -> Node {
        Node {
            span: self.lines.span(start, self.pos),
            value,
            style,
            raw,
        }
    }
}
