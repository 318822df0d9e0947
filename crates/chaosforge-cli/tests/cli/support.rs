//! Shared helpers: the binary, scratch directories, a loopback TCP server, victim processes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
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
        let (addr, stop) = serve_loopback(|mut c| {
            let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
            let mut buf = [0u8; 4096];
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 || c.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        EchoServer { addr, stop }
    }
}

/// Accepts connections on a free loopback port, each handled by `handle` on its own thread,
/// until the returned flag is set.
pub fn serve_loopback(
    handle: impl Fn(TcpStream) + Send + Sync + Clone + 'static,
) -> (SocketAddr, Arc<AtomicBool>) {
    chaosforge::testkit::assert_isolated();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((c, _)) => {
                    let _ = c.set_nonblocking(false);
                    let h = handle.clone();
                    std::thread::spawn(move || h(c));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    (addr, stop)
}

/// The report of the (only) run under `dir`, rebuilt from its journal.
pub fn report(dir: &Dir) -> chaosforge::report::Report {
    let journal = &dir.journals()[0];
    chaosforge::report::Report::from_events(&chaosforge::journal::read(journal).unwrap()).unwrap()
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

/// [`run`], asserting the exit code (showing both outputs if it differs); returns stdout.
pub fn run_exit(exp: &Path, dir: &Dir, code: i32) -> String {
    let out = run(exp, dir);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
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

/// The Python interpreter for victims: the system one, which an unprivileged uid can run (a
/// pyenv shim under /root cannot be read by uid 65534).
pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// A victim that tries one operation every 10 ms and writes `<count> <result>` over the start of
/// its stdout (a file), where `result` is `ok` or the errno name (`EMFILE`, `EAGAIN`): the
/// fault is measured by what the process itself sees.
///
/// Modes: `open` (a new socket each time), `fork` (a child that exits at once), `count` (only
/// counts, to see whether it makes progress).
pub const PROBE_VICTIM: &str = r#"
import errno, os, socket, sys, time
mode = sys.argv[1]
n = 0
while True:
    n += 1
    r = "ok"
    try:
        if mode == "open":
            socket.socket().close()
        elif mode == "fork":
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    os.pwrite(1, ("%d %s\n" % (n, r)).ljust(40).encode(), 0)
    time.sleep(0.01)
"#;

/// A Python victim (see [`PROBE_VICTIM`]); killed and reaped when dropped.
pub struct Probed {
    pub child: Child,
    status: PathBuf,
    _dir: tempfile::TempDir,
}

impl Probed {
    /// Runs the victim in `mode` as root.
    pub fn start(mode: &str) -> Self {
        Self::spawn(mode, None)
    }

    /// Runs it as `uid` (gid too, no groups) through `setpriv`.
    pub fn start_as(mode: &str, uid: u32) -> Self {
        Self::spawn(mode, Some(uid))
    }

    fn spawn(mode: &str, uid: Option<u32>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("status");
        let out = std::fs::File::create(&status).unwrap();
        let mut cmd = match uid {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg(python());
                c
            }
            None => Command::new(python()),
        };
        cmd.arg("-c")
            .arg(PROBE_VICTIM)
            .arg(mode)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap();
        let v = Probed {
            child,
            status,
            _dir: dir,
        };
        assert!(
            wait_for(Duration::from_secs(10), || v.read().is_some()),
            "the victim never reported"
        );
        v
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The last `(count, result)` it wrote.
    pub fn read(&self) -> Option<(u64, String)> {
        let text = std::fs::read_to_string(&self.status).ok()?;
        let mut f = text.split_whitespace();
        Some((f.next()?.parse().ok()?, f.next()?.to_string()))
    }

    /// The result of an attempt made after this call (waits up to 2 s for a fresh one).
    pub fn fresh(&self) -> Option<String> {
        let (before, _) = self.read()?;
        let mut last = None;
        wait_for(Duration::from_secs(2), || {
            last = self.read().filter(|(n, _)| *n > before + 1);
            last.is_some()
        });
        last.map(|(_, r)| r)
    }

    /// Whether it advances its count within `window`.
    pub fn progresses(&self, window: Duration) -> bool {
        let before = self.read().map(|(n, _)| n);
        std::thread::sleep(window);
        self.read().map(|(n, _)| n) > before
    }

    /// Async versions for `assert_fault_compliance` observers.
    pub async fn fresh_async(&self) -> Option<String> {
        let (before, _) = self.read()?;
        for _ in 0..100 {
            if let Some((_, r)) = self.read().filter(|(n, _)| *n > before + 1) {
                return Some(r);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    pub async fn progresses_async(&self, window: Duration) -> bool {
        let before = self.read().map(|(n, _)| n);
        tokio::time::sleep(window).await;
        self.read().map(|(n, _)| n) > before
    }
}

impl Drop for Probed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cgroup a test makes (in a v1 hierarchy or the unified one) and removes when dropped: every
/// process left in it is killed first, whatever the test did.
pub struct TestCgroup {
    pub path: PathBuf,
}

impl TestCgroup {
    /// `<root>/cftest-<pid>-<name>`.
    pub fn new(root: &Path, name: &str) -> Self {
        let path = root.join(format!("cftest-{}-{name}", std::process::id()));
        let _ = std::fs::create_dir(&path);
        assert!(path.is_dir(), "cannot create {}", path.display());
        TestCgroup { path }
    }

    pub fn add(&self, pid: i32) {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    pub fn procs(&self) -> Vec<i32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path.join("freezer.state"), "THAWED");
        let _ = std::fs::write(self.path.join("cgroup.freeze"), "0");
        for _ in 0..250 {
            let procs = self.procs();
            for p in &procs {
                if let Some(pid) = rustix::process::Pid::from_raw(*p) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            if std::fs::remove_dir(&self.path).is_ok() || !self.path.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The mount point of the unified (v2) hierarchy, if one is mounted.
pub fn cgroup2_root() -> Option<PathBuf> {
    mounts()
        .into_iter()
        .find(|(_, fs, _)| fs == "cgroup2")
        .map(|(at, _, _)| PathBuf::from(at))
}

/// The mount point of the v1 hierarchy with `controller`, if one is mounted.
pub fn cgroup1_root(controller: &str) -> Option<PathBuf> {
    mounts()
        .into_iter()
        .find(|(_, fs, opts)| fs == "cgroup" && opts.split(',').any(|o| o == controller))
        .map(|(at, _, _)| PathBuf::from(at))
}

fn mounts() -> Vec<(String, String, String)> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| (f[1].to_string(), f[2].to_string(), f[3].to_string()))
        })
        .collect()
}

/// The cgroup of `pid` in the hierarchy mounted at `root` (`/proc/PID/cgroup`).
pub fn cgroup_in(root: &Path, pid: i32) -> Option<PathBuf> {
    let v2 = cgroup2_root().as_deref() == Some(root);
    let opts = mounts()
        .into_iter()
        .find(|(at, _, _)| Path::new(at) == root)?
        .2;
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (id, ctl, path) = (f.next()?, f.next()?, f.next()?);
        let mine = if v2 {
            id == "0" && ctl.is_empty()
        } else {
            !ctl.is_empty() && ctl.split(',').all(|c| opts.split(',').any(|o| o == c))
        };
        mine.then(|| root.join(path.trim_start_matches('/')))
    })
}

/// Whether `pid` is alive (exists and is not a zombie).
pub fn alive(pid: i32) -> bool {
    chaosforge::fault::process::state_of(pid).is_some_and(|s| s != 'Z')
}

/// `GET path` from a loopback HTTP server at `addr` (HTTP/1.0, so the server closes and no
/// chunked decoding is needed), with 2 s timeouts: the status and the body, or `None` when
/// nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    chaosforge::testkit::assert_isolated();
    let addr: SocketAddr = addr.parse().ok()?;
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    c.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// A `chaosforge proxy` server on a free loopback port, killed when dropped.
pub struct ProxyServer {
    child: std::process::Child,
    pub api: String,
}

impl ProxyServer {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = chaosforge()
            .args(["proxy", "--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let api = format!("127.0.0.1:{port}");
        assert!(wait_for(Duration::from_secs(10), || {
            std::net::TcpStream::connect(&api).is_ok()
        }));
        ProxyServer { child, api }
    }

    /// One HTTP/1.1 request; returns (status, body).
    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.api).unwrap();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (
            status,
            out.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
        )
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
