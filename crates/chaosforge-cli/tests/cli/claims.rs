//! Safe at scale: target claims between concurrent runs (separate processes and one process
//! running several files), `chaosforge halt`, and the hash-chained audit log.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use chaosforge::journal::{self, Event};

use crate::support::{Dir, EchoServer, ProxyServer, Victim, chaosforge, recover, signal, wait_for};

/// Runner processes of a test, killed and reaped when dropped (whatever the test did), so a
/// failed assertion never leaves a runner holding a victim.
#[derive(Default)]
struct Runners(Vec<Child>);

impl Runners {
    fn spawn(&mut self, mut cmd: Command) -> usize {
        self.0.push(cmd.spawn().unwrap());
        self.0.len() - 1
    }

    fn wait(&mut self, i: usize) -> std::process::Output {
        let mut child = std::mem::replace(&mut self.0[i], dummy());
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut s) = child.stdout.take() {
            s.read_to_string(&mut out).unwrap();
        }
        if let Some(mut s) = child.stderr.take() {
            s.read_to_string(&mut err).unwrap();
        }
        let status = child.wait().unwrap();
        std::process::Output {
            status,
            stdout: out.into_bytes(),
            stderr: err.into_bytes(),
        }
    }
}

/// A finished child in place of one taken out.
fn dummy() -> Child {
    let mut c = Command::new("true").spawn().unwrap();
    c.wait().unwrap();
    c
}

