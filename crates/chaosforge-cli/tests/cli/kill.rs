//! `kill` of a whole process group and of a whole cgroup: every process in it dies, nothing
//! outside it does, and a group or cgroup holding chaosforge itself (or the root cgroup) is
//! refused before anything is sent.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chaosforge::fault::process::{KillFault, resolve};
use chaosforge::fault::{Fault, InjectCx};
use chaosforge::journal::{self, FaultId, Journal};
use chaosforge::plan::{KillReach, ProcessSelector};

use crate::support::{
    Dir, EchoServer, TestCgroup, Victim, alive, cgroup1_root, cgroup2_root, run_exit, wait_for,
};

/// A shell with two `sleep` children; the shell and its children are killed and reaped when
/// dropped, whatever the test did.
struct Family {
    shell: Child,
    children: Vec<i32>,
}

impl Family {
    /// In a process group of its own; with `cgroup`, the shell joins it before forking.
    fn start(cgroup: Option<&Path>) -> Family {
        let join = cgroup
            .map(|c| format!("echo $$ > {}/cgroup.procs; ", c.display()))
            .unwrap_or_default();
        let shell = Command::new("sh")
            .arg("-c")
            .arg(format!("{join}sleep 120 & sleep 120 & wait"))
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = shell.id() as i32;
        let mut children = Vec::new();
        assert!(
            wait_for(Duration::from_secs(5), || {
                children = children_of(pid);
                children.len() == 2
            }),
            "the shell never started its children"
        );
        Family { shell, children }
    }

    fn pid(&self) -> i32 {
        self.shell.id() as i32
    }

    /// Every member (shell and children) is dead; the shell died of `signal`.
    fn all_dead(&mut self, signal: i32) {
        let status = self.shell.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(signal),
            "the shell died of the signal"
        );
        assert!(
            wait_for(Duration::from_secs(5), || self
                .children
                .iter()
                .all(|c| !alive(*c))),
            "every child died"
        );
    }
}

impl Drop for Family {
    fn drop(&mut self) {
        for c in &self.children {
            if let Some(p) = rustix::process::Pid::from_raw(*c) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

/// The live children of `pid`, from `/proc/*/stat`.
fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                return false;
            };
            let after = &stat[stat.rfind(')').unwrap_or(0) + 1..];
            let f: Vec<&str> = after.split_whitespace().collect();
            f.first() != Some(&"Z") && f.get(1) == Some(&pid.to_string().as_str())
        })
        .collect()
}

fn kill_experiment(pid: i32, kill: &str, up: &EchoServer) -> String {
    format!(
        r#"apiVersion: chaosforge/v1
name: kill-many
targets: [{{ name: victim, process: {{ pid: {pid} }} }}]
hypothesis:
  monitors: [{{ name: port, tcp: {{ address: "{up}", interval: 50ms }}, expect: ["availability >= 90%"] }}]
faults: [{{ name: kill-all, kill: {kill}, target: {{ select: {{ name: victim }} }} }}]
phases: {{ baseline: 300ms, inject: 300ms, recover_within: 2s }}
policies: {{ allow_irreversible: true }}
"#,
        up = up.addr
    )
}

#[test]
fn kill_group_kills_every_process_of_the_group_and_nothing_else() {
    let up = EchoServer::start();
    let dir = Dir::new();
    let mut family = Family::start(None);
    let bystander = Victim::start();
    let exp = dir.write(
        "group.yaml",
        &kill_experiment(family.pid(), "{ group: true }", &up),
    );
    let stdout = run_exit(&exp, &dir, 0);
    assert!(
        stdout.contains(&format!("SIGKILL sent to process group {}", family.pid())),
        "{stdout}"
    );
    family.all_dead(9);
    assert!(
        alive(bystander.pid()),
        "a process outside the group lives on"
    );
}

/// The hierarchy `kill: { cgroup: true }` picks first: the unified one.
#[test]
fn kill_cgroup_kills_every_process_of_a_cgroup_and_nothing_else() {
    let Some(root) = cgroup2_root() else {
        eprintln!("no cgroup v2 hierarchy here; skipped");
        return;
    };
    let up = EchoServer::start();
    let dir = Dir::new();
    let mut family = Family::start(None);
    let cg = TestCgroup::new(&root, "kill-v2");
    // Moved after it forked: the children stay where they were, outside the cgroup.
    let outside = std::mem::take(&mut family.children);
    let mut inside = Family::start(Some(&cg.path));
    assert_eq!(cg.procs().len(), 3, "the shell and both children are in it");
    let exp = dir.write(
        "cgroup.yaml",
        &kill_experiment(inside.pid(), "{ cgroup: true }", &up),
    );
    let stdout = run_exit(&exp, &dir, 0);
    assert!(
        stdout.contains("SIGKILL sent to every process in cgroup"),
        "{stdout}"
    );
    inside.all_dead(9);
    assert!(cg.procs().is_empty());
    assert!(
        outside.iter().all(|p| alive(*p)) && alive(family.pid()),
        "processes outside the cgroup live on"
    );
    family.children = outside;
}

fn inject_kill(pid: i32, reach: KillReach, signal: (i32, &str)) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let j = Journal::create(state.path(), &journal::new_run_id()).unwrap();
    let cx = InjectCx {
        journal: &j,
        id: FaultId(0),
        name: "kill",
    };
    let f = KillFault {
        target: "victim".into(),
        process: resolve(&ProcessSelector::Pid(pid)).unwrap(),
        signal: signal.0,
        signal_name: signal.1.into(),
        reach,
    };
    let r = rt.block_on(async {
        match f.inject(&cx).await {
            Ok(g) => {
                let _ = g.forget();
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    });
    let events = journal::read(j.path()).unwrap();
    if r.is_err() {
        assert!(events.is_empty(), "a refusal journals nothing: {events:?}");
    }
    r.map(|()| format!("{events:?}"))
}

#[test]
fn on_v1_a_cgroup_is_killed_process_by_process_with_any_signal() {
    let Some(root) = cgroup1_root("pids") else {
        eprintln!("no v1 `pids` hierarchy here; skipped");
        return;
    };
    let cg = TestCgroup::new(&root, "kill-v1");
    let mut inside = Family::start(Some(&cg.path));
    // The unified hierarchy (if any) has the family at its root, so the v1 cgroup is the one.
    let journaled = inject_kill(inside.pid(), KillReach::Cgroup, (15, "SIGTERM")).unwrap();
    assert!(
        journaled.contains(&cg.path.display().to_string()),
        "{journaled}"
    );
    inside.all_dead(15);
    assert!(wait_for(Duration::from_secs(2), || cg.procs().is_empty()));
}

#[test]
fn a_group_or_cgroup_holding_chaosforge_or_the_root_cgroup_is_refused() {
    // A victim in this test's own process group: killing the group would kill the test.
    let mut same_group = Command::new("sleep").arg("120").spawn().unwrap();
    let err = inject_kill(same_group.id() as i32, KillReach::Group, (9, "SIGKILL")).unwrap_err();
    assert!(err.contains("holds chaosforge itself"), "{err}");
    // A victim whose cgroups are all either the root or the ones this test runs in.
    let err = inject_kill(same_group.id() as i32, KillReach::Cgroup, (9, "SIGKILL")).unwrap_err();
    assert!(
        err.contains("root cgroup") || err.contains("holds chaosforge itself"),
        "{err}"
    );
    assert!(alive(same_group.id() as i32), "nothing was sent");
    let _ = same_group.kill();
    let _ = same_group.wait();
}
