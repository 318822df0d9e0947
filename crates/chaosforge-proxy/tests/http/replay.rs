//! `replay`: the first matching request is passed through, then sent again unchanged; the
//! upstream's answers are recorded. A nonce-checking upstream refuses the copies; one that
//! does not check accepts them, which is a finding.

use std::time::Duration;

use chaosforge_proxy::http::{Finding, HttpAction, ReplayOutcome};

use crate::support::*;

async fn pay(client: &reqwest::Client, url: &str, nonce: &str) -> u16 {
    within(
        Duration::from_secs(10),
        client
            .post(url)
            .header("x-nonce", nonce)
            .header("x-timestamp", "1700000000")
            .body(r#"{"amount":100}"#)
            .send(),
    )
    .await
    .unwrap()
    .status()
    .as_u16()
}

#[tokio::test]
async fn a_nonce_checking_upstream_refuses_the_copies() {
    let upstream = upstream(Behaviour::CheckNonce).await;
    let proxy = proxy_to(&upstream).await;
    proxy.set_fault(fault("replay", 1.0, HttpAction::Replay { times: 2 }));
    let client = client();
    let target = url(&proxy, "/pay");
    assert_eq!(pay(&client, &target, "n-1").await, 200);
    eventually(Duration::from_secs(10), || {
        proxy
            .stats()
            .replays
            .first()
            .is_some_and(|r| r.replays.len() == 2)
    })
    .await;
    // Only the first matching request is captured: this one is not replayed.
    assert_eq!(pay(&client, &target, "n-2").await, 200);

    let stats = proxy.stats();
    assert_eq!(stats.replays.len(), 1);
    let record = &stats.replays[0];
    assert_eq!(
        (record.method.as_str(), record.uri.as_str()),
        ("POST", "/pay")
    );
    assert_eq!(record.original, Some(200));
    assert_eq!(
        record.replays,
        [ReplayOutcome::Status(409), ReplayOutcome::Status(409)]
    );
    assert_eq!(
        (
            stats.faults["replay"].matched,
            stats.faults["replay"].faulted
        ),
        (2, 1)
    );
    assert_eq!(upstream.hits(), 4);
    assert!(stats.findings().is_empty());
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_upstream_without_replay_protection_is_a_finding() {
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = proxy_to(&upstream).await;
    proxy.set_fault(fault("replay", 1.0, HttpAction::Replay { times: 3 }));
    assert_eq!(pay(&client(), &url(&proxy, "/pay"), "n-1").await, 200);
    eventually(Duration::from_secs(10), || {
        proxy
            .stats()
            .replays
            .first()
            .is_some_and(|r| r.replays.len() == 3)
    })
    .await;
    assert_eq!(upstream.hits(), 4);
    let findings = proxy.stats().findings();
    assert_eq!(
        findings,
        [Finding::UpstreamAcceptedReplay {
            fault: "replay".into(),
            accepted: 3,
            replays: 3
        }]
    );
    println!("finding: {}", findings[0]);
    proxy.shutdown().await;
}
