//! A Chaos Toolkit experiment's run, step for step as chaoslib 1.44's `Runner._run`.
//!
//! The flow works on the experiment as a JSON tree, as chaoslib does on its dict: validation
//! ([`super::validate`]) has already vouched for its shape, and keeping the tree means the
//! journal's `activity` entries are the declared activities, byte for byte.
//!
//! What chaoslib does, and so what this does:
//! - steady state before the method is a *gate*: not met, the method is skipped, and the status
//!   is `completed` (every probe ran) or `failed` (one raised) — chaostoolkit then exits 0 for a
//!   gate whose probes ran but missed their tolerance;
//! - the method runs in order; `background` activities start and are waited for at its end; a
//!   failed activity does not stop the method;
//! - `during-method-only`/`continuously` run the hypothesis every `frequency` seconds alongside the
//!   method; with `fail_fast` the first miss sets `failed` and the method stops before its next
//!   activity;
//! - steady state after the method: not met, the run `deviated`;
//! - rollbacks per strategy: `default` skips them when the run `failed` or was `interrupted`
//!   (this is where CTK leaves systems broken, so the caller warns), `always`, `never`,
//!   `deviated`;
//! - a signal interrupts: SIGTERM/SIGINT/SIGUSR1 play rollbacks per strategy, SIGUSR2 never.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use serde_json::Value;
use tokio::sync::watch;

use super::journal::{CtkJournal, HypothesisState, Run, RunStatus, Status, now_iso};
use super::tolerance::{py_truthy, within_tolerance};

#[cfg(test)]
mod tests;

/// What a provider run gave: its output, or chaoslib's exception lines (`ActivityFailed: …`).
pub type ProviderResult = Result<Value, Vec<String>>;

/// A boxed future of a provider's result.
pub type ProviderFuture<'a> = Pin<Box<dyn Future<Output = ProviderResult> + Send + 'a>>;

/// What the flow needs from the outside: running providers and substituting `${…}`.
pub trait Providers: Send + Sync {
    /// Runs `activity`'s provider (it substitutes the activity's own fields).
    fn run<'a>(&'a self, activity: &'a Value) -> ProviderFuture<'a>;
    /// `value` with configuration and secrets substituted.
    fn substitute(&self, value: &Value) -> Value;
}

/// `--hypothesis-strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HypothesisStrategy {
    /// Before and after the method.
    #[default]
    Default,
    /// Only before.
    BeforeMethodOnly,
    /// Only after.
    AfterMethodOnly,
    /// Only during, every `frequency`.
    DuringMethodOnly,
    /// Before, during and after.
    Continuously,
}

impl HypothesisStrategy {
    /// From chaostoolkit's spelling (including its old `continously`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "default" => Self::Default,
            "before-method-only" => Self::BeforeMethodOnly,
            "after-method-only" => Self::AfterMethodOnly,
            "during-method-only" => Self::DuringMethodOnly,
            "continuously" | "continously" => Self::Continuously,
            _ => return None,
        })
    }

    fn before(self) -> bool {
        matches!(
            self,
            Self::Default | Self::BeforeMethodOnly | Self::Continuously
        )
    }

    fn after(self) -> bool {
        matches!(
            self,
            Self::Default | Self::AfterMethodOnly | Self::Continuously
        )
    }

    fn during(self) -> bool {
        matches!(self, Self::DuringMethodOnly | Self::Continuously)
    }
}

/// `--rollback-strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RollbackStrategy {
    /// Unless the run failed or was interrupted.
    #[default]
    Default,
    /// Whatever happened.
    Always,
    /// Never.
    Never,
    /// Only when the steady state deviated.
    Deviated,
}

impl RollbackStrategy {
    /// From chaostoolkit's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "default" => Self::Default,
            "always" => Self::Always,
            "never" => Self::Never,
            "deviated" => Self::Deviated,
            _ => return None,
        })
    }

    /// Whether rollbacks are played for a run that ended so.
    pub fn plays(self, status: Option<Status>, deviated: bool) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Default => !matches!(status, Some(Status::Failed | Status::Interrupted)),
            Self::Deviated => deviated,
        }
    }
}

/// `--dry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dry {
    /// Probes are not run (and their tolerances not checked).
    Probes,
    /// Actions are not run.
    Actions,
    /// Nothing is run.
    Activities,
    /// Pauses are skipped.
    Pause,
}

