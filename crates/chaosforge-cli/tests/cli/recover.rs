//! Crash safety: a runner SIGKILLed while a process is paused leaves it paused; `chaosforge
//! recover`, in a fresh process, from the journal alone, resumes it; a second recover has
//! nothing to do.

use std::time::Duration;

use crate::support::{
    Dir, EchoServer, ProxyServer, Victim, pause_experiment, recover, signal, spawn_run, wait_for,
};

#[test]
fn recover_resumes_a_process_paused_by_a_killed_runner() {
    let victim = Victim::start();
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write("pause.yaml", &pause_experiment(&victim, &up));
    assert_ne!(victim.state(), 'T');
    let mut runner = spawn_run(&exp, &dir);
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

    let out = recover(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("reverted freeze on victim"), "{stdout}");
    assert!(stdout.contains("SIGCONT"), "{stdout}");
    assert!(
        wait_for(Duration::from_secs(2), || victim.state() != 'T'),
        "recover must resume the victim"
    );

    let again = recover(&dir);
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
    let mut runner = spawn_run(&exp, &dir);
    assert!(wait_for(Duration::from_secs(15), || victim.state() == 'T'));
    let out = recover(&dir);
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

#[test]
fn faults_on_a_remote_proxy_outlive_a_killed_runner_and_recover_removes_them() {
    let up = EchoServer::start();
    let server = ProxyServer::start();
    let (status, _) = server.http(
        "POST",
        "/proxies",
        &format!(
            r#"{{"name":"payments","listen":"127.0.0.1:0","upstream":"{}"}}"#,
            up.addr
        ),
    );
    assert_eq!(status, 201);
    let dir = Dir::new();
    let exp = dir.write(
        "remote.yaml",
        &format!(
            r#"apiVersion: chaosforge/v1
name: remote-proxy
targets:
  - name: payments
    proxy: {{ api: "http://{api}", name: payments }}
hypothesis:
  monitors: [{{ name: port, tcp: {{ address: "{up}", interval: 100ms }}, expect: ["availability >= 90%"] }}]
faults:
  - name: slow
    latency: {{ delay: 300ms, direction: both }}
    target: {{ select: {{ name: payments }} }}
  - name: off
    down: {{}}
    target: {{ select: {{ name: payments }} }}
phases: {{ baseline: 300ms, inject: 60s, recover_within: 5s }}
"#,
            api = server.api,
            up = up.addr
        ),
    );
    let mut runner = spawn_run(&exp, &dir);
    let injected = || {
        let (_, body) = server.http("GET", "/proxies/payments", "");
        body.contains(r#""enabled":false"#)
            && body.contains("slow.upstream")
            && body.contains("slow.downstream")
    };
    assert!(
        wait_for(Duration::from_secs(15), injected),
        "the runner never injected on the remote proxy"
    );
    signal(&runner, rustix::process::Signal::KILL);
    runner.wait().unwrap();
    assert!(
        injected(),
        "the server keeps the faults after the runner died"
    );

    let out = recover(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let (_, body) = server.http("GET", "/proxies/payments", "");
    assert!(
        body.contains(r#""enabled":true"#),
        "recover re-enables the proxy: {body}"
    );
    assert!(
        body.contains(r#""toxics":[]"#),
        "recover removes the toxics: {body}"
    );
    let again = recover(&dir);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "nothing to recover"
    );
}
