//! Scenario 3, resource exhaustion: an `orders` API in the demo calls a `db` service that runs
//! as its own process (`chaosforge demo-service db`), pinned to one CPU and doing a fixed amount
//! of real CPU work (SHA-256 rounds) per query on one executor thread, as a small database
//! does. The `cpu` fault targets that process: its workers are pinned to the same CPU, so the
//! contention lands on the database and not on the runner that measures it. Queries then take
//! longer and, once they take longer than the time between them, queue up.
//!
//! The resilient API waits at most [`QUERY_TIMEOUT`], keeps at most one query in flight (a
//! bulkhead: a query that timed out still holds its slot until the database answers, so the
//! backlog cannot grow) and answers from the last result meanwhile; the naive one waits.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use hyper::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::serve::{client, listen, respond, serve};
use super::{Expect, Scenario, Variant};

/// The bundled experiment; its port and pid are replaced with the real ones at start.
pub(crate) const EXPERIMENT: &str = include_str!("../../../../examples/demo-db-cpu.yaml");

/// The CPU time one query costs the database when it has its CPU to itself.
pub(crate) const QUERY_WORK: Duration = Duration::from_millis(20);

/// How long the resilient API waits for the database.
const QUERY_TIMEOUT: Duration = Duration::from_millis(60);

/// How long the database process may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Scenario 3 ready to run, or why it cannot run here.
pub(crate) enum Prepared {
    /// The scenario, and the database process (killed when dropped).
    Ready(Scenario, Box<tokio::process::Child>),
    /// Why not (no root, no cgroups): said, not an error.
    Skip(String),
}

/// Checks what the `cpu` fault needs, starts the database process and, per variant, an API and
/// the experiment text aimed at them.
pub(super) async fn prepare() -> anyhow::Result<Prepared> {
    if let Err(why) = chaosforge::fault::stress::cpu_stress_possible() {
        return Ok(Prepared::Skip(format!(
            "CPU stress needs {why}; run the demo as root on a machine with cgroups to see it"
        )));
    }
    // The database gets the last CPU this process may use, the runner keeps the others.
    let cpus = own_cpus();
    let cpu = cpus.last().copied();
    let (child, db, pid) = start_db(cpu).await?;
    match cpu {
        Some(c) if cpus.len() > 1 => println!(
            "demo: db service (pid {pid}) on {db}, pinned to CPU {c} of {}",
            cpus.len()
        ),
        _ => println!("demo: db service (pid {pid}) on {db}, one CPU: everything shares it"),
    }
    let mut variants = Vec::new();
    for resilient in [true, false] {
        let api = start_api(resilient, db).await?;
        // As a deployment's readiness check would: one order, which also fills the cache.
        client()?
            .get(format!("http://{api}/orders"))
            .timeout(START_TIMEOUT)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .context("the demo orders API is not answering")?;
        let (label, slug, expect) = if resilient {
            (
                "API with timeout + cache + bulkhead",
                "resilient",
                Expect::Confirmed,
            )
        } else {
            ("API that waits for the database", "naive", Expect::Refuted)
        };
        let text = EXPERIMENT
            .replace("pid: 4242", &format!("pid: {pid}"))
            .replace("127.0.0.1:18070", &api.to_string())
            .replace(
                "name: orders-survive-a-busy-database",
                &format!("name: orders-survive-a-busy-database-{slug}"),
            );
        variants.push(Variant {
            label: format!("{label} (API {api}, db {db})"),
            short: label,
            file: format!("demo:db-cpu-{slug}.yaml"),
            text,
            expect,
        });
    }
    Ok(Prepared::Ready(
        Scenario {
            variants,
            note: "the timeout, cache and bulkhead keep orders fast while the database is starved of CPU",
        },
        Box::new(child),
    ))
}