impl Dry {
    /// From chaostoolkit's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "probes" => Self::Probes,
            "actions" => Self::Actions,
            "activities" => Self::Activities,
            "pause" => Self::Pause,
            _ => return None,
        })
    }

    /// As chaostoolkit writes it in the journal's `experiment.dry`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Probes => "probes",
            Self::Actions => "actions",
            Self::Activities => "activities",
            Self::Pause => "pause",
        }
    }
}

/// The signals chaoslib reacts to, as what they ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// SIGTERM (`InterruptExecution`), SIGINT (`KeyboardInterrupt`) or SIGUSR1 (`exit 20`):
    /// stop, then rollbacks as the strategy says.
    Graceful,
    /// SIGUSR2 (`exit 30`): stop, no rollbacks, do not wait for background activities.
    SkipRollbacks,
}

/// How to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// When the hypothesis runs.
    pub hypothesis: HypothesisStrategy,
    /// Seconds between two continuous hypothesis runs.
    pub frequency: Option<f64>,
    /// A continuous hypothesis miss fails the run at once.
    pub fail_fast: bool,
    /// When rollbacks run.
    pub rollbacks: RollbackStrategy,
    /// What is not run.
    pub dry: Option<Dry>,
}

/// Which run of the steady-state hypothesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The gate before the method.
    Before,
    /// A continuous run beside the method.
    During,
    /// The check after the method.
    After,
}

/// Moments of the run the caller acts on (journaling rollbacks write-ahead, progress).
pub trait Hooks: Send + Sync {
    /// A hypothesis run begins.
    fn hypothesis_starts(&self, _window: Window) {}
    /// The steady-state probe at `index` finished, `tolerance_met` set.
    fn probe_done(&self, _window: Window, _index: usize, _run: &Run) {}
    /// Just before the method's first activity: from here the system may be changed, so the
    /// rollbacks must be on record.
    fn method_starts(&self) {}
    /// The rollback decision: `played` or not, and why (for the record).
    fn rollbacks_decided(&self, _played: bool, _why: &str) {}
    /// The rollbacks finished (all of them, or cut short by a signal).
    fn rollbacks_done(&self, _interrupted: bool) {}
    /// An activity finished (or a hypothesis probe did).
    fn activity_done(&self, _run: &Run) {}
}

/// No hooks.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// The state shared by the method, its background activities and the continuous hypothesis.
struct Shared {
    status: Mutex<Option<Status>>,
    runs: Mutex<Vec<Run>>,
    during: Mutex<Vec<HypothesisState>>,
}

impl Shared {
    fn status(&self) -> Option<Status> {
        *self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_status(&self, s: Status) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
    }

    fn stopped(&self) -> bool {
        matches!(
            self.status(),
            Some(Status::Aborted | Status::Failed | Status::Interrupted)
        )
    }
}

