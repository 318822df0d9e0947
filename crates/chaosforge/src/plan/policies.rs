//! `policies:` — the rules that keep a run safe: halt rules judged over a sliding window, and
//! the permission irreversible faults need.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Cx;
use super::faults::FaultKind;
use crate::hypothesis::Expectation;
use crate::spec::PoliciesSpec;

// === impl Cx ===

impl Cx<'_> {
    /// The halt rules and the window they are judged over.
    pub(super) fn policies(&mut self, spec: &PoliciesSpec) -> (Vec<Expectation>, Duration) {
        let halt_when = spec
            .halt_when
            .iter()
            .enumerate()
            .filter_map(|(i, t)| self.expectation(&format!("policies.halt_when[{i}]"), t))
            .collect();
        let halt_window = self.positive_duration(
            "policies.halt_window",
            spec.halt_window.as_deref(),
            Duration::from_secs(1),
        );
        (halt_when, halt_window)
    }

    /// An irreversible fault (at `faults[i].key`) is refused unless the file allows it.
    pub(super) fn irreversible(&mut self, base: &str, key: &str, kind: &FaultKind, allowed: bool) {
        if let Some(why) = kind.irreversible()
            && !allowed
        {
            self.err(
                &format!("{base}.{key}"),
                format!("`{key}` is irreversible ({why}); set `policies.allow_irreversible: true` to allow it"),
            );
        }
    }
}

/// The policy rules of a plan, validated: blast radius (checked when planning), time window,
/// approval and forbidden targets (checked when a run starts, by [`check_run`]), and the
/// safety rules the engine enforces while the run goes on.
#[derive(Debug, Clone, Default)]
pub struct PolicyPlan {
    /// Verdicts already given when planning: `(rule, what was checked)`.
    pub planned: Vec<(&'static str, String)>,
    /// When runs are allowed.
    pub window: Option<TimeWindow>,
    /// Who may approve; `None` when no approval is required.
    pub approvers: Option<Vec<String>>,
    /// Abort when a monitor fails this many samples in a row while faults are held.
    pub max_consecutive_failures: Option<u32>,
    /// Labels no faulted target may have, unless overridden.
    pub forbid: BTreeMap<String, String>,
    /// The organisation policy's window (`$CHAOSFORGE_POLICY`), which applies as well.
    pub org_window: Option<TimeWindow>,
    /// The file's `metadata`.
    pub metadata: BTreeMap<String, String>,
}

/// Allowed days and hours in a time zone, minus blackout dates.
#[derive(Debug, Clone)]
pub struct TimeWindow {
    /// The IANA name, as written.
    pub tz_name: String,
    /// The zone.
    pub tz: jiff::tz::TimeZone,
    /// Monday first.
    pub days: [bool; 7],
    /// Allowed ranges in minutes since local midnight, `[start, end)`, sorted, disjoint.
    pub hours: Vec<(u32, u32)>,
    /// Local dates without runs.
    pub blackout: Vec<jiff::civil::Date>,
    /// The file's text of the window, for messages.
    pub text: String,
}

/// One policy's verdict for a run about to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVerdict {
    /// `blast radius`, `time window`, `approval`, `safety`, `compliance`.
    pub rule: &'static str,
    /// Whether the run may go on.
    pub ok: bool,
    /// What was checked, with the numbers.
    pub detail: String,
}

/// What a run brings to the policies that depend on it: the time, who approved, overrides.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// Now.
    pub now: jiff::Timestamp,
    /// The approver, when `--approve NAME` was given or a valid approval file was found.
    pub approved_by: Option<String>,
    /// `--allow-forbidden`: forbidden labels are overridden (and the override journaled).
    pub allow_forbidden: bool,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

// === impl TimeWindow ===

impl TimeWindow {
    /// When the allowed range that contains `t` ends, or `None` when `t` is outside the window.
    pub fn end_of_range(&self, t: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let local = t.to_zoned(self.tz.clone());
        let date = local.date();
        if self.blackout.contains(&date) {
            return None;
        }
        let day = local.weekday().to_monday_zero_offset() as usize;
        if !self.days[day] {
            return None;
        }
        let minute = local.hour() as u32 * 60 + local.minute() as u32;
        let (_, end) = self
            .hours
            .iter()
            .find(|(s, e)| (*s..*e).contains(&minute))?;
        let end_time = if *end >= 24 * 60 {
            // The range runs to midnight: it ends at the start of the next day.
            date.tomorrow().ok()?.to_zoned(self.tz.clone()).ok()?
        } else {
            date.at((end / 60) as i8, (end % 60) as i8, 0, 0)
                .to_zoned(self.tz.clone())
                .ok()?
        };
        Some(end_time.timestamp())
    }
}

