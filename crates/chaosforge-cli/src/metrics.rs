//! `chaosforge run --metrics-listen ADDR`: the run's live state as Prometheus metrics at
//! `http://ADDR/metrics`, in the OpenMetrics text format (prometheus-client), so a dashboard can
//! draw the experiment next to the system it is hurting.
//!
//! Everything is fed from the engine's [`Progress`] callback; the journal stays the record and
//! this is a view of it. Metrics (all series exist from the first scrape, at 0, so `rate()` and
//! `changes()` see the first step):
//!
//! - `chaosforge_run_info{experiment}`: 1, the experiment being run.
//! - `chaosforge_phase{phase}`: 1 for the current phase, 0 for the others (all 0 before the run
//!   and after it ends).
//! - `chaosforge_fault_active{fault,kind,target}`: 1 from injection until a successful revert (a
//!   failed revert leaves it at 1: the fault may still be in effect; `chaosforge recover` is then
//!   due).
//! - `chaosforge_monitor_samples_total{monitor}`, `chaosforge_monitor_failures_total{monitor}`:
//!   samples recorded and those that failed their probe.
//! - `chaosforge_monitor_latency_seconds{monitor}`: a histogram of sample latencies, buckets from
//!   1 ms to 10 s in 1–2.5–5 steps.
//! - `chaosforge_last_run_outcome{outcome}`: 1 for how the run ended (`confirmed`, `refuted`,
//!   `not_steady`, `halted`, `errored`), 0 for the others, all 0 while it runs.
//! - `chaosforge_last_run_finished_timestamp_seconds`: when it ended (Unix time), 0 before.
//!
//! After the outcome the server keeps answering until one scrape has read it (its response was
//! written and the connection closed) or `--metrics-grace` passes (15 s by default, the usual
//! scrape interval), whichever comes first; a signal ends the wait at once.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use bytes::Bytes;
use chaosforge::engine::{Outcome, Phase, Progress};
use chaosforge::journal::FaultId;
use chaosforge::plan::Plan;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// The `run` options of the metrics endpoint.
#[derive(Debug, clap::Args)]
pub(crate) struct MetricsArgs {
    /// Serve the run's phase, faults, samples, latencies and outcome as Prometheus metrics at
    /// http://ADDR/metrics while it runs (port 0: a free port, printed on stderr)
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// After the outcome, keep serving /metrics until one scrape has read it, at most this long
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "15s",
        value_parser = chaosforge::units::parse_duration,
        requires = "metrics_listen"
    )]
    metrics_grace: Duration,
}

/// The metrics of one run, updated from [`Progress`] events; shared by the engine's callback and
/// the HTTP server.
pub(crate) struct Metrics {
    registry: Registry,
    phase: Family<PhaseLabels, Gauge>,
    faults: Family<FaultLabels, Gauge>,
    /// Each injected fault's labels by id: a `Reverted` event carries only the id.
    injected: Mutex<BTreeMap<u32, FaultLabels>>,
    samples: Family<MonitorLabels, Counter>,
    failures: Family<MonitorLabels, Counter>,
    latency: Family<MonitorLabels, Histogram, fn() -> Histogram>,
    outcome: Family<OutcomeLabels, Gauge>,
    finished_at: Gauge<f64, AtomicU64>,
    /// Set once the outcome gauges are: a scrape that reads it `true` first sees the outcome.
    finished: AtomicBool,
}

