//! `freeze`, measured by progress: a victim that counts every 10 ms stops counting while its
//! cgroup is frozen and goes on after the thaw. Run on every freezer this machine has (the v1
//! `freezer` controller and the unified hierarchy's `cgroup.freeze` on a hybrid layout), for a
//! process in the root cgroup (moved into a cgroup made for the fault) and one in a cgroup of
//! its own (frozen in place), and after a SIGKILLed runner.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use chaosforge::fault::freeze::{FreezeFault, Freezer, freeze_cgroups, freezers};
use chaosforge::fault::process::resolve;
use chaosforge::fault::{Fault, InjectCx};
use chaosforge::journal::{self, FaultId, Journal};
use chaosforge::plan::ProcessSelector;
use chaosforge::testkit::assert_fault_compliance;

use crate::support::{
    Dir, EchoServer, PROBE_VICTIM, Probed, TestCgroup, cgroup_in, python, recover, signal,
    spawn_run, wait_for,
};

/// Thaws and removes, when dropped, the freeze cgroups process `pid` made for faults whose
/// names start with `label`, so that a failed test never leaves a frozen victim behind (which
/// could not even be reaped). Tests in this binary run in parallel: each names its own.
struct Thaw(u32, &'static str);

impl Drop for Thaw {
    fn drop(&mut self) {
        for cg in my_freeze_cgroups(self.0, self.1) {
            let _ = std::fs::write(cg.join("freezer.state"), "THAWED");
            let _ = std::fs::write(cg.join("cgroup.freeze"), "0");
            let root = cg.parent().unwrap();
            for pid in std::fs::read_to_string(cg.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
            {
                let _ = std::fs::write(root.join("cgroup.procs"), pid);
            }
            let _ = std::fs::remove_dir(&cg);
        }
    }
}

/// The freeze cgroups process `pid` made for faults whose names start with `label`.
fn my_freeze_cgroups(pid: u32, label: &str) -> Vec<PathBuf> {
    let prefix = format!("chaosforge-freeze-{pid}-{label}");
    freeze_cgroups()
        .into_iter()
        .filter(|c| {
            c.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .collect()
}

fn fault(pid: i32, freezer: &Freezer, tree: bool) -> FreezeFault {
    FreezeFault {
        target: "victim".into(),
        process: resolve(&ProcessSelector::Pid(pid)).unwrap(),
        tree,
        freezer: Some(freezer.clone()),
    }
}

/// The freezers here; the tests need at least one.
fn all_freezers() -> Vec<Freezer> {
    let f = freezers();
    assert!(!f.is_empty(), "no cgroup freezer on this machine");
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_complies_on_every_freezer_for_a_process_in_the_root_cgroup() {
    for freezer in all_freezers() {
        let victim = Probed::start("count");
        // Dropped before the victim: a frozen victim could not be reaped.
        let _thaw = Thaw(std::process::id(), "compliance");
        let home = cgroup_in(&freezer.root, victim.pid()).unwrap();
        assert_eq!(home, freezer.root, "the victim starts in the root cgroup");
        let f = fault(victim.pid(), &freezer, false);
        let dir = tempfile::tempdir().unwrap();
        // No progress over 200 ms (it counts every 10 ms) is the fault, seen from outside.
        assert_fault_compliance(&f, dir.path(), || async {
            !victim.progresses_async(Duration::from_millis(200)).await
        })
        .await;
        assert_eq!(
            cgroup_in(&freezer.root, victim.pid()).unwrap(),
            home,
            "{freezer:?}: the victim is back in its cgroup"
        );
        assert!(
            my_freeze_cgroups(std::process::id(), "compliance").is_empty(),
            "{freezer:?}: the fault's cgroup is removed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_in_a_cgroup_of_its_own_is_frozen_in_place_with_its_neighbours() {
    for freezer in all_freezers() {
        let victim = Probed::start("count");
        let neighbour = Probed::start("count");
        // Dropped before the victims: it thaws them first, or a frozen victim could not be
        // reaped.
        let cg = TestCgroup::new(&freezer.root, "freeze-in-place");
        cg.add(victim.pid());
        cg.add(neighbour.pid());
        let f = fault(victim.pid(), &freezer, false);
        let state = tempfile::tempdir().unwrap();
        let j = Journal::create(state.path(), &journal::new_run_id()).unwrap();
        let cx = InjectCx {
            journal: &j,
            id: FaultId(0),
            name: "in-place",
        };
        let guard = f.inject(&cx).await.unwrap();
        assert!(
            !victim.progresses(Duration::from_millis(200))
                && !neighbour.progresses(Duration::from_millis(10)),
            "{freezer:?}: the whole cgroup is frozen"
        );
        guard.revert().await.unwrap();
        assert!(victim.progresses(Duration::from_millis(200)));
        assert!(neighbour.progresses(Duration::from_millis(50)));
        let mut procs = cg.procs();
        procs.sort();
        let mut want = vec![victim.pid(), neighbour.pid()];
        want.sort();
        assert_eq!(procs, want, "{freezer:?}: nothing was moved");
        // Someone else's freeze is not ours to undo: a frozen cgroup is refused.
        std::fs::write(
            cg.path.join(if freezer.v2 {
                "cgroup.freeze"
            } else {
                "freezer.state"
            }),
            if freezer.v2 { "1" } else { "FROZEN" },
        )
        .unwrap();
        let cx = InjectCx {
            journal: &j,
            id: FaultId(1),
            name: "in-place",
        };
        let err = f.inject(&cx).await.unwrap_err().to_string();
        assert!(err.contains("frozen already"), "{err}");
    }
    // (Each `cg` thawed its victims when dropped.)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_moves_the_children_along_and_without_it_they_go_on() {
    let freezer = all_freezers().remove(0);
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status");
    // A shell whose child counts: freezing the shell alone does not stop the count.
    let parent = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" -c "$1" count > "$2" & wait"#)
        .arg(python())
        .arg(PROBE_VICTIM)
        .arg(&status)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let parent = Family(parent);
    let _thaw = Thaw(std::process::id(), "tree-");
    let count = || -> Option<u64> {
        std::fs::read_to_string(&status)
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let progresses = || {
        let a = count();
        std::thread::sleep(Duration::from_millis(200));
        count() > a
    };
    assert!(wait_for(Duration::from_secs(10), || count().is_some()));
    let state = tempfile::tempdir().unwrap();
    let j = Journal::create(state.path(), &journal::new_run_id()).unwrap();
    for (id, tree) in [(0, false), (1, true)] {
        let cx = InjectCx {
            journal: &j,
            id: FaultId(id),
            name: "tree-",
        };
        let guard = fault(parent.0.id() as i32, &freezer, tree)
            .inject(&cx)
            .await
            .unwrap();
        assert_eq!(progresses(), !tree, "tree: {tree}");
        guard.revert().await.unwrap();
        assert!(progresses(), "thawed (tree: {tree})");
    }
}

/// A shell and its children, all killed when dropped.
struct Family(std::process::Child);

impl Drop for Family {
    fn drop(&mut self) {
        for child in children_of(self.0.id() as i32) {
            if let Some(p) = rustix::process::Pid::from_raw(child) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
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

#[test]
fn recover_thaws_a_freeze_left_by_a_killed_runner_and_removes_its_cgroup() {
    let victim = Probed::start("count");
    let up = EchoServer::start();
    let dir = Dir::new();
    let freezer = all_freezers().remove(0);
    let home = cgroup_in(&freezer.root, victim.pid()).unwrap();
    let exp = dir.write(
        "freeze.yaml",
        &format!(
            r#"apiVersion: chaosforge/v1
name: freeze-crash
targets: [{{ name: victim, process: {{ pid: {pid} }} }}]
hypothesis:
  monitors: [{{ name: port, tcp: {{ address: "{up}", interval: 100ms }}, expect: ["availability >= 90%"] }}]
faults: [{{ name: ice, freeze: {{}}, target: {{ select: {{ name: victim }} }} }}]
phases: {{ baseline: 300ms, inject: 60s, recover_within: 5s }}
"#,
            pid = victim.pid(),
            up = up.addr
        ),
    );
    let count = || victim.read().map_or(0, |(n, _)| n);
    let steps = |window: Duration| {
        let a = count();
        std::thread::sleep(window);
        count() - a
    };
    let before = steps(Duration::from_millis(500));
    let mut runner = spawn_run(&exp, &dir);
    let _thaw = Thaw(runner.id(), "");
    assert!(
        wait_for(Duration::from_secs(15), || !my_freeze_cgroups(
            runner.id(),
            ""
        )
        .is_empty()
            && !victim.progresses(Duration::from_millis(100))),
        "the runner never froze the victim"
    );
    signal(&runner, rustix::process::Signal::KILL);
    runner.wait().unwrap();
    // Nobody is left to thaw it: the fault outlives its runner.
    let frozen = steps(Duration::from_millis(500));
    assert_eq!(frozen, 0, "the victim stays frozen after the runner died");
    let out = recover(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("reverted ice on victim"), "{stdout}");
    assert!(stdout.contains("thawed cgroup"), "{stdout}");
    let after = steps(Duration::from_millis(500));
    assert!(after > 0, "recover thaws it");
    eprintln!(
        "freeze ({}): {before} steps in 500ms before, {frozen} while frozen after the runner died, {after} after recover",
        if freezer.v2 {
            "cgroup v2"
        } else {
            "v1 freezer"
        }
    );
    assert_eq!(cgroup_in(&freezer.root, victim.pid()).unwrap(), home);
    assert!(
        my_freeze_cgroups(runner.id(), "").is_empty(),
        "no cgroup left"
    );
    let again = recover(&dir);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "nothing to recover"
    );
}