/// Every policy that depends on the run (time, approval, overrides), plus those checked when
/// planning, as verdicts; the run may start only if all are ok.
pub fn check_run(plan: &super::Plan, rc: &RunContext) -> Vec<PolicyVerdict> {
    let p = &plan.policy;
    let mut out: Vec<PolicyVerdict> = p
        .planned
        .iter()
        .map(|(rule, detail)| PolicyVerdict {
            rule,
            ok: true,
            detail: detail.clone(),
        })
        .collect();
    for w in p.window.iter().chain(p.org_window.iter()) {
        let total = plan.phases.baseline + plan.phases.inject + plan.phases.recover_within;
        let local = rc.now.to_zoned(w.tz.clone());
        let shown = local.strftime("%a %Y-%m-%d %H:%M %Z").to_string();
        let verdict = match w.end_of_range(rc.now) {
            None => PolicyVerdict {
                rule: "time window",
                ok: false,
                detail: format!("{shown} is outside the window ({})", w.text),
            },
            Some(end) => {
                let left = end.duration_since(rc.now);
                let left = std::time::Duration::try_from(left).unwrap_or_default();
                PolicyVerdict {
                    rule: "time window",
                    ok: left >= total,
                    detail: if left >= total {
                        format!(
                            "{shown} is inside the window ({}); {} left, the run takes {}",
                            w.text,
                            crate::units::format_duration(left),
                            crate::units::format_duration(total)
                        )
                    } else {
                        format!(
                            "the run takes {} but the window ({}) closes in {} ({shown})",
                            crate::units::format_duration(total),
                            w.text,
                            crate::units::format_duration(left)
                        )
                    },
                }
            }
        };
        out.push(verdict);
    }
    if let Some(approvers) = &p.approvers {
        out.push(match &rc.approved_by {
            Some(who) if approvers.iter().any(|a| a == who) => PolicyVerdict {
                rule: "approval",
                ok: true,
                detail: format!("approved by {who}"),
            },
            Some(who) => PolicyVerdict {
                rule: "approval",
                ok: false,
                detail: format!(
                    "{who} is not an approver of this experiment (approvers: {})",
                    approvers.join(", ")
                ),
            },
            None => PolicyVerdict {
                rule: "approval",
                ok: false,
                detail: format!(
                    "needs an approval by one of {}: `--approve NAME`, or `chaosforge approve \
                     FILE --as NAME` beforehand",
                    approvers.join(", ")
                ),
            },
        });
    }
    if !p.forbid.is_empty() {
        let hit: Vec<String> = plan
            .targets
            .iter()
            .filter(|t| crate::plan::targets_in_use(plan).contains(t.name.as_str()))
            .filter(|t| p.forbid.iter().any(|(k, v)| t.labels.get(k) == Some(v)))
            .map(|t| t.name.clone())
            .collect();
        let forbid = p
            .forbid
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(match (hit.is_empty(), rc.allow_forbidden) {
            (true, _) => PolicyVerdict {
                rule: "compliance",
                ok: true,
                detail: format!("no faulted target is labelled {forbid}"),
            },
            (false, true) => PolicyVerdict {
                rule: "compliance",
                ok: true,
                detail: format!(
                    "{} labelled {forbid}: allowed by --allow-forbidden (journaled)",
                    hit.join(", ")
                ),
            },
            (false, false) => PolicyVerdict {
                rule: "compliance",
                ok: false,
                detail: format!(
                    "{} labelled {forbid}, which this experiment forbids (override with \
                     --allow-forbidden)",
                    hit.join(", ")
                ),
            },
        });
    }
    out
}

