//! Crash torture: `chaosforge run` is SIGKILLed at a random moment (seeded) while a pause, a
//! partition, a CPU stress, a disk fill, an NFQUEUE latency, a two-way rate limit, a duplicate,
//! an fd exhaustion and a freeze are being injected or held; `chaosforge recover` must then
//! leave **zero residue**: no chaosforge nft table, iptables chain, NFQUEUE rule, qdisc or ifb,
//! no process in state T, no stress worker, no cgroup (stress or freeze), no ballast file, and
//! the victim's resource limits exactly as they were. `CHAOSFORGE_TORTURE_TRIALS` (default 30) and
//! `CHAOSFORGE_TORTURE_SEED` set the run; `scripts/torture` runs 1000.

use std::process::{Command, Stdio};
use std::time::Duration;

use chaosforge::fault::host::exec::SystemExecutor;
use chaosforge::fault::host::{iptables, nft, tc};

use crate::netns::Hosts;

/// A tmpfs mounted on a temporary directory, unmounted on drop (also on panic).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount() -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs (needs root)");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// A `sleep` victim, killed and reaped on drop.
struct Victim(std::process::Child);

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The runners this test started. Stress workers, stress cgroups and freeze cgroups carry the
/// pid of the runner that made them (`chaosforge/<pid>-…`, `chaosforge-freeze-<pid>-…`), and
/// only those count: other tests on the same machine run chaosforge too, and their live workers
/// and cgroups are neither this test's residue nor this test's to clean up.
#[derive(Default)]
struct Runners(Vec<u32>);

/// Clears what a failed trial left behind, on drop while panicking: a failed assertion must not
/// leave stress workers burning, cgroups behind or a victim frozen, or every later run of this
/// test fails at trial 0 on the previous run's residue. (Network residue lives in this test's
/// namespaces and dies with them; the victims are killed by their own guards.)
struct CleanupOnFailure(Runners);

impl Runners {
    fn made(&self, cgroup: &std::path::Path) -> bool {
        let name = cgroup.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        let name = name.strip_prefix("chaosforge-freeze-").unwrap_or(&name);
        self.0
            .iter()
            .any(|pid| name.starts_with(&format!("{pid}-")))
    }

    /// This test's stress cgroups that still exist.
    fn stress_cgroups(&self) -> Vec<std::path::PathBuf> {
        let mut all = chaosforge::fault::stress::chaosforge_cgroups();
        all.retain(|c| self.made(c));
        all
    }

    /// This test's freeze cgroups that still exist.
    fn freeze_cgroups(&self) -> Vec<std::path::PathBuf> {
        let mut all = chaosforge::fault::freeze::freeze_cgroups();
        all.retain(|c| self.made(c));
        all
    }

    /// Live (not zombie) stress workers of this test's runners: a worker's command line holds
    /// its cgroup's path.
    fn stress_workers(&self) -> usize {
        let marks: Vec<String> = self.0.iter().map(|p| format!("/chaosforge/{p}-")).collect();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| {
                        let c = String::from_utf8_lossy(&c);
                        c.contains("__stress-worker") && marks.iter().any(|m| c.contains(m))
                    })
                    .unwrap_or(false)
                    && chaosforge::fault::process::state_of(*pid) != Some('Z')
            })
            .count()
    }
}

