//! `http-corrupt`: the client receives the altered body (truncated, flipped, JSON values
//! replaced), with a length header that matches it.

use std::time::Duration;

use chaosforge::units::Ratio;
use chaosforge_proxy::http::{BodyCorruption, HttpAction};
use serde_json::json;
use serde_json_path::JsonPath;

use crate::support::*;

async fn body_of(client: &reqwest::Client, url: &str) -> (Option<u64>, bytes::Bytes) {
    let response = within(Duration::from_secs(10), client.get(url).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let length = response.content_length();
    (length, response.bytes().await.unwrap())
}

#[tokio::test]
async fn truncate_keeps_the_first_bytes() {
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = proxy_to(&upstream).await;
    let client = client();
    proxy.set_fault(fault(
        "cut",
        1.0,
        HttpAction::Corrupt(BodyCorruption::Truncate { keep: 10 }),
    ));
    let (length, body) = body_of(&client, &url(&proxy, "/bytes/1000")).await;
    assert_eq!(body, "aaaaaaaaaa");
    assert_eq!(length, Some(10));
    // A streamed body (no length) is cut too, mid-chunk.
    let (_, body) = body_of(&client, &url(&proxy, "/stream")).await;
    assert_eq!(body, "first;seco");
    proxy.shutdown().await;
}

#[tokio::test]
async fn flip_bytes_changes_about_the_given_share() {
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = proxy_to(&upstream).await;
    proxy.set_fault(fault(
        "flip",
        1.0,
        HttpAction::Corrupt(BodyCorruption::FlipBytes {
            probability: Ratio::new(0.5).unwrap(),
        }),
    ));
    let (length, body) = body_of(&client(), &url(&proxy, "/bytes/10000")).await;
    assert_eq!(length, Some(10_000));
    assert_eq!(body.len(), 10_000);
    let flipped = body.iter().filter(|b| **b == !b'a').count();
    assert_eq!(
        flipped + body.iter().filter(|b| **b == b'a').count(),
        10_000
    );
    assert!((4500..=5500).contains(&flipped), "{flipped} flipped");
    proxy.shutdown().await;
}

#[tokio::test]
async fn json_replace_sets_the_selected_values() {
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = proxy_to(&upstream).await;
    let client = client();
    proxy.set_fault(fault(
        "prices",
        1.0,
        HttpAction::Corrupt(BodyCorruption::JsonReplace {
            path: JsonPath::parse("$.items[*].price").unwrap(),
            value: json!(-1),
        }),
    ));
    let (length, body) = body_of(&client, &url(&proxy, "/fixed")).await;
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        doc,
        json!({"items":[{"id":1,"price":-1},{"id":2,"price":-1}],"owner":"alice"})
    );
    assert_eq!(length, Some(body.len() as u64));
    // A body that is not JSON passes unchanged.
    let (_, body) = body_of(&client, &url(&proxy, "/bytes/5")).await;
    assert_eq!(body, "aaaaa");
    proxy.shutdown().await;
}
