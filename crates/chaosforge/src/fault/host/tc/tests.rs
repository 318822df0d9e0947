use super::*;
use crate::fault::host::exec::{Answer, RecordingExecutor};

const IFB: &str = "cf0000000000abc";
const NOQUEUE: &str = r#"[{"kind":"noqueue","handle":"0:","root":true,"refcnt":2,"options":{}}]"#;
const OURS: &str = r#"[{"kind":"htb","handle":"cf00:","root":true,"refcnt":3,"options":{}}]"#;
const WITH_INGRESS: &str = r#"[{"kind":"noqueue","handle":"0:","root":true,"refcnt":2,"options":{}},{"kind":"ingress","handle":"ffff:","parent":"ffff:fff1","options":{}}]"#;
const FILTERS: &str = "filter protocol all pref 1 u32 chain 0 fh 800::800 order 2048 key ht 800 bkt 0 terminal flowid not_in_hw \n  match 00000000/00000000 at 0\n\taction order 1: mirred (Egress Redirect to device cf0000000000abc) stolen\n\tindex 1 ref 1 bind 1\n";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn lines(steps: &[Step]) -> Vec<String> {
    steps.iter().map(|s| s.cmd.to_string()).collect()
}

fn rate8() -> Shape {
    Shape::Rate {
        bits_per_sec: 8_000_000,
    }
}

#[test]
fn ifb_names_are_short_deterministic_and_recognised() {
    let a = ifb_name("01J-run/fault-3");
    assert_eq!(a.len(), 15);
    assert_eq!(a, ifb_name("01J-run/fault-3"));
    assert_ne!(a, ifb_name("01J-run/fault-4"));
    assert!(is_chaosforge_ifb(&a), "{a}");
    assert!(is_chaosforge_ifb(IFB));
    for other in [
        "eth0",
        "ifb0",
        "cf",
        "cf0000000000ab",
        "cf0000000000abcd",
        "cf0000000000aB1",
        "cf000000000-abc",
    ] {
        assert!(!is_chaosforge_ifb(other), "{other}");
    }
}

#[test]
fn egress_rate_on_all_traffic_is_htb_defaulting_to_the_shaped_class() {
    let steps = apply_commands("eth0", Way::Egress, IFB, &Match::default(), &rate8()).unwrap();
    assert_eq!(
        lines(&steps),
        [
            "tc qdisc add dev eth0 root handle cf00: htb default 1 direct_qlen 1000",
            "tc class add dev eth0 parent cf00: classid cf00:1 htb rate 8mbit ceil 8mbit burst 10000 cburst 10000 quantum 100000",
        ]
    );
    assert_eq!(
        steps[0].undo.as_ref().unwrap().to_string(),
        "tc qdisc del dev eth0 root handle cf00:"
    );
}

#[test]
fn ingress_goes_through_an_ifb_set_up_before_the_redirect() {
    let m = Match {
        peers: vec![ip("10.0.0.9")],
        ports: vec![],
    };
    let shape = Shape::Rate {
        bits_per_sec: 1_500,
    };
    let steps = apply_commands("eth0", Way::Ingress, IFB, &m, &shape).unwrap();
    assert_eq!(
        lines(&steps),
        [
            "ip link add name cf0000000000abc type ifb",
            "ip link set dev cf0000000000abc up",
            "tc qdisc add dev cf0000000000abc root handle cf00: htb default 0 direct_qlen 1000",
            "tc class add dev cf0000000000abc parent cf00: classid cf00:1 htb rate 1500bit ceil 1500bit burst 3028 cburst 3028 quantum 1514",
            "tc filter add dev cf0000000000abc parent cf00: protocol ip prio 1 u32 match ip src 10.0.0.9/32 flowid cf00:1",
            "tc qdisc add dev eth0 handle ffff: ingress",
            "tc filter add dev eth0 parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev cf0000000000abc",
        ]
    );
    let undo: Vec<String> = steps
        .iter()
        .filter_map(|s| s.undo.as_ref().map(Cmd::to_string))
        .collect();
    assert_eq!(
        undo,
        [
            "ip link del dev cf0000000000abc",
            "tc qdisc del dev cf0000000000abc root handle cf00:",
            "tc qdisc del dev eth0 handle ffff: ingress",
        ]
    );
    let err = apply_commands("eth0", Way::Ingress, "eth1", &m, &shape).unwrap_err();
    assert!(
        matches!(err, TcError::Exec(ExecError::Refused { .. })),
        "{err:?}"
    );
}

