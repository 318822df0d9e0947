//! The typed view of a Chaos Toolkit experiment, built after [`super::validate`] accepted it.
//!
//! chaoslib works on plain dicts, so every typed value here keeps its `raw` JSON beside it: the
//! CTK journal records activities and the experiment as written (`activity.copy()`), and keys CTK
//! ignores must survive into it. Keys chaoslib does not read are accepted and ignored, as there.

use serde::Deserialize;
use serde_json::{Map, Value};

/// A CTK experiment (chaostoolkit-lib 1.44 schema).
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    /// `title`, as Python's `str()` would render it.
    pub title: String,
    /// `description`, as Python's `str()` would render it.
    pub description: String,
    /// `tags`: non-empty strings.
    pub tags: Vec<String>,
    /// `configuration` as written (literals and `{type: env, …}` entries); resolve it with
    /// [`super::config::load_configuration`].
    pub configuration: Map<String, Value>,
    /// `secrets` as written: target name → key → literal or `{type: env, key}`; resolve with
    /// [`super::config::load_secrets`].
    pub secrets: Map<String, Value>,
    /// `controls`, accepted and not run.
    pub controls: Vec<Value>,
    /// `extensions`, kept for the journal.
    pub extensions: Vec<Value>,
    /// `runtime`: the strategies the file asks for (the CLI flags override them).
    pub runtime: Runtime,
    /// `steady-state-hypothesis`, if any.
    pub steady_state_hypothesis: Option<Hypothesis>,
    /// `method`: the activities, in order (may be empty: only the hypothesis is then checked).
    pub method: Vec<Activity>,
    /// `rollbacks`, in order.
    pub rollbacks: Vec<Activity>,
    /// The whole experiment as written, for the journal's `experiment` key.
    pub raw: Value,
}

/// `runtime:` of an experiment.
///
/// chaostoolkit 1.19 reads only the two `strategy` keys from the file; `frequency` and
/// `fail_fast` are kept for callers that want them, CTK itself takes those from the CLI only.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Runtime {
    /// `runtime.hypothesis`.
    pub hypothesis: RuntimeHypothesis,
    /// `runtime.rollbacks`.
    pub rollbacks: RuntimeRollbacks,
}

/// `runtime.hypothesis`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RuntimeHypothesis {
    /// `default`, `before-method-only`, `after-method-only`, `during-method-only`,
    /// `continuously`; `None` means `default`.
    pub strategy: Option<String>,
    /// Seconds between hypothesis runs for the continuous strategies.
    pub frequency: Option<f64>,
    /// Whether one deviation during the method fails the run at once.
    pub fail_fast: Option<bool>,
}

/// `runtime.rollbacks`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RuntimeRollbacks {
    /// `default`, `always`, `never`, `deviated`; `None` means `default`.
    pub strategy: Option<String>,
}

/// `steady-state-hypothesis:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    /// `title` (required by chaoslib).
    pub title: String,
    /// `probes`, each with a `tolerance` (refs included: they carry their own tolerance).
    pub probes: Vec<Activity>,
    /// `controls`, accepted and not run.
    pub controls: Vec<Value>,
}

/// One entry of `method`, `rollbacks` or `steady-state-hypothesis.probes`.
#[derive(Debug, Clone, PartialEq)]
pub enum Activity {
    /// `{"ref": "name"}`: the activity of that name in the method or hypothesis (see
    /// [`Experiment::lookup`]). `raw` is the entry as written (a hypothesis ref carries its own
    /// `tolerance` there).
    Ref {
        /// The referenced name.
        name: String,
        /// The entry as written.
        raw: Value,
    },
    /// A full activity.
    Def(Box<ActivityDef>),
}

/// A probe or action with its provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityDef {
    /// `type`.
    pub kind: ActivityKind,
    /// `name`.
    pub name: String,
    /// `provider`.
    pub provider: Provider,
    /// `tolerance` as written (judged by [`super::tolerance::within_tolerance`]).
    pub tolerance: Option<Value>,
    /// `pauses`: seconds, or `${name}` strings resolved by [`super::config::Context::substitute`]
    /// at run time.
    pub pauses: Pauses,
    /// `background`: run concurrently with the following activities.
    pub background: bool,
    /// `dry` of this activity, overriding the run's (`probes`, `actions`, …), as chaoslib reads it.
    pub dry: Option<String>,
    /// The activity as written, for the journal's `activity` key.
    pub raw: Value,
}

