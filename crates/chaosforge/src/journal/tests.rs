//! Journal tests: what is written is read back, torn tails are tolerated but corruption is not,
//! open faults are computed from events alone, and the run lock tells live runs from dead ones.

use std::io::Write as _;

use super::*;
use crate::engine::{Outcome, Phase};
use crate::fault::RevertSpec;
use crate::probe::Sample;
use crate::report::PlanSummary;

fn summary() -> PlanSummary {
    let text = r#"
apiVersion: chaosforge/v1
name: journal-test
targets:
  - name: backend
    proxy: { listen: "127.0.0.1:0", upstream: "127.0.0.1:9000" }
    labels: { service: backend }
hypothesis:
  monitors:
    - name: api
      http: { url: "http://127.0.0.1:8080/", interval: 100ms }
      expect: ["availability >= 99%"]
faults:
  - name: slow
    latency: { delay: 200ms }
    target: {}
"#;
    let doc = crate::source::Document::parse("j.yaml", text).unwrap();
    let spec = crate::de::decode(&doc).unwrap();
    PlanSummary::of(&crate::plan::compile(&doc, &spec, Some(42)).unwrap())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn injecting(id: u32, name: &str, target: &str) -> Event {
    Event::Injecting {
        fault: FaultId(id),
        name: name.into(),
        target: target.into(),
        kind: "latency".into(),
        revert: RevertSpec::InProcessToxics {
            target: target.into(),
            toxics: vec![format!("{name}-downstream")],
        },
        at: ms(100 + u64::from(id)),
    }
}

fn reverted(id: u32) -> Event {
    Event::Reverted {
        fault: FaultId(id),
        by: "run".into(),
        note: None,
        at: ms(900),
    }
}

/// One of every event variant (and of every outcome), with values that survive the text
/// encodings exactly (whole microseconds for durations, whole milliseconds in samples).
fn every_event(run_id: &RunId) -> Vec<Event> {
    vec![
        Event::RunStarted {
            run_id: run_id.clone(),
            started_at: jiff::Timestamp::from_second(1_700_000_000).unwrap(),
            pid: 4242,
            version: "0.1.0".into(),
            plan: summary(),
        },
        Event::Phase {
            phase: Phase::Baseline,
            at: ms(5),
        },
        Event::Sample {
            monitor: 0,
            phase: Phase::Baseline,
            sample: Sample {
                at: ms(10),
                latency: ms(3),
                ok: true,
                status: Some(200),
                error: None,
                value: None,
                resource: None,
            },
        },
        Event::Sample {
            monitor: 1,
            phase: Phase::Observe,
            sample: Sample {
                at: ms(1_250),
                latency: ms(1_000),
                ok: false,
                status: None,
                error: Some("timeout after 1s".into()),
                value: None,
                resource: None,
            },
        },
        injecting(0, "slow", "backend"),
        Event::Injecting {
            fault: FaultId(1),
            name: "freeze".into(),
            target: "worker".into(),
            kind: "pause".into(),
            revert: RevertSpec::ContinueProcess {
                pid: 4242,
                start_time: 123_456,
            },
            at: ms(120),
        },
        Event::Injecting {
            fault: FaultId(2),
            name: "kill".into(),
            target: "worker".into(),
            kind: "kill".into(),
            revert: RevertSpec::Irreversible {
                reason: "a killed process cannot be brought back".into(),
            },
            at: ms(130),
        },
        Event::Injected {
            fault: FaultId(0),
            at: Duration::from_micros(101_500),
        },
        Event::InjectFailed {
            fault: FaultId(2),
            error: "no such process".into(),
            at: ms(131),
        },
        Event::Reverted {
            fault: FaultId(0),
            by: "run".into(),
            note: Some("toxics removed".into()),
            at: ms(1_500),
        },
        reverted(2),
        Event::RevertFailed {
            fault: FaultId(1),
            error: "permission denied".into(),
            at: ms(1_600),
        },
        Event::Halted {
            policy: "halt_when".into(),
            reason: "availability < 50%".into(),
            at: ms(1_400),
        },
        Event::Recovery {
            ttr: Some(ms(250)),
            reverted_at: ms(1_600),
            at: ms(2_000),
        },
        Event::Recovery {
            ttr: None,
            reverted_at: ms(1_600),
            at: Duration::from_secs(90),
        },
        Event::RunFinished {
            outcome: Outcome::Confirmed,
            at: ms(2_100),
        },
        Event::RunFinished {
            outcome: Outcome::Refuted {
                reasons: vec!["api: `availability >= 99%` did not hold".into()],
            },
            at: ms(2_100),
        },
        Event::RunFinished {
            outcome: Outcome::NotSteady {
                reasons: vec!["no data".into()],
            },
            at: ms(2_100),
        },
        Event::RunFinished {
            outcome: Outcome::Halted {
                policy: "signal".into(),
                reason: "interrupted".into(),
            },
            at: ms(2_100),
        },
        Event::RunFinished {
            outcome: Outcome::Errored {
                phase: Phase::Recover,
                error: "could not revert".into(),
            },
            at: ms(2_100),
        },
    ]
}

/// A journal holding `events` under a fresh state dir; returns the dir, the run dir and the file.
fn journal_with(events: &[Event]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let state = tempfile::tempdir().unwrap();
    let id = RunId("run-1".into());
    let j = Journal::create(state.path(), &id).unwrap();
    for e in events {
        j.append(e).unwrap();
    }
    let path = j.path().to_path_buf();
    (state, path.parent().unwrap().to_path_buf(), path)
}

fn append_raw(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn every_event_round_trips() {
    let state = tempfile::tempdir().unwrap();
    let id = new_run_id();
    let j = Journal::create(state.path(), &id).unwrap();
    assert_eq!(
        j.path(),
        state.path().join("runs").join(&id.0).join("journal.jsonl")
    );
    let events = every_event(&id);
    // Alternate plain and durable appends: both write the same line.
    for (i, e) in events.iter().enumerate() {
        if i % 2 == 0 {
            j.append(e).unwrap();
        } else {
            j.append_durable(e).unwrap();
        }
    }
    let read_back = read(j.path()).unwrap();
    assert_eq!(read_back, events);

    // One JSON object per line, tagged by `event`.
    let text = fs::read_to_string(j.path()).unwrap();
    assert_eq!(text.lines().count(), events.len());
    assert!(text.ends_with('\n'));
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v.get("event").and_then(|e| e.as_str()).is_some(), "{l}");
    }
}

