//! The five policy rules: blast radius refusals with their numbers, a time window judged on a
//! fixed clock (never the real one), approval, compliance; and their bad input.

use super::*;
use crate::plan::{RunContext, check_run};

fn at(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

fn ctx(now: &str) -> RunContext {
    RunContext {
        now: at(now),
        approved_by: None,
        allow_forbidden: false,
    }
}

fn with_policies(faults: &str, policies: &str) -> String {
    with(&format!(
        "{faults}phases: {{ baseline: 10m, inject: 20m, recover_within: 10m }}\npolicies:\n{policies}"
    ))
}

const ONE_FAULT: &str = "faults:\n  - name: f\n    latency: { delay: 100ms }\n    target: { select: { zone: a }, scope: all }\n";

fn verdict<'a>(v: &'a [crate::plan::PolicyVerdict], rule: &str) -> &'a crate::plan::PolicyVerdict {
    v.iter()
        .find(|x| x.rule == rule)
        .unwrap_or_else(|| panic!("no {rule} verdict in {v:?}"))
}

#[test]
fn the_time_window_is_judged_on_the_clock_it_is_given() {
    let text = with_policies(
        ONE_FAULT,
        "  time_window: { timezone: Europe/Paris, days: mon-fri, hours: \"09:00-16:00\", blackout: [\"2026-12-24\"] }\n",
    );
    let p = plan(&text, Some(1));
    // Monday 7 December 2026, 10:00 in Paris (09:00 UTC): inside, 6 h left for a 40 min run.
    let v = check_run(&p, &ctx("2026-12-07T09:00:00Z"));
    let w = verdict(&v, "time window");
    assert!(w.ok, "{w:?}");
    assert!(w.detail.contains("6h left"), "{w:?}");
    let end = p
        .policy
        .window
        .as_ref()
        .unwrap()
        .end_of_range(at("2026-12-07T09:00:00Z"));
    assert_eq!(
        end,
        Some(at("2026-12-07T15:00:00Z")),
        "16:00 in Paris is 15:00 UTC in winter"
    );
    // 08:59 Paris: not yet.
    assert!(!verdict(&check_run(&p, &ctx("2026-12-07T07:59:00Z")), "time window").ok);
    // 15:30 Paris: inside, but a 40 min run would outlast the window.
    let w = check_run(&p, &ctx("2026-12-07T14:30:00Z"));
    let w = verdict(&w, "time window");
    assert!(!w.ok && w.detail.contains("closes in 30m"), "{w:?}");
    // Saturday, and the blackout day (a Thursday), are refused.
    assert!(!verdict(&check_run(&p, &ctx("2026-12-12T10:00:00Z")), "time window").ok);
    let b = check_run(&p, &ctx("2026-12-24T10:00:00Z"));
    assert!(!verdict(&b, "time window").ok, "{b:?}");
    assert!(verdict(&check_run(&p, &ctx("2026-12-23T10:00:00Z")), "time window").ok);
    // Daylight saving: in July 16:00 Paris is 14:00 UTC.
    let end = p
        .policy
        .window
        .as_ref()
        .unwrap()
        .end_of_range(at("2026-07-06T08:00:00Z"));
    assert_eq!(end, Some(at("2026-07-06T14:00:00Z")));
}

#[test]
fn bad_windows_are_refused_where_they_are_written() {
    let d = errors(&with_policies(
        ONE_FAULT,
        "  time_window: { timezone: Europe/Pariss, days: mon-fry, hours: \"09:00-12:00,11:00-16:00\", blackout: [\"24/12\"] }\n",
    ));
    assert!(
        has(
            &d,
            "policies.time_window.timezone",
            "unknown time zone `Europe/Pariss`"
        ),
        "{d}"
    );
    assert!(
        has(&d, "policies.time_window.days", "`fry` is not a day"),
        "{d}"
    );
    assert!(has(&d, "policies.time_window.hours", "overlap"), "{d}");
    assert!(
        has(&d, "policies.time_window.blackout[0]", "not a date"),
        "{d}"
    );
    let d = errors(&with_policies(
        ONE_FAULT,
        "  time_window: { hours: \"16:00-09:00\" }\n",
    ));
    assert!(
        has(&d, "policies.time_window.hours", "empty or runs backwards"),
        "{d}"
    );
    let d = errors(&with_policies(
        ONE_FAULT,
        "  time_window: { hours: \"10:00-10:00\" }\n",
    ));
    assert!(has(&d, "policies.time_window.hours", "empty"), "{d}");
}

