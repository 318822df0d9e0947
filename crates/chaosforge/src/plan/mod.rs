//! `compile(spec) → Plan | Diagnostics`: the validated, resolved form of an experiment.
//!
//! Everything here is pure (no I/O but reading the file in [`load`] and the host checks of
//! [`load_here`]), so it is tested without a runtime. Every problem is collected, never only the
//! first; each names its field path and points into the file. A `Plan` exists only when there
//! are no problems, and nothing is ever injected without one.
//!
//! One file per section of the experiment file; each adds its own `impl Cx` block:
//! - `cx`: the compile context (the document and the diagnostics) and the value checks every
//!   section shares (durations, ratios, expectations, addresses, unique names).
//! - `targets`: [`Target`], [`TargetKind`]; `targets:` and the on-host checks ([`check_hosts`]).
//! - `monitors`: [`MonitorPlan`], [`ProbePlan`]; `hypothesis.monitors`.
//! - `faults`: [`FaultKind`], [`PlannedFault`]; `faults:` — which kind each entry is, its
//!   targets, and one file per family: `proxy` (toxics), `host` (partition, loss and the
//!   kernel-level effects), `process`, `stress`, `http` (HTTP and security rules).
//! - `scopes`: which targets a fault acts on (`target.select`, `target.scope`) and the sides of
//!   a group partition ([`split_group`], [`group_peers`]), drawn with the seed.
//! - `policies`: `policies:` — halt rules, the halt window, irreversible faults.
//! - `mechanisms`: how this kernel carries out each kernel-level network fault
//!   ([`choose_mechanisms`]).
//! - `notify`: `notify:` — webhooks ([`NotifyPlan`]), their `{ env: VAR }` secrets read.
//!
//! The plain data a fault needs to run ([`KillReach`], [`ProcessSelector`], [`Readiness`],
//! [`NetEffect`], …) lives below, in [`crate::fault::params`], and is re-exported here.
//! May import: `diag`, `source`, `de`, `spec`, `units`, `hypothesis`, `scope`, `probe` (its
//! configuration types), `monitor` (its limits) and `fault`'s plain data; never `engine`,
//! `journal` or `report`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::diag::{Diagnostic, Diagnostics};
use crate::hypothesis::Expectation;
use crate::source::Document;
use crate::spec::ExperimentSpec;
use crate::units;

mod cx;
mod faults;
mod inventory;
mod mechanisms;
mod monitors;
mod notify;
mod plausible;
mod policies;
mod scopes;
mod targets;

pub use crate::fault::params::{
    KillReach, Mechanism, NetDirection, NetEffect, ProcessSelector, Readiness,
};
pub use faults::{FaultKind, GroupSplit, Peer, PlannedFault, TargetClass, format_bits};
pub use mechanisms::{choose_mechanisms, mechanism_for};
pub use monitors::{MonitorPlan, ProbePlan};
pub use notify::{NotifyEvent, NotifyFormat, NotifyPlan, Secret};
pub use policies::{PolicyPlan, PolicyVerdict, RunContext, TimeWindow, check_run};
pub use scopes::{group_peers, split_group};
pub use targets::{AgentRef, Target, TargetKind, check_hosts};

use cx::Cx;

/// The only file format version so far.
pub const API_VERSION: &str = "chaosforge/v1";

/// A validated experiment with its targets resolved. Built only by [`compile`].
#[derive(Debug, Clone)]
pub struct Plan {
    /// The experiment's name.
    pub name: String,
    /// Its description, if any.
    pub description: Option<String>,
    /// The hypothesis title (the file's, or one made from the expectations).
    pub title: String,
    /// The file it came from, as the user named it.
    pub file: String,
    /// The seed of every random choice.
    pub seed: u64,
    /// Whether the seed was drawn at random (neither the file nor the caller gave one), so
    /// that the user is told how to repeat the run.
    pub seed_random: bool,
    /// Targets, in file order.
    pub targets: Vec<Target>,
    /// Monitors, in file order.
    pub monitors: Vec<MonitorPlan>,
    /// Faults, in file order, each with the targets its scope chose.
    pub faults: Vec<PlannedFault>,
    /// Phase durations.
    pub phases: Phases,
    /// Halt rules.
    pub halt_when: Vec<Expectation>,
    /// The sliding window halt rules are judged over.
    pub halt_window: Duration,
    /// `hypothesis.significance`: held also means "no significant degradation" at this level.
    pub significance: Option<f64>,
    /// The policy rules (see [`check_run`] for those checked when a run starts).
    pub policy: PolicyPlan,
    /// When the time window closes for this run: the engine halts it then (exit 3). Set by the
    /// caller from [`check_run`]'s clock, not by `compile`.
    pub deadline: Option<jiff::Timestamp>,
    /// The policies' verdicts when the run was admitted (`approval: approved by alice`), for
    /// the journal. Set by the caller, like `deadline`.
    pub verdicts: Vec<String>,
    /// What is valid but probably not meant (`file:line:col: path: message`); `plan` and `run`
    /// print them, nothing refuses them.
    pub warnings: Diagnostics,
    /// `notify:`: the webhooks told about the run.
    pub notify: Vec<NotifyPlan>,
}

