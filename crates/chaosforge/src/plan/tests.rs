//! Unit tests of `plan::compile`: scopes and selectors, seeds, defaults, fault descriptions, and a
//! property test that mangled files never panic the pipeline and always get located diagnostics.
//!
//! Everything here is pure: text in, `Plan` or `Diagnostics` out, no runtime.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::source::Document;

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

// === scopes and selectors ===

#[test]
fn single_is_the_default_and_picks_one_match() {
    for seed in 0..50 {
        let p = plan(&one_fault("{ select: { zone: a } }"), Some(seed));
        assert_eq!(p.faults[0].scope, Scope::Single);
        let t = &p.faults[0].targets;
        assert_eq!(t.len(), 1);
        // Only zone-a targets may be chosen, whatever the seed.
        assert!(t[0] == "node-1" || t[0] == "node-2", "{t:?}");
    }
    let p = plan(
        &one_fault("{ select: { zone: a }, scope: single }"),
        Some(3),
    );
    assert_eq!(p.faults[0].scope, Scope::Single);
    assert_eq!(p.faults[0].targets.len(), 1);
}

#[test]
fn all_takes_every_match_in_file_order() {
    let p = plan(&one_fault("{ select: { zone: b }, scope: all }"), Some(9));
    assert_eq!(p.faults[0].scope, Scope::All);
    assert_eq!(p.faults[0].targets, ["node-3", "node-4"]);

    // An empty selector matches every target.
    let p = plan(&one_fault("{ scope: all }"), Some(9));
    assert_eq!(p.faults[0].targets, ALL_NODES);
}

#[test]
fn count_takes_that_many_distinct_matches_in_file_order() {
    for seed in 0..50 {
        let p = plan(&one_fault("{ scope: { count: 2 } }"), Some(seed));
        assert_eq!(p.faults[0].scope, Scope::Count(2));
        let t = &p.faults[0].targets;
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(t[0] < t[1], "distinct and in file order: {t:?}");
        assert!(t.iter().all(|n| ALL_NODES.contains(&n.as_str())));
    }
}

#[test]
fn percent_rounds_up_and_accepts_a_percent_sign() {
    for (scope, want) in [
        ("{ percent: 50 }", 3),
        ("{ percent: \"50%\" }", 3),
        ("{ percent: 10 }", 1),  // 0.6 rounds up to one
        ("{ percent: 34 }", 3),  // 2.04 rounds up to three
        ("{ percent: 100 }", 6), // everything
        ("{ percent: 0.5 }", 1), // a bare number is a percentage here, not a fraction
        ("{ percent: \"1 %\" }", 1),
    ] {
        let p = plan(&one_fault(&format!("{{ scope: {scope} }}")), Some(5));
        assert_eq!(p.faults[0].targets.len(), want, "scope {scope}");
        assert!(matches!(p.faults[0].scope, Scope::Fraction(_)), "{scope}");
    }
    let p = plan(&one_fault("{ scope: { percent: 50 } }"), Some(5));
    assert_eq!(p.faults[0].scope, Scope::Fraction(0.5));
}

#[test]
fn label_selectors_match_subsets() {
    let p = plan(&one_fault("{ select: { role: db }, scope: all }"), Some(1));
    assert_eq!(p.faults[0].targets, ["node-2", "node-4", "node-6"]);
    // Every label of the selector must match.
    let p = plan(
        &one_fault("{ select: { role: web, zone: c }, scope: all }"),
        Some(1),
    );
    assert_eq!(p.faults[0].targets, ["node-5"]);
    // A count over a subset chooses within it only.
    for seed in 0..30 {
        let p = plan(
            &one_fault("{ select: { role: db }, scope: { count: 2 } }"),
            Some(seed),
        );
        let t = &p.faults[0].targets;
        assert_eq!(t.len(), 2);
        assert!(
            t.iter()
                .all(|n| ["node-2", "node-4", "node-6"].contains(&n.as_str()))
        );
    }
}

#[test]
fn name_selector_picks_a_target_by_name() {
    let p = plan(&one_fault("{ select: { name: node-4 } }"), Some(1));
    assert_eq!(p.faults[0].targets, ["node-4"]);
    // `name` combines with labels like any other key.
    let p = plan(
        &one_fault("{ select: { name: node-3, zone: b }, scope: all }"),
        Some(1),
    );
    assert_eq!(p.faults[0].targets, ["node-3"]);
    let d = errors(&one_fault("{ select: { name: node-3, zone: a } }"));
    assert!(
        has(&d, "faults[0].target.select", "selects zero targets"),
        "{d}"
    );
}

