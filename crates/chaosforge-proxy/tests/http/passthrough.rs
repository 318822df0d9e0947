//! With no fault the proxy is transparent: methods, paths, queries, headers and bodies reach
//! the upstream, answers come back, over HTTP/1.1, h2c and h2 over TLS, streaming.

use std::time::Duration;

use hyper::Version;
use tokio::time::Instant;

use crate::support::*;

#[tokio::test]
async fn http1_request_and_answer_pass_unchanged_except_hop_by_hop_headers() {
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = proxy_to(&upstream).await;
    let response = within(
        Duration::from_secs(10),
        client()
            .post(url(&proxy, "/orders/7?expand=items"))
            .header("x-trace", "abc")
            // `connection` names `x-hop` as hop-by-hop: the proxy must drop both.
            .header("connection", "x-hop")
            .header("x-hop", "secret")
            .body("hello upstream")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-upstream"], "echo");
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/orders/7");
    assert_eq!(echo["query"], "expand=items");
    assert_eq!(echo["body"], "hello upstream");
    assert_eq!(header_values(&echo, "x-trace"), ["abc"]);
    assert!(header_values(&echo, "x-hop").is_empty());
    assert!(header_values(&echo, "connection").is_empty());
    // The upstream is addressed by its own name, not the proxy's.
    assert_eq!(header_values(&echo, "host"), [upstream.addr.to_string()]);
    assert_eq!(proxy.stats().requests, 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn h2c_prior_knowledge_clients_are_served() {
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = proxy_to(&upstream).await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = within(Duration::from_secs(10), h2.get(url(&proxy, "/h2")).send())
        .await
        .unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(echo["path"], "/h2");
    // The plain upstream is spoken to in HTTP/1.1.
    assert_eq!(echo["version"], "HTTP/1.1");
    proxy.shutdown().await;
}

#[tokio::test]
async fn https_upstreams_are_verified_against_their_ca_and_reached_over_h2() {
    let upstream = tls_upstream(Behaviour::Echo).await;
    let proxy = proxy_to(&upstream).await;
    let echo = echoed(&client(), &url(&proxy, "/secure")).await;
    assert_eq!(echo["path"], "/secure");
    // ALPN picked h2 towards the upstream.
    assert_eq!(echo["version"], "HTTP/2.0");
    proxy.shutdown().await;

    // Without the upstream's CA, the proxy refuses the upstream: a 502, not a silent MITM.
    chaosforge::testkit::assert_isolated();
    let mut untrusting = upstream.upstream();
    untrusting.tls_roots = Some(Vec::new());
    let result =
        chaosforge_proxy::http::HttpProxy::start(chaosforge_proxy::http::HttpProxyConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream: untrusting,
            mitm: None,
            seed: 1,
        })
        .await;
    // With no system roots at all (a bare container) start itself refuses; otherwise the
    // upstream's private CA is unknown and requests get a 502.
    if let Ok(proxy) = result {
        let response = within(
            Duration::from_secs(10),
            client().get(url(&proxy, "/")).send(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 502);
        let text = response.text().await.unwrap();
        assert!(text.starts_with("chaosforge: bad gateway"), "{text}");
        assert_eq!(proxy.stats().upstream_errors, 1);
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_with_a_reason() {
    let upstream = upstream(Behaviour::Echo).await;
    let mut gone = upstream.clone();
    // A port nobody listens on: bind one, note it, close it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    gone.addr = listener.local_addr().unwrap();
    drop(listener);
    let proxy = proxy_to(&gone).await;
    let response = within(
        Duration::from_secs(10),
        client().get(url(&proxy, "/")).send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    assert!(text.contains("bad gateway"), "{text}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn bodies_stream_through_without_being_buffered() {
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = proxy_to(&upstream).await;

    // The upstream sends its first chunk, then waits 300 ms: the client must get the first
    // chunk well before the second exists.
    let started = Instant::now();
    let mut response = within(
        Duration::from_secs(10),
        client().get(url(&proxy, "/stream")).send(),
    )
    .await
    .unwrap();
    let first = within(Duration::from_secs(10), response.chunk())
        .await
        .unwrap()
        .unwrap();
    let first_at = started.elapsed();
    assert_eq!(first, "first;");
    let mut rest = Vec::new();
    while let Some(chunk) = within(Duration::from_secs(10), response.chunk())
        .await
        .unwrap()
    {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"second");
    assert!(
        first_at < Duration::from_millis(200),
        "first chunk after {first_at:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A large request body arrives whole.
    let big = vec![b'x'; 4 << 20];
    let response = within(
        Duration::from_secs(30),
        client().post(url(&proxy, "/upload")).body(big).send(),
    )
    .await
    .unwrap();
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(echo["body_len"], 4 << 20);
    proxy.shutdown().await;
}