impl Cx<'_> {
    /// The five rules' settings, with blast radius and required metadata checked now.
    pub(super) fn policy_plan(
        &mut self,
        spec: &crate::spec::ExperimentSpec,
        faults: &[super::PlannedFault],
        target_specs: &[(&str, &BTreeMap<String, String>)],
    ) -> PolicyPlan {
        let p = &spec.policies;
        let mut plan = PolicyPlan {
            metadata: spec.metadata.clone(),
            ..PolicyPlan::default()
        };
        if let Some(b) = &p.blast_radius {
            self.blast_radius(b, faults, target_specs, &mut plan);
        }
        if let Some(w) = &p.time_window {
            plan.window = self.time_window(w);
        }
        if let Some(a) = &p.approval
            && a.required
        {
            if a.approvers.is_empty() {
                self.err(
                    "policies.approval.approvers",
                    "an approval is required but nobody may give it; list the approvers",
                );
            }
            plan.approvers = Some(a.approvers.clone());
        }
        if let Some(n) = p.max_consecutive_failures {
            match u32::try_from(n) {
                Ok(n) if n >= 1 => {
                    plan.max_consecutive_failures = Some(n);
                    plan.planned.push((
                        "safety",
                        format!("abort after {n} failed samples in a row of any monitor"),
                    ));
                }
                _ => self.err(
                    "policies.max_consecutive_failures",
                    format!("must be at least 1, not {n}"),
                ),
            }
        }
        if let Some(c) = &p.compliance {
            let mut have = Vec::new();
            for (i, key) in c.require.iter().enumerate() {
                let present = match key.as_str() {
                    "description" => spec
                        .description
                        .as_ref()
                        .is_some_and(|d| !d.trim().is_empty()),
                    k => spec.metadata.get(k).is_some_and(|v| !v.trim().is_empty()),
                };
                if present {
                    have.push(key.as_str());
                } else {
                    let how = if key == "description" {
                        "add a `description:`".to_string()
                    } else {
                        format!("add `metadata: {{ {key}: … }}`")
                    };
                    self.err(
                        &format!("policies.compliance.require[{i}]"),
                        format!("the experiment must state its {key}: {how}"),
                    );
                }
            }
            if !c.require.is_empty() {
                plan.planned.push((
                    "compliance",
                    format!("metadata present: {}", have.join(", ")),
                ));
            }
            plan.forbid = c.forbid.clone();
        }
        plan
    }

    fn blast_radius(
        &mut self,
        b: &crate::spec::BlastRadiusSpec,
        faults: &[super::PlannedFault],
        target_specs: &[(&str, &BTreeMap<String, String>)],
        plan: &mut PolicyPlan,
    ) {
        let base = "policies.blast_radius";
        let distinct: std::collections::BTreeSet<&str> = faults
            .iter()
            .flat_map(|f| f.targets.iter().map(String::as_str))
            .collect();
        let instances: usize = faults.iter().map(|f| f.targets.len()).sum();
        let mut checked = Vec::new();
        if let Some(max) = b.max_targets {
            if max < 1 {
                self.err(&format!("{base}.max_targets"), "must be at least 1");
            } else if distinct.len() as i64 > max {
                self.err(
                    &format!("{base}.max_targets"),
                    format!(
                        "blast radius: the faults act on {} targets ({}), over max_targets {max}",
                        distinct.len(),
                        distinct.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                );
            } else {
                checked.push(format!("{} of at most {max} targets", distinct.len()));
            }
        }
        if let Some(max) = b.max_concurrent_faults {
            if max < 1 {
                self.err(
                    &format!("{base}.max_concurrent_faults"),
                    "must be at least 1",
                );
            } else if instances as i64 > max {
                self.err(
                    &format!("{base}.max_concurrent_faults"),
                    format!(
                        "blast radius: {instances} fault instances would be held at once, over \
                         max_concurrent_faults {max}"
                    ),
                );
            } else {
                checked.push(format!("{instances} of at most {max} concurrent faults"));
            }
        }
        if let Some(text) = &b.max_percent {
            let with_sign = if text.trim_end().ends_with('%') {
                text.clone()
            } else {
                format!("{text}%")
            };
            match crate::units::Ratio::parse(&with_sign) {
                Err(e) => self.err(&format!("{base}.max_percent"), e.message),
                Ok(r) if r.get() <= 0.0 => {
                    self.err(&format!("{base}.max_percent"), "must be above 0%")
                }
                Ok(r) => {
                    let max = r.get();
                    let mut worst: Option<(f64, String)> = None;
                    for f in faults {
                        // The population: every target the fault's selector matched, grouped
                        // by the `per` label when given.
                        let chosen: Vec<&(&str, &BTreeMap<String, String>)> = target_specs
                            .iter()
                            .filter(|(name, _)| f.targets.iter().any(|t| t == name))
                            .collect();
                        let groups: std::collections::BTreeSet<Option<&String>> = chosen
                            .iter()
                            .map(|(_, labels)| b.per.as_ref().and_then(|k| labels.get(k)))
                            .collect();
                        for g in groups {
                            let in_group = |labels: &BTreeMap<String, String>| match (&b.per, g) {
                                (Some(k), Some(v)) => labels.get(k) == Some(v),
                                (Some(k), None) => !labels.contains_key(k),
                                (None, _) => true,
                            };
                            let population = target_specs
                                .iter()
                                .filter(|(name, labels)| {
                                    f.population.iter().any(|p| p == name) && in_group(labels)
                                })
                                .count();
                            let hit = chosen.iter().filter(|(_, labels)| in_group(labels)).count();
                            if population == 0 {
                                continue;
                            }
                            let share = hit as f64 / population as f64;
                            let label = match (&b.per, g) {
                                (Some(k), Some(v)) => format!(" of {k}={v}"),
                                (Some(k), None) => format!(" without a {k} label"),
                                (None, _) => String::new(),
                            };
                            let what = format!(
                                "fault `{}` takes {hit} of {population} matching targets{label} \
                                 ({:.1}%)",
                                f.name,
                                share * 100.0
                            );
                            if share > max + 1e-9 {
                                self.err(
                                    &format!("faults[{}].target.scope", f.index),
                                    format!(
                                        "blast radius: {what}, over max_percent {}",
                                        with_sign.trim()
                                    ),
                                );
                            } else if worst.as_ref().is_none_or(|(w, _)| share > *w) {
                                worst = Some((share, what));
                            }
                        }
                    }
                    if let Some((_, what)) = worst {
                        checked.push(format!("at most {}: {what}", with_sign.trim()));
                    }
                }
            }
        }
        if let Some(k) = &b.per
            && b.max_percent.is_none()
        {
            self.err(
                &format!("{base}.per"),
                format!("`per: {k}` groups `max_percent`, which is not set"),
            );
        }
        if !checked.is_empty() {
            plan.planned.push(("blast radius", checked.join("; ")));
        }
    }

    fn time_window(&mut self, w: &crate::spec::TimeWindowSpec) -> Option<TimeWindow> {
        let base = "policies.time_window";
        let tz_name = w.timezone.clone().unwrap_or_else(|| "UTC".into());
        let tz = match jiff::tz::TimeZone::get(&tz_name) {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.err(
                    &format!("{base}.timezone"),
                    format!(
                        "unknown time zone `{tz_name}`; use an IANA name such as \
                         `Europe/Paris`, `America/New_York` or `UTC`"
                    ),
                );
                None
            }
        };
        let days = match &w.days {
            None => Some([true; 7]),
            Some(text) => parse_days(text)
                .map_err(|m| self.err(&format!("{base}.days"), m))
                .ok(),
        };
        let hours = match &w.hours {
            None => Some(vec![(0, 24 * 60)]),
            Some(text) => parse_hours(text)
                .map_err(|m| self.err(&format!("{base}.hours"), m))
                .ok(),
        };
        let mut blackout = Vec::new();
        for (i, d) in w.blackout.iter().enumerate() {
            match d.trim().parse::<jiff::civil::Date>() {
                Ok(date) => blackout.push(date),
                Err(_) => self.err(
                    &format!("{base}.blackout[{i}]"),
                    format!("`{d}` is not a date; write `YYYY-MM-DD`, e.g. `2026-12-24`"),
                ),
            }
        }
        let text = [
            w.days.clone(),
            w.hours.clone(),
            Some(tz_name.clone()),
            (!w.blackout.is_empty()).then(|| format!("except {}", w.blackout.join(", "))),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        Some(TimeWindow {
            tz_name,
            tz: tz?,
            days: days?,
            hours: hours?,
            blackout,
            text,
        })
    }
}

