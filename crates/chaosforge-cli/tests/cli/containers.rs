//! `container:` targets on a real Docker engine: each test starts its own `dockerd` (own data
//! root, exec root, pidfile and socket; no bridge, no iptables), imports a busybox image made
//! from Debian's `busybox-static` (no registry is reachable), runs containers with
//! `--network none` and wires them with veth pairs on private addresses the test picks. Traffic
//! goes only between namespaces this test made: the test's own (which `scripts/test` gives no
//! default route, checked by `assert_isolated`) and the containers' (checked the same way
//! through `/proc/PID/net/route` before anything is sent from one).
//!
//! The fixture (the containers, the engine, the veths and the `cf-ctr-…` netns names) is torn
//! down by `Drop`, so a failed assertion leaves nothing running.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use chaosforge::fault::container::{ContainerFault, netns_name};
use chaosforge::fault::params::{ContainerAction, ContainerRef, ContainerSelector};
use chaosforge::testkit::assert_fault_compliance;

use crate::support::{Dir, EchoServer, recover, signal, spawn_run, wait_for};

/// A `dockerd` of this test's own, with a busybox image imported.
struct Engine {
    dir: tempfile::TempDir,
    child: Child,
    containers: std::sync::Mutex<Vec<String>>,
}

/// A container of the engine: its id and its init's pid on this host.
struct Ctr {
    id: String,
    pid: i32,
}

/// Host-side veth names this test made (deleted on drop; deleting one end deletes both).
struct Veths(Vec<String>);

impl Drop for Veths {
    fn drop(&mut self) {
        for v in &self.0 {
            let _ = Command::new("ip")
                .args(["link", "del", v])
                .stderr(Stdio::null())
                .status();
        }
    }
}

const IMAGE: &str = "cf-busybox:test";

impl Engine {
    /// Starts dockerd (overlay2, else vfs) and imports the image; panics, with dockerd's log,
    /// when it cannot.
    fn start() -> Engine {
        chaosforge::testkit::assert_isolated();
        assert!(
            which("dockerd") && which("docker"),
            "dockerd and docker are needed (apt-get install docker.io); .ci/run installs them"
        );
        // A short path: the engine's sockets live under it and unix socket paths are short.
        let dir = tempfile::Builder::new()
            .prefix("cfd")
            .tempdir_in("/tmp")
            .unwrap();
        let mut last_log = String::new();
        for driver in ["overlay2", "vfs"] {
            let mut child = Self::spawn(dir.path(), driver);
            let sock = dir.path().join("sock");
            let up = wait_for(Duration::from_secs(30), || {
                sock.exists()
                    && docker_at(&sock, &["version", "--format", "{{.Server.Version}}"])
                        .status
                        .success()
            });
            if up {
                let e = Engine {
                    dir,
                    child,
                    containers: Default::default(),
                };
                e.import_image();
                return e;
            }
            last_log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "dockerd did not come up with overlay2 or vfs; its log ends:\n{}",
            tail(&last_log, 40)
        );
    }

