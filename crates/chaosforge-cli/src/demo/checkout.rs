//! Scenario 1, network latency: a `checkout` gateway calls `payments` through a chaosforge TCP
//! proxy that slows it down. With a 100 ms timeout and a cached price the hypothesis holds;
//! waiting for payments however long it takes, it does not.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::StatusCode;

use super::serve::{client, free_port, listen, respond, serve};
use super::{Expect, Scenario, Variant};

/// The bundled experiment; its ports are replaced with the ones chosen at start.
pub(crate) const EXPERIMENT: &str = include_str!("../../../../examples/demo-checkout.yaml");

/// Starts payments, and per variant a gateway and the experiment text aimed at them.
pub(super) async fn prepare() -> anyhow::Result<Scenario> {
    let backend = start_backend().await?;
    println!("demo: payments backend on {backend}");
    let mut variants = Vec::new();
    for resilient in [true, false] {
        let proxy = free_port().await?;
        let gateway = start_gateway(resilient, proxy).await?;
        let (label, slug, expect) = if resilient {
            (
                "gateway with timeout + fallback",
                "resilient",
                Expect::Confirmed,
            )
        } else {
            ("gateway without timeout", "naive", Expect::Refuted)
        };
        let text = EXPERIMENT
            .replace("127.0.0.1:18081", &proxy.to_string())
            .replace("127.0.0.1:9002", &backend.to_string())
            .replace("127.0.0.1:18080", &gateway.to_string())
            .replace(
                "name: checkout-survives-slow-payments",
                &format!("name: checkout-survives-slow-payments-{slug}"),
            );
        variants.push(Variant {
            label: format!("{label} (gateway {gateway}, payments via proxy {proxy})"),
            short: label,
            file: format!("demo:checkout-{slug}.yaml"),
            text,
            expect,
        });
    }
    Ok(Scenario {
        variants,
        note: "the timeout and fallback keep checkout fast while payments is slow",
    })
}

async fn start_backend() -> anyhow::Result<SocketAddr> {
    let (listener, addr) = listen("payments backend").await?;
    tokio::spawn(serve(listener, |_req| async {
        respond(StatusCode::OK, r#"{"price":42}"#)
    }));
    Ok(addr)
}

async fn start_gateway(resilient: bool, payments: SocketAddr) -> anyhow::Result<SocketAddr> {
    let (listener, addr) = listen("checkout gateway").await?;
    let client = client()?;
    let url = format!("http://{payments}/price");
    tokio::spawn(serve(listener, move |_req| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let call = async { client.get(&url).send().await?.text().await };
            if resilient {
                match tokio::time::timeout(Duration::from_millis(100), call).await {
                    Ok(Ok(price)) => respond(
                        StatusCode::OK,
                        &format!(r#"{{"order":"ok","payments":{price}}}"#),
                    ),
                    // Degrade instead of failing: the last known price keeps checkout working.
                    _ => respond(
                        StatusCode::OK,
                        r#"{"order":"ok","payments":{"price":42,"cached":true}}"#,
                    ),
                }
            } else {
                match call.await {
                    Ok(price) => respond(
                        StatusCode::OK,
                        &format!(r#"{{"order":"ok","payments":{price}}}"#),
                    ),
                    Err(e) => respond(StatusCode::BAD_GATEWAY, &format!(r#"{{"error":"{e}"}}"#)),
                }
            }
        }
    }));
    Ok(addr)
}
