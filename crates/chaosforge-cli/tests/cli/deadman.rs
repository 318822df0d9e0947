//! The dead-man switch: a runner that stops heartbeating (SIGSTOPped while it holds a `pause`)
//! has its fault reverted by `chaosforge recover --watch` within the stated bound, while a
//! healthy run next to it keeps its fault; the stuck runner, continued, halts without touching
//! the victim again, and the journal is left closed and consistent.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use chaosforge::journal::{self, Event};
use rustix::process::Signal;
use tokio::time::Instant;

use crate::support::{Dir, EchoServer, Victim, chaosforge, pause_experiment, recover, wait_for};

/// A child process that is continued, killed and reaped when dropped, whatever the test did
/// (a SIGSTOPped runner left behind would hold its faults and claims forever).
struct Kid {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Kid {
    /// `chaosforge ARGS`, stdout and stderr to files under `dir` named after `name`.
    fn spawn(dir: &Dir, name: &str, args: &[&str]) -> Kid {
        let out = dir.path().join(format!("{name}.out"));
        let err = dir.path().join(format!("{name}.err"));
        let child = chaosforge()
            .args(args)
            .arg("--state-dir")
            .arg(dir.state())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Kid { child, out, err }
    }

    fn signal(&self, sig: Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// The exit code, waiting at most `limit`.
    fn exit_within(&mut self, limit: Duration) -> Option<i32> {
        let mut code = None;
        wait_for(limit, || {
            code = self
                .child
                .try_wait()
                .unwrap()
                .map(|s| s.code().unwrap_or(-1));
            code.is_some()
        });
        code
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, Signal::CONT);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The events of the run that acted on `victim` (its `RunStarted` names the pid in the plan).
fn journal_of(dir: &Dir, victim: &Victim) -> Vec<Event> {
    let pid = format!("\"pid\":{}", victim.pid());
    dir.journals()
        .into_iter()
        .find(|j| {
            std::fs::read_to_string(j)
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains("\"event\":\"injecting\"") && l.contains(&pid))
        })
        .map(|j| journal::read(&j).unwrap())
        .unwrap_or_default()
}

#[test]
fn recover_watch_reverts_the_faults_of_a_runner_that_stopped_heartbeating() {
    let (stuck_victim, healthy_victim) = (Victim::start(), Victim::start());
    let up = EchoServer::start();
    let dir = Dir::new();
    let stuck_exp = dir.write("stuck.yaml", &pause_experiment(&stuck_victim, &up));
    let healthy_exp = dir.write("healthy.yaml", &pause_experiment(&healthy_victim, &up));
    // The default heartbeat: a beat every 1 s, taken over after 5 s without one.
    let mut stuck = Kid::spawn(&dir, "stuck", &["run", stuck_exp.to_str().unwrap()]);
    let mut healthy = Kid::spawn(&dir, "healthy", &["run", healthy_exp.to_str().unwrap()]);
    assert!(
        wait_for(Duration::from_secs(15), || stuck_victim.state() == 'T'
            && healthy_victim.state() == 'T'),
        "the runners never paused their victims\n{}\n{}",
        stuck.output(),
        healthy.output()
    );
    let mut watch = Kid::spawn(
        &dir,
        "watch",
        &["recover", "--watch", "--interval", "200ms"],
    );

    // The runner freezes while it holds the pause: its lock stays held, its beats stop.
    stuck.signal(Signal::STOP);
    let stopped = Instant::now();
    let resumed = wait_for(Duration::from_secs(15), || stuck_victim.state() != 'T');
    let took = stopped.elapsed();
    eprintln!(
        "dead-man switch: victim resumed {:.2}s after its runner stopped (bound: 5 s timeout + \
         200 ms interval + the revert)",
        took.as_secs_f64()
    );
    assert!(
        resumed,
        "recover --watch never resumed the victim\n{}",
        watch.output()
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    // Not before the timeout: a runner that beat a moment ago is in charge.
    assert!(
        took >= Duration::from_secs(4),
        "taken over too early: {took:?}"
    );

    // The journal says who reverted it and why, and is closed.
    let events = journal_of(&dir, &stuck_victim);
    assert!(journal::open_faults(&events).is_empty(), "{events:#?}");
    let finished: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::RunFinished { .. }))
        .collect();
    assert_eq!(finished.len(), 1, "{events:#?}");
    let closing = serde_json::to_string(finished[0]).unwrap();
    assert!(
        closing.contains("recovered: runner stopped heartbeating (last beat"),
        "{closing}"
    );
    // The watchdog reports once it has reverted and closed the journal, a moment after the
    // victim resumed.
    assert!(
        wait_for(Duration::from_secs(5), || std::fs::read_to_string(
            &watch.out
        )
        .unwrap_or_default()
        .contains("runner stopped heartbeating")),
        "{}",
        watch.output()
    );

    // The healthy run beats, so the watchdog — which has now looked at it for over 5 s — leaves
    // its fault alone.
    assert_eq!(healthy_victim.state(), 'T', "{}", watch.output());

    // The stuck runner wakes up: it finds the takeover, halts (exit 3) with a clear message,
    // and does not stop the victim again (sampled while it winds down and after it exits).
    stuck.signal(Signal::CONT);
    let mut restopped = false;
    let mut code = None;
    wait_for(Duration::from_secs(10), || {
        restopped |= stuck_victim.state() == 'T';
        code = stuck.child.try_wait().unwrap().map(|s| s.code());
        code.is_some()
    });
    assert_eq!(code, Some(Some(3)), "{}", stuck.output());
    std::thread::sleep(Duration::from_millis(300));
    restopped |= stuck_victim.state() == 'T';
    assert!(!restopped, "the woken runner stopped the victim again");
    assert!(
        stuck.output().contains("stopped heartbeating"),
        "{}",
        stuck.output()
    );
    // Still one end, no fault open: the woken runner did not close the journal again.
    let events = journal_of(&dir, &stuck_victim);
    assert!(journal::open_faults(&events).is_empty(), "{events:#?}");
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::RunFinished { .. }))
            .count(),
        1,
        "{events:#?}"
    );
    let report = chaosforge::report::Report::from_events(&events).unwrap();
    assert!(
        report.render_text().contains("deadman"),
        "{}",
        report.render_text()
    );

    // The watchdog stops on SIGINT; the healthy run halts on its own SIGINT and resumes its
    // victim; after both, nothing is left to recover.
    watch.signal(Signal::INT);
    assert_eq!(
        watch.exit_within(Duration::from_secs(5)),
        Some(0),
        "{}",
        watch.output()
    );
    assert_eq!(healthy_victim.state(), 'T');
    healthy.signal(Signal::INT);
    assert_eq!(
        healthy.exit_within(Duration::from_secs(15)),
        Some(3),
        "{}",
        healthy.output()
    );
    assert!(wait_for(Duration::from_secs(2), || healthy_victim.state() != 'T'));
    let out = recover(&dir);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "nothing to recover"
    );
}