    fn spawn(dir: &Path, driver: &str) -> Child {
        let p = |n: &str| dir.join(n).display().to_string();
        Command::new("dockerd")
            .args([
                "--data-root",
                &p(&format!("data-{driver}")),
                "--exec-root",
                &p("exec"),
                "--pidfile",
                &p("pid"),
                "-H",
                &format!("unix://{}", p("sock")),
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--storage-driver",
                driver,
            ])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("log")).unwrap())
            .stderr(std::fs::File::create(dir.join("log.err")).unwrap())
            .spawn()
            .unwrap()
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// A `targets:` entry for container `name` on this engine, named as the container.
    fn target(&self, name: &str) -> String {
        format!(
            "  - name: {name}\n    container: {{ name: {name}, socket: {} }}",
            self.sock().display()
        )
    }

    /// `docker -H unix://SOCK ARGS…`, asserting success; returns stdout, trimmed.
    fn docker(&self, args: &[&str]) -> String {
        let out = docker_at(&self.sock(), args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A root filesystem of busybox-static with the applets the tests use, imported.
    fn import_image(&self) {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox is needed (apt-get install busybox-static)");
        let root = self.dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("www")).unwrap();
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        for applet in ["sh", "httpd", "nc", "sleep", "cat"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        std::fs::write(root.join("www/index.html"), "hello from a container\n").unwrap();
        let tar = self.dir.path().join("rootfs.tar");
        let ok = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(ok.success(), "tar of the rootfs");
        self.docker(&["import", &tar.display().to_string(), IMAGE]);
    }

    /// `docker run -d --network none --name NAME EXTRA… IMAGE busybox httpd` on port 8080.
    fn httpd(&self, name: &str, extra: &[&str]) -> Ctr {
        let mut args = vec!["run", "-d", "--network", "none", "--name", name];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            IMAGE,
            "/bin/busybox",
            "httpd",
            "-f",
            "-p",
            "8080",
            "-h",
            "/www",
        ]);
        let id = self.docker(&args);
        self.containers.lock().unwrap().push(id.clone());
        let pid: i32 = self
            .docker(&["inspect", "-f", "{{.State.Pid}}", &id])
            .parse()
            .unwrap();
        Ctr { id, pid }
    }

    fn inspect(&self, c: &Ctr, format: &str) -> String {
        self.docker(&["inspect", "-f", format, &c.id])
    }

    fn paused(&self, c: &Ctr) -> bool {
        self.inspect(c, "{{.State.Paused}}") == "true"
    }

    /// `docker exec C busybox nc -w 1 ADDR 8080`: whether container `c` connects to `to`.
    /// Refused unless `c`'s namespace has no default route.
    fn connects_from(&self, c: &Ctr, to: &str) -> bool {
        assert_no_default_route(c.pid);
        let out = docker_at(
            &self.sock(),
            &["exec", &c.id, "/bin/busybox", "nc", "-w", "1", to, "8080"],
        );
        out.status.success()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let ids = self
            .containers
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        for id in &ids {
            // Unpaused first: a paused container cannot be removed by some engines.
            let _ = docker_at(&self.sock(), &["unpause", id]);
            let _ = docker_at(&self.sock(), &["rm", "-f", id]);
            let _ = Command::new("ip")
                .args(["netns", "delete", &netns_name(id)])
                .stderr(Stdio::null())
                .status();
        }
        signal(&self.child, rustix::process::Signal::TERM);
        let done = wait_for(Duration::from_secs(20), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // dockerd's containerd, should it have outlived dockerd.
        if let Ok(pid) =
            std::fs::read_to_string(self.dir.path().join("exec/containerd/containerd.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        // Mounts a killed engine left would make the temp dir's removal fail; unmount them.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {}[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l",
                self.dir.path().display()
            ))
            .status();
    }
}

