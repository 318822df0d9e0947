//! Faults change on a live proxy: an open keep-alive connection keeps working across inject
//! and revert and sees each change at its next request; counters are exact.

use std::time::Duration;

use chaosforge::units::Ratio;
use chaosforge_proxy::http::{HeaderCond, HeaderEdit, HttpAction, HttpFault, RequestMatch};
use hyper::Method;
use hyper::header::{HeaderName, HeaderValue};

use crate::support::*;

fn tag_fault() -> HttpFault {
    HttpFault::new(
        "tag",
        RequestMatch {
            methods: vec![Method::GET],
            path_prefix: Some("/tagged".into()),
            ..RequestMatch::default()
        },
        Ratio::ONE,
        HttpAction::Headers {
            request: vec![HeaderEdit::Set(
                HeaderName::from_static("x-chaos"),
                HeaderValue::from_static("on"),
            )],
            response: vec![],
        },
    )
}

#[tokio::test]
async fn one_keep_alive_connection_survives_inject_and_revert() {
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = proxy_to(&upstream).await;
    // At most one idle connection and strictly sequential requests: reqwest reuses the same
    // connection as long as the proxy keeps it open.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let tagged = url(&proxy, "/tagged");
    let chaos = |echo: &serde_json::Value| header_values(echo, "x-chaos");

    assert!(chaos(&echoed(&client, &tagged).await).is_empty());
    proxy.set_fault(tag_fault());
    assert_eq!(chaos(&echoed(&client, &tagged).await), ["on"]);
    assert_eq!(chaos(&echoed(&client, &tagged).await), ["on"]);
    // Not matched: other path.
    assert!(chaos(&echoed(&client, &url(&proxy, "/other")).await).is_empty());
    assert!(proxy.remove_fault("tag"));
    assert!(!proxy.remove_fault("tag"));
    assert!(chaos(&echoed(&client, &tagged).await).is_empty());
    proxy.set_fault(tag_fault());
    assert_eq!(chaos(&echoed(&client, &tagged).await), ["on"]);

    let stats = proxy.stats();
    // Every request rode the one connection the client opened.
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.requests, 6);
    let tag = &stats.faults["tag"];
    assert!(tag.active);
    assert_eq!((tag.matched, tag.faulted), (3, 3));
    assert_eq!(tag.upstream_statuses.get(&200), Some(&3));
    proxy.shutdown().await;
}

#[tokio::test]
async fn counters_are_exact_at_a_probability() {
    let _slot = timing_slot().await;
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = proxy_to(&upstream).await;
    let mut half = tag_fault();
    half.probability = Ratio::new(0.5).unwrap();
    half.matcher = RequestMatch {
        headers: vec![(
            HeaderName::from_static("x-pick"),
            HeaderCond::Equals("yes".into()),
        )],
        ..RequestMatch::default()
    };
    proxy.set_fault(half);
    let client = client();
    let target = url(&proxy, "/x");
    let mut tagged = 0u64;
    within(Duration::from_secs(60), async {
        for i in 0..200 {
            let pick = if i % 4 == 0 { "no" } else { "yes" };
            let response = client
                .get(&target)
                .header("x-pick", pick)
                .send()
                .await
                .unwrap();
            let echo: serde_json::Value = response.json().await.unwrap();
            if !header_values(&echo, "x-chaos").is_empty() {
                assert_eq!(pick, "yes");
                tagged += 1;
            }
        }
    })
    .await;
    let stats = proxy.stats();
    assert_eq!(stats.faults["tag"].matched, 150);
    assert_eq!(stats.faults["tag"].faulted, tagged);
    assert!((50..=100).contains(&tagged), "{tagged}");
    proxy.shutdown().await;
}