/// Phase durations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Phases {
    /// Steady-state sampling before any fault.
    #[serde(with = "units::duration_text")]
    pub baseline: Duration,
    /// How long faults are held.
    #[serde(with = "units::duration_text")]
    pub inject: Duration,
    /// The longest acceptable time to recover.
    #[serde(with = "units::duration_text")]
    pub recover_within: Duration,
}

// === compile ===

/// [`load`], then [`choose_mechanisms`] with this machine's capabilities (probed only when
/// the plan has kernel-level network faults): what `plan` and `run` need.
pub fn load_here(path: &Path, seed: Option<u64>) -> Result<(Document, Plan), Diagnostics> {
    let doc = Document::read(path)?;
    let plan = load_document_here(&doc, seed)?;
    Ok((doc, plan))
}

/// The half of [`load_here`] after parsing: [`load_document`], then [`here`].
pub fn load_document_here(doc: &Document, seed: Option<u64>) -> Result<Plan, Diagnostics> {
    let plan = load_document(doc, seed)?;
    here(doc, plan)
}

/// The half of [`load_here`] after [`load`]: the on-host checks and the mechanisms of a plan
/// compiled from `doc`.
pub fn here(doc: &Document, mut plan: Plan) -> Result<Plan, Diagnostics> {
    let mut diags = check_hosts(doc, &plan);
    if plan
        .faults
        .iter()
        .any(|f| matches!(f.kind, FaultKind::Network { .. }))
        && let Err(d) = choose_mechanisms(doc, &mut plan, crate::fault::host::caps::probe())
    {
        diags.extend(d);
    }
    if diags.is_empty() {
        Ok(plan)
    } else {
        Err(diags)
    }
}

/// Reads, parses, decodes and compiles an experiment file. `seed` overrides the file's seed.
pub fn load(path: &Path, seed: Option<u64>) -> Result<(Document, Plan), Diagnostics> {
    let doc = Document::read(path)?;
    let plan = load_document(&doc, seed)?;
    Ok((doc, plan))
}

/// The half of [`load`] after parsing: decodes and compiles `doc` (a file, or an experiment
/// written inline in a game day file, [`Document::subtree`]), with the organisation's policy.
pub fn load_document(doc: &Document, seed: Option<u64>) -> Result<Plan, Diagnostics> {
    let spec: ExperimentSpec = match crate::de::decode_partial(doc) {
        Ok(spec) => spec,
        Err((mut diags, partial)) => {
            // Compile what the decoder made of the file anyway, so a missing field or a typo
            // does not hide the unit, expectation and cross-reference problems of the rest.
            // What compile says about a placeholder is an artifact, and dropped.
            if let Some(partial) = partial
                && let Err(more) = compile(doc, &partial.value, Some(0))
            {
                let kept: Vec<Diagnostic> = {
                    let artifact = artifacts(&diags, &partial);
                    more.0.into_iter().filter(|d| !artifact(&d.path)).collect()
                };
                diags.extend(Diagnostics(kept));
            }
            diags.sort();
            return Err(diags);
        }
    };
    let mut plan = compile(doc, &spec, seed)?;
    if let Some(org) = std::env::var_os("CHAOSFORGE_POLICY").filter(|v| !v.is_empty()) {
        org_policy(&mut plan, &spec, Path::new(&org))?;
    }
    Ok(plan)
}