#[test]
fn filters_cover_every_peer_and_port_per_family_sorted_once() {
    let m = Match {
        peers: vec![
            ip("fd00::2"),
            ip("10.0.0.2"),
            ip("::ffff:10.0.0.1"),
            ip("10.0.0.2"),
        ],
        ports: vec![443, 80, 443],
    };
    assert_eq!(
        filter_commands("eth0", Way::Egress, &m)
            .iter()
            .map(Cmd::to_string)
            .collect::<Vec<_>>(),
        [
            "tc filter add dev eth0 parent cf00: protocol ip prio 1 u32 match ip dst 10.0.0.1/32 match ip dport 80 0xffff flowid cf00:1",
            "tc filter add dev eth0 parent cf00: protocol ip prio 1 u32 match ip dst 10.0.0.1/32 match ip sport 80 0xffff flowid cf00:1",
            "tc filter add dev eth0 parent cf00: protocol ip prio 1 u32 match ip dst 10.0.0.1/32 match ip dport 443 0xffff flowid cf00:1",
            "tc filter add dev eth0 parent cf00: protocol ip prio 1 u32 match ip dst 10.0.0.1/32 match ip sport 443 0xffff flowid cf00:1",
            "tc filter add dev eth0 parent cf00: protocol ip prio 1 u32 match ip dst 10.0.0.2/32 match ip dport 80 0xffff flowid cf00:1",
            "tc filter add dev eth0 parent cf00: protocol ip prio 1 u32 match ip dst 10.0.0.2/32 match ip sport 80 0xffff flowid cf00:1",
            "tc filter add dev eth0 parent cf00: protocol ip prio 1 u32 match ip dst 10.0.0.2/32 match ip dport 443 0xffff flowid cf00:1",
            "tc filter add dev eth0 parent cf00: protocol ip prio 1 u32 match ip dst 10.0.0.2/32 match ip sport 443 0xffff flowid cf00:1",
            "tc filter add dev eth0 parent cf00: protocol ipv6 prio 2 u32 match ip6 dst fd00::2/128 match ip6 dport 80 0xffff flowid cf00:1",
            "tc filter add dev eth0 parent cf00: protocol ipv6 prio 2 u32 match ip6 dst fd00::2/128 match ip6 sport 80 0xffff flowid cf00:1",
            "tc filter add dev eth0 parent cf00: protocol ipv6 prio 2 u32 match ip6 dst fd00::2/128 match ip6 dport 443 0xffff flowid cf00:1",
            "tc filter add dev eth0 parent cf00: protocol ipv6 prio 2 u32 match ip6 dst fd00::2/128 match ip6 sport 443 0xffff flowid cf00:1",
        ]
    );
    // Ports alone: both families, either end (the remote one first).
    let m = Match {
        peers: vec![],
        ports: vec![5432],
    };
    assert_eq!(
        filter_commands("cfx", Way::Ingress, &m)
            .iter()
            .map(Cmd::to_string)
            .collect::<Vec<_>>(),
        [
            "tc filter add dev cfx parent cf00: protocol ip prio 1 u32 match ip sport 5432 0xffff flowid cf00:1",
            "tc filter add dev cfx parent cf00: protocol ip prio 1 u32 match ip dport 5432 0xffff flowid cf00:1",
            "tc filter add dev cfx parent cf00: protocol ipv6 prio 2 u32 match ip6 sport 5432 0xffff flowid cf00:1",
            "tc filter add dev cfx parent cf00: protocol ipv6 prio 2 u32 match ip6 dport 5432 0xffff flowid cf00:1",
        ]
    );
}

#[test]
fn netem_on_all_traffic_is_the_root_itself() {
    let p = NetemParams {
        delay: Duration::from_millis(50),
        jitter: Duration::from_millis(5),
        loss: 0.2,
        duplicate: 0.05,
        corrupt: 0.01,
        reorder: Some((0.25, Duration::ZERO)),
        rate_bits: Some(8_000_000),
    };
    let steps = apply_commands(
        "eth0",
        Way::Egress,
        IFB,
        &Match::default(),
        &Shape::Netem(p),
    )
    .unwrap();
    assert_eq!(
        lines(&steps),
        [
            "tc qdisc add dev eth0 root handle cf00: netem delay 50ms 5ms loss 20% duplicate 5% corrupt 1% reorder 25% rate 8mbit"
        ]
    );
    assert_eq!(
        steps[0].undo.as_ref().unwrap().to_string(),
        "tc qdisc del dev eth0 root handle cf00:"
    );
}

