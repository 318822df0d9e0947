//! Webhooks (`notify:`): each event of a run POSTed to every webhook that subscribes to it, as
//! JSON or as a Slack-compatible `{"text": …}` message.
//!
//! Fed from the engine's [`Progress`] (started, injected, reverted) and the run's end (exactly
//! one of confirmed, refuted, not_steady, halted, error, with the report's summary). Delivery
//! never holds the run up:
//! - [`Notifier::progress`] runs on the engine's task, so it only queues: a bounded queue per
//!   webhook ([`QUEUE`] events), and a full queue drops the event with a warning;
//! - one background task per webhook sends its events one at a time, in order, each attempt
//!   bounded by the webhook's `timeout`, retried with exponential backoff on a connection
//!   error, a timeout, a 5xx or a 429 (any other answer is final);
//! - [`Notifier::finish`] waits for what is still queued at most each webhook's `timeout`, then
//!   gives up on it with a warning.
//!
//! Each event carries `id` (`<run id>#<seq>`), the same on every attempt, so a receiver that
//! answered too slowly can drop the repeat. Warnings name the webhook and its URL without path
//! when the URL came from the environment, and never a header value; reqwest's errors are
//! stripped of their URL.
//!
//! ```no_run
//! # async fn f(plan: &chaosforge::plan::Plan, result: &chaosforge::engine::RunResult) {
//! use std::sync::Arc;
//! use chaosforge::notify::Notifier;
//!
//! let notifier = Notifier::start(plan, Arc::new(|w: String| eprintln!("warning: {w}")));
//! // Engine::with_progress(…): call notifier.progress(p) for each event, then at the end:
//! if let Some(n) = notifier {
//!     n.finish(Ok(result)).await;
//! }
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::engine::{Outcome, Progress, RunResult};
use crate::plan::{NotifyEvent, NotifyFormat, NotifyPlan, Plan};
use crate::units::format_duration;

/// How many events wait per webhook before new ones are dropped: far more than a run's
/// started/injected/reverted events unless thousands of faults are injected at once.
pub const QUEUE: usize = 256;

/// The first retry's pause; each next one doubles, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest pause between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where warnings go (stderr in the CLI, the live view's message line).
pub type WarnFn = Arc<dyn Fn(String) + Send + Sync>;

/// The webhooks of one run.
pub struct Notifier {
    hooks: Vec<Hook>,
    state: Mutex<State>,
    warn: WarnFn,
}

