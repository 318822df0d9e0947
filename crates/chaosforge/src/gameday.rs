//! Game days: several experiments run as one attended session, in order or in parallel groups,
//! with roles, a start time, pauses and one combined report.
//!
//! A game day file is read by the same machinery as an experiment file ([`crate::source`],
//! [`crate::de`]), so every problem is `file:line:col: field: message`, and every scenario's
//! experiment is compiled ([`crate::plan`]) before anything runs: [`load`] returns every problem
//! of the game day file and of every scenario at once, each in the file it is written in.
//!
//! ```yaml
//! name: checkout-game-day
//! description: Payments degrade while the team watches the checkout dashboards
//! roles: { owner: alice, observers: [bob], approver: carol }
//! start: 2026-12-07T14:00:00Z          # waits until then; `--now` starts at once
//! stop_on: refuted                     # never (default) | refuted | error
//! timeline:
//!   - scenario: slow-payments.yaml     # relative to this file
//!   - pause: 30s
//!   - parallel:
//!       - scenario: db-freeze.yaml
//!       - experiment: { apiVersion: chaosforge/v1, name: inline, ... }
//! ```
//!
//! - here: the file as written ([`GameDaySpec`]) and its compiled form ([`GameDay`]);
//! - [`log`]: the game day's own write-ahead journal, `gamedays/<id>/gameday.jsonl`, which links
//!   each scenario to its run (each scenario is journaled as its own run, as `chaosforge run`
//!   does), and how live game days are found;
//! - [`report`]: the combined report, computed from that journal and the runs' journals alone.
//!
//! The runner lives in the CLI (`chaosforge gameday`), over [`crate::engine::Engine`]. Imports
//! `source`, `de`, `diag`, `units`, `plan`, `journal`, `vocab` and `report`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, Diagnostics};
use crate::plan::{self, Plan};
use crate::source::Document;

pub mod log;
pub mod report;

/// A game day file as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GameDaySpec {
    /// Version of the file format; `chaosforge/v1` when given.
    #[serde(rename = "apiVersion", default)]
    pub api_version: Option<String>,
    /// Name of the game day, in its journal and report.
    pub name: String,
    /// What the game day rehearses, in a sentence.
    #[serde(default)]
    pub description: Option<String>,
    /// Who runs it, who watches, and who approves scenarios that require an approval.
    pub roles: RolesSpec,
    /// When it starts (RFC 3339, e.g. `2026-12-07T14:00:00Z`): the runner waits until then,
    /// unless `--now`. Default: at once.
    #[serde(default)]
    pub start: Option<String>,
    /// What stops the game day before its next step: `never` (the default: every scenario is
    /// run, whatever the others showed), `refuted` (a scenario refuted, halted by its own
    /// policy, or in error), `error` (a scenario in error or not steady).
    #[serde(default)]
    pub stop_on: Option<String>,
    /// The steps, in order.
    pub timeline: Vec<StepSpec>,
}

/// `roles: { owner: alice, observers: [bob, dan], approver: carol }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesSpec {
    /// Who runs the game day and answers for it.
    pub owner: String,
    /// Who watches.
    #[serde(default)]
    pub observers: Vec<String>,
    /// Who approves the scenarios whose experiment requires an approval
    /// (`policies.approval.approvers` must name them), as `chaosforge run --approve NAME` does.
    #[serde(default)]
    pub approver: Option<String>,
}

/// One step of the timeline: exactly one of `scenario`, `experiment`, `parallel` or `pause`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// An experiment file, relative to the game day file.
    #[serde(default)]
    pub scenario: Option<String>,
    /// An experiment written inline (the same fields as an experiment file).
    #[serde(default)]
    pub experiment: Option<serde::de::IgnoredAny>,
    /// Scenarios run at the same time; the step ends when all of them have.
    #[serde(default)]
    pub parallel: Option<Vec<ScenarioSpec>>,
    /// A pause before the next step (`30s`).
    #[serde(default)]
    pub pause: Option<String>,
}

/// A scenario of a `parallel` group: exactly one of `scenario` or `experiment`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    /// An experiment file, relative to the game day file.
    #[serde(default)]
    pub scenario: Option<String>,
    /// An experiment written inline.
    #[serde(default)]
    pub experiment: Option<serde::de::IgnoredAny>,
}

/// A validated game day: every scenario compiled. Built only by [`load`].
#[derive(Debug, Clone)]
pub struct GameDay {
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// The game day file, as the user named it.
    pub file: String,
    /// Its roles.
    pub roles: Roles,
    /// When it is to start; `None` for at once.
    pub start: Option<jiff::Timestamp>,
    /// What stops it early.
    pub stop_on: StopOn,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// The roles of a game day, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    /// Who runs it.
    pub owner: String,
    /// Who watches.
    #[serde(default)]
    pub observers: Vec<String>,
    /// Who approves scenarios that require an approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
}