#[test]
fn filtered_netem_is_a_leaf_of_an_unlimited_class() {
    let p = NetemParams {
        delay: Duration::from_micros(1500),
        ..NetemParams::default()
    };
    let m = Match {
        peers: vec![ip("10.0.0.2")],
        ports: vec![],
    };
    let steps = apply_commands("eth0", Way::Egress, IFB, &m, &Shape::Netem(p)).unwrap();
    assert_eq!(
        lines(&steps),
        [
            "tc qdisc add dev eth0 root handle cf00: htb default 0 direct_qlen 1000",
            "tc class add dev eth0 parent cf00: classid cf00:1 htb rate 1000gbit ceil 1000gbit burst 1250000000 cburst 1250000000 quantum 200000",
            "tc qdisc add dev eth0 parent cf00:1 handle cf01: netem delay 1500us",
            "tc filter add dev eth0 parent cf00: protocol ip prio 1 u32 match ip dst 10.0.0.2/32 flowid cf00:1",
        ]
    );
}

#[test]
fn netem_arguments_follow_tc_syntax_and_are_checked() {
    let args = |p: NetemParams| netem_args(&p).map(|a| a.join(" "));
    // Reorder waits by delaying the others: its duration becomes the delay.
    let p = NetemParams {
        reorder: Some((0.25, Duration::from_millis(10))),
        ..NetemParams::default()
    };
    assert_eq!(args(p).unwrap(), "delay 10ms reorder 25%");
    let p = NetemParams {
        delay: Duration::from_millis(20),
        reorder: Some((0.5, Duration::from_millis(10))),
        ..NetemParams::default()
    };
    assert_eq!(args(p).unwrap(), "delay 20ms reorder 50%");
    let p = NetemParams {
        loss: 0.055,
        duplicate: 0.00001,
        jitter: Duration::from_millis(3),
        rate_bits: Some(1_234),
        ..NetemParams::default()
    };
    assert_eq!(
        args(p).unwrap(),
        "delay 0ms 3ms loss 5.5% duplicate 0.001% rate 1234bit"
    );
    assert_eq!(args(NetemParams::default()).unwrap(), "");

    for bad in [
        NetemParams {
            loss: 1.5,
            ..NetemParams::default()
        },
        NetemParams {
            corrupt: f64::NAN,
            ..NetemParams::default()
        },
        NetemParams {
            reorder: Some((0.1, Duration::ZERO)),
            ..NetemParams::default()
        },
        NetemParams {
            rate_bits: Some(0),
            ..NetemParams::default()
        },
    ] {
        let err = args(bad.clone()).unwrap_err();
        assert!(matches!(err, TcError::Invalid { .. }), "{bad:?}: {err:?}");
    }
    let err = apply_commands(
        "eth0",
        Way::Egress,
        IFB,
        &Match::default(),
        &Shape::Rate { bits_per_sec: 0 },
    );
    assert!(matches!(err, Err(TcError::Invalid { field: "rate", .. })));
    let err = apply_commands("-x", Way::Egress, IFB, &Match::default(), &rate8());
    assert!(matches!(err, Err(TcError::Exec(ExecError::Refused { .. }))));
}

#[test]
fn units_are_exact() {
    assert_eq!(rate(10_000_000_000), "10gbit");
    assert_eq!(rate(2_500_000), "2500kbit");
    assert_eq!(rate(999), "999bit");
    assert_eq!(time(Duration::from_secs(2)), "2000ms");
    assert_eq!(time(Duration::from_nanos(1_500_001)), "1501us");
    assert_eq!(percent(0.2), "20%");
    assert_eq!(percent(1.0), "100%");
    assert_eq!(burst(80_000_000), "100000");
}

