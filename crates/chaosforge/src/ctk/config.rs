//! Configuration, secrets, `--var`/`--var-file` and `${name}` substitution, as chaoslib 1.44.
//!
//! Behaviours kept on purpose because CTK users see them:
//! - `--var` only overrides keys the experiment's `configuration` declares; others are dropped
//!   (chaoslib's `load_configuration` iterates the declared keys only).
//! - validation resolves configuration and secrets *without* the `--var`s, so an env entry
//!   without a default fails validation even when a `--var` would have replaced it;
//! - a string that is exactly `${x}` takes `x`'s value with its type; anywhere else it is
//!   interpolated with Python's `str()`; `$x` (no braces) also interpolates, `$$` is `$`, and
//!   unknown names stay as written (`string.Template.safe_substitute`);
//! - secrets `env` entries have no `default` and no `env_var_type`, unlike configuration's.
//!
//! Python `bytes` (`env_var_type: bytes`, `--var k:bytes=v`) has no JSON form: the value stays a
//! string here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Map, Value};

use super::model::{Experiment, py_str};
use crate::source::push_key;

/// A problem resolving one configuration or secret entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Where in the experiment (`configuration.port`, `secrets.db.password`).
    pub path: String,
    /// chaoslib's message (`Configuration makes reference to an environment key that does not
    /// exist: PORT`).
    pub message: String,
}

/// A bad `--var` or `--var-file`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VarError {
    /// `--var` without `=` (chaostoolkit's message).
    #[error("var needs to be in the format name[:type]=value")]
    Syntax,
    /// `--var k:type=v` whose value does not convert.
    #[error("{0}")]
    Convert(String),
    /// A var file that cannot be used.
    #[error("{path}: {reason}")]
    File {
        /// The file as given.
        path: String,
        /// Why.
        reason: String,
    },
}

/// The environment `env` entries read: the process environment with a `.env` var file's
/// variables on top (chaoslib writes those into `os.environ`; we never mutate ours, so they
/// travel here, and process providers pass them to their children).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    overlay: BTreeMap<String, String>,
}

/// What `--var` and `--var-file` give a run (chaoslib's `merge_vars`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vars {
    /// Configuration overrides (a value may be a whole `{type: env, …}` definition).
    pub configuration: Map<String, Value>,
    /// Secret overrides, by target, as in the experiment's `secrets`.
    pub secrets: Map<String, Value>,
    /// Variables of `.env` var files.
    pub env: Env,
    /// What chaostoolkit only logs (an unreadable or unparsable var file, which it skips).
    pub warnings: Vec<String>,
}

/// The resolved configuration and secrets of a run: what activities are substituted with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// Configuration key → value.
    pub configuration: Map<String, Value>,
    /// Secret target → key → value. Only the second level is visible to `${name}`.
    pub secrets: Map<String, Value>,
    /// The environment processes run with.
    pub env: Env,
}

// === impl Env ===

impl Env {
    /// The process environment with `overlay` on top.
    pub fn with_overlay(overlay: BTreeMap<String, String>) -> Env {
        Env { overlay }
    }

    /// The variable `key`, from the overlay first.
    pub fn get(&self, key: &str) -> Option<String> {
        self.overlay
            .get(key)
            .cloned()
            .or_else(|| std::env::var(key).ok())
    }

    /// The overlay's variables, to set on child processes.
    pub fn overlay(&self) -> &BTreeMap<String, String> {
        &self.overlay
    }
}

// === impl Context ===

impl Context {
    /// Resolves `experiment`'s configuration and secrets with `vars`, as chaoslib's `Runner`
    /// does before a run.
    ///
    /// # Errors
    ///
    /// Every entry that cannot be resolved.
    pub fn new(experiment: &Experiment, vars: &Vars) -> Result<Context, Vec<ConfigError>> {
        let configuration =
            load_configuration(&experiment.configuration, &vars.configuration, &vars.env);
        let secrets = load_secrets(&experiment.secrets, &vars.secrets, &vars.env);
        match (configuration, secrets) {
            (Ok(configuration), Ok(secrets)) => Ok(Context {
                configuration,
                secrets,
                env: vars.env.clone(),
            }),
            (c, s) => Err(c
                .err()
                .into_iter()
                .flatten()
                .chain(s.err().into_iter().flatten())
                .collect()),
        }
    }