/// One webhook: its queue and the task that empties it.
struct Hook {
    plan: Arc<NotifyPlan>,
    tx: mpsc::Sender<Delivery>,
    /// Events queued and not yet delivered or given up on.
    pending: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// What the events of a run share.
#[derive(Default)]
struct State {
    run_id: Option<String>,
    experiment: String,
    seq: u64,
    /// Each injected fault's kind, by id: a revert carries only the id.
    kinds: BTreeMap<u32, String>,
}

/// One event, ready to send.
struct Delivery {
    event: NotifyEvent,
    json: Value,
    text: String,
}

// === impl Notifier ===

impl Notifier {
    /// The webhooks of `plan`, each with its delivery task; `None` without any. Must be called
    /// inside a tokio runtime.
    pub fn start(plan: &Plan, warn: WarnFn) -> Option<Notifier> {
        if plan.notify.is_empty() {
            return None;
        }
        let client = match reqwest::Client::builder()
            .user_agent(concat!("chaosforge/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                warn(format!(
                    "webhooks disabled: cannot build an HTTP client: {}",
                    e.without_url()
                ));
                return None;
            }
        };
        let hooks = plan
            .notify
            .iter()
            .map(|h| {
                let plan = Arc::new(h.clone());
                let (tx, rx) = mpsc::channel(QUEUE);
                let pending = Arc::new(AtomicUsize::new(0));
                let task = tokio::spawn(run_hook(
                    plan.clone(),
                    client.clone(),
                    rx,
                    pending.clone(),
                    warn.clone(),
                ));
                Hook {
                    plan,
                    tx,
                    pending,
                    task,
                }
            })
            .collect();
        Some(Notifier {
            hooks,
            state: Mutex::new(State {
                experiment: plan.name.clone(),
                ..State::default()
            }),
            warn,
        })
    }

    /// Queues what `p` tells the webhooks (started, injected, reverted); never waits.
    pub fn progress(&self, p: &Progress) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (event, fields, text) = match p {
            Progress::Started { run_id, experiment } => {
                s.run_id = Some(run_id.0.clone());
                s.experiment = experiment.clone();
                (
                    NotifyEvent::Started,
                    json!({}),
                    format!("started (run {})", run_id.0),
                )
            }
            Progress::Injected {
                id,
                name,
                target,
                kind,
            } => {
                s.kinds.insert(id.0, kind.clone());
                (
                    NotifyEvent::Injected,
                    json!({ "fault": name, "kind": kind, "target": target }),
                    format!("injected `{name}` ({kind}) on `{target}`"),
                )
            }
            Progress::Reverted {
                id,
                name,
                target,
                error,
            } => {
                let kind = s.kinds.get(&id.0).cloned().unwrap_or_default();
                let text = match error {
                    None => format!("reverted `{name}` ({kind}) on `{target}`"),
                    Some(e) => format!("FAILED to revert `{name}` ({kind}) on `{target}`: {e}"),
                };
                (
                    NotifyEvent::Reverted,
                    json!({ "fault": name, "kind": kind, "target": target, "error": error }),
                    text,
                )
            }
            _ => return,
        };
        let d = s.delivery(event, fields, &text);
        drop(s);
        self.queue(d);
    }

    /// Queues the run's last event — its outcome and the report's summary, or the error that
    /// kept it from ending with one — then waits for every webhook's queue to empty, at most
    /// that webhook's `timeout` (all at once, so the whole wait is the longest timeout).
    pub async fn finish(self, result: Result<&RunResult, &str>) {
        let d = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let (event, fields, text) = final_event(result);
            s.delivery(event, fields, &text)
        };
        self.queue(d);
        // Every queue closed first (a closed queue ends its task once empty), then every task
        // awaited against a deadline counted from the same instant.
        let since = tokio::time::Instant::now();
        let hooks: Vec<(Arc<NotifyPlan>, Arc<AtomicUsize>, JoinHandle<()>)> = self
            .hooks
            .into_iter()
            .map(|h| (h.plan, h.pending, h.task))
            .collect();
        for (plan, pending, mut task) in hooks {
            if tokio::time::timeout_at(since + plan.timeout, &mut task)
                .await
                .is_err()
            {
                task.abort();
                let n = pending.load(Ordering::Relaxed);
                (self.warn)(format!(
                    "webhook {} ({}): {n} event{} still undelivered after waiting {} at the end \
                     of the run; dropped",
                    plan.name,
                    plan.shown,
                    if n == 1 { "" } else { "s" },
                    format_duration(plan.timeout)
                ));
            }
        }
    }

    fn queue(&self, d: Delivery) {
        for h in &self.hooks {
            if !h.plan.events.contains(&d.event) {
                continue;
            }
            let copy = Delivery {
                event: d.event,
                json: d.json.clone(),
                text: d.text.clone(),
            };
            h.pending.fetch_add(1, Ordering::Relaxed);
            if h.tx.try_send(copy).is_err() {
                h.pending.fetch_sub(1, Ordering::Relaxed);
                (self.warn)(format!(
                    "webhook {} ({}): {QUEUE} events are waiting; event `{}` dropped",
                    h.plan.name,
                    h.plan.shown,
                    d.event.name()
                ));
            }
        }
    }
}

// === impl State ===

