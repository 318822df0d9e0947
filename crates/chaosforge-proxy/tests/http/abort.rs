//! `http-abort` (answer or drop), `http-hang`: the client sees the fault's status, a closed
//! connection, or its own timeout; the upstream is never called.

use std::time::Duration;

use bytes::Bytes;
use chaosforge_proxy::http::HttpAction;
use hyper::StatusCode;
use hyper::header::{HeaderName, HeaderValue};
use tokio::time::Instant;

use crate::support::*;

#[tokio::test]
async fn abort_30_percent_of_1000_requests() {
    let _slot = timing_slot().await;
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = proxy_to(&upstream).await;
    proxy.set_fault(fault(
        "flaky",
        0.30,
        HttpAction::Abort {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: Some(Bytes::from_static(b"injected")),
            headers: vec![(
                HeaderName::from_static("retry-after"),
                HeaderValue::from_static("1"),
            )],
        },
    ));
    let client = client();
    let target = url(&proxy, "/api");
    let (mut aborted, mut passed) = (0u64, 0u64);
    within(Duration::from_secs(120), async {
        for _ in 0..1000 {
            let response = client.get(&target).send().await.unwrap();
            match response.status().as_u16() {
                503 => {
                    assert_eq!(response.headers()["retry-after"], "1");
                    assert_eq!(response.bytes().await.unwrap(), "injected");
                    aborted += 1;
                }
                200 => {
                    response.bytes().await.unwrap();
                    passed += 1;
                }
                other => panic!("unexpected status {other}"),
            }
        }
    })
    .await;
    let ratio = aborted as f64 / 1000.0;
    println!(
        "http-abort 30 %: {aborted} of 1000 aborted ({:.1} %)",
        ratio * 100.0
    );
    assert!((ratio - 0.30).abs() <= 0.05, "ratio {ratio}");
    // The counters agree exactly with what the client saw, and aborted requests never
    // reached the upstream.
    let stats = proxy.stats();
    assert_eq!(stats.faults["flaky"].matched, 1000);
    assert_eq!(stats.faults["flaky"].faulted, aborted);
    assert_eq!(upstream.hits(), passed);
    proxy.shutdown().await;
}

#[tokio::test]
async fn drop_closes_the_connection_without_an_answer() {
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = proxy_to(&upstream).await;
    proxy.set_fault(fault("drop", 1.0, HttpAction::Drop));

    let error = within(
        Duration::from_secs(10),
        client().get(url(&proxy, "/")).send(),
    )
    .await
    .unwrap_err();
    // Not a timeout and not a status: the connection ended before any answer.
    assert!(!error.is_timeout() && error.status().is_none(), "{error:?}");

    // HTTP/2: the stream is reset.
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let error = within(Duration::from_secs(10), h2.get(url(&proxy, "/")).send())
        .await
        .unwrap_err();
    assert!(!error.is_timeout() && error.status().is_none(), "{error:?}");

    assert_eq!(proxy.stats().faults["drop"].faulted, 2);
    assert_eq!(upstream.hits(), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn hang_makes_the_client_timeout_fire() {
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = proxy_to(&upstream).await;
    proxy.set_fault(fault("hang", 1.0, HttpAction::Hang));
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let error = within(Duration::from_secs(10), client.get(url(&proxy, "/")).send())
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(upstream.hits(), 0);
    // The client gave up and closed its connection: the proxy lets the hung request go
    // with it rather than keep it until shutdown.
    eventually(Duration::from_secs(5), || {
        proxy.stats().open_connections == 0
    })
    .await;

    // Revert: the same client gets through again.
    assert!(proxy.remove_fault("hang"));
    let response = within(Duration::from_secs(10), client.get(url(&proxy, "/")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Shutdown ends the hung request's connection too (it must not wait for it).
    within(Duration::from_secs(5), proxy.shutdown()).await;
}
