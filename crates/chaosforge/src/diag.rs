//! Diagnostics: every problem found in an experiment file, with where it is.
//!
//! Validation never stops at the first problem (vector's `compile`): parsing, decoding and plan
//! compilation all push [`Diagnostic`]s into one [`Diagnostics`] list, which the CLI prints as
//! `file:line:col: field.path: message`, one per line, in file order.

use std::fmt;

/// A region of a source file. Lines and columns are 1-based; `offset`/`len` are in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Span {
    /// Byte offset of the first byte.
    pub offset: usize,
    /// Length in bytes (0 for a point).
    pub len: usize,
    /// 1-based line.
    pub line: u32,
    /// 1-based column (in characters).
    pub col: u32,
}

/// One problem in an input file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// The file as the user named it.
    pub file: String,
    /// Where in the file; `None` when the problem is about the file as a whole.
    pub span: Option<Span>,
    /// The field path, e.g. `faults[2].latency.delay`; empty for the document root.
    pub path: String,
    /// What is wrong, and where possible what would be right.
    pub message: String,
}

/// All problems found in one or more files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

// === impl Span ===

impl Span {
    /// The same place, `delta` characters (and bytes) further right on the same line.
    ///
    /// Used to point inside a scalar, e.g. at the unit of `10 sec`.
    pub fn shifted(self, delta: usize, len: usize) -> Span {
        Span {
            offset: self.offset + delta,
            len,
            line: self.line,
            col: self.col + u32::try_from(delta).unwrap_or(0),
        }
    }
}

// === impl Diagnostic ===

impl Diagnostic {
    /// A diagnostic at `span` for the field at `path`.
    pub fn new(
        file: impl Into<String>,
        span: Option<Span>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.into(),
            span,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.span {
            Some(s) => write!(f, "{}:{}:{}: ", self.file, s.line, s.col)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

// === impl Diagnostics ===

impl Diagnostics {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one problem.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Moves every problem of `other` into `self`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// `true` when no problem was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The problems, in the order they were found.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// Sorts by file and position so output follows the file, and drops exact repeats.
    pub fn sort(&mut self) {
        self.0.sort_by(|a, b| {
            let key = |d: &Diagnostic| (d.file.clone(), d.span.map_or(0, |s| s.offset));
            key(a).cmp(&key(b))
        });
        self.0.dedup();
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
///
/// Used for "unknown field `delya`, did you mean `delay`?" and unknown names.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word_l = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word_l, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting a swap of neighbouring letters as one edit (optimal string alignment):
/// `delya` is one typo away from `delay`, not two.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("delya", ["delay", "jitter"]), Some("delay"));
        assert_eq!(
            did_you_mean("upstrem", ["upstream", "listen"]),
            Some("upstream")
        );
        assert_eq!(did_you_mean("zzz", ["delay", "jitter"]), None);
    }

    #[test]
    fn displays_file_line_col_path_message() {
        let d = Diagnostic::new(
            "exp.yaml",
            Some(Span {
                offset: 0,
                len: 1,
                line: 3,
                col: 7,
            }),
            "faults[0].latency.delay",
            "bad duration",
        );
        assert_eq!(
            d.to_string(),
            "exp.yaml:3:7: faults[0].latency.delay: bad duration"
        );
    }
}