#[test]
fn a_misspelt_name_selects_nothing_and_gets_a_suggestion() {
    let d = errors(&one_fault("{ select: { name: nod-4 } }"));
    assert!(
        has(&d, "faults[0].target.select", "did you mean `node-4`?"),
        "{d}"
    );
    // The diagnostic points into the file.
    let span = d.iter().next().and_then(|x| x.span).unwrap();
    assert!(span.line > 1);
}

#[test]
fn a_selector_no_target_has_is_an_error() {
    let d = errors(&one_fault("{ select: { zone: z } }"));
    assert!(
        has(&d, "faults[0].target.select", "selects zero targets"),
        "{d}"
    );
}

#[test]
fn bad_scopes_are_reported_at_the_scope() {
    let d = errors(&one_fault("{ scope: { count: 7 } }"));
    assert!(
        has(
            &d,
            "faults[0].target.scope",
            "asks for 7 targets but only 6"
        ),
        "{d}"
    );
    let d = errors(&one_fault("{ scope: { count: 0 } }"));
    assert!(has(&d, "faults[0].target.scope.count", "at least 1"), "{d}");
    let d = errors(&one_fault("{ scope: { percent: 0 } }"));
    assert!(has(&d, "faults[0].target.scope.percent", "above 0"), "{d}");
    let d = errors(&one_fault("{ scope: { percent: 150 } }"));
    assert!(
        has(&d, "faults[0].target.scope.percent", "over 100%"),
        "{d}"
    );
    let d = errors(&one_fault("{ scope: { count: 1, percent: 10 } }"));
    assert!(
        has(
            &d,
            "faults[0].target.scope",
            "exactly one of `count` or `percent`"
        ),
        "{d}"
    );
    let d = errors(&one_fault("{ scope: singel }"));
    assert!(d.iter().any(|x| x.path == "faults[0].target.scope"), "{d}");
}

#[test]
fn every_problem_is_reported_at_once() {
    // Three independent mistakes in three faults: all three come back, in file order.
    let text = with(
        "faults:
  - name: a
    latency: { delay: 100ms }
    target: { scope: { count: 9 } }
  - name: b
    latency: { delay: 100ms }
    target: { select: { zone: q } }
  - name: c
    latency: { delay: 10 parsecs }
    target: {}
",
    );
    let d = errors(&text);
    assert!(has(&d, "faults[0].target.scope", "asks for 9"), "{d}");
    assert!(has(&d, "faults[1].target.select", "zero targets"), "{d}");
    assert!(d.iter().any(|x| x.path == "faults[2].latency.delay"), "{d}");
    let lines: Vec<u32> = d.iter().map(|x| x.span.unwrap().line).collect();
    assert!(lines.is_sorted(), "{lines:?}");
}

// === seeds ===

#[test]
fn the_same_seed_always_selects_the_same_targets() {
    let text = with(
        "faults:
  - name: one
    latency: { delay: 100ms }
    target: { scope: single }
  - name: two
    latency: { delay: 100ms }
    target: { scope: { count: 3 } }
  - name: half
    latency: { delay: 100ms }
    target: { scope: { percent: 50 } }
",
    );
    for seed in [0, 1, 42, u64::MAX] {
        let first = plan(&text, Some(seed)).faults;
        for _ in 0..5 {
            assert_eq!(plan(&text, Some(seed)).faults, first, "seed {seed}");
        }
    }
}

#[test]
fn different_seeds_spread_the_choice() {
    let text = one_fault("{ scope: single }");
    let mut hits: BTreeMap<String, u32> = BTreeMap::new();
    for seed in 0..600 {
        let t = plan(&text, Some(seed)).faults[0].targets.clone();
        *hits.entry(t[0].clone()).or_default() += 1;
    }
    // Every target gets chosen, none hugely more than the others (expected 100 each).
    assert_eq!(hits.len(), 6, "{hits:?}");
    assert!(hits.values().all(|&n| (50..=150).contains(&n)), "{hits:?}");

    let text = one_fault("{ scope: { count: 2 } }");
    let pairs: BTreeSet<Vec<String>> = (0..100)
        .map(|s| plan(&text, Some(s)).faults[0].targets.clone())
        .collect();
    // 15 possible pairs; 100 seeds should find most of them.
    assert!(pairs.len() >= 12, "{pairs:?}");
}