/// What stops a game day before its next step (a `chaosforge halt` always does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopOn {
    /// Nothing: every step runs.
    Never,
    /// A scenario refuted, halted by its own policy, in error or not steady.
    Refuted,
    /// A scenario in error or not steady.
    Error,
}

/// One step of a game day.
#[derive(Debug, Clone)]
pub enum Step {
    /// One scenario, or several at once (`parallel`).
    Scenarios {
        /// Whether they run at the same time (a `parallel` group, even of one).
        parallel: bool,
        /// The scenarios.
        scenarios: Vec<Scenario>,
    },
    /// A pause before the next step.
    Pause(Duration),
}

/// A scenario: an experiment, compiled.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Where the experiment is written.
    pub source: ScenarioSource,
    /// The experiment, compiled (policies not yet checked: that happens when it starts).
    pub plan: Plan,
}

/// Where a scenario's experiment is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScenarioSource {
    /// An experiment file (resolved against the game day file's directory).
    File(PathBuf),
    /// Inline in the game day file, at this field path (`timeline[2].experiment`).
    Inline(String),
}

/// Why a scenario's outcome stops a game day under `stop_on`, if it does.
pub fn stops(stop_on: StopOn, outcome: Option<&crate::vocab::Outcome>) -> bool {
    use crate::vocab::Outcome;
    let error = matches!(
        outcome,
        None | Some(Outcome::Errored { .. } | Outcome::NotSteady { .. })
    );
    match stop_on {
        StopOn::Never => false,
        StopOn::Error => error,
        StopOn::Refuted => {
            error
                || matches!(
                    outcome,
                    Some(Outcome::Refuted { .. } | Outcome::Halted { .. })
                )
        }
    }
}

// === impl GameDay ===

impl GameDay {
    /// Every scenario, in timeline order.
    pub fn scenarios(&self) -> impl Iterator<Item = &Scenario> {
        self.steps.iter().flat_map(|s| match s {
            Step::Scenarios { scenarios, .. } => scenarios.as_slice(),
            Step::Pause(_) => &[],
        })
    }
}

impl Scenario {
    /// The file whose content an approval is bound to: the experiment file, or the game day
    /// file for an inline experiment.
    pub fn file<'a>(&'a self, gameday_file: &'a Path) -> &'a Path {
        match &self.source {
            ScenarioSource::File(p) => p,
            ScenarioSource::Inline(_) => gameday_file,
        }
    }
}

// === load ===

/// Whether `doc` looks like a game day file rather than an experiment (it has a `timeline`).
pub fn is_gameday(doc: &Document) -> bool {
    doc.root().get("timeline").is_some()
}

/// Reads a game day file and compiles every scenario's experiment (with this machine's checks
/// when `here`, as `chaosforge run` does). `seed` overrides every scenario's seed.
///
/// # Errors
///
/// Every problem of the game day file and of every scenario, each in its own file.
pub fn load(path: &Path, seed: Option<u64>, here: bool) -> Result<GameDay, Diagnostics> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Diagnostic::new(file.clone(), None, "", format!("cannot read file: {e}")))?;
    let doc = Document::parse(&file, &text)?;
    load_document(&doc, path.parent().unwrap_or(Path::new("")), seed, here)
}