    /// `true` when there is neither configuration nor a secret: chaoslib then skips the
    /// substitution of activity `arguments` (so `$$` stays `$$` there).
    pub fn is_empty(&self) -> bool {
        self.configuration.is_empty() && self.secrets.is_empty()
    }

    /// [`substitute`] with this context.
    pub fn substitute(&self, data: &Value) -> Value {
        substitute(data, &self.configuration, &self.secrets)
    }

    /// `pauses.before` and `pauses.after` of `pauses`, substituted and read as seconds, as
    /// chaoslib sleeps them: `None` for no pause (missing, `0`, or not a number after
    /// substitution, where Python's `time.sleep` would raise).
    pub fn pauses(&self, pauses: &super::model::Pauses) -> (Option<f64>, Option<f64>) {
        let secs = |v: &Option<Value>| {
            let v = self.substitute(v.as_ref()?);
            let s = match &v {
                Value::Number(n) => n.as_f64()?,
                Value::Bool(b) => f64::from(u8::from(*b)),
                _ => return None,
            };
            (s > 0.0 && s.is_finite()).then_some(s)
        };
        (secs(&pauses.before), secs(&pauses.after))
    }

    /// Every secret value as text (non-empty strings and other scalars), longest first: what a
    /// journal or report writer must never show.
    pub fn secret_values(&self) -> Vec<String> {
        let mut out = BTreeSet::new();
        collect_scalars(&Value::Object(self.secrets.clone()), &mut out);
        let mut v: Vec<String> = out.into_iter().filter(|s| !s.is_empty()).collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        v
    }

    /// `value` with every occurrence of a secret value in its strings (keys included) replaced
    /// by `***`. Redacts too much rather than too little: a secret `1` hides every `1` in text.
    pub fn redact(&self, value: &Value) -> Value {
        let secrets = self.secret_values();
        redact_with(value, &secrets)
    }
}

fn collect_scalars(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => m.values().for_each(|v| collect_scalars(v, out)),
        Value::Array(a) => a.iter().for_each(|v| collect_scalars(v, out)),
        Value::Null => {}
        other => {
            out.insert(py_str(other));
        }
    }
}

fn redact_with(v: &Value, secrets: &[String]) -> Value {
    let text = |s: &str| {
        let mut s = s.to_owned();
        for secret in secrets {
            if s.contains(secret.as_str()) {
                s = s.replace(secret.as_str(), "***");
            }
        }
        s
    };
    match v {
        Value::String(s) => Value::String(text(s)),
        Value::Array(a) => Value::Array(a.iter().map(|v| redact_with(v, secrets)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (text(k), redact_with(v, secrets)))
                .collect(),
        ),
        Value::Number(_) | Value::Bool(_) if secrets.contains(&py_str(v)) => "***".into(),
        other => other.clone(),
    }
}

// === configuration ===

/// chaoslib's `load_configuration`: literals as they are, `{type: env, key, default?,
/// env_var_type?}` from the environment, and `extra` (the `--var`s) replacing the definition of a
/// declared key. Undeclared `extra` keys are dropped, as in chaoslib.
///
/// # Errors
///
/// Every entry naming an unset variable without a default, or not converting to its type.
pub fn load_configuration(
    info: &Map<String, Value>,
    extra: &Map<String, Value>,
    env: &Env,
) -> Result<Map<String, Value>, Vec<ConfigError>> {
    let mut conf = Map::new();
    let mut errors = Vec::new();
    for (key, written) in info {
        let mut path = "configuration".to_owned();
        push_key(&mut path, key);
        let value = extra.get(key).unwrap_or(written);
        let err = |message: String| ConfigError {
            path: path.clone(),
            message,
        };
        match value.as_object().filter(|m| m.contains_key("type")) {
            Some(def) if def.get("type").and_then(Value::as_str) == Some("env") => {
                let Some(env_key) = def.get("key") else {
                    errors.push(err("KeyError: 'key' (an env entry needs a `key`)".into()));
                    continue;
                };
                let Some(env_key) = env_key.as_str() else {
                    errors.push(err(
                        "TypeError: str expected (the `key` of an env entry must \
                                     be a string)"
                            .into(),
                    ));
                    continue;
                };
                let raw = match (env.get(env_key), def.get("default")) {
                    (Some(v), _) => Value::String(v),
                    (None, Some(d)) => d.clone(),
                    (None, None) => {
                        errors.push(err(format!(
                            "Configuration makes reference to an environment key that does \
                             not exist: {env_key}"
                        )));
                        continue;
                    }
                };
                let ty = def.get("env_var_type").and_then(Value::as_str);
                match convert_to_type(ty, &raw) {
                    Ok(v) => {
                        conf.insert(key.clone(), v);
                    }
                    Err(e) => errors.push(err(e)),
                }
            }
            _ => {
                conf.insert(key.clone(), value.clone());
            }
        }
    }
    if errors.is_empty() {
        Ok(conf)
    } else {
        Err(errors)
    }
}