#[test]
fn the_seed_argument_overrides_the_files_seed() {
    let text = format!("seed: 7\n{}", one_fault("{ scope: { count: 3 } }"));
    let from_file = plan(&text, None);
    assert_eq!(from_file.seed, 7);
    let same = plan(&text, Some(7));
    assert_eq!(same.faults, from_file.faults);

    let over = plan(&text, Some(8));
    assert_eq!(over.seed, 8);
    // Same choices as a file that says `seed: 8`: the override is the only seed used.
    let text8 = format!("seed: 8\n{}", one_fault("{ scope: { count: 3 } }"));
    assert_eq!(over.faults, plan(&text8, None).faults);
    // And the override does change something for some seed (otherwise the test proves nothing).
    assert!(
        (100..140).any(|s| plan(&text, Some(s)).faults != from_file.faults),
        "no seed changed the choice"
    );
}

#[test]
fn without_any_seed_one_is_drawn_and_kept_in_the_plan() {
    let text = one_fault("{ scope: single }");
    let p = plan(&text, None);
    // The drawn seed reproduces the plan.
    assert_eq!(plan(&text, Some(p.seed)).faults, p.faults);
}

#[test]
fn reordering_faults_does_not_change_each_faults_choice() {
    let fault = |name: &str, scope: &str| {
        format!(
            "  - name: {name}\n    latency: {{ delay: 100ms }}\n    target: {{ scope: {scope} }}\n"
        )
    };
    let a = fault("alpha", "single");
    let b = fault("beta", "{ count: 2 }");
    let c = fault("gamma", "{ percent: 50 }");
    let d = fault("delta", "single");
    for seed in 0..40 {
        let p1 = plan(&with(&format!("faults:\n{a}{b}{c}")), Some(seed));
        let p2 = plan(&with(&format!("faults:\n{c}{a}{b}")), Some(seed));
        // Adding a fault leaves the others alone too.
        let p3 = plan(&with(&format!("faults:\n{b}{d}{c}{a}")), Some(seed));
        for name in ["alpha", "beta", "gamma"] {
            assert_eq!(targets_of(&p1, name), targets_of(&p2, name), "{name}");
            assert_eq!(targets_of(&p1, name), targets_of(&p3, name), "{name}");
        }
    }
}

#[test]
fn faults_with_the_same_scope_choose_independently() {
    // Salted by name: two identical faults do not always hit the same target.
    let text = with(
        "faults:
  - name: first
    latency: { delay: 100ms }
    target: {}
  - name: second
    latency: { delay: 100ms }
    target: {}
",
    );
    let differ = (0..50)
        .filter(|&s| {
            let p = plan(&text, Some(s));
            p.faults[0].targets != p.faults[1].targets
        })
        .count();
    // Independent uniform picks among six differ 5/6 of the time.
    assert!(differ >= 30, "only {differ} of 50 seeds differ");
}

// === defaults ===

#[test]
fn phase_and_policy_defaults() {
    let p = plan(&one_fault("{}"), Some(1));
    assert_eq!(
        p.phases,
        Phases {
            baseline: Duration::from_secs(10),
            inject: Duration::from_secs(30),
            recover_within: Duration::from_secs(30),
        }
    );
    assert_eq!(p.halt_window, Duration::from_secs(1));
    assert!(p.halt_when.is_empty());
    assert_eq!(p.name, "scopes");
    assert_eq!(p.file, "t.yaml");
    // Without a title, one is made from the expectations.
    assert_eq!(p.title, "api: availability >= 99%");

    let p = plan(
        &format!(
            "{}phases: {{ baseline: 1ms, inject: 2s, recover_within: 1m }}\n",
            one_fault("{}")
        ),
        Some(1),
    );
    assert_eq!(p.phases.baseline, Duration::from_millis(1));
    assert_eq!(p.phases.inject, Duration::from_secs(2));
    assert_eq!(p.phases.recover_within, Duration::from_secs(60));
}

#[test]
fn zero_phases_are_rejected() {
    let d = errors(&format!(
        "{}phases: {{ baseline: 0s, inject: 0ms }}\n",
        one_fault("{}")
    ));
    assert!(has(&d, "phases.baseline", "longer than zero"), "{d}");
    assert!(has(&d, "phases.inject", "longer than zero"), "{d}");
}