impl State {
    /// The event with the fields every event has, numbered in the order the run made them.
    fn delivery(&mut self, event: NotifyEvent, fields: Value, text: &str) -> Delivery {
        self.seq += 1;
        let mut json = json!({
            "event": event.name(),
            "id": format!("{}#{}", self.run_id.as_deref().unwrap_or("-"), self.seq),
            "seq": self.seq,
            "run_id": self.run_id,
            "experiment": self.experiment,
            "at": jiff::Timestamp::now().to_string(),
        });
        if let (Some(all), Value::Object(more)) = (json.as_object_mut(), fields) {
            all.extend(more);
        }
        Delivery {
            event,
            json,
            text: format!("chaosforge: `{}` {text}", self.experiment),
        }
    }
}

/// The last event of a run: which, its fields and its Slack text.
fn final_event(result: Result<&RunResult, &str>) -> (NotifyEvent, Value, String) {
    let r = match result {
        Ok(r) => r,
        Err(e) => {
            return (
                NotifyEvent::Error,
                json!({ "outcome": { "status": "errored", "error": e } }),
                format!("failed: {e}"),
            );
        }
    };
    let (event, text) = match &r.outcome {
        Outcome::Confirmed => (
            NotifyEvent::Confirmed,
            "confirmed: the hypothesis held".to_string(),
        ),
        Outcome::Refuted { reasons } => (
            NotifyEvent::Refuted,
            format!("refuted: {}", reasons.join("; ")),
        ),
        Outcome::NotSteady { reasons } => (
            NotifyEvent::NotSteady,
            format!(
                "not steady at baseline (nothing injected): {}",
                reasons.join("; ")
            ),
        ),
        Outcome::Halted { policy, reason } => (
            NotifyEvent::Halted,
            format!("halted by {policy}: {reason} (every fault reverted)"),
        ),
        Outcome::Errored { phase, error } => (
            NotifyEvent::Error,
            format!("error in {}: {error}", format!("{phase:?}").to_lowercase()),
        ),
    };
    let report = &r.report;
    let summary = json!({
        "duration": format_duration(report.duration),
        "faults": report.faults.len(),
        "findings": report.findings,
        "security_findings": report.security_findings,
        "time_to_recover": report.recovery.as_ref().and_then(|x| x.ttr).map(format_duration),
        "journal": r.journal.display().to_string(),
    });
    let text = format!("{text} ({})", format_duration(report.duration));
    (
        event,
        json!({ "outcome": r.outcome, "summary": summary }),
        text,
    )
}

/// A webhook's task: its events one at a time, in order, until the queue closes.
async fn run_hook(
    plan: Arc<NotifyPlan>,
    client: reqwest::Client,
    mut rx: mpsc::Receiver<Delivery>,
    pending: Arc<AtomicUsize>,
    warn: WarnFn,
) {
    while let Some(d) = rx.recv().await {
        if let Err(why) = deliver(&plan, &client, &d).await {
            warn(format!(
                "webhook {} ({}): event `{}` not delivered: {why}",
                plan.name,
                plan.shown,
                d.event.name()
            ));
        }
        pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One event, with its retries: `Err` says why the last attempt failed.
async fn deliver(plan: &NotifyPlan, client: &reqwest::Client, d: &Delivery) -> Result<(), String> {
    let body = match plan.format {
        NotifyFormat::Json => d.json.to_string(),
        NotifyFormat::Slack => json!({ "text": d.text }).to_string(),
    };
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut req = client
            .post(plan.url.expose())
            .timeout(plan.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        for (name, value) in &plan.headers {
            req = req.header(name.as_str(), value.expose());
        }
        let why = match req.send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => {
                let status = resp.status();
                let why = format!("answered {status}");
                if !(status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS) {
                    return Err(format!("{why} (not retried)"));
                }
                why
            }
            // Without the URL: it may be the secret itself.
            Err(e) => error_chain(&e.without_url()),
        };
        if attempt > plan.retries {
            return Err(format!(
                "{why} (after {attempt} attempt{})",
                if attempt == 1 { "" } else { "s" }
            ));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// An error and its causes on one line (`error sending request: connection refused`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}
