//! The engine's seam: an HTTP proxy started by `InProcessBackend::start_http` and driven only
//! through the `HttpProxyControl` trait object, with plain-data `HttpRule`s, as the engine
//! drives it. Covers the rule mapping end to end, live rule changes on an open connection,
//! and `tls-mitm` switched on and off while the proxy runs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chaosforge::fault::net::{
    HeaderEditRule, HttpMatch, HttpProxyControl, HttpRule, HttpRuleAction, MitmVariant,
    ProxyBackend, ProxyError,
};
use chaosforge::units::Ratio;
use chaosforge_proxy::InProcessBackend;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::mitm::{Defect, defect, trusting};
use crate::support::*;

/// An HTTP proxy on 127.0.0.1:0 in front of `upstream`, as the engine starts one.
async fn start(upstream: &str, ca: Option<&Path>) -> Arc<dyn HttpProxyControl> {
    chaosforge::testkit::assert_isolated();
    InProcessBackend
        .start_http("api", "127.0.0.1:0", upstream, ca, 42)
        .await
        .unwrap()
}

fn rule(name: &str, probability: f64, action: HttpRuleAction) -> HttpRule {
    HttpRule {
        name: name.into(),
        matcher: HttpMatch::default(),
        probability: Ratio::new(probability).unwrap(),
        action,
    }
}

fn abort(status: u16) -> HttpRuleAction {
    HttpRuleAction::Abort {
        status,
        body: None,
        headers: vec![],
    }
}

fn mitm(certificate: MitmVariant) -> HttpRuleAction {
    HttpRuleAction::TlsMitm { certificate }
}

#[tokio::test]
async fn an_abort_rule_at_30_percent_aborts_30_percent_of_requests() {
    let _slot = timing_slot().await;
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = start(&upstream.url(), None).await;
    proxy
        .set_rule(rule("abort-30", 0.3, abort(503)))
        .await
        .unwrap();

    let client = client();
    let target = format!("http://{}/orders", proxy.listen_addr());
    let (mut aborted, mut passed) = (0u64, 0u64);
    within(Duration::from_secs(120), async {
        for _ in 0..1000 {
            let response = client.get(&target).send().await.unwrap();
            match response.status().as_u16() {
                503 => aborted += 1,
                200 => passed += 1,
                other => panic!("unexpected status {other}"),
            }
            response.bytes().await.unwrap();
        }
    })
    .await;

    // The share is drawn per request from the seed: 30 % within 5 percentage points.
    let share = aborted as f64 / 1000.0;
    println!(
        "abort-30: {aborted} of 1000 requests aborted ({:.1} %)",
        share * 100.0
    );
    assert!((share - 0.3).abs() <= 0.05, "{share}");
    // Aborted requests never reached the upstream; the others all did.
    assert_eq!(upstream.hits(), passed);
    let report = proxy.report();
    assert_eq!(report.rules.len(), 1);
    let counters = &report.rules[0];
    assert_eq!(counters.name, "abort-30");
    assert_eq!((counters.matched, counters.faulted), (1000, aborted));
    assert!(report.findings.is_empty());
    proxy.shutdown().await;
}

/// One HTTP/1.1 connection that cannot silently reconnect: hyper's connection-level client
/// on a socket this test owns. If the proxy closed it, the next request would fail.
struct OneConnection {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    local_port: u16,
}

impl OneConnection {
    async fn open(proxy: &dyn HttpProxyControl) -> OneConnection {
        let stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        let local_port = stream.local_addr().unwrap().port();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        OneConnection { sender, local_port }
    }

    /// The status and, for a 200, the echo upstream's JSON.
    async fn get(&mut self, path: &str) -> (u16, serde_json::Value) {
        within(Duration::from_secs(10), async {
            self.sender
                .ready()
                .await
                .expect("the connection is still open");
            let request = hyper::Request::get(path)
                .header("host", "proxy")
                .body(Empty::new())
                .unwrap();
            let response = self.sender.send_request(request).await.unwrap();
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            (status, json)
        })
        .await
    }
}