#[test]
fn clones_share_one_file() {
    let state = tempfile::tempdir().unwrap();
    let j = Journal::create(state.path(), &RunId("r".into())).unwrap();
    let k = j.clone();
    j.append(&injecting(0, "a", "t")).unwrap();
    k.append(&reverted(0)).unwrap();
    assert_eq!(
        read(j.path()).unwrap(),
        [injecting(0, "a", "t"), reverted(0)]
    );
}

#[test]
fn a_run_id_is_used_once() {
    let state = tempfile::tempdir().unwrap();
    let id = RunId("twice".into());
    let j = Journal::create(state.path(), &id).unwrap();
    // Held: the lock refuses a second runner.
    assert!(Journal::create(state.path(), &id).is_err());
    drop(j);
    // Released: the journal file already exists and is never truncated.
    assert!(matches!(
        Journal::create(state.path(), &id),
        Err(JournalError::Io { .. })
    ));
}

#[test]
fn a_torn_last_line_is_skipped() {
    let events = [injecting(0, "a", "t"), injecting(1, "b", "t")];
    let (_state, _dir, path) = journal_with(&events);
    // The runner died in the middle of writing a line: no newline, half an object.
    append_raw(&path, br#"{"event":"reverted","fault":0,"by":"ru"#);
    assert_eq!(read(&path).unwrap(), events);
}

#[test]
fn a_line_torn_inside_a_multibyte_character_is_skipped() {
    let (_state, _dir, path) = journal_with(&[injecting(0, "a", "t")]);
    let line = serde_json::to_vec(&Event::Halted {
        policy: "halt_when".into(),
        reason: "latency ≥ 2s".into(),
        at: ms(1),
    })
    .unwrap();
    // Cut between the bytes of `≥` (three bytes in UTF-8).
    let cut = line.iter().position(|&b| b == 0xE2).unwrap() + 1;
    append_raw(&path, &line[..cut]);
    assert_eq!(read(&path).unwrap(), [injecting(0, "a", "t")]);
}

/// `open_dead` of a run whose journal was just dropped. Another test of this binary forking a
/// process at that moment holds the lock's descriptor until its `exec` closes it, so a
/// `WOULDBLOCK` is retried for a bounded while.
fn open_dead_soon(dir: &std::path::Path) -> Journal {
    for _ in 0..250 {
        if let Some(j) = Journal::open_dead(dir).unwrap() {
            return j;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the lock of {} stayed held for 5 s", dir.display());
}

#[test]
fn blank_lines_are_ignored() {
    let (_state, _dir, path) = journal_with(&[injecting(0, "a", "t")]);
    append_raw(&path, b"\n   \n");
    let j = open_dead_soon(path.parent().unwrap());
    j.append(&reverted(0)).unwrap();
    assert_eq!(read(&path).unwrap(), [injecting(0, "a", "t"), reverted(0)]);
}

#[test]
fn a_bad_middle_line_is_an_error_naming_the_line() {
    let (_state, dir, path) = journal_with(&[injecting(0, "a", "t")]);
    append_raw(&path, b"{\"event\":\"no_such_event\"}\n");
    let j = open_dead_soon(&dir);
    j.append(&reverted(0)).unwrap();
    let err = read(&path).unwrap_err();
    match &err {
        JournalError::Corrupt { path: p, line, .. } => {
            assert_eq!(p, &path);
            assert_eq!(*line, 2);
        }
        other => panic!("{other:?}"),
    }
    // The message names the file and line, `path:line: …`.
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("journal {}:2: ", path.display())),
        "{shown}"
    );
}

#[test]
fn a_missing_journal_is_an_io_error() {
    let state = tempfile::tempdir().unwrap();
    let path = state.path().join("nope.jsonl");
    assert!(matches!(read(&path), Err(JournalError::Io { path: p, .. }) if p == path));
}

/// The runner dies mid-line; `recover` then appends `Reverted` and `RunFinished`. Were the
/// appended bytes to continue the torn line, it would no longer be the last one and the journal
/// would become unreadable for every later `recover` and `report`; `open_dead` cuts the torn tail.
#[test]
fn appending_after_a_torn_line_keeps_the_journal_readable() {
    let (_state, dir, path) = journal_with(&[injecting(0, "a", "t")]);
    append_raw(&path, br#"{"event":"phase","pha"#);
    let j = open_dead_soon(&dir);
    j.append_durable(&reverted(0)).unwrap();
    j.append_durable(&Event::RunFinished {
        outcome: Outcome::Confirmed,
        at: ms(1),
    })
    .unwrap();
    let events = read(&path).unwrap();
    assert!(events.contains(&reverted(0)), "{events:?}");
    assert!(open_faults(&events).is_empty());
}

#[test]
fn open_faults_are_injected_and_not_reverted_in_order() {
    let events = vec![
        injecting(0, "a", "t1"),
        Event::Injected {
            fault: FaultId(0),
            at: ms(1),
        },
        injecting(1, "b", "t2"),
        injecting(2, "c", "t3"),
        Event::InjectFailed {
            fault: FaultId(2),
            error: "x".into(),
            at: ms(2),
        },
        injecting(3, "d", "t4"),
        reverted(1),
        // A failed revert leaves the fault open.
        Event::RevertFailed {
            fault: FaultId(3),
            error: "denied".into(),
            at: ms(3),
        },
        // A `Reverted` for a fault never announced changes nothing.
        reverted(9),
    ];
    let open = open_faults(&events);
    let ids: Vec<(u32, &str, &str)> = open
        .iter()
        .map(|(id, name, target, _)| (id.0, name.as_str(), target.as_str()))
        .collect();
    assert_eq!(ids, [(0, "a", "t1"), (2, "c", "t3"), (3, "d", "t4")]);
    // The revert data is the one journaled with the injection.
    assert_eq!(
        open[0].3,
        RevertSpec::InProcessToxics {
            target: "t1".into(),
            toxics: vec!["a-downstream".into()]
        }
    );

    let mut closed = events.clone();
    closed.extend([reverted(0), reverted(2), reverted(3)]);
    assert!(open_faults(&closed).is_empty());
    assert!(open_faults(&[]).is_empty());
}

#[test]
fn runs_are_listed_oldest_first() {
    let state = tempfile::tempdir().unwrap();
    assert!(
        runs(state.path()).unwrap().is_empty(),
        "no runs dir yet: no runs"
    );
    let ids: Vec<RunId> = (0..5).map(|_| new_run_id()).collect();
    // Created newest first, so that listing order cannot come from creation order.
    let journals: Vec<Journal> = ids
        .iter()
        .rev()
        .map(|id| Journal::create(state.path(), id).unwrap())
        .collect();
    // A directory without a journal is not a run.
    fs::create_dir_all(state.path().join("runs").join("0-not-a-run")).unwrap();
    let listed = runs(state.path()).unwrap();
    let listed_ids: Vec<RunId> = listed.iter().map(|r| r.id.clone()).collect();
    assert_eq!(listed_ids, ids);
    for r in &listed {
        assert_eq!(r.dir, state.path().join("runs").join(&r.id.0));
    }
    drop(journals);
}

#[test]
fn run_ids_sort_by_creation_time() {
    let ids: Vec<RunId> = (0..200).map(|_| new_run_id()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    let distinct: std::collections::BTreeSet<&RunId> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len());
}

#[test]
fn open_dead_waits_for_the_runs_lock() {
    let state = tempfile::tempdir().unwrap();
    let id = RunId("live".into());
    let j = Journal::create(state.path(), &id).unwrap();
    j.append_durable(&injecting(0, "a", "t")).unwrap();
    let dir = j.path().parent().unwrap().to_path_buf();

    // The run is alive: `recover` must leave it to its runner.
    assert!(Journal::open_dead(&dir).unwrap().is_none());
    // A clone shares the lock; dropping one handle is not the end of the run.
    let k = j.clone();
    drop(j);
    assert!(Journal::open_dead(&dir).unwrap().is_none());
    drop(k);

    // Dead: opened for appending, after what the runner wrote.
    let dead = Journal::open_dead(&dir).unwrap().expect("the run is dead");
    // While `recover` holds it, nobody else may take it.
    assert!(Journal::open_dead(&dir).unwrap().is_none());
    dead.append_durable(&reverted(0)).unwrap();
    assert_eq!(
        read(dead.path()).unwrap(),
        [injecting(0, "a", "t"), reverted(0)]
    );
    drop(dead);
    assert!(Journal::open_dead(&dir).unwrap().is_some());
}

/// A runner SIGKILLed while starting a child leaves its lock held by that child until the
/// child's exec closes it. Here a second open of the lock file stands in for the child (flock
/// locks of two open files conflict as across processes). With the runner gone, `open_dead`
/// must wait for it and treat the run as dead; before, it saw a held lock, called the run live,
/// and `recover` left every fault it had injected.
#[test]
fn open_dead_waits_out_a_dead_runners_child() {
    let (_state, dir, path) = journal_with(&[]);
    // A pid above the kernel's maximum (2^22): no process has it, so the runner is gone.
    let mut started = every_event(&RunId("run-1".into()))
        .into_iter()
        .find(|e| matches!(e, Event::RunStarted { .. }))
        .unwrap();
    if let Event::RunStarted { pid, .. } = &mut started {
        *pid = 1 << 30;
    }
    append_raw(
        &path,
        &[serde_json::to_vec(&started).unwrap(), b"\n".to_vec()].concat(),
    );
    append_raw(
        &path,
        &[
            serde_json::to_vec(&injecting(0, "a", "t")).unwrap(),
            b"\n".to_vec(),
        ]
        .concat(),
    );
    // The runner's own lock died with it (`journal_with` dropped the journal); its child's
    // copy still holds it.
    let child = File::options().write(true).open(dir.join("lock")).unwrap();
    rustix::fs::flock(&child, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    // The "child" reaches its exec a moment later.
    let exec = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        drop(child);
    });
    let dead = Journal::open_dead(&dir).unwrap();
    exec.join().unwrap();
    assert!(
        dead.is_some(),
        "a dead runner's run was taken for a live one"
    );
    assert_eq!(open_faults(&read(&path).unwrap()).len(), 1);
}

/// A live runner's held lock still means a live run, at once.
#[test]
fn open_dead_leaves_a_live_runner_alone() {
    let state = tempfile::tempdir().unwrap();
    let id = RunId("live".into());
    let j = Journal::create(state.path(), &id).unwrap();
    let mut started = every_event(&id)
        .into_iter()
        .find(|e| matches!(e, Event::RunStarted { .. }))
        .unwrap();
    if let Event::RunStarted { pid, .. } = &mut started {
        *pid = std::process::id();
    }
    j.append_durable(&started).unwrap();
    let dir = j.path().parent().unwrap().to_path_buf();
    assert!(Journal::open_dead(&dir).unwrap().is_none());
}

#[test]
fn open_dead_without_a_journal_is_an_error() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("runs").join("empty");
    fs::create_dir_all(&dir).unwrap();
    assert!(matches!(
        Journal::open_dead(&dir),
        Err(JournalError::Io { .. })
    ));
}
