//! Crash safety: a runner SIGKILLed while a process is paused leaves it paused; `chaosforge
//! recover`, in a fresh process, from the journal alone, resumes it; a second recover has
//! nothing to do.

use std::process::Stdio;
use std::time::Duration;

use crate::support::{Dir, EchoServer, Victim, chaosforge, signal, wait_for};

#[test]
fn recover_resumes_a_process_paused_by_a_killed_runner() {
    let victim = Victim::start();
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "pause.yaml",
        &format!(
            r#"apiVersion: chaosforge/v1
name: crash-test
targets:
  - name: victim
    process: {{ pid: {pid} }}
    labels: {{ service: victim }}
hypothesis:
  monitors:
    - name: port
      tcp: {{ address: "{up}", interval: 100ms }}
      expect: ["availability >= 90%"]
faults:
  - name: freeze
    pause: {{}}
    target: {{ select: {{ service: victim }} }}
phases: {{ baseline: 300ms, inject: 60s, recover_within: 5s }}
"#,
            pid = victim.pid(),
            up = up.addr
        ),
    );
    assert_ne!(victim.state(), 'T');
    let mut runner = chaosforge()
        .arg("run")
        .arg(&exp)
        .arg("--state-dir")
        .arg(dir.state())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || victim.state() == 'T'),
        "the runner never paused the victim"
    );
    signal(&runner, rustix::process::Signal::KILL);
    runner.wait().unwrap();
    // Nobody is left to send SIGCONT: the fault outlives its runner.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        victim.state(),
        'T',
        "the victim must still be stopped after the runner died"
    );

    let out = chaosforge()
        .arg("recover")
        .arg("--state-dir")
        .arg(dir.state())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("reverted freeze on victim"), "{stdout}");
    assert!(stdout.contains("SIGCONT"), "{stdout}");
    assert!(
        wait_for(Duration::from_secs(2), || victim.state() != 'T'),
        "recover must resume the victim"
    );

    let again = chaosforge()
        .arg("recover")
        .arg("--state-dir")
        .arg(dir.state())
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "nothing to recover"
    );
}

#[test]
fn recover_leaves_live_runs_alone() {
    let victim = Victim::start();
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "live.yaml",
        &format!(
            r#"apiVersion: chaosforge/v1
name: live-test
targets: [{{ name: victim, process: {{ pid: {pid} }} }}]
hypothesis:
  monitors: [{{ name: port, tcp: {{ address: "{up}", interval: 100ms }}, expect: ["availability >= 90%"] }}]
faults: [{{ name: freeze, pause: {{}}, target: {{ select: {{ name: victim }} }} }}]
phases: {{ baseline: 300ms, inject: 60s, recover_within: 5s }}
"#,
            pid = victim.pid(),
            up = up.addr
        ),
    );
    let mut runner = chaosforge()
        .arg("run")
        .arg(&exp)
        .arg("--state-dir")
        .arg(dir.state())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(15), || victim.state() == 'T'));
    let out = chaosforge()
        .arg("recover")
        .arg("--state-dir")
        .arg(dir.state())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("still running"), "{stdout}");
    assert_eq!(
        victim.state(),
        'T',
        "recover must not touch a live run's faults"
    );
    signal(&runner, rustix::process::Signal::INT);
    assert_eq!(runner.wait().unwrap().code(), Some(3));
    assert!(wait_for(Duration::from_secs(2), || victim.state() != 'T'));
}
