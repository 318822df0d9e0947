//! Detecting, loading and validating CTK experiment files, with chaoslib 1.44's rules.
//!
//! chaoslib's `ensure_experiment_is_valid` raises at the first problem; we report every problem
//! at once (file:line:col), but each activity stops at its first problem as chaoslib's
//! `ensure_activity_is_valid` does, so no message appears that CTK could not have shown.

use std::path::Path;

use serde_json::{Map, Value};

use super::config::{Env, load_configuration, load_secrets};
use super::model::{Experiment, py_str};
use super::tolerance::py_truthy;
use crate::diag::{Diagnostic, Diagnostics};
use crate::source::{self, Document, push_index, push_key};

/// What validation found that CTK accepts but the user should know.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Warnings(pub Vec<Diagnostic>);

/// Whether `doc` is a CTK experiment: a mapping with `title` and `method` and no chaosforge
/// `apiVersion`.
pub fn is_ctk(doc: &Document) -> bool {
    let root = doc.root();
    // A CTK file missing its title or method is still a CTK file, to be told what it lacks in
    // CTK's terms; what makes it one is CTK's own vocabulary and none of ours.
    const CTK: [&str; 5] = [
        "title",
        "method",
        "steady-state-hypothesis",
        "rollbacks",
        "contributions",
    ];
    const OURS: [&str; 5] = ["apiVersion", "name", "faults", "targets", "hypothesis"];
    matches!(root.value, source::Value::Map(_))
        && OURS.iter().all(|k| root.get(k).is_none())
        && CTK.iter().any(|k| root.get(k).is_some())
}

/// Reads, parses and validates a CTK experiment file.
///
/// Validation resolves configuration and secrets from the process environment alone, as
/// chaostoolkit does before `--var`s apply; call [`validate`] with another [`Env`] to include a
/// `.env` var file's variables.
///
/// # Errors
///
/// Every problem, each at its node.
pub fn load(path: &Path) -> Result<(Document, Experiment, Warnings), Diagnostics> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Diagnostic::new(file.clone(), None, "", format!("cannot read file: {e}")))?;
    let doc = Document::parse(&file, &text)?;
    let (exp, warnings) = load_document(&doc, &Env::default())?;
    Ok((doc, exp, warnings))
}

/// The half of [`load`] after parsing: decodes and validates `doc` with `env`.
///
/// # Errors
///
/// Every problem, each at its node.
pub fn load_document(doc: &Document, env: &Env) -> Result<(Experiment, Warnings), Diagnostics> {
    let raw: Value = crate::de::decode(doc)?;
    let warnings = validate(doc, &raw, env)?;
    let exp = Experiment::from_value(&raw).map_err(|m| doc.diag("", m))?;
    Ok((exp, warnings))
}

/// chaoslib's `ensure_experiment_is_valid` over `raw` (the decoded `doc`), with `env` for the
/// configuration's and secrets' `env` entries.
///
/// # Errors
///
/// Every problem, each at its node.
pub fn validate(doc: &Document, raw: &Value, env: &Env) -> Result<Warnings, Diagnostics> {
    let mut v = Validator {
        doc,
        diags: Diagnostics::new(),
        warnings: Vec::new(),
        env,
    };
    v.experiment(raw);
    if v.diags.is_empty() {
        Ok(Warnings(v.warnings))
    } else {
        v.diags.sort();
        Err(v.diags)
    }
}