/// [`load`] of a parsed game day file whose relative scenario paths start at `base`.
///
/// # Errors
///
/// As [`load`].
pub fn load_document(
    doc: &Document,
    base: &Path,
    seed: Option<u64>,
    here: bool,
) -> Result<GameDay, Diagnostics> {
    let mut diags = Diagnostics::new();
    let spec: GameDaySpec = match crate::de::decode_partial(doc) {
        Ok(s) => s,
        Err((d, Some(partial))) => {
            diags.extend(d);
            partial.value
        }
        Err((d, None)) => return Err(d),
    };
    if let Some(v) = &spec.api_version
        && v != plan::API_VERSION
    {
        diags.push(doc.diag(
            "apiVersion",
            format!(
                "unsupported apiVersion `{v}`; this chaosforge reads `{}`",
                plan::API_VERSION
            ),
        ));
    }
    if spec.name.trim().is_empty() && doc.node_at("name").is_some() {
        diags.push(doc.diag("name", "the game day needs a name"));
    }
    if spec.roles.owner.trim().is_empty() && doc.node_at("roles.owner").is_some() {
        diags.push(doc.diag("roles.owner", "the game day needs an owner"));
    }
    let start = spec
        .start
        .as_deref()
        .and_then(|t| match t.parse::<jiff::Timestamp>() {
            Ok(ts) => Some(ts),
            Err(e) => {
                diags.push(doc.diag(
                    "start",
                    format!(
                        "`{t}` is not an RFC 3339 time with an offset (e.g. \
                         `2026-12-07T14:00:00Z`): {e}"
                    ),
                ));
                None
            }
        });
    let stop_on = match spec.stop_on.as_deref() {
        None | Some("never") => StopOn::Never,
        Some("refuted") => StopOn::Refuted,
        Some("error") => StopOn::Error,
        Some(other) => {
            let hint = crate::diag::did_you_mean(other, ["never", "refuted", "error"])
                .map(|s| format!(", did you mean `{s}`"))
                .unwrap_or_default();
            diags.push(doc.diag(
                "stop_on",
                format!("unknown stop_on `{other}`{hint}; write never, refuted or error"),
            ));
            StopOn::Never
        }
    };
    if spec.timeline.is_empty() && doc.node_at("timeline").is_some() {
        diags.push(doc.diag("timeline", "the timeline has no step"));
    }
    let mut steps = Vec::new();
    for (i, step) in spec.timeline.iter().enumerate() {
        let at = format!("timeline[{i}]");
        let given = [
            step.scenario.is_some(),
            step.experiment.is_some(),
            step.parallel.is_some(),
            step.pause.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            diags.push(doc.diag(
                &at,
                "a step is exactly one of `scenario: FILE`, `experiment: {…}`, `parallel: [...]` \
                 or `pause: DURATION`",
            ));
            continue;
        }
        if let Some(p) = &step.pause {
            match crate::units::parse_duration(p) {
                Ok(d) => steps.push(Step::Pause(d)),
                Err(e) => {
                    diags.push(doc.diag_in(&format!("{at}.pause"), e.offset, e.len, e.message))
                }
            }
            continue;
        }
        let mut scenarios = Vec::new();
        let parallel = step.parallel.is_some();
        match &step.parallel {
            Some(group) => {
                if group.is_empty() {
                    diags.push(doc.diag(&format!("{at}.parallel"), "the group has no scenario"));
                }
                for (j, s) in group.iter().enumerate() {
                    let at = format!("{at}.parallel[{j}]");
                    if s.scenario.is_some() == s.experiment.is_some() {
                        diags.push(doc.diag(
                            &at,
                            "a scenario is exactly one of `scenario: FILE` or `experiment: {…}`",
                        ));
                        continue;
                    }
                    let one = scenario(doc, base, &at, s.scenario.as_deref(), seed, here);
                    push(&mut scenarios, &mut diags, one);
                }
            }
            None => {
                let one = scenario(doc, base, &at, step.scenario.as_deref(), seed, here);
                push(&mut scenarios, &mut diags, one);
            }
        }
        steps.push(Step::Scenarios {
            parallel,
            scenarios,
        });
    }
    if !diags.is_empty() {
        diags.sort();
        return Err(diags);
    }
    Ok(GameDay {
        name: spec.name,
        description: spec.description,
        file: doc.file().to_string(),
        roles: Roles {
            owner: spec.roles.owner,
            observers: spec.roles.observers,
            approver: spec.roles.approver,
        },
        start,
        stop_on,
        steps,
    })
}

fn push(
    scenarios: &mut Vec<Scenario>,
    diags: &mut Diagnostics,
    one: Result<Scenario, Diagnostics>,
) {
    match one {
        Ok(s) => scenarios.push(s),
        Err(d) => diags.extend(d),
    }
}