/// Runs `experiment` (title already substituted) and returns its CTK journal. `interrupt`
/// turning `Some` is a signal; the journal's `experiment` is `journal_experiment`.
pub async fn run(
    experiment: &Value,
    journal_experiment: Value,
    providers: Arc<dyn Providers>,
    opts: Options,
    hooks: Arc<dyn Hooks>,
    interrupt: watch::Receiver<Option<Interrupt>>,
) -> CtkJournal {
    let started = Instant::now();
    let mut journal = CtkJournal::start(journal_experiment);
    let cx = Cx {
        activities: activity_cache(experiment),
        providers,
        dry: opts.dry,
    };
    let shared = Arc::new(Shared {
        status: Mutex::new(None),
        runs: Mutex::new(Vec::new()),
        during: Mutex::new(Vec::new()),
    });
    let probes: Vec<Value> = experiment
        .get("steady-state-hypothesis")
        .and_then(|h| h.get("probes"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let with_ssh = !probes.is_empty();
    let mut deviated = false;
    let mut skip_rollbacks = false;

    let body = async {
        if with_ssh && opts.hypothesis.before() {
            let state = cx.hypothesis(&probes, Window::Before, &*hooks).await;
            let met = state.steady_state_met == Some(true);
            let failed = state_failed(&state);
            journal.steady_states.before = Some(state);
            if !met {
                shared.set_status(if failed {
                    Status::Failed
                } else {
                    Status::Completed
                });
                return;
            }
        }
        // The continuous hypothesis runs beside the method, on its own task.
        let (stop_tx, stop_rx) = watch::channel(false);
        let during = (with_ssh && opts.hypothesis.during()).then(|| {
            let cx = cx.clone();
            let probes = probes.clone();
            let shared = shared.clone();
            let frequency = Duration::from_secs_f64(opts.frequency.unwrap_or(1.0).max(0.0));
            let fail_fast = opts.fail_fast;
            let hooks = hooks.clone();
            tokio::spawn(async move {
                continuous(
                    &cx, &probes, &shared, frequency, fail_fast, &*hooks, stop_rx,
                )
                .await;
            })
        });
        hooks.method_starts();
        cx.method(experiment, &shared, &*hooks).await;
        let _ = stop_tx.send(true);
        if let Some(t) = during {
            let _ = t.await;
        }
        if !matches!(shared.status(), Some(Status::Interrupted | Status::Aborted))
            && with_ssh
            && opts.hypothesis.after()
        {
            let state = cx.hypothesis(&probes, Window::After, &*hooks).await;
            if state.steady_state_met != Some(true) {
                deviated = true;
                shared.set_status(if state_failed(&state) {
                    Status::Failed
                } else {
                    Status::Completed
                });
            }
            journal.steady_states.after = Some(state);
        }
    };
    if let Some(i) = interrupted(body, interrupt.clone()).await {
        shared.set_status(Status::Interrupted);
        skip_rollbacks = i == Interrupt::SkipRollbacks;
    }
    journal.run = std::mem::take(&mut *shared.runs.lock().unwrap_or_else(|e| e.into_inner()));
    journal.run.retain(|r| !r.start.is_empty());
    journal.steady_states.during =
        std::mem::take(&mut *shared.during.lock().unwrap_or_else(|e| e.into_inner()));
    journal.deviated = deviated;

    let status = shared.status();
    let play = !skip_rollbacks && opts.rollbacks.plays(status, deviated);
    let why = if skip_rollbacks {
        "SIGUSR2 asked to skip them".to_string()
    } else {
        format!(
            "rollback strategy {:?}, run {}{}",
            opts.rollbacks,
            status.map_or("running", status_word),
            if deviated { ", deviated" } else { "" }
        )
    };
    hooks.rollbacks_decided(play, &why);
    if play {
        let rollbacks: Vec<Value> = experiment
            .get("rollbacks")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let done = Arc::new(Mutex::new(Vec::new()));
        let r = interrupted_anew(cx.rollbacks(&rollbacks, &done, &*hooks), interrupt).await;
        journal.rollbacks = std::mem::take(&mut *done.lock().unwrap_or_else(|e| e.into_inner()));
        if r.is_some() {
            shared.set_status(Status::Interrupted);
        }
        hooks.rollbacks_done(r.is_some());
    }
    journal.status = Some(shared.status().unwrap_or(Status::Completed));
    journal.end = Some(now_iso());
    journal.duration = Some(started.elapsed().as_secs_f64());
    journal
}

/// The word of a status.
pub fn status_word(s: Status) -> &'static str {
    match s {
        Status::Completed => "completed",
        Status::Failed => "failed",
        Status::Aborted => "aborted",
        Status::Interrupted => "interrupted",
    }
}

/// Runs `body` unless a signal comes first (the body is dropped there, as chaoslib's exception
/// unwinds the frame it hits); the signal, if one came.
async fn interrupted(
    body: impl Future<Output = ()>,
    mut rx: watch::Receiver<Option<Interrupt>>,
) -> Option<Interrupt> {
    if let Some(i) = *rx.borrow() {
        return Some(i);
    }
    let signal = async {
        match rx.wait_for(Option::is_some).await {
            Ok(v) => *v,
            // No sender: no signal can come.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = body => None,
        i = signal => i,
    }
}

/// Runs `body` unless a signal *after this call* comes first: the one that stopped the method
/// has been handled, and rollbacks are cut short only by another (chaoslib raises once per
/// signal).
async fn interrupted_anew(
    body: impl Future<Output = ()>,
    mut rx: watch::Receiver<Option<Interrupt>>,
) -> Option<Interrupt> {
    rx.borrow_and_update();
    let signal = async {
        match rx.changed().await {
            Ok(()) => *rx.borrow(),
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = body => None,
        i = signal => i,
    }
}

/// A hypothesis failed (rather than missed) when one of its probes did not succeed.
fn state_failed(state: &HypothesisState) -> bool {
    state
        .probes
        .iter()
        .any(|p| p.status != Some(RunStatus::Succeeded))
}

async fn continuous(
    cx: &Cx,
    probes: &[Value],
    shared: &Shared,
    frequency: Duration,
    fail_fast: bool,
    hooks: &dyn Hooks,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        if matches!(
            shared.status(),
            Some(Status::Failed | Status::Interrupted | Status::Aborted)
        ) {
            break;
        }
        let state = cx.hypothesis(probes, Window::During, hooks).await;
        let met = state.steady_state_met == Some(true);
        shared
            .during
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(state);
        // chaoslib's fail_fast_ratio is 0: any miss reaches it.
        if !met && fail_fast {
            shared.set_status(Status::Failed);
            break;
        }
        let _ = tokio::time::timeout(frequency, stop.wait_for(|s| *s)).await;
    }
}

#[derive(Clone)]
struct Cx {
    /// Name → activity, for `ref`s: the method's, then the hypothesis' (later names win).
    activities: Arc<std::collections::HashMap<String, Value>>,
    providers: Arc<dyn Providers>,
    dry: Option<Dry>,
}

fn activity_cache(experiment: &Value) -> Arc<std::collections::HashMap<String, Value>> {
    let list = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
    let mut map = std::collections::HashMap::new();
    let method = list(experiment.get("method"));
    let probes = list(
        experiment
            .get("steady-state-hypothesis")
            .and_then(|h| h.get("probes")),
    );
    for a in method.into_iter().chain(probes) {
        if let Some(name) = a.get("name").and_then(Value::as_str) {
            map.insert(name.to_string(), a.clone());
        }
    }
    Arc::new(map)
}

impl Cx {
    /// chaoslib's `run_steady_state_hypothesis`.
    async fn hypothesis(
        &self,
        probes: &[Value],
        window: Window,
        hooks: &dyn Hooks,
    ) -> HypothesisState {
        hooks.hypothesis_starts(window);
        let mut state = HypothesisState {
            steady_state_met: None,
            probes: Vec::new(),
        };
        for (index, declared) in probes.iter().enumerate() {
            let done = |run: &Run| hooks.probe_done(window, index, run);
            let mut run = self.execute(declared, None).await;
            if run.status != Some(RunStatus::Succeeded) {
                run.tolerance_met = Some(false);
                done(&run);
                state.probes.push(run);
                state.steady_state_met = Some(false);
                return state;
            }
            run.tolerance_met = Some(true);
            if matches!(self.dry, Some(Dry::Probes | Dry::Activities)) {
                done(&run);
                state.probes.push(run);
                continue;
            }
            // The tolerance of the activity as declared: a `ref` has none of its own, which
            // chaoslib judges as not met.
            let tolerance = match declared.get("tolerance") {
                Some(t @ (Value::String(_) | Value::Object(_))) => self.providers.substitute(t),
                Some(t) => t.clone(),
                None => Value::Null,
            };
            let met = self.judge(&tolerance, &run.output);
            if !met {
                run.tolerance_met = Some(false);
                done(&run);
                state.probes.push(run);
                state.steady_state_met = Some(false);
                return state;
            }
            done(&run);
            state.probes.push(run);
        }
        state.steady_state_met = Some(true);
        state
    }

    fn judge(&self, tolerance: &Value, output: &Value) -> bool {
        let providers = self.providers.clone();
        let mut probe = |activity: &Value, value: &Value| -> bool {
            let mut activity = activity.clone();
            if let Some(args) = activity
                .get_mut("provider")
                .and_then(|p| p.get_mut("arguments"))
                .and_then(Value::as_object_mut)
            {
                args.insert("value".into(), value.clone());
            }
            // The tolerance callback is synchronous (it sits inside the judgement); the
            // provider is async, so it runs to completion on this worker.
            let r = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(providers.run(&activity))
            });
            matches!(r, Ok(v) if py_truthy(&v))
        };
        // Where Python would raise, chaoslib's hypothesis fails the probe: not met.
        within_tolerance(tolerance, output, &mut probe).unwrap_or(false)
    }

    /// chaoslib's `execute_activity`: pauses, dry mode, the run record.
    async fn execute(&self, declared: &Value, record: Option<(&Shared, usize)>) -> Run {
        let activity = match declared.get("ref").and_then(Value::as_str) {
            Some(name) => self
                .activities
                .get(name)
                .cloned()
                .unwrap_or_else(|| declared.clone()),
            None => declared.clone(),
        };
        let pauses = activity
            .get("pauses")
            .map(|p| self.providers.substitute(p))
            .unwrap_or(Value::Null);
        let kind = activity.get("type").and_then(Value::as_str).unwrap_or("");
        // chaoslib reads an activity's own `dry` as a raw string and compares it with its enum:
        // it never matches, so an activity with the key runs and pauses whatever `--dry` says.
        let dry = if activity.get("dry").is_some() {
            None
        } else {
            self.dry
        };
        let is_dry = match dry {
            Some(Dry::Actions) => kind == "action",
            Some(Dry::Probes) => kind == "probe",
            Some(Dry::Activities) => true,
            _ => false,
        };
        let pausing = dry != Some(Dry::Pause) && !is_dry;
        if let Some(d) = pause(pauses.get("before"))
            && pausing
        {
            tokio::time::sleep(d).await;
        }
        let start = now_iso();
        let t0 = Instant::now();
        let mut run = Run {
            activity: activity.clone(),
            output: Value::Null,
            start,
            status: None,
            exception: None,
            end: None,
            duration: None,
            tolerance_met: None,
        };
        if let Some((shared, i)) = record {
            place(shared, i, run.clone());
        }
        let result = if is_dry {
            Ok(Value::Null)
        } else {
            self.providers.run(&activity).await
        };
        match result {
            Ok(v) => {
                run.output = v;
                run.status = Some(RunStatus::Succeeded);
            }
            Err(lines) => {
                run.status = Some(RunStatus::Failed);
                run.exception = Some(lines);
            }
        }
        run.end = Some(now_iso());
        run.duration = Some(t0.elapsed().as_secs_f64());
        if let Some((shared, i)) = record {
            place(shared, i, run.clone());
        }
        if let Some(d) = pause(pauses.get("after"))
            && pausing
        {
            tokio::time::sleep(d).await;
        }
        run
    }

    /// chaoslib's `apply_activities` over the method.
    async fn method(&self, experiment: &Value, shared: &Arc<Shared>, hooks: &dyn Hooks) {
        let method: Vec<Value> = experiment
            .get("method")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut background = tokio::task::JoinSet::new();
        // Dropped (by a signal) before the end, the set aborts what still runs; chaoslib waits
        // for background activities on SIGTERM, which the caller's grace period covers.
        for activity in method {
            let slot = reserve(shared);
            if activity.get("background").and_then(Value::as_bool) == Some(true) {
                let cx = self.clone();
                let shared = shared.clone();
                background.spawn(async move {
                    cx.execute(&activity, Some((&shared, slot))).await;
                });
            } else {
                let run = self.execute(&activity, Some((shared, slot))).await;
                hooks.activity_done(&run);
            }
            if shared.stopped() {
                break;
            }
        }
        while background.join_next().await.is_some() {}
    }

    async fn rollbacks(&self, rollbacks: &[Value], done: &Arc<Mutex<Vec<Run>>>, hooks: &dyn Hooks) {
        let mut background = tokio::task::JoinSet::new();
        for activity in rollbacks {
            if activity.get("background").and_then(Value::as_bool) == Some(true) {
                let (cx, done, activity) = (self.clone(), done.clone(), activity.clone());
                background.spawn(async move {
                    let run = cx.execute(&activity, None).await;
                    done.lock().unwrap_or_else(|e| e.into_inner()).push(run);
                });
            } else {
                let run = self.execute(activity, None).await;
                hooks.activity_done(&run);
                done.lock().unwrap_or_else(|e| e.into_inner()).push(run);
            }
        }
        while background.join_next().await.is_some() {}
    }
}

/// A slot in the method's runs for an activity about to start: chaoslib appends a run when
/// the activity starts, so the journal's order is the order of starts. A slot whose activity
/// never started (its pause was cut short) keeps an empty `start` and is dropped.
fn reserve(shared: &Shared) -> usize {
    let mut runs = shared.runs.lock().unwrap_or_else(|e| e.into_inner());
    runs.push(Run {
        activity: Value::Null,
        output: Value::Null,
        start: String::new(),
        status: None,
        exception: None,
        end: None,
        duration: None,
        tolerance_met: None,
    });
    runs.len() - 1
}

fn place(shared: &Shared, i: usize, run: Run) {
    if let Some(slot) = shared
        .runs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(i)
    {
        *slot = run;
    }
}

/// A pause in seconds (a number, after substitution); Python sleeps only on a truthy one.
fn pause(v: Option<&Value>) -> Option<Duration> {
    let s = v?.as_f64()?;
    (s > 0.0 && s.is_finite()).then(|| Duration::from_secs_f64(s))
}