#[test]
fn monitor_defaults() {
    let text = one_fault("{}").replace(
        "      http: { url: \"http://127.0.0.1:8080/\" }\n",
        "      http: { url: \"http://127.0.0.1:8080/\" }
    - name: posted
      http: { url: \"http://127.0.0.1:8080/x\", method: post, interval: 250ms, timeout: 2s }
    - name: port
      tcp: { address: \"127.0.0.1:5432\" }
",
    );
    let p = plan(&text, Some(1));
    assert_eq!(p.monitors.len(), 3);
    let m = &p.monitors[0];
    assert_eq!(m.interval, Duration::from_secs(1));
    let ProbePlan::Http(h) = &m.probe else {
        panic!("{:?}", m.probe)
    };
    assert_eq!(h.method, "GET");
    assert_eq!(h.timeout, Duration::from_secs(1));
    assert_eq!(m.probe.timeout(), Duration::from_secs(1));
    assert_eq!(h.success, StatusSet::default());

    let m = &p.monitors[1];
    assert_eq!(m.interval, Duration::from_millis(250));
    let ProbePlan::Http(h) = &m.probe else {
        panic!("{:?}", m.probe)
    };
    assert_eq!(h.method, "POST", "methods are upper-cased");
    assert_eq!(h.timeout, Duration::from_secs(2));

    let m = &p.monitors[2];
    assert_eq!(m.interval, Duration::from_secs(1));
    assert!(
        matches!(&m.probe, ProbePlan::Tcp { address, timeout }
            if address == "127.0.0.1:5432" && *timeout == Duration::from_secs(1)),
        "{:?}",
        m.probe
    );
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

#[test]
fn proxy_faults_default_to_one_downstream_toxic_at_full_toxicity() {
    for k in [
        "latency: { delay: 100ms }",
        "bandwidth: { rate: 1MB/s }",
        "timeout: {}",
        "reset: {}",
        "down: {}",
        "corrupt: { probability: 1% }",
    ] {
        let FaultKind::Proxy {
            streams, toxicity, ..
        } = kind_of(k)
        else {
            panic!("{k}: not a proxy fault")
        };
        assert_eq!(streams, [Stream::Downstream], "{k}");
        assert_eq!(toxicity, Ratio::ONE, "{k}");
    }
}

#[test]
fn direction_chooses_the_streams() {
    let streams = |dir: &str| match kind_of(&format!("latency: {{ delay: 1ms, direction: {dir} }}"))
    {
        FaultKind::Proxy { streams, .. } => streams,
        k => panic!("{k:?}"),
    };
    assert_eq!(streams("downstream"), [Stream::Downstream]);
    assert_eq!(streams("upstream"), [Stream::Upstream]);
    assert_eq!(streams("both"), [Stream::Upstream, Stream::Downstream]);
}

#[test]
fn fault_values_are_parsed() {
    assert_eq!(
        kind_of("latency: { delay: 200ms, jitter: 20ms, toxicity: 25% }"),
        FaultKind::Proxy {
            streams: vec![Stream::Downstream],
            toxicity: Ratio::new(0.25).unwrap(),
            fault: ProxyFault::Latency {
                delay: Duration::from_millis(200),
                jitter: Duration::from_millis(20),
            },
        }
    );
    assert!(matches!(
        kind_of("bandwidth: { rate: 512KiB/s }"),
        FaultKind::Proxy {
            fault: ProxyFault::Bandwidth { rate: 524_288 },
            ..
        }
    ));
    assert!(matches!(
        kind_of("timeout: {}"),
        FaultKind::Proxy {
            fault: ProxyFault::Timeout { after: None },
            ..
        }
    ));
    assert!(matches!(
        kind_of("reset: {}"),
        FaultKind::Proxy {
            fault: ProxyFault::Reset {
                after: Duration::ZERO
            },
            ..
        }
    ));
    assert!(matches!(
        kind_of("corrupt: { probability: 1%, per: chunk, direction: both }"),
        FaultKind::Proxy {
            fault: ProxyFault::Corrupt {
                per: CorruptUnit::Chunk,
                ..
            },
            ..
        }
    ));
}

// === FaultKind ===

#[test]
fn describe_strings() {
    for (k, want) in [
        ("latency: { delay: 200ms }", "latency 200ms (downstream)"),
        (
            "latency: { delay: 200ms, jitter: 20ms }",
            "latency 200ms ±20ms (downstream)",
        ),
        (
            "latency: { delay: 1.5s, direction: both, toxicity: 50% }",
            "latency 1.5s (both ways, toxicity 50%)",
        ),
        (
            "latency: { delay: 1ms, direction: upstream }",
            "latency 1ms (upstream)",
        ),
        (
            "bandwidth: { rate: 1MB/s }",
            "bandwidth 1000000 B/s (downstream)",
        ),
        (
            "timeout: { after: 5s }",
            "timeout (close after 5s) (downstream)",
        ),
        ("timeout: {}", "timeout (hold forever) (downstream)"),
        ("reset: {}", "reset after 0s (downstream)"),
        (
            "reset: { after: 250ms, toxicity: 10% }",
            "reset after 250ms (downstream, toxicity 10%)",
        ),
        ("down: {}", "down"),
        (
            "corrupt: { probability: 1% }",
            "corrupt 1% per byte (downstream)",
        ),
        (
            "corrupt: { probability: 0.5%, per: chunk, direction: upstream }",
            "corrupt 0.5% per chunk (upstream)",
        ),
    ] {
        assert_eq!(kind_of(k).describe(), want, "{k}");
    }
    assert_eq!(
        FaultKind::Pause.describe(),
        "pause (SIGSTOP, reverted by SIGCONT)"
    );
    assert_eq!(
        FaultKind::Kill {
            signal: 9,
            signal_name: "SIGKILL".into(),
            reach: KillReach::Process,
        }
        .describe(),
        "kill with SIGKILL (irreversible)"
    );
}

#[test]
fn names_and_target_classes() {
    for (k, name) in [
        ("latency: { delay: 1ms }", "latency"),
        ("bandwidth: { rate: 1kB/s }", "bandwidth"),
        ("timeout: {}", "timeout"),
        ("reset: {}", "reset"),
        ("down: {}", "down"),
        ("corrupt: { probability: 1% }", "corrupt"),
    ] {
        let kind = kind_of(k);
        assert_eq!(kind.name(), name);
        assert_eq!(kind.target_class(), TargetClass::Proxy);
        assert_eq!(kind.irreversible(), None, "{k}");
    }
    assert_eq!(FaultKind::Pause.name(), "pause");
    assert_eq!(FaultKind::Pause.target_class(), TargetClass::Process);
    assert_eq!(FaultKind::Pause.irreversible(), None);
    let kill = FaultKind::Kill {
        signal: 15,
        signal_name: "SIGTERM".into(),
        reach: KillReach::Process,
    };
    assert_eq!(kill.name(), "kill");
    assert_eq!(kill.target_class(), TargetClass::Process);
    assert!(kill.irreversible().is_some());
}

/// `HEAD` with one process target (`worker`, pid 4242) appended to the targets, plus `rest`.
fn with_process(rest: &str) -> String {
    let head = HEAD.replace(
        "hypothesis:\n",
        "  - name: worker\n    process: { pid: 4242 }\n    labels: { role: worker }\nhypothesis:\n",
    );
    format!("{head}{rest}")
}

#[test]
fn kill_needs_allow_irreversible() {
    let fault = "faults:
  - name: k
    kill: { signal: term }
    target: { select: { name: worker } }
";
    let d = errors(&with_process(fault));
    assert!(
        has(&d, "faults[0].kill", "policies.allow_irreversible: true"),
        "{d}"
    );
    assert_eq!(d.len(), 1, "{d}");

    let p = plan(
        &with_process(&format!(
            "{fault}policies: {{ allow_irreversible: true }}\n"
        )),
        Some(1),
    );
    assert_eq!(
        p.faults[0].kind,
        FaultKind::Kill {
            signal: 15,
            signal_name: "SIGTERM".into(),
            reach: KillReach::Process,
        }
    );
    assert_eq!(
        p.faults[0].kind.describe(),
        "kill with SIGTERM (irreversible)"
    );
    assert_eq!(p.faults[0].targets, ["worker"]);

    // The default signal is SIGKILL; an unknown one is an error at the signal.
    let p = plan(
        &with_process(
            "faults:
  - name: k
    kill: {}
    target: { select: { role: worker } }
policies: { allow_irreversible: true }
",
        ),
        Some(1),
    );
    assert_eq!(
        p.faults[0].kind.describe(),
        "kill with SIGKILL (irreversible)"
    );
    let d = errors(&with_process(
        "faults:
  - name: k
    kill: { signal: SIGFOO }
    target: { select: { role: worker } }
policies: { allow_irreversible: true }
",
    ));
    assert!(has(&d, "faults[0].kill.signal", "unknown signal"), "{d}");
}

#[test]
fn pause_is_reversible_and_needs_no_permission() {
    let p = plan(
        &with_process(
            "faults:
  - name: p
    pause: {}
    target: { select: { role: worker } }
",
        ),
        Some(1),
    );
    assert_eq!(p.faults[0].kind, FaultKind::Pause);
    assert_eq!(p.faults[0].targets, ["worker"]);
}

/// One fault named `f` of `kind` (a flow mapping) on the process target `worker`, plus `extra`.
fn process_fault(kind: &str, extra: &str) -> String {
    with_process(&format!(
        "faults:\n  - name: f\n    {kind}\n    target: {{ select: {{ name: worker }} }}\n{extra}"
    ))
}

#[test]
fn kill_reaches_the_group_or_the_cgroup_but_not_both() {
    let allow = "policies: { allow_irreversible: true }\n";
    let p = plan(&process_fault("kill: { group: true }", allow), Some(1));
    assert_eq!(
        p.faults[0].kind.describe(),
        "kill the process group with SIGKILL (irreversible)"
    );
    let p = plan(
        &process_fault("kill: { signal: TERM, cgroup: true }", allow),
        Some(1),
    );
    assert!(matches!(
        p.faults[0].kind,
        FaultKind::Kill {
            signal: 15,
            reach: KillReach::Cgroup,
            ..
        }
    ));
    assert!(p.faults[0].kind.irreversible().is_some());
    let d = errors(&process_fault("kill: { group: true, cgroup: true }", allow));
    assert!(has(&d, "faults[0].kill.cgroup", "not both"), "{d}");
    // Without the policy, a group kill is refused like any kill.
    let d = errors(&process_fault("kill: { group: true }", ""));
    assert!(has(&d, "faults[0].kill", "irreversible"), "{d}");
}

#[test]
fn limits_take_a_headroom_and_need_no_permission() {
    let p = plan(&process_fault("fd-exhaustion: {}", ""), Some(1));
    assert_eq!(p.faults[0].kind, FaultKind::FdExhaustion { headroom: 0 });
    assert_eq!(p.faults[0].kind.name(), "fd-exhaustion");
    assert_eq!(p.faults[0].kind.irreversible(), None);
    let p = plan(
        &process_fault("process-limit: { headroom: 3 }", ""),
        Some(1),
    );
    assert_eq!(p.faults[0].kind, FaultKind::ProcessLimit { headroom: 3 });
    assert_eq!(
        p.faults[0].kind.describe(),
        "process-limit: 3 more process(es) for its user (RLIMIT_NPROC)"
    );
    let d = errors(&process_fault("fd-exhaustion: { headroom: -1 }", ""));
    assert!(
        has(
            &d,
            "faults[0].fd-exhaustion.headroom",
            "`-1` is not a headroom"
        ),
        "{d}"
    );
    let d = errors(&process_fault("process-limit: { headroom: 2000000 }", ""));
    assert!(
        has(&d, "faults[0].process-limit.headroom", "from 0 to 1000000"),
        "{d}"
    );
}

#[test]
fn freeze_is_reversible_and_may_take_the_tree() {
    let p = plan(&process_fault("freeze: { tree: true }", ""), Some(1));
    assert_eq!(p.faults[0].kind, FaultKind::Freeze { tree: true });
    assert_eq!(p.faults[0].kind.target_class(), TargetClass::Process);
    assert_eq!(p.faults[0].kind.irreversible(), None);
    let d = errors(&with(
        "faults:\n  - name: f\n    freeze: {}\n    target: { select: { zone: a } }\n",
    ));
    assert!(
        has(&d, "faults[0].target.select", "acts on process targets"),
        "{d}"
    );
}

#[test]
fn restart_needs_a_command_one_readiness_check_and_a_timeout() {
    let p = plan(
        &process_fault(
            r#"restart: { command: "systemctl restart api", ready: { tcp: "127.0.0.1:8080" }, timeout: 10s }"#,
            "",
        ),
        Some(1),
    );
    assert_eq!(
        p.faults[0].kind,
        FaultKind::Restart {
            command: "systemctl restart api".into(),
            ready: Readiness::Tcp("127.0.0.1:8080".into()),
            timeout: Duration::from_secs(10),
        }
    );
    assert_eq!(
        p.faults[0].kind.describe(),
        "restart with `systemctl restart api`, ready within 10s when tcp 127.0.0.1:8080 accepts"
    );
    assert_eq!(p.faults[0].kind.irreversible(), None, "nothing is lost");
    let p = plan(
        &process_fault(
            r#"restart: { command: "x", ready: { http: "http://127.0.0.1:8080/health" } }"#,
            "",
        ),
        Some(1),
    );
    assert!(matches!(
        &p.faults[0].kind,
        FaultKind::Restart { ready: Readiness::Http(_), timeout, .. } if *timeout == Duration::from_secs(30)
    ));
    for (kind, path, needle) in [
        (
            r#"restart: { command: "", ready: { command: "true" } }"#,
            "faults[0].restart.command",
            "empty command",
        ),
        (
            r#"restart: { command: "x" }"#,
            "faults[0].restart",
            "needs `ready`",
        ),
        (
            r#"restart: { command: "x", ready: {} }"#,
            "faults[0].restart.ready",
            "one of `tcp`, `http` or `command`",
        ),
        (
            r#"restart: { command: "x", ready: { tcp: "127.0.0.1:1", http: "http://x/" } }"#,
            "faults[0].restart.ready.http",
            "tcp and http",
        ),
        (
            r#"restart: { command: "x", ready: { tcp: "8080" } }"#,
            "faults[0].restart.ready.tcp",
            "not `host:port`",
        ),
        (
            r#"restart: { command: "x", ready: { http: "ftp://x/" } }"#,
            "faults[0].restart.ready.http",
            "scheme `ftp`",
        ),
        (
            r#"restart: { command: "x", ready: { command: "true" }, timeout: 0s }"#,
            "faults[0].restart.timeout",
            "longer than zero",
        ),
    ] {
        let d = errors(&process_fault(kind, ""));
        assert!(has(&d, path, needle), "{kind}:\n{d}");
    }
}

#[test]
fn fault_kinds_must_fit_their_targets() {
    // A proxy fault whose selector reaches a process target is refused, naming the culprit.
    let d = errors(&with_process(
        "faults:
  - name: f
    latency: { delay: 1ms }
    target: { scope: all }
",
    ));
    assert!(
        has(
            &d,
            "faults[0].target.select",
            "acts on proxy targets, but the selector matches worker"
        ),
        "{d}"
    );
    let d = errors(&with_process(
        "faults:
  - name: f
    pause: {}
    target: { select: { zone: a } }
",
    ));
    assert!(
        has(&d, "faults[0].target.select", "acts on process targets"),
        "{d}"
    );
}

#[test]
fn a_fault_has_exactly_one_kind() {
    let d = errors(&with(
        "faults:
  - name: f
    target: {}
",
    ));
    assert!(has(&d, "faults[0]", "names no fault kind"), "{d}");
    let d = errors(&with(
        "faults:
  - name: f
    latency: { delay: 1ms }
    down: {}
    target: {}
",
    ));
    assert!(has(&d, "faults[0].down", "latency and down"), "{d}");
}

#[test]
fn duplicate_fault_names_are_reported() {
    let d = errors(&with(
        "faults:
  - name: f
    latency: { delay: 1ms }
    target: {}
  - name: f
    down: {}
    target: {}
",
    ));
    assert!(has(&d, "faults[1].name", "duplicate fault name `f`"), "{d}");
}

#[test]
fn targets_in_use_lists_each_chosen_target_once() {
    let p = plan(
        &with(
            "faults:
  - name: a
    latency: { delay: 1ms }
    target: { select: { zone: a }, scope: all }
  - name: b
    down: {}
    target: { select: { role: web }, scope: all }
",
        ),
        Some(1),
    );
    let used: Vec<&str> = targets_in_use(&p).into_iter().collect();
    assert_eq!(used, ["node-1", "node-2", "node-3", "node-5"]);
}

// === robustness ===

const BASE: &str = include_str!("../../../chaosforge-cli/tests/data/valid/base.yaml");

#[test]
fn the_base_file_is_valid() {
    let p = plan(BASE, None);
    assert_eq!(p.faults[0].targets, ["payments"]);
}

/// One way to damage a file.
#[derive(Debug, Clone)]
enum Mutation {
    DeleteByte(usize),
    InsertByte(usize, u8),
    ReplaceByte(usize, u8),
    DuplicateLine(usize),
    DeleteLine(usize),
    SwapLines(usize, usize),
    /// Replaces the value after the `n`-th `: ` (a scalar, or the start of a flow value).
    ReplaceScalar(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that matter to YAML get extra weight over arbitrary ones.
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(b": -{}[],#&*!|>'\"%@`\n\t0123456789.".to_vec()),
    ];
    let text = prop_oneof![
        "[ -~]{0,12}",
        "\\PC{0,8}",
        prop::sample::select(vec![
            "",
            "~",
            "null",
            "-1",
            "0",
            "0s",
            "1e999",
            "99999999999999999999999",
            "[]",
            "{}",
            "*a",
            "&a x",
            "!!int x",
            "\"",
            "'",
            "- x",
            "{ a: [",
            "100%",
            "-5%",
            "NaN",
            ".nan",
            "18446744073709551616",
            "0x10",
            "true",
            "\"\\ud800\"",
            "<<: *a",
            "? x",
        ])
        .prop_map(String::from),
    ];
    prop_oneof![
        any::<prop::sample::Index>().prop_map(|i| Mutation::DeleteByte(i.index(BASE.len()))),
        (any::<prop::sample::Index>(), byte.clone())
            .prop_map(|(i, b)| Mutation::InsertByte(i.index(BASE.len() + 1), b)),
        (any::<prop::sample::Index>(), byte)
            .prop_map(|(i, b)| Mutation::ReplaceByte(i.index(BASE.len()), b)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::DeleteLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), text).prop_map(|(n, t)| Mutation::ReplaceScalar(n, t)),
    ]
}

/// Applies `m` to `bytes`; indices wrap so every mutation applies to whatever is left.
fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::DeleteByte(i) if !bytes.is_empty() => {
            bytes.remove(i % bytes.len());
        }
        Mutation::DeleteByte(_) => {}
        Mutation::InsertByte(i, b) => bytes.insert(i % (bytes.len() + 1), *b),
        Mutation::ReplaceByte(i, b) if !bytes.is_empty() => {
            let n = bytes.len();
            bytes[i % n] = *b;
        }
        Mutation::ReplaceByte(..) => {}
        Mutation::DuplicateLine(_) | Mutation::DeleteLine(_) | Mutation::SwapLines(..) => {
            let mut lines: Vec<Vec<u8>> =
                bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
            let n = lines.len();
            match m {
                Mutation::DuplicateLine(i) => {
                    let l = lines[i % n].clone();
                    lines.insert(i % n, l);
                }
                Mutation::DeleteLine(i) if n > 1 => {
                    lines.remove(i % n);
                }
                Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
                _ => {}
            }
            *bytes = lines.join(&b'\n');
        }
        Mutation::ReplaceScalar(k, text) => {
            let starts: Vec<usize> = bytes
                .windows(2)
                .enumerate()
                .filter(|(_, w)| *w == b": ")
                .map(|(i, _)| i + 2)
                .collect();
            if starts.is_empty() {
                return;
            }
            let start = starts[k % starts.len()];
            // The value runs to the next `,`, `}`, `]` or end of line.
            let end = bytes[start..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b'\n'))
                .map_or(bytes.len(), |p| start + p);
            bytes.splice(start..end, text.bytes());
        }
    }
}