impl Drop for Runners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `chaosforge run FILES… --state-dir STATE [extra…]`, output piped.
fn run_cmd(files: &[&Path], state: &Path, extra: &[&str]) -> Command {
    let mut c = chaosforge();
    c.arg("run")
        .args(files)
        .arg("--state-dir")
        .arg(state)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// A pause of `pid` watched by a TCP monitor on `up`.
fn pause(name: &str, pid: i32, up: &EchoServer, baseline: &str, inject: &str) -> String {
    format!(
        r#"apiVersion: chaosforge/v1
name: {name}
targets: [{{ name: victim, process: {{ pid: {pid} }} }}]
hypothesis:
  monitors: [{{ name: port, tcp: {{ address: "{up}", interval: 50ms }}, expect: ["availability >= 50%"] }}]
faults: [{{ name: freeze, pause: {{}}, target: {{ select: {{ name: victim }} }} }}]
phases: {{ baseline: {baseline}, inject: {inject}, recover_within: 2s }}
"#,
        up = up.addr
    )
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every journal under `state`, by run id.
fn journals(state: &Path) -> Vec<(String, Vec<Event>)> {
    let mut out: Vec<(String, Vec<Event>)> = journal::runs(state)
        .unwrap()
        .into_iter()
        .map(|r| (r.id.0, journal::read(&r.dir.join("journal.jsonl")).unwrap()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The wall-clock interval (ms since the epoch) a run held its fault, if it injected.
fn injected_interval(events: &[Event]) -> Option<(i64, i64)> {
    let Some(Event::RunStarted { started_at, .. }) = events.first() else {
        return None;
    };
    let t0 = started_at.as_millisecond();
    let from = events.iter().find_map(|e| match e {
        Event::Injecting { at, .. } => Some(at.as_millis() as i64),
        _ => None,
    })?;
    let to = events.iter().rev().find_map(|e| match e {
        Event::Reverted { at, .. } => Some(at.as_millis() as i64),
        _ => None,
    })?;
    Some((t0 + from, t0 + to))
}

fn claim_files(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state.join("claims"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "claim"))
                .collect()
        })
        .unwrap_or_default()
}

fn wait_injected(state: &Path, runs: usize) -> bool {
    wait_for(Duration::from_secs(20), || {
        let j = journals(state);
        j.len() >= runs
            && j.iter()
                .filter(|(_, e)| e.iter().any(|e| matches!(e, Event::Injected { .. })))
                .count()
                >= runs
    })
}

#[test]
fn claims_refuse_a_second_run_naming_the_holder_and_wait_with_a_timeout() {
    let victim = Victim::start();
    let up = EchoServer::start();
    let dir = Dir::new();
    let long = dir.write(
        "long.yaml",
        &pause("holder", victim.pid(), &up, "100ms", "60s"),
    );
    let short = dir.write(
        "short.yaml",
        &pause("second", victim.pid(), &up, "100ms", "100ms"),
    );
    let mut r = Runners::default();
    let holder = r.spawn(run_cmd(&[&long], &dir.state(), &[]));
    assert!(wait_injected(&dir.state(), 1), "the holder never injected");
    let holder_id = journals(&dir.state())[0].0.clone();
    let holder_pid = r.0[holder].id();

    let out = run_cmd(&[&short], &dir.state(), &[]).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    // The refusal names the resource, the holder's run id, pid, experiment and since when.
    assert!(t.contains(&format!("process:{}@", victim.pid())), "{t}");
    assert!(t.contains(&format!("claimed by run {holder_id}")), "{t}");
    assert!(t.contains(&format!("pid {holder_pid}")), "{t}");
    assert!(
        t.contains("experiment `holder`") && t.contains("since 20"),
        "{t}"
    );
    assert!(t.contains("nothing was injected"), "{t}");

    let started = Instant::now();
    let out = run_cmd(&[&short], &dir.state(), &["--wait-for-targets=400ms"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("still after waiting 400ms"), "{t}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    // Neither second run touched the victim: only the holder's journal has an injection.
    let injecting = journals(&dir.state())
        .iter()
        .filter(|(_, e)| e.iter().any(|e| matches!(e, Event::Injecting { .. })))
        .count();
    assert_eq!(injecting, 1);

    // The holder's claims are in its journal, and go with it.
    let (_, events) = &journals(&dir.state())[0];
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Claimed { claims, .. }
        if claims.iter().any(|c| c.resource.starts_with("process:"))))
    );
    signal(&r.0[holder], rustix::process::Signal::TERM);
    assert_eq!(r.wait(holder).status.code(), Some(3));
    assert!(claim_files(&dir.state()).is_empty(), "claims left behind");
    assert!(wait_for(Duration::from_secs(2), || victim.state() != 'T'));
}

/// What one lane of the race saw: pairs that raced (one refused), pairs that ran one after the
/// other, pairs that waited for each other.
#[derive(Debug, Default, Clone, Copy)]
struct Raced {
    refused: usize,
    sequential: usize,
    waited: usize,
}

/// `pairs` times, two runners started together on one victim; the last `waiting` pairs wait
/// for each other instead of refusing.
fn race_lane(pairs: usize, waiting: usize) -> Raced {
    let victim = Victim::start();
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "race.yaml",
        &pause("race", victim.pid(), &up, "100ms", "250ms"),
    );
    let mut seen = Raced::default();
    for i in 0..pairs {
        let wait = i >= pairs - waiting;
        let extra: &[&str] = if wait {
            &["--wait-for-targets=10s"]
        } else {
            &[]
        };
        let before: Vec<String> = journals(&dir.state()).into_iter().map(|j| j.0).collect();
        let mut r = Runners::default();
        let a = r.spawn(run_cmd(&[&exp], &dir.state(), extra));
        let b = r.spawn(run_cmd(&[&exp], &dir.state(), extra));
        let (oa, ob) = (r.wait(a), r.wait(b));
        let codes = (oa.status.code(), ob.status.code());
        let new: Vec<Vec<Event>> = journals(&dir.state())
            .into_iter()
            .filter(|j| !before.contains(&j.0))
            .map(|j| j.1)
            .collect();
        assert_eq!(new.len(), 2, "pair {i}");
        let held: Vec<(i64, i64)> = new.iter().filter_map(|e| injected_interval(e)).collect();
        if wait {
            assert_eq!(
                codes,
                (Some(0), Some(0)),
                "pair {i}: {}{}",
                text(&oa),
                text(&ob)
            );
            assert_eq!(held.len(), 2, "pair {i}: both inject, in turn");
            assert!(
                new.iter().any(|e| e.iter().any(|e| matches!(
                    e,
                    Event::Claimed {
                        waited: Some(_),
                        ..
                    }
                ))),
                "pair {i}: one of them waited"
            );
            seen.waited += 1;
        } else if held.len() == 1 {
            // The race proper: one injects, the other is refused naming it.
            let (ok, no) = if codes.0 == Some(2) {
                (&ob, &oa)
            } else {
                (&oa, &ob)
            };
            assert_eq!(ok.status.code(), Some(0), "pair {i}: {}", text(ok));
            assert_eq!(no.status.code(), Some(2), "pair {i}: {}", text(no));
            assert!(
                text(no).contains("is claimed by run"),
                "pair {i}: {}",
                text(no)
            );
            seen.refused += 1;
        } else {
            // One started only after the other had finished: allowed, never overlapping.
            assert_eq!(codes, (Some(0), Some(0)), "pair {i}");
            seen.sequential += 1;
        }
        // Whatever happened, never two faults at once on the victim.
        if let [x, y] = held[..] {
            assert!(
                x.1 <= y.0 || y.1 <= x.0,
                "pair {i}: overlapping faults {x:?} {y:?}"
            );
        }
        assert_ne!(victim.state(), 'T', "pair {i}: the victim was left paused");
    }
    let out = recover(&dir);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        claim_files(&dir.state()).is_empty(),
        "claims left after recover"
    );
    seen
}

