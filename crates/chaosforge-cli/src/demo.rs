//! `chaosforge demo`: a small system on loopback — a `payments` backend and a `checkout` gateway
//! that calls it through a chaosforge proxy — and one latency experiment run against two
//! variants of the gateway: one with a timeout and a fallback (the hypothesis holds), one without
//! (it does not). Ports are chosen free at start; nothing outside 127.0.0.1 is touched.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use chaosforge::engine::Outcome;
use chaosforge::source::Document;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The bundled experiment; `{…}` placeholders are filled with the ports chosen at start.
pub(crate) const EXPERIMENT: &str = include_str!("../../../examples/demo-checkout.yaml");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// 100 ms timeout on the payments call, and a cached price when it fires.
    Resilient,
    /// Waits for payments however long it takes.
    Naive,
}

pub(crate) async fn run(
    state_dir: &Path,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<u8> {
    let backend = start_backend().await?;
    println!("demo: payments backend on {backend}");
    let mut outcomes = Vec::new();
    for variant in [Variant::Resilient, Variant::Naive] {
        let proxy = free_port().await?;
        let gateway = start_gateway(variant, proxy).await?;
        let label = match variant {
            Variant::Resilient => "gateway with timeout + fallback",
            Variant::Naive => "gateway without timeout",
        };
        println!(
            "\n=== demo: {label} (gateway {gateway}, payments via chaosforge proxy {proxy}) ===\n"
        );
        let text = EXPERIMENT
            .replace("127.0.0.1:18081", &proxy.to_string())
            .replace("127.0.0.1:9002", &backend.to_string())
            .replace("127.0.0.1:18080", &gateway.to_string())
            .replace(
                "name: checkout-survives-slow-payments",
                &format!("name: checkout-survives-slow-payments-{}", slug(variant)),
            );
        let file = format!("demo:{}.yaml", slug(variant));
        let doc = Document::parse(&file, &text)
            .map_err(|d| anyhow::anyhow!("bundled experiment is invalid:\n{d}"))?;
        let spec = chaosforge::de::decode(&doc)
            .map_err(|d| anyhow::anyhow!("bundled experiment is invalid:\n{d}"))?;
        let plan = chaosforge::plan::compile(&doc, &spec, None)
            .map_err(|d| anyhow::anyhow!("bundled experiment is invalid:\n{d}"))?;
        let result = crate::run(&plan, state_dir, shutdown.clone(), None).await?;
        print!("{}", result.report.render_text());
        outcomes.push((label, result.outcome));
        if *shutdown.borrow() {
            println!("\ndemo interrupted; the rest is skipped");
            return Ok(3);
        }
    }
    println!("\n=== demo summary ===");
    for (label, o) in &outcomes {
        println!("  {label}: {}", crate::outcome_word(o));
    }
    let expected = matches!(
        outcomes.as_slice(),
        [(_, Outcome::Confirmed), (_, Outcome::Refuted { .. })]
    );
    if expected {
        println!(
            "as expected: the timeout and fallback keep checkout fast while payments is slow."
        );
        Ok(0)
    } else {
        println!(
            "unexpected: the demo should confirm the resilient gateway and refute the naive one."
        );
        Ok(1)
    }
}

fn slug(v: Variant) -> &'static str {
    match v {
        Variant::Resilient => "resilient",
        Variant::Naive => "naive",
    }
}

/// A free loopback port for the proxy the run will start (the gateway must know it first).
async fn free_port() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a loopback port")?;
    Ok(l.local_addr()?)
}

async fn start_backend() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the demo backend")?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, |_req| async {
        respond(StatusCode::OK, r#"{"price":42}"#)
    }));
    Ok(addr)
}

async fn start_gateway(variant: Variant, payments: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the demo gateway")?;
    let addr = listener.local_addr()?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("building the gateway's HTTP client")?;
    let url = format!("http://{payments}/price");
    tokio::spawn(serve(listener, move |_req| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let call = async { client.get(&url).send().await?.text().await };
            match variant {
                Variant::Resilient => {
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
                }
                Variant::Naive => match call.await {
                    Ok(price) => respond(
                        StatusCode::OK,
                        &format!(r#"{{"order":"ok","payments":{price}}}"#),
                    ),
                    Err(e) => respond(StatusCode::BAD_GATEWAY, &format!(r#"{{"error":"{e}"}}"#)),
                },
            }
        }
    }));
    Ok(addr)
}

fn respond(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r
}

async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, most likely: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let h = handler.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let h = h.clone();
                async move { Ok::<_, Infallible>(h(req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