impl Drop for CleanupOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let freezes = self.0.freeze_cgroups();
        let stresses = self.0.stress_cgroups();
        for cg in &freezes {
            // Thaw first: a frozen process does not die of SIGKILL until it is thawed.
            let _ = std::fs::write(cg.join("freezer.state"), "THAWED");
            let _ = std::fs::write(cg.join("cgroup.freeze"), "0");
        }
        for cg in stresses.iter().chain(&freezes) {
            let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // A freeze cgroup holds a victim, which its own guard kills: move it back to
                // the hierarchy's root (where freeze cgroups are made) instead.
                let moved = freezes.contains(cg)
                    && cg.parent().is_some_and(|root| {
                        std::fs::write(root.join("cgroup.procs"), pid.to_string()).is_ok()
                    });
                if !moved {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                }
            }
        }
        // SIGKILLed workers leave their cgroup busy until they are reaped (by init: their
        // runner is gone), which takes a moment.
        for cg in stresses.iter().chain(&freezes) {
            for _ in 0..50 {
                if std::fs::remove_dir(cg).is_ok() || !cg.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(parent) = cg.parent().filter(|p| p.ends_with("chaosforge")) {
                // Busy while another run's cgroup is in it: that is fine.
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

/// Every journal in the state directory, newest last, for a failure message: the events show
/// exactly what the killed runner and `recover` did.
fn journals(state: &std::path::Path) -> String {
    let Ok(runs) = chaosforge::journal::runs(state) else {
        return String::new();
    };
    runs.iter()
        .rev()
        .take(1)
        .map(|r| {
            let text = std::fs::read_to_string(r.dir.join("journal.jsonl")).unwrap_or_default();
            format!("journal of run {} ({}):\n{text}", r.id.0, r.dir.display())
        })
        .collect()
}

fn ballast(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref().is_ok_and(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".chaosforge-ballast")
            })
        })
        .count()
}

/// Every chaosforge nft table, iptables chain, NFQUEUE rule, qdisc and ifb device in the
/// three hosts.
fn network_residue(h: &Hosts) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let exec = SystemExecutor;
    let mut found = Vec::new();
    for ns in [&h.a.ns, &h.b.ns, &h.c.ns] {
        let ns = Some(ns.as_str());
        found.extend(rt.block_on(nft::chaosforge_tables(&exec, ns)).unwrap());
        found.extend(rt.block_on(iptables::residue(&exec, ns)).unwrap());
        found.extend(rt.block_on(tc::residue(&exec, ns)).unwrap());
    }
    found
}