#[tokio::test]
async fn rules_set_and_removed_live_reach_an_open_keep_alive_connection() {
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = start(&upstream.url(), None).await;
    let mut conn = OneConnection::open(proxy.as_ref()).await;
    let chaos = |echo: &serde_json::Value| header_values(echo, "x-chaos");

    let (status, before) = conn.get("/live").await;
    assert_eq!(status, 200);
    assert!(chaos(&before).is_empty());
    // The echo upstream's view of the connection it got (the proxy's pooled one).
    let upstream_peer = before["peer"].clone();

    let tag = HttpRule {
        matcher: HttpMatch {
            path_prefix: Some("/live".into()),
            ..HttpMatch::default()
        },
        ..rule(
            "tag",
            1.0,
            HttpRuleAction::Headers {
                request: vec![HeaderEditRule::Set("X-Chaos".into(), "on".into())],
                response: vec![],
            },
        )
    };
    let teapot = HttpRule {
        matcher: HttpMatch {
            path_prefix: Some("/teapot".into()),
            ..HttpMatch::default()
        },
        ..rule("teapot", 1.0, abort(418))
    };
    proxy.set_rule(tag.clone()).await.unwrap();
    proxy.set_rule(teapot).await.unwrap();
    let (status, tagged) = conn.get("/live").await;
    assert_eq!((status, chaos(&tagged)), (200, vec!["on".to_owned()]));
    assert_eq!(conn.get("/teapot").await.0, 418);

    assert!(proxy.remove_rule("tag").await.unwrap());
    assert!(!proxy.remove_rule("tag").await.unwrap());
    let (status, after) = conn.get("/live").await;
    assert_eq!(status, 200);
    assert!(chaos(&after).is_empty());
    assert!(proxy.remove_rule("teapot").await.unwrap());
    assert_eq!(conn.get("/teapot").await.0, 200);

    // Setting again, the same rule: counters go on from where they were.
    proxy.set_rule(tag).await.unwrap();
    assert_eq!(chaos(&conn.get("/live").await.1), ["on"]);

    // Five requests rode the one client connection (hyper's client cannot reconnect), and the
    // upstream saw them all on one connection from the proxy too: nothing was reopened.
    assert!(!conn.sender.is_closed());
    println!("client port {} throughout", conn.local_port);
    for echo in [&tagged, &after] {
        assert_eq!(echo["peer"], upstream_peer);
    }
    let report = proxy.report();
    let counters: Vec<_> = report
        .rules
        .iter()
        .map(|r| (r.name.as_str(), r.matched, r.faulted))
        .collect();
    // In the order first set; `tag` kept its counters across removal and re-setting.
    assert_eq!(counters, [("tag", 2, 2), ("teapot", 1, 1)]);
    proxy.shutdown().await;
}

/// A client trusting only `ca`, opening a new connection for every request (so each one is
/// routed anew by the proxy), reporting the certificate it saw.
fn fresh_trusting(ca: &rustls::pki_types::CertificateDer<'static>) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_der(ca).unwrap()])
        .pool_max_idle_per_host(0)
        .tls_info(true)
        .build()
        .unwrap()
}

/// The server certificate a response came over.
fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("a TLS response with tls_info")
        .to_vec()
}

