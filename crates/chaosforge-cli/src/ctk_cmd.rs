//! `chaosforge run|validate ctk.json`: Chaos Toolkit experiment files, run as chaostoolkit 1.19
//! runs them (same flags, same `journal.json`, same exit codes), with our journal beside so that
//! `recover` replays the rollbacks of a killed run and every report format works.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use chaosforge::ctk::flow::{self, Dry, Hooks, Interrupt, Options, Window};
use chaosforge::ctk::journal::{CtkJournal, Run, RunStatus, Status};
use chaosforge::ctk::record::{self, Recorder};
use chaosforge::journal::{self, Event, Journal};
use chaosforge::source::Document;
use serde_json::Value;
use tokio::sync::watch;

/// chaostoolkit's `run` options, for Chaos Toolkit files (ignored for chaosforge files).
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Chaos Toolkit files")]
pub(crate) struct CtkArgs {
    /// Where to write CTK's journal.json [default: ./journal.json]
    #[arg(long, value_name = "PATH")]
    pub journal_path: Option<PathBuf>,
    /// When the steady-state hypothesis runs
    #[arg(long, value_name = "STRATEGY", value_parser = [
        "default", "before-method-only", "after-method-only", "during-method-only",
        "continuously", "continously"])]
    pub hypothesis_strategy: Option<String>,
    /// Seconds between two runs of a during-method or continuous hypothesis
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub hypothesis_frequency: f64,
    /// A during-method or continuous hypothesis that deviates once fails the run
    #[arg(long)]
    pub fail_fast: bool,
    /// When rollbacks run (CTK's default skips them when the run failed or was interrupted)
    #[arg(long, value_name = "STRATEGY", value_parser = ["default", "always", "never", "deviated"])]
    pub rollback_strategy: Option<String>,
    /// Run without executing probes, actions, activities or pauses
    #[arg(long, value_name = "WHAT", value_parser = ["probes", "actions", "activities", "pause"])]
    pub dry: Option<String>,
    /// Configuration value: key=value or key:type=value (int, float, bytes); repeatable
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// JSON/YAML file of configuration and secrets values, or a .env file; repeatable
    #[arg(long, value_name = "PATH")]
    pub var_file: Vec<PathBuf>,
    /// Exit codes: `ctk` (0 completed and not deviated, else 1) or `chaosforge` (0 confirmed,
    /// 1 deviated, 2 not steady or error, 3 interrupted)
    #[arg(long, value_name = "STYLE", default_value = "ctk", value_parser = ["ctk", "chaosforge"])]
    pub exit_codes: String,
}

/// `validate` of a CTK file: whether it is valid (diagnostics printed).
pub(crate) fn validate(file: &Path) -> bool {
    match chaosforge::ctk::load(file) {
        Ok((_, exp, warnings)) => {
            for w in &warnings.0 {
                eprintln!("warning: {w}");
            }
            let n = |v: usize| if v == 1 { "" } else { "s" };
            let probes = exp
                .steady_state_hypothesis
                .as_ref()
                .map_or(0, |h| h.probes.len());
            println!(
                "{}: valid Chaos Toolkit experiment ({probes} steady-state probe{}, {} method activit{}, {} rollback{})",
                file.display(),
                n(probes),
                exp.method.len(),
                if exp.method.len() == 1 { "y" } else { "ies" },
                exp.rollbacks.len(),
                n(exp.rollbacks.len()),
            );
            true
        }
        Err(d) => {
            eprint!("{d}");
            false
        }
    }
}

