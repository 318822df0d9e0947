//! `chaosforge`: the command line. Exit codes are a contract: 0 hypothesis confirmed, 1 refuted,
//! 2 error (bad input, a fault that could not be injected or reverted), 3 halted by a policy.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chaosforge::engine::{Engine, Outcome, Progress, RunResult};
use chaosforge::plan::{self, Plan};
use chaosforge::source::Document;
use clap::{Parser, Subcommand};
use tokio::sync::watch;

mod agent_cmd;
mod ctk_cmd;
mod demo;
mod gameday_cmd;
mod halt_cmd;
mod history_cmd;
mod live;
mod metrics;
mod plan_cmd;
mod policy_cmd;
mod progress;
mod proxy_cmd;
mod recover_cmd;
mod report_cmd;
mod run_cmd;
mod runs_cmd;

/// Prove, with real faults and real measurements, that a system survives what production throws
/// at it.
#[derive(Debug, Parser)]
#[command(name = "chaosforge", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct StateArgs {
    /// Where journals live [default: $XDG_STATE_HOME/chaosforge or ~/.local/state/chaosforge]
    #[arg(long, env = "CHAOSFORGE_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum AgentsAction {
    /// Whether each agent answers, its version, capabilities (the same probe as local runs)
    /// and the faults it holds; exit 2 if one is unreachable
    Status {
        /// An agent's URL, `https://host:port` (repeat for several)
        #[arg(long, value_name = "URL", required_unless_present = "inventory")]
        agent: Vec<String>,
        /// Every agent in an inventory file's `agents:` (each with its own token variable and
        /// fingerprint)
        #[arg(long, value_name = "FILE")]
        inventory: Option<PathBuf>,
        /// The environment variable holding the agents' token
        #[arg(long, default_value = "CHAOSFORGE_AGENT_TOKEN", value_name = "VAR")]
        token_env: String,
        /// The pinned fingerprint of each self-signed agent, in the order of `--agent`
        #[arg(long, value_name = "SHA256")]
        fingerprint: Vec<String>,
        /// JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check experiment (and game day) files; report every problem as file:line:col: field:
    /// message (exit 2)
    Validate {
        /// Experiment or game day files (YAML or JSON)
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show what a run would do: targets chosen, faults, phases; injects nothing
    Plan {
        /// Experiment file
        file: PathBuf,
        /// Seed for every random choice (overrides the file's)
        #[arg(long)]
        seed: Option<u64>,
        #[command(flatten)]
        policy: policy_cmd::PolicyArgs,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Run experiments: validate, baseline, inject, observe, recover (several files run at once)
    Run {
        /// Experiment files; several run concurrently, each with its own journal
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Seed for every random choice (overrides the file's)
        #[arg(long)]
        seed: Option<u64>,
        #[command(flatten)]
        state: StateArgs,
        /// Also write the report as JSON to this file (an array of them for several files);
        /// the same as `--report json:PATH`
        #[arg(long, value_name = "PATH")]
        report_json: Option<PathBuf>,
        /// Also write the report to PATH in FORMAT (text, json, md, html, junit); repeatable.
        /// Several files make one document (one JUnit suite per experiment)
        #[arg(long = "report", value_name = "FORMAT:PATH", value_parser = report_cmd::parse_target)]
        reports: Vec<report_cmd::ReportTarget>,
        #[command(flatten)]
        metrics: metrics::MetricsArgs,
        #[command(flatten)]
        policy: policy_cmd::PolicyArgs,
        /// When another run holds a target, wait for it (at most TIMEOUT) instead of refusing
        #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, require_equals = true,
              default_missing_value = "forever")]
        wait_for_targets: Option<String>,
        /// After this long without a heartbeat (beats every 1s), `recover` reverts the faults
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
        heartbeat_timeout: std::time::Duration,
        /// Show the run live on the terminal (phase, faults, monitors, verdicts); `q` halts it.
        /// Without a terminal on stdout, the usual progress lines
        #[arg(long)]
        live: bool,
        #[command(flatten)]
        ctk: Box<ctk_cmd::CtkArgs>,
    },
    /// Convert a Chaos Toolkit experiment into the nearest chaosforge experiment, listing what
    /// could not be carried over (exit 1 when the result needs editing before it runs)
    Convert {
        /// The Chaos Toolkit experiment (JSON or YAML)
        file: PathBuf,
        /// Write the experiment here instead of stdout
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// Run a game day: scenarios in order and in parallel groups, with roles, a start time and
    /// pauses; one combined report (exit: the worst scenario's, 3 when halted)
    Gameday {
        /// The game day file (YAML or JSON)
        file: PathBuf,
        /// Start at once instead of waiting for the file's `start`
        #[arg(long)]
        now: bool,
        /// Seed for every scenario's random choices (overrides the files')
        #[arg(long)]
        seed: Option<u64>,
        #[command(flatten)]
        state: StateArgs,
        /// Also write the combined report as JSON to this file
        #[arg(long, value_name = "PATH")]
        report_json: Option<PathBuf>,
        /// Also write the scenarios' reports to PATH in FORMAT (text, json, md, html, junit; one
        /// document, one JUnit suite per scenario); repeatable
        #[arg(long = "report", value_name = "FORMAT:PATH", value_parser = report_cmd::parse_target)]
        reports: Vec<report_cmd::ReportTarget>,
    },
    /// Approve an experiment file's current content for runs that require an approval
    Approve {
        /// Experiment file
        file: PathBuf,
        /// The approver (one of its `policies.approval.approvers`)
        #[arg(long = "as", value_name = "NAME")]
        as_name: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Make live runs revert every fault and stop (exit 3), and wait until they have
    Halt {
        /// The run's id, or its start
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        run: Option<String>,
        /// Every live run on this machine (under the state directory)
        #[arg(long)]
        all: bool,
        /// How long to wait for the runs to finish reverting
        #[arg(long, value_name = "DURATION", default_value = "10s",
              value_parser = |s: &str| chaosforge::units::parse_duration(s).map_err(|e| e.to_string()))]
        timeout: std::time::Duration,
        #[command(flatten)]
        state: StateArgs,
    },
    /// The audit log of every run on this machine (`audit.jsonl` in the state directory)
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Revert every fault that a crashed, killed or stuck (not heartbeating) run left behind
    Recover {
        #[command(flatten)]
        state: StateArgs,
        /// Keep watching (until SIGINT/SIGTERM): recover again every interval
        #[arg(long)]
        watch: bool,
        /// How often `--watch` looks
        #[arg(long, value_name = "DURATION", default_value = "1s", requires = "watch",
              value_parser = duration)]
        interval: std::time::Duration,
    },
    /// List the runs under the state directory: short id, start, experiment, outcome
    Runs {
        #[command(flatten)]
        state: StateArgs,
    },
    /// Rebuild a run's or a game day's report from its journals (several make one document)
    Report {
        /// A run id, a unique prefix of one (as `runs` shows), a journal file, or a game day id
        #[arg(required = true)]
        runs: Vec<String>,
        #[command(flatten)]
        state: StateArgs,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: report_cmd::ReportFormat,
        /// Write the report to this file instead of stdout
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Runs over time, MTTR, MTBF and the resilience score (docs/resilience-score.md)
    History {
        /// Re-import every journal into the history database (repairs a corrupt one)
        #[arg(long)]
        rebuild: bool,
        /// Only this experiment
        #[arg(long, value_name = "NAME")]
        experiment: Option<String>,
        /// Only runs whose faults targeted this service (target label `service`)
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
        /// Only runs started within this long (`30d`)
        #[arg(long, value_name = "DURATION", value_parser = duration)]
        since: Option<std::time::Duration>,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Serve the Toxiproxy-compatible HTTP API and fault proxies
    Proxy(proxy_cmd::ProxyArgs),
    /// Host agent for remote faults: runs this host's faults for runners elsewhere, over HTTPS
    /// with a bearer token, each under a lease the runner renews (docs/agent.md)
    Agent(agent_cmd::AgentArgs),
    /// Remote agents: `agents status --agent URL …`
    Agents {
        #[command(subcommand)]
        action: AgentsAction,
    },
    /// Print the JSON Schema of the experiment file
    Schema,
    /// Internal: a stress worker process (spawned by resource faults, placed in their cgroup)
    #[command(hide = true, name = "__stress-worker")]
    StressWorker {
        /// The worker's job, as JSON (`chaosforge::fault::stress::WorkerSpec`)
        spec: String,
    },
    /// Start small systems on loopback and run the mission's scenarios against them
    Demo {
        #[command(flatten)]
        state: StateArgs,
        /// Run only scenario N (1, 2 or 3); the summary (4) always ends the demo
        #[arg(long, value_name = "N")]
        only: Option<u8>,
        /// List the scenarios and exit
        #[arg(long)]
        list: bool,
        /// Where to write the HTML report of the demo's runs
        #[arg(long, value_name = "PATH", default_value = "demo-report.html")]
        report: PathBuf,
    },
    /// Internal: a service of the demo's systems, run as its own process
    #[command(hide = true, name = "demo-service")]
    DemoService {
        /// Which service (`db`)
        #[arg(value_parser = ["db"])]
        service: String,
        /// Loopback port to listen on (0: any free one; it prints `listening ADDR`)
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Run on this CPU only
        #[arg(long)]
        cpu: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditAction {
    /// Check the hash chain; name the first line removed, edited or moved (exit 1)
    Verify {
        #[command(flatten)]
        state: StateArgs,
    },
}

/// Output format of `history`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
    /// One self-contained page with the charts
    Html,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHAOSFORGE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(dispatch(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(cmd: Command) -> anyhow::Result<u8> {
    match cmd {
        Command::Validate { files } => Ok(validate(&files)),
        Command::Plan {
            file,
            seed,
            policy,
            state,
        } => {
            let state = state_dir(state).ok();
            Ok(show_plan(&file, seed, &policy, state.as_deref()))
        }
        Command::Approve {
            file,
            as_name,
            state,
        } => policy_cmd::approve(&file, &as_name, &state_dir(state)?),
        Command::Run {
            files,
            seed,
            state,
            report_json,
            mut reports,
            wait_for_targets,
            heartbeat_timeout,
            metrics: metrics_args,
            policy,
            live,
            ctk,
        } => {
            // `--report-json PATH` is `--report json:PATH`, kept for the scripts that use it.
            if let Some(path) = report_json {
                reports.insert(
                    0,
                    report_cmd::ReportTarget {
                        format: report_cmd::ReportFormat::Json,
                        path,
                    },
                );
            }
            // Each file is read and parsed once, here: whether it is a Chaos Toolkit file is
            // seen from the same tree the run compiles.
            let docs: Vec<_> = files.iter().map(|f| Document::read(f)).collect();
            if docs
                .iter()
                .any(|d| d.as_ref().is_ok_and(chaosforge::ctk::is_ctk))
            {
                let [file] = files.as_slice() else {
                    anyhow::bail!("Chaos Toolkit experiments run one at a time: give one file");
                };
                return ctk_cmd::run(file, &ctk, &state_dir(state)?, &reports).await;
            }
            run_cmd::run(run_cmd::RunArgs {
                files,
                docs,
                seed,
                state_dir: state_dir(state)?,
                reports,
                wait_for_targets,
                heartbeat: chaosforge::deadman::Heartbeat::with_timeout(heartbeat_timeout)
                    .map_err(|e| anyhow::anyhow!("--heartbeat-timeout: {e}"))?,
                metrics: metrics_args,
                policy,
                live,
            })
            .await
        }
        Command::Convert { file, output } => ctk_cmd::convert(&file, output.as_deref()),
        Command::Gameday {
            file,
            now,
            seed,
            state,
            report_json,
            reports,
        } => {
            gameday_cmd::run(gameday_cmd::GameDayArgs {
                file,
                now,
                seed,
                state_dir: state_dir(state)?,
                report_json,
                reports,
            })
            .await
        }
        Command::Halt {
            run,
            all,
            timeout,
            state,
        } => halt_cmd::halt(all, run.as_deref(), &state_dir(state)?, timeout).await,
        Command::Audit {
            action: AuditAction::Verify { state },
        } => halt_cmd::audit_verify(&state_dir(state)?),
        Command::Recover {
            state,
            watch,
            interval,
        } => recover_cmd::recover(&state_dir(state)?, watch.then_some(interval)).await,
        Command::Runs { state } => runs_cmd::list(&state_dir(state)?),
        Command::Report {
            runs,
            state,
            format,
            output,
        } => report_cmd::report(&runs, state_dir(state).ok(), format, output.as_deref()),
        Command::History {
            rebuild,
            experiment,
            service,
            since,
            format,
            state,
        } => history_cmd::history(
            &state_dir(state)?,
            rebuild,
            experiment.as_deref(),
            service.as_deref(),
            since,
            format,
        ),
        Command::Schema => {
            let schema = schemars_schema();
            println!("{schema}");
            Ok(0)
        }
        Command::Demo {
            state,
            only,
            list,
            report,
        } => demo::run(&state_dir(state)?, signals()?, only, list, &report).await,
        Command::DemoService { port, cpu, .. } => demo::db::serve_db(port, cpu).await,
        Command::Proxy(args) => proxy_cmd::run(args).await,
        Command::Agent(args) => {
            let state = state_dir(StateArgs {
                state_dir: args.state_dir(),
            })?;
            agent_cmd::run(args, state).await
        }
        Command::Agents {
            action:
                AgentsAction::Status {
                    agent,
                    inventory,
                    token_env,
                    fingerprint,
                    json,
                },
        } => {
            let mut agents: Vec<agent_cmd::AgentAddr> = agent
                .iter()
                .enumerate()
                .map(|(i, url)| agent_cmd::AgentAddr {
                    url: url.clone(),
                    token_env: token_env.clone(),
                    fingerprint: fingerprint.get(i).cloned(),
                })
                .collect();
            if let Some(f) = inventory {
                agents.extend(agent_cmd::inventory_agents(&f)?);
            }
            agent_cmd::status(&agents, json).await
        }
        Command::StressWorker { spec } => {
            let spec: chaosforge::fault::stress::WorkerSpec =
                serde_json::from_str(&spec).context("reading the worker spec")?;
            chaosforge::fault::stress::run_worker(spec).await?;
            Ok(0)
        }
    }
}

fn schemars_schema() -> String {
    chaosforge::spec::json_schema()
}

/// Loads and compiles a file, printing every diagnostic; `None` when it is invalid.
fn load(file: &Path, seed: Option<u64>) -> Option<Plan> {
    load_parsed(file, Document::read(file), seed)
}

/// [`load`] of a file already read and parsed (`doc`).
fn load_parsed(
    file: &Path,
    doc: Result<Document, chaosforge::diag::Diagnostics>,
    seed: Option<u64>,
) -> Option<Plan> {
    match doc.and_then(|doc| plan::load_document_here(&doc, seed)) {
        Ok(plan) => {
            for w in plan.warnings.iter() {
                eprintln!("warning: {w}");
            }
            Some(plan)
        }
        Err(diags) => {
            eprint!("{diags}");
            eprintln!(
                "error: {} problem{} in {}; nothing was injected",
                diags.len(),
                if diags.len() == 1 { "" } else { "s" },
                file.display()
            );
            None
        }
    }
}

fn validate(files: &[PathBuf]) -> u8 {
    let mut bad = 0usize;
    for f in files {
        // Read and parsed once; what kind of file it is is seen from the tree.
        let doc = match Document::read(f) {
            Ok(doc) => doc,
            Err(d) => {
                bad += 1;
                eprint!("{d}");
                continue;
            }
        };
        if chaosforge::ctk::is_ctk(&doc) {
            bad += usize::from(!ctk_cmd::validate(f));
            continue;
        }
        if chaosforge::gameday::is_gameday(&doc) {
            bad += usize::from(!gameday_cmd::validate(f, &doc));
            continue;
        }
        match plan::load_document(&doc, Some(0)) {
            Ok(p) => println!(
                "{}: valid ({} target{}, {} monitor{}, {} fault{})",
                f.display(),
                p.targets.len(),
                plural(p.targets.len()),
                p.monitors.len(),
                plural(p.monitors.len()),
                p.faults.len(),
                plural(p.faults.len())
            ),
            Err(d) => {
                bad += 1;
                eprint!("{d}");
            }
        }
    }
    if bad > 0 {
        eprintln!(
            "error: {bad} of {} file{} invalid",
            files.len(),
            plural(files.len())
        );
        2
    } else {
        0
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn show_plan(
    file: &Path,
    seed: Option<u64>,
    policy: &policy_cmd::PolicyArgs,
    state: Option<&Path>,
) -> u8 {
    let Some(p) = load(file, seed) else { return 2 };
    let verdicts = match policy_cmd::context(file, policy, state) {
        Ok(rc) => chaosforge::plan::check_run(&p, &rc),
        Err(e) => {
            eprintln!("error: {e:#}");
            return 2;
        }
    };
    println!("experiment {}", p.name);
    println!("seed       {}", plan_cmd::seed_line(&p));
    println!("hypothesis {}", p.title);
    plan_cmd::print_targets(&p);
    println!(
        "phases     baseline {}, inject {}, recover within {}",
        chaosforge::units::format_duration(p.phases.baseline),
        chaosforge::units::format_duration(p.phases.inject),
        chaosforge::units::format_duration(p.phases.recover_within)
    );
    for f in &p.faults {
        println!(
            "fault      {}: {} on {} (scope {})",
            f.name,
            f.kind.describe(),
            f.targets.join(", "),
            f.scope
        );
        if let Some(why) = f.kind.irreversible() {
            println!("           irreversible: {why}");
        }
    }
    for m in &p.monitors {
        let exp: Vec<&str> = m.expect.iter().map(|e| e.text.as_str()).collect();
        println!("monitor    {}: expect {}", m.name, exp.join(", "));
    }
    policy_cmd::print(&verdicts);
    println!("nothing was injected (plan only)");
    0
}

/// Runs a plan with a progress display and SIGINT/SIGTERM wired to a halt.
/// Runs a plan with a progress display; `rx` (from [`signals`]) turning true halts it.
/// With `metrics`, the progress and the outcome also go to its `/metrics`.
pub(crate) async fn run(
    plan: &Plan,
    state_dir: &Path,
    rx: watch::Receiver<bool>,
    metrics: Option<&metrics::Server>,
) -> anyhow::Result<RunResult> {
    if plan.seed_random {
        eprintln!("seed {}", plan_cmd::seed_line(plan));
    }
    let ui = progress::Ui::new(std::io::stderr().is_terminal());
    let ui2 = ui.clone();
    let feed = metrics.map(metrics::Server::metrics);
    let engine = Engine::new(Arc::new(chaosforge_proxy::InProcessBackend), state_dir)
        .with_progress(Arc::new(move |p: &Progress| {
            ui2.update(p);
            if let Some(m) = &feed {
                m.update(p);
            }
        }));
    let result = engine.run(plan, rx).await;
    ui.finish();
    if let Some(m) = metrics {
        m.metrics().finish(result.as_ref().ok().map(|r| &r.outcome));
    }
    Ok(result?)
}

/// One watcher for the whole process: SIGINT, SIGTERM or SIGHUP (a closed terminal) turns the
/// returned flag on, which halts runs (faults reverted, journal closed); a second signal exits at
/// once.
pub(crate) fn signals() -> anyhow::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = watch::channel(false);
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
        };
        chaosforge::engine::note_halt_signal(name);
        eprintln!("\n{name} received: reverting every fault before exiting (again to force quit)…");
        let _ = tx.send(true);
        // A second signal means the user wants out now; the journal still knows what is open.
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        live::restore_if_active();
        eprintln!("forced exit: faults may still be active; run `chaosforge recover`");
        std::process::exit(130);
    });
    Ok(rx)
}

/// A duration argument (`250ms`, `5s`).
fn duration(s: &str) -> Result<std::time::Duration, String> {
    chaosforge::units::parse_duration(s).map_err(|e| e.to_string())
}

fn state_dir(s: StateArgs) -> anyhow::Result<PathBuf> {
    if let Some(d) = s.state_dir {
        return Ok(d);
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("chaosforge"));
    }
    let home = std::env::var_os("HOME")
        .context("neither --state-dir, CHAOSFORGE_STATE_DIR, XDG_STATE_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/state/chaosforge"))
}

/// What `run` prints for an outcome, for the demo.
pub(crate) fn outcome_word(o: &Outcome) -> &'static str {
    match o {
        Outcome::Confirmed => "confirmed",
        Outcome::Refuted { .. } => "refuted",
        Outcome::NotSteady { .. } => "not steady",
        Outcome::Halted { .. } => "halted",
        Outcome::Errored { .. } => "error",
    }
}
