//! Scenario 2, service unavailability: a `shop` gateway calls `inventory` through a chaosforge
//! HTTP proxy that answers 503 for it. The gateway with a circuit breaker stops calling
//! inventory after a few consecutive failures and serves the last stock it saw while the breaker
//! is open; the one without a breaker passes every failure on to its callers.
//!
//! The breaker is the classic one: **closed** counts consecutive failures (an error status, a
//! transport error or a timeout) and opens at [`THRESHOLD`]; **open** rejects calls for
//! [`COOL_DOWN`]; then **half-open** lets one trial call through — success closes it, failure
//! opens it again. A call whose failure opens the breaker is answered as an open breaker would
//! (the fallback), so callers see failures only while the breaker is still learning.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::StatusCode;
use tokio::time::Instant;

use super::serve::{client, free_port, listen, respond, serve};
use super::{Expect, Scenario, Variant};

/// The bundled experiment; its ports are replaced with the ones chosen at start.
pub(crate) const EXPERIMENT: &str =
    include_str!("../../../../examples/demo-inventory-breaker.yaml");

/// Consecutive failures that open the breaker.
const THRESHOLD: u32 = 3;

/// How long the breaker stays open before a trial call.
const COOL_DOWN: Duration = Duration::from_secs(1);

/// How long the gateway waits for inventory.
const CALL_TIMEOUT: Duration = Duration::from_millis(300);

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Calls go through; `failures` in a row so far.
    Closed { failures: u32 },
    /// Calls are rejected until `until`.
    Open { until: Instant },
    /// One trial call is (or may go) through; `trial` while it is in flight.
    HalfOpen { trial: bool },
}

/// What the breaker lets a request do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Call the dependency.
    Call,
    /// Do not: serve the fallback.
    Reject,
}

/// A circuit breaker whose transitions are printed and kept, with the time since `start`.
#[derive(Debug)]
pub(crate) struct Breaker {
    state: Mutex<State>,
    start: Instant,
    transitions: Mutex<Vec<String>>,
}

// === impl State ===

impl State {
    fn word(&self) -> &'static str {
        match self {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half-open",
        }
    }
}

// === impl Breaker ===

impl Breaker {
    /// A closed breaker.
    pub(crate) fn new() -> Breaker {
        Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            start: Instant::now(),
            transitions: Mutex::new(Vec::new()),
        }
    }

    /// Whether a request may call the dependency now.
    pub(crate) fn acquire(&self, now: Instant) -> Permit {
        let mut s = self.lock();
        match *s {
            State::Closed { .. } => Permit::Call,
            State::Open { until } if now >= until => {
                self.go(
                    &mut s,
                    State::HalfOpen { trial: true },
                    now,
                    "cool-down over",
                );
                Permit::Call
            }
            State::Open { .. } | State::HalfOpen { trial: true } => Permit::Reject,
            State::HalfOpen { trial: false } => {
                *s = State::HalfOpen { trial: true };
                Permit::Call
            }
        }
    }

    /// Records a call's result; returns whether the breaker is open afterwards.
    pub(crate) fn record(&self, ok: bool, now: Instant) -> bool {
        let mut s = self.lock();
        match (*s, ok) {
            (State::Closed { .. }, true) => *s = State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 >= THRESHOLD => {
                let why = format!("{THRESHOLD} consecutive failures");
                self.go(
                    &mut s,
                    State::Open {
                        until: now + COOL_DOWN,
                    },
                    now,
                    &why,
                );
            }
            (State::Closed { failures }, false) => {
                *s = State::Closed {
                    failures: failures + 1,
                }
            }
            (State::HalfOpen { .. }, true) => self.go(
                &mut s,
                State::Closed { failures: 0 },
                now,
                "trial call succeeded",
            ),
            (State::HalfOpen { .. }, false) => {
                let until = now + COOL_DOWN;
                self.go(&mut s, State::Open { until }, now, "trial call failed");
            }
            // A call that started before the breaker opened: nothing more to learn from it.
            (State::Open { .. }, _) => {}
        }
        matches!(*s, State::Open { .. })
    }

    /// Every transition so far, as printed.
    #[cfg(test)]
    pub(crate) fn transitions(&self) -> Vec<String> {
        self.transitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written: it is one word.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn go(&self, s: &mut State, to: State, now: Instant, why: &str) {
        let line = format!(
            "breaker {} → {} ({why}) at +{:.2}s",
            s.word(),
            to.word(),
            now.saturating_duration_since(self.start).as_secs_f64()
        );
        println!("demo: {line}");
        self.transitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
        *s = to;
    }
}