/// `run` of a CTK file; the exit code.
pub(crate) async fn run(
    file: &Path,
    args: &CtkArgs,
    state_dir: &Path,
    reports: &[crate::report_cmd::ReportTarget],
) -> anyhow::Result<u8> {
    let chaosforge_codes = args.exit_codes == "chaosforge";
    let invalid: u8 = if chaosforge_codes { 2 } else { 1 };
    let exp = match chaosforge::ctk::load(file) {
        Ok((_, exp, warnings)) => {
            for w in &warnings.0 {
                eprintln!("warning: {w}");
            }
            exp
        }
        Err(d) => {
            eprint!("{d}");
            eprintln!(
                "error: nothing was run: {} is not a valid experiment",
                file.display()
            );
            return Ok(invalid);
        }
    };
    let vars = match var_args(args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(invalid);
        }
    };
    for w in &vars.warnings {
        eprintln!("warning: {w}");
    }
    let cx = match chaosforge::ctk::config::Context::new(&exp, &vars) {
        Ok(cx) => Arc::new(cx),
        Err(errors) => {
            for e in errors {
                eprintln!("error: {}: {e}", file.display());
            }
            eprintln!("error: nothing was run");
            return Ok(invalid);
        }
    };

    // Strategies: the file's `runtime`, then the command line, as chaostoolkit reads them.
    let hypothesis = args
        .hypothesis_strategy
        .as_deref()
        .or(exp.runtime.hypothesis.strategy.as_deref())
        .unwrap_or("default");
    let rollbacks = args
        .rollback_strategy
        .as_deref()
        .or(exp.runtime.rollbacks.strategy.as_deref())
        .unwrap_or("default");
    let opts = Options {
        hypothesis: flow::HypothesisStrategy::parse(hypothesis)
            .with_context(|| format!("unknown hypothesis strategy `{hypothesis}`"))?,
        frequency: Some(args.hypothesis_frequency),
        fail_fast: args.fail_fast,
        rollbacks: flow::RollbackStrategy::parse(rollbacks)
            .with_context(|| format!("unknown rollback strategy `{rollbacks}`"))?,
        dry: args.dry.as_deref().and_then(Dry::parse),
    };

    let mut experiment = exp.raw.clone();
    if let Some(title) = experiment.get("title").cloned() {
        experiment["title"] = cx.substitute(&title);
    }
    let mut journal_experiment = record::redacted_experiment(&experiment);
    journal_experiment["dry"] = args.dry.clone().map_or(Value::Null, Value::String);

    // Our journal, first: the rollbacks go on record before the method may change anything.
    let run_id = journal::new_run_id();
    let ours = Journal::create(state_dir, &run_id).context("creating the run's journal")?;
    let file_text = file.display().to_string();
    ours.append_durable(&Event::RunStarted {
        run_id: run_id.clone(),
        started_at: jiff::Timestamp::now(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        plan: record::summary(
            &experiment,
            &file_text,
            std::time::Duration::from_secs_f64(args.hypothesis_frequency.max(0.0)),
        ),
    })
    .context("writing the run's journal")?;
    let replay = chaosforge::vocab::RevertSpec::CtkRollbacks {
        file: std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()),
        rollbacks: experiment
            .get("rollbacks")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        configuration: experiment
            .get("configuration")
            .cloned()
            .unwrap_or(Value::Null),
        vars: vars
            .configuration
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let recorder = Arc::new(Recorder::new(ours, replay));
    let hooks: Arc<dyn Hooks> = Arc::new(Progress {
        recorder: recorder.clone(),
    });
    eprintln!("Running experiment: {}", py_str(experiment.get("title")));
    eprintln!("Steady-state strategy: {hypothesis}");
    eprintln!("Rollbacks strategy: {rollbacks}");

    let interrupt = signals()?;
    let providers: Arc<dyn flow::Providers> = Arc::new(chaosforge::ctk::Providers::new(cx.clone()));
    let mut ctk = flow::run(
        &experiment,
        journal_experiment,
        providers,
        opts,
        hooks,
        interrupt,
    )
    .await;
    redact(&mut ctk, &cx.secret_values());

    let status = ctk.status.unwrap_or(Status::Completed);
    let shown = if ctk.deviated {
        "deviated"
    } else {
        flow::status_word(status)
    };
    eprintln!("Experiment ended with status: {shown}");
    if ctk.deviated {
        eprintln!("The steady-state has deviated, a weakness may have been discovered");
    }
    let declared_rollbacks = experiment
        .get("rollbacks")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty());
    if declared_rollbacks
        && opts.rollbacks == flow::RollbackStrategy::Default
        && matches!(status, Status::Failed | Status::Interrupted)
    {
        eprintln!(
            "warning: the rollbacks were not played: Chaos Toolkit's default rollback strategy \
             skips them when a run is {}, which may leave the system as the method changed it; \
             run with `--rollback-strategy always` to have them played whatever happens",
            flow::status_word(status)
        );
    }

    let path = args
        .journal_path
        .clone()
        .unwrap_or_else(|| PathBuf::from("./journal.json"));
    let text = serde_json::to_string_pretty(&ctk).context("encoding journal.json")?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;

    let outcome = recorder.finish(&ctk);
    if recorder.write_ahead_failed() {
        eprintln!(
            "warning: the rollbacks could not be journaled before the method; a crash would \
             have left them for you to play by hand"
        );
    }
    let events = journal::read(recorder.journal().path()).context("reading the run's journal")?;
    match chaosforge::report::Report::from_events(&events) {
        Ok(report) => {
            crate::history_cmd::record(state_dir, &report);
            crate::report_cmd::write_targets(reports, std::slice::from_ref(&report), false)?;
        }
        Err(e) => eprintln!("warning: no report for this run: {e}"),
    }
    eprintln!(
        "journal: {} (CTK journal: {})",
        recorder.journal().path().display(),
        path.display()
    );
    Ok(if chaosforge_codes {
        outcome.exit_code() as u8
    } else {
        u8::from(!ctk.ok())
    })
}

