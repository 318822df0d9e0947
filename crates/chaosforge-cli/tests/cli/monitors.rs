//! `command` and `process` monitors in real runs: a paused process is seen by a command that
//! reads its state (exit codes and parsed values judged) and by a process monitor (a stopped
//! process fails its samples); a command that hangs is killed at its timeout and counted as a
//! failed sample, not a stuck runner.

use crate::support::{Dir, Victim, report, run_exit};

#[test]
fn a_paused_process_is_seen_by_command_and_process_monitors() {
    let victim = Victim::start();
    let dir = Dir::new();
    let pid = victim.pid();
    let exp = dir.write(
        "pause.yaml",
        &format!(
            r#"apiVersion: chaosforge/v1
name: monitors-see-a-pause
seed: 3
targets:
  - name: victim
    process: {{ pid: {pid} }}
    labels: {{ service: victim }}
hypothesis:
  monitors:
    - name: stopped-flag
      command:
        run: "grep -q '^State:.*stopped' /proc/{pid}/status && echo stopped=1 || echo stopped=0"
        interval: 100ms
        timeout: 1s
        value: {{ regex: "stopped=(\\d)" }}
      expect: ["value.max < 0.5", "availability >= 99%"]
    - name: alive
      command: {{ run: ["kill", "-0", "{pid}"], interval: 100ms }}
      expect: ["availability >= 99%"]
    - name: victim
      process: {{ target: victim, interval: 100ms }}
      expect: ["availability >= 90%", "resource.threads.max < 10", "resource.memory < 64MiB"]
faults:
  - name: freeze
    pause: {{}}
    target: {{ select: {{ service: victim }} }}
phases: {{ baseline: 800ms, inject: 1s, recover_within: 5s }}
"#
        ),
    );
    let stdout = run_exit(&exp, &dir, 1);
    assert!(stdout.contains("REFUTED"), "{stdout}");
    let r = report(&dir);
    let by_name = |n: &str| r.monitors.iter().find(|m| m.name == n).unwrap();
    let flag = by_name("stopped-flag");
    // The number parsed from stdout was 0 before and after, 1 while paused.
    let value = &flag.expectations[0];
    assert_eq!(value.baseline.value, Some(0.0), "{value:?}");
    assert_eq!(value.during.value, Some(1.0), "{value:?}");
    assert_eq!(value.during.held, Some(false), "{value:?}");
    assert_eq!(value.after.value, Some(0.0), "{value:?}");
    // Exit codes: `kill -0` of a stopped process still succeeds; the grep|echo line exits 0.
    assert_eq!(by_name("alive").during.availability, Some(1.0));
    assert_eq!(flag.during.availability, Some(1.0));
    // The process monitor calls a stopped process unhealthy, and its readings are real.
    let p = by_name("victim");
    assert_eq!(p.baseline.availability, Some(1.0), "{p:?}");
    assert!(p.during.availability.unwrap() < 0.5, "{p:?}");
    assert_eq!(p.expectations[0].during.held, Some(false));
    assert_eq!(
        p.expectations[1].during.held,
        Some(true),
        "sleep has one thread"
    );
    let rss = p.expectations[2].baseline.value.unwrap();
    assert!(
        rss > 100_000.0 && rss < 64.0 * 1048576.0,
        "RSS of sleep: {rss}"
    );
}

#[test]
fn a_hanging_command_is_killed_at_its_timeout_and_fails_its_sample() {
    let dir = Dir::new();
    let exp = dir.write(
        "hang.yaml",
        r#"apiVersion: chaosforge/v1
name: hanging-monitor
hypothesis:
  monitors:
    - name: hangs
      command: { run: "sleep 30; echo never", interval: 200ms, timeout: 300ms }
      expect: ["availability >= 99%"]
phases: { baseline: 1s, inject: 1s, recover_within: 1s }
"#,
    );
    // No faults: the run is a steady-state check, and a monitor that never answers is not
    // steady (exit 2).
    let stdout = run_exit(&exp, &dir, 2);
    assert!(
        stdout.contains("NOT STEADY") || stdout.contains("not steady"),
        "{stdout}"
    );
    let r = report(&dir);
    let m = &r.monitors[0];
    assert!(m.baseline.samples >= 3, "{m:?}");
    assert_eq!(m.baseline.ok, 0, "{m:?}");
    let journal = std::fs::read_to_string(&dir.journals()[0]).unwrap();
    assert!(journal.contains("timeout after 300ms"), "samples say why");
    // The shell and its `sleep` are gone: killed with their process group.
    let leftover: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("sleep 30; echo never"))
        .collect();
    assert!(
        leftover.is_empty(),
        "a timed-out command was left running: {leftover:?}"
    );
}

/// A slow command started while the baseline settles is still running when the pause lands, so
/// it reads `stopped`. The baseline verdict the run acted on never saw it, and the report must
/// agree: such a sample belongs to no window.
#[test]
fn a_baseline_sample_still_running_at_injection_belongs_to_no_window() {
    let victim = Victim::start();
    let dir = Dir::new();
    let pid = victim.pid();
    let exp = dir.write(
        "straddle.yaml",
        &format!(
            r#"apiVersion: chaosforge/v1
name: a-sample-straddles-the-injection
seed: 3
targets:
  - name: victim
    process: {{ pid: {pid} }}
    labels: {{ service: victim }}
hypothesis:
  monitors:
    - name: stopped-flag
      command:
        # Reads the state 250 ms after the sample starts: samples started while the baseline
        # settles read it after the pause.
        run: "sleep 0.25; grep -q '^State:.*stopped' /proc/{pid}/status && echo stopped=1 || echo stopped=0"
        interval: 50ms
        timeout: 2s
        value: {{ regex: "stopped=(\\d)" }}
      expect: ["value.max < 0.5"]
faults:
  - name: freeze
    pause: {{}}
    target: {{ select: {{ service: victim }} }}
phases: {{ baseline: 800ms, inject: 1s, recover_within: 5s }}
"#
        ),
    );
    let stdout = run_exit(&exp, &dir, 1);
    assert!(stdout.contains("REFUTED"), "{stdout}");
    let r = report(&dir);
    let value = &r.monitors[0].expectations[0];
    assert_eq!(value.baseline.value, Some(0.0), "{value:?}");
    assert_eq!(value.baseline.held, Some(true), "{value:?}");
    assert_eq!(value.during.value, Some(1.0), "{value:?}");
    // Such samples exist (else this test proves nothing): journaled in the inject phase,
    // started before it.
    let journal = std::fs::read_to_string(&dir.journals()[0]).unwrap();
    let events: Vec<serde_json::Value> = journal
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let inject_at = events
        .iter()
        .find(|e| e["event"] == "phase" && e["phase"] == "inject")
        .map(|e| e["at_ms"].clone())
        .expect("an inject phase");
    let straddling = events
        .iter()
        .filter(|e| e["event"] == "sample" && e["phase"] == "inject")
        .count();
    assert!(
        straddling > 0,
        "no sample straddled the injection at {inject_at}: {journal}"
    );
}
