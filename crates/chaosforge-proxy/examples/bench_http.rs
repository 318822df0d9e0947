//! Pass-through cost of the HTTP fault proxy (a benchmark, never a test), driven by
//! `scripts/bench-http`, which compares direct requests, chaosforge and nginx side by side
//! with one load generator (wrk, or the `load` mode here). Loopback only.
//!
//! - `bench_http serve [--body 64]`: starts a minimal hyper HTTP/1.1 upstream answering every
//!   request with `--body` bytes, and an [`HttpProxy`] with no fault in front of it, each on
//!   its own multi-thread runtime (as a system under test and the runner would be); prints
//!   `upstream=ADDR proxy=ADDR` on one line, then serves until killed. On SIGTERM or SIGINT
//!   it prints the proxy's counters to stderr, so the script can check none was lost.
//! - `bench_http load --url http://ADDR/path [--concurrency 8] [--secs 5]`: keep-alive GETs
//!   from `--concurrency` connections (one request in flight each, like wrk) for `--secs`;
//!   prints `rps=… p50_us=… p99_us=… errors=…`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use chaosforge_proxy::http::{HttpProxy, HttpProxyConfig, Upstream};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, Uri, header};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| usage("a mode"));
    let mut body = 64usize;
    let mut url = None;
    let mut concurrency = 8usize;
    let mut secs = 5u64;
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage(&flag));
        let number = || value.parse::<u64>().unwrap_or_else(|_| usage(&flag));
        match flag.as_str() {
            "--body" => body = number() as usize,
            "--concurrency" => concurrency = number().max(1) as usize,
            "--secs" => secs = number().max(1),
            "--url" => url = Some(value.parse::<Uri>().unwrap_or_else(|_| usage(&flag))),
            _ => usage(&flag),
        }
    }
    match mode.as_str() {
        "serve" => serve(body),
        "load" => {
            let url = url.unwrap_or_else(|| usage("--url"));
            load(url, concurrency, Duration::from_secs(secs));
        }
        _ => usage(&mode),
    }
}

fn usage(what: &str) -> ! {
    eprintln!(
        "bad or missing {what}; usage: bench_http serve [--body BYTES] | \
         bench_http load --url URL [--concurrency N] [--secs S]"
    );
    std::process::exit(2);
}

fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

fn serve(size: usize) {
    let upstream_rt = runtime("upstream");
    let upstream = upstream_rt.block_on(start_upstream(size));
    let proxy_rt = runtime("chaosforge");
    proxy_rt.block_on(async move {
        let proxy = HttpProxy::start(HttpProxyConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream: Upstream::new(format!("http://{upstream}").parse().unwrap()),
            mitm: None,
            seed: 1,
        })
        .await
        .expect("start the proxy");
        println!("upstream={upstream} proxy={}", proxy.local_addr());
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let stats = proxy.stats();
        eprintln!(
            "proxy: {} requests, {} connections, {} upstream errors",
            stats.requests, stats.connections, stats.upstream_errors
        );
        proxy.shutdown().await;
    });
}

/// An HTTP/1.1 upstream on 127.0.0.1 that answers every request with `size` bytes.
async fn start_upstream(size: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let payload = Bytes::from(vec![b'x'; size]);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let payload = payload.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let body = Full::new(payload.clone());
                    async move { Ok::<_, Infallible>(Response::new(body)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn load(url: Uri, concurrency: usize, secs: Duration) {
    let rt = runtime("load");
    let (times, errors, elapsed) = rt.block_on(async move {
        let authority = url.authority().expect("url with host:port").clone();
        let addr: SocketAddr = authority.as_str().parse().expect("url with ip:port");
        let path = url.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let started = Instant::now();
        let deadline = started + secs;
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let path = path.clone();
            let host = authority.to_string();
            workers.push(tokio::spawn(async move {
                let mut times = Vec::new();
                let mut errors = 0u64;
                let stream = TcpStream::connect(addr).await.expect("connect");
                stream.set_nodelay(true).unwrap();
                let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("handshake");
                tokio::spawn(conn);
                while Instant::now() < deadline {
                    if send.ready().await.is_err() {
                        errors += 1;
                        break;
                    }
                    let request = Request::get(path.as_str())
                        .header(header::HOST, host.as_str())
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    let t = Instant::now();
                    match send.send_request(request).await {
                        Ok(response) => {
                            let ok = response.status().is_success();
                            let body = response.into_body().collect().await;
                            if ok && body.is_ok() {
                                times.push(t.elapsed());
                            } else {
                                errors += 1;
                            }
                        }
                        Err(_) => errors += 1,
                    }
                }
                (times, errors)
            }));
        }
        let mut times = Vec::new();
        let mut errors = 0;
        for worker in workers {
            let (t, e) = worker.await.unwrap();
            times.extend(t);
            errors += e;
        }
        (times, errors, started.elapsed())
    });
    let mut times = times;
    times.sort();
    let at = |q: f64| {
        times
            .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    println!(
        "rps={:.0} p50_us={:.1} p99_us={:.1} errors={errors}",
        times.len() as f64 / elapsed.as_secs_f64(),
        at(0.50),
        at(0.99)
    );
}
