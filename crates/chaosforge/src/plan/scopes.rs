//! Which targets each fault acts on: `target.select` (labels and names), `target.scope`
//! (single, a count, a share, all), and the sides of a group partition — every choice drawn
//! with the run's seed, so a plan is the same for the same file and seed.

use super::faults::{FaultKind, GroupSplit, Peer, TargetClass};
use super::{Cx, Target, TargetKind};
use crate::diag::did_you_mean;
use crate::scope::{self, GroupLabel, Scope, SeededRng, fnv1a};
use crate::spec::{self, PartitionShapeSpec, ScopeName, ScopeSpec};
use crate::units::Ratio;

/// Whether a `matched` target (indexes into `targets`) is a `container` target (then `pause`,
/// `kill` and `restart` go through the Docker engine).
pub(super) fn selects_containers(matched: &[usize], targets: &[Option<Target>]) -> bool {
    selects_kind(matched, targets, |k| matches!(k, TargetKind::Container(_)))
}

/// Whether a `matched` target is a host (or container) target (then `latency` and `corrupt` act
/// on packets).
pub(super) fn selects_hosts(matched: &[usize], targets: &[Option<Target>]) -> bool {
    selects_kind(matched, targets, |k| {
        matches!(k, TargetKind::Host { .. } | TargetKind::Container(_))
    })
}

/// Whether a `matched` target is valid and of a kind `is` accepts.
fn selects_kind(
    matched: &[usize],
    targets: &[Option<Target>],
    is: impl Fn(&TargetKind) -> bool,
) -> bool {
    matched.iter().any(|&ti| {
        targets
            .get(ti)
            .and_then(Option::as_ref)
            .is_some_and(|t| is(&t.kind))
    })
}

/// Draws the sides of a group partition from `chosen` (at least 2 targets, 3 for a bridge) with
/// the seed, salted by the fault's name so that two faults split differently. Pure.
pub fn split_group(
    shape: PartitionShapeSpec,
    chosen: &[String],
    seed: u64,
    salt: &str,
) -> GroupSplit {
    use PartitionShapeSpec as S;
    let mut order = chosen.to_vec();
    let mut rng = SeededRng::new(seed ^ fnv1a(&format!("{salt}/shape")));
    for i in (1..order.len()).rev() {
        let j = rng.below(i + 1);
        order.swap(i, j);
    }
    let (bridge, rest) = match shape {
        S::Bridge if !order.is_empty() => (Some(order.remove(0)), order),
        _ => (None, order),
    };
    let k = match shape {
        S::IsolateOne => 1.min(rest.len()),
        S::Halves | S::Bridge => rest.len().div_ceil(2),
    };
    let mut a = rest[..k].to_vec();
    let mut b = rest[k..].to_vec();
    a.sort();
    b.sort();
    GroupSplit {
        shape,
        a,
        b,
        bridge,
    }
}

fn group(by: GroupLabel, named: Option<String>) -> Scope {
    Scope::Group {
        by,
        named,
        chosen: None,
        among: Vec::new(),
    }
}

/// The peers a target of a group partition is cut from: the other side.
pub fn group_peers(split: &GroupSplit, target: &str) -> Vec<Peer> {
    let other = if split.a.iter().any(|t| t == target) {
        &split.b
    } else if split.b.iter().any(|t| t == target) {
        &split.a
    } else {
        return Vec::new();
    };
    other.iter().cloned().map(Peer::Target).collect()
}

// === impl Cx ===