/// The endpoint of a run: the listener's task and what it serves.
pub(crate) struct Server {
    metrics: Arc<Metrics>,
    addr: SocketAddr,
    grace: Duration,
    /// Notified when a connection that served the outcome is done.
    scraped: Arc<Notify>,
    task: JoinHandle<()>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    experiment: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabels {
    fault: String,
    kind: String,
    target: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MonitorLabels {
    monitor: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

const PHASES: [Phase; 5] = [
    Phase::Validate,
    Phase::Baseline,
    Phase::Inject,
    Phase::Observe,
    Phase::Recover,
];

const OUTCOMES: [&str; 5] = ["confirmed", "refuted", "not_steady", "halted", "errored"];

/// 1 ms to 10 s: a loopback TCP connect is well under the first bucket's bound, a probe timing
/// out at its default lands in the last ones.
const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What Prometheus asks for and prometheus-client writes (DEPENDENCIES.md trap 15).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

// === impl Metrics ===

impl Metrics {
    /// Every metric registered, with a series at 0 for each phase, outcome, planned fault
    /// instance and monitor of `plan`.
    pub(crate) fn new(plan: &Plan) -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            phase: Family::default(),
            faults: Family::default(),
            injected: Mutex::new(BTreeMap::new()),
            samples: Family::default(),
            failures: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            outcome: Family::default(),
            finished_at: Gauge::default(),
            finished: AtomicBool::new(false),
        };
        let mut r = Registry::default();
        r.register(
            "chaosforge_run",
            "The experiment this chaosforge run executes",
            Info::new(RunLabels {
                experiment: plan.name.clone(),
            }),
        );
        r.register(
            "chaosforge_phase",
            "1 for the phase the run is in, 0 for the others",
            m.phase.clone(),
        );
        r.register(
            "chaosforge_fault_active",
            "1 while a fault instance is injected on a target, until it is reverted",
            m.faults.clone(),
        );
        r.register(
            "chaosforge_monitor_samples",
            "Samples a monitor recorded",
            m.samples.clone(),
        );
        r.register(
            "chaosforge_monitor_failures",
            "Samples a monitor recorded that failed their probe",
            m.failures.clone(),
        );
        r.register(
            "chaosforge_monitor_latency_seconds",
            "How long a monitor's samples took, success or failure",
            m.latency.clone(),
        );
        r.register(
            "chaosforge_last_run_outcome",
            "1 for how the run ended, 0 for the other outcomes; all 0 while it runs",
            m.outcome.clone(),
        );
        r.register(
            "chaosforge_last_run_finished_timestamp_seconds",
            "When the run ended, in seconds since the Unix epoch; 0 while it runs",
            m.finished_at.clone(),
        );
        for p in PHASES {
            m.phase.get_or_create(&phase_labels(p)).set(0);
        }
        for f in &plan.faults {
            for t in &f.targets {
                m.faults
                    .get_or_create(&FaultLabels {
                        fault: f.name.clone(),
                        kind: f.kind.name().to_string(),
                        target: t.clone(),
                    })
                    .set(0);
            }
        }
        for mon in &plan.monitors {
            let l = MonitorLabels {
                monitor: mon.name.clone(),
            };
            // Created, not changed: the guards are dropped at once.
            let _ = m.samples.get_or_create(&l);
            let _ = m.failures.get_or_create(&l);
            let _ = m.latency.get_or_create(&l);
        }
        for o in OUTCOMES {
            m.outcome
                .get_or_create(&OutcomeLabels { outcome: o })
                .set(0);
        }
        Metrics { registry: r, ..m }
    }

    /// Applies one engine event. Called on the engine's task, so it only touches atomics (and
    /// the small fault map).
    pub(crate) fn update(&self, p: &Progress) {
        match p {
            Progress::Phase { phase, .. } => self.enter(Some(*phase)),
            Progress::Injected {
                id,
                name,
                target,
                kind,
            } => {
                let labels = FaultLabels {
                    fault: name.clone(),
                    kind: kind.clone(),
                    target: target.clone(),
                };
                self.faults.get_or_create(&labels).inc();
                self.injected().insert(id.0, labels);
            }
            Progress::Reverted {
                id, error: None, ..
            } => self.reverted(*id),
            // Not reverted: the fault may still act, so the gauge says so.
            Progress::Reverted { error: Some(_), .. } => {}
            Progress::Sample {
                monitor,
                ok,
                latency,
                ..
            } => {
                let l = MonitorLabels {
                    monitor: monitor.clone(),
                };
                self.samples.get_or_create(&l).inc();
                if !ok {
                    self.failures.get_or_create(&l).inc();
                }
                self.latency
                    .get_or_create(&l)
                    .observe(latency.as_secs_f64());
            }
            _ => {}
        }
    }

    /// Records how the run ended (`None`: it could not even keep a journal).
    pub(crate) fn finish(&self, outcome: Option<&Outcome>) {
        let word = match outcome {
            Some(Outcome::Confirmed) => "confirmed",
            Some(Outcome::Refuted { .. }) => "refuted",
            Some(Outcome::NotSteady { .. }) => "not_steady",
            Some(Outcome::Halted { .. }) => "halted",
            Some(Outcome::Errored { .. }) | None => "errored",
        };
        self.enter(None);
        for o in OUTCOMES {
            self.outcome
                .get_or_create(&OutcomeLabels { outcome: o })
                .set(i64::from(o == word));
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.finished_at.set(now.as_secs_f64());
        self.finished.store(true, Ordering::Release);
    }

    /// The OpenMetrics text of every metric.
    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    fn enter(&self, current: Option<Phase>) {
        // The old phase goes to 0 before the new one turns 1, so no scrape sees two current
        // phases (one may see none, for an instant).
        for p in PHASES {
            if Some(p) != current {
                self.phase.get_or_create(&phase_labels(p)).set(0);
            }
        }
        if let Some(p) = current {
            self.phase.get_or_create(&phase_labels(p)).set(1);
        }
    }

    fn reverted(&self, id: FaultId) {
        if let Some(labels) = self.injected().remove(&id.0) {
            self.faults.get_or_create(&labels).dec();
        }
    }

    fn injected(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, FaultLabels>> {
        // The map holds plain data; a panic elsewhere cannot leave it half-written.
        self.injected.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// === impl Server ===

impl Server {
    /// Binds the listener (before the run starts, so a port in use is an error, not a run
    /// without metrics) and serves `/metrics` on a task. `None` without `--metrics-listen`.
    pub(crate) async fn start(args: &MetricsArgs, plan: &Plan) -> anyhow::Result<Option<Server>> {
        let Some(addr) = args.metrics_listen else {
            return Ok(None);
        };
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics-listen: cannot listen on {addr}"))?;
        let addr = listener.local_addr().context("--metrics-listen")?;
        eprintln!("metrics: serving http://{addr}/metrics");
        let metrics = Arc::new(Metrics::new(plan));
        let scraped = Arc::new(Notify::new());
        let task = tokio::spawn(accept(listener, metrics.clone(), scraped.clone()));
        Ok(Some(Server {
            metrics,
            addr,
            grace: args.metrics_grace,
            scraped,
            task,
        }))
    }

    /// What the engine's progress callback feeds.
    pub(crate) fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Serves on after the outcome until one scrape has read it, `--metrics-grace` passes, or
    /// `shutdown` turns true (a run halted by a signal skips the wait: the user wants out).
    pub(crate) async fn linger(self, mut shutdown: watch::Receiver<bool>) {
        if !self.grace.is_zero() && !*shutdown.borrow() {
            eprintln!(
                "metrics: the outcome is at http://{}/metrics until it is scraped (at most {})",
                self.addr,
                chaosforge::units::format_duration(self.grace)
            );
            let signalled = async {
                // A dropped sender can never signal: wait out the rest instead.
                if shutdown.wait_for(|s| *s).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = self.scraped.notified() => {}
                _ = tokio::time::sleep(self.grace) => {}
                _ = signalled => {}
            }
        }
        self.task.abort();
    }
}

/// Accepts scrapes until the task is aborted; one request per connection (see [`serve`]).
async fn accept(listener: TcpListener, metrics: Arc<Metrics>, scraped: Arc<Notify>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: the run matters more than its metrics, so wait and
                // go on rather than end the listener.
                tracing::warn!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(serve(stream, metrics.clone(), scraped.clone()));
    }
}

/// One connection, one response: without keep-alive the connection's future ends only after the
/// response is written, which is what tells [`Server::linger`] that the outcome went out.
async fn serve(stream: tokio::net::TcpStream, metrics: Arc<Metrics>, scraped: Arc<Notify>) {
    let served_outcome = Arc::new(AtomicBool::new(false));
    let flag = served_outcome.clone();
    let m = metrics.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let response = respond(&m, &req, &flag);
        async move { Ok::<_, Infallible>(response) }
    });
    let result = http1::Builder::new()
        .keep_alive(false)
        .timer(TokioTimer::new())
        // A client that never finishes its request must not hold a task for the whole run.
        .header_read_timeout(Duration::from_secs(5))
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = result {
        tracing::debug!("metrics: connection: {e}");
    } else if served_outcome.load(Ordering::Acquire) {
        scraped.notify_one();
    }
}

fn respond(
    metrics: &Metrics,
    req: &Request<Incoming>,
    served_outcome: &AtomicBool,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; the metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
    }
    // Read before encoding: `true` here means the outcome is in the text below.
    let finished = metrics.finished.load(Ordering::Acquire);
    match metrics.encode() {
        Ok(text) => {
            served_outcome.store(finished, Ordering::Release);
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
            r
        }
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded\n",
        ),
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn phase_labels(p: Phase) -> PhaseLabels {
    PhaseLabels {
        phase: match p {
            Phase::Validate => "validate",
            Phase::Baseline => "baseline",
            Phase::Inject => "inject",
            Phase::Observe => "observe",
            Phase::Recover => "recover",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let text = r#"apiVersion: chaosforge/v1
name: metrics-unit
targets: [{ name: victim, process: { pid: 4242 } }]
hypothesis:
  monitors: [{ name: port, tcp: { address: "127.0.0.1:9", interval: 100ms }, expect: ["availability >= 90%"] }]
faults: [{ name: stop, pause: {}, target: { select: { name: victim } } }]
phases: { baseline: 1s, inject: 1s, recover_within: 1s }
"#;
        let doc = chaosforge::source::Document::parse("unit.yaml", text).unwrap();
        let spec = chaosforge::de::decode(&doc).unwrap();
        chaosforge::plan::compile(&doc, &spec, None).unwrap()
    }

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .map(|l| &l[series.len() + 1..])
    }

    #[test]
    fn events_move_the_gauges_counters_and_outcome() {
        let m = Metrics::new(&plan());
        let t0 = m.encode().unwrap();
        // Every series is there before anything happened, at 0.
        assert_eq!(
            line(&t0, r#"chaosforge_phase{phase="baseline"}"#),
            Some("0")
        );
        let fault = r#"chaosforge_fault_active{fault="stop",kind="pause",target="victim"}"#;
        assert_eq!(line(&t0, fault), Some("0"));
        let samples = r#"chaosforge_monitor_samples_total{monitor="port"}"#;
        assert_eq!(line(&t0, samples), Some("0"));
        assert_eq!(
            line(&t0, r#"chaosforge_last_run_outcome{outcome="refuted"}"#),
            Some("0")
        );
        assert_eq!(
            line(&t0, r#"chaosforge_run_info{experiment="metrics-unit"}"#),
            Some("1")
        );

        m.update(&Progress::Phase {
            phase: Phase::Baseline,
            planned: None,
        });
        m.update(&Progress::Phase {
            phase: Phase::Observe,
            planned: None,
        });
        for (ok, ms) in [(true, 3), (false, 2000)] {
            m.update(&Progress::Sample {
                monitor: "port".into(),
                phase: Phase::Observe,
                ok,
                latency: Duration::from_millis(ms),
                sample: chaosforge::probe::Sample {
                    at: Duration::ZERO,
                    latency: Duration::from_millis(ms),
                    ok,
                    status: None,
                    error: None,
                    value: None,
                    resource: None,
                },
            });
        }
        m.update(&Progress::Injected {
            id: FaultId(0),
            name: "stop".into(),
            target: "victim".into(),
            kind: "pause".into(),
        });
        let t1 = m.encode().unwrap();
        assert_eq!(
            line(&t1, r#"chaosforge_phase{phase="baseline"}"#),
            Some("0")
        );
        assert_eq!(line(&t1, r#"chaosforge_phase{phase="observe"}"#), Some("1"));
        assert_eq!(line(&t1, fault), Some("1"));
        assert_eq!(line(&t1, samples), Some("2"));
        assert_eq!(
            line(&t1, r#"chaosforge_monitor_failures_total{monitor="port"}"#),
            Some("1")
        );
        // 3 ms lands in le=0.005, 2 s only from le=2.5 on.
        let bucket = |le: &str| {
            line(
                &t1,
                &format!(
                    r#"chaosforge_monitor_latency_seconds_bucket{{le="{le}",monitor="port"}}"#
                ),
            )
        };
        assert_eq!(bucket("0.0025"), Some("0"));
        assert_eq!(bucket("0.005"), Some("1"));
        assert_eq!(bucket("1.0"), Some("1"));
        assert_eq!(bucket("2.5"), Some("2"));

        m.update(&Progress::Reverted {
            id: FaultId(0),
            name: "f".into(),
            target: "t".into(),
            error: None,
        });
        m.finish(Some(&Outcome::Refuted { reasons: vec![] }));
        let t2 = m.encode().unwrap();
        assert_eq!(line(&t2, fault), Some("0"));
        assert_eq!(line(&t2, r#"chaosforge_phase{phase="observe"}"#), Some("0"));
        assert_eq!(
            line(&t2, r#"chaosforge_last_run_outcome{outcome="refuted"}"#),
            Some("1")
        );
        assert_eq!(
            line(&t2, r#"chaosforge_last_run_outcome{outcome="confirmed"}"#),
            Some("0")
        );
        let at: f64 = line(&t2, "chaosforge_last_run_finished_timestamp_seconds")
            .unwrap()
            .parse()
            .unwrap();
        assert!(at > 1.7e9, "{at}");
        assert!(t2.ends_with("# EOF\n"));
    }

    #[test]
    fn a_failed_revert_leaves_the_fault_active() {
        let m = Metrics::new(&plan());
        m.update(&Progress::Injected {
            id: FaultId(0),
            name: "stop".into(),
            target: "victim".into(),
            kind: "pause".into(),
        });
        m.update(&Progress::Reverted {
            id: FaultId(0),
            name: "f".into(),
            target: "t".into(),
            error: Some("no such process".into()),
        });
        let t = m.encode().unwrap();
        let fault = r#"chaosforge_fault_active{fault="stop",kind="pause",target="victim"}"#;
        assert_eq!(line(&t, fault), Some("1"));
    }
}
