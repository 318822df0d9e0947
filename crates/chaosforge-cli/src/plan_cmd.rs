//! What `chaosforge plan` adds to the plan itself: where the seed came from and the targets as
//! this machine resolves them now (read-only: a process target's pid and command line).

use chaosforge::fault::process as procfs;
use chaosforge::plan::{Plan, ProcessSelector, TargetKind};

/// `42 (random; pass --seed 42 to repeat)`, or just the seed when the file or `--seed` gave it.
pub(crate) fn seed_line(p: &Plan) -> String {
    if p.seed_random {
        format!("{0} (random; pass --seed {0} to repeat)", p.seed)
    } else {
        p.seed.to_string()
    }
}

/// One `target` line per target; a process target is looked up now, as `run` will at start.
pub(crate) fn print_targets(p: &Plan) {
    for t in &p.targets {
        let what = match &t.kind {
            TargetKind::Proxy { listen, upstream } => format!("proxy {listen} → {upstream}"),
            TargetKind::RemoteProxy { api, name } => format!("proxy `{name}` at {api}"),
            TargetKind::HttpProxy {
                listen, upstream, ..
            } => format!("HTTP proxy {listen} → {upstream}"),
            TargetKind::Host {
                netns: Some(ns),
                interface,
            } => format!(
                "network namespace {ns}{}",
                interface
                    .as_ref()
                    .map_or(String::new(), |i| format!(", interface {i}"))
            ),
            TargetKind::Host {
                netns: None,
                interface,
            } => format!(
                "the local host{}",
                interface
                    .as_ref()
                    .map_or(String::new(), |i| format!(", interface {i}"))
            ),
            TargetKind::Process(sel) => process(sel),
            TargetKind::Container(sel) => container(sel),
        };
        println!("target     {}: {what}", t.name);
    }
}

/// A container target, looked up on its engine as `run` will; the engine's answer when not.
fn container(sel: &chaosforge::fault::params::ContainerSelector) -> String {
    use chaosforge::fault::params::ContainerRef;
    let by = match &sel.by {
        ContainerRef::Name(n) => format!("name {n}"),
        ContainerRef::Id(i) => format!("id {i}"),
        ContainerRef::Label(l) => format!("label {l}"),
    };
    let socket = chaosforge::fault::container::socket_path(sel.socket.as_deref());
    // `plan` is synchronous code, possibly inside the CLI's runtime: a runtime of its own, on
    // a thread of its own, answers this one question without nesting runtimes.
    let found = std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| rt.block_on(chaosforge::fault::container::find(sel)))
        })
        .join()
        .unwrap_or_else(|_| Err("the lookup panicked".into()))
    });
    match found {
        Ok(c) => format!(
            "container {by} on {socket}: {} ({}), {}",
            c.name,
            c.id.get(..12).unwrap_or(&c.id),
            if c.running { "running" } else { "not running" }
        ),
        Err(e) => format!("container {by} on {socket}: not found now ({e})"),
    }
}

fn process(sel: &ProcessSelector) -> String {
    let by = match sel {
        ProcessSelector::Pid(pid) => format!("pid {pid}"),
        ProcessSelector::Pidfile(path) => format!("pidfile {path}"),
        ProcessSelector::Command(re) => format!("command /{re}/"),
    };
    match procfs::resolve(sel) {
        Ok(id) => format!(
            "process {} `{}` (by {by})",
            id.pid,
            procfs::cmdline_of(id.pid).unwrap_or_else(|| "?".into())
        ),
        // Not an error yet: the process may start before the run does, which checks again.
        Err(e) => format!("process by {by}, not found now: {e}"),
    }
}
