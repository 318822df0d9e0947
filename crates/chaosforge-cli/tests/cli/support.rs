//! Shared helpers: the binary, scratch directories, a loopback TCP server, victim processes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `chaosforge` built by cargo for this test run, run from the crate directory.
pub fn chaosforge() -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin!("chaosforge"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env_remove("CHAOSFORGE_STATE_DIR");
    c
}

/// The crate directory.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory with an experiment file in it.
pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Self {
        chaosforge::testkit::assert_isolated();
        Dir {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Every journal written under the state directory.
    pub fn journals(&self) -> Vec<PathBuf> {
        let runs = self.state().join("runs");
        let Ok(rd) = std::fs::read_dir(runs) else {
            return Vec::new();
        };
        rd.filter_map(Result::ok)
            .map(|e| e.path().join("journal.jsonl"))
            .filter(|p| p.is_file())
            .collect()
    }
}

/// A loopback TCP server that answers every line with the same line (an upstream for proxies,
/// and a target for TCP monitors). Stops when dropped.
pub struct EchoServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl EchoServer {
    pub fn start() -> Self {
        chaosforge::testkit::assert_isolated();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        std::thread::spawn(move || {
                            let _ = c.set_nonblocking(false);
                            let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                            let mut buf = [0u8; 4096];
                            while let Ok(n) = c.read(&mut buf) {
                                if n == 0 || c.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        EchoServer { addr, stop }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A `sleep` process to pause and kill; killed and reaped when dropped, whatever the test did.
pub struct Victim {
    pub child: Child,
}

impl Victim {
    pub fn start() -> Self {
        let child = Command::new("sleep")
            .arg("120")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Victim { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The state letter in /proc/PID/stat (`T` when stopped).
    pub fn state(&self) -> char {
        chaosforge::fault::process::state_of(self.pid()).unwrap_or('?')
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 20 ms for up to `limit`.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let tries = (limit.as_millis() / 20).max(1);
    for _ in 0..tries {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Sends a signal to a child.
pub fn signal(child: &Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

/// An experiment that pauses `victim` for a long inject phase, watched by a TCP monitor on `up`
/// (which the pause does not affect).
pub fn pause_experiment(victim: &Victim, up: &EchoServer) -> String {
    format!(
        r#"apiVersion: chaosforge/v1
name: pause-test
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
    )
}

/// Starts `chaosforge run` on `exp` in the background, output discarded.
pub fn spawn_run(exp: &Path, dir: &Dir) -> Child {
    chaosforge()
        .arg("run")
        .arg(exp)
        .arg("--state-dir")
        .arg(dir.state())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `chaosforge run EXP --state-dir DIR/state`, to completion.
pub fn run(exp: &Path, dir: &Dir) -> std::process::Output {
    chaosforge()
        .arg("run")
        .arg(exp)
        .arg("--state-dir")
        .arg(dir.state())
        .output()
        .unwrap()
}

/// `chaosforge recover --state-dir DIR/state`.
pub fn recover(dir: &Dir) -> std::process::Output {
    chaosforge()
        .arg("recover")
        .arg("--state-dir")
        .arg(dir.state())
        .output()
        .unwrap()
}