#[test]
fn killed_runs_leave_zero_residue_after_recover() {
    let trials: u64 = std::env::var("CHAOSFORGE_TORTURE_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(30);
    let mut seed: u64 = std::env::var("CHAOSFORGE_TORTURE_SEED")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(20261127);
    chaosforge::testkit::assert_isolated();
    let h = Hosts::new();
    let fs = Tmpfs::mount();
    // The monitor's target: a loopback listener of this test.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let monitored = listener.local_addr().unwrap();
    std::thread::spawn(move || for _ in listener.incoming() {});
    let victim = Victim(Command::new("sleep").arg("600").spawn().unwrap());
    let pid = victim.0.id() as i32;
    // A second victim for the faults on a cgroup and on resource limits.
    let victim2 = Victim(Command::new("sleep").arg("600").spawn().unwrap());
    let pid2 = victim2.0.id() as i32;
    let limits2 = std::fs::read_to_string(format!("/proc/{pid2}/limits")).unwrap();
    // After the victims, so that it drops before them: a frozen victim must be thawed before
    // its guard kills and waits for it.
    let mut ours = CleanupOnFailure(Runners::default());
    let exp =
        fs.0.path()
            .join("..")
            .join(format!("torture-{}.yaml", std::process::id()));
    std::fs::write(
        &exp,
        format!(
            r#"apiVersion: chaosforge/v1
name: torture
targets:
  - {{ name: node-a, netns: {a} }}
  - {{ name: node-b, netns: {b} }}
  - {{ name: node-c, netns: {c} }}
  - {{ name: me, host: local }}
  - {{ name: victim, process: {{ pid: {pid} }} }}
  - {{ name: victim2, process: {{ pid: {pid2} }} }}
hypothesis:
  monitors: [{{ name: port, tcp: {{ address: "{monitored}", interval: 100ms, timeout: 300ms }}, expect: ["availability >= 0%"] }}]
faults:
  - {{ name: freeze, pause: {{}}, target: {{ select: {{ name: victim }} }} }}
  - {{ name: cut, partition: {{ peers: [node-a] }}, target: {{ select: {{ name: node-b }} }} }}
  - {{ name: burn, cpu: {{ workers: 1, percent: 20 }}, target: {{ select: {{ name: me }} }} }}
  - {{ name: fill, disk-fill: {{ path: "{fill}", percent: 50 }}, target: {{ select: {{ name: me }} }} }}
  - {{ name: slow, latency: {{ delay: 20ms, peers: [node-b] }}, target: {{ select: {{ name: node-a }} }} }}
  - {{ name: throttle, rate: {{ rate: 8Mbit/s, direction: both }}, target: {{ select: {{ name: node-c }} }} }}
  - {{ name: twice, duplicate: {{ probability: 5% }}, target: {{ select: {{ name: node-b }} }} }}
  - {{ name: no-fds, fd-exhaustion: {{}}, target: {{ select: {{ name: victim2 }} }} }}
  - {{ name: ice, freeze: {{}}, target: {{ select: {{ name: victim2 }} }} }}
phases: {{ baseline: 100ms, inject: 1s, recover_within: 2s }}
"#,
            a = h.a.ns,
            b = h.b.ns,
            c = h.c.ns,
            fill = fs.0.path().display()
        ),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let bin = assert_cmd::cargo::cargo_bin!("chaosforge");
    let mut killed_with_faults = 0;
    for trial in 0..trials {
        // SplitMix64: a reproducible kill time in 0..1800 ms for each trial.
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let kill_after = Duration::from_millis((z ^ (z >> 31)) % 1800);
        // The runner runs in the test's own namespace (loopback only under `scripts/test`), not
        // under `ip netns exec`, which remounts /sys and so hides the cgroup hierarchy the stress
        // faults need.
        let mut runner = Command::new(bin)
            .args([
                "run",
                exp.to_str().unwrap(),
                "--state-dir",
                state.path().to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        ours.0.0.push(runner.id());
        std::thread::sleep(kill_after);
        let faulted = chaosforge::fault::process::state_of(pid) == Some('T')
            || ours.0.stress_workers() > 0
            || !network_residue(&h).is_empty();
        killed_with_faults += usize::from(faulted);
        let _ = runner.kill();
        runner.wait().unwrap();

        let out = Command::new(bin)
            .args(["recover", "--state-dir", state.path().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "trial {trial}: recover failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            journals(state.path())
        );
        // Zero residue, whatever moment the runner died at.
        let network = network_residue(&h);
        let workers = (0..50).find(|_| {
            let n = ours.0.stress_workers();
            if n > 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
            n == 0
        });
        let limits_now = std::fs::read_to_string(format!("/proc/{pid2}/limits")).unwrap();
        assert_eq!(
            limits_now, limits2,
            "trial {trial}: victim2's limits are restored"
        );
        assert_eq!(
            ours.0.freeze_cgroups(),
            Vec::<std::path::PathBuf>::new(),
            "trial {trial}: freeze cgroups left"
        );
        let residue = (
            network.len(),
            chaosforge::fault::process::state_of(pid) == Some('T'),
            workers.is_none(),
            ours.0.stress_cgroups().len(),
            ballast(fs.0.path()),
        );
        assert_eq!(
            residue,
            (0, false, false, 0, 0),
            "trial {trial} (killed after {kill_after:?}): residue (nft tables/iptables chains/NFQUEUE rules/qdiscs/ifbs, victim stopped, workers alive, cgroups, ballast files): {network:?} {:?}\nrecover said:\n{}\n{}",
            ours.0.stress_cgroups(),
            String::from_utf8_lossy(&out.stdout),
            journals(state.path())
        );
    }
    eprintln!(
        "torture: {trials} trials, {killed_with_faults} killed with faults held, zero residue"
    );
    let _ = std::fs::remove_file(&exp);
}
