//! `chaosforge convert ctk.json`: the nearest chaosforge experiment to a Chaos Toolkit one, and
//! the list of what could not be carried over.
//!
//! What maps:
//! - the title, description and tags (as `metadata.tags`);
//! - steady-state probes: `http` ones become HTTP monitors (an integer or list-of-integers
//!   tolerance becomes the monitor's `success` statuses), `process` ones command monitors
//!   (tolerance `0`: the exit status); each expects `availability >= 100%`, which is what a
//!   CTK hypothesis asks (every probe within tolerance);
//! - chaostoolkit-toxiproxy's actions: `create_proxy` becomes a `proxy` target, the toxics
//!   (`latency`, `bandwidth`, `timeout`) and `disable_proxy` (`down`) become faults on it.
//!
//! What does not, and is listed: `http`/`process`/other `python` actions (chaosforge's faults
//! are declarative, and reverted by chaosforge itself — which is also why `rollbacks` are not
//! needed), tolerances other than statuses, `${…}` values that could not be resolved from the
//! configuration, controls, and the per-activity pauses (the phases take their place).

use serde_json::{Map, Value, json};

/// A converted experiment.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The chaosforge experiment, as YAML.
    pub yaml: String,
    /// What was not carried over, one line each, with where it was (`method[2]`).
    pub not_carried: Vec<String>,
}

