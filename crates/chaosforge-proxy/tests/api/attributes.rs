//! One test per attribute edge, the table of docs/toxiproxy-attributes.md: a value Toxiproxy
//! 2.12 accepts is accepted and echoed back as written, in the create answer and when read
//! again; a value that crashes Toxiproxy, or that its JSON decoder refuses, is a 400 whose
//! message names the attribute, and nothing is created.

use serde_json::{Value, json};

use crate::support::*;

/// Creates a `ty` toxic with `attrs` and checks that the answer and a later GET both show
/// `shown` as its attributes.
async fn accepted(ty: &str, attrs: Value, shown: Value) {
    let api = api().await;
    api.proxy("p", echo().await).await;
    let body = json!({"name": "t", "type": ty, "attributes": attrs}).to_string();
    let created = api.toxic("p", &body).await;
    assert_eq!(created["attributes"], shown, "{body}");
    let read = api.get("/proxies/p/toxics/t").await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["attributes"], shown, "{body}: kept as written");
}

/// Creates a `ty` toxic with `attrs` and checks for a 400 in Toxiproxy's error shape whose
/// message contains `needle`, and that no toxic was created.
async fn refused(ty: &str, attrs: Value, needle: &str) {
    let api = api().await;
    api.proxy("p", echo().await).await;
    let body = json!({"type": ty, "attributes": attrs}).to_string();
    let r = api.req("POST", "/proxies/p/toxics", &body).await;
    assert_eq!(r.status, 400, "{body}: {}", r.body);
    let err = r.json();
    assert_eq!(err["status"], 400);
    let msg = err["error"].as_str().unwrap();
    assert!(msg.contains(needle), "{body}: {msg}");
    assert_eq!(api.get("/proxies/p/toxics").await.body, "[]", "{body}");
}

/// `edge!(name: "type" {attributes} => accepted {shown})` or `=> refused "message part"`.
macro_rules! edge {
    ($name:ident: $ty:literal $attrs:tt => accepted $shown:tt) => {
        #[tokio::test]
        async fn $name() {
            accepted($ty, json!($attrs), json!($shown)).await;
        }
    };
    ($name:ident: $ty:literal $attrs:tt => refused $needle:literal) => {
        #[tokio::test]
        async fn $name() {
            refused($ty, json!($attrs), $needle).await;
        }
    };
}

// Integers as Go's decoder reads an `int64`, for every toxic alike.
edge!(fractional_integer_is_refused: "latency" {"latency": 1.5}
    => refused "latency attribute latency must be an integer, got 1.5");
edge!(integral_float_is_refused: "timeout" {"timeout": 1000.0}
    => refused "timeout attribute timeout must be an integer, got 1000.0");
edge!(integer_beyond_int64_is_refused: "limit_data" {"bytes": 9_223_372_036_854_775_808u64}
    => refused "limit_data attribute bytes must fit a 64-bit signed integer");
edge!(string_integer_is_refused: "slow_close" {"delay": "100"}
    => refused "slow_close attribute delay must be an integer, got string");
edge!(largest_int64_is_accepted: "latency" {"latency": 9_223_372_036_854_775_807i64}
    => accepted {"latency": 9_223_372_036_854_775_807i64, "jitter": 0});

// latency: a negative delay is no delay, a jitter <= 0 none.
edge!(latency_negative_is_accepted: "latency" {"latency": -100}
    => accepted {"latency": -100, "jitter": 0});
edge!(latency_jitter_negative_is_accepted: "latency" {"latency": 10, "jitter": -5}
    => accepted {"latency": 10, "jitter": -5});
edge!(latency_jitter_above_latency_is_accepted: "latency" {"latency": 10, "jitter": 50}
    => accepted {"latency": 10, "jitter": 50});

// bandwidth: 0 holds the data; a negative rate panics Toxiproxy.
edge!(bandwidth_zero_is_accepted: "bandwidth" {"rate": 0} => accepted {"rate": 0});
edge!(bandwidth_negative_is_refused: "bandwidth" {"rate": -1}
    => refused "bandwidth attribute rate must not be negative, got -1");