/// The organisation's policy file (`$CHAOSFORGE_POLICY`: `policies:` as in an experiment), which
/// every experiment inherits and cannot loosen: its rules apply on top of the experiment's —
/// both windows, both blast radii, halt rules of both, the smaller `max_duration` and
/// `max_consecutive_failures`, approvers of both, forbidden labels and required metadata of
/// both — and irreversible faults only where both allow them. Its problems are reported in
/// its own file.
pub fn org_policy(plan: &mut Plan, spec: &ExperimentSpec, org: &Path) -> Result<(), Diagnostics> {
    let file = org.display().to_string();
    let text = std::fs::read_to_string(org).map_err(|e| {
        Diagnostic::new(
            file.clone(),
            None,
            "",
            format!("cannot read the organisation policy ($CHAOSFORGE_POLICY): {e}"),
        )
    })?;
    let odoc = Document::parse(&file, &text)?;
    let o: crate::spec::OrgPolicySpec = crate::de::decode(&odoc)?;
    let mut cx = Cx::new(&odoc);
    let (rules, window) = cx.policies(&o.policies);
    plan.halt_when.extend(rules);
    if o.policies.halt_window.is_some() {
        plan.halt_window = plan.halt_window.min(window);
    }
    if !o.policies.allow_irreversible {
        for f in &plan.faults {
            if let Some(why) = f.kind.irreversible() {
                cx.err(
                    "policies.allow_irreversible",
                    format!("irreversible faults are not allowed: `{}` is {why}", f.name),
                );
            }
        }
    }
    if let Some(max) = &o.policies.max_duration {
        let max = cx.duration("policies.max_duration", Some(max), Duration::MAX);
        let total = plan.phases.baseline + plan.phases.inject + plan.phases.recover_within;
        if total > max {
            cx.err(
                "policies.max_duration",
                format!(
                    "the experiment's phases take {} together, over the organisation's \
                     max_duration {}",
                    units::format_duration(total),
                    units::format_duration(max)
                ),
            );
        }
    }
    let mut as_org = spec.clone();
    as_org.policies = o.policies.clone();
    let labelled: Vec<(&str, &BTreeMap<String, String>)> = plan
        .targets
        .iter()
        .map(|t| (t.name.as_str(), &t.labels))
        .collect();
    let op = cx.policy_plan(&as_org, &plan.faults, &labelled);
    if !cx.diags.is_empty() {
        let mut d = Diagnostics(
            cx.diags
                .0
                .into_iter()
                .map(|mut d| {
                    d.message = format!("organisation policy: {}", d.message);
                    d
                })
                .collect(),
        );
        d.sort();
        return Err(d);
    }
    let p = &mut plan.policy;
    p.planned.extend(
        op.planned
            .into_iter()
            .map(|(rule, text)| (rule, format!("organisation: {text}"))),
    );
    p.org_window = op.window;
    p.approvers = match (p.approvers.take(), op.approvers) {
        (Some(a), Some(b)) => Some(a.into_iter().filter(|x| b.contains(x)).collect()),
        (a, b) => a.or(b),
    };
    p.max_consecutive_failures = match (p.max_consecutive_failures, op.max_consecutive_failures) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    p.forbid.extend(op.forbid);
    Ok(())
}

/// Which paths compile may only have complained about because of what decoding already
/// reported, so that each mistake is told once:
/// - a placeholder, or anything below one ([`crate::de::Partial::covers`]);
/// - a struct with an unknown field that has a "did you mean": `upstrem` leaves `upstream`
///   unset, and what compile says about the struct as a whole follows from the typo;
/// - with a target (or the list) replaced, every reference to targets (`target`, `peers`): a
///   selection cannot be judged against targets that are not there.
fn artifacts<'a>(
    decoded: &'a Diagnostics,
    partial: &'a crate::de::Partial<ExperimentSpec>,
) -> impl Fn(&str) -> bool + 'a {
    let typo_parents: BTreeSet<&str> = decoded
        .iter()
        .filter(|d| d.message.contains(", did you mean `"))
        .filter_map(|d| d.path.rsplit_once('.').map(|(parent, _)| parent))
        .collect();
    let targets_replaced = partial
        .substituted
        .iter()
        .any(|s| s == "targets" || s.starts_with("targets["));
    move |path: &str| {
        partial.covers(path)
            || typo_parents.contains(path)
            || (targets_replaced
                && !path.starts_with("targets")
                && (path.contains(".target") || path.contains(".peers")))
    }
}