#[tokio::test]
async fn apply_refuses_a_foreign_root_and_touches_nothing() {
    let tbf = r#"[{"kind":"tbf","handle":"8001:","root":true,"refcnt":2,"options":{}}]"#;
    let exec = RecordingExecutor::new().on("tc -j qdisc show dev eth0", Answer::Ok(tbf.into()));
    let err = apply(
        &exec,
        Some("ns"),
        "eth0",
        Way::Egress,
        IFB,
        &Match::default(),
        &rate8(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, TcError::Busy { reason, .. } if reason.contains("tbf 8001:")),
        "{err}"
    );
    assert_eq!(exec.lines(), ["[ns] tc -j qdisc show dev eth0"]);

    // Ours already there: a second fault on the same interface and way is refused too.
    let exec = RecordingExecutor::new().on("tc -j qdisc show", Answer::Ok(OURS.into()));
    let err = apply(
        &exec,
        None,
        "eth0",
        Way::Egress,
        IFB,
        &Match::default(),
        &rate8(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TcError::Busy { .. }), "{err}");

    // Someone's ingress qdisc: no ingress shaping (their filters would be lost with it).
    let exec = RecordingExecutor::new().on("tc -j qdisc show", Answer::Ok(WITH_INGRESS.into()));
    let err = apply(
        &exec,
        None,
        "eth0",
        Way::Ingress,
        IFB,
        &Match::default(),
        &rate8(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TcError::Busy { .. }), "{err}");
    assert_eq!(exec.lines(), ["tc -j qdisc show dev eth0"]);
}

#[tokio::test]
async fn apply_runs_every_step_when_the_interface_is_free() {
    let exec = RecordingExecutor::new().on("tc -j qdisc show", Answer::Ok(NOQUEUE.into()));
    apply(
        &exec,
        Some("ns"),
        "eth0",
        Way::Egress,
        IFB,
        &Match::default(),
        &rate8(),
    )
    .await
    .unwrap();
    assert_eq!(
        exec.lines(),
        [
            "[ns] tc -j qdisc show dev eth0",
            "[ns] tc qdisc add dev eth0 root handle cf00: htb default 1 direct_qlen 1000",
            "[ns] tc class add dev eth0 parent cf00: classid cf00:1 htb rate 8mbit ceil 8mbit burst 10000 cburst 10000 quantum 100000",
        ]
    );
}

