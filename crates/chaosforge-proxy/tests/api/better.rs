//! Where chaosforge does better than Toxiproxy 2.12 without breaking its clients.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn values_that_crash_toxiproxy_get_a_clear_400_and_the_server_lives() {
    let api = api().await;
    let listen = api.proxy("p", echo().await).await;
    for (body, needle) in [
        (
            r#"{"type":"bandwidth","attributes":{"rate":-1}}"#,
            "rate must not be negative",
        ),
        (
            r#"{"type":"slicer","attributes":{"average_size":0}}"#,
            "average_size must be at least 1",
        ),
        (
            r#"{"type":"latency","attributes":{"latency":1.5}}"#,
            "must be an integer, got 1.5",
        ),
        (
            r#"{"type":"latency","attributes":{"latency":"100"}}"#,
            "must be an integer",
        ),
        (
            r#"{"type":"latency","toxicity":1.5}"#,
            "toxicity must be a number between 0 and 1",
        ),
        (r#"{"type":"latency","toxicity":-0.1}"#, "toxicity"),
        (
            r#"{"type":"corrupt","attributes":{"probability":2}}"#,
            "probability",
        ),
    ] {
        let r = api.req("POST", "/proxies/p/toxics", body).await;
        assert_eq!(r.status, 400, "{body}");
        let msg = r.json()["error"].as_str().unwrap().to_owned();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    assert_eq!(
        api.get("/proxies/p/toxics").await.body,
        "[]",
        "nothing half-created"
    );
    // Updates are validated the same way.
    api.toxic("p", r#"{"type":"bandwidth","attributes":{"rate":1000}}"#)
        .await;
    let r = api
        .req(
            "PATCH",
            "/proxies/p/toxics/bandwidth_downstream",
            r#"{"attributes":{"rate":-5}}"#,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        api.get("/proxies/p/toxics/bandwidth_downstream")
            .await
            .json()["attributes"]["rate"],
        1000
    );
    assert_eq!(api.get("/version").await.status, 200);
    // The proxy still forwards: nothing refused reached a link.
    let mut c = connect(listen).await;
    rtt(&mut c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_peer_with_toxicity_zero_never_turns_a_close_into_a_reset() {
    let api = api().await;
    let listen = api.proxy("p", sender(b"bye".to_vec()).await).await;
    api.toxic(
        "p",
        r#"{"type":"reset_peer","toxicity":0,"attributes":{"timeout":0}}"#,
    )
    .await;
    for _ in 0..5 {
        let mut c = connect(listen).await;
        let (got, end) = read_all(&mut c).await;
        assert_eq!(got, b"bye");
        assert!(end.is_ok(), "a clean EOF, not RST: {end:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_peer_added_to_an_open_connection_still_resets() {
    let api = api().await;
    let listen = api.proxy("p", echo().await).await;
    let mut c = connect(listen).await;
    rtt(&mut c).await;
    api.toxic(
        "p",
        r#"{"type":"reset_peer","stream":"upstream","attributes":{"timeout":0}}"#,
    )
    .await;
    c.write_all(b"x").await.unwrap();
    let (_, end) = read_all(&mut c).await;
    assert_eq!(end.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_is_propagated() {
    let api = api().await;
    // Reads until EOF, then answers: needs the client's FIN and a still-open way back.
    let up = upstream(|mut s| async move {
        let mut all = Vec::new();
        if s.read_to_end(&mut all).await.is_ok() {
            let _ = s.write_all(format!("got {}", all.len()).as_bytes()).await;
        }
    })
    .await;
    let listen = api.proxy("p", up).await;
    let mut c = connect(listen).await;
    c.write_all(b"request").await.unwrap();
    c.shutdown().await.unwrap();
    let (got, _) = read_all(&mut c).await;
    assert_eq!(got, b"got 7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_can_reset_the_client() {
    let api = api().await;
    // A port nobody listens on: bind, read the port, close.
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let plain = api.proxy("plain", dead).await;
    let (_, end) = read_all(&mut connect(plain).await).await;
    assert!(
        end.is_ok(),
        "Toxiproxy's behaviour by default: connect, then EOF"
    );
    let r = api
        .req("POST", "/proxies", &format!(r#"{{"name":"strict","listen":"127.0.0.1:0","upstream":"{dead}","reset_unreachable":true}}"#))
        .await;
    assert_eq!(r.json()["reset_unreachable"], true);
    let strict: std::net::SocketAddr = r.json()["listen"].as_str().unwrap().parse().unwrap();
    // The RST may arrive before the connect call returns, or at the first read.
    let end = match within(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(strict),
    )
    .await
    {
        Ok(mut c) => read_all(&mut c).await.1,
        Err(e) => Err(e),
    };
    assert_eq!(end.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_zero_holds_data_until_removed() {
    let api = api().await;
    let listen = api.proxy("p", echo().await).await;
    api.toxic("p", r#"{"type":"bandwidth","attributes":{"rate":0}}"#)
        .await;
    let mut c = connect(listen).await;
    c.write_all(b"ping").await.unwrap();
    let mut buf = [0; 4];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), c.read_exact(&mut buf))
            .await
            .is_err()
    );
    api.req("DELETE", "/proxies/p/toxics/bandwidth_downstream", "")
        .await;
    within(Duration::from_secs(5), c.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"ping", "held, not lost");
}
