//! `chaosforge plan` and the start of `run`: where the seed came from (and how to repeat a
//! random one), the targets as this machine resolves them now, and the warnings about what is
//! valid but probably not meant.

use crate::support::{Dir, EchoServer, Victim, chaosforge, run};

fn plan(dir: &Dir, name: &str, text: &str, args: &[&str]) -> (i32, String, String) {
    let exp = dir.write(name, text);
    let out = chaosforge()
        .arg("plan")
        .arg(exp)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The seed `plan` printed after `seed` on its own line, and the rest of that line.
fn seed_of(stdout: &str) -> (u64, String) {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("seed       "))
        .unwrap_or_else(|| panic!("no seed line in:\n{stdout}"));
    let (n, rest) = line.split_once(' ').unwrap_or((line, ""));
    (n.parse().unwrap(), rest.to_string())
}

fn pause_file(pid: i32, monitor: &str) -> String {
    format!(
        r#"apiVersion: chaosforge/v1
name: pause-plan
targets:
  - name: db
    process: {{ pid: {pid} }}
hypothesis:
  monitors:
    - name: port
      tcp: {monitor}
      expect: ["availability >= 99%"]
faults:
  - name: stop-db
    pause: {{}}
    target: {{ select: {{ name: db }} }}
phases: {{ baseline: 1s, inject: 1s, recover_within: 5s }}
"#
    )
}

/// Without a seed in the file, `plan` and `run` each draw one; both must say which, and how to
/// get the same choices again, or a plan cannot be trusted to describe the run.
#[test]
fn a_random_seed_is_shown_with_how_to_repeat_it_in_plan_and_run() {
    let dir = Dir::new();
    let up = EchoServer::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        r#"apiVersion: chaosforge/v1
name: seedless
targets:
  - name: backend
    proxy: {{ listen: "127.0.0.1:{port}", upstream: "{up}" }}
hypothesis:
  monitors:
    - name: port
      tcp: {{ address: "127.0.0.1:{port}", interval: 50ms, timeout: 500ms }}
      expect: ["availability >= 99%"]
faults:
  - name: slow
    latency: {{ delay: 10ms }}
    target: {{ select: {{ name: backend }} }}
phases: {{ baseline: 300ms, inject: 300ms, recover_within: 3s }}
"#,
        up = up.addr
    );
    let (code, stdout, stderr) = plan(&dir, "seedless.yaml", &text, &[]);
    assert_eq!(code, 0, "{stderr}");
    let (seed, note) = seed_of(&stdout);
    assert_eq!(note, format!("(random; pass --seed {seed} to repeat)"));
    assert!(
        stdout.contains(&format!(
            "target     backend: proxy 127.0.0.1:{port} → {}",
            up.addr
        )),
        "{stdout}"
    );

    let (_, again, _) = plan(&dir, "seedless.yaml", &text, &["--seed", &seed.to_string()]);
    assert_eq!(
        seed_of(&again),
        (seed, String::new()),
        "a given seed is not random"
    );

    let out = run(&dir.path().join("seedless.yaml"), &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("seed "))
        .unwrap_or_else(|| panic!("run names no seed:\n{stderr}"));
    let n: u64 = line["seed ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        line,
        format!("seed {n} (random; pass --seed {n} to repeat)")
    );
    let report = crate::support::report(&dir);
    assert_eq!(
        report.plan.seed, n,
        "the seed shown is the one the run used"
    );
}

/// `plan` looks the process up now, read-only, so a user sees which process a pid, pidfile or
/// command regex names before anything is stopped.
#[test]
fn plan_shows_each_process_target_with_its_pid_and_command_line() {
    let dir = Dir::new();
    let victim = Victim::start();
    let pid = victim.pid();
    let (code, stdout, stderr) = plan(
        &dir,
        "p.yaml",
        &pause_file(
            pid,
            r#"{ address: "127.0.0.1:9", send: "PING\r\n", expect: "+PONG" }"#,
        ),
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "target     db: process {pid} `sleep 120` (by pid {pid})"
        )),
        "{stdout}"
    );
    assert_eq!(victim.state(), 'S', "plan must not touch the process");

    let gone = 999_999_999;
    let (code, stdout, _) = plan(
        &dir,
        "g.yaml",
        &pause_file(gone, r#"{ address: "127.0.0.1:9" }"#),
        &[],
    );
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!(
            "target     db: process by pid {gone}, not found now: process {gone} does not exist"
        )),
        "{stdout}"
    );
}

/// A stopped process's listening socket still completes handshakes, so a `pause` watched only
/// by connect-only TCP monitors would look healthy; `plan` and `run` warn, and a monitor that
/// needs an answer silences the warning.
#[test]
fn a_pause_watched_only_by_tcp_connects_is_warned_about() {
    let dir = Dir::new();
    let victim = Victim::start();
    let (code, _, stderr) = plan(
        &dir,
        "w.yaml",
        &pause_file(victim.pid(), r#"{ address: "127.0.0.1:9" }"#),
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("w.yaml:13:12: faults[0].pause: `pause` stops the process, but every monitor only opens a TCP connection"),
        "{stderr}"
    );
    assert!(stderr.starts_with("warning: "), "{stderr}");

    let (code, _, stderr) = plan(
        &dir,
        "ok.yaml",
        &pause_file(
            victim.pid(),
            r#"{ address: "127.0.0.1:9", send: "PING\r\n", expect: "+PONG" }"#,
        ),
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

/// A phase over an hour is more often a typo than a plan: warned about, unless
/// `policies.max_duration` says long runs are meant (and then it caps them).
#[test]
fn long_phases_are_warned_about_unless_max_duration_allows_them() {
    let dir = Dir::new();
    let victim = Victim::start();
    let long = pause_file(
        victim.pid(),
        r#"{ address: "127.0.0.1:9", send: "x", expect: "y" }"#,
    )
    .replace("inject: 1s", "inject: 90m");
    let (code, _, stderr) = plan(&dir, "long.yaml", &long, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("long.yaml:15:33: phases.inject: inject lasts 1h30m, over an hour; if that is meant, say so with `policies.max_duration`"),
        "{stderr}"
    );
    let (code, _, stderr) = plan(
        &dir,
        "allowed.yaml",
        &format!("{long}policies: {{ max_duration: 2h }}\n"),
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}