/// `type` of an activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActivityKind {
    /// Observes, and may carry a tolerance.
    Probe,
    /// Changes the system.
    Action,
}

/// `pauses: {before, after}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Pauses {
    /// Seconds (or `${name}`) to sleep before the activity.
    pub before: Option<Value>,
    /// Seconds (or `${name}`) to sleep after it.
    pub after: Option<Value>,
}

/// `provider:`, by its `type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Provider {
    /// One HTTP request.
    Http(Box<HttpProvider>),
    /// One process.
    Process(ProcessProvider),
    /// A Python function: refused by validation, never run here.
    Python(PythonProvider),
}

/// `provider: {type: http, …}`; every value may hold `${name}` references.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HttpProvider {
    /// The URL to call.
    pub url: Value,
    /// The verb (default `GET`, upper-cased as chaoslib does).
    #[serde(default)]
    pub method: Option<String>,
    /// Request headers, a mapping.
    #[serde(default)]
    pub headers: Option<Value>,
    /// Query (GET), JSON body (`Content-Type: application/json` exactly) or form body.
    #[serde(default)]
    pub arguments: Option<Value>,
    /// Seconds, or `[connect, read]`.
    #[serde(default)]
    pub timeout: Option<Value>,
    /// Whether to verify the server's certificate (default `true`).
    #[serde(default)]
    pub verify_tls: Option<Value>,
    /// Retries of a failed connection (not of a status, nor of a read), default 0.
    #[serde(default)]
    pub max_retries: Option<Value>,
}

/// `provider: {type: process, …}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProcessProvider {
    /// The executable: resolved on `PATH` (after `~` expansion) when run.
    pub path: String,
    /// A list (argv), a string (run through `/bin/sh -c` after the path) or a mapping
    /// (flattened to `key value …`, deprecated in chaoslib).
    #[serde(default)]
    pub arguments: Option<Value>,
    /// Seconds before the process is killed and the activity fails.
    #[serde(default)]
    pub timeout: Option<Value>,
}

/// `provider: {type: python, …}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PythonProvider {
    /// The dotted module path.
    pub module: String,
    /// The function name.
    pub func: String,
    /// Its arguments.
    #[serde(default)]
    pub arguments: Option<Value>,
}

// === impl Experiment ===

impl Experiment {
    /// Builds the typed view of `raw`, an experiment [`super::validate`] accepted.
    ///
    /// # Errors
    ///
    /// A message when `raw` has a shape validation should have refused.
    pub fn from_value(raw: &Value) -> Result<Experiment, String> {
        let map = raw
            .as_object()
            .ok_or_else(|| "an experiment must be a mapping".to_owned())?;
        let list = |key: &str| -> Result<Vec<Activity>, String> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items.iter().map(Activity::from_value).collect(),
                Some(_) => Err(format!("`{key}` must be a list")),
            }
        };
        let values = |v: Option<&Value>| match v {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        let object = |key: &str| match map.get(key) {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        let steady_state_hypothesis = match map.get("steady-state-hypothesis") {
            None | Some(Value::Null) => None,
            Some(h) => Some(Hypothesis {
                title: h.get("title").map(py_str).unwrap_or_default(),
                probes: match h.get("probes") {
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(Activity::from_value)
                        .collect::<Result<_, _>>()?,
                    _ => Vec::new(),
                },
                controls: values(h.get("controls")),
            }),
        };
        let runtime = match map.get("runtime") {
            Some(r @ Value::Object(_)) => {
                Runtime::deserialize(r).map_err(|e| format!("runtime: {e}"))?
            }
            _ => Runtime::default(),
        };
        Ok(Experiment {
            title: map.get("title").map(py_str).unwrap_or_default(),
            description: map.get("description").map(py_str).unwrap_or_default(),
            tags: values(map.get("tags"))
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
            configuration: object("configuration"),
            secrets: object("secrets"),
            controls: values(map.get("controls")),
            extensions: values(map.get("extensions")),
            runtime,
            steady_state_hypothesis,
            method: list("method")?,
            rollbacks: list("rollbacks")?,
            raw: raw.clone(),
        })
    }

    /// The activity a `ref` names, as chaoslib's activity cache finds it: any named activity of
    /// the method or the hypothesis (not the rollbacks), a hypothesis probe winning over a method
    /// activity of the same name, and the last of several winning.
    pub fn lookup(&self, name: &str) -> Option<&ActivityDef> {
        let probes = self
            .steady_state_hypothesis
            .iter()
            .flat_map(|h| h.probes.iter());
        let mut found = None;
        for a in self.method.iter().chain(probes) {
            if let Activity::Def(def) = a
                && def.name == name
            {
                found = Some(&**def);
            }
        }
        found
    }

    /// `activity` itself, or the activity its `ref` names.
    pub fn resolve<'a>(&'a self, activity: &'a Activity) -> Option<&'a ActivityDef> {
        match activity {
            Activity::Def(def) => Some(def),
            Activity::Ref { name, .. } => self.lookup(name),
        }
    }
}