fn docker_at(sock: &Path, args: &[&str]) -> Output {
    Command::new("docker")
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn which(p: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {p}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Panics if process `pid`'s network namespace has a default route: no traffic is generated
/// from a namespace that could reach beyond this machine.
fn assert_no_default_route(pid: i32) {
    let v4 = std::fs::read_to_string(format!("/proc/{pid}/net/route")).unwrap();
    for line in v4.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(
            !(f.len() > 7 && f[1] == "00000000" && f[7] == "00000000"),
            "refusing to send from pid {pid}'s namespace: it has a default route ({line})"
        );
    }
    let v6 = std::fs::read_to_string(format!("/proc/{pid}/net/ipv6_route")).unwrap_or_default();
    for line in v6.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(
            !(f.len() > 9
                && f[0] == "00000000000000000000000000000000"
                && f[1] == "00"
                && f[9] != "lo"),
            "refusing to send from pid {pid}'s namespace: it has an IPv6 default route ({line})"
        );
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip ARGS…` inside process `pid`'s network namespace.
fn ip_in(pid: i32, args: &[&str]) {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nsenter ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A veth `name`/`name`p: `name` stays in this test's namespace with `ours`, the peer goes
/// into container `c` as `eth0` with `theirs` (both /30 addresses this test picked).
fn wire_to_me(c: &Ctr, name: &str, ours: &str, theirs: &str) -> Veths {
    let peer = format!("{name}p");
    ip(&["link", "add", name, "type", "veth", "peer", "name", &peer]);
    let v = Veths(vec![name.to_string()]);
    ip(&["link", "set", &peer, "netns", &c.pid.to_string()]);
    ip_in(c.pid, &["link", "set", &peer, "name", "eth0"]);
    ip_in(
        c.pid,
        &["addr", "add", &format!("{theirs}/30"), "dev", "eth0"],
    );
    ip_in(c.pid, &["link", "set", "eth0", "up"]);
    ip(&["addr", "add", &format!("{ours}/30"), "dev", name]);
    ip(&["link", "set", name, "up"]);
    v
}

/// A veth between containers `a` and `b`, `eth0` in each, with addresses `at_a` and `at_b`.
/// Once moved it lives in their namespaces and goes with them (the engine's drop removes the
/// containers and the netns names that could keep a namespace alive).
fn wire_between(a: &Ctr, b: &Ctr, name: &str, at_a: &str, at_b: &str) {
    let peer = format!("{name}p");
    ip(&["link", "add", name, "type", "veth", "peer", "name", &peer]);
    let v = Veths(vec![name.to_string()]);
    ip(&["link", "set", name, "netns", &a.pid.to_string()]);
    ip(&["link", "set", &peer, "netns", &b.pid.to_string()]);
    for (c, dev, addr) in [(a, name, at_a), (b, peer.as_str(), at_b)] {
        ip_in(c.pid, &["link", "set", dev, "name", "eth0"]);
        ip_in(
            c.pid,
            &["addr", "add", &format!("{addr}/30"), "dev", "eth0"],
        );
        ip_in(c.pid, &["link", "set", "eth0", "up"]);
    }
    // Moved: nothing of it is left in this namespace to delete.
    std::mem::forget(v);
}

/// `GET /` from this test's namespace with a deadline; `true` for a 200 with the page.
fn http_ok(addr: &str, timeout: Duration) -> bool {
    chaosforge::testkit::assert_isolated();
    let addr: SocketAddr = addr.parse().unwrap();
    let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    if s.write_all(b"GET / HTTP/1.0\r\nHost: c\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.") && buf.contains(" 200 ") && buf.contains("hello from a container")
}

fn experiment(targets: &str, monitor: &str, faults: &str, inject: &str) -> String {
    format!(
        r#"apiVersion: chaosforge/v1
name: containers
targets:
{targets}
hypothesis:
  monitors:
{monitor}
faults:
{faults}
phases: {{ baseline: 500ms, inject: {inject}, recover_within: 10s }}
"#
    )
}

fn echo_monitor(up: &EchoServer) -> String {
    format!(
        "    - name: port\n      tcp: {{ address: \"{}\", interval: 100ms }}\n      expect: [\"availability >= 90%\"]",
        up.addr
    )
}

#[test]
fn pause_stops_the_http_server_answering_and_the_revert_brings_it_back() {
    let e = Engine::start();
    let web = e.httpd("web", &[]);
    let _v = wire_to_me(&web, "cfc1", "10.251.1.1", "10.251.1.2");
    let url = "10.251.1.2:8080";
    assert!(
        wait_for(Duration::from_secs(5), || http_ok(
            url,
            Duration::from_millis(500)
        )),
        "the container's httpd answers before the fault"
    );
    let dir = Dir::new();
    let sock = e.sock();
    let exp = dir.write(
        "pause.yaml",
        &experiment(
            &format!(
                "  - name: web\n    container: {{ name: web, socket: {} }}\n    labels: {{ service: web }}",
                sock.display()
            ),
            // The run's own monitor measures the container from outside, from this namespace.
            &format!(
                "    - name: web\n      http: {{ url: \"http://{url}/\", interval: 100ms, timeout: 300ms }}\n      expect: [\"availability >= 99%\"]"
            ),
            "  - name: freeze-web\n    pause: {}\n    target: { select: { service: web } }",
            "3s",
        ),
    );
    let mut child = spawn_run(&exp, &dir);
    assert!(
        wait_for(Duration::from_secs(30), || e.paused(&web)),
        "the engine reports the container paused"
    );
    // Paused: the kernel holds every task of the container, so the request gets no answer.
    let started = tokio::time::Instant::now();
    let answered = http_ok(url, Duration::from_millis(700));
    eprintln!(
        "while paused: answered={answered} after {:?}",
        started.elapsed()
    );
    assert!(!answered, "a paused container's httpd does not answer");
    assert!(e.paused(&web), "still paused after the measurement");
    let status = child.wait().unwrap();
    // The monitor saw the outage, so the hypothesis is refuted (exit 1), and the run reverted.
    assert_eq!(status.code(), Some(1), "the run is refuted by the outage");
    assert!(!e.paused(&web), "unpaused by the run's revert");
    assert!(
        wait_for(Duration::from_secs(5), || http_ok(
            url,
            Duration::from_millis(500)
        )),
        "the httpd answers again after the revert"
    );
    let journal = std::fs::read_to_string(&dir.journals()[0]).unwrap();
    assert!(
        journal.contains("\"via\":\"container-unpause\""),
        "{journal}"
    );
    assert!(journal.contains("unpaused"), "{journal}");
}

#[test]
fn a_partition_between_two_containers_is_measured_from_one_of_them() {
    let e = Engine::start();
    let a = e.httpd("ca", &[]);
    let b = e.httpd("cb", &[]);
    wire_between(&a, &b, "cfc2", "10.251.2.1", "10.251.2.2");
    assert!(
        wait_for(Duration::from_secs(5), || e.connects_from(&b, "10.251.2.1")),
        "b reaches a's httpd before the fault"
    );
    let up = EchoServer::start();
    let dir = Dir::new();
    let sock = e.sock();
    let exp = dir.write(
        "partition.yaml",
        &experiment(
            &format!(
                "  - name: a\n    container: {{ name: ca, socket: {s} }}\n    labels: {{ side: a }}\n  - name: b\n    container: {{ name: cb, socket: {s} }}\n    labels: {{ side: b }}",
                s = sock.display()
            ),
            &echo_monitor(&up),
            "  - name: cut-a-from-b\n    partition: { peers: [b] }\n    target: { select: { side: a } }",
            "4s",
        ),
    );
    let mut child = spawn_run(&exp, &dir);
    let table = wait_for(Duration::from_secs(30), || {
        Command::new("ip")
            .args(["netns", "exec", &netns_name(&a.id), "nft", "list", "tables"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("chaosforge_"))
    });
    assert!(table, "the partition's nft table is in a's namespace");
    let cut = !e.connects_from(&b, "10.251.2.1");
    assert!(cut, "b cannot reach a while partitioned");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the echo monitor held");
    assert!(
        e.connects_from(&b, "10.251.2.1"),
        "b reaches a again after the revert"
    );
    // With nothing left open, the run dropped the netns names it gave the containers.
    for c in [&a, &b] {
        let name = netns_name(&c.id);
        assert!(
            !Path::new("/run/netns").join(&name).exists(),
            "{name} is released after a clean run"
        );
    }
}

#[test]
fn cpu_and_memory_limits_are_lowered_and_restored_exactly() {
    let e = Engine::start();
    let web = e.httpd("lim", &["--cpus", "1.5", "--memory", "64m"]);
    let limits = |c: &Ctr| e.inspect(c, "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}");
    assert_eq!(limits(&web), "1500000000 67108864");
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "limit.yaml",
        &experiment(
            &e.target("lim"),
            &echo_monitor(&up),
            "  - name: squeeze\n    resource-limit: { cpus: 0.5, memory: 32MiB }\n    target: { select: { name: lim } }",
            "3s",
        ),
    );
    let mut child = spawn_run(&exp, &dir);
    assert!(
        wait_for(Duration::from_secs(30), || limits(&web)
            == "500000000 33554432"),
        "lowered, read back through the API: {}",
        limits(&web)
    );
    // The kernel agrees: CFS quota of half a 100ms period (cgroup v1 or v2). The engine may
    // answer with the new limits a moment before the cgroup file shows them: read a bounded
    // while.
    let read_cg = || {
        [
            format!("/sys/fs/cgroup/cpu/docker/{}/cpu.cfs_quota_us", web.id),
            format!(
                "/sys/fs/cgroup/system.slice/docker-{}.scope/cpu.max",
                web.id
            ),
            format!("/sys/fs/cgroup/docker/{}/cpu.max", web.id),
        ]
        .into_iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
    };
    let _ = wait_for(Duration::from_secs(10), || {
        read_cg().is_none_or(|q| q.starts_with("50000"))
    });
    let cg = read_cg();
    if let Some(q) = &cg {
        assert!(q.starts_with("50000"), "cgroup quota: {q}");
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(limits(&web), "1500000000 67108864", "restored exactly");
    eprintln!("limits during: 500000000 33554432 (cgroup {cg:?}); after: 1500000000 67108864");
}

/// The content of `file` in the cgroup directory of `pid` that holds `controller` (cgroup v2's
/// one hierarchy, else the v1 one listing it), read from outside the container.
fn cgroup_file(pid: i32, controller: &str, v1: &str, v2: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let path = text
        .lines()
        .find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
            let rel = path.trim_start_matches('/');
            if unified && ctrls.is_empty() {
                Some(Path::new("/sys/fs/cgroup").join(rel).join(v2))
            } else if !unified && ctrls.split(',').any(|c| c == controller) {
                Some(Path::new("/sys/fs/cgroup").join(ctrls).join(rel).join(v1))
            } else {
                None
            }
        })
        .unwrap();
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

#[test]
fn limits_on_an_unlimited_container_go_into_its_cgroup_and_are_lifted_exactly() {
    let e = Engine::start();
    let free = e.httpd("free", &[]);
    let api = |c: &Ctr| {
        e.inspect(
            c,
            "{{.HostConfig.NanoCpus}} {{.HostConfig.CpuQuota}} {{.HostConfig.CpuPeriod}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}",
        )
    };
    let cpu = |c: &Ctr| cgroup_file(c.pid, "cpu", "cpu.cfs_quota_us", "cpu.max");
    let mem = |c: &Ctr| cgroup_file(c.pid, "memory", "memory.limit_in_bytes", "memory.max");
    let api_before = api(&free);
    let (cpu_before, mem_before) = (cpu(&free), mem(&free));
    assert_eq!(api_before, "0 0 0 0 0");
    // No limit in the kernel either: `-1` / `max …` for CPU, `max` or the v1 page-rounded
    // maximum for memory.
    assert!(
        cpu_before == "-1" || cpu_before.starts_with("max"),
        "{cpu_before}"
    );
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "quota.yaml",
        &experiment(
            &e.target("free"),
            &echo_monitor(&up),
            "  - name: squeeze\n    resource-limit: { cpus: 0.25, memory: 48MiB }\n    target: { select: { name: free } }",
            "3s",
        ),
    );
    let mut child = spawn_run(&exp, &dir);
    // A quarter of a 100ms period and 48MiB, read in the container's own cgroup files.
    assert!(
        wait_for(Duration::from_secs(30), || cpu(&free).starts_with("25000")
            && mem(&free) == "50331648"),
        "limited in the kernel: cpu {} memory {}",
        cpu(&free),
        mem(&free)
    );
    let (cpu_during, mem_during) = (cpu(&free), mem(&free));
    // The engine was never given them, so it has nothing it could not lift again.
    assert_eq!(api(&free), api_before);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(cpu(&free), cpu_before, "no CPU quota again");
    assert_eq!(mem(&free), mem_before, "no memory limit again");
    assert_eq!(api(&free), api_before, "HostConfig exactly as before");
    eprintln!(
        "unlimited container: cpu {cpu_before} -> {cpu_during} -> {}; memory {mem_before} -> {mem_during} -> {}; HostConfig {}",
        cpu(&free),
        mem(&free),
        api(&free)
    );
}

#[test]
fn a_cpu_quota_limit_is_lowered_within_its_period_and_set_back_exactly() {
    let e = Engine::start();
    let q = e.httpd("quota", &["--cpu-quota", "80000"]);
    let api = |c: &Ctr| {
        e.inspect(
            c,
            "{{.HostConfig.NanoCpus}} {{.HostConfig.CpuQuota}} {{.HostConfig.CpuPeriod}}",
        )
    };
    let cpu = |c: &Ctr| cgroup_file(c.pid, "cpu", "cpu.cfs_quota_us", "cpu.max");
    assert_eq!(api(&q), "0 80000 0");
    let cpu_before = cpu(&q);
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "cq.yaml",
        &experiment(
            &e.target("quota"),
            &echo_monitor(&up),
            "  - name: squeeze\n    resource-limit: { cpus: 0.25 }\n    target: { select: { name: quota } }",
            "2s",
        ),
    );
    let mut child = spawn_run(&exp, &dir);
    assert!(
        wait_for(Duration::from_secs(30), || api(&q) == "0 25000 0"),
        "a quarter of the kernel's 100ms period, period untouched: {}",
        api(&q)
    );
    let _ = wait_for(Duration::from_secs(10), || cpu(&q).starts_with("25000"));
    let cpu_during = cpu(&q);
    assert!(cpu_during.starts_with("25000"), "{cpu_during}");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(api(&q), "0 80000 0", "CpuQuota back, CpuPeriod still 0");
    let _ = wait_for(Duration::from_secs(10), || cpu(&q) == cpu_before);
    assert_eq!(cpu(&q), cpu_before);
    eprintln!(
        "--cpu-quota container: cgroup {cpu_before} -> {cpu_during} -> {}",
        cpu(&q)
    );
}

#[test]
fn stop_kill_and_restart_act_through_the_engine() {
    let e = Engine::start();
    let stopped = e.httpd("stopme", &[]);
    let killed = e.httpd("killme", &[]);
    let restarted = e.httpd("restartme", &[]);
    let started_at = e.inspect(&restarted, "{{.State.StartedAt}}");
    let up = EchoServer::start();
    let dir = Dir::new();
    let sock = e.sock();
    let s = sock.display();
    let mut text = experiment(
        &format!(
            "  - name: stopme\n    container: {{ name: stopme, socket: {s} }}\n  - name: killme\n    container: {{ name: killme, socket: {s} }}\n  - name: restartme\n    container: {{ name: restartme, socket: {s} }}"
        ),
        &echo_monitor(&up),
        "  - name: stop\n    stop: { timeout: 1s }\n    target: { select: { name: stopme } }\n  - name: kill\n    kill: { signal: SIGKILL }\n    target: { select: { name: killme } }\n  - name: restart\n    restart: { timeout: 20s }\n    target: { select: { name: restartme } }",
        "1s",
    );
    // Without the policy the irreversible two are refused before anything runs.
    let refused = dir.write("refused.yaml", &text);
    let out = crate::support::run(&refused, &dir);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`stop` is irreversible"), "{err}");
    assert!(err.contains("`kill` is irreversible"), "{err}");
    assert_eq!(e.inspect(&stopped, "{{.State.Running}}"), "true");
    text.push_str("policies: { allow_irreversible: true }\n");
    let exp = dir.write("srk.yaml", &text);
    let out = crate::support::run(&exp, &dir);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(e.inspect(&stopped, "{{.State.Running}}"), "false");
    // busybox httpd as pid 1 ignores SIGTERM, so the grace period ran out and it was killed.
    assert_eq!(
        e.inspect(&killed, "{{.State.Running}} {{.State.ExitCode}}"),
        "false 137"
    );
    assert_eq!(e.inspect(&restarted, "{{.State.Running}}"), "true");
    assert_ne!(
        e.inspect(&restarted, "{{.State.StartedAt}}"),
        started_at,
        "started anew"
    );
    let journal = std::fs::read_to_string(
        dir.journals()
            .into_iter()
            .find(|j| std::fs::read_to_string(j).unwrap().contains("restarted"))
            .unwrap(),
    )
    .unwrap();
    assert!(journal.contains("running again after"), "{journal}");
    assert!(journal.contains("\"via\":\"irreversible\""), "{journal}");
    // Nothing open: the netns names the run gave them are gone, stopped containers' too.
    for c in [&stopped, &killed, &restarted] {
        let name = netns_name(&c.id);
        assert!(!Path::new("/run/netns").join(&name).exists(), "{name}");
    }
}

#[test]
fn kernel_latency_inside_a_container_slows_its_connections() {
    let e = Engine::start();
    let web = e.httpd("slow", &[]);
    let _v = wire_to_me(&web, "cfc6", "10.251.6.1", "10.251.6.2");
    let addr: SocketAddr = "10.251.6.2:8080".parse().unwrap();
    let connect_ms = || {
        chaosforge::testkit::assert_isolated();
        let mut v: Vec<f64> = (0..5)
            .filter_map(|_| {
                let t = tokio::time::Instant::now();
                TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
                Some(t.elapsed().as_secs_f64() * 1000.0)
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::INFINITY)
    };
    assert!(wait_for(Duration::from_secs(5), || connect_ms() < 50.0));
    let before = connect_ms();
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "latency.yaml",
        &experiment(
            &e.target("slow"),
            &echo_monitor(&up),
            "  - name: lag\n    latency: { delay: 150ms }\n    target: { select: { name: slow } }",
            "4s",
        ),
    );
    let mut child = spawn_run(&exp, &dir);
    assert!(
        wait_for(Duration::from_secs(30), || connect_ms() >= 140.0),
        "connects take the delay while the fault holds"
    );
    let during = connect_ms();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let after = connect_ms();
    eprintln!("connect p50: before {before:.1}ms, during {during:.1}ms, after {after:.1}ms");
    assert!(
        after < 50.0,
        "the delay is gone after the revert: {after}ms"
    );
}

#[test]
fn recover_unpauses_a_container_left_paused_by_a_killed_runner() {
    let e = Engine::start();
    let web = e.httpd("rec", &[]);
    let _v = wire_to_me(&web, "cfc4", "10.251.4.1", "10.251.4.2");
    let url = "10.251.4.2:8080";
    assert!(wait_for(Duration::from_secs(5), || http_ok(
        url,
        Duration::from_millis(500)
    )));
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "rec.yaml",
        &experiment(
            &e.target("rec"),
            &echo_monitor(&up),
            "  - name: freeze\n    pause: {}\n    target: { select: { name: rec } }",
            "60s",
        ),
    );
    let mut child = spawn_run(&exp, &dir);
    assert!(wait_for(Duration::from_secs(30), || e.paused(&web)));
    signal(&child, rustix::process::Signal::KILL);
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        e.paused(&web),
        "a SIGKILLed runner leaves the container paused"
    );
    assert!(!http_ok(url, Duration::from_millis(500)));
    let out = recover(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!e.paused(&web), "recover unpaused it");
    assert!(
        wait_for(Duration::from_secs(5), || http_ok(
            url,
            Duration::from_millis(500)
        )),
        "and its httpd answers again"
    );
    // A second recover has nothing left to do.
    let again = recover(&dir);
    assert!(again.status.success());
}

#[test]
fn recover_lifts_a_partition_inside_a_container_after_a_killed_runner() {
    let e = Engine::start();
    let web = e.httpd("iso", &[]);
    let _v = wire_to_me(&web, "cfc7", "10.251.7.1", "10.251.7.2");
    let url = "10.251.7.2:8080";
    assert!(wait_for(Duration::from_secs(5), || http_ok(
        url,
        Duration::from_millis(500)
    )));
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "iso.yaml",
        &experiment(
            &e.target("iso"),
            &echo_monitor(&up),
            "  - name: cut\n    partition: {}\n    target: { select: { name: iso } }",
            "60s",
        ),
    );
    // Entered through the container's pid, not the netns name: `recover` removes the name.
    let net = format!("--net=/proc/{}/ns/net", web.pid);
    let tables = || {
        Command::new("nsenter")
            .args([net.as_str(), "nft", "list", "tables"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let mut child = spawn_run(&exp, &dir);
    assert!(wait_for(Duration::from_secs(30), || tables().contains("chaosforge_")));
    signal(&child, rustix::process::Signal::KILL);
    child.wait().unwrap();
    assert!(
        !http_ok(url, Duration::from_millis(500)),
        "the partition outlives its runner"
    );
    // The journal names the namespace by its `ip netns` name, which the dead run left in place.
    let out = recover(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !tables().contains("chaosforge_"),
        "recover deleted the table"
    );
    assert!(
        wait_for(Duration::from_secs(5), || http_ok(
            url,
            Duration::from_millis(500)
        )),
        "the container answers again"
    );
    // Nothing of the dead run's is left to need the name it bind-mounted, so recover removed it.
    let name = netns_name(&web.id);
    let listed = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        !listed.contains(&name) && !Path::new("/run/netns").join(&name).exists(),
        "recover released {name}: {listed}"
    );
    eprintln!("after recover: ip netns list = {:?}", listed.trim());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_pause_and_resource_limit_pass_the_fault_compliance_harness() {
    let e = Engine::start();
    let web = e.httpd("comp", &["--cpus", "1"]);
    let _v = wire_to_me(&web, "cfc5", "10.251.5.1", "10.251.5.2");
    let url = "10.251.5.2:8080";
    let sel = ContainerSelector {
        by: ContainerRef::Name("comp".into()),
        socket: Some(e.sock().display().to_string()),
        interface: None,
    };
    let container = chaosforge::fault::container::find(&sel).await.unwrap();
    let pause = ContainerFault {
        target: "comp".into(),
        container: container.clone(),
        action: ContainerAction::Pause,
    };
    let dir = Dir::new();
    std::fs::create_dir_all(dir.path().join("pause")).unwrap();
    assert_fault_compliance(&pause, &dir.path().join("pause"), || async {
        !tokio::task::spawn_blocking(move || http_ok(url, Duration::from_millis(400)))
            .await
            .unwrap()
    })
    .await;
    let limit = ContainerFault {
        target: "comp".into(),
        container,
        action: ContainerAction::Limit {
            nano_cpus: Some(250_000_000),
            memory: None,
        },
    };
    std::fs::create_dir_all(dir.path().join("limit")).unwrap();
    let sock = e.sock();
    let id = web.id.clone();
    assert_fault_compliance(&limit, &dir.path().join("limit"), || {
        let (sock, id) = (sock.clone(), id.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let out = docker_at(&sock, &["inspect", "-f", "{{.HostConfig.NanoCpus}}", &id]);
                String::from_utf8_lossy(&out.stdout).trim() != "1000000000"
            })
            .await
            .unwrap()
        }
    })
    .await;
    assert_eq!(e.inspect(&web, "{{.HostConfig.NanoCpus}}"), "1000000000");
}

#[test]
fn fd_exhaustion_on_a_container_lowers_its_main_process_limit_and_restores_it() {
    let e = Engine::start();
    let web = e.httpd("fds", &[]);
    // Read on the host, from outside the container: its init's soft RLIMIT_NOFILE.
    let soft = |c: &Ctr| {
        std::fs::read_to_string(format!("/proc/{}/limits", c.pid))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
            .unwrap()
    };
    let before = soft(&web);
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "fds.yaml",
        &experiment(
            &e.target("fds"),
            &echo_monitor(&up),
            "  - name: no-fds\n    fd-exhaustion: { headroom: 2 }\n    target: { select: { name: fds } }",
            "2s",
        ),
    );
    let mut child = spawn_run(&exp, &dir);
    assert!(
        wait_for(Duration::from_secs(30), || soft(&web) != before),
        "lowered: {}",
        soft(&web)
    );
    let during = soft(&web);
    let n: u64 = during.parse().unwrap();
    assert!(n < 64, "what it has open plus 2: {during}");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(soft(&web), before, "restored exactly");
    eprintln!(
        "container init Max open files: {before} -> {during} -> {}",
        soft(&web)
    );
}

#[test]
fn recover_lifts_cgroup_limits_left_by_a_killed_runner() {
    let e = Engine::start();
    let free = e.httpd("orphan", &[]);
    let cpu = |c: &Ctr| cgroup_file(c.pid, "cpu", "cpu.cfs_quota_us", "cpu.max");
    let mem = |c: &Ctr| cgroup_file(c.pid, "memory", "memory.limit_in_bytes", "memory.max");
    let (cpu_before, mem_before) = (cpu(&free), mem(&free));
    let up = EchoServer::start();
    let dir = Dir::new();
    let exp = dir.write(
        "orphan.yaml",
        &experiment(
            &e.target("orphan"),
            &echo_monitor(&up),
            "  - name: squeeze\n    resource-limit: { cpus: 0.25, memory: 48MiB }\n    target: { select: { name: orphan } }",
            "60s",
        ),
    );
    let mut child = spawn_run(&exp, &dir);
    assert!(wait_for(Duration::from_secs(30), || mem(&free) == "50331648"));
    signal(&child, rustix::process::Signal::KILL);
    child.wait().unwrap();
    // The limits outlive their runner: nothing reverted them.
    assert_eq!(mem(&free), "50331648");
    assert!(cpu(&free).starts_with("25000"));
    let out = recover(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        cpu(&free),
        cpu_before,
        "the journaled cgroup content is back"
    );
    assert_eq!(mem(&free), mem_before);
}
