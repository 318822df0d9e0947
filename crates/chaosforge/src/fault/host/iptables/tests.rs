use super::*;
use crate::fault::host::exec::{Answer, RecordingExecutor};

fn chains() -> Vec<QueueChain> {
    vec![
        QueueChain {
            hook: Hook::Output,
            chain: chain_name("0193abcdef12_3", Hook::Output),
        },
        QueueChain {
            hook: Hook::Input,
            chain: chain_name("0193abcdef12_3", Hook::Input),
        },
    ]
}

#[test]
fn names_fit_iptables_and_are_recognised() {
    let n = chain_name("0193abcdef12_3", Hook::Output);
    assert_eq!(n, "CF-0193abcdef123-O");
    assert!(is_chaosforge_chain(&n));
    let long = chain_name(&"x".repeat(60), Hook::Input);
    assert!(long.len() <= 28 && is_chaosforge_chain(&long), "{long}");
    assert!(!is_chaosforge_chain("OUTPUT"));
    assert!(!is_chaosforge_chain("CF-abc"));
    assert!(!is_chaosforge_chain("CF-a b-O"));
}

#[test]
fn the_script_queues_matching_packets_with_bypass() {
    let rules = QueueRules {
        chains: chains(),
        interface: Some("veth-b".into()),
        peers: vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
        ports: vec![80, 443],
        queue: 4242,
    };
    assert_eq!(
        restore_script(&rules, Family::V4),
        "*mangle
:CF-0193abcdef123-O - [0:0]
:CF-0193abcdef123-I - [0:0]
-A CF-0193abcdef123-O -d 10.0.0.1 -p tcp -m multiport --ports 80,443 -j NFQUEUE --queue-num 4242 --queue-bypass
-A CF-0193abcdef123-O -d 10.0.0.1 -p udp -m multiport --ports 80,443 -j NFQUEUE --queue-num 4242 --queue-bypass
-I OUTPUT 1 -o veth-b -j CF-0193abcdef123-O
-A CF-0193abcdef123-I -s 10.0.0.1 -p tcp -m multiport --ports 80,443 -j NFQUEUE --queue-num 4242 --queue-bypass
-A CF-0193abcdef123-I -s 10.0.0.1 -p udp -m multiport --ports 80,443 -j NFQUEUE --queue-num 4242 --queue-bypass
-I INPUT 1 -i veth-b -j CF-0193abcdef123-I
COMMIT
"
    );
    let all = QueueRules {
        chains: chains()[..1].to_vec(),
        interface: None,
        peers: vec![],
        ports: vec![],
        queue: 7,
    };
    let text = restore_script(&all, Family::V6);
    assert!(
        text.contains("-A CF-0193abcdef123-O -j NFQUEUE --queue-num 7 --queue-bypass\n"),
        "{text}"
    );
    assert!(
        text.contains("-I OUTPUT 1 ! -o lo -j CF-0193abcdef123-O\n"),
        "{text}"
    );
    assert_eq!(
        families(&rules.peers, true),
        [Family::V4, Family::V6],
        "peers of both families"
    );
    assert_eq!(families(&[], false), [Family::V4]);
}

#[tokio::test]
async fn remove_deletes_jumps_then_chains_and_is_idempotent() {
    let listing = "-P OUTPUT ACCEPT\n-A OUTPUT -o veth-b -j CF-0193abcdef123-O\n";
    let exec = RecordingExecutor::new()
        .on("iptables -t mangle -S OUTPUT", Answer::Ok(listing.into()))
        .on(
            "iptables -t mangle -S INPUT",
            Answer::Ok("-P INPUT ACCEPT\n".into()),
        );
    let n = remove(&exec, Some("b"), &chains(), &[Family::V4])
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        exec.lines(),
        [
            "[b] iptables -t mangle -S OUTPUT",
            "[b] iptables -t mangle -D OUTPUT -o veth-b -j CF-0193abcdef123-O",
            "[b] iptables -t mangle -F CF-0193abcdef123-O",
            "[b] iptables -t mangle -X CF-0193abcdef123-O",
            "[b] iptables -t mangle -S INPUT",
            "[b] iptables -t mangle -F CF-0193abcdef123-I",
            "[b] iptables -t mangle -X CF-0193abcdef123-I",
        ]
    );

    let missing = "iptables: No chain/target/match by that name.\n";
    let exec = RecordingExecutor::new()
        .on("iptables -t mangle -F", Answer::Fail(1, missing.into()))
        .on("iptables -t mangle -X", Answer::Fail(1, missing.into()));
    assert_eq!(
        remove(&exec, None, &chains(), &[Family::V4]).await.unwrap(),
        0
    );

    let gone = "Cannot open network namespace \"b\": No such file or directory\n";
    let exec = RecordingExecutor::new().on("iptables", Answer::Fail(255, gone.into()));
    assert_eq!(
        remove(&exec, Some("b"), &chains(), &[Family::V4])
            .await
            .unwrap(),
        0
    );

    let exec = RecordingExecutor::new();
    let bad = [QueueChain {
        hook: Hook::Output,
        chain: "OUTPUT".into(),
    }];
    assert!(remove(&exec, None, &bad, &[Family::V4]).await.is_err());
    assert!(
        exec.calls().is_empty(),
        "nothing may run for a foreign chain"
    );
}

#[tokio::test]
async fn a_failed_second_family_removes_the_first() {
    let exec = RecordingExecutor::new().on(
        "ip6tables-restore",
        Answer::Fail(
            2,
            "ip6tables-restore: unable to initialize table 'mangle'".into(),
        ),
    );
    let rules = QueueRules {
        chains: chains()[..1].to_vec(),
        interface: None,
        peers: vec![],
        ports: vec![],
        queue: 7,
    };
    assert!(
        apply(&exec, None, &rules, &[Family::V4, Family::V6])
            .await
            .is_err()
    );
    let lines = exec.lines();
    assert_eq!(lines[0], "iptables-restore --noflush");
    assert_eq!(lines[1], "ip6tables-restore --noflush");
    assert!(
        lines[2..]
            .iter()
            .all(|l| l.starts_with("iptables -t mangle")),
        "{lines:?}"
    );
}