/// chaoslib's `load_secrets`: per target, a non-null `extra` target replaces it, `{type: env,
/// key}` reads the environment (no default), other mappings recurse, literals stay.
///
/// # Errors
///
/// Every env secret whose variable is unset, and every `vault` secret (not supported here).
pub fn load_secrets(
    info: &Map<String, Value>,
    extra: &Map<String, Value>,
    env: &Env,
) -> Result<Map<String, Value>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let out = secrets_level(info, Some(extra), env, "secrets", &mut errors);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn secrets_level(
    info: &Map<String, Value>,
    extra: Option<&Map<String, Value>>,
    env: &Env,
    at: &str,
    errors: &mut Vec<ConfigError>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in info {
        let mut path = at.to_owned();
        push_key(&mut path, key);
        let Some(def) = value.as_object() else {
            out.insert(key.clone(), value.clone());
            continue;
        };
        let over = extra.and_then(|e| e.get(key)).filter(|v| !v.is_null());
        if let Some(over) = over {
            out.insert(key.clone(), over.clone());
            continue;
        }
        match def.get("type").and_then(Value::as_str) {
            Some("env") => match def.get("key").and_then(Value::as_str) {
                Some(env_key) => match env.get(env_key) {
                    Some(v) => {
                        out.insert(key.clone(), Value::String(v));
                    }
                    None => errors.push(ConfigError {
                        path,
                        message: format!(
                            "Secrets make reference to an environment key that does not \
                             exist: {env_key}"
                        ),
                    }),
                },
                None => errors.push(ConfigError {
                    path,
                    message: "KeyError: 'key' (an env secret needs a string `key`)".into(),
                }),
            },
            Some("vault") => errors.push(ConfigError {
                path,
                message: "vault secrets are not supported by chaosforge: pass the value with \
                          an `env` secret or `--var-file`"
                    .into(),
            }),
            _ => {
                let nested = extra.and_then(|e| e.get(key)).and_then(Value::as_object);
                let v = secrets_level(def, nested, env, &path, errors);
                out.insert(key.clone(), Value::Object(v));
            }
        }
    }
    out
}

/// chaoslib's `convert_to_type`: `None`/`str`/`string` as is, `int`/`integer`, `float`/`number`,
/// `bytes` (kept as a string), `bool` (`false`, `0`, `no` are false, anything else true), `json`.
///
/// # Errors
///
/// Python's message when the value does not convert, or for an unknown type.
pub fn convert_to_type(ty: Option<&str>, val: &Value) -> Result<Value, String> {
    match ty {
        None | Some("str" | "string") => Ok(val.clone()),
        Some("int" | "integer") => match val {
            Value::String(s) => py_int(s)
                .map(Value::from)
                .ok_or_else(|| format!("invalid literal for int() with base 10: '{s}'")),
            Value::Bool(b) => Ok(Value::from(i64::from(*b))),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(val.clone()),
            Value::Number(n) => Ok(Value::from(n.as_f64().unwrap_or(0.0).trunc() as i64)),
            other => Err(type_error("int", other)),
        },
        Some("float" | "number") => {
            let f = match val {
                Value::String(s) => py_float(s)
                    .ok_or_else(|| format!("could not convert string to float: '{s}'"))?,
                Value::Bool(b) => f64::from(u8::from(*b)),
                Value::Number(n) => n.as_f64().unwrap_or(0.0),
                other => return Err(type_error("float", other)),
            };
            serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| format!("{f} has no JSON form"))
        }
        Some("bytes") => match val {
            Value::String(_) => Ok(val.clone()),
            other => Err(format!(
                "AttributeError: '{}' object has no attribute 'encode'",
                super::tolerance::py_type(other)
            )),
        },
        Some("bool") => match val {
            Value::Bool(_) => Ok(val.clone()),
            Value::String(s) => Ok(Value::Bool(!matches!(
                s.to_lowercase().as_str(),
                "false" | "0" | "no"
            ))),
            other => Err(format!(
                "AttributeError: '{}' object has no attribute 'lower'",
                super::tolerance::py_type(other)
            )),
        },
        Some("json") => match val {
            Value::String(s) if s.is_empty() => Ok(val.clone()),
            Value::String(s) => serde_json::from_str(s).map_err(|e| e.to_string()),
            other => Ok(other.clone()),
        },
        Some(_) => Err("variable type can only be: bool, str, int, float, bytes or json".into()),
    }
}

