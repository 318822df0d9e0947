//! Property: random requests (methods, paths, JSON and non-JSON bodies) never crash the server,
//! never answer outside the statuses the contract lists, and leave no listener behind once every
//! proxy is deleted.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::support::*;

#[derive(Debug, Clone)]
struct Call {
    method: &'static str,
    path: String,
    body: Vec<u8>,
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![Just("a".to_owned()), Just("b".to_owned()), "[a-z%_]{0,4}"]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-2.0f64..2.0).prop_map(Value::from),
        "[a-zA-Z0-9:._]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("name".to_owned()),
                    Just("type".to_owned()),
                    Just("attributes".to_owned()),
                    Just("latency".to_owned()),
                    "[a-z_]{1,8}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies that are often valid, so proxies and toxics really get created.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let listen = prop_oneof![
        Just("127.0.0.1:0"),
        Just("localhost:0"),
        Just(""),
        Just("nonsense"),
        Just("127.0.0.1:1"),
    ];
    let kind = prop::sample::select(vec![
        "latency",
        "bandwidth",
        "slow_close",
        "timeout",
        "reset_peer",
        "slicer",
        "limit_data",
        "noop",
        "corrupt",
        "loss",
        "blackhole",
        "down",
        "",
    ]);
    prop_oneof![
        (name(), listen, any::<Option<bool>>()).prop_map(|(n, l, e)| {
            json!({"name": n, "listen": l, "upstream": "127.0.0.1:9", "enabled": e})
                .to_string()
                .into_bytes()
        }),
        (kind, json_value(), json_value(), json_value()).prop_map(|(k, a, s, t)| {
            json!({"type": k, "attributes": a, "stream": s, "toxicity": t})
                .to_string()
                .into_bytes()
        }),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

fn call() -> impl Strategy<Value = Call> {
    let method = prop::sample::select(vec!["GET", "POST", "PATCH", "DELETE", "PUT", "OPTIONS"]);
    let path = prop_oneof![
        Just("/proxies".to_owned()),
        Just("/populate".to_owned()),
        Just("/reset".to_owned()),
        Just("/metrics".to_owned()),
        name().prop_map(|n| format!("/proxies/{n}")),
        name().prop_map(|n| format!("/proxies/{n}/toxics")),
        name().prop_map(|n| format!("/proxies/{n}/connections")),
        (name(), "[a-z_]{0,16}").prop_map(|(n, t)| format!("/proxies/{n}/toxics/{t}")),
        "/[a-z/%]{0,12}",
    ];
    (method, path, body()).prop_map(|(method, path, body)| Call { method, path, body })
}

/// Where a reported `listen` can be reached (the wildcard address through loopback).
fn reachable(listen: &str) -> Option<SocketAddr> {
    let addr: SocketAddr = listen.parse().ok()?;
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    (addr.port() != 0).then_some(SocketAddr::new(ip, addr.port()))
}

fn collect_listens(v: &Value, out: &mut BTreeSet<SocketAddr>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(l)) = m.get("listen")
                && let Some(a) = reachable(l)
            {
                out.insert(a);
            }
            m.values().for_each(|v| collect_listens(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_listens(v, out)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_requests_never_crash_or_leak_listeners(calls in prop::collection::vec(call(), 1..25)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let api = api().await;
            let mut listens = BTreeSet::new();
            for c in &calls {
                let r = api.raw(c.method, &c.path, "", &c.body).await;
                prop_assert!(
                    [200, 201, 204, 400, 404, 405, 409, 500].contains(&r.status),
                    "{} {} -> {} {}", c.method, c.path, r.status, r.body
                );
                if let Ok(v) = serde_json::from_str::<Value>(&r.body) {
                    collect_listens(&v, &mut listens);
                }
            }
            prop_assert_eq!(api.get("/version").await.status, 200);
            let all = api.get("/proxies").await.json();
            collect_listens(&all, &mut listens);
            for name in all.as_object().unwrap().keys() {
                let encoded: String = name
                    .bytes()
                    .map(|b| if b.is_ascii_alphanumeric() || b == b'_' { (b as char).to_string() } else { format!("%{b:02X}") })
                    .collect();
                let r = api.req("DELETE", &format!("/proxies/{encoded}"), "").await;
                prop_assert_eq!(r.status, 204, "{}", name);
            }
            prop_assert_eq!(api.get("/proxies").await.body, "{}");
            for addr in listens {
                prop_assert!(refused(addr).await, "listener left behind on {}", addr);
            }
            Ok(())
        })?;
    }
}