fn var_args(args: &CtkArgs) -> anyhow::Result<chaosforge::ctk::config::Vars> {
    let mut vars = Vec::new();
    for v in &args.vars {
        vars.push(
            chaosforge::ctk::config::parse_var(v).map_err(|e| anyhow::anyhow!("--var {v}: {e}"))?,
        );
    }
    let files: Vec<&Path> = args.var_file.iter().map(PathBuf::as_path).collect();
    chaosforge::ctk::config::merge_vars(&vars, &files)
        .map_err(|e| anyhow::anyhow!("--var-file: {e}"))
}

/// SIGTERM, SIGINT and SIGUSR1 stop the run gracefully (rollbacks per strategy), SIGUSR2
/// without rollbacks; as chaoslib's `exit_signals`. Another signal stops the rollbacks.
fn signals() -> anyhow::Result<watch::Receiver<Option<Interrupt>>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = watch::channel(None);
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;
    let mut usr2 = signal(SignalKind::user_defined2()).context("installing the SIGUSR2 handler")?;
    tokio::spawn(async move {
        let (name, what) = tokio::select! {
            _ = term.recv() => ("SIGTERM", Interrupt::Graceful),
            _ = int.recv() => ("SIGINT", Interrupt::Graceful),
            _ = usr1.recv() => ("SIGUSR1", Interrupt::Graceful),
            _ = usr2.recv() => ("SIGUSR2", Interrupt::SkipRollbacks),
        };
        eprintln!("Received {name}: interrupting the experiment");
        let _ = tx.send(Some(what));
        // chaoslib's handlers stay in place: a later signal interrupts the rollbacks.
        loop {
            let (name, what) = tokio::select! {
                _ = term.recv() => ("SIGTERM", Interrupt::Graceful),
                _ = int.recv() => ("SIGINT", Interrupt::Graceful),
                _ = usr1.recv() => ("SIGUSR1", Interrupt::Graceful),
                _ = usr2.recv() => ("SIGUSR2", Interrupt::SkipRollbacks),
            };
            eprintln!("Received {name}: terminating now without the remaining rollbacks");
            let _ = tx.send(Some(what));
        }
    });
    Ok(rx)
}

/// Every secret value out of the outputs and exceptions (a server may echo a token back).
fn redact(ctk: &mut CtkJournal, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    let runs = ctk
        .run
        .iter_mut()
        .chain(ctk.rollbacks.iter_mut())
        .chain(
            ctk.steady_states
                .before
                .iter_mut()
                .flat_map(|s| s.probes.iter_mut()),
        )
        .chain(
            ctk.steady_states
                .after
                .iter_mut()
                .flat_map(|s| s.probes.iter_mut()),
        )
        .chain(
            ctk.steady_states
                .during
                .iter_mut()
                .flat_map(|s| s.probes.iter_mut()),
        );
    for r in runs {
        record::redact_strings(&mut r.output, secrets);
        if let Some(e) = &mut r.exception {
            for line in e.iter_mut() {
                let mut v = Value::String(std::mem::take(line));
                record::redact_strings(&mut v, secrets);
                *line = v.as_str().unwrap_or_default().to_string();
            }
        }
    }
}