fn type_error(to: &str, v: &Value) -> String {
    format!(
        "TypeError: {to}() argument must be a string or a real number, not '{}'",
        super::tolerance::py_type(v)
    )
}

/// Python's `int(str)`: surrounding whitespace, a sign, and `_` between digits.
fn py_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let (sign, digits) = match t.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", t.strip_prefix('+').unwrap_or(t)),
    };
    let ok = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !ok {
        return None;
    }
    format!("{sign}{}", digits.replace('_', "")).parse().ok()
}

/// Python's `float(str)`, without the `inf`/`nan` JSON cannot hold.
fn py_float(s: &str) -> Option<f64> {
    let t = s.trim();
    let ok = !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-' | '_'));
    if !ok || t.contains("__") || t.starts_with('_') || t.ends_with('_') {
        return None;
    }
    t.replace('_', "").parse().ok()
}

// === --var and --var-file ===

/// One `--var key[:type]=value`, as chaostoolkit's `convert_vars`.
///
/// # Errors
///
/// chaostoolkit's message for a missing `=` or a value that does not convert.
pub fn parse_var(arg: &str) -> Result<(String, Value), VarError> {
    let (key, value) = arg.split_once('=').ok_or(VarError::Syntax)?;
    let value = Value::String(value.to_owned());
    match key.rsplit_once(':') {
        Some((key, ty)) => {
            let v = convert_to_type(Some(ty), &value).map_err(VarError::Convert)?;
            Ok((key.to_owned(), v))
        }
        None => Ok((key.to_owned(), value)),
    }
}

/// chaoslib's `merge_vars`: var files in order (JSON or YAML with `configuration` and `secrets`
/// keys, or a `.env` file), then `--var`s (parsed by [`parse_var`]) over the configuration.
///
/// A file that cannot be read or parsed is skipped with a warning, as chaostoolkit only logs it;
/// an empty JSON/YAML document is read as a `.env` file, as there.
///
/// # Errors
///
/// A `.env` line without `=`, or a JSON/YAML document that is not a mapping (chaostoolkit crashes
/// on both).
pub fn merge_vars(var: &[(String, Value)], var_files: &[&Path]) -> Result<Vars, VarError> {
    let mut vars = Vars::default();
    let mut overlay = BTreeMap::new();
    for file in var_files {
        let name = file.display().to_string();
        let Ok(content) = std::fs::read_to_string(file) else {
            vars.warnings.push(format!("Cannot read var file '{name}'"));
            continue;
        };
        if content.is_empty() {
            continue;
        }
        let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
        let data: Option<Value> = match ext {
            "yaml" | "yml" => match crate::source::Document::parse(&name, &content)
                .and_then(|d| crate::de::decode::<Value>(&d))
            {
                Ok(v) => Some(v),
                Err(e) => {
                    vars.warnings.push(format!(
                        "Failed to parse variable file '{name}': {}",
                        e.to_string().trim_end()
                    ));
                    continue;
                }
            },
            "json" => match serde_json::from_str(&content) {
                Ok(v) => Some(v),
                Err(e) => {
                    vars.warnings
                        .push(format!("Failed to parse variable file '{name}': {e}"));
                    continue;
                }
            },
            _ => None,
        };
        match data.filter(super::tolerance::py_truthy) {
            Some(Value::Object(m)) => {
                for (target, key) in [
                    (&mut vars.configuration, "configuration"),
                    (&mut vars.secrets, "secrets"),
                ] {
                    if let Some(Value::Object(entries)) = m.get(key) {
                        target.extend(entries.clone());
                    }
                }
            }
            Some(_) => {
                return Err(VarError::File {
                    path: name,
                    reason: "a var file must hold a mapping".into(),
                });
            }
            None => {
                for line in content.split('\n') {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let (k, v) = line.split_once('=').ok_or_else(|| VarError::File {
                        path: name.clone(),
                        reason: format!("not a `NAME=value` line: {line}"),
                    })?;
                    overlay.insert(k.to_owned(), v.to_owned());
                }
            }
        }
    }
    for (k, v) in var {
        vars.configuration.insert(k.clone(), v.clone());
    }
    vars.env = Env::with_overlay(overlay);
    Ok(vars)
}

