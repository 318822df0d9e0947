//! Pass-through overhead of the HTTP fault proxy (a benchmark, never a test): the same
//! client sends the same requests to a local upstream directly, then through an
//! [`HttpProxy`] with no fault, in one run; prints requests/s, p50 and p99 of each and the
//! ratio. Loopback only: the upstream and the proxy are started here, on 127.0.0.1.
//!
//! Usage: `cargo run --release -p chaosforge-proxy --example bench_http -- --requests 20000
//! [--concurrency 8] [--body 64]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chaosforge_proxy::http::{HttpProxy, HttpProxyConfig, Upstream};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// What one pass measured.
struct Run {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

#[tokio::main]
async fn main() {
    let mut requests = 20_000usize;
    let mut concurrency = 8usize;
    let mut body = 64usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage(&flag));
        let parsed: usize = value.parse().unwrap_or_else(|_| usage(&flag));
        match flag.as_str() {
            "--requests" => requests = parsed.max(1),
            "--concurrency" => concurrency = parsed.max(1),
            "--body" => body = parsed,
            _ => usage(&flag),
        }
    }

    let upstream = start_upstream(body).await;
    let proxy = HttpProxy::start(HttpProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: Upstream::new(format!("http://{upstream}").parse().unwrap()),
        mitm: None,
        seed: 1,
    })
    .await
    .expect("start the proxy");

    // One client for both passes: same pool settings, same connection reuse.
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(http);

    let direct_url = format!("http://{upstream}/bench");
    let proxied_url = format!("http://{}/bench", proxy.local_addr());
    // Warm both paths (connections, allocator) before measuring.
    run(&client, &direct_url, requests.min(1000), concurrency).await;
    run(&client, &proxied_url, requests.min(1000), concurrency).await;

    let direct = run(&client, &direct_url, requests, concurrency).await;
    let proxied = run(&client, &proxied_url, requests, concurrency).await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{requests} GETs, {concurrency} concurrent, {body}-byte answers, HTTP/1.1 keep-alive");
    for (name, r) in [("direct ", &direct), ("proxied", &proxied)] {
        println!(
            "{name}: {:>9.0} req/s   p50 {:.3} ms   p99 {:.3} ms",
            r.per_second,
            ms(r.p50),
            ms(r.p99)
        );
    }
    println!(
        "ratio  : proxied/direct req/s {:.2}; added p50 {:+.3} ms, p99 {:+.3} ms",
        proxied.per_second / direct.per_second,
        ms(proxied.p50) - ms(direct.p50),
        ms(proxied.p99) - ms(direct.p99)
    );
    let stats = proxy.stats();
    assert_eq!(stats.upstream_errors, 0, "the proxy answered 502s");
    proxy.shutdown().await;
}

fn usage(flag: &str) -> ! {
    eprintln!(
        "bad argument {flag}; usage: bench_http [--requests N] [--concurrency N] [--body BYTES]"
    );
    std::process::exit(2);
}

/// `requests` GETs of `url` from `concurrency` workers sharing `client`.
async fn run(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &str,
    requests: usize,
    concurrency: usize,
) -> Run {
    let uri: hyper::Uri = url.parse().unwrap();
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        // Spread the requests evenly; the first workers take the remainder.
        let share = requests / concurrency + usize::from(w < requests % concurrency);
        let client = client.clone();
        let uri = uri.clone();
        workers.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(share);
            for _ in 0..share {
                let t = Instant::now();
                let response = client
                    .request(Request::get(uri.clone()).body(Empty::new()).unwrap())
                    .await
                    .expect("request");
                assert!(response.status().is_success(), "{}", response.status());
                response.into_body().collect().await.expect("body");
                times.push(t.elapsed());
            }
            times
        }));
    }
    let mut times = Vec::with_capacity(requests);
    for worker in workers {
        times.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    Run {
        per_second: requests as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// An HTTP/1.1 upstream on 127.0.0.1 that answers every request with `size` bytes.
async fn start_upstream(size: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let payload = Bytes::from(vec![b'x'; size]);
    let payload = Arc::new(payload);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let payload = payload.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let body = Full::new(Bytes::clone(&payload));
                    async move { Ok::<_, Infallible>(Response::new(body)) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}
