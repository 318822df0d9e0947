//! `restart`: a real service restarted by a shell command, ready again when its port accepts
//! (or its URL answers); the time to ready is measured and reported, and the new process is the
//! one that answers.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chaosforge::fault::process::resolve;
use chaosforge::fault::restart::RestartFault;
use chaosforge::fault::{Fault, InjectCx};
use chaosforge::journal::{self, FaultId, Journal};
use chaosforge::plan::{ProcessSelector, Readiness};

use crate::support::{Dir, EchoServer, Victim, alive, python, run, run_exit, wait_for};

/// A TCP server that answers every connection with its pid; it retries binding (the process it
/// replaces may still hold the port for a moment) and writes its pid file once it listens.
const SERVER: &str = r#"
import os, socket, sys, time
port, pidfile = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
for _ in range(500):
    try:
        s.bind(("127.0.0.1", port))
        break
    except OSError:
        time.sleep(0.01)
s.listen(16)
with open(pidfile + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(pidfile + ".tmp", pidfile)
while True:
    c, _ = s.accept()
    c.sendall(b"%d\n" % os.getpid())
    c.close()
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first service process (our child) and whatever replaced it (found through the pid
/// file); all killed when dropped.
struct Service {
    first: Child,
    pidfile: PathBuf,
    port: u16,
}

impl Service {
    fn start(dir: &Path) -> Service {
        chaosforge::testkit::assert_isolated();
        let script = dir.join("server.py");
        std::fs::write(&script, SERVER).unwrap();
        let pidfile = dir.join("server.pid");
        let port = free_port();
        let first = Command::new(python())
            .arg(&script)
            .arg(port.to_string())
            .arg(&pidfile)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let s = Service {
            first,
            pidfile,
            port,
        };
        assert!(
            wait_for(Duration::from_secs(10), || s.answer().is_some()),
            "the service never answered"
        );
        s
    }

    /// The pid of the process that answers now.
    fn answer(&self) -> Option<i32> {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut text = String::new();
        c.read_to_string(&mut text).ok()?;
        text.trim().parse().ok()
    }

    /// The shell line that restarts it: stop the target, start a new one in the background.
    fn restart_command(&self) -> String {
        let dir = self.pidfile.parent().unwrap();
        format!(
            "kill $CHAOSFORGE_TARGET_PID; rm -f {pidfile}; {py} {script} {port} {pidfile} &",
            pidfile = self.pidfile.display(),
            py = python(),
            script = dir.join("server.py").display(),
            port = self.port
        )
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.first.kill();
        let _ = self.first.wait();
        if let Some(p) = std::fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
}

#[test]
fn a_restarted_service_is_ready_again_the_report_says_when_and_the_new_process_answers() {
    let dir = Dir::new();
    let service = Service::start(dir.path());
    let old = service.answer().unwrap();
    assert_eq!(old, service.first.id() as i32);
    let up = EchoServer::start();
    let exp = dir.write(
        "restart.yaml",
        &format!(
            r#"apiVersion: chaosforge/v1
name: restart
targets: [{{ name: api, process: {{ pid: {old} }} }}]
hypothesis:
  monitors: [{{ name: port, tcp: {{ address: "{up}", interval: 100ms }}, expect: ["availability >= 90%"] }}]
faults:
  - name: bounce
    restart: {{ command: "{cmd}", ready: {{ tcp: "127.0.0.1:{port}" }}, timeout: 20s }}
    target: {{ select: {{ name: api }} }}
phases: {{ baseline: 300ms, inject: 500ms, recover_within: 5s }}
"#,
            up = up.addr,
            cmd = service.restart_command(),
            port = service.port,
        ),
    );
    let stdout = run_exit(&exp, &dir, 0);
    // `... ready (tcp 127.0.0.1:PORT accepts) 123ms after the restart began`
    let ready = stdout
        .split(&format!("ready (tcp 127.0.0.1:{} accepts) ", service.port))
        .nth(1)
        .and_then(|r| r.split(" after the restart began").next())
        .unwrap_or_else(|| panic!("no time to ready in the report:\n{stdout}"));
    eprintln!("restart: ready {ready} after the restart began");
    assert!(stdout.contains("nothing to undo"), "{stdout}");
    let new = service.answer().expect("the restarted service answers");
    assert_ne!(new, old, "a new process answers");
    assert!(alive(new));
    let events = journal::read(&dir.journals()[0]).unwrap();
    assert!(journal::open_faults(&events).is_empty());
}

#[test]
fn a_service_that_never_gets_ready_fails_the_injection_clearly() {
    let dir = Dir::new();
    let victim = Victim::start();
    let up = EchoServer::start();
    let closed = free_port();
    let exp = dir.write(
        "never.yaml",
        &format!(
            r#"apiVersion: chaosforge/v1
name: restart-never-ready
targets: [{{ name: api, process: {{ pid: {pid} }} }}]
hypothesis:
  monitors: [{{ name: port, tcp: {{ address: "{up}", interval: 100ms }}, expect: ["availability >= 90%"] }}]
faults:
  - name: bounce
    restart: {{ command: "kill $CHAOSFORGE_TARGET_PID", ready: {{ tcp: "127.0.0.1:{closed}" }}, timeout: 1s }}
    target: {{ select: {{ name: api }} }}
phases: {{ baseline: 300ms, inject: 500ms, recover_within: 2s }}
"#,
            pid = victim.pid(),
            up = up.addr,
        ),
    );
    let out = run(&exp, &dir);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains(&format!(
            "not ready within 1s after `kill $CHAOSFORGE_TARGET_PID`: tcp 127.0.0.1:{closed} accepts never held"
        )),
        "{all}"
    );
    let events = journal::read(&dir.journals()[0]).unwrap();
    assert!(
        journal::open_faults(&events).is_empty(),
        "nothing is left for recover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_readiness_waits_for_an_answer() {
    chaosforge::testkit::assert_isolated();
    let dir = tempfile::tempdir().unwrap();
    let victim = Victim::start();
    let port = free_port();
    let pidfile = dir.path().join("http.pid");
    let f = RestartFault {
        target: "web".into(),
        process: resolve(&ProcessSelector::Pid(victim.pid())).unwrap(),
        command: format!(
            "kill $CHAOSFORGE_TARGET_PID; cd {d}; {py} -m http.server {port} --bind 127.0.0.1 & echo $! > {pidfile}",
            d = dir.path().display(),
            py = python(),
            pidfile = pidfile.display()
        ),
        ready: Readiness::Http(format!("http://127.0.0.1:{port}/")),
        timeout: Duration::from_secs(20),
    };
    let state = tempfile::tempdir().unwrap();
    let j = Journal::create(state.path(), &journal::new_run_id()).unwrap();
    let cx = InjectCx {
        journal: &j,
        id: FaultId(0),
        name: "bounce",
    };
    let result = f.inject(&cx).await;
    let server = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .and_then(rustix::process::Pid::from_raw);
    let answered = reqwest::get(format!("http://127.0.0.1:{port}/")).await;
    if let Some(p) = server {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
    let guard = result.unwrap();
    assert!(answered.is_ok_and(|r| r.status().is_success()));
    guard.revert().await.unwrap();
    let events = journal::read(j.path()).unwrap();
    let note = events
        .iter()
        .find_map(|e| match e {
            journal::Event::Reverted { note, .. } => note.clone(),
            _ => None,
        })
        .unwrap();
    assert!(
        note.contains(&format!("ready (http://127.0.0.1:{port}/ answers 2xx/3xx)")),
        "{note}"
    );
    assert!(
        j.path().parent().unwrap().join("restart-0.log").is_file(),
        "the command's output is kept in the run's directory"
    );
}