// === impl Activity ===

impl Activity {
    /// Reads one activity entry (a full activity or a `ref`).
    ///
    /// # Errors
    ///
    /// A message naming what does not fit the schema.
    pub fn from_value(raw: &Value) -> Result<Activity, String> {
        if let Some(r) = raw.get("ref").filter(|r| !r.is_null()) {
            let name = r
                .as_str()
                .ok_or_else(|| "reference to activity must be non-empty strings".to_owned())?;
            return Ok(Activity::Ref {
                name: name.to_owned(),
                raw: raw.clone(),
            });
        }
        ActivityDef::from_value(raw).map(|d| Activity::Def(Box::new(d)))
    }

    /// The entry as written.
    pub fn raw(&self) -> &Value {
        match self {
            Activity::Ref { raw, .. } => raw,
            Activity::Def(def) => &def.raw,
        }
    }
}

// === impl ActivityDef ===

impl ActivityDef {
    /// Reads a full activity (also how a `type: probe` tolerance becomes runnable).
    ///
    /// # Errors
    ///
    /// A message naming what does not fit the schema.
    pub fn from_value(raw: &Value) -> Result<ActivityDef, String> {
        let field = |k: &str| raw.get(k).filter(|v| !v.is_null());
        let kind = ActivityKind::deserialize(field("type").unwrap_or(&Value::Null))
            .map_err(|e| format!("type: {e}"))?;
        let provider = Provider::deserialize(field("provider").unwrap_or(&Value::Null))
            .map_err(|e| format!("provider: {e}"))?;
        let pauses = match field("pauses") {
            Some(p) => Pauses::deserialize(p).map_err(|e| format!("pauses: {e}"))?,
            None => Pauses::default(),
        };
        Ok(ActivityDef {
            kind,
            name: field("name").map(py_str).unwrap_or_default(),
            provider,
            tolerance: raw.get("tolerance").cloned(),
            pauses,
            background: field("background")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            dry: field("dry").and_then(Value::as_str).map(str::to_owned),
            raw: raw.clone(),
        })
    }
}

/// Python's `str()` of a JSON value, for the few places chaoslib formats a value as text.
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr()` of a JSON value as `json.load` would have made it (`True`, `None`,
/// `{'a': 1}`): what `str()` of a list or dict shows.
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !(n.is_i64() || n.is_u64()) => py_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => {
            // Python prefers single quotes unless the text holds one and no double quote.
            if s.contains('\'') && !s.contains('"') {
                format!("\"{s}\"")
            } else {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", py_repr(&Value::String(k.clone())), py_repr(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, always with a `.0` or exponent.
fn py_float(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if f.is_nan() {
        return "nan".to_owned();
    }
    let s = format!("{f:?}");
    if (1e16..).contains(&f.abs()) || (f != 0.0 && f.abs() < 1e-4) {
        // Rust's Debug writes `1e16` where Python writes `1e+16`.
        let e = format!("{f:e}");
        match e.split_once('e') {
            Some((m, x)) if !x.starts_with('-') => format!("{m}e+{x:0>2}"),
            Some((m, x)) => format!("{m}e-{:0>2}", &x[1..]),
            None => e,
        }
    } else {
        s
    }
}