/// Parses, decodes and compiles `text`; checks that every diagnostic points into the file.
fn check_diagnostics_are_located(text: &str) -> Result<(), TestCaseError> {
    let result = Document::parse("m.yaml", text).and_then(|doc| {
        let spec: ExperimentSpec = crate::de::decode(&doc)?;
        compile(&doc, &spec, Some(1)).map(|_| ())
    });
    let Err(diags) = result else { return Ok(()) };
    prop_assert!(!diags.is_empty(), "an error without a diagnostic");
    // A span may sit just after the last newline (end of file), hence the `+ 1`.
    let last_line = text.bytes().filter(|&b| b == b'\n').count() + 1;
    for d in diags.iter() {
        let Some(span) = d.span else {
            return Err(TestCaseError::fail(format!(
                "no span: {d}\n--- file ---\n{text}"
            )));
        };
        prop_assert!(
            span.line >= 1 && span.line as usize <= last_line,
            "line {} outside 1..={last_line}: {d}\n--- file ---\n{text}",
            span.line
        );
        prop_assert!(
            span.offset + span.len <= text.len(),
            "span {span:?} past the end ({} bytes): {d}",
            text.len()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mangled_files_never_panic_and_get_located_diagnostics(
        muts in prop::collection::vec(mutation(), 1..4)
    ) {
        let mut bytes = BASE.as_bytes().to_vec();
        for m in &muts {
            apply(&mut bytes, m);
        }
        // Files are read as UTF-8 text; invalid bytes never reach the parser.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        check_diagnostics_are_located(&text)?;
    }
}