/// Validates `spec` (decoded from `doc`) and resolves its scopes. Returns every problem found.
///
/// `seed` overrides the file's seed; with neither, a random seed is drawn (and reported).
pub fn compile(
    doc: &Document,
    spec: &ExperimentSpec,
    seed: Option<u64>,
) -> Result<Plan, Diagnostics> {
    let mut cx = Cx::new(doc);
    if spec.api_version != API_VERSION {
        cx.err(
            "apiVersion",
            format!(
                "unsupported apiVersion `{}`; this chaosforge reads `{API_VERSION}`",
                spec.api_version
            ),
        );
    }
    if spec.name.trim().is_empty() {
        cx.err("name", "the experiment needs a name");
    }
    let seed_random = seed.or(spec.seed).is_none();
    let seed = seed.or(spec.seed).unwrap_or_else(random_seed);

    let all = cx.all_targets(&spec.targets, spec.inventory.as_ref());
    let (target_specs, targets) = (all.specs, all.compiled);
    let monitors = cx.monitors(&spec.hypothesis.monitors, &targets, &target_specs);
    let phases = Phases {
        baseline: cx.positive_duration(
            "phases.baseline",
            spec.phases.baseline.as_deref(),
            Duration::from_secs(10),
        ),
        inject: cx.positive_duration(
            "phases.inject",
            spec.phases.inject.as_deref(),
            Duration::from_secs(30),
        ),
        recover_within: cx.positive_duration(
            "phases.recover_within",
            spec.phases.recover_within.as_deref(),
            Duration::from_secs(30),
        ),
    };
    let faults = cx.faults(
        &spec.faults,
        &target_specs,
        &targets,
        seed,
        spec.policies.allow_irreversible,
    );
    let (halt_when, halt_window) = cx.policies(&spec.policies);
    let labelled: Vec<(&str, &BTreeMap<String, String>)> = target_specs
        .iter()
        .map(|t| (t.name.as_str(), &t.labels))
        .collect();
    let policy = cx.policy_plan(spec, &faults, &labelled);
    let significance = spec.hypothesis.significance;
    if let Some(a) = significance
        && !(a > 0.0 && a < 0.5)
    {
        cx.err(
            "hypothesis.significance",
            format!(
                "`{a}` is not a significance level; write a probability such as 0.05 or 0.01 \
                 (between 0 and 0.5)"
            ),
        );
    }
    cx.phase_lengths(spec, &phases);
    cx.watched_while_stopped(&faults, &monitors);
    let notify = cx.notify(&spec.notify);

    if !cx.diags.is_empty() {
        let mut d = cx.diags;
        d.sort();
        return Err(d);
    }
    let title = spec.hypothesis.title.clone().unwrap_or_else(|| {
        let all: Vec<String> = monitors
            .iter()
            .flat_map(|m: &MonitorPlan| {
                m.expect
                    .iter()
                    .map(move |e| format!("{}: {}", m.name, e.text))
            })
            .collect();
        all.join(", ")
    });
    Ok(Plan {
        name: spec.name.clone(),
        description: spec.description.clone(),
        title,
        file: doc.file().to_string(),
        seed,
        seed_random,
        targets: targets.into_iter().flatten().collect(),
        monitors,
        faults,
        phases,
        halt_when,
        halt_window,
        significance,
        policy,
        deadline: None,
        verdicts: Vec::new(),
        warnings: {
            let mut w = cx.warnings;
            w.sort();
            w
        },
        notify,
    })
}

fn random_seed() -> u64 {
    // Only the seed itself needs entropy; everything after it is reproducible from the journal.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    crate::scope::SeededRng::new(nanos ^ u64::from(std::process::id()).rotate_left(32)).next_u64()
        >> 1
}
/// Names of distinct targets used by any fault (for reports and locking).
pub fn targets_in_use(plan: &Plan) -> BTreeSet<&str> {
    plan.faults
        .iter()
        .flat_map(|f| f.targets.iter().map(String::as_str))
        .collect()
}

#[cfg(test)]
mod tests;