#[test]
fn claims_race_fifty_times_and_only_one_run_injects() {
    let started = Instant::now();
    // Two lanes of 25 pairs at once, each on its own victim: 50 races in about half the time
    // (a run lasts at least the ~1 s recovery window), and four runners contending at a time.
    let lanes: Vec<_> = [3, 2]
        .into_iter()
        .map(|waiting| std::thread::spawn(move || race_lane(25, waiting)))
        .collect();
    let seen: Vec<Raced> = lanes.into_iter().map(|l| l.join().unwrap()).collect();
    let sum = |f: fn(&Raced) -> usize| seen.iter().map(f).sum::<usize>();
    let (refused, sequential, waited) =
        (sum(|r| r.refused), sum(|r| r.sequential), sum(|r| r.waited));
    eprintln!(
        "race: 45 racing pairs: {refused} refused the loser (exit 2), {sequential} ran one after \
         the other; 5 waiting pairs: {waited} injected in turn; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(refused + sequential, 45);
    assert_eq!(waited, 5);
    // A race that never races proves nothing: nearly every pair must have overlapped.
    assert!(refused >= 40, "only {refused} of 45 pairs raced");
}

#[test]
fn claims_of_a_killed_run_block_until_recover_frees_them() {
    let victim = Victim::start();
    let up = EchoServer::start();
    let dir = Dir::new();
    let long = dir.write(
        "long.yaml",
        &pause("killed", victim.pid(), &up, "100ms", "60s"),
    );
    let short = dir.write(
        "short.yaml",
        &pause("next", victim.pid(), &up, "100ms", "100ms"),
    );
    let mut r = Runners::default();
    let holder = r.spawn(run_cmd(&[&long], &dir.state(), &[]));
    assert!(wait_injected(&dir.state(), 1));
    signal(&r.0[holder], rustix::process::Signal::KILL);
    r.wait(holder);
    assert_eq!(
        claim_files(&dir.state()).len(),
        1,
        "a SIGKILL leaves its claim file"
    );
    // Its lock died with it, but its fault did not: refused until recover, never waited for.
    let out = run_cmd(&[&short], &dir.state(), &["--wait-for-targets"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("left faults open; run `chaosforge recover` first"),
        "{t}"
    );
    assert_eq!(victim.state(), 'T');

    let out = recover(&dir);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("reverted freeze on victim"), "{t}");
    assert!(
        t.contains("freed claim process:") && t.contains("experiment `killed`"),
        "{t}"
    );
    assert!(claim_files(&dir.state()).is_empty());
    let out = run_cmd(&[&short], &dir.state(), &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// One line through `addr` and back; the round trip.
fn round_trip(addr: &str) -> Duration {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"ping\n").unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).unwrap();
    started.elapsed()
}

#[test]
fn halt_all_reverts_five_live_runs_at_once() {
    let up = EchoServer::start();
    let server = ProxyServer::start();
    let dir = Dir::new();
    let victims: Vec<Victim> = (0..3).map(|_| Victim::start()).collect();
    let mut files = Vec::new();
    for (i, v) in victims.iter().enumerate() {
        files.push(dir.write(
            &format!("pause{i}.yaml"),
            &pause(&format!("pause-{i}"), v.pid(), &up, "100ms", "60s"),
        ));
    }
    let mut listens = Vec::new();
    for i in 0..2 {
        let (status, _) = server.http(
            "POST",
            "/proxies",
            &format!(
                r#"{{"name":"p{i}","listen":"127.0.0.1:0","upstream":"{}"}}"#,
                up.addr
            ),
        );
        assert_eq!(status, 201);
        let (_, body) = server.http("GET", &format!("/proxies/p{i}"), "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        listens.push(v["listen"].as_str().unwrap().to_string());
        files.push(dir.write(
            &format!("slow{i}.yaml"),
            &format!(
                r#"apiVersion: chaosforge/v1
name: slow-{i}
targets: [{{ name: p, proxy: {{ api: "http://{api}", name: p{i} }} }}]
hypothesis:
  monitors: [{{ name: port, tcp: {{ address: "{up}", interval: 50ms }}, expect: ["availability >= 50%"] }}]
faults: [{{ name: slow, latency: {{ delay: 1s }}, target: {{ select: {{ name: p }} }} }}]
phases: {{ baseline: 100ms, inject: 60s, recover_within: 2s }}
"#,
                api = server.api,
                up = up.addr
            ),
        ));
    }
    let mut r = Runners::default();
    let ids: Vec<usize> = files
        .iter()
        .map(|f| r.spawn(run_cmd(&[f], &dir.state(), &[])))
        .collect();
    assert!(wait_injected(&dir.state(), 5), "not every run injected");
    // Seen from outside: the victims are stopped and the proxies slow.
    assert!(victims.iter().all(|v| v.state() == 'T'));
    assert!(round_trip(&listens[0]) >= Duration::from_millis(900));

    let started = Instant::now();
    let out = chaosforge()
        .args(["halt", "--all", "--state-dir"])
        .arg(dir.state())
        .output()
        .unwrap();
    let took = started.elapsed();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    eprintln!(
        "halt --all of 5 runs: {} ms (command start to exit); halt said:\n{t}",
        took.as_millis()
    );
    assert!(t.contains("5 runs halted"), "{t}");
    assert_eq!(t.matches("halted run ").count(), 5, "{t}");
    assert!(
        t.contains("reverted freeze (pause) on victim")
            && t.contains("reverted slow (latency) on p"),
        "{t}"
    );
    // Reverted, seen from outside, right after `halt` returned.
    for v in &victims {
        assert_ne!(v.state(), 'T', "a victim is still paused");
    }
    for l in &listens {
        assert!(
            round_trip(l) < Duration::from_millis(500),
            "latency still on {l}"
        );
    }
    for i in ids {
        let o = r.wait(i);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    }
    for (_, events) in journals(&dir.state()) {
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Halted { policy, reason, .. }
            if policy == "halt" && reason == "halted by `chaosforge halt`"))
        );
    }
    // Generous: the point is seconds, not the 60 s the runs would have taken.
    assert!(took < Duration::from_secs(10), "halt took {took:?}");
    assert!(claim_files(&dir.state()).is_empty());
}

