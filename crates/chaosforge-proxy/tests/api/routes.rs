//! Routes, status codes, JSON shapes, headers and error bodies, as the contract lists them.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn version_is_byte_exact() {
    let api = api().await;
    let r = api.get("/version").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "{\"version\": \"2.12.0\"}\n");
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    assert_eq!(r.header("x-toxiproxy-request-id").map(str::len), Some(20));
}

#[tokio::test]
async fn proxy_lifecycle_statuses_and_shapes() {
    let api = api().await;
    let up = echo().await;
    assert_eq!(api.get("/proxies").await.body, "{}");
    let r = api
        .req(
            "POST",
            "/proxies",
            &format!(r#"{{"NAME":"p1","listen":"localhost:0","UpStream":"{up}"}}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let p = r.json();
    // localhost:0 is rewritten to the concrete IPv4 address that was bound.
    let listen = p["listen"].as_str().unwrap().to_owned();
    assert!(
        listen.starts_with("127.0.0.1:") && !listen.ends_with(":0"),
        "{listen}"
    );
    assert_eq!(
        r.body,
        format!(
            r#"{{"name":"p1","listen":"{listen}","upstream":"{up}","enabled":true,"toxics":[]}}"#
        )
    );
    let dup = api
        .req(
            "POST",
            "/proxies",
            &format!(r#"{{"name":"p1","upstream":"{up}"}}"#),
        )
        .await;
    assert_eq!(
        (dup.status, dup.body.as_str()),
        (409, "{\"error\":\"proxy already exists\",\"status\":409}\n")
    );
    assert_eq!(
        dup.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(dup.header("x-content-type-options"), Some("nosniff"));
    for (body, msg) in [
        ("", "bad request body: EOF"),
        ("{\"name\":", "bad request body: unexpected EOF"),
        ("{\"upstream\":\"x:1\"}", "missing required field: name"),
        ("{\"name\":\"x\"}", "missing required field: upstream"),
    ] {
        let r = api.req("POST", "/proxies", body).await;
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.json()["error"], msg, "{body}");
    }
    let got = api.get("/proxies/p1").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), p);
    assert_eq!(api.get("/proxies").await.json(), json!({"p1": p}));
    // Partial update: only enabled; the port is kept for the next enable.
    let off = api.req("POST", "/proxies/p1", r#"{"enabled":false}"#).await;
    assert_eq!(
        (off.status, off.json()["enabled"].clone()),
        (200, json!(false))
    );
    assert!(refused(listen.parse().unwrap()).await);
    let on = api.req("PATCH", "/proxies/p1", r#"{"enabled":true}"#).await;
    assert_eq!(on.json()["listen"], listen.as_str());
    // The same port spelled localhost:P is not a change.
    let port = listen.rsplit(':').next().unwrap();
    let same = api
        .req(
            "PATCH",
            "/proxies/p1",
            &format!(r#"{{"listen":"localhost:{port}"}}"#),
        )
        .await;
    assert_eq!(same.json()["listen"], listen.as_str());
    assert_eq!(api.req("DELETE", "/proxies/p1", "").await.status, 204);
    let gone = api.req("DELETE", "/proxies/p1", "").await;
    assert_eq!(
        (gone.status, gone.json()["error"].clone()),
        (404, json!("proxy not found"))
    );
    assert!(refused(listen.parse().unwrap()).await);
}

#[tokio::test]
async fn disabled_proxy_keeps_listen_verbatim_until_enabled() {
    let api = api().await;
    let r = api
        .req(
            "POST",
            "/proxies",
            r#"{"name":"d","listen":"localhost:0","upstream":"127.0.0.1:9","enabled":false}"#,
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["listen"], "localhost:0");
    let on = api.req("POST", "/proxies/d", r#"{"enabled":true}"#).await;
    assert!(!on.json()["listen"].as_str().unwrap().ends_with(":0"));
}

#[tokio::test]
async fn routing_errors_match_go() {
    let api = api().await;
    let r = api.get("/nope").await;
    assert_eq!((r.status, r.body.as_str()), (404, "404 page not found\n"));
    assert_eq!(api.get("/proxies/").await.status, 404, "no trailing slash");
    for (m, p) in [
        ("PUT", "/proxies"),
        ("DELETE", "/proxies"),
        ("GET", "/reset"),
        ("GET", "/populate"),
    ] {
        let r = api.req(m, p, "").await;
        assert_eq!((r.status, r.body.as_str()), (405, ""), "{m} {p}");
    }
    let browser = api
        .raw("GET", "/version", "User-Agent: Mozilla/5.0\r\n", b"")
        .await;
    assert_eq!(
        (browser.status, browser.body.as_str()),
        (403, "User agent not allowed\n")
    );
    let curl = api
        .raw("GET", "/version", "User-Agent: curl/8\r\n", b"")
        .await;
    assert_eq!(curl.status, 200);
}

#[tokio::test]
async fn toxic_defaults_order_updates_and_errors() {
    let api = api().await;
    let up = echo().await;
    api.proxy("p", up).await;
    let t = api
        .req(
            "POST",
            "/proxies/p/toxics",
            r#"{"type":"latency","attributes":{"latency":100}}"#,
        )
        .await;
    assert_eq!(t.status, 200);
    assert_eq!(
        t.body,
        r#"{"attributes":{"latency":100,"jitter":0},"name":"latency_downstream","type":"latency","stream":"downstream","toxicity":1}"#
    );
    // The stream keeps the client's spelling, in the body and the default name.
    let u = api
        .req(
            "POST",
            "/proxies/p/toxics",
            r#"{"type":"noop","stream":"UPSTREAM","toxicity":0.2}"#,
        )
        .await;
    assert_eq!(
        u.body,
        r#"{"attributes":{},"name":"noop_UPSTREAM","type":"noop","stream":"UPSTREAM","toxicity":0.2}"#
    );
    // Upstream toxics are listed first.
    let list = api.get("/proxies/p/toxics").await.json();
    assert_eq!(list[0]["name"], "noop_UPSTREAM");
    assert_eq!(list[1]["name"], "latency_downstream");
    let e = |status: u16, msg: &'static str| (status, json!(msg));
    let post = |body: &'static str| {
        let api = &api;
        async move {
            let r = api.req("POST", "/proxies/p/toxics", body).await;
            (r.status, r.json()["error"].clone())
        }
    };
    assert_eq!(
        post(r#"{"type":"latency","stream":"sideways"}"#).await,
        e(
            400,
            "stream was invalid, can be either upstream or downstream"
        )
    );
    assert_eq!(
        post(r#"{"type":"warp"}"#).await,
        e(400, "invalid toxic type")
    );
    assert_eq!(post(r#"{}"#).await, e(400, "invalid toxic type"));
    // Names are unique across both streams; 409 comes before attribute errors.
    assert_eq!(
        post(r#"{"type":"latency","name":"noop_UPSTREAM","attributes":{"latency":1.5}}"#).await,
        e(409, "toxic already exists")
    );
    let missing = api.req("POST", "/proxies/zz/toxics", "{}").await;
    assert_eq!(missing.status, 404);
    // Update merges attributes; name/type/stream in the body are ignored.
    let r = api
        .req(
            "PATCH",
            "/proxies/p/toxics/latency_downstream",
            r#"{"attributes":{"jitter":5},"name":"x","stream":"upstream"}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["attributes"], json!({"latency":100,"jitter":5}));
    assert_eq!(r.json()["stream"], "downstream");
    let r = api
        .req(
            "POST",
            "/proxies/p/toxics/latency_downstream",
            r#"{"toxicity":0.5}"#,
        )
        .await;
    assert_eq!(r.json()["toxicity"], 0.5);
    assert_eq!(r.json()["attributes"]["latency"], 100);
    assert_eq!(
        api.get("/proxies/p/toxics/latency_downstream").await.json(),
        r.json()
    );
    assert_eq!(api.get("/proxies/p/toxics/nope").await.status, 404);
    assert_eq!(
        api.req("PATCH", "/proxies/p/toxics/nope", "{}")
            .await
            .status,
        404
    );
    assert_eq!(
        api.req("DELETE", "/proxies/p/toxics/noop_UPSTREAM", "")
            .await
            .status,
        204
    );
    assert_eq!(
        api.req("DELETE", "/proxies/p/toxics/noop_UPSTREAM", "")
            .await
            .status,
        404
    );
    // The proxy object carries its toxics.
    assert_eq!(
        api.get("/proxies/p").await.json()["toxics"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn populate_validates_first_and_keeps_unchanged_proxies() {
    let api = api().await;
    let up = echo().await;
    let empty = api.req("POST", "/populate", "[]").await;
    assert_eq!(
        (empty.status, empty.body.as_str()),
        (201, r#"{"proxies":null}"#)
    );
    let obj = api.req("POST", "/populate", "{}").await;
    assert_eq!(obj.status, 400);
    assert_eq!(obj.json()["proxies"], json!(null));
    let bad = api
        .req(
            "POST",
            "/populate",
            &format!(r#"[{{"name":"a","upstream":"{up}"}},{{"name":"b"}}]"#),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.json()["error"],
        "missing required field: upstream at proxy 2"
    );
    assert_eq!(api.get("/proxies").await.body, "{}", "nothing created");

    let listen = api.proxy("keep", up).await;
    api.toxic("keep", r#"{"type":"latency","attributes":{"latency":10}}"#)
        .await;
    let mut client = connect(listen).await;
    rtt(&mut client).await;
    let body = format!(
        r#"[{{"name":"keep","listen":"{listen}","upstream":"{up}"}},{{"name":"new","listen":"127.0.0.1:0","upstream":"{up}","toxics":[{{"type":"latency","attributes":{{"latency":5}}}}]}}]"#
    );
    let r = api.req("POST", "/populate", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let proxies = r.json()["proxies"].clone();
    assert_eq!(proxies[0]["name"], "keep");
    assert_eq!(
        proxies[0]["toxics"].as_array().unwrap().len(),
        1,
        "kept with its toxics"
    );
    assert_eq!(
        proxies[1]["toxics"][0]["attributes"]["latency"], 5,
        "config toxics"
    );
    // The kept proxy's open connection still works.
    rtt(&mut client).await;
    // Port 0 never equals the stored port: replaced, without toxics.
    let r = api
        .req(
            "POST",
            "/populate",
            &format!(r#"[{{"name":"keep","listen":"127.0.0.1:0","upstream":"{up}"}}]"#),
        )
        .await;
    assert_eq!(r.json()["proxies"][0]["toxics"], json!([]));
    // A bind failure stops processing with 500 and keeps what was done.
    let taken = api.proxy("taken", up).await;
    let r = api
        .req("POST", "/populate", &format!(r#"[{{"name":"ok2","listen":"127.0.0.1:0","upstream":"{up}"}},{{"name":"clash","listen":"{taken}","upstream":"{up}"}}]"#))
        .await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.json()["proxies"].as_array().unwrap().len(), 1);
    assert_eq!(api.get("/proxies/ok2").await.status, 200);
    assert_eq!(api.get("/proxies/clash").await.status, 404);
}

#[tokio::test]
async fn reset_reenables_and_clears_toxics_keeping_connections() {
    let api = api().await;
    let up = echo().await;
    let a = api.proxy("a", up).await;
    let b = api.proxy("b", up).await;
    api.toxic("a", r#"{"type":"latency","attributes":{"latency":2000}}"#)
        .await;
    api.req("POST", "/proxies/b", r#"{"enabled":false}"#).await;
    assert!(refused(b).await);
    let mut open = connect(a).await;
    let r = api.req("POST", "/reset", "anything").await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_eq!(api.get("/proxies/a/toxics").await.body, "[]");
    assert_eq!(api.get("/proxies/b").await.json()["enabled"], true);
    // The open connection survived and its latency is gone.
    assert!(rtt(&mut open).await.as_millis() < 1000);
    let mut c = connect(b).await;
    rtt(&mut c).await;
}

#[tokio::test]
async fn metrics_count_bytes_while_they_flow_and_connections_are_listed() {
    let api = api().await;
    let up = echo().await;
    let listen = api.proxy("m", up).await;
    let mut c = connect(listen).await;
    rtt(&mut c).await;
    // The connection is still open: Toxiproxy would show nothing yet.
    let m = api.get("/metrics").await;
    assert_eq!(m.status, 200);
    assert!(
        m.body.contains(&format!(
            r#"toxiproxy_proxy_received_bytes_total{{direction="upstream",listener="{listen}",proxy="m",upstream="{up}"}} 4"#
        )),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains(r#"toxiproxy_proxy_sent_bytes_total{direction="downstream""#)
    );
    assert!(
        m.body
            .contains(r#"chaosforge_proxy_connections{proxy="m"} 1"#),
        "{}",
        m.body
    );
    let conns = api.get("/proxies/m/connections").await.json();
    assert_eq!(conns[0]["upstream_bytes"], 4);
    assert_eq!(conns[0]["downstream_bytes"], 4);
    assert_eq!(conns[0]["client"], c.local_addr().unwrap().to_string());
    api.toxic("m", r#"{"type":"noop"}"#).await;
    rtt(&mut c).await;
    let m = api.get("/metrics").await.body;
    assert!(
        m.contains(r#"chaosforge_proxy_toxic_activations_total{proxy="m",toxic="noop_downstream",type="noop",direction="downstream"} 1"#),
        "{m}"
    );
    assert_eq!(api.get("/proxies/zz/connections").await.status, 404);
}