/// Converts `raw` (a CTK experiment as loaded, not necessarily valid for chaosforge to run:
/// Python providers are the point). `resolve` substitutes `${…}` from the configuration where
/// it can.
pub fn convert(raw: &Value, source: &str, resolve: &dyn Fn(&Value) -> Value) -> Converted {
    let mut not = Vec::new();
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let title = text(raw.get("title"));
    let mut exp = Map::new();
    exp.insert("apiVersion".into(), json!("chaosforge/v1"));
    exp.insert("name".into(), json!(slug(&title)));
    let description = text(raw.get("description"));
    exp.insert(
        "description".into(),
        json!(if description.is_empty() {
            title.clone()
        } else {
            description
        }),
    );
    if let Some(tags) = raw
        .get("tags")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
    {
        exp.insert("metadata".into(), json!({ "tags": tags.iter().map(|t| t.as_str().unwrap_or("").to_string()).collect::<Vec<_>>().join(",") }));
    }

    // Proxies first: the toxics name them.
    let method: Vec<Value> = raw
        .get("method")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut targets: Vec<Value> = Vec::new();
    let mut faults: Vec<Value> = Vec::new();
    for (i, a) in method.iter().enumerate() {
        let at = format!("method[{i}]");
        let name = text(a.get("name"));
        let p = a.get("provider").cloned().unwrap_or(Value::Null);
        let args = resolve(&p.get("arguments").cloned().unwrap_or(json!({})));
        let arg = |k: &str| args.get(k).cloned();
        let module = text(p.get("module"));
        let func = text(p.get("func"));
        match (text(p.get("type")).as_str(), module.as_str(), func.as_str()) {
            ("python", "chaostoxi.proxy.actions", "create_proxy") => {
                let proxy = arg("proxy_name").map_or_else(|| name.clone(), |v| plain(&v));
                let listen = format!(
                    "{}:{}",
                    arg("listen_host").map_or_else(|| "127.0.0.1".into(), |v| plain(&v)),
                    arg("listen_port").map_or_else(|| "0".into(), |v| plain(&v))
                );
                let upstream = format!(
                    "{}:{}",
                    arg("upstream_host").map_or_else(String::new, |v| plain(&v)),
                    arg("upstream_port").map_or_else(String::new, |v| plain(&v))
                );
                targets.push(json!({"name": proxy, "proxy": {"listen": listen, "upstream": upstream}}));
            }
            ("python", "chaostoxi.toxic.actions", f) => {
                let proxy = arg("for_proxy").map_or_else(String::new, |v| plain(&v));
                let ms = |k: &str| arg(k).and_then(|v| v.as_f64()).map(|n| format!("{n}ms"));
                let fault = match f {
                    "create_latency_toxic" => ms("latency").map(|d| {
                        let mut l = json!({"delay": d});
                        if let Some(j) = ms("jitter").filter(|j| j != "0ms") {
                            l["jitter"] = json!(j);
                        }
                        ("latency", l)
                    }),
                    // Toxiproxy's rate is in KB/s.
                    "create_bandwith_degradation_toxic" => arg("rate")
                        .and_then(|v| v.as_f64())
                        .map(|r| ("bandwidth", json!({"rate": format!("{}kbit/s", r * 8.0)}))),
                    "create_timeout_toxic" => Some((
                        "timeout",
                        ms("timeout").map_or_else(|| json!({}), |t| json!({"after": t})),
                    )),
                    "delete_toxic" | "reset" => {
                        not.push(format!("{at} `{name}` ({module}.{func}): not needed, chaosforge reverts its faults itself"));
                        continue;
                    }
                    _ => None,
                };
                match fault {
                    Some((kind, spec)) => faults.push(json!({
                        "name": slug(&name),
                        kind: spec,
                        "target": {"select": {"name": proxy}},
                    })),
                    None => not.push(format!(
                        "{at} `{name}` ({module}.{func}): no chaosforge fault with these arguments"
                    )),
                }
            }
            ("python", "chaostoxi.proxy.actions", "disable_proxy") => {
                let proxy = arg("proxy_name").map_or_else(String::new, |v| plain(&v));
                faults.push(json!({"name": slug(&name), "down": {}, "target": {"select": {"name": proxy}}}));
            }
            ("python", "chaostoxi.proxy.actions", "enable_proxy" | "delete_proxy") => not.push(
                format!("{at} `{name}` ({module}.{func}): not needed, chaosforge reverts its faults itself"),
            ),
            ("python", m, f) => not.push(format!(
                "{at} `{name}`: the Python function {m}.{f} has no chaosforge equivalent{}",
                super::python_replacement(m, f)
                    .map(|r| format!(" here; the nearest is {r}"))
                    .unwrap_or_default()
            )),
            (kind, _, _) => not.push(format!(
                "{at} `{name}`: a `{kind}` {} is not a chaosforge fault (faults are declarative and reverted by chaosforge); make it a fault by hand or keep running it with CTK",
                text(a.get("type"))
            )),
        }
        if a.get("pauses").is_some() {
            not.push(format!(
                "{at} `{name}`: its pauses (the phases' durations take their place)"
            ));
        }
    }
    let proxies: Vec<String> = targets.iter().map(|t| text(t.get("name"))).collect();
    for f in &faults {
        let p = f["target"]["select"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if !proxies.contains(&p) {
            not.push(format!(
                "fault `{}` aims at proxy `{p}`, which the experiment does not create: add a `proxy` target named `{p}`",
                f["name"].as_str().unwrap_or("")
            ));
        }
    }

    // The hypothesis.
    let hypothesis = raw.get("steady-state-hypothesis");
    let mut monitors = Vec::new();
    let probes: Vec<Value> = hypothesis
        .and_then(|h| h.get("probes"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, pr) in probes.iter().enumerate() {
        let at = format!("steady-state-hypothesis.probes[{i}]");
        let name = text(pr.get("name"));
        let p = resolve(&pr.get("provider").cloned().unwrap_or(Value::Null));
        let tolerance = pr.get("tolerance");
        let statuses = match tolerance {
            Some(Value::Number(n)) if n.is_i64() => Some(n.to_string()),
            Some(Value::Array(items)) if items.iter().all(Value::is_i64) => Some(
                items
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => None,
        };
        let monitor = match text(p.get("type")).as_str() {
            "http" => {
                let mut http = json!({"url": plain(p.get("url").unwrap_or(&Value::Null))});
                if let Some(m) = p.get("method").and_then(Value::as_str) {
                    http["method"] = json!(m);
                }
                if let Some(t) = p.get("timeout").and_then(Value::as_f64) {
                    http["timeout"] = json!(format!("{t}s"));
                }
                if let Some(h) = p.get("headers").and_then(Value::as_object) {
                    http["headers"] = Value::Object(
                        h.iter()
                            .map(|(k, v)| (k.clone(), json!(plain(v))))
                            .collect(),
                    );
                }
                match &statuses {
                    Some(s) => http["success"] = json!(s),
                    None => not.push(format!(
                        "{at} `{name}`: its tolerance {} (the monitor checks the status is 2xx/3xx instead)",
                        tolerance.map_or_else(|| "(none)".into(), Value::to_string)
                    )),
                }
                Some(json!({"name": slug(&name), "http": http, "expect": ["availability >= 100%"]}))
            }
            "process" => {
                let path = plain(p.get("path").unwrap_or(&Value::Null));
                let run = match p.get("arguments") {
                    Some(Value::Array(a)) => {
                        let mut argv = vec![json!(path)];
                        argv.extend(a.iter().filter(|v| !v.is_null()).map(|v| json!(plain(v))));
                        Value::Array(argv)
                    }
                    Some(Value::String(s)) => json!(format!("{path} {s}")),
                    _ => json!([path]),
                };
                if tolerance != Some(&json!(0)) {
                    not.push(format!(
                        "{at} `{name}`: its tolerance {} (the monitor checks the exit status is 0 instead)",
                        tolerance.map_or_else(|| "(none)".into(), Value::to_string)
                    ));
                }
                Some(
                    json!({"name": slug(&name), "command": {"run": run}, "expect": ["availability >= 100%"]}),
                )
            }
            other => {
                not.push(format!(
                    "{at} `{name}`: a `{other}` probe has no chaosforge monitor"
                ));
                None
            }
        };
        monitors.extend(monitor);
    }
    let mut hyp = Map::new();
    hyp.insert(
        "title".into(),
        json!(hypothesis.map(|h| text(h.get("title"))).unwrap_or_default()),
    );
    hyp.insert("monitors".into(), Value::Array(monitors));
    if !targets.is_empty() {
        exp.insert("targets".into(), Value::Array(targets));
    }
    exp.insert("hypothesis".into(), Value::Object(hyp));
    exp.insert("faults".into(), Value::Array(faults));
    exp.insert(
        "phases".into(),
        json!({"baseline": "5s", "inject": "30s", "recover_within": "30s"}),
    );
    if raw
        .get("rollbacks")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty())
    {
        not.push("rollbacks: not needed, chaosforge reverts its own faults (and `chaosforge recover` after a crash)".into());
    }
    if raw.get("controls").is_some() {
        not.push(
            "controls: not run by chaosforge (safeguards map onto `policies.halt_when`)".into(),
        );
    }

    let mut yaml = format!("# Converted from {source} by `chaosforge convert`.\n");
    if !not.is_empty() {
        yaml.push_str("# Not carried over:\n");
        for n in &not {
            yaml.push_str(&format!("#   - {}\n", n.replace('\n', " ")));
        }
    }
    emit(&Value::Object(exp), 0, &mut yaml);
    Converted {
        yaml,
        not_carried: not,
    }
}

/// A scalar as plain text (`${…}` left as written when unresolved).
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A name chaosforge accepts: lower-case words joined by `-`.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "converted".into()
    } else {
        out
    }
}