// === substitution ===

/// chaoslib's `substitute`: `${name}` in every string of `data` (map values and list items,
/// recursively; keys are left alone) from the configuration, then each secret target in order.
///
/// A string that is exactly `${name}` of a known name becomes that value, typed; otherwise names
/// are interpolated with Python's `str()` of their value (`$name` works too, `$$` is `$`) and
/// unknown names stay as written.
pub fn substitute(
    data: &Value,
    configuration: &Map<String, Value>,
    secrets: &Map<String, Value>,
) -> Value {
    let lookup = |name: &str| -> Option<&Value> {
        configuration.get(name).or_else(|| {
            secrets
                .values()
                .filter_map(Value::as_object)
                .find_map(|m| m.get(name))
        })
    };
    // chaoslib returns falsy data untouched (`if not data: return data`).
    if !super::tolerance::py_truthy(data) {
        return data.clone();
    }
    subst(data, &lookup)
}

fn subst<'a>(data: &Value, lookup: &dyn Fn(&str) -> Option<&'a Value>) -> Value {
    match data {
        Value::String(s) => substitute_string(s, lookup),
        Value::Array(items) => Value::Array(items.iter().map(|v| subst(v, lookup)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), subst(v, lookup)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn is_id_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_id(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// `string.Template(text)` with chaoslib's `TypedTemplate.safe_substitute`.
fn substitute_string<'a>(text: &str, lookup: &dyn Fn(&str) -> Option<&'a Value>) -> Value {
    let b = text.as_bytes();
    if b.len() > 3 && b.starts_with(b"${") && b.ends_with(b"}") {
        let name = &text[2..text.len() - 1];
        let nb = name.as_bytes();
        if is_id_start(nb[0])
            && nb.iter().all(|c| is_id(*c))
            && let Some(v) = lookup(name)
        {
            return v.clone();
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            // Copy up to the next `$` at once; `$` is ASCII, so this stays on char boundaries.
            let next = text[i..].find('$').map_or(b.len(), |n| i + n);
            out.push_str(&text[i..next]);
            i = next;
            continue;
        }
        let rest = &b[i + 1..];
        if rest.first() == Some(&b'$') {
            out.push('$');
            i += 2;
        } else if rest.first().is_some_and(|c| is_id_start(*c)) {
            let len = rest.iter().take_while(|c| is_id(**c)).count();
            let name = &text[i + 1..i + 1 + len];
            match lookup(name) {
                Some(v) => out.push_str(&py_str(v)),
                None => out.push_str(&text[i..i + 1 + len]),
            }
            i += 1 + len;
        } else if rest.first() == Some(&b'{')
            && rest.get(1).is_some_and(|c| is_id_start(*c))
            && let Some(len) = rest[1..].iter().position(|c| !is_id(*c))
            && rest.get(1 + len) == Some(&b'}')
        {
            let name = &text[i + 2..i + 2 + len];
            match lookup(name) {
                Some(v) => out.push_str(&py_str(v)),
                None => out.push_str(&text[i..i + 3 + len]),
            }
            i += 3 + len;
        } else {
            // Template's "invalid" group: safe_substitute leaves the `$` as it is.
            out.push('$');
            i += 1;
        }
    }
    Value::String(out)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