// slow_close, timeout, reset_peer: a negative time is zero.
edge!(slow_close_negative_is_accepted: "slow_close" {"delay": -1} => accepted {"delay": -1});
edge!(timeout_negative_is_accepted: "timeout" {"timeout": -1} => accepted {"timeout": -1});
edge!(reset_peer_negative_is_accepted: "reset_peer" {"timeout": -1}
    => accepted {"timeout": -1});

// slicer: average_size below 1 overflows Toxiproxy's stack; any size_variation is fine.
edge!(slicer_variation_equal_to_average_is_accepted: "slicer"
    {"average_size": 1000, "delay": 1000, "size_variation": 1000}
    => accepted {"average_size": 1000, "size_variation": 1000, "delay": 1000});
edge!(slicer_variation_above_average_is_accepted: "slicer"
    {"average_size": 10, "size_variation": 1000}
    => accepted {"average_size": 10, "size_variation": 1000, "delay": 0});
edge!(slicer_variation_negative_is_accepted: "slicer"
    {"average_size": 10, "size_variation": -5}
    => accepted {"average_size": 10, "size_variation": -5, "delay": 0});
edge!(slicer_delay_negative_is_accepted: "slicer" {"average_size": 10, "delay": -1}
    => accepted {"average_size": 10, "size_variation": 0, "delay": -1});
edge!(slicer_average_one_is_accepted: "slicer" {"average_size": 1}
    => accepted {"average_size": 1, "size_variation": 0, "delay": 0});
edge!(slicer_average_zero_is_refused: "slicer" {"average_size": 0, "size_variation": 5}
    => refused "slicer attribute average_size must be at least 1, got 0");
edge!(slicer_average_missing_is_refused: "slicer" {}
    => refused "slicer attribute average_size must be at least 1, got 0");
edge!(slicer_average_negative_is_refused: "slicer" {"average_size": -1}
    => refused "slicer attribute average_size must be at least 1, got -1");

// limit_data: a negative budget is none.
edge!(limit_data_negative_is_accepted: "limit_data" {"bytes": -1} => accepted {"bytes": -1});

// chaosforge's own types: Toxiproxy has none of them, so no client relies on a bad value.
edge!(corrupt_probability_above_one_is_refused: "corrupt" {"probability": 1.5}
    => refused "corrupt attribute probability must be a number between 0 and 1, got 1.5");
edge!(loss_probability_negative_is_refused: "loss" {"probability": -0.1}
    => refused "loss attribute probability must be a number between 0 and 1");

#[tokio::test]
async fn toxicity_in_range_is_accepted_and_outside_refused() {
    let api = api().await;
    api.proxy("p", echo().await).await;
    for t in [0.0, 0.5, 1.0] {
        let body = json!({"name": format!("t{t}"), "type": "noop", "toxicity": t}).to_string();
        assert_eq!(api.toxic("p", &body).await["toxicity"], t);
    }
    for t in [1.5, -0.1] {
        let body = json!({"type": "noop", "toxicity": t}).to_string();
        let r = api.req("POST", "/proxies/p/toxics", &body).await;
        assert_eq!(r.status, 400, "{body}");
        let msg = r.json()["error"].as_str().unwrap().to_owned();
        assert!(
            msg.contains("toxicity must be a number between 0 and 1"),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn updates_follow_the_same_rules_and_merge_into_what_was_written() {
    let api = api().await;
    api.proxy("p", echo().await).await;
    api.toxic(
        "p",
        r#"{"type":"slicer","attributes":{"average_size":100,"size_variation":10}}"#,
    )
    .await;
    let path = "/proxies/p/toxics/slicer_downstream";
    let r = api
        .req("PATCH", path, r#"{"attributes":{"size_variation":500}}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["attributes"],
        json!({"average_size": 100, "size_variation": 500, "delay": 0})
    );
    let r = api
        .req("POST", path, r#"{"attributes":{"delay":-3}}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["attributes"],
        json!({"average_size": 100, "size_variation": 500, "delay": -3})
    );
    let r = api
        .req("PATCH", path, r#"{"attributes":{"average_size":0}}"#)
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("average_size must be at least 1"),
        "{}",
        r.body
    );
    assert_eq!(
        api.get(path).await.json()["attributes"],
        json!({"average_size": 100, "size_variation": 500, "delay": -3}),
        "a refused update changes nothing"
    );
}