/// Block YAML for a JSON value (maps and lists on their own lines, scalars quoted as JSON
/// strings when YAML could read them otherwise).
fn emit(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        emit(v, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        emit(v, indent + 2, out);
                    }
                    _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(v))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        let mut inner = String::new();
                        emit(item, indent + 2, &mut inner);
                        // The first key goes on the dash's line.
                        out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", scalar(item))),
                }
            }
        }
        _ => out.push_str(&format!("{pad}{}\n", scalar(v))),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let safe = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
                && !matches!(
                    s.as_str(),
                    "true" | "false" | "null" | "yes" | "no" | "on" | "off"
                )
                && s.parse::<f64>().is_err();
            if safe {
                s.clone()
            } else {
                Value::String(s.clone()).to_string()
            }
        }
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(m) if m.is_empty() => "{}".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toxiproxy_actions_and_http_probes_become_a_chaosforge_experiment() {
        let raw = json!({
            "title": "Slow payments", "description": "d", "tags": ["pay"],
            "steady-state-hypothesis": {"title": "up", "probes": [
                {"type": "probe", "name": "checkout", "tolerance": 200,
                 "provider": {"type": "http", "url": "http://127.0.0.1:8080/", "timeout": 2}},
                {"type": "probe", "name": "body", "tolerance": {"type": "regex", "pattern": "ok"},
                 "provider": {"type": "http", "url": "http://127.0.0.1:8080/"}}
            ]},
            "method": [
                {"type": "action", "name": "proxy", "provider": {"type": "python",
                 "module": "chaostoxi.proxy.actions", "func": "create_proxy",
                 "arguments": {"proxy_name": "payments", "listen_port": 18081,
                               "upstream_host": "127.0.0.1", "upstream_port": 9002}}},
                {"type": "action", "name": "Slow it", "provider": {"type": "python",
                 "module": "chaostoxi.toxic.actions", "func": "create_latency_toxic",
                 "arguments": {"for_proxy": "payments", "toxic_name": "l", "latency": 400, "jitter": 20}}},
                {"type": "action", "name": "shell", "provider": {"type": "process", "path": "true"}}
            ],
            "rollbacks": [{"type": "action", "name": "x", "provider": {"type": "process", "path": "true"}}]
        });
        let c = convert(&raw, "a.json", &|v| v.clone());
        assert!(c.yaml.contains("name: slow-payments"), "{}", c.yaml);
        assert!(c.yaml.contains("listen: \"127.0.0.1:18081\""), "{}", c.yaml);
        assert!(c.yaml.contains("delay: 400ms"), "{}", c.yaml);
        assert!(c.yaml.contains("jitter: 20ms"), "{}", c.yaml);
        assert!(c.yaml.contains("success: \"200\""), "{}", c.yaml);
        let not = c.not_carried.join("\n");
        assert!(not.contains("method[2] `shell`"), "{not}");
        assert!(not.contains("probes[1] `body`"), "{not}");
        assert!(not.contains("rollbacks"), "{not}");
        // It parses back as YAML into the same shape.
        let doc = crate::source::Document::parse("c.yaml", &c.yaml).unwrap();
        assert!(doc.root().get("faults").is_some());
    }

    #[test]
    fn slugs_are_names_chaosforge_accepts() {
        assert_eq!(slug("Slow payments!"), "slow-payments");
        assert_eq!(slug("  "), "converted");
    }
}