#[tokio::test]
async fn a_failure_midway_removes_what_was_added_in_reverse() {
    let m = Match {
        peers: vec![ip("10.0.0.9")],
        ports: vec![],
    };
    let exec = RecordingExecutor::new()
        .on("tc -j qdisc show", Answer::Ok(NOQUEUE.into()))
        .once(
            "tc filter add dev eth0 parent ffff:",
            Answer::Fail(2, "Error: Specified action not found.".into()),
        );
    let err = apply(&exec, None, "eth0", Way::Ingress, IFB, &m, &rate8())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TcError::Apply { undone: true, .. }),
        "{err:?}"
    );
    let calls = exec.lines();
    assert_eq!(
        calls[calls.len() - 4..],
        [
            "tc filter add dev eth0 parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev cf0000000000abc",
            "tc qdisc del dev eth0 handle ffff: ingress",
            "tc qdisc del dev cf0000000000abc root handle cf00:",
            "ip link del dev cf0000000000abc",
        ]
    );

    // The first creation fails: nothing to undo. A failing undo is reported, not hidden.
    let exec = RecordingExecutor::new()
        .on("tc -j qdisc show", Answer::Ok(NOQUEUE.into()))
        .once("tc class add", Answer::Fail(2, "Error: bad rate".into()))
        .once(
            "tc qdisc del",
            Answer::Fail(2, "Error: Operation not permitted".into()),
        );
    let err = apply(
        &exec,
        None,
        "eth0",
        Way::Egress,
        IFB,
        &Match::default(),
        &rate8(),
    )
    .await
    .unwrap_err();
    match &err {
        TcError::Apply {
            undone: false,
            left,
            ..
        } => {
            assert_eq!(left.len(), 1);
            assert!(
                left[0].contains("tc qdisc del dev eth0 root handle cf00:"),
                "{left:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("bad rate"), "{err}");
}

#[tokio::test]
async fn remove_deletes_only_ours_and_is_idempotent() {
    // Egress: our root is deleted, by handle.
    let exec = RecordingExecutor::new().on("tc -j qdisc show", Answer::Ok(OURS.into()));
    let text = remove(&exec, Some("ns"), "eth0", None).await.unwrap();
    assert_eq!(text, "deleted root qdisc cf00: of eth0 (netns ns)");
    assert_eq!(
        exec.lines(),
        [
            "[ns] tc -j qdisc show dev eth0",
            "[ns] tc qdisc del dev eth0 root handle cf00:"
        ]
    );

    // Already gone: the default root is left alone.
    let exec = RecordingExecutor::new().on("tc -j qdisc show", Answer::Ok(NOQUEUE.into()));
    let text = remove(&exec, None, "eth0", None).await.unwrap();
    assert_eq!(text, "tc on eth0 already gone (the host)");
    assert_eq!(exec.lines(), ["tc -j qdisc show dev eth0"]);

    // A root that is not ours is never deleted.
    let tbf = r#"[{"kind":"tbf","handle":"1:","root":true}]"#;
    let exec = RecordingExecutor::new().on("tc -j qdisc show", Answer::Ok(tbf.into()));
    remove(&exec, None, "eth0", None).await.unwrap();
    assert_eq!(exec.lines(), ["tc -j qdisc show dev eth0"]);

    // The namespace is gone, and everything in it.
    let gone = "Cannot open network namespace \"ns\": No such file or directory\n";
    let exec = RecordingExecutor::new().on("tc", Answer::Fail(255, gone.into()));
    let text = remove(&exec, Some("ns"), "eth0", Some(IFB)).await.unwrap();
    assert_eq!(text, "netns ns is gone: nothing to revert");

    // A race: the root disappears between the listing and the deletion.
    let exec = RecordingExecutor::new()
        .on("tc -j qdisc show", Answer::Ok(OURS.into()))
        .on(
            "tc qdisc del",
            Answer::Fail(2, "Error: Invalid handle.\n".into()),
        );
    let text = remove(&exec, None, "eth0", None).await.unwrap();
    assert_eq!(text, "tc on eth0 already gone (the host)");

    // Any other failure is an error.
    let exec = RecordingExecutor::new()
        .on("tc -j qdisc show", Answer::Ok(OURS.into()))
        .on(
            "tc qdisc del",
            Answer::Fail(2, "Error: Operation not permitted.\n".into()),
        );
    assert!(remove(&exec, None, "eth0", None).await.is_err());
}

#[tokio::test]
async fn remove_of_ingress_deletes_the_redirect_then_the_ifb() {
    let ifb_json = r#"[{"ifindex":4,"ifname":"cf0000000000abc","linkinfo":{"info_kind":"ifb"}}]"#;
    let exec = RecordingExecutor::new()
        .on("tc -j qdisc show", Answer::Ok(WITH_INGRESS.into()))
        .on("tc filter show", Answer::Ok(FILTERS.into()))
        .on("ip -j -d link show", Answer::Ok(ifb_json.into()));
    let text = remove(&exec, None, "eth0", Some(IFB)).await.unwrap();
    assert_eq!(
        text,
        "deleted ingress qdisc of eth0, deleted ifb cf0000000000abc (the host)"
    );
    assert_eq!(
        exec.lines(),
        [
            "tc -j qdisc show dev eth0",
            "tc filter show dev eth0 parent ffff:",
            "tc qdisc del dev eth0 handle ffff: ingress",
            "ip -j -d link show dev cf0000000000abc",
            "ip link del dev cf0000000000abc",
        ]
    );

    // Someone else's ingress qdisc (redirecting elsewhere) stays; a missing ifb is gone.
    let theirs = FILTERS.replace("cf0000000000abc", "ifb0");
    let exec = RecordingExecutor::new()
        .on("tc -j qdisc show", Answer::Ok(WITH_INGRESS.into()))
        .on("tc filter show", Answer::Ok(theirs))
        .on(
            "ip -j -d link show",
            Answer::Fail(1, "Device \"cf0000000000abc\" does not exist.\n".into()),
        );
    let text = remove(&exec, None, "eth0", Some(IFB)).await.unwrap();
    assert_eq!(text, "tc on eth0 already gone (the host)");
    assert!(
        !exec.lines().iter().any(|l| l.contains(" del ")),
        "{:?}",
        exec.lines()
    );

    // A link with our name that is not an ifb is left alone.
    let veth = r#"[{"ifname":"cf0000000000abc","linkinfo":{"info_kind":"veth"}}]"#;
    let exec = RecordingExecutor::new()
        .on("tc -j qdisc show", Answer::Ok(NOQUEUE.into()))
        .on("ip -j -d link show", Answer::Ok(veth.into()));
    let text = remove(&exec, None, "eth0", Some(IFB)).await.unwrap();
    assert!(text.contains("left link cf0000000000abc alone"), "{text}");
    assert!(
        !exec.lines().iter().any(|l| l.contains(" del ")),
        "{:?}",
        exec.lines()
    );

    // An ifb name that is not ours: refused before anything runs.
    let exec = RecordingExecutor::new();
    let err = remove(&exec, None, "eth0", Some("eth1")).await.unwrap_err();
    assert!(
        matches!(err, TcError::Exec(ExecError::Refused { .. })),
        "{err:?}"
    );
    assert!(exec.calls().is_empty());
}

#[tokio::test]
async fn residue_lists_our_roots_redirects_and_ifbs() {
    let all = r#"[{"kind":"noqueue","handle":"0:","dev":"lo","root":true},
        {"kind":"htb","handle":"cf00:","dev":"veth0","root":true},
        {"kind":"pfifo","handle":"cf01:","dev":"veth0","parent":"cf00:1"},
        {"kind":"ingress","handle":"ffff:","dev":"veth1","parent":"ffff:fff1"},
        {"kind":"tbf","handle":"1:","dev":"eth9","root":true}]"#;
    let links = r#"[{"ifname":"ifb0","linkinfo":{"info_kind":"ifb"}},{"ifname":"cf0000000000abc","linkinfo":{"info_kind":"ifb"}}]"#;
    let exec = RecordingExecutor::new()
        .on("tc -j qdisc show", Answer::Ok(all.into()))
        .on("tc filter show dev veth1", Answer::Ok(FILTERS.into()))
        .on("ip -j -d link show type ifb", Answer::Ok(links.into()));
    assert_eq!(
        residue(&exec, Some("ns")).await.unwrap(),
        [
            "root qdisc htb cf00: on veth0",
            "ingress qdisc on veth1 redirecting to cf0000000000abc",
            "ifb link cf0000000000abc",
        ]
    );
    let gone = "Cannot open network namespace \"ns\": No such file or directory\n";
    let exec = RecordingExecutor::new().on("tc", Answer::Fail(255, gone.into()));
    assert!(residue(&exec, Some("ns")).await.unwrap().is_empty());
}

#[test]
fn probe_finds_what_the_live_tests_need() {
    let caps = probe();
    eprintln!("tc capabilities: {caps:?}");
    if rustix::process::geteuid().is_root() {
        // The live tests below rely on these; netem varies between kernels.
        assert!(caps.htb_u32 && caps.ifb, "{caps:?}");
    }
}

/// Live tests: two network namespaces joined by a veth pair, shaped with the real `tc`, and
/// measured with real TCP transfers between them. They need root (skipped otherwise) and
/// touch nothing outside the namespaces they create.
mod live {
    use std::io::{Read, Write};
    use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::process::Command;
    use std::sync::mpsc;
    use std::thread::JoinHandle;

    use tokio::time::Instant;

    use super::*;
    use crate::fault::host::exec::SystemExecutor;

    /// What each transfer carries: at 8 Mbit/s, one second.
    const SIZE: usize = 1_000_000;
    const RATE: u64 = 8_000_000;
    /// Unshaped, 1 MB over a veth takes milliseconds; shaped, about a second.
    const FAST: Duration = Duration::from_millis(300);
    const IO_TIMEOUT: Duration = Duration::from_secs(15);

    /// Two namespaces `cf-tc-PID-TAG-a` and `-b`, with `va` (10.201.X.1) in a and `vb`
    /// (10.201.X.2) in b. Dropping it deletes both, which deletes everything in them.
    struct Pair {
        a: String,
        b: String,
        x: u8,
    }

    impl Pair {
        /// `None` (and a note) when not root: creating namespaces needs it.
        fn new(tag: &str, x: u8) -> Option<Self> {
            crate::testkit::assert_isolated();
            if !rustix::process::geteuid().is_root() {
                eprintln!("skipping: live tc tests need root (run them with scripts/test as root)");
                return None;
            }
            let pid = std::process::id();
            let pair = Pair {
                a: format!("cf-tc-{pid}-{tag}-a"),
                b: format!("cf-tc-{pid}-{tag}-b"),
                x,
            };
            let (a, b) = (pair.a.as_str(), pair.b.as_str());
            let va = format!("10.201.{x}.1/24");
            let vb = format!("10.201.{x}.2/24");
            ip(&["netns", "add", a]);
            ip(&["netns", "add", b]);
            ip(&[
                "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b,
            ]);
            ip(&["-n", a, "addr", "add", &va, "dev", "va"]);
            ip(&["-n", b, "addr", "add", &vb, "dev", "vb"]);
            for (ns, dev) in [(a, "va"), (b, "vb"), (a, "lo"), (b, "lo")] {
                ip(&["-n", ns, "link", "set", "dev", dev, "up"]);
            }
            for ns in [a, b] {
                // Test traffic must have nowhere to go but the other namespace.
                assert_eq!(ip(&["-n", ns, "route", "show", "default"]), "", "{ns}");
                assert_eq!(
                    ip(&["-n", ns, "-6", "route", "show", "default"]),
                    "",
                    "{ns}"
                );
            }
            Some(pair)
        }

        fn addr(&self, side: u8, port: u16) -> SocketAddr {
            SocketAddr::from(([10, 201, self.x, side], port))
        }

        /// 1 MB from a to a listener in b on `port`; the receive time.
        fn a_to_b(&self, port: u16) -> Duration {
            transfer(&self.b, self.addr(2, port), &self.a, false)
        }

        /// 1 MB from a listener in a on `port` to a client in b; the receive time.
        fn a_serves_b(&self, port: u16) -> Duration {
            transfer(&self.a, self.addr(1, port), &self.b, true)
        }

        async fn assert_clean(&self) {
            for ns in [&self.a, &self.b] {
                let left = residue(&SystemExecutor, Some(ns)).await.unwrap();
                assert!(left.is_empty(), "{ns}: {left:?}");
            }
        }
    }

    impl Drop for Pair {
        fn drop(&mut self) {
            for ns in [&self.a, &self.b] {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }

    /// Runs `ip ARGS`, panicking on failure; its stdout.
    fn ip(args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(args)
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs `f` on a thread inside namespace `ns`: sockets it creates live there.
    fn in_netns<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            rustix::thread::move_into_link_name_space(
                file.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap();
            f()
        })
    }

    /// One TCP transfer of [`SIZE`] bytes between a listener at `addr` in `listen_ns` and a
    /// client in `connect_ns`; the receiver's time from its first byte to the end.
    fn transfer(
        listen_ns: &str,
        addr: SocketAddr,
        connect_ns: &str,
        listener_sends: bool,
    ) -> Duration {
        let (ready_tx, ready_rx) = mpsc::channel();
        let server = in_netns(listen_ns, move || {
            let listener = TcpListener::bind(addr).unwrap();
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            for _ in 0..1000 {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        return pump(stream, listener_sends);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
            panic!("no connection to {addr} within 10 s");
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let client = in_netns(connect_ns, move || {
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
            pump(stream, !listener_sends)
        });
        let (s, c) = (server.join().unwrap(), client.join().unwrap());
        s.or(c).unwrap()
    }

    /// Sends [`SIZE`] bytes, or receives them and returns how long that took.
    fn pump(mut stream: TcpStream, send: bool) -> Option<Duration> {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        if send {
            stream.write_all(&vec![7u8; SIZE]).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            // Wait for the receiver to close: it has read everything by then.
            while stream.read(&mut buf).unwrap() > 0 {}
            return None;
        }
        let mut total = 0;
        let mut start = None;
        loop {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            start.get_or_insert_with(Instant::now);
            total += n;
        }
        assert_eq!(total, SIZE);
        Some(start.unwrap().elapsed())
    }

    /// 1 MB at 8 Mbit/s is one second; Ethernet, IP and TCP headers add about 5 %.
    fn assert_about_a_second(what: &str, took: Duration) {
        let s = took.as_secs_f64();
        assert!(
            (0.85..=1.15).contains(&s),
            "{what}: 1 MB took {took:?}, want 1 s ± 15 %"
        );
    }

    fn rate() -> Shape {
        Shape::Rate { bits_per_sec: RATE }
    }

    #[tokio::test]
    async fn live_egress_rate_limits_and_remove_restores() {
        let Some(pair) = Pair::new("e", 1) else {
            return;
        };
        let (exec, a) = (SystemExecutor, Some(pair.a.as_str()));
        let base = pair.a_to_b(5001);
        assert!(base < FAST, "baseline {base:?}");

        apply(&exec, a, "va", Way::Egress, "", &Match::default(), &rate())
            .await
            .unwrap();
        let shaped = pair.a_to_b(5002);
        eprintln!("egress: baseline {base:?}, shaped {shaped:?}");
        assert_about_a_second("egress", shaped);
        // A second fault on the same interface is refused, and changes nothing.
        let err = apply(&exec, a, "va", Way::Egress, "", &Match::default(), &rate()).await;
        assert!(matches!(err, Err(TcError::Busy { .. })), "{err:?}");
        assert_eq!(
            residue(&exec, a).await.unwrap(),
            ["root qdisc htb cf00: on va"]
        );

        let text = remove(&exec, a, "va", None).await.unwrap();
        assert!(text.starts_with("deleted root qdisc cf00: of va"), "{text}");
        let text = remove(&exec, a, "va", None).await.unwrap();
        assert!(text.contains("already gone"), "{text}");
        pair.assert_clean().await;
        let after = pair.a_to_b(5003);
        assert!(after < FAST, "after remove {after:?}");
    }

    #[tokio::test]
    async fn live_ingress_rate_limits_through_an_ifb() {
        let Some(pair) = Pair::new("i", 2) else {
            return;
        };
        let (exec, b) = (SystemExecutor, Some(pair.b.as_str()));
        let ifb = ifb_name(&pair.b);
        let base = pair.a_to_b(5001);
        assert!(base < FAST, "baseline {base:?}");

        apply(
            &exec,
            b,
            "vb",
            Way::Ingress,
            &ifb,
            &Match::default(),
            &rate(),
        )
        .await
        .unwrap();
        let shaped = pair.a_to_b(5002);
        eprintln!("ingress: baseline {base:?}, shaped {shaped:?}");
        assert_about_a_second("ingress", shaped);
        assert_eq!(residue(&exec, b).await.unwrap().len(), 3);

        let text = remove(&exec, b, "vb", Some(&ifb)).await.unwrap();
        assert_eq!(
            text,
            format!(
                "deleted ingress qdisc of vb, deleted ifb {ifb} (netns {})",
                pair.b
            )
        );
        let text = remove(&exec, b, "vb", Some(&ifb)).await.unwrap();
        assert!(text.contains("already gone"), "{text}");
        pair.assert_clean().await;
        let after = pair.a_to_b(5003);
        assert!(after < FAST, "after remove {after:?}");
    }

    #[tokio::test]
    async fn live_filters_shape_only_the_matched_peer_port() {
        let Some(pair) = Pair::new("p", 3) else {
            return;
        };
        let exec = SystemExecutor;
        let (a, b) = (Some(pair.a.as_str()), Some(pair.b.as_str()));

        // Egress from a, to b's port 5101 only (the remote port is the destination).
        let m = Match {
            peers: vec![pair.addr(2, 0).ip()],
            ports: vec![5101],
        };
        apply(&exec, a, "va", Way::Egress, "", &m, &rate())
            .await
            .unwrap();
        let matched = pair.a_to_b(5101);
        let other = pair.a_to_b(5102);
        eprintln!("egress filtered: port 5101 {matched:?}, port 5102 {other:?}");
        assert_about_a_second("egress to the matched port", matched);
        assert!(other < FAST, "egress to another port {other:?}");

        // Ingress on b, from a's port 5201 only (the remote port is the source): a serves.
        let ifb = ifb_name(&pair.b);
        let m = Match {
            peers: vec![pair.addr(1, 0).ip()],
            ports: vec![5201],
        };
        apply(&exec, b, "vb", Way::Ingress, &ifb, &m, &rate())
            .await
            .unwrap();
        let matched = pair.a_serves_b(5201);
        let other = pair.a_serves_b(5202);
        eprintln!("ingress filtered: port 5201 {matched:?}, port 5202 {other:?}");
        assert_about_a_second("ingress from the matched port", matched);
        assert!(other < FAST, "ingress from another port {other:?}");

        remove(&exec, a, "va", None).await.unwrap();
        remove(&exec, b, "vb", Some(&ifb)).await.unwrap();
        pair.assert_clean().await;
        let (e, i) = (pair.a_to_b(5103), pair.a_serves_b(5203));
        assert!(e < FAST && i < FAST, "after remove: {e:?}, {i:?}");
    }

    #[tokio::test]
    async fn live_remove_in_a_missing_namespace_is_already_gone() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let ns = format!("cf-tc-{}-never", std::process::id());
        let text = remove(&SystemExecutor, Some(&ns), "va", Some(&ifb_name("x")))
            .await
            .unwrap();
        assert_eq!(text, format!("netns {ns} is gone: nothing to revert"));
        assert!(
            residue(&SystemExecutor, Some(&ns))
                .await
                .unwrap()
                .is_empty()
        );
    }
}
