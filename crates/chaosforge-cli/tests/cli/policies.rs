//! The policies on real runs: an approval bound to the file's content, a time window judged on
//! a given clock (`CHAOSFORGE_NOW`), forbidden labels, and a safety abort after consecutive
//! failed samples.

use crate::support::{Dir, EchoServer, chaosforge};

fn experiment(up: &EchoServer, fault: &str, policies: &str) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!(
        r#"apiVersion: chaosforge/v1
name: policies
seed: 1
metadata: {{ owner: team-a }}
targets:
  - name: backend
    proxy: {{ listen: "127.0.0.1:{port}", upstream: "{up}" }}
    labels: {{ service: backend, env: staging }}
hypothesis:
  monitors:
    - name: port
      tcp: {{ address: "127.0.0.1:{port}", interval: 50ms, timeout: 500ms }}
      expect: ["availability >= 99%"]
faults:
  - name: the-fault
    {fault}
    target: {{ select: {{ service: backend }} }}
phases: {{ baseline: 500ms, inject: 5s, recover_within: 3s }}
policies:
{policies}
"#,
        up = up.addr
    )
}

fn run(
    dir: &Dir,
    exp: &std::path::Path,
    extra: &[&str],
    now: Option<&str>,
) -> (i32, String, String) {
    let mut cmd = chaosforge();
    cmd.arg("run")
        .arg(exp)
        .arg("--state-dir")
        .arg(dir.state())
        .args(extra);
    if let Some(n) = now {
        cmd.env("CHAOSFORGE_NOW", n);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_approval_is_bound_to_the_file_content() {
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "approve.yaml",
        &experiment(
            &up,
            "latency: { delay: 1ms }",
            "  approval: { approvers: [alice] }",
        ),
    );
    let (code, _, stderr) = run(&dir, &exp, &[], None);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("policy approval: needs an approval by one of alice"),
        "{stderr}"
    );
    assert!(dir.journals().is_empty(), "nothing ran");
    // Someone who is not an approver cannot approve.
    let (code, _, stderr) = run(&dir, &exp, &["--approve", "mallory"], None);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("mallory is not an approver"), "{stderr}");

    let out = chaosforge()
        .args(["approve"])
        .arg(&exp)
        .args(["--as", "alice", "--state-dir"])
        .arg(dir.state())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, stdout, stderr) = run(&dir, &exp, &[], None);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("policy      approval: approved by alice"),
        "{stdout}"
    );
    let journal = std::fs::read_to_string(&dir.journals()[0]).unwrap();
    assert!(
        journal.contains("approved by alice"),
        "the approver is journaled"
    );

    // A changed file needs a new approval.
    let text = std::fs::read_to_string(&exp).unwrap();
    std::fs::write(&exp, text.replace("delay: 1ms", "delay: 2ms")).unwrap();
    let (code, _, stderr) = run(&dir, &exp, &[], None);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("needs an approval"), "{stderr}");
    // A forged approval file for the new content does not verify.
    let approvals = dir.state().join("approvals");
    let old = std::fs::read_dir(&approvals)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let forged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&old).unwrap()).unwrap();
    let new_hash = {
        let out = std::process::Command::new("sha256sum")
            .arg(&exp)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let mut forged = forged;
    forged["sha256"] = serde_json::Value::String(new_hash.clone());
    std::fs::write(
        approvals.join(format!("{new_hash}.json")),
        forged.to_string(),
    )
    .unwrap();
    let (code, _, stderr) = run(&dir, &exp, &[], None);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("does not verify"), "{stderr}");
}