#[test]
fn blast_radius_refusals_name_the_rule_and_the_numbers() {
    let d = errors(&with_policies(
        ONE_FAULT,
        "  blast_radius: { max_targets: 1 }\n",
    ));
    assert!(
        has(
            &d,
            "policies.blast_radius.max_targets",
            "act on 2 targets (node-1, node-2), over max_targets 1"
        ),
        "{d}"
    );
    let d = errors(&with_policies(
        ONE_FAULT,
        "  blast_radius: { max_concurrent_faults: 1 }\n",
    ));
    assert!(
        has(
            &d,
            "policies.blast_radius.max_concurrent_faults",
            "2 fault instances"
        ),
        "{d}"
    );
    // All of zone a is 2 of 2 matching targets: 100 % > 50 %.
    let d = errors(&with_policies(
        ONE_FAULT,
        "  blast_radius: { max_percent: 50 }\n",
    ));
    assert!(
        has(
            &d,
            "faults[0].target.scope",
            "takes 2 of 2 matching targets (100.0%), over max_percent 50%"
        ),
        "{d}"
    );
    // Per role, over everything the selector matches: one target is 1 of the 3 of its role.
    let p = plan(
        &with_policies(
            "faults:\n  - name: f\n    latency: { delay: 100ms }\n    target: { scope: { count: 1 } }\n",
            "  blast_radius: { max_percent: 50, per: role, max_targets: 3 }\n",
        ),
        Some(1),
    );
    let planned = &p.policy.planned;
    assert!(
        planned.iter().any(|(r, t)| *r == "blast radius"
            && t.contains("1 of at most 3 targets")
            && t.contains("takes 1 of 3 matching targets of role=")),
        "{planned:?}"
    );
    // Zone a is one web and one db: per role, all of each (within the selector's matches).
    let d = errors(&with_policies(
        ONE_FAULT,
        "  blast_radius: { max_percent: 50, per: role }\n",
    ));
    assert!(
        has(
            &d,
            "faults[0].target.scope",
            "takes 1 of 1 matching targets of role=db (100.0%)"
        ),
        "{d}"
    );
    let d = errors(&with_policies(
        ONE_FAULT,
        "  blast_radius: { max_percent: 150 }\n",
    ));
    assert!(has(&d, "policies.blast_radius.max_percent", "100%"), "{d}");
    let d = errors(&with_policies(ONE_FAULT, "  blast_radius: { per: role }\n"));
    assert!(has(&d, "policies.blast_radius.per", "max_percent"), "{d}");
}

#[test]
fn approval_and_compliance() {
    let text = with_policies(
        ONE_FAULT,
        "  approval: { approvers: [alice, bob] }\n  compliance: { forbid: { zone: a } }\n",
    );
    let p = plan(&text, Some(1));
    let v = check_run(&p, &ctx("2026-12-07T09:00:00Z"));
    assert!(!verdict(&v, "approval").ok);
    assert!(!verdict(&v, "compliance").ok, "zone a is forbidden: {v:?}");
    assert!(
        verdict(&v, "compliance")
            .detail
            .contains("node-1, node-2 labelled zone=a")
    );
    let mut rc = ctx("2026-12-07T09:00:00Z");
    rc.approved_by = Some("mallory".into());
    assert!(!verdict(&check_run(&p, &rc), "approval").ok);
    rc.approved_by = Some("bob".into());
    rc.allow_forbidden = true;
    let v = check_run(&p, &rc);
    assert!(v.iter().all(|x| x.ok), "{v:?}");
    assert_eq!(verdict(&v, "approval").detail, "approved by bob");

    // Required metadata.
    let d = errors(&with_policies(
        ONE_FAULT,
        "  compliance: { require: [owner, ticket, description] }\n",
    ));
    assert!(
        has(&d, "policies.compliance.require[0]", "must state its owner"),
        "{d}"
    );
    assert!(
        has(&d, "policies.compliance.require[2]", "add a `description:`"),
        "{d}"
    );
    let ok = with_policies(ONE_FAULT, "  compliance: { require: [owner] }\n").replace(
        "name: scopes\n",
        "name: scopes\nmetadata: { owner: team-a }\n",
    );
    let p = plan(&ok, Some(1));
    assert!(p.policy.planned.iter().any(|(r, _)| *r == "compliance"));
    let d = errors(&with_policies(ONE_FAULT, "  max_consecutive_failures: 0\n"));
    assert!(
        has(&d, "policies.max_consecutive_failures", "at least 1"),
        "{d}"
    );
}
