//! Defaults of phases, policies, monitors and proxy faults, and how fault values are parsed.

use super::*;

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
        matches!(&m.probe, ProbePlan::Tcp { address, timeout, send: None, expect: None }
            if address == "127.0.0.1:5432" && *timeout == Duration::from_secs(1)),
        "{:?}",
        m.probe
    );
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