/// The CPUs this thread may run on.
fn own_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Starts `chaosforge demo-service db` and waits for the address it listens on.
async fn start_db(cpu: Option<usize>) -> anyhow::Result<(tokio::process::Child, SocketAddr, u32)> {
    let exe = std::env::current_exe().context("finding the chaosforge binary")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["demo-service", "db", "--port", "0"]);
    if let Some(c) = cpu {
        cmd.args(["--cpu", &c.to_string()]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the demo db service")?;
    let pid = child.id().context("the demo db service exited at once")?;
    let stdout = child
        .stdout
        .take()
        .context("the db service has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
        .await
        .context("the demo db service did not start listening in time")?
        .context("reading the demo db service's address")?
        .context("the demo db service exited before listening")?;
    let addr = line
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("the demo db service said {line:?}, not `listening ADDR`"))?;
    // Keep draining its stdout so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, addr, pid))
}

async fn start_api(resilient: bool, db: SocketAddr) -> anyhow::Result<SocketAddr> {
    let (listener, addr) = listen("orders API").await?;
    let client = client()?;
    let url = format!("http://{db}/query");
    let cache = Arc::new(Mutex::new(None::<String>));
    let slot = Arc::new(Semaphore::new(1));
    tokio::spawn(serve(listener, move |_req| {
        let (client, url, cache, slot) = (client.clone(), url.clone(), cache.clone(), slot.clone());
        async move {
            let query = {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let r = client.get(&url).send().await?.error_for_status()?;
                    r.text().await
                }
            };
            if !resilient {
                return match query.await {
                    Ok(rows) => respond(StatusCode::OK, &format!(r#"{{"orders":{rows}}}"#)),
                    Err(e) => respond(
                        StatusCode::BAD_GATEWAY,
                        &format!(
                            r#"{{"error":{}}}"#,
                            serde_json::Value::String(e.to_string())
                        ),
                    ),
                };
            }
            let cached = || {
                let c = cache.lock().unwrap_or_else(|p| p.into_inner()).clone();
                c.map(|rows| {
                    respond(
                        StatusCode::OK,
                        &format!(r#"{{"orders":{rows},"cached":true}}"#),
                    )
                })
            };
            // Bulkhead: with a query already in flight, answer from the cache at once.
            let Ok(permit) = slot.try_acquire_owned() else {
                return cached().unwrap_or_else(|| {
                    respond(
                        StatusCode::SERVICE_UNAVAILABLE,
                        r#"{"error":"database busy"}"#,
                    )
                });
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            let fill = cache.clone();
            // The query runs on, holding the slot, even when this request stops waiting.
            tokio::spawn(async move {
                let r = query.await;
                drop(permit);
                if let Ok(rows) = &r {
                    *fill.lock().unwrap_or_else(|p| p.into_inner()) = Some(rows.clone());
                }
                let _ = tx.send(r);
            });
            let mut rx = rx;
            let answer = match tokio::time::timeout(QUERY_TIMEOUT, &mut rx).await {
                Ok(r) => r,
                Err(_) => match cached() {
                    Some(stale) => return stale,
                    // Nothing to fall back on yet: waiting is all that is left.
                    None => rx.await,
                },
            };
            match answer {
                Ok(Ok(rows)) => respond(StatusCode::OK, &format!(r#"{{"orders":{rows}}}"#)),
                _ => cached().unwrap_or_else(|| {
                    respond(
                        StatusCode::BAD_GATEWAY,
                        r#"{"error":"database query failed"}"#,
                    )
                }),
            }
        }
    }));
    Ok(addr)
}

/// `chaosforge demo-service db`: the demo's database, until killed. Prints `listening ADDR`
/// once it accepts queries. With `cpu`, it runs on that CPU only.
pub(crate) async fn serve_db(port: u16, cpu: Option<usize>) -> anyhow::Result<u8> {
    // Never outlive the demo that started this process, even if it is SIGKILLed.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
        .context("setting the parent-death signal")?;
    if let Some(c) = cpu {
        // The main thread first: the `cpu` fault reads the process's affinity from it, and
        // the executor thread spawned below inherits it.
        let mut set = rustix::thread::CpuSet::new();
        set.set(c);
        rustix::thread::sched_setaffinity(None, &set)
            .with_context(|| format!("pinning the db service to CPU {c}"))?;
    }
    let rounds = calibrate();
    let (jobs, queue) = std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<String>>();
    std::thread::Builder::new()
        .name("db-executor".into())
        .spawn(move || {
            // One query at a time, in arrival order, as a database with one worker runs them.
            let mut n: u64 = 0;
            while let Ok(reply) = queue.recv() {
                n += 1;
                let digest = work(rounds, n);
                let _ = reply.send(format!(r#"{{"query":{n},"digest":"{digest}"}}"#));
            }
        })
        .context("starting the db executor thread")?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    println!("listening {}", listener.local_addr()?);
    let jobs = Arc::new(Mutex::new(jobs));
    serve(listener, move |_req| {
        let jobs = jobs.clone();
        async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let sent = jobs.lock().unwrap_or_else(|p| p.into_inner()).send(tx);
            match (sent, rx.await) {
                (Ok(()), Ok(rows)) => respond(StatusCode::OK, &rows),
                _ => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"error":"executor gone"}"#,
                ),
            }
        }
    })
    .await;
    Ok(0)
}

/// SHA-256 rounds per query: [`QUERY_WORK`] at the fastest rate measured over a few short
/// batches, so that a busy moment while calibrating does not shrink the work much.
fn calibrate() -> u64 {
    const BATCH: u64 = 200;
    let mut best = Duration::MAX;
    for i in 0..20 {
        let t = Instant::now();
        std::hint::black_box(work(BATCH, i));
        best = best.min(t.elapsed());
    }
    let per_round = best.as_secs_f64() / BATCH as f64;
    ((QUERY_WORK.as_secs_f64() / per_round.max(1e-9)) as u64).max(1)
}

/// `rounds` chained SHA-256 digests of a 1 KiB block: CPU work that cannot be skipped.
fn work(rounds: u64, seed: u64) -> String {
    use aws_lc_rs::digest::{SHA256, digest};
    let mut block = [0u8; 1024];
    block[..8].copy_from_slice(&seed.to_le_bytes());
    for _ in 0..rounds {
        let d = digest(&SHA256, &block);
        block[..32].copy_from_slice(d.as_ref());
    }
    block[..8].iter().map(|b| format!("{b:02x}")).collect()
}
