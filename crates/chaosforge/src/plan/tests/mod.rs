//! Unit tests of `plan::compile`, one file per concern: `scopes` (scopes, selectors, seeds),
//! `defaults` (defaults and parsed values), `kinds` (fault descriptions, names, target classes,
//! one kind per fault), `process` (the process family's checks), `containers` (`container:`
//! targets) and `robustness` (a property test that mangled files never panic the pipeline and
//! always get located diagnostics).
//!
//! Everything here is pure: text in, `Plan` or `Diagnostics` out, no runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::fault::net::{CorruptUnit, ProxyFault, Stream};
use crate::probe::http::StatusSet;
use crate::scope::Scope;
use crate::source::Document;
use crate::units::Ratio;

mod containers;
mod defaults;
mod kinds;
mod policies;
mod process;
mod robustness;
mod scopes;

/// A valid experiment with six proxy targets in zones a, a, b, b, c, c (`node-1` … `node-6`),
/// one process target is *not* included so that every fault below may select freely.
const HEAD: &str = r#"apiVersion: chaosforge/v1
name: scopes
targets:
  - name: node-1
    proxy: { listen: "127.0.0.1:0", upstream: "127.0.0.1:9001" }
    labels: { zone: a, role: web }
  - name: node-2
    proxy: { listen: "127.0.0.1:0", upstream: "127.0.0.1:9002" }
    labels: { zone: a, role: db }
  - name: node-3
    proxy: { listen: "127.0.0.1:0", upstream: "127.0.0.1:9003" }
    labels: { zone: b, role: web }
  - name: node-4
    proxy: { listen: "127.0.0.1:0", upstream: "127.0.0.1:9004" }
    labels: { zone: b, role: db }
  - name: node-5
    proxy: { listen: "127.0.0.1:0", upstream: "127.0.0.1:9005" }
    labels: { zone: c, role: web }
  - name: node-6
    proxy: { listen: "127.0.0.1:0", upstream: "127.0.0.1:9006" }
    labels: { zone: c, role: db }
hypothesis:
  monitors:
    - name: api
      http: { url: "http://127.0.0.1:8080/" }
      expect: ["availability >= 99%"]
"#;

const ALL_NODES: [&str; 6] = ["node-1", "node-2", "node-3", "node-4", "node-5", "node-6"];

fn compile_text(text: &str, seed: Option<u64>) -> Result<Plan, Diagnostics> {
    let doc = Document::parse("t.yaml", text)?;
    let spec: ExperimentSpec = crate::de::decode(&doc)?;
    compile(&doc, &spec, seed)
}

/// `HEAD` plus `rest` (faults, phases, policies… as YAML text).
fn with(rest: &str) -> String {
    format!("{HEAD}{rest}")
}

/// One latency fault named `f` with the given `target:` flow mapping.
fn one_fault(target: &str) -> String {
    with(&format!(
        "faults:\n  - name: f\n    latency: {{ delay: 100ms }}\n    target: {target}\n"
    ))
}

fn plan(text: &str, seed: Option<u64>) -> Plan {
    match compile_text(text, seed) {
        Ok(p) => p,
        Err(d) => panic!("expected a plan, got:\n{d}\n--- file ---\n{text}"),
    }
}

fn errors(text: &str) -> Diagnostics {
    match compile_text(text, Some(1)) {
        Ok(p) => panic!("expected diagnostics, got a plan: {:?}", p.faults),
        Err(d) => d,
    }
}

/// `true` when some diagnostic is at `path` and its message contains `needle`.
fn has(d: &Diagnostics, path: &str, needle: &str) -> bool {
    d.iter()
        .any(|x| x.path == path && x.message.contains(needle))
}

fn targets_of(p: &Plan, fault: &str) -> Vec<String> {
    p.faults
        .iter()
        .find(|f| f.name == fault)
        .map(|f| f.targets.clone())
        .unwrap_or_else(|| panic!("no fault `{fault}` in the plan"))
}

/// The single fault of a plan whose only fault is `kind` (a YAML flow entry like
/// `latency: { delay: 1s }`), on every proxy target.
fn kind_of(kind: &str) -> FaultKind {
    let p = plan(
        &with(&format!(
            "faults:\n  - name: f\n    {kind}\n    target: {{ select: {{ zone: a }} }}\n"
        )),
        Some(1),
    );
    p.faults[0].kind.clone()
}

fn with_process(rest: &str) -> String {
    let head = HEAD.replace(
        "hypothesis:\n",
        "  - name: worker\n    process: { pid: 4242 }\n    labels: { role: worker }\nhypothesis:\n",
    );
    format!("{head}{rest}")
}