/// `mon-fri`, `mon,wed,fri`, `sat-sun`, `fri-mon` (wrapping).
fn parse_days(text: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    let day = |s: &str| -> Result<usize, String> {
        let s = s.trim().to_ascii_lowercase();
        DAYS.iter()
            .position(|d| s.starts_with(d) && (s.len() == 3 || d.len() <= s.len()))
            .ok_or_else(|| format!("`{s}` is not a day; use mon, tue, wed, thu, fri, sat, sun"))
    };
    if text.trim().is_empty() {
        return Err("no days given; write e.g. `mon-fri`".into());
    }
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut i = a;
                loop {
                    days[i] = true;
                    if i == b {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            None => days[day(part)?] = true,
        }
    }
    Ok(days)
}

/// `09:00-16:00`, `09:00-12:00,14:00-16:00`, `22:00-24:00`: sorted, non-empty, not overlapping.
fn parse_hours(text: &str) -> Result<Vec<(u32, u32)>, String> {
    let time = |s: &str| -> Result<u32, String> {
        let s = s.trim();
        let (h, m) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not a time; write `HH:MM`, e.g. `09:00`"))?;
        match (h.parse::<u32>(), m.parse::<u32>()) {
            (Ok(h), Ok(m)) if (h < 24 && m < 60) || (h == 24 && m == 0) => Ok(h * 60 + m),
            _ => Err(format!("`{s}` is not a time of day (00:00–24:00)")),
        }
    };
    let mut ranges = Vec::new();
    for part in text.split(',') {
        let (a, b) = part
            .split_once('-')
            .ok_or_else(|| format!("`{}` is not a range; write `09:00-16:00`", part.trim()))?;
        let (a, b) = (time(a)?, time(b)?);
        if a >= b {
            return Err(format!(
                "`{}` is empty or runs backwards; write the start first (a range over midnight \
                 is two: `22:00-24:00,00:00-02:00`)",
                part.trim()
            ));
        }
        ranges.push((a, b));
    }
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        if w[1].0 < w[0].1 {
            let fmt = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
            return Err(format!(
                "the ranges {}-{} and {}-{} overlap",
                fmt(w[0].0),
                fmt(w[0].1),
                fmt(w[1].0),
                fmt(w[1].1)
            ));
        }
    }
    Ok(ranges)
}