impl Cx<'_> {
    /// `base` is the fault's path (`faults[3]`): the scope's own is made only for a diagnostic.
    pub(super) fn scope(&mut self, base: &str, spec: Option<&ScopeSpec>) -> Scope {
        let path = || format!("{base}.target.scope");
        match spec {
            None | Some(ScopeSpec::Named(ScopeName::Single)) => Scope::Single,
            Some(ScopeSpec::Named(ScopeName::All)) => Scope::All,
            Some(ScopeSpec::Named(ScopeName::Cluster)) => group(GroupLabel::Cluster, None),
            Some(ScopeSpec::Named(ScopeName::Region)) => group(GroupLabel::Region, None),
            Some(ScopeSpec::Sized(s)) if s.cluster.is_some() || s.region.is_some() => {
                let given = [
                    s.count.is_some(),
                    s.percent.is_some(),
                    s.cluster.is_some(),
                    s.region.is_some(),
                ];
                if given.iter().filter(|g| **g).count() > 1 {
                    self.err(
                        &path(),
                        "give exactly one of `count`, `percent`, `cluster` or `region`",
                    );
                }
                match (&s.cluster, &s.region) {
                    (Some(c), _) => group(GroupLabel::Cluster, Some(c.clone())),
                    (None, Some(r)) => group(GroupLabel::Region, Some(r.clone())),
                    (None, None) => Scope::Single,
                }
            }
            Some(ScopeSpec::Sized(s)) => match (s.count, &s.percent) {
                (Some(n), None) if n >= 1 => Scope::Count(n as usize),
                (Some(n), None) => {
                    self.err(
                        &format!("{}.count", path()),
                        format!("count must be at least 1, not {n}"),
                    );
                    Scope::Single
                }
                (None, Some(p)) => {
                    let text = if p.trim_end().ends_with('%') {
                        p.clone()
                    } else {
                        format!("{p}%")
                    };
                    match Ratio::parse(&text) {
                        Ok(r) if r.get() > 0.0 => Scope::Fraction(r.get()),
                        Ok(_) => {
                            self.err(&format!("{}.percent", path()), "percent must be above 0");
                            Scope::Single
                        }
                        Err(e) => {
                            self.err(&format!("{}.percent", path()), e.message);
                            Scope::Single
                        }
                    }
                }
                _ => {
                    self.err(
                        &path(),
                        "give exactly one of `count`, `percent`, `cluster` or `region`",
                    );
                    Scope::Single
                }
            },
        }
    }

    /// For a cluster or region scope: keeps only the `selected` targets of the chosen group
    /// (the named one, or one chosen with the seed) and records the choice in `scope`.
    /// `false` (with a diagnostic) when no group can be chosen.
    pub(super) fn choose_group(
        &mut self,
        base: &str,
        scope: &mut Scope,
        selected: &mut Vec<(usize, &spec::TargetSpec)>,
        seed: u64,
        salt: &str,
    ) -> bool {
        let Scope::Group {
            by,
            named,
            chosen,
            among,
        } = scope
        else {
            return true;
        };
        let key = by.key();
        let mut groups: Vec<String> = selected
            .iter()
            .filter_map(|(_, t)| t.labels.get(key).cloned())
            .collect();
        groups.sort();
        groups.dedup();
        let path = format!("{base}.target.scope");
        if groups.is_empty() {
            let names: Vec<&str> = selected.iter().map(|(_, t)| t.name.as_str()).collect();
            self.err(
                &path,
                format!(
                    "a {key} scope needs targets labelled `{key}`; the selector matches {}, \
                     none of which has one",
                    names.join(", ")
                ),
            );
            return false;
        }
        let pick = match named {
            Some(n) => {
                if !groups.contains(n) {
                    let hint = did_you_mean(n, groups.iter().map(String::as_str))
                        .map(|g| format!(" (did you mean `{g}`?)"))
                        .unwrap_or_default();
                    self.err(
                        &format!("{path}.{key}"),
                        format!(
                            "no matching target is in {key} `{n}`{hint}; the selector's targets \
                             are in {}",
                            groups.join(", ")
                        ),
                    );
                    return false;
                }
                n.clone()
            }
            None => match scope::choose_group(&groups, seed, salt) {
                Some(g) => g.clone(),
                None => return false,
            },
        };
        selected.retain(|(_, t)| t.labels.get(key) == Some(&pick));
        *chosen = Some(pick);
        *among = groups;
        true
    }

    /// The targets `select` matches, all of the kind the fault acts on; `None` (with a
    /// diagnostic) otherwise.
    // The selector's match list comes from the caller, which shares it between faults.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn select<'t>(
        &mut self,
        base: &str,
        key: &str,
        f: &spec::FaultSpec,
        matched: &[usize],
        kind: &FaultKind,
        target_specs: &'t [spec::TargetSpec],
        targets: &[Option<Target>],
    ) -> Option<Vec<(usize, &'t spec::TargetSpec)>> {
        let select = &f.target.select;
        let class = kind.target_class();
        let selected: Vec<(usize, &spec::TargetSpec)> = matched
            .iter()
            .filter_map(|&ti| target_specs.get(ti).map(|t| (ti, t)))
            .collect();
        let sel_path = || format!("{base}.target.select");
        if selected.is_empty() {
            let names: Vec<&str> = target_specs.iter().map(|t| t.name.as_str()).collect();
            let hint = select
                .get("name")
                .and_then(|n| did_you_mean(n, names.iter().copied()))
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_default();
            let sel = if select.is_empty() {
                "every target, but there are none".to_string()
            } else {
                format!("{select:?}, which no target has")
            };
            self.err(
                &sel_path(),
                format!("selects zero targets: it asks for {sel}{hint}"),
            );
            return None;
        }
        let mut wrong = Vec::new();
        for (ti, t) in &selected {
            let Some(Some(target)) = targets.get(*ti) else {
                continue;
            };
            let ok = matches!(
                (&target.kind, class),
                (
                    TargetKind::Proxy { .. } | TargetKind::RemoteProxy { .. },
                    TargetClass::Proxy
                ) | (TargetKind::Process(_), TargetClass::Process)
                    | (TargetKind::Host { .. }, TargetClass::Host)
                    | (TargetKind::HttpProxy { .. }, TargetClass::HttpProxy)
                    | (TargetKind::Container(_), TargetClass::Container)
            ) || (kind.also_on_process() && matches!(target.kind, TargetKind::Process(_)))
                || (kind.also_on_container() && matches!(target.kind, TargetKind::Container(_)));
            self.mitm_upstream(base, kind, &t.name, &target.kind);
            if !ok {
                wrong.push(t.name.as_str());
            }
        }
        if !wrong.is_empty() {
            let need = match class {
                TargetClass::Proxy => "proxy",
                TargetClass::Process => "process",
                TargetClass::Host if kind.also_on_process() => "netns, host or process",
                TargetClass::Host if kind.also_on_container() => "netns, host or container",
                TargetClass::Host => "netns or host",
                TargetClass::HttpProxy => "http_proxy",
                TargetClass::Container => "container",
            };
            self.err(
                &sel_path(),
                format!(
                    "`{key}` acts on {need} targets, but the selector matches {}",
                    wrong.join(", ")
                ),
            );
            return None;
        }
        Some(selected)
    }

    /// `false` (with a diagnostic) when the scope asks for more targets than match.
    pub(super) fn fits(&mut self, base: &str, scope: &Scope, matching: usize) -> bool {
        if let Scope::Count(n) = *scope
            && n > matching
        {
            self.err(
                &format!("{base}.target.scope"),
                format!("scope asks for {n} targets but only {matching} match"),
            );
            return false;
        }
        true
    }
}
