//! `http-header`: request edits are seen by the upstream, response edits by the client.

use std::time::Duration;

use chaosforge_proxy::http::{HeaderEdit, HttpAction};
use hyper::header::{HeaderName, HeaderValue};

use crate::support::*;

fn name(s: &'static str) -> HeaderName {
    HeaderName::from_static(s)
}

fn value(s: &'static str) -> HeaderValue {
    HeaderValue::from_static(s)
}

#[tokio::test]
async fn add_set_and_remove_on_both_sides() {
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = proxy_to(&upstream).await;
    proxy.set_fault(fault(
        "edit",
        1.0,
        HttpAction::Headers {
            request: vec![
                HeaderEdit::Add(name("x-tenant"), value("evil")),
                HeaderEdit::Set(name("user-agent"), value("chaosforge")),
                HeaderEdit::Remove(name("x-secret")),
            ],
            response: vec![
                HeaderEdit::Add(name("x-injected"), value("1")),
                HeaderEdit::Set(name("content-type"), value("text/plain")),
                HeaderEdit::Remove(name("x-upstream")),
            ],
        },
    ));
    let response = within(
        Duration::from_secs(10),
        client()
            .get(url(&proxy, "/"))
            .header("x-tenant", "good")
            .header("user-agent", "test")
            .header("x-secret", "s3cr3t")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.headers()["x-injected"], "1");
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert!(response.headers().get("x-upstream").is_none());
    let echo: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(header_values(&echo, "x-tenant"), ["good", "evil"]);
    assert_eq!(header_values(&echo, "user-agent"), ["chaosforge"]);
    assert!(header_values(&echo, "x-secret").is_empty());
    proxy.shutdown().await;
}
