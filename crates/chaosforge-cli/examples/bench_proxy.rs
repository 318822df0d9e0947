//! Load generator for `scripts/bench-proxy`: measures, in one run and side by side, a direct
//! loopback connection, `chaosforge proxy` with no toxic, and with a 0 ms latency toxic.
//!
//! `cargo run --release -p chaosforge-cli --example bench_proxy -- --chaosforge target/release/chaosforge`
//!
//! Figures: bulk throughput of one connection (one way, 512 MiB by default), 1-byte ping-pong
//! round trip (p50/p99), 1000 concurrent ping-pong connections (round trips/s, proxy RSS), and the
//! proxy's RSS holding 10 000 idle connections. Loopback only; every loop is bounded.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Args {
    chaosforge: String,
    bulk_mib: usize,
    pings: usize,
    conns: usize,
    idle: usize,
    secs: u64,
}

fn args() -> Args {
    let mut a = Args {
        chaosforge: "target/release/chaosforge".into(),
        bulk_mib: 512,
        pings: 20_000,
        conns: 1000,
        idle: 10_000,
        secs: 5,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    for w in v.chunks(2) {
        let val = w.get(1).cloned().unwrap_or_default();
        match w[0].as_str() {
            "--chaosforge" => a.chaosforge = val,
            "--bulk-mib" => a.bulk_mib = val.parse().unwrap(),
            "--pings" => a.pings = val.parse().unwrap(),
            "--conns" => a.conns = val.parse().unwrap(),
            "--idle" => a.idle = val.parse().unwrap(),
            "--secs" => a.secs = val.parse().unwrap(),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// Echo (ping-pong) and sink (bulk) servers on loopback, on their own runtime.
fn servers() -> (SocketAddr, SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        rt.block_on(async move {
            let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send((echo.local_addr().unwrap(), sink.local_addr().unwrap()))
                .unwrap();
            tokio::spawn(async move {
                while let Ok((mut s, _)) = sink.accept().await {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 256 * 1024];
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                        }
                        let _ = s.write_all(b"k").await;
                    });
                }
            });
            while let Ok((s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let _ = s.set_nodelay(true);
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

/// A `chaosforge proxy` process with proxies `echo` and `sink`.
struct ProxyProc {
    child: Child,
    api: SocketAddr,
}

impl ProxyProc {
    fn start(bin: &str, echo: SocketAddr, sink: SocketAddr) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args(["proxy", "--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let api: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        for _ in 0..200 {
            if TcpStream::connect(api).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let p = ProxyProc { child, api };
        for (name, up) in [("echo", echo), ("sink", sink)] {
            let body = format!(r#"{{"name":"{name}","listen":"127.0.0.1:0","upstream":"{up}"}}"#);
            let (status, _) = p.http("POST", "/proxies", &body);
            assert_eq!(status, 201, "creating proxy {name}");
        }
        p
    }

    fn listen(&self, name: &str) -> SocketAddr {
        let (_, body) = self.http("GET", &format!("/proxies/{name}"), "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["listen"].as_str().unwrap().parse().unwrap()
    }

    fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.api).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bulk(addr: SocketAddr, mib: usize) -> f64 {
    let mut s = TcpStream::connect(addr).unwrap();
    let chunk = vec![7u8; 1024 * 1024];
    let start = Instant::now();
    for _ in 0..mib {
        s.write_all(&chunk).unwrap();
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).unwrap();
    (mib as f64 * 1024.0 * 1024.0) / start.elapsed().as_secs_f64() / 1e9
}

fn pingpong(addr: SocketAddr, n: usize) -> (f64, f64) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut rtts = Vec::with_capacity(n);
    let mut b = [0u8; 1];
    for i in 0..n + 200 {
        let t = Instant::now();
        s.write_all(&[1]).unwrap();
        s.read_exact(&mut b).unwrap();
        if i >= 200 {
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    rtts.sort_by(f64::total_cmp);
    (rtts[n / 2], rtts[n * 99 / 100])
}

async fn concurrent(addr: SocketAddr, conns: usize, secs: u64) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..conns {
        set.spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut n = 0u64;
            let mut b = [0u8; 1];
            while tokio::time::Instant::now() < deadline {
                s.write_all(&[1]).await.unwrap();
                s.read_exact(&mut b).await.unwrap();
                n += 1;
            }
            n
        });
    }
    let mut total = 0;
    while let Some(n) = set.join_next().await {
        total += n.unwrap();
    }
    total as f64 / secs as f64
}

fn main() {
    let a = args();
    let (echo, sink) = servers();
    let proxy = ProxyProc::start(&a.chaosforge, echo, sink);
    let (pecho, psink) = (proxy.listen("echo"), proxy.listen("sink"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let rss0 = proxy.rss_mib();

    let mut rows = Vec::new();
    for (label, e, s, toxic) in [
        ("direct", echo, sink, false),
        ("proxy", pecho, psink, false),
        ("proxy+0ms latency", pecho, psink, true),
    ] {
        if toxic {
            for name in ["echo", "sink"] {
                let body = r#"{"name":"zero","type":"latency","stream":"downstream","attributes":{"latency":0}}"#;
                assert_eq!(
                    proxy
                        .http("POST", &format!("/proxies/{name}/toxics"), body)
                        .0,
                    200
                );
                let body = r#"{"name":"zero_up","type":"latency","stream":"upstream","attributes":{"latency":0}}"#;
                assert_eq!(
                    proxy
                        .http("POST", &format!("/proxies/{name}/toxics"), body)
                        .0,
                    200
                );
            }
        }
        let gbps = bulk(s, a.bulk_mib);
        let (p50, p99) = pingpong(e, a.pings);
        let rps = rt.block_on(concurrent(e, a.conns, a.secs));
        let rss = if label == "direct" {
            0.0
        } else {
            proxy.rss_mib()
        };
        println!(
            "{label:<18} bulk {gbps:6.2} GB/s   rtt p50 {p50:6.1} µs p99 {p99:6.1} µs   {} conns {rps:9.0} rt/s   proxy RSS {rss:5.1} MiB",
            a.conns
        );
        rows.push((label, gbps, p50, rps));
    }
    let (d, p, t) = (rows[0], rows[1], rows[2]);
    println!();
    println!(
        "proxy / direct:         throughput {:.2}x, added rtt p50 {:+.1} µs, concurrent {:.2}x",
        p.1 / d.1,
        p.2 - d.2,
        p.3 / d.3
    );
    println!(
        "proxy+toxic / direct:   throughput {:.2}x, added rtt p50 {:+.1} µs, concurrent {:.2}x",
        t.1 / d.1,
        t.2 - d.2,
        t.3 / d.3
    );

    // Rows for scripts/bench's one table, when it asks (BENCH_TSV=FILE).
    if let Ok(path) = std::env::var("BENCH_TSV") {
        use std::io::Write as _;
        let conns = a.conns;
        let lines = [
            format!(
                "tcp\tbulk, one connection\tGB/s\thigher\tdirect\t{}\tchaosforge\t{}\tchaosforge+0ms latency\t{}\n",
                d.1, p.1, t.1
            ),
            format!(
                "tcp\t1-byte round trip p50\tus\tlower\tdirect\t{}\tchaosforge\t{}\tchaosforge+0ms latency\t{}\n",
                d.2, p.2, t.2
            ),
            format!(
                "tcp\t{conns} concurrent ping-pong connections\tconn-rtt/s\thigher\tdirect\t{}\tchaosforge\t{}\tchaosforge+0ms latency\t{}\n",
                d.3, p.3, t.3
            ),
        ];
        match std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
        {
            Ok(mut f) => {
                for l in lines {
                    let _ = f.write_all(l.as_bytes());
                }
            }
            Err(e) => eprintln!("BENCH_TSV={path}: {e}"),
        }
    }

    // Idle connections: hold them open and read the proxy's RSS.
    let before = proxy.rss_mib();
    let mut held = Vec::with_capacity(a.idle);
    for _ in 0..a.idle {
        match TcpStream::connect(pecho) {
            Ok(s) => held.push(s),
            Err(e) => {
                println!(
                    "stopped opening idle connections at {}: {e} (raise `ulimit -n`)",
                    held.len()
                );
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "idle: {} connections held, proxy RSS {:.1} MiB (before {:.1} MiB, at start {:.1} MiB)",
        held.len(),
        proxy.rss_mib(),
        before,
        rss0
    );
}