/// Starts inventory, and per variant a gateway and the experiment text aimed at them.
pub(super) async fn prepare() -> anyhow::Result<Scenario> {
    let inventory = start_inventory().await?;
    println!("demo: inventory service on {inventory}");
    let mut variants = Vec::new();
    for with_breaker in [true, false] {
        let proxy = free_port().await?;
        let breaker = with_breaker.then(|| Arc::new(Breaker::new()));
        let gateway = start_gateway(breaker, proxy).await?;
        let (label, slug, expect) = if with_breaker {
            (
                "gateway with a circuit breaker",
                "breaker",
                Expect::Confirmed,
            )
        } else {
            ("gateway without a breaker", "no-breaker", Expect::Refuted)
        };
        let text = EXPERIMENT
            .replace("127.0.0.1:18091", &proxy.to_string())
            .replace("127.0.0.1:9003", &inventory.to_string())
            .replace("127.0.0.1:18090", &gateway.to_string())
            .replace(
                "name: shop-survives-inventory-outage",
                &format!("name: shop-survives-inventory-outage-{slug}"),
            );
        variants.push(Variant {
            label: format!("{label} (gateway {gateway}, inventory via HTTP proxy {proxy})"),
            short: label,
            file: format!("demo:inventory-{slug}.yaml"),
            text,
            expect,
        });
    }
    Ok(Scenario {
        variants,
        note: "the breaker opens, serves the last known stock and closes again once inventory is back",
    })
}

async fn start_inventory() -> anyhow::Result<SocketAddr> {
    let (listener, addr) = listen("inventory service").await?;
    tokio::spawn(serve(listener, |_req| async {
        respond(StatusCode::OK, r#"{"sku":"demo-42","stock":7}"#)
    }));
    Ok(addr)
}

async fn start_gateway(
    breaker: Option<Arc<Breaker>>,
    inventory: SocketAddr,
) -> anyhow::Result<SocketAddr> {
    let (listener, addr) = listen("shop gateway").await?;
    let client = client()?;
    let url = format!("http://{inventory}/stock");
    // The last stock inventory answered: the fallback while the breaker is open.
    let last = Arc::new(Mutex::new(String::from(r#"{"sku":"demo-42","stock":7}"#)));
    tokio::spawn(serve(listener, move |_req| {
        let (client, url, breaker, last) =
            (client.clone(), url.clone(), breaker.clone(), last.clone());
        async move {
            let fallback = |why: &str| {
                let stock = last.lock().unwrap_or_else(|p| p.into_inner()).clone();
                respond(
                    StatusCode::OK,
                    &format!(r#"{{"product":"ok","inventory":{stock},"fallback":"{why}"}}"#),
                )
            };
            if let Some(b) = &breaker
                && b.acquire(Instant::now()) == Permit::Reject
            {
                return fallback("breaker open");
            }
            let call = async {
                let r = client.get(&url).send().await?.error_for_status()?;
                r.text().await
            };
            let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(body)) => Ok(body),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {}ms", CALL_TIMEOUT.as_millis())),
            };
            let opened = breaker
                .as_ref()
                .is_some_and(|b| b.record(result.is_ok(), Instant::now()));
            match result {
                Ok(body) => {
                    *last.lock().unwrap_or_else(|p| p.into_inner()) = body.clone();
                    respond(
                        StatusCode::OK,
                        &format!(r#"{{"product":"ok","inventory":{body}}}"#),
                    )
                }
                Err(_) if opened => fallback("breaker open"),
                Err(e) => respond(
                    StatusCode::BAD_GATEWAY,
                    &format!(r#"{{"error":{}}}"#, serde_json::Value::String(e)),
                ),
            }
        }
    }));
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_then_half_opens_and_closes() {
        let b = Breaker::new();
        let t0 = Instant::now();
        for _ in 0..THRESHOLD - 1 {
            assert_eq!(b.acquire(t0), Permit::Call);
            assert!(!b.record(false, t0));
        }
        assert_eq!(b.acquire(t0), Permit::Call);
        assert!(b.record(false, t0), "the third failure opens it");
        assert_eq!(b.acquire(t0 + COOL_DOWN / 2), Permit::Reject);
        // After the cool-down exactly one trial goes through.
        let t1 = t0 + COOL_DOWN;
        assert_eq!(b.acquire(t1), Permit::Call);
        assert_eq!(b.acquire(t1), Permit::Reject, "one trial at a time");
        assert!(b.record(false, t1), "a failed trial opens it again");
        assert_eq!(b.acquire(t1 + COOL_DOWN / 2), Permit::Reject);
        let t2 = t1 + COOL_DOWN;
        assert_eq!(b.acquire(t2), Permit::Call);
        assert!(!b.record(true, t2), "a good trial closes it");
        assert_eq!(b.acquire(t2), Permit::Call);
        let words: Vec<String> = b
            .transitions()
            .iter()
            .map(|l| l.split(" (").next().unwrap_or("").to_string())
            .collect();
        assert_eq!(
            words,
            [
                "breaker closed → open",
                "breaker open → half-open",
                "breaker half-open → open",
                "breaker open → half-open",
                "breaker half-open → closed",
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count_of_failures() {
        let b = Breaker::new();
        let t = Instant::now();
        for _ in 0..THRESHOLD - 1 {
            b.record(false, t);
        }
        b.record(true, t);
        for _ in 0..THRESHOLD - 1 {
            assert!(!b.record(false, t), "failures are counted only in a row");
        }
        assert_eq!(b.acquire(t), Permit::Call);
    }
}