#[test]
fn the_time_window_refuses_outside_hours_and_forbidden_labels_need_an_override() {
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "window.yaml",
        &experiment(
            &up,
            "latency: { delay: 1ms }",
            "  time_window: { timezone: Europe/Paris, days: mon-fri, hours: \"09:00-16:00\" }\n  compliance: { forbid: { env: staging } }",
        ),
    );
    // Saturday: refused, nothing injected.
    let (code, _, stderr) = run(
        &dir,
        &exp,
        &["--allow-forbidden"],
        Some("2026-12-12T10:00:00Z"),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("policy time window: Sat 2026-12-12 11:00 CET is outside the window"),
        "{stderr}"
    );
    // A weekday inside the window, but the target is forbidden without the override.
    let (code, _, stderr) = run(&dir, &exp, &[], Some("2026-12-07T10:00:00Z"));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("policy compliance: backend labelled env=staging"),
        "{stderr}"
    );
    assert!(dir.journals().is_empty());
    let (code, stdout, stderr) = run(
        &dir,
        &exp,
        &["--allow-forbidden"],
        Some("2026-12-07T10:00:00Z"),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("allowed by --allow-forbidden (journaled)"),
        "{stdout}"
    );
    // `plan` shows each verdict.
    let out = chaosforge()
        .arg("plan")
        .arg(&exp)
        .env("CHAOSFORGE_NOW", "2026-12-07T14:59:59Z")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("policy     time window: REFUSED — the run takes 8.5s but the window"),
        "{stdout}"
    );
    assert!(
        stdout.contains("policy     compliance: REFUSED"),
        "{stdout}"
    );
}

#[test]
fn consecutive_failed_samples_abort_the_run() {
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "safety.yaml",
        &experiment(&up, "down: {}", "  max_consecutive_failures: 5"),
    );
    let (code, stdout, stderr) = run(&dir, &exp, &[], None);
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    assert!(stdout.contains("failed 5 samples in a row"), "{stdout}");
    let journal = std::fs::read_to_string(&dir.journals()[0]).unwrap();
    assert!(journal.contains(r#""policy":"safety""#), "{journal}");
    // Aborted long before the 5 s inject phase ended: the fault was held well under a second
    // of samples (5 × 50 ms) plus the halt's own latency.
    let report = crate::support::report(&dir);
    assert!(
        report.monitors[0].during.samples < 40,
        "{:?}",
        report.monitors[0].during
    );
}

#[test]
fn the_organisation_policy_applies_on_top_and_cannot_be_loosened() {
    let up = EchoServer::start();
    let dir = Dir::new();
    let org = dir.write(
        "org.yaml",
        "policies:\n  time_window: { timezone: UTC, days: mon-fri }\n  max_consecutive_failures: 3\n  compliance: { require: [ticket] }\n",
    );
    // The experiment allows everything itself; the organisation requires a ticket.
    let exp = dir.write(
        "loose.yaml",
        &experiment(&up, "latency: { delay: 1ms }", "  allow_irreversible: true"),
    );
    let out = chaosforge()
        .arg("validate")
        .arg(&exp)
        .env("CHAOSFORGE_POLICY", &org)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let org_file = org.display().to_string();
    assert!(
        stderr.contains(&format!("{org_file}:4:")),
        "reported in the organisation's file: {stderr}"
    );
    assert!(
        stderr.contains("organisation policy: the experiment must state its ticket"),
        "{stderr}"
    );
    // With a ticket the file is valid, and the organisation's window still applies.
    let text = std::fs::read_to_string(&exp).unwrap().replace(
        "metadata: { owner: team-a }",
        "metadata: { owner: team-a, ticket: CHG-1 }",
    );
    std::fs::write(&exp, text).unwrap();
    let mut cmd = chaosforge();
    cmd.arg("run")
        .arg(&exp)
        .arg("--state-dir")
        .arg(dir.state())
        .env("CHAOSFORGE_POLICY", &org)
        .env("CHAOSFORGE_NOW", "2026-12-12T10:00:00Z");
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("policy time window: Sat 2026-12-12 10:00 UTC is outside"),
        "{stderr}"
    );
    // A kill is irreversible: allowed by the file, refused by the organisation.
    let victim = crate::support::Victim::start();
    let kill = dir.write(
        "kill.yaml",
        &format!(
            "apiVersion: chaosforge/v1\nname: k\nmetadata: {{ ticket: CHG-2 }}\ntargets:\n  - name: v\n    process: {{ pid: {} }}\nhypothesis:\n  monitors:\n    - name: m\n      tcp: {{ address: \"{}\" }}\n      expect: [\"availability >= 1%\"]\nfaults:\n  - name: kill-it\n    kill: {{}}\n    target: {{ select: {{ name: v }} }}\npolicies:\n  allow_irreversible: true\n",
            victim.pid(),
            up.addr
        ),
    );
    let out = chaosforge()
        .arg("validate")
        .arg(&kill)
        .env("CHAOSFORGE_POLICY", &org)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("organisation policy: irreversible faults are not allowed: `kill-it`"),
        "{stderr}"
    );
}
