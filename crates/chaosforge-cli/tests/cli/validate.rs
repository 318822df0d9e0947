//! `chaosforge validate` and `schema`: every malformed file under tests/data/invalid gives exactly
//! its expected diagnostics (`<file>.expected`, the whole stderr) and exit 2; valid files and the
//! examples pass and validate against the JSON Schema.
//!
//! After an intended change of messages, `UPDATE_EXPECTED=1 cargo test -p chaosforge-cli` rewrites
//! the .expected files; review the diff.

use std::path::Path;

use crate::support::{chaosforge, crate_dir};

fn files(dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(crate_dir().join(dir))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".json"))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_invalid_file_gets_its_diagnostics_and_exit_2() {
    let files = files("tests/data/invalid");
    assert!(
        files.len() >= 25,
        "the table must hold at least 25 malformed files"
    );
    let update = std::env::var_os("UPDATE_EXPECTED").is_some();
    let mut mismatches = Vec::new();
    for f in &files {
        let out = chaosforge().args(["validate", f]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{f}: exit code");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains(f.as_str()),
            "{f}: diagnostics must name the file:\n{stderr}"
        );
        let expected_path = crate_dir().join(format!("{f}.expected"));
        if update {
            std::fs::write(&expected_path, &stderr).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if stderr != expected {
            mismatches.push(format!("--- {f}\nexpected:\n{expected}\ngot:\n{stderr}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn every_diagnostic_names_file_line_column_and_field() {
    for f in files("tests/data/invalid") {
        let out = chaosforge().args(["validate", &f]).output().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        for line in stderr.lines().filter(|l| !l.starts_with("error:")) {
            // A problem inside an inventory file the experiment names is reported in that file.
            let inventory = line
                .strip_prefix("tests/data/invalid/inventory-bad/")
                .and_then(|l| l.split_once(".yaml:"))
                .map(|(_, rest)| rest);
            let rest = line
                .strip_prefix(&format!("{f}:"))
                .or(inventory)
                .unwrap_or_else(|| panic!("{f}: `{line}` does not start with the file"));
            let mut parts = rest.splitn(3, ':');
            let (l, c) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            assert!(
                l.parse::<u32>().is_ok() && c.parse::<u32>().is_ok(),
                "{f}: `{line}` lacks line:col"
            );
        }
    }
}

#[test]
fn many_problems_are_all_reported_at_once() {
    let out = chaosforge()
        .args(["validate", "tests/data/invalid/33-many-problems.yaml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let n = stderr.lines().filter(|l| !l.starts_with("error:")).count();
    assert!(
        n >= 5,
        "five problems were planted, {n} reported:\n{stderr}"
    );
}

#[test]
fn valid_files_and_examples_pass() {
    let mut all = files("tests/data/valid");
    all.extend(files("../../examples"));
    assert!(all.len() >= 3);
    let out = chaosforge().arg("validate").args(&all).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn several_files_report_each_and_fail_together() {
    let out = chaosforge()
        .args([
            "validate",
            "tests/data/valid/base.yaml",
            "tests/data/invalid/02-duration-with-space.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("base.yaml: valid"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("02-duration-with-space.yaml:"));
}

#[test]
fn examples_validate_against_the_json_schema() {
    let out = chaosforge().arg("schema").output().unwrap();
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema itself is valid");
    let mut all = files("../../examples");
    all.extend(files("tests/data/valid"));
    for f in all {
        let path = crate_dir().join(&f);
        let text = std::fs::read_to_string(&path).unwrap();
        let doc = chaosforge::source::Document::parse(&f, &text).unwrap();
        let value: serde_json::Value = chaosforge::de::decode(&doc).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{f} does not validate against `chaosforge schema`: {errors:?}"
        );
    }
    // The schema must reject what validation rejects structurally.
    let bad = serde_json::json!({"apiVersion": "chaosforge/v1", "name": "x", "hypothesis": {"monitors": []}, "bogus": 1});
    assert!(
        !validator.is_valid(&bad),
        "unknown top-level fields must be rejected by the schema"
    );
    // One rule for units in the schema too: a bare number is refused for durations, sizes and
    // rates (only `0` stays), while a ratio may still be a bare fraction.
    let with = |fault: serde_json::Value, phases: serde_json::Value| {
        serde_json::json!({"apiVersion": "chaosforge/v1", "name": "x",
            "hypothesis": {"monitors": []}, "phases": phases,
            "faults": [{"name": "f", "target": {}, "latency": fault}]})
    };
    for (fault, phases, ok) in [
        (
            serde_json::json!({"delay": "150ms"}),
            serde_json::json!({"inject": "30s"}),
            true,
        ),
        (
            serde_json::json!({"delay": 0, "toxicity": 0.5}),
            serde_json::json!({"inject": "1m30s"}),
            true,
        ),
        (
            serde_json::json!({"delay": 150}),
            serde_json::json!({}),
            false,
        ),
        (
            serde_json::json!({"delay": "150"}),
            serde_json::json!({}),
            false,
        ),
        (
            serde_json::json!({"delay": "1ms"}),
            serde_json::json!({"baseline": 10}),
            false,
        ),
    ] {
        assert_eq!(
            validator.is_valid(&with(fault.clone(), phases.clone())),
            ok,
            "{fault} {phases}"
        );
    }
}

#[test]
fn nothing_is_injected_when_validation_fails() {
    let dir = crate::support::Dir::new();
    let out = chaosforge()
        .args([
            "run",
            "tests/data/invalid/02-duration-with-space.yaml",
            "--state-dir",
        ])
        .arg(dir.state())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was injected"));
    assert!(
        !Path::new(&dir.state()).exists(),
        "a failed validation must not even start a run"
    );
}

/// A kernel-level fault whose mechanisms this machine lacks is a plan-time error at the fault,
/// naming what is missing; with a fallback, the plan says which mechanism it will use.
#[test]
fn plan_names_the_mechanism_or_the_missing_capability() {
    let dir = crate::support::Dir::new();
    let exp = dir.write(
        "kernel.yaml",
        r#"apiVersion: chaosforge/v1
name: slow-node
targets:
  - name: node
    host: local
hypothesis:
  monitors:
    - name: up
      tcp: { address: "127.0.0.1:9" }
      expect: ["availability >= 99%"]
faults:
  - name: slow
    latency: { delay: 50ms, jitter: 5ms }
    target: { select: { name: node } }
  - name: throttle
    rate: { rate: 8Mbit/s, direction: ingress }
    target: { select: { name: node } }
phases: { baseline: 1s, inject: 1s, recover_within: 5s }
"#,
    );
    let out = chaosforge()
        .args(["plan", exp.to_str().unwrap()])
        .env("CHAOSFORGE_WITHOUT", "netem,nfqueue,ifb")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("kernel.yaml:13:14: faults[0].latency: kernel-level `latency` is not possible on this machine: missing the netem qdisc (sch_netem); NFQUEUE (hidden by CHAOSFORGE_WITHOUT)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("faults[1].rate: `rate` needs ifb devices with the ingress qdisc and mirred (to shape incoming packets)"),
        "{stderr}"
    );

    // CI runs as root with the tools `.ci/run` installs: NFQUEUE and htb are there.
    let out = chaosforge()
        .args(["plan", exp.to_str().unwrap()])
        .env("CHAOSFORGE_WITHOUT", "netem")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("latency 50ms ±5ms (egress, via nfqueue (userspace))"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rate 8Mbit/s (ingress, via htb)"),
        "{stdout}"
    );
}

/// `plan` checks what only this machine can tell: the namespace exists, the interface is there.
#[test]
fn plan_reports_unknown_namespaces_and_interfaces() {
    let dir = crate::support::Dir::new();
    let exp = dir.write(
        "hosts.yaml",
        r#"apiVersion: chaosforge/v1
name: hosts
targets:
  - { name: ghost, netns: cf-no-such-namespace }
  - { name: me, host: local, interface: nosuch0 }
hypothesis:
  monitors:
    - name: up
      tcp: { address: "127.0.0.1:9" }
      expect: ["availability >= 99%"]
faults:
  - name: cut
    partition: { peers: [10.0.0.1] }
    target: { select: { name: ghost } }
phases: { baseline: 1s, inject: 1s, recover_within: 5s }
"#,
    );
    let out = chaosforge()
        .args(["plan", exp.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("hosts.yaml:4:27: targets[0].netns: network namespace `cf-no-such-namespace` does not exist (see `ip netns list`)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hosts.yaml:5:41: targets[1].interface: this host has no interface `nosuch0` (see `ip link`)"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was injected"), "{stderr}");
}

/// The process faults (`fd-exhaustion`, `process-limit`, `freeze`, `restart`, `kill` of a group
/// or a cgroup) validate, describe themselves in the plan, and match `chaosforge schema`.
#[test]
fn process_faults_plan_and_match_the_schema() {
    let dir = crate::support::Dir::new();
    let text = r#"apiVersion: chaosforge/v1
name: process-faults
targets:
  - name: api
    process: { pid: 4242 }
hypothesis:
  monitors:
    - name: health
      http: { url: "http://127.0.0.1:8080/health", interval: 100ms }
      expect: ["availability >= 99%"]
faults:
  - name: no-fds
    fd-exhaustion: { headroom: 2 }
    target: { select: { name: api } }
  - name: no-forks
    process-limit: {}
    target: { select: { name: api } }
  - name: ice
    freeze: { tree: true }
    target: { select: { name: api } }
  - name: bounce
    restart: { command: "systemctl restart api", ready: { http: "http://127.0.0.1:8080/health" }, timeout: 45s }
    target: { select: { name: api } }
  - name: kill-the-group
    kill: { signal: SIGTERM, group: true }
    target: { select: { name: api } }
  - name: kill-the-service
    kill: { cgroup: true }
    target: { select: { name: api } }
policies: { allow_irreversible: true }
"#;
    let exp = dir.write("process.yaml", text);
    let out = chaosforge()
        .args(["plan", exp.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "fd-exhaustion: 2 more file descriptor(s) (RLIMIT_NOFILE)",
        "process-limit: no new processes for its user (RLIMIT_NPROC)",
        "freeze its cgroup, with its descendants (reverted by thawing)",
        "restart with `systemctl restart api`, ready within 45s when http://127.0.0.1:8080/health answers 2xx/3xx",
        "kill the process group with SIGTERM (irreversible)",
        "kill every process in the cgroup with SIGKILL (irreversible)",
    ] {
        assert!(stdout.contains(line), "`{line}` missing from:\n{stdout}");
    }
    let out = chaosforge().arg("schema").output().unwrap();
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let doc = chaosforge::source::Document::parse("process.yaml", text).unwrap();
    let value: serde_json::Value = chaosforge::de::decode(&doc).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut typo = value.clone();
    typo["faults"][2]["freeze"]["tre"] = serde_json::json!(true);
    assert!(
        !validator.is_valid(&typo),
        "the schema rejects unknown fields"
    );
}