fn py_str(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// chaostoolkit's log lines on stderr, and our journal.
struct Progress {
    recorder: Arc<Recorder>,
}

impl Progress {
    fn line(run: &Run) {
        let kind = run
            .activity
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("activity");
        let name = run
            .activity
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let mut kind = kind.to_string();
        if let Some(first) = kind.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        match run.status {
            Some(RunStatus::Succeeded) => eprintln!("{kind}: {name}"),
            Some(RunStatus::Failed) => eprintln!(
                "{kind}: {name}\n  => failed: {}",
                run.exception
                    .as_ref()
                    .and_then(|e| e.last())
                    .map_or("", |l| l.trim())
            ),
            None => eprintln!("{kind}: {name} (interrupted)"),
        }
    }
}

impl Hooks for Progress {
    fn hypothesis_starts(&self, window: Window) {
        if window != Window::During {
            eprintln!(
                "Steady-state hypothesis ({})",
                match window {
                    Window::Before => "before the method",
                    _ => "after the method",
                }
            );
        }
        self.recorder.hypothesis_starts(window);
    }

    fn probe_done(&self, window: Window, index: usize, run: &Run) {
        Self::line(run);
        if run.tolerance_met == Some(false) && run.status == Some(RunStatus::Succeeded) {
            eprintln!("  => not within its tolerance");
        }
        self.recorder.probe_done(window, index, run);
    }

    fn method_starts(&self) {
        eprintln!("Playing your experiment's method now...");
        self.recorder.method_starts();
    }

    fn rollbacks_decided(&self, played: bool, why: &str) {
        if played {
            eprintln!("Let's rollback...");
        } else {
            eprintln!("Rollbacks not played ({why})");
        }
        self.recorder.rollbacks_decided(played, why);
    }

    fn rollbacks_done(&self, interrupted: bool) {
        self.recorder.rollbacks_done(interrupted);
    }

    fn activity_done(&self, run: &Run) {
        Self::line(run);
        self.recorder.activity_done(run);
    }
}

/// `convert`: the nearest chaosforge experiment to a CTK file, on stdout or at `output`; what
/// was not carried over on stderr. Exit 0 when the result validates, 1 when it needs editing
/// first (it is written all the same), 2 when the file is not a CTK experiment.
pub(crate) fn convert(file: &Path, output: Option<&Path>) -> anyhow::Result<u8> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {name}"))?;
    let doc = match Document::parse(&name, &text) {
        Ok(d) => d,
        Err(d) => {
            eprint!("{d}");
            return Ok(2);
        }
    };
    if !chaosforge::ctk::is_ctk(&doc) {
        eprintln!(
            "error: {name} is not a Chaos Toolkit experiment (no title, method or steady-state-hypothesis)"
        );
        return Ok(2);
    }
    let raw: Value = match chaosforge::de::decode(&doc) {
        Ok(v) => v,
        Err(d) => {
            eprint!("{d}");
            return Ok(2);
        }
    };
    // `${…}` from the configuration where it resolves here; left as written otherwise.
    let cx = chaosforge::ctk::Experiment::from_value(&raw)
        .ok()
        .and_then(|e| chaosforge::ctk::Context::new(&e, &chaosforge::ctk::Vars::default()).ok());
    let resolve = |v: &Value| cx.as_ref().map_or_else(|| v.clone(), |cx| cx.substitute(v));
    let converted = chaosforge::ctk::convert::convert(&raw, &name, &resolve);
    if converted.not_carried.is_empty() {
        eprintln!("everything was carried over");
    } else {
        eprintln!("not carried over ({}):", converted.not_carried.len());
        for n in &converted.not_carried {
            eprintln!("  - {n}");
        }
    }
    let shown = output.map_or_else(|| "<converted>".to_string(), |p| p.display().to_string());
    match output {
        Some(p) => {
            std::fs::write(p, &converted.yaml).with_context(|| format!("writing {shown}"))?
        }
        None => print!("{}", converted.yaml),
    }
    let check = Document::parse(&shown, &converted.yaml)
        .and_then(|d| chaosforge::plan::load_document(&d, Some(0)).map(|_| ()));
    Ok(match check {
        Ok(()) => {
            eprintln!("{shown}: valid; run it with `chaosforge run {shown}`");
            0
        }
        Err(d) => {
            eprint!("{d}");
            eprintln!("{shown}: edit it before running (the problems above)");
            1
        }
    })
}