/// Compiles the scenario at `at`: the file `file` (relative to `base`), else the inline
/// `experiment` at `at.experiment`, whose problems name their full path in the game day file.
fn scenario(
    doc: &Document,
    base: &Path,
    at: &str,
    file: Option<&str>,
    seed: Option<u64>,
    here: bool,
) -> Result<Scenario, Diagnostics> {
    if let Some(f) = file {
        if f.trim().is_empty() {
            return Err(doc
                .diag(&format!("{at}.scenario"), "name an experiment file")
                .into());
        }
        let path = base.join(f);
        let loaded = if here {
            plan::load_here(&path, seed)
        } else {
            plan::load(&path, seed)
        };
        return match loaded {
            Ok((_, plan)) => Ok(Scenario {
                source: ScenarioSource::File(path),
                plan,
            }),
            Err(mut d) => {
                // "cannot read file" has no position in the scenario's file: say where the
                // game day names it.
                for x in d.0.iter_mut().filter(|x| x.span.is_none()) {
                    let named = doc.diag(&format!("{at}.scenario"), x.message.clone());
                    *x = Diagnostic {
                        message: format!("{}: {}", path.display(), named.message),
                        ..named
                    };
                }
                Err(d)
            }
        };
    }
    let path = format!("{at}.experiment");
    let Some(sub) = doc.subtree(&path) else {
        return Err(doc.diag(at, "the inline experiment is missing").into());
    };
    let compiled = plan::load_document(&sub, seed)
        .and_then(|p| if here { plan::here(&sub, p) } else { Ok(p) });
    match compiled {
        Ok(plan) => Ok(Scenario {
            source: ScenarioSource::Inline(path),
            plan,
        }),
        Err(d) => Err(Diagnostics(
            d.0.into_iter()
                .map(|mut x| {
                    x.path = if x.path.is_empty() {
                        path.clone()
                    } else {
                        format!("{path}.{}", x.path)
                    };
                    x
                })
                .collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<GameDay, Diagnostics> {
        let doc = Document::parse("gd.yaml", text).unwrap();
        load_document(&doc, Path::new("/nonexistent"), Some(1), false)
    }

    const INLINE: &str = r#"{ apiVersion: chaosforge/v1, name: inline,
          targets: [{ name: b, proxy: { listen: "127.0.0.1:0", upstream: "127.0.0.1:9" }, labels: { s: b } }],
          hypothesis: { monitors: [{ name: m, tcp: { address: "127.0.0.1:9" }, expect: ["availability >= 90%"] }] },
          faults: [{ name: f, latency: { delay: 10ms }, target: { select: { s: b } } }],
          phases: { baseline: 1s, inject: 1s, recover_within: 1s } }"#;

    #[test]
    fn a_valid_game_day_compiles_every_inline_scenario_in_order() {
        let gd = load_text(&format!(
            "name: gd\nroles: {{ owner: alice, approver: carol }}\nstop_on: error\n\
             timeline:\n  - experiment: {INLINE}\n  - pause: 2s\n  - parallel:\n      - experiment: {INLINE}\n      - experiment: {INLINE}\n"
        ))
        .unwrap();
        assert_eq!(gd.stop_on, StopOn::Error);
        assert_eq!(gd.roles.approver.as_deref(), Some("carol"));
        assert_eq!(gd.steps.len(), 3);
        assert!(matches!(gd.steps[1], Step::Pause(d) if d == Duration::from_secs(2)));
        assert!(
            matches!(&gd.steps[2], Step::Scenarios { parallel: true, scenarios } if scenarios.len() == 2)
        );
        assert_eq!(gd.scenarios().count(), 3);
        assert_eq!(
            gd.scenarios().nth(1).unwrap().source,
            ScenarioSource::Inline("timeline[2].parallel[0].experiment".into())
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_full_path_and_position() {
        let bad = INLINE.replace("delay: 10ms", "delay: 10 sex");
        let text = format!(
            "name: gd\nroles: {{ owner: alice, obsrvers: [bob] }}\nstart: tomorrow\nstop_on: refutd\n\
             timeline:\n  - pause: 30\n  - experiment: {bad}\n  - {{ scenario: a.yaml, pause: 1s }}\n  - scenario: missing.yaml\n"
        );
        let d = load_text(&text).unwrap_err();
        let shown = d.to_string();
        for want in [
            "gd.yaml:2:",
            "roles.obsrvers: unknown field",
            "gd.yaml:3:8: start: `tomorrow` is not an RFC 3339 time",
            "gd.yaml:4:10: stop_on: unknown stop_on `refutd`, did you mean `refuted`",
            "gd.yaml:6:12: timeline[0].pause:",
            "gd.yaml:10:51: timeline[1].experiment.faults[0].latency.delay:",
            "gd.yaml:12:5: timeline[2]: a step is exactly one of",
            "timeline[3].scenario: /nonexistent/missing.yaml: cannot read file",
        ] {
            assert!(shown.contains(want), "missing {want:?} in:\n{shown}");
        }
    }

    #[test]
    fn stop_on_decides_from_the_outcome() {
        use crate::vocab::{Outcome, Phase};
        let refuted = Outcome::Refuted { reasons: vec![] };
        let errored = Outcome::Errored {
            phase: Phase::Inject,
            error: "x".into(),
        };
        assert!(!stops(StopOn::Never, Some(&errored)));
        assert!(stops(StopOn::Error, Some(&errored)));
        assert!(!stops(StopOn::Error, Some(&refuted)));
        assert!(stops(StopOn::Refuted, Some(&refuted)));
        assert!(!stops(StopOn::Refuted, Some(&Outcome::Confirmed)));
        assert!(stops(StopOn::Error, None));
    }
}