/// Which chaosforge fault, target or policy replaces a well-known Python activity or control,
/// for the diagnostic that refuses it.
pub fn python_replacement(module: &str, func: &str) -> Option<&'static str> {
    Some(match (module, func) {
        ("chaostoxi.toxic.actions", "create_latency_toxic") => {
            "a `latency` fault on a `proxy` target ({delay, jitter})"
        }
        ("chaostoxi.toxic.actions", "create_bandwith_degradation_toxic") => {
            "a `bandwidth` fault on a `proxy` target"
        }
        ("chaostoxi.toxic.actions", "create_timeout_toxic") => {
            "a `timeout` fault on a `proxy` target"
        }
        ("chaostoxi.toxic.actions", "create_reset_peer_toxic") => {
            "a `reset` fault on a `proxy` target"
        }
        ("chaostoxi.toxic.actions", "create_slow_connection_close_toxic") => {
            "a `latency` fault on a `proxy` target (the nearest: chaosforge has no slow-close)"
        }
        ("chaostoxi.toxic.actions", "create_toxic") => {
            "the `proxy` fault of the same kind (`latency`, `bandwidth`, `timeout`, `reset`)"
        }
        ("chaostoxi.toxic.actions", "delete_toxic" | "reset") => {
            "nothing: a chaosforge fault is reverted when its phase ends, and by \
             `chaosforge recover`"
        }
        ("chaostoxi.proxy.actions", "create_proxy" | "modify_proxy") => {
            "a `proxy: {listen, upstream}` target"
        }
        ("chaostoxi.proxy.actions", "disable_proxy") => "a `down` fault on a `proxy` target",
        ("chaostoxi.proxy.actions", "enable_proxy" | "delete_proxy") => {
            "nothing: the `down` fault and the proxy are reverted when the run ends"
        }
        ("chaosaddons.controls.safeguards", _) => {
            "`policies.halt_when` (a halt rule over monitors)"
        }
        _ => return None,
    })
}

struct Validator<'a> {
    doc: &'a Document,
    diags: Diagnostics,
    warnings: Vec<Diagnostic>,
    env: &'a Env,
}

/// An activity's first problem: where, and chaoslib's message.
type Problem = (String, String);

fn at(path: &str, key: &str) -> String {
    let mut p = path.to_owned();
    push_key(&mut p, key);
    p
}

fn idx(path: &str, i: usize) -> String {
    let mut p = path.to_owned();
    push_index(&mut p, i);
    p
}

fn get<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    v.as_object().and_then(|m| m.get(key))
}

fn is_number(v: &Value) -> bool {
    // Python's numbers.Number includes bool.
    matches!(v, Value::Number(_) | Value::Bool(_))
}

