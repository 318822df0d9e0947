//! The flow's decisions, with a scripted provider: `{"type": "script", "out": V}` returns `V`,
//! `"fail": "why"` raises, `"sleep_ms": N` takes that long, and every run is logged by name so
//! a test sees what ran, in which order. The providers themselves are tested in `provider`, and
//! the whole against real chaostoolkit in the CLI's `ctk` tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::*;

#[derive(Default)]
struct Script {
    log: Mutex<Vec<String>>,
}

impl Providers for Script {
    fn run<'a>(&'a self, activity: &'a Value) -> ProviderFuture<'a> {
        Box::pin(async move {
            let p = &activity["provider"];
            let name = activity["name"].as_str().unwrap_or("?").to_string();
            if let Some(ms) = p["sleep_ms"].as_u64() {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            self.log.lock().unwrap().push(name);
            match p["fail"].as_str() {
                Some(why) => Err(vec![format!("chaoslib.exceptions.ActivityFailed: {why}\n")]),
                None => Ok(p["out"].clone()),
            }
        })
    }

    fn substitute(&self, value: &Value) -> Value {
        value.clone()
    }
}

fn probe(name: &str, out: Value, tolerance: Value) -> Value {
    json!({"type": "probe", "name": name, "tolerance": tolerance,
           "provider": {"type": "script", "out": out}})
}

fn action(name: &str) -> Value {
    json!({"type": "action", "name": name, "provider": {"type": "script", "out": name}})
}

async fn go(exp: Value, opts: Options) -> (CtkJournal, Vec<String>) {
    let (_tx, rx) = watch::channel(None);
    go_with(exp, opts, rx).await
}

async fn go_with(
    exp: Value,
    opts: Options,
    rx: watch::Receiver<Option<Interrupt>>,
) -> (CtkJournal, Vec<String>) {
    let script = Arc::new(Script::default());
    let j = run(
        &exp,
        exp.clone(),
        script.clone(),
        opts,
        Arc::new(NoHooks),
        rx,
    )
    .await;
    let log = script.log.lock().unwrap().clone();
    (j, log)
}

fn names(runs: &[Run]) -> Vec<&str> {
    runs.iter()
        .map(|r| r.activity["name"].as_str().unwrap_or("?"))
        .collect()
}

fn experiment(before_ok: bool) -> Value {
    json!({
        "title": "t",
        "description": "d",
        "steady-state-hypothesis": {
            "title": "h",
            "probes": [probe("up", json!(if before_ok { 200 } else { 500 }), json!(200))]
        },
        "method": [action("break"), action("observe")],
        "rollbacks": [action("fix")]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_run_completes_plays_everything_in_order() {
    let (j, log) = go(experiment(true), Options::default()).await;
    assert_eq!(j.status, Some(Status::Completed));
    assert!(!j.deviated);
    assert!(j.ok());
    assert_eq!(log, ["up", "break", "observe", "up", "fix"]);
    assert_eq!(names(&j.run), ["break", "observe"]);
    assert_eq!(names(&j.rollbacks), ["fix"]);
    let before = j.steady_states.before.as_ref().unwrap();
    assert_eq!(before.steady_state_met, Some(true));
    assert_eq!(before.probes[0].tolerance_met, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_that_misses_skips_the_method_yet_completes() {
    let (j, log) = go(experiment(false), Options::default()).await;
    // chaoslib: every probe ran, so `completed` — and chaostoolkit exits 0.
    assert_eq!(j.status, Some(Status::Completed));
    assert!(!j.deviated);
    assert!(j.run.is_empty());
    assert!(j.steady_states.after.is_none());
    assert_eq!(
        log,
        ["up", "fix"],
        "default strategy plays rollbacks of a completed run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_probe_that_raises_fails_and_default_skips_the_rollbacks() {
    let mut exp = experiment(true);
    exp["steady-state-hypothesis"]["probes"][0]["provider"]["fail"] = json!("boom");
    let (j, log) = go(exp.clone(), Options::default()).await;
    assert_eq!(j.status, Some(Status::Failed));
    assert_eq!(log, ["up"]);
    let p = &j.steady_states.before.as_ref().unwrap().probes[0];
    assert_eq!(p.status, Some(RunStatus::Failed));
    assert_eq!(p.tolerance_met, Some(false));
    assert!(p.exception.as_ref().unwrap()[0].contains("ActivityFailed: boom"));
    let (j, log) = go(
        exp,
        Options {
            rollbacks: RollbackStrategy::Always,
            ..Options::default()
        },
    )
    .await;
    assert_eq!(j.status, Some(Status::Failed));
    assert_eq!(log, ["up", "fix"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hypothesis_missed_after_the_method_deviates() {
    // Only after the method: the probe returns 500 and the gate is not run.
    let exp = experiment(false);
    for (strategy, played) in [
        (RollbackStrategy::Default, true),
        (RollbackStrategy::Deviated, true),
        (RollbackStrategy::Never, false),
    ] {
        let (j, log) = go(
            exp.clone(),
            Options {
                hypothesis: HypothesisStrategy::AfterMethodOnly,
                rollbacks: strategy,
                ..Options::default()
            },
        )
        .await;
        assert!(j.steady_states.before.is_none());
        assert!(j.deviated);
        assert_eq!(j.status, Some(Status::Completed));
        assert!(!j.ok());
        assert_eq!(log.contains(&"fix".to_string()), played, "{strategy:?}");
    }
    // `deviated` does not play them for a run that held.
    let (_, log) = go(
        experiment(true),
        Options {
            rollbacks: RollbackStrategy::Deviated,
            ..Options::default()
        },
    )
    .await;
    assert!(!log.contains(&"fix".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_stops_the_method_at_the_next_activity() {
    let mut exp = experiment(false);
    exp["method"] = json!([
        {"type": "action", "name": "slow", "provider": {"type": "script", "sleep_ms": 300}},
        action("never")
    ]);
    let (j, log) = go(
        exp,
        Options {
            hypothesis: HypothesisStrategy::DuringMethodOnly,
            frequency: Some(0.05),
            fail_fast: true,
            ..Options::default()
        },
    )
    .await;
    assert_eq!(j.status, Some(Status::Failed));
    assert_eq!(j.steady_states.during.len(), 1, "stops at the first miss");
    assert!(!log.contains(&"never".to_string()));
    assert!(
        !log.contains(&"fix".to_string()),
        "failed: default skips rollbacks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_hypothesis_keeps_running_without_fail_fast() {
    let mut exp = experiment(true);
    exp["method"] = json!([
        {"type": "action", "name": "slow", "provider": {"type": "script", "sleep_ms": 400}}
    ]);
    let (j, _) = go(
        exp,
        Options {
            hypothesis: HypothesisStrategy::Continuously,
            frequency: Some(0.05),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(j.status, Some(Status::Completed));
    assert!(j.steady_states.before.is_some() && j.steady_states.after.is_some());
    assert!(
        j.steady_states.during.len() >= 2,
        "{}",
        j.steady_states.during.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_interrupts_and_sigusr2_skips_even_always() {
    let mut exp = experiment(true);
    exp["method"] = json!([
        {"type": "action", "name": "slow", "provider": {"type": "script", "sleep_ms": 5000}},
        action("never")
    ]);
    for (signal, strategy, played) in [
        (Interrupt::Graceful, RollbackStrategy::Default, false),
        (Interrupt::Graceful, RollbackStrategy::Always, true),
        (Interrupt::SkipRollbacks, RollbackStrategy::Always, false),
    ] {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = tx.send(Some(signal));
            // Keep the sender: a dropped one would look like "no signal can come".
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let (j, log) = go_with(
            exp.clone(),
            Options {
                rollbacks: strategy,
                ..Options::default()
            },
            rx,
        )
        .await;
        assert_eq!(j.status, Some(Status::Interrupted));
        assert_eq!(names(&j.run), ["slow"]);
        assert_eq!(j.run[0].status, None, "cut short: no status, as chaoslib");
        assert!(j.steady_states.after.is_none());
        assert_eq!(
            log.contains(&"fix".to_string()),
            played,
            "{signal:?} {strategy:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_activities_start_in_order_and_are_waited_for() {
    let mut exp = experiment(true);
    exp["method"] = json!([
        {"type": "action", "name": "bg", "background": true,
         "provider": {"type": "script", "sleep_ms": 300, "out": 1}},
        action("fg")
    ]);
    let (j, log) = go(exp, Options::default()).await;
    assert_eq!(names(&j.run), ["bg", "fg"], "journal order is start order");
    assert_eq!(
        log[1..3],
        ["fg".to_string(), "bg".to_string()],
        "fg finished first"
    );
    assert_eq!(j.run[0].status, Some(RunStatus::Succeeded));
    assert_eq!(log.last().map(String::as_str), Some("fix"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refs_resolve_and_a_ref_probe_without_its_own_tolerance_misses() {
    let exp = json!({
        "title": "t", "description": "d",
        "steady-state-hypothesis": {"title": "h", "probes": [
            probe("up", json!(200), json!(200)),
            {"ref": "up"}
        ]},
        "method": [{"ref": "up"}]
    });
    let (j, log) = go(exp, Options::default()).await;
    let before = j.steady_states.before.as_ref().unwrap();
    assert_eq!(before.probes.len(), 2);
    assert_eq!(
        before.probes[1].activity["name"], "up",
        "the resolved activity"
    );
    assert_eq!(before.probes[1].tolerance_met, Some(false));
    assert_eq!(before.steady_state_met, Some(false));
    assert_eq!(log, ["up", "up"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_actions_run_no_action() {
    let (j, log) = go(
        experiment(true),
        Options {
            dry: Some(Dry::Actions),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(log, ["up", "up"]);
    assert_eq!(j.run[0].status, Some(RunStatus::Succeeded));
    assert_eq!(j.run[0].output, Value::Null);
    assert!(j.ok());
}

#[test]
fn rollback_strategies_decide_as_chaoslib() {
    use RollbackStrategy::*;
    let cases = [
        (Default, Some(Status::Completed), false, true),
        (Default, Some(Status::Completed), true, true),
        (Default, Some(Status::Failed), false, false),
        (Default, Some(Status::Interrupted), false, false),
        (Default, Some(Status::Aborted), false, true),
        (Default, None, false, true),
        (Always, Some(Status::Failed), false, true),
        (Never, Some(Status::Completed), false, false),
        (Deviated, Some(Status::Completed), true, true),
        (Deviated, Some(Status::Failed), false, false),
    ];
    for (s, status, deviated, plays) in cases {
        assert_eq!(
            s.plays(status, deviated),
            plays,
            "{s:?} {status:?} {deviated}"
        );
    }
}