#[tokio::test]
async fn tls_mitm_switches_live_between_pass_through_and_each_bad_certificate() {
    let upstream = tls_upstream(Behaviour::Echo).await;
    let upstream_ca = upstream.ca.clone().unwrap();
    let upstream_leaf = upstream.leaf.clone().unwrap().to_vec();
    let ca_file = upstream.ca_pem_file();
    let proxy = start(&upstream.url(), Some(&ca_file)).await;
    std::fs::remove_file(&ca_file).unwrap();
    let url = format!("https://{}/live-tls", proxy.listen_addr());

    let validating = fresh_trusting(&upstream_ca);
    let careless = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(0)
        .tls_info(true)
        .build()
        .unwrap();
    // Keeps its connection: opened before any rule, it must stay passed through.
    let pooled = trusting(&upstream_ca);
    let get = |client: &reqwest::Client| {
        let request = client.get(&url).send();
        async move { within(Duration::from_secs(10), request).await }
    };
    // No rule: the client's TLS is passed through, so it sees the upstream's own certificate
    // and the upstream's answer.
    let passed_through = async |client: &reqwest::Client| {
        let response = get(client).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(peer_certificate(&response), upstream_leaf);
        let echo: serde_json::Value = response.json().await.unwrap();
        assert_eq!(echo["path"], "/live-tls");
    };
    passed_through(&validating).await;
    assert_eq!(get(&pooled).await.unwrap().status(), 200);

    let variants = [
        (
            MitmVariant::Untrusted,
            Defect::UnknownIssuer,
            "a certificate from an untrusted CA",
        ),
        // Date checks come before the issuer in rustls' path building.
        (
            MitmVariant::Expired,
            Defect::Expired,
            "an expired certificate",
        ),
        (
            MitmVariant::NotYetValid,
            Defect::NotValidYet,
            "a certificate that is not valid yet",
        ),
        // The proxy's CA is unknown to the client: that is what it says first.
        (
            MitmVariant::WrongHost,
            Defect::UnknownIssuer,
            "a certificate for the wrong host name",
        ),
    ];
    for (variant, want, accepted) in variants {
        let name = format!("mitm-{variant:?}");
        proxy
            .set_rule(rule(&name, 1.0, mitm(variant)))
            .await
            .unwrap();

        // A new connection from a validating client now meets the bad certificate.
        let error = get(&validating)
            .await
            .expect_err("a validating client must refuse the certificate");
        assert_eq!(defect(&error), Some(want), "{variant:?}: {error:?}");

        // A client that does not validate gets through, to the real upstream, over the
        // proxy's certificate; the report names what it accepted.
        let response = get(&careless).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_ne!(peer_certificate(&response), upstream_leaf);
        let echo: serde_json::Value = response.json().await.unwrap();
        assert_eq!(echo["path"], "/live-tls");
        let finding = format!("client accepted {accepted} (1 handshake)");
        assert!(
            proxy.report().findings.contains(&finding),
            "{finding:?} not in {:?}",
            proxy.report().findings
        );

        // A connection passed through before the rule stays so.
        let response = get(&pooled).await.unwrap();
        assert_eq!(response.status(), 200);

        // Removed: new connections are passed through again.
        assert!(proxy.remove_rule(&name).await.unwrap());
        passed_through(&validating).await;
    }

    // Every rule saw exactly its two new connections and terminated both; its counters and
    // the findings outlive its removal.
    let report = proxy.report();
    let counters: Vec<_> = report
        .rules
        .iter()
        .map(|r| (r.name.as_str(), r.matched, r.faulted))
        .collect();
    assert_eq!(
        counters,
        [
            ("mitm-Untrusted", 2, 2),
            ("mitm-Expired", 2, 2),
            ("mitm-NotYetValid", 2, 2),
            ("mitm-WrongHost", 2, 2),
        ]
    );
    println!("findings: {:#?}", report.findings);
    assert_eq!(
        report.findings,
        [
            "client accepted a certificate from an untrusted CA (1 handshake)",
            "client accepted an expired certificate (1 handshake)",
            "client accepted a certificate that is not valid yet (1 handshake)",
            "client accepted a certificate for the wrong host name (1 handshake)",
        ]
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn tls_to_a_plain_upstream_is_closed_unless_a_mitm_rule_terminates_it() {
    let upstream = upstream(Behaviour::Echo).await;
    let proxy = start(&upstream.url(), None).await;
    let careless = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let https = format!("https://{}/x", proxy.listen_addr());
    let http = format!("http://{}/x", proxy.listen_addr());

    // No TLS upstream to pass the client to: the proxy closes the connection.
    let error = within(Duration::from_secs(10), careless.get(&https).send())
        .await
        .expect_err("nothing to pass TLS through to");
    assert!(error.is_connect() || error.is_request(), "{error:?}");
    // Plain HTTP on the same port is unaffected.
    assert_eq!(echoed(&client(), &http).await["path"], "/x");

    // Under tls-mitm the proxy itself speaks TLS to the client and HTTP to the upstream.
    proxy
        .set_rule(rule("mitm", 1.0, mitm(MitmVariant::Untrusted)))
        .await
        .unwrap();
    let response = within(Duration::from_secs(10), careless.get(&https).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        proxy.report().findings,
        ["client accepted a certificate from an untrusted CA (1 handshake)"]
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn bad_addresses_rules_and_late_calls_are_errors() {
    chaosforge::testkit::assert_isolated();
    let backend = InProcessBackend;
    let start_err = async |listen: &str, upstream: &str, ca: Option<&Path>| {
        backend
            .start_http("api", listen, upstream, ca, 1)
            .await
            .expect_err("must not start")
    };
    let err = start_err("127.0.0.1:0", "ftp://127.0.0.1:9", None).await;
    assert!(matches!(err, ProxyError::Address { .. }), "{err}");
    let err = start_err("127.0.0.1:0", "not a url", None).await;
    assert!(matches!(err, ProxyError::Address { .. }), "{err}");
    let err = start_err("nowhere", "http://127.0.0.1:9", None).await;
    assert!(matches!(err, ProxyError::Address { .. }), "{err}");
    let missing = Path::new("/nonexistent/upstream-ca.pem");
    let err = start_err("127.0.0.1:0", "https://127.0.0.1:9", Some(missing)).await;
    assert!(
        matches!(&err, ProxyError::Io(_)) && err.to_string().contains("upstream-ca.pem"),
        "{err}"
    );
    println!("start errors, e.g.: {err}");

    let proxy = start("http://127.0.0.1:9", None).await;
    let mut bad = rule("bad", 1.0, abort(1000));
    bad.matcher.methods = vec!["G ET".into()];
    bad.matcher.path_regex = Some("([".into());
    let err = proxy.set_rule(bad).await.unwrap_err();
    let text = err.to_string();
    println!("invalid rule: {text}");
    assert!(matches!(err, ProxyError::Remote(_)), "{err:?}");
    for part in ["rule `bad`", "G ET", "path_regex", "abort.status: 1000"] {
        assert!(text.contains(part), "{part:?} missing from {text}");
    }
    // A refused rule is not set and not reported.
    assert!(!proxy.remove_rule("bad").await.unwrap());
    assert!(proxy.report().rules.is_empty());

    proxy.set_rule(rule("kept", 1.0, abort(503))).await.unwrap();
    proxy.shutdown().await;
    proxy.shutdown().await; // idempotent
    let err = proxy
        .set_rule(rule("late", 1.0, abort(503)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProxyError::NotRunning(ref name) if name == "api"),
        "{err}"
    );
    // Reverting after shutdown still works, and the report is still there.
    assert!(proxy.remove_rule("kept").await.unwrap());
    assert_eq!(proxy.report().rules[0].name, "kept");
}