impl Validator<'_> {
    fn error(&mut self, path: &str, msg: impl Into<String>) {
        let d = self.doc.diag(path, msg);
        self.diags.push(d);
    }

    fn warn(&mut self, path: &str, msg: impl Into<String>) {
        let d = self.doc.diag(path, msg);
        self.warnings.push(d);
    }

    fn experiment(&mut self, raw: &Value) {
        let Some(map) = raw.as_object().filter(|m| !m.is_empty()) else {
            self.error("", "an empty experiment is not an experiment");
            return;
        };
        if !map.get("title").is_some_and(py_truthy) {
            self.error("title", "experiment requires a title");
        }
        if !map.get("description").is_some_and(py_truthy) {
            self.error("description", "experiment requires a description");
        }
        if let Some(tags) = map.get("tags").filter(|t| py_truthy(t)) {
            match tags.as_array() {
                Some(items) => {
                    for (i, t) in items.iter().enumerate() {
                        if t.as_str().is_none_or(str::is_empty) {
                            self.error(
                                &idx("tags", i),
                                "experiment tags must be a non-empty string",
                            );
                        }
                    }
                }
                None => self.error("tags", "experiment tags must be a list of strings"),
            }
        }
        self.extensions(map.get("extensions"));
        self.configuration(map);
        self.hypothesis(map);
        let lookup = ref_targets(map);
        match map.get("method") {
            None | Some(Value::Null) => self.error(
                "method",
                "an experiment requires a method, which can be empty for only checking steady \
                 state hypothesis ",
            ),
            Some(Value::Array(items)) => {
                if items.is_empty() {
                    self.warn(
                        "method",
                        "the method is empty: only the steady-state hypothesis runs",
                    );
                }
                for (i, a) in items.iter().enumerate() {
                    let path = idx("method", i);
                    if let Err((p, m)) = self.activity(a, &path) {
                        self.error(&p, m);
                        continue;
                    }
                    if let Some(r) = get(a, "ref").and_then(Value::as_str)
                        && !lookup.contains(&r)
                    {
                        self.error(
                            &at(&path, "ref"),
                            format!(
                                "referenced activity '{r}' could not be found in the experiment"
                            ),
                        );
                    }
                }
            }
            Some(_) => self.error("method", "the method must be a list of activities"),
        }
        match map.get("rollbacks") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, a) in items.iter().enumerate() {
                    if let Err((p, m)) = self.activity(a, &idx("rollbacks", i)) {
                        self.error(&p, m);
                    }
                }
            }
            Some(_) => self.error("rollbacks", "rollbacks must be a list of activities"),
        }
        self.deprecations(map);
        self.controls(map.get("controls"), "controls");
    }

    fn extensions(&mut self, ext: Option<&Value>) {
        let Some(ext) = ext.filter(|e| py_truthy(e)) else {
            return;
        };
        let Some(items) = ext.as_array() else {
            self.error("extensions", "extensions must be a list");
            return;
        };
        for (i, e) in items.iter().enumerate() {
            let named = get(e, "name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.trim().is_empty());
            if !named {
                self.error(
                    &idx("extensions", i),
                    "All extensions require a non-empty name",
                );
            }
        }
    }

    fn configuration(&mut self, map: &Map<String, Value>) {
        let empty = Map::new();
        let conf = match map.get("configuration") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => {
                self.error("configuration", "the configuration must be a mapping");
                &empty
            }
        };
        let secrets = match map.get("secrets") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => {
                self.error("secrets", "secrets must be a mapping");
                &empty
            }
        };
        let errors = load_configuration(conf, &Map::new(), self.env)
            .err()
            .into_iter()
            .flatten()
            .chain(
                load_secrets(secrets, &Map::new(), self.env)
                    .err()
                    .into_iter()
                    .flatten(),
            );
        for e in errors.collect::<Vec<_>>() {
            self.error(&e.path, e.message);
        }
    }

    fn hypothesis(&mut self, map: &Map<String, Value>) {
        let Some(hypo) = map.get("steady-state-hypothesis").filter(|h| !h.is_null()) else {
            return;
        };
        let base = "steady-state-hypothesis";
        if !hypo.is_object() {
            self.error(base, "the steady-state hypothesis must be a mapping");
            return;
        }
        if !get(hypo, "title").is_some_and(py_truthy) {
            self.error(&at(base, "title"), "hypothesis requires a title");
        }
        let probes = get(hypo, "probes").filter(|p| py_truthy(p));
        match probes {
            None => {}
            Some(Value::Array(items)) => {
                for (i, probe) in items.iter().enumerate() {
                    let path = idx(&at(base, "probes"), i);
                    let checked = self.activity(probe, &path).and_then(|()| {
                        let tol = get(probe, "tolerance").ok_or_else(|| {
                            (
                                path.clone(),
                                "hypothesis probe must have a tolerance entry".into(),
                            )
                        })?;
                        self.tolerance(tol, &at(&path, "tolerance"))
                    });
                    if let Err((p, m)) = checked {
                        self.error(&p, m);
                    }
                }
            }
            Some(_) => self.error(&at(base, "probes"), "hypothesis probes must be a list"),
        }
    }

    /// chaoslib's `ensure_hypothesis_tolerance_is_valid`.
    fn tolerance(&mut self, tol: &Value, path: &str) -> Result<(), Problem> {
        let fail = |p: &str, m: String| Err((p.to_owned(), m));
        match tol {
            Value::Bool(_) | Value::String(_) | Value::Array(_) => Ok(()),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(()),
            Value::Number(_) | Value::Null => fail(
                path,
                "hypothesis probe tolerance must either be an integer, a string, a boolean or a \
                 pair of values for boundaries. It can also be a dictionary which is a probe \
                 activity definition that takes an argument called `value` with the value of \
                 the probe itself to be validated"
                    .into(),
            ),
            Value::Object(m) => match m.get("type").and_then(Value::as_str) {
                Some("probe") => self.activity(tol, path),
                Some("regex") => match m.get("pattern") {
                    None => fail(
                        path,
                        "hypothesis regex probe tolerance must have a `pattern` key".into(),
                    ),
                    Some(Value::String(p)) => match super::tolerance::py_regex(p) {
                        Ok(_) => Ok(()),
                        Err(e) => fail(
                            &at(path, "pattern"),
                            format!("hypothesis probe tolerance pattern {p} seems invalid: {e}"),
                        ),
                    },
                    Some(other) => fail(
                        &at(path, "pattern"),
                        format!(
                            "hypothesis probe tolerance pattern {} has an invalid type",
                            py_str(other)
                        ),
                    ),
                },
                Some("jsonpath") => match m.get("path") {
                    None => fail(
                        path,
                        "hypothesis jsonpath probe tolerance must have a `path` key".into(),
                    ),
                    Some(Value::String(p)) if p.trim().is_empty() => fail(
                        &at(path, "path"),
                        "hypothesis probe tolerance JSON path cannot be empty".into(),
                    ),
                    Some(Value::String(p)) => match serde_json_path::JsonPath::parse(p.trim()) {
                        Ok(_) => Ok(()),
                        Err(_) => fail(
                            &at(path, "path"),
                            format!(
                                "hypothesis probe tolerance JSON path {} is invalid",
                                p.trim()
                            ),
                        ),
                    },
                    Some(other) => fail(
                        &at(path, "path"),
                        format!(
                            "hypothesis probe tolerance JSON path {} has an invalid type",
                            py_str(other)
                        ),
                    ),
                },
                Some("range") => {
                    let Some(r) = m.get("range") else {
                        return fail(
                            path,
                            "hypothesis range probe tolerance must have a `range` key".into(),
                        );
                    };
                    let rp = at(path, "range");
                    let Some(items) = r.as_array() else {
                        return fail(&rp, "hypothesis range must be a sequence".into());
                    };
                    if items.len() != 2 {
                        return fail(
                            &rp,
                            "hypothesis range sequence must be made of two values".into(),
                        );
                    }
                    if !is_number(&items[0]) {
                        return fail(
                            &idx(&rp, 0),
                            "hypothesis range lower boundary must be a number".into(),
                        );
                    }
                    if !is_number(&items[1]) {
                        return fail(
                            &idx(&rp, 1),
                            "hypothesis range upper boundary must be a number".into(),
                        );
                    }
                    Ok(())
                }
                _ => fail(
                    path,
                    format!(
                        "hypothesis probe tolerance type '{}' is unsupported",
                        m.get("type").map_or("None".to_owned(), py_str)
                    ),
                ),
            },
        }
    }

    /// chaoslib's `ensure_activity_is_valid`, plus the shape checks the typed model needs.
    fn activity(&mut self, a: &Value, path: &str) -> Result<(), Problem> {
        let fail = |p: &str, m: String| Err((p.to_owned(), m));
        if !py_truthy(a) {
            return fail(path, "empty activity is no activity".into());
        }
        let Some(m) = a.as_object() else {
            return fail(path, "an activity must be a mapping".into());
        };
        if let Some(r) = m.get("ref").filter(|r| !r.is_null()) {
            return match r {
                Value::String(s) if !s.is_empty() => Ok(()),
                _ => fail(
                    &at(path, "ref"),
                    "reference to activity must be non-empty strings".into(),
                ),
            };
        }
        let kind = match m.get("type") {
            Some(t) if py_truthy(t) => t,
            _ => return fail(path, "an activity must have a type".into()),
        };
        if !matches!(kind.as_str(), Some("probe" | "action")) {
            return fail(
                &at(path, "type"),
                format!("'{}' is not a supported activity type", py_str(kind)),
            );
        }
        let name = match m.get("name") {
            Some(n) if py_truthy(n) => py_str(n),
            _ => return fail(path, "an activity must have a name".into()),
        };
        let pp = at(path, "provider");
        let provider = match m.get("provider") {
            Some(p) if py_truthy(p) => p,
            _ => return fail(path, "an activity requires a provider".into()),
        };
        let Some(provider) = provider.as_object() else {
            return fail(&pp, "a provider must be a mapping".into());
        };
        let ptype = match provider.get("type") {
            Some(t) if py_truthy(t) => t,
            _ => return fail(&pp, "a provider must have a type".into()),
        };
        if !matches!(ptype.as_str(), Some("python" | "process" | "http")) {
            return fail(
                &at(&pp, "type"),
                format!("unknown provider type '{}'", py_str(ptype)),
            );
        }
        if let Some(t) = m.get("timeout").filter(|t| !t.is_null())
            && !is_number(t)
        {
            return fail(
                &at(path, "timeout"),
                "activity timeout must be a number".into(),
            );
        }
        if let Some(pauses) = m.get("pauses").filter(|p| !p.is_null()) {
            if !pauses.is_object() {
                return fail(
                    &at(path, "pauses"),
                    "activity pauses must be a mapping".into(),
                );
            }
            for which in ["before", "after"] {
                let bad = match get(pauses, which) {
                    Some(Value::String(s)) => !(s.starts_with("${") && s.ends_with('}')),
                    Some(Value::Null | Value::Number(_)) | None => false,
                    Some(_) => true,
                };
                if bad {
                    return fail(
                        &at(&at(path, "pauses"), which),
                        format!(
                            "activity {which} pause must be a number or a pattern to a variable \
                             from the configuration or secrets"
                        ),
                    );
                }
            }
        }
        if let Some(b) = m.get("background")
            && !b.is_boolean()
        {
            return fail(
                &at(path, "background"),
                "activity background must be a boolean".into(),
            );
        }
        match ptype.as_str() {
            Some("python") => python(provider, &pp, &name),
            Some("process") => self.process(provider, &pp, &name),
            _ => http(provider, &pp),
        }
    }

    /// chaoslib's `validate_process_activity`: the path must resolve (on `PATH` when it has no
    /// `/`, from the working directory otherwise) to an executable file.
    fn process(
        &mut self,
        provider: &Map<String, Value>,
        pp: &str,
        name: &str,
    ) -> Result<(), Problem> {
        let path = match provider.get("path") {
            Some(p) if py_truthy(p) => p,
            _ => return Err((pp.to_owned(), "a process activity must have a path".into())),
        };
        let Some(path) = path.as_str() else {
            return Err((at(pp, "path"), "a process path must be a string".into()));
        };
        if which(path, self.env).is_none() {
            return Err((
                at(pp, "path"),
                format!("path '{path}' cannot be found, in activity '{name}'"),
            ));
        }
        if let Some(t) = provider.get("timeout").filter(|t| !t.is_null())
            && !matches!(t, Value::Number(_))
        {
            return Err((
                at(pp, "timeout"),
                "a process timeout must be a number of seconds".into(),
            ));
        }
        Ok(())
    }

    fn deprecations(&mut self, map: &Map<String, Value>) {
        let mut lists: Vec<(String, &Vec<Value>)> = Vec::new();
        if let Some(Value::Array(p)) = map
            .get("steady-state-hypothesis")
            .and_then(|h| get(h, "probes"))
        {
            lists.push(("steady-state-hypothesis.probes".into(), p));
        }
        for key in ["method", "rollbacks"] {
            if let Some(Value::Array(items)) = map.get(key) {
                lists.push((key.into(), items));
            }
        }
        for (base, items) in lists {
            for (i, a) in items.iter().enumerate() {
                let provider = get(a, "provider");
                if provider
                    .and_then(|p| get(p, "type"))
                    .and_then(Value::as_str)
                    == Some("process")
                    && provider
                        .and_then(|p| get(p, "arguments"))
                        .is_some_and(Value::is_object)
                {
                    let path = at(&at(&idx(&base, i), "provider"), "arguments");
                    self.warn(
                        &path,
                        "Process arguments should now be a list to keep the ordering of the \
                         arguments. Dictionary arguments are deprecated for process activities.",
                    );
                    // chaoslib warns once per experiment.
                    return;
                }
            }
        }
    }

    /// chaoslib's `validate_controls`; controls are accepted and not run, so a Python control
    /// gets a warning saying what replaces it.
    fn controls(&mut self, controls: Option<&Value>, base: &str) {
        let Some(Value::Array(items)) = controls else {
            return;
        };
        let names: Vec<&str> = items
            .iter()
            .filter(|c| get(c, "ref").is_none())
            .filter_map(|c| get(c, "name").and_then(Value::as_str))
            .collect();
        for (i, c) in items.iter().enumerate() {
            let path = idx(base, i);
            if let Some(r) = get(c, "ref")
                && !r.as_str().is_some_and(|r| names.contains(&r))
            {
                // chaoslib's message forgets to format the name in; we include it.
                self.error(
                    &at(&path, "ref"),
                    format!(
                        "Control reference '{}' declaration cannot be found",
                        py_str(r)
                    ),
                );
            }
            let Some(name) = get(c, "name") else {
                self.error(&path, "A control must have a `name` property");
                continue;
            };
            let name = py_str(name);
            let Some(provider) = get(c, "provider") else {
                self.error(
                    &path,
                    format!("Control '{name}' must have a `provider` property"),
                );
                continue;
            };
            if let Some(scope) = get(c, "scope").filter(|s| py_truthy(s))
                && !matches!(scope.as_str(), Some("before" | "after"))
            {
                self.error(
                    &at(&path, "scope"),
                    format!("Control '{name}' scope property must be 'before' or 'after' only"),
                );
            }
            let module = get(provider, "module")
                .and_then(Value::as_str)
                .unwrap_or("");
            let mut msg = format!("control '{name}' is accepted but not run by chaosforge");
            if let Some(r) = python_replacement(module, "") {
                msg.push_str(&format!("; `{module}` is replaced by {r}"));
            }
            self.warn(&path, msg);
        }
    }
}