#[test]
fn one_process_runs_several_files_and_halt_stops_one_of_them() {
    let up = EchoServer::start();
    let dir = Dir::new();
    let (v1, v2) = (Victim::start(), Victim::start());
    // `a` and `c` want the same victim: inside one process too, one of them is refused by the
    // other's claim (whichever claims first wins).
    let a = dir.write("a.yaml", &pause("exp-a", v1.pid(), &up, "100ms", "60s"));
    let b = dir.write("b.yaml", &pause("exp-b", v2.pid(), &up, "100ms", "1500ms"));
    let c = dir.write("c.yaml", &pause("exp-c", v1.pid(), &up, "100ms", "60s"));
    let mut r = Runners::default();
    let p = r.spawn(run_cmd(&[&a, &b, &c], &dir.state(), &[]));
    assert!(wait_injected(&dir.state(), 2));
    let (winner, _) = journals(&dir.state())
        .into_iter()
        .find(|(_, e)| {
            matches!(e.first(), Some(Event::RunStarted { plan, .. }) if plan.name != "exp-b")
                && e.iter().any(|e| matches!(e, Event::Injected { .. }))
        })
        .unwrap();
    // A prefix is enough (the id's random tail cut short); only that run stops.
    let out = chaosforge()
        .args(["halt", &winner[..winner.len() - 4], "--state-dir"])
        .arg(dir.state())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(wait_for(Duration::from_secs(2), || v1.state() != 'T'));
    assert_eq!(v2.state(), 'T', "the other run of the process goes on");
    let o = r.wait(p);
    let t = text(&o);
    // An error (2, the refused run) is worse than halted (3), which is worse than confirmed.
    assert_eq!(o.status.code(), Some(2), "{t}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let at = |f: &Path| stdout.find(&format!("=== {} ===", f.display())).unwrap();
    let (ia, ib, ic) = (at(&a), at(&b), at(&c));
    assert!(ia < ib && ib < ic, "reports in file order: {stdout}");
    let (sa, sb, sc) = (&stdout[ia..ib], &stdout[ib..ic], &stdout[ic..]);
    assert!(sb.contains("CONFIRMED"), "{stdout}");
    let halted = |s: &str| s.contains("HALTED by halt");
    let refused = |s: &str| s.contains("is claimed by run");
    assert!(
        (halted(sa) && refused(sc)) || (halted(sc) && refused(sa)),
        "{stdout}"
    );
    assert_ne!(v2.state(), 'T');
}

#[test]
fn the_audit_log_chains_every_run_and_verify_names_a_tampered_line() {
    let victim = Victim::start();
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "a.yaml",
        &pause("audited", victim.pid(), &up, "100ms", "100ms"),
    );
    for _ in 0..2 {
        let out = run_cmd(&[&exp], &dir.state(), &[]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let log = dir.state().join("audit.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let actions: Vec<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let one = ["run_start", "claim", "inject", "revert", "run_end"];
    assert_eq!(actions, [one, one].concat(), "{lines:#?}");
    let start: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let sha = chaosforge::audit::sha256_hex(&std::fs::read(&exp).unwrap());
    assert_eq!(start["sha256"], sha.as_str());
    assert_eq!(start["experiment"], "audited");
    assert!(start["uid"].is_u64() && start["host"].is_string() && start["user"].is_string());
    let inject: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    assert_eq!(
        (inject["fault"].as_str(), inject["target"].as_str()),
        (Some("freeze"), Some("victim"))
    );

    let verify = |lines: &[String]| {
        std::fs::write(&log, format!("{}\n", lines.join("\n"))).unwrap();
        let out = chaosforge()
            .args(["audit", "verify", "--state-dir"])
            .arg(dir.state())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = verify(&lines);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("10 lines, chain intact"), "{out}");
    let mut edited = lines.clone();
    edited[3] = edited[3].replace("victim", "someone-else");
    let (code, out) = verify(&edited);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("audit.jsonl:4: its hash does not match"),
        "{out}"
    );
    let mut deleted = lines.clone();
    deleted.remove(6);
    let (code, out) = verify(&deleted);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("audit.jsonl:7: it does not follow line 6"),
        "{out}"
    );
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    let (code, out) = verify(&swapped);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("audit.jsonl:3: it does not follow line 2"),
        "{out}"
    );
}
