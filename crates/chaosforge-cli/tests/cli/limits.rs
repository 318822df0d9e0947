//! `fd-exhaustion` and `process-limit`, measured by the victim itself: a process that opens a
//! socket (or forks) every 10 ms and records what the kernel answered.

use std::time::Duration;

use chaosforge::fault::limits::{LimitFault, LimitResource};
use chaosforge::fault::process::resolve;
use chaosforge::fault::{Fault, InjectCx};
use chaosforge::journal::{self, FaultId, Journal};
use chaosforge::plan::ProcessSelector;
use chaosforge::testkit::assert_fault_compliance;

use crate::support::{Dir, EchoServer, Probed, chaosforge};

/// The soft and hard limit of `pid` for `label` (`Max open files`), from `/proc/PID/limits`.
fn limits(pid: i32, label: &str) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text.lines().find_map(|l| l.strip_prefix(label)).unwrap();
    let mut f = line.split_whitespace();
    (f.next().unwrap().into(), f.next().unwrap().into())
}

fn fault(victim: &Probed, resource: LimitResource, headroom: u64) -> LimitFault {
    LimitFault {
        target: "victim".into(),
        process: resolve(&ProcessSelector::Pid(victim.pid())).unwrap(),
        resource,
        headroom,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fd_exhaustion_complies_and_every_new_socket_fails_with_emfile() {
    let victim = Probed::start("open");
    let before = limits(victim.pid(), "Max open files");
    let f = fault(&victim, LimitResource::Nofile, 0);
    let dir = tempfile::tempdir().unwrap();
    // The victim's own `socket()` failing with EMFILE is the fault, seen from inside the target.
    assert_fault_compliance(&f, dir.path(), || async {
        victim.fresh_async().await.as_deref() == Some("EMFILE")
    })
    .await;
    assert_eq!(
        limits(victim.pid(), "Max open files"),
        before,
        "soft and hard limit are exactly as before"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headroom_leaves_exactly_that_many_descriptors_and_the_hard_limit_is_never_touched() {
    let victim = Probed::start("count");
    let (_, hard) = limits(victim.pid(), "Max open files");
    let open: Vec<u64> = std::fs::read_dir(format!("/proc/{}/fd", victim.pid()))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let state = tempfile::tempdir().unwrap();
    let j = Journal::create(state.path(), &journal::new_run_id()).unwrap();
    let cx = InjectCx {
        journal: &j,
        id: FaultId(0),
        name: "fds",
    };
    let guard = fault(&victim, LimitResource::Nofile, 5)
        .inject(&cx)
        .await
        .unwrap();
    let (soft, hard_during) = limits(victim.pid(), "Max open files");
    // Descriptors are numbered from 0 and the kernel hands out the lowest free one: five free
    // numbers below the limit means the limit is the sixth free number.
    let mut free = (0u64..).filter(|n| !open.contains(n));
    let sixth = free.nth(5).unwrap();
    assert_eq!(soft, sixth.to_string(), "open descriptors: {open:?}");
    assert_eq!(hard_during, hard, "only the soft limit is lowered");
    guard.revert().await.unwrap();
    assert_eq!(limits(victim.pid(), "Max open files").1, hard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_limit_complies_and_forks_fail_with_eagain_for_an_unprivileged_victim() {
    // Its own uid, so that no other test's process counts against the limit.
    let victim = Probed::start_as("fork", 65532);
    let before = limits(victim.pid(), "Max processes");
    assert_eq!(victim.fresh().as_deref(), Some("ok"), "forks work before");
    let f = fault(&victim, LimitResource::Nproc, 0);
    let dir = tempfile::tempdir().unwrap();
    assert_fault_compliance(&f, dir.path(), || async {
        victim.fresh_async().await.as_deref() == Some("EAGAIN")
    })
    .await;
    assert_eq!(limits(victim.pid(), "Max processes"), before);
    // How completely it bites: every fork attempt for half a second, held, then reverted.
    let state = tempfile::tempdir().unwrap();
    let j = Journal::create(state.path(), &journal::new_run_id()).unwrap();
    let cx = InjectCx {
        journal: &j,
        id: FaultId(0),
        name: "nproc",
    };
    let guard = f.inject(&cx).await.unwrap();
    let sample = |victim: &Probed| {
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..100 {
            if let Some((n, r)) = victim.read() {
                seen.insert(n, r);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let failed = seen.values().filter(|r| *r == "EAGAIN").count();
        (failed, seen.len())
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (failed, tried) = sample(&victim);
    guard.revert().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (failed_after, tried_after) = sample(&victim);
    eprintln!(
        "process-limit: {failed}/{tried} forks failed with EAGAIN during, {failed_after}/{tried_after} after"
    );
    assert_eq!(failed, tried, "every fork fails while the limit holds");
    assert_eq!(failed_after, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_limit_on_a_root_process_is_refused_and_changes_nothing() {
    let victim = Probed::start("fork");
    let before = limits(victim.pid(), "Max processes");
    let state = tempfile::tempdir().unwrap();
    let j = Journal::create(state.path(), &journal::new_run_id()).unwrap();
    let cx = InjectCx {
        journal: &j,
        id: FaultId(0),
        name: "nproc",
    };
    let err = fault(&victim, LimitResource::Nproc, 0)
        .inject(&cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no effect on root processes"), "{err}");
    assert_eq!(limits(victim.pid(), "Max processes"), before);
    assert!(
        journal::read(j.path()).unwrap().is_empty(),
        "nothing journaled: nothing was changed"
    );
}

#[test]
fn an_fd_exhaustion_run_starves_the_victim_and_leaves_its_limits_as_they_were() {
    let victim = Probed::start("open");
    let up = EchoServer::start();
    let dir = Dir::new();
    let before = limits(victim.pid(), "Max open files");
    let exp = dir.write(
        "fds.yaml",
        &format!(
            r#"apiVersion: chaosforge/v1
name: fd-exhaustion
targets: [{{ name: victim, process: {{ pid: {pid} }} }}]
hypothesis:
  monitors: [{{ name: port, tcp: {{ address: "{up}", interval: 100ms }}, expect: ["availability >= 90%"] }}]
faults: [{{ name: no-fds, fd-exhaustion: {{}}, target: {{ select: {{ name: victim }} }} }}]
phases: {{ baseline: 300ms, inject: 2s, recover_within: 5s }}
"#,
            pid = victim.pid(),
            up = up.addr
        ),
    );
    let mut cmd = chaosforge();
    cmd.arg("run").arg(&exp).arg("--state-dir").arg(dir.state());
    let runner = std::thread::spawn(move || cmd.output().unwrap());
    // Sample what the victim sees while the run goes on.
    let (mut emfile, mut ok) = (0, 0);
    let mut seen = std::collections::BTreeSet::new();
    while !runner.is_finished() {
        if let Some((n, r)) = victim.read()
            && seen.insert(n)
        {
            if r == "EMFILE" {
                emfile += 1;
            } else {
                ok += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = runner.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        emfile >= 50,
        "about 2 s of attempts at 100/s must fail: {emfile} EMFILE, {ok} ok"
    );
    eprintln!("fd-exhaustion run: {emfile} attempts failed with EMFILE, {ok} succeeded");
    assert!(stdout.contains("RLIMIT_NOFILE of pid"), "{stdout}");
    assert_eq!(victim.fresh().as_deref(), Some("ok"), "opens work again");
    assert_eq!(limits(victim.pid(), "Max open files"), before);
}