/// The names a `ref` in the method may name (chaoslib's activity cache).
fn ref_targets(map: &Map<String, Value>) -> Vec<&str> {
    let method = map
        .get("method")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let probes = map
        .get("steady-state-hypothesis")
        .and_then(|h| get(h, "probes"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    method
        .chain(probes)
        .filter_map(|a| get(a, "name").and_then(Value::as_str))
        .filter(|n| !n.is_empty())
        .collect()
}

/// chaoslib's `validate_python_activity` cannot import anything here: every Python activity is
/// refused, naming its module and function and what replaces it.
fn python(provider: &Map<String, Value>, pp: &str, name: &str) -> Result<(), Problem> {
    let module = match provider.get("module") {
        Some(Value::String(m)) if !m.is_empty() => m,
        _ => {
            return Err((
                pp.to_owned(),
                "a Python activity must have a module path".into(),
            ));
        }
    };
    let func = match provider.get("func") {
        Some(Value::String(f)) if !f.is_empty() => f,
        _ => {
            return Err((
                pp.to_owned(),
                "a Python activity must have a function name".into(),
            ));
        }
    };
    let mut msg = format!(
        "activity '{name}' calls the Python function {module}.{func}, which chaosforge cannot \
         run"
    );
    match python_replacement(module, func) {
        Some(r) => msg.push_str(&format!("; use {r} in a chaosforge experiment instead")),
        None => msg.push_str("; rewrite it as a `process` or `http` provider"),
    }
    Err((pp.to_owned(), msg))
}

/// chaoslib's `validate_http_activity`, plus the types the provider needs to run.
fn http(provider: &Map<String, Value>, pp: &str) -> Result<(), Problem> {
    match provider.get("url") {
        Some(u) if py_truthy(u) => {
            if !u.is_string() {
                return Err((at(pp, "url"), "a HTTP URL must be a string".into()));
            }
        }
        _ => return Err((pp.to_owned(), "a HTTP activity must have a URL".into())),
    }
    if let Some(h) = provider.get("headers").filter(|h| py_truthy(h))
        && !h.is_object()
    {
        return Err((
            at(pp, "headers"),
            "a HTTP activities expect headers as a mapping".into(),
        ));
    }
    if let Some(m) = provider.get("method").filter(|m| !m.is_null())
        && !m.is_string()
    {
        return Err((at(pp, "method"), "a HTTP method must be a string".into()));
    }
    Ok(())
}

/// Python's `shutil.which(cmd)`: a command with a `/` is checked as it is (relative to the
/// working directory), otherwise looked up on `PATH` (`/bin:/usr/bin` when unset); the file must
/// exist, be executable and not be a directory.
pub fn which(cmd: &str, env: &Env) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let ok = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| !m.is_dir() && m.permissions().mode() & 0o111 != 0)
            && rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok()
    };
    if cmd.contains('/') {
        let p = Path::new(cmd);
        return ok(p).then(|| p.to_path_buf());
    }
    let path = env
        .get("PATH")
        .unwrap_or_else(|| "/bin:/usr/bin".to_owned());
    path.split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(cmd))
        .find(|p| ok(p))
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
