//! `chaosforge agent` end to end: three hosts as network namespaces, each running an agent
//! (`ip netns exec NS chaosforge agent …`), and a runner in a fourth namespace driving them
//! over HTTPS. Every probe is sent from inside a namespace the test made, none of which has a
//! default route (checked); the namespaces, agents and servers go on drop, also when a test
//! panics. Needs root, `ip`, `nft`, `iptables` and python3.
// Revert times of other processes are measured on the real clock.
#![allow(clippy::disallowed_types)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::{Dir, python, signal, wait_for};

/// The port of each host's TCP echo server.
const ECHO: u16 = 7000;
/// The agents' port.
const AGENT: u16 = 7700;
/// The lease the runner asks for in these tests.
const LEASE: Duration = Duration::from_secs(2);

/// A TCP echo server (one byte back per connection).
const ECHO_SERVER: &str = r#"
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(64)
def serve(c):
    try:
        c.settimeout(5); d = c.recv(1)
        if d: c.sendall(d)
    except OSError: pass
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// `probe ADDR PORT TIMEOUT_MS`: connects, has one byte echoed; prints the round trip in ms
/// or `fail`.
const PROBE: &str = r#"
import socket, sys, time
t = time.monotonic()
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=int(sys.argv[3]) / 1000)
    c.sendall(b"x"); ok = c.recv(1) == b"x"; c.close()
    print("%.1f" % ((time.monotonic() - t) * 1000) if ok else "fail")
except OSError:
    print("fail")
"#;

/// `req METHOD URL TOKEN|- BODY|-`: one HTTPS request (certificate not checked: the tests
/// attack the agent, they do not trust it); prints the status code.
const REQUEST: &str = r#"
import http.client, ssl, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[2])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=10)
h = {"Content-Type": "application/json"}
if sys.argv[3] != "-": h["Authorization"] = "Bearer " + sys.argv[3]
c.request(sys.argv[1], u.path, body=None if sys.argv[4] == "-" else sys.argv[4], headers=h)
r = c.getresponse(); b = r.read(); sys.stderr.write(b.decode("utf-8", "replace") + "\n"); print(r.status)
"#;

/// `burst URL TOKEN N`: N requests with TOKEN, one after the other from one process (so that
/// they come faster than any backoff); prints the status codes.
const BURST: &str = r#"
import http.client, ssl, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
codes = []
for _ in range(int(sys.argv[3])):
    c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=10)
    c.request("GET", u.path, headers={"Authorization": "Bearer " + sys.argv[2]})
    r = c.getresponse(); r.read(); codes.append(str(r.status)); c.close()
print(" ".join(codes))
"#;

/// `fuzz HOST PORT TOKEN SEED N`: N connections of seeded random garbage — raw bytes, bytes
/// after a TLS handshake, and HTTP requests with random methods, paths, headers and JSON-ish
/// bodies, with and without the token. Prints how many got any HTTP answer.
const FUZZ: &str = r#"
import random, socket, ssl, sys
host, port, token, seed, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rnd = random.Random(seed)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
paths = ["/faults", "/faults/x/renew", "/faults/x", "/status", "/targets/resolve", "/version", "/", "//", "/faults/%00/renew", "/" + "a" * 5000]
methods = ["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "\x00", "G E T"]
frags = ['{', '}', '"kind"', ':', '"partition"', '"peers"', '[', ']', '"10.0.0.1"', ',', '"id"', '"on"', '{"host":{"netns":"x"}}', '"lease"', '"0s"', '"99999h"', 'null', '1e999', '-1', '"\\u0000"', '"../../etc"', '{"process":{"pid":1}}', '"fault"', '"disk-fill"', '"path"', '"/"']
answered = 0
for i in range(n):
    kind = rnd.randrange(4)
    try:
        raw = socket.create_connection((host, port), timeout=3)
        raw.settimeout(3)
        if kind == 0:
            raw.sendall(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 2000))))
            try: raw.recv(100)
            except OSError: pass
            raw.close(); continue
        s = ctx.wrap_socket(raw, server_hostname="agent")
        if kind == 1:
            s.sendall(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 3000))))
        else:
            body = "".join(rnd.choice(frags) for _ in range(rnd.randrange(0, 40)))
            auth = ("Authorization: Bearer %s\r\n" % token) if kind == 3 else ("Authorization: %s\r\n" % rnd.choice(["Bearer", "Bearer x", "Basic abc", "Bearer " + token + "x"]))
            head = "%s %s HTTP/1.1\r\nHost: a\r\n%sContent-Length: %d\r\n\r\n" % (rnd.choice(methods), rnd.choice(paths), auth, len(body.encode()))
            s.sendall(head.encode("latin-1", "replace") + body.encode())
        d = s.recv(20)
        if d.startswith(b"HTTP/1.1"): answered += 1
        s.close()
    except OSError:
        pass
print(answered)
"#;

/// The four namespaces (three hosts and the runner) on a bridge in a fifth.
struct Lab {
    hosts: Vec<Host>,
    runner: Ns,
    dir: Dir,
    /// Killed before the namespaces go.
    servers: Vec<Child>,
    _namespaces: Namespaces,
}

struct Host {
    ns: Ns,
    token: String,
    state: PathBuf,
    agent: Option<Agent>,
    /// `--tls-cert` and `--tls-key`; `None`: `--tls-self-signed`.
    tls: Option<(PathBuf, PathBuf)>,
}

#[derive(Clone)]
struct Ns {
    name: String,
    addr: String,
}

struct Agent {
    child: Child,
    fingerprint: String,
    /// The agent's stdout lines after the first (lease and recovery notes).
    lines: std::sync::mpsc::Receiver<String>,
}

struct Namespaces(Vec<String>);

impl Lab {
    fn new() -> Lab {
        remove_stale();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!(
            "{}-{:x}",
            std::process::id(),
            (nanos ^ (seq << 20)) & 0x000f_ffff
        );
        let subnet = (nanos % 250 + 1) as u8;
        let name = |role: &str| format!("cfag-{id}-{role}");
        let mut namespaces = Namespaces(Vec::new());
        let br = name("br");
        for role in ["br", "a", "b", "c", "r"] {
            ip(&["netns", "add", &name(role)]);
            namespaces.0.push(name(role));
        }
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        let mut all = Vec::new();
        for (i, role) in ["a", "b", "c", "r"].into_iter().enumerate() {
            let ns = name(role);
            let port = format!("v{role}");
            let addr = format!("10.79.{subnet}.{}", i + 1);
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            all.push(Ns { name: ns, addr });
        }
        for ns in &namespaces.0 {
            assert_no_default_route(ns);
        }
        let dir = Dir::new();
        let runner = all.pop().unwrap();
        let mut servers = Vec::new();
        let hosts = all
            .into_iter()
            .enumerate()
            .map(|(i, ns)| {
                servers.push(
                    in_ns(&ns.name, python())
                        .args(["-c", ECHO_SERVER, &ECHO.to_string()])
                        .stdout(Stdio::null())
                        .spawn()
                        .unwrap(),
                );
                let token = format!("token-of-host-{i}-{nanos:x}-0123456789");
                std::fs::write(dir.path().join(format!("token{i}")), &token).unwrap();
                Host {
                    state: dir.path().join(format!("agent{i}")),
                    ns,
                    token,
                    agent: None,
                    tls: None,
                }
            })
            .collect();
        let mut lab = Lab {
            hosts,
            runner,
            dir,
            servers,
            _namespaces: namespaces,
        };
        for i in 0..3 {
            lab.start_agent(i);
        }
        // Links come up in a moment: wait until the runner reaches every echo server.
        for h in &lab.hosts {
            let r = &lab.runner.name;
            assert!(
                wait_for(Duration::from_secs(10), || probe(r, &h.ns.addr, 300)
                    .is_some()),
                "the runner cannot reach {} on a fresh bridge",
                h.ns.name
            );
        }
        lab
    }

    /// Starts (or restarts) host `i`'s agent and waits for its listening line.
    fn start_agent(&mut self, i: usize) {
        let h = &self.hosts[i];
        let c = in_ns(&h.ns.name, assert_cmd::cargo::cargo_bin!("chaosforge"));
        self.start_agent_by(i, c);
    }

    /// As `start_agent`, but entering only the network namespace: `ip netns exec` mounts a
    /// sysfs of its own, without the cgroup filesystem a freeze needs.
    fn restart_agent_seeing_cgroups(&mut self, i: usize) {
        if let Some(mut a) = self.hosts[i].agent.take() {
            signal(&a.child, rustix::process::Signal::TERM);
            let _ = a.child.wait();
        }
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.hosts[i].ns.name))
            .arg(assert_cmd::cargo::cargo_bin!("chaosforge"))
            .env_remove("CHAOSFORGE_STATE_DIR");
        self.start_agent_by(i, c);
    }

    fn start_agent_by(&mut self, i: usize, mut c: Command) {
        let h = &mut self.hosts[i];
        c.args([
            "agent",
            "--listen",
            &format!("{}:{AGENT}", h.ns.addr),
            "--token-file",
            self.dir.path().join(format!("token{i}")).to_str().unwrap(),
            "--allow",
            "partition,latency,loss,pause,freeze,kill,fd-exhaustion,process-limit,restart,proxy",
            "--lease-default",
            "2s",
            "--state-dir",
            h.state.to_str().unwrap(),
        ]);
        match &h.tls {
            Some((cert, key)) => c.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key),
            None => c.arg("--tls-self-signed"),
        };
        let mut child = c.stdout(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut fingerprint = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while fingerprint.is_none() && Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                eprintln!("agent {i}: {line}");
                if let Some(f) = line.split(" fingerprint ").nth(1) {
                    fingerprint = Some(f.trim().to_string());
                }
            }
        }
        let fingerprint = fingerprint.expect("the agent printed no fingerprint within 30 s");
        h.agent = Some(Agent {
            child,
            fingerprint,
            lines: rx,
        });
    }

    fn agent(&self, i: usize) -> &Agent {
        self.hosts[i].agent.as_ref().unwrap()
    }

    fn url(&self, i: usize) -> String {
        format!("https://{}:{AGENT}", self.hosts[i].ns.addr)
    }

    /// An experiment: a partition of host 0 from host 1 and 100 ms latency on host 2, all
    /// three reached through their agents with a 2 s lease.
    fn experiment(&self, inject: &str) -> PathBuf {
        self.experiment_with_lease(inject, "2s")
    }

    /// The three hosts in an inventory file, `agent: host-N` naming its `agents:`.
    fn experiment_with_lease(&self, inject: &str, lease: &str) -> PathBuf {
        let mut inventory = String::from("agents:\n");
        for i in 0..3 {
            inventory.push_str(&format!(
                "  host-{i}: {{ url: \"{}\", token_env: CF_TOKEN_{i}, fingerprint: \"{}\", lease: {lease} }}\n",
                self.url(i),
                self.agent(i).fingerprint
            ));
        }
        inventory.push_str("targets:\n");
        for (i, name, service) in [(0, "node-a", "a"), (1, "node-b", "b"), (2, "node-c", "c")] {
            inventory.push_str(&format!(
                "  - {{ name: {name}, host: local, labels: {{ service: {service} }}, agent: host-{i} }}\n"
            ));
        }
        self.dir.write("hosts.yaml", &inventory);
        let text = format!(
            r#"apiVersion: chaosforge/v1
name: agents-across-three-hosts
inventory: hosts.yaml
hypothesis:
  monitors:
    - name: a-echo
      tcp: {{ address: "{}:{ECHO}", interval: 200ms, timeout: 1s }}
      expect: ["availability >= 50%"]
faults:
  - name: cut-a-from-b
    partition: {{ peers: [node-b] }}
    target: {{ select: {{ service: a }} }}
  - name: slow-c
    latency: {{ delay: 100ms }}
    target: {{ select: {{ service: c }} }}
phases: {{ baseline: 500ms, inject: {inject}, recover_within: 5s }}
"#,
            self.hosts[0].ns.addr,
        );
        self.dir.write("agents.yaml", &text)
    }

    /// `chaosforge ARGS…` in the runner's namespace with every agent's token.
    fn runner_cmd(&self, args: &[&str]) -> Command {
        let mut c = in_ns(
            &self.runner.name,
            assert_cmd::cargo::cargo_bin!("chaosforge"),
        );
        c.args(args);
        for (i, h) in self.hosts.iter().enumerate() {
            c.env(format!("CF_TOKEN_{i}"), &h.token);
        }
        c
    }

    /// `chaosforge run` inside the runner namespace, with every agent's token in its variable.
    fn spawn_run(&self, exp: &Path) -> Child {
        let mut c = in_ns(
            &self.runner.name,
            assert_cmd::cargo::cargo_bin!("chaosforge"),
        );
        c.args([
            "run",
            exp.to_str().unwrap(),
            "--state-dir",
            self.dir.state().to_str().unwrap(),
        ]);
        for (i, h) in self.hosts.iter().enumerate() {
            c.env(format!("CF_TOKEN_{i}"), &h.token);
        }
        c.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Whether host `i` holds anything of chaosforge's: an nft table or iptables chains.
    fn dirty(&self, i: usize) -> bool {
        !nft_tables(&self.hosts[i].ns.name).is_empty() || has_queue_chains(&self.hosts[i].ns.name)
    }

    /// One request from the runner's namespace; the status code.
    fn request(&self, method: &str, i: usize, path: &str, token: Option<&str>, body: &str) -> u16 {
        let out = in_ns(&self.runner.name, python())
            .args([
                "-c",
                REQUEST,
                method,
                &format!("{}{path}", self.url(i)),
                token.unwrap_or("-"),
                body,
            ])
            .output()
            .unwrap();
        eprintln!(
            "{method} {path}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("request failed: {out:?}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            if let Some(a) = &mut h.agent {
                // SIGTERM first: the agent reverts what it holds; then make sure.
                signal(&a.child, rustix::process::Signal::TERM);
                let gone = wait_for(Duration::from_secs(5), || {
                    matches!(a.child.try_wait(), Ok(Some(_)))
                });
                if !gone {
                    let _ = a.child.kill();
                    let _ = a.child.wait();
                }
            }
        }
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Deletes `cfag-<pid>-…` namespaces whose test process is gone.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let parts: Vec<&str> = name.split('-').collect();
        if let ["cfag", pid, _, _] = parts[..]
            && pid.parse::<u32>().is_ok()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

fn in_ns(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c.env_remove("CHAOSFORGE_STATE_DIR");
    c
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_no_default_route(ns: &str) {
    for family in ["-4", "-6"] {
        let out = Command::new("ip")
            .args(["-n", ns, family, "route", "show", "default"])
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "refusing to generate traffic: {ns} has a default route: {out:?}"
        );
    }
}

/// The round trip of a TCP echo from inside `from` to `addr`, `None` when it failed.
fn probe(from: &str, addr: &str, timeout_ms: u64) -> Option<f64> {
    probe_port(from, addr, ECHO, timeout_ms)
}

/// As `probe`, to another port (a proxy in front of the echo server).
fn probe_port(from: &str, addr: &str, port: u16, timeout_ms: u64) -> Option<f64> {
    let out = in_ns(from, python())
        .args([
            "-c",
            PROBE,
            addr,
            &port.to_string(),
            &timeout_ms.to_string(),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The median of `n` probes, `None` if any failed.
fn median_probe(from: &str, addr: &str, n: usize) -> Option<f64> {
    median_probe_port(from, addr, ECHO, n)
}

fn median_probe_port(from: &str, addr: &str, port: u16, n: usize) -> Option<f64> {
    let mut v: Vec<f64> = (0..n)
        .map(|_| probe_port(from, addr, port, 2000))
        .collect::<Option<_>>()?;
    v.sort_by(f64::total_cmp);
    Some(v[n / 2])
}

fn nft_tables(ns: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "tables"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("chaosforge"))
        .map(str::to_string)
        .collect()
}

fn has_queue_chains(ns: &str) -> bool {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "iptables", "-t", "mangle", "-S"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("CF-")
}

fn finish(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn agent_runner_partitions_two_hosts_and_slows_a_third() {
    let lab = Lab::new();
    let (a, b, c) = (&lab.hosts[0].ns, &lab.hosts[1].ns, &lab.hosts[2].ns);
    let before = median_probe(&c.name, &a.addr, 5).expect("c reaches a before the faults");
    let run = lab.spawn_run(&lab.experiment("5s"));
    assert!(
        wait_for(Duration::from_secs(20), || lab.dirty(0) && lab.dirty(2)),
        "the faults never appeared on hosts a and c"
    );
    // Measured from inside the hosts: a and b cannot talk either way, a and c can, and c's
    // packets are 100 ms late (its echo round trip grows by about that much at least).
    assert_eq!(probe(&a.name, &b.addr, 500), None, "a still reaches b");
    assert_eq!(probe(&b.name, &a.addr, 500), None, "b still reaches a");
    assert!(probe(&a.name, &c.addr, 2000).is_some(), "a lost c too");
    // `agents status` over the inventory sees what each agent holds.
    let status = lab
        .runner_cmd(&[
            "agents",
            "status",
            "--inventory",
            lab.dir.path().join("hosts.yaml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    eprintln!("{status}");
    assert!(
        status.contains("`cut-a-from-b` on `node-a` (partition)"),
        "{status}"
    );
    assert!(
        status.contains("`slow-c` on `node-c` (latency)"),
        "{status}"
    );
    assert_eq!(status.matches("reachable").count(), 3, "{status}");
    let during = median_probe(&c.name, &a.addr, 5).expect("c reaches a during the latency");
    eprintln!("c → a echo round trip: {before:.1} ms before, {during:.1} ms with latency 100ms");
    assert!(
        during - before >= 90.0,
        "latency on c added only {:.1} ms",
        during - before
    );
    let (code, out) = finish(run);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        !lab.dirty(0) && !lab.dirty(1) && !lab.dirty(2),
        "faults left behind"
    );
    assert!(probe(&a.name, &b.addr, 1000).is_some(), "a and b stay cut");
    let after = median_probe(&c.name, &a.addr, 5).unwrap();
    assert!(after - before < 50.0, "c still slow: {after:.1} ms");
    // The runner journaled each remote fault with how to revert it from its side.
    let journal = std::fs::read_to_string(&lab.dir.journals()[0]).unwrap();
    assert!(journal.contains(r#""via":"remote-agent""#), "{journal}");
    assert!(journal.contains("CF_TOKEN_0") && !journal.contains(&lab.hosts[0].token));
}

/// `AA:BB:…`: the SHA-256 of a DER certificate, as runners pin it (computed here, not by the
/// code under test).
fn sha256_pin(der: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let hex: Vec<String> = d.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

#[test]
fn an_agent_with_a_ca_issued_certificate_is_pinned_and_a_wrong_pin_injects_nothing() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut lab = Lab::new();
    // A CA and a leaf for host 0's address, as an operator's own PKI would issue them.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![lab.hosts[0].ns.addr.clone()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let cert = lab.dir.write("agent0.pem", &(leaf.pem() + &ca.pem()));
    let key = lab.dir.write("agent0.key", &leaf_key.serialize_pem());
    if let Some(mut a) = lab.hosts[0].agent.take() {
        signal(&a.child, rustix::process::Signal::TERM);
        let _ = a.child.wait();
    }
    lab.hosts[0].tls = Some((cert, key));
    lab.start_agent(0);
    let leaf_pin = sha256_pin(leaf.der());
    assert_eq!(
        lab.agent(0).fingerprint,
        leaf_pin,
        "the agent serves another certificate"
    );

    // Pinned to the leaf: the run goes through.
    let run = lab.spawn_run(&lab.experiment("2s"));
    let (code, out) = finish(run);
    assert_eq!(code, Some(0), "{out}");
    let journal = agent_journal(&lab.hosts[0].state);
    assert!(journal.contains(r#""kind":"partition""#), "{journal}");

    // Pinned to the CA's certificate instead: refused at run start, nothing injected anywhere.
    lab.hosts[0].agent.as_mut().unwrap().fingerprint = sha256_pin(ca.der());
    let before: Vec<String> = (0..3).map(|i| agent_journal(&lab.hosts[i].state)).collect();
    let run = lab.spawn_run(&lab.experiment("2s"));
    let (code, out) = finish(run);
    eprintln!("{out}");
    assert_ne!(code, Some(0), "a wrong pin was accepted: {out}");
    assert!(
        out.contains("node-a") && out.to_lowercase().contains("certificate"),
        "the error does not say which target's certificate: {out}"
    );
    for (i, b) in before.iter().enumerate() {
        assert_eq!(
            &agent_journal(&lab.hosts[i].state),
            b,
            "agent {i} journaled something"
        );
        assert!(!lab.dirty(i), "host {i} holds a fault");
    }
}

/// The port host 0's agent runs a proxy on, in front of the host's echo server.
const PROXIED: u16 = 7100;

/// An experiment whose one target is a proxy host 0's agent runs in front of its echo server,
/// with 150 ms of latency on the responses for `inject`.
fn proxy_experiment(lab: &Lab, inject: &str) -> PathBuf {
    let a = &lab.hosts[0].ns.addr;
    let text = format!(
        r#"apiVersion: chaosforge/v1
name: a-proxy-on-an-agent
targets:
  - name: echo-proxy
    labels: {{ service: echo }}
    proxy: {{ listen: "{a}:{PROXIED}", upstream: "127.0.0.1:{ECHO}" }}
    agent: {{ url: "{}", token_env: CF_TOKEN_0, fingerprint: "{}", lease: 2s }}
hypothesis:
  monitors:
    - name: echo-through-the-proxy
      tcp: {{ address: "{a}:{PROXIED}", interval: 200ms, timeout: 1s }}
      expect: ["availability >= 50%"]
faults:
  - name: slow-echo
    latency: {{ delay: 150ms }}
    target: {{ select: {{ service: echo }} }}
phases: {{ baseline: 1s, inject: {inject}, recover_within: 5s }}
"#,
        lab.url(0),
        lab.agent(0).fingerprint
    );
    lab.dir.write("proxy.yaml", &text)
}

#[test]
fn an_agent_runs_a_proxy_whose_toxics_and_listener_end_with_the_run_or_its_lease() {
    let lab = Lab::new();
    let (a, r) = (&lab.hosts[0].ns.addr, &lab.runner.name);
    assert!(probe(r, a, 300).is_some(), "the echo server is down");
    assert_eq!(
        probe_port(r, a, PROXIED, 300),
        None,
        "something listens on the proxy port before the run"
    );
    let run = lab.spawn_run(&proxy_experiment(&lab, "4s"));
    // The listener comes first, the toxic once the baseline is over.
    if !wait_for(Duration::from_secs(20), || {
        probe_port(r, a, PROXIED, 2000).is_some_and(|ms| ms >= 140.0)
    }) {
        signal(&run, rustix::process::Signal::TERM);
        panic!(
            "the proxy on the agent never slowed the echo: {}",
            finish(run).1
        );
    }
    let direct = median_probe(r, a, 5).expect("the echo answers directly");
    let proxied = median_probe_port(r, a, PROXIED, 5).expect("the echo answers through the proxy");
    eprintln!(
        "echo round trip from the runner: {direct:.1} ms direct, {proxied:.1} ms through the agent's proxy with latency 150ms"
    );
    assert!(
        proxied - direct >= 140.0,
        "the proxy added only {:.1} ms",
        proxied - direct
    );
    let (code, out) = finish(run);
    assert_eq!(code, Some(0), "{out}");
    // The run stopped the proxy on its way out, not the lease.
    assert_eq!(
        probe_port(r, a, PROXIED, 500),
        None,
        "the agent's proxy outlived the run"
    );
    let journal = std::fs::read_to_string(&lab.dir.journals()[0]).unwrap();
    assert!(journal.contains(r#""via":"remote-agent""#), "{journal}");

    // A killed runner: the lease takes the toxic and the proxy away.
    let run = lab.spawn_run(&proxy_experiment(&lab, "60s"));
    assert!(
        wait_for(Duration::from_secs(20), || probe_port(r, a, PROXIED, 2000)
            .is_some_and(|ms| ms >= 140.0)),
        "the second run's toxic never appeared"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let killed = Instant::now();
    signal(&run, rustix::process::Signal::KILL);
    let closed = wait_for(Duration::from_secs(10), || {
        probe_port(r, a, PROXIED, 300).is_none()
    });
    let took = killed.elapsed();
    let _ = finish(run);
    eprintln!("the agent's proxy closed {took:?} after the runner's SIGKILL (lease {LEASE:?})");
    assert!(
        closed,
        "the agent's proxy still listens 10 s after its runner died"
    );
    assert!(
        took <= LEASE + Duration::from_secs(1),
        "the proxy closed {took:?} after the kill"
    );
    let lines: Vec<String> = lab.agent(0).lines.try_iter().collect();
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("lease of fault"))
            .count()
            >= 2,
        "the toxic and the listener did not both end by lease: {lines:?}"
    );
    // The echo server itself was never touched.
    assert!(probe(r, a, 1000).is_some());
}

#[test]
fn agents_revert_by_lease_when_the_runner_is_killed() {
    let lab = Lab::new();
    let run = lab.spawn_run(&lab.experiment("60s"));
    assert!(
        wait_for(Duration::from_secs(20), || lab.dirty(0) && lab.dirty(2)),
        "the faults never appeared"
    );
    // Let a renewal or two go by, so the lease is what keeps the faults, not the injection.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        lab.dirty(0) && lab.dirty(2),
        "renewals did not keep the faults"
    );
    let killed = Instant::now();
    signal(&run, rustix::process::Signal::KILL);
    // Hosts a (partition) and c (latency) hold faults; b is only a partition's peer.
    let mut gone = [(0, None), (2, None)];
    while killed.elapsed() < Duration::from_secs(10) && gone.iter().any(|(_, g)| g.is_none()) {
        for (i, g) in gone.iter_mut() {
            if g.is_none() && !lab.dirty(*i) {
                *g = Some(killed.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = finish(run);
    eprintln!("reverted after the runner's SIGKILL (lease {LEASE:?}): {gone:?}");
    for (i, g) in gone {
        let g = g.unwrap_or_else(|| panic!("host {i} still holds its fault after 10 s"));
        assert!(
            g <= LEASE + Duration::from_secs(1),
            "host {i} reverted {g:?} after the kill"
        );
    }
    // The agent said why, and journaled it.
    let lines: Vec<String> = lab.agent(0).lines.try_iter().collect();
    assert!(
        lines.iter().any(|l| l.contains("lease of fault")),
        "{lines:?}"
    );
    let journal = agent_journal(&lab.hosts[0].state);
    assert!(journal.contains(r#""by":"lease""#), "{journal}");
    assert!(probe(&lab.hosts[0].ns.name, &lab.hosts[1].ns.addr, 1000).is_some());
}

#[test]
fn recover_on_the_runner_side_reverts_through_the_agents() {
    let lab = Lab::new();
    // A lease far longer than the test: only `recover` can clean up in time.
    let run = lab.spawn_run(&lab.experiment_with_lease("60s", "5m"));
    assert!(
        wait_for(Duration::from_secs(20), || lab.dirty(0) && lab.dirty(2)),
        "the faults never appeared"
    );
    signal(&run, rustix::process::Signal::KILL);
    let _ = finish(run);
    let mut recover = in_ns(
        &lab.runner.name,
        assert_cmd::cargo::cargo_bin!("chaosforge"),
    );
    recover.args(["recover", "--state-dir", lab.dir.state().to_str().unwrap()]);
    for (i, h) in lab.hosts.iter().enumerate() {
        recover.env(format!("CF_TOKEN_{i}"), &h.token);
    }
    let started = Instant::now();
    let out = recover.output().unwrap();
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("runner-side recover took {took:?}:\n{text}");
    assert!(
        !lab.dirty(0) && !lab.dirty(2),
        "recover left faults on the agents: {text}"
    );
    // And the agents agree they hold nothing.
    let status = lab.request("GET", 0, "/status", Some(&lab.hosts[0].token), "-");
    assert_eq!(status, 200);
}

#[test]
fn a_restarted_agent_reverts_what_a_killed_one_held() {
    let mut lab = Lab::new();
    let run = lab.spawn_run(&lab.experiment("60s"));
    assert!(
        wait_for(Duration::from_secs(20), || lab.dirty(0)),
        "the partition never appeared"
    );
    // The agent dies holding the partition; with it gone nobody reverts it...
    let agent = lab.hosts[0].agent.take().unwrap();
    let mut child = agent.child;
    signal(&child, rustix::process::Signal::KILL);
    let _ = child.wait();
    std::thread::sleep(LEASE + Duration::from_secs(1));
    assert!(lab.dirty(0), "the partition vanished with its agent");
    // ...until the agent starts again: it reverts from its journal before serving.
    lab.start_agent(0);
    assert!(
        !lab.dirty(0),
        "the restarted agent serves with the old partition in place"
    );
    assert!(probe(&lab.hosts[0].ns.name, &lab.hosts[1].ns.addr, 1000).is_some());
    signal(&run, rustix::process::Signal::KILL);
    let _ = finish(run);
    let journal = agent_journal(&lab.hosts[0].state);
    assert!(journal.contains(r#""by":"recover""#), "{journal}");
}

#[test]
fn agent_refuses_bad_tokens_and_kinds_and_injects_nothing() {
    let mut lab = Lab::new();
    let peer_b = lab.hosts[1].ns.addr.clone();
    let fault = |kind: &str| {
        let fault = match kind {
            "cpu" => r#"{"kind":"cpu","workers":1,"percent":50}"#.to_string(),
            "all" => r#"{"kind":"partition","peers":[],"direction":"both"}"#.to_string(),
            _ => format!(r#"{{"kind":"partition","peers":["{peer_b}"],"direction":"both"}}"#),
        };
        format!(
            r#"{{"id":"t-{kind}","name":"n","target":"t","on":{{"host":{{"netns":null,"interface":null}}}},"fault":{fault},"lease":"2s"}}"#
        )
    };
    let tokens = (lab.hosts[0].token.clone(), lab.hosts[1].token.clone());
    let (own, other) = (tokens.0.as_str(), tokens.1.as_str());
    assert_eq!(lab.request("GET", 0, "/version", None, "-"), 200);
    assert_eq!(lab.request("POST", 0, "/faults", None, &fault("p")), 401);
    assert_eq!(lab.request("GET", 0, "/status", None, "-"), 401);
    assert_eq!(
        lab.request("POST", 0, "/faults", Some("not-the-token"), &fault("p")),
        401
    );
    // Another agent's token, valid there, is refused here.
    assert_eq!(
        lab.request("POST", 0, "/faults", Some(other), &fault("p")),
        401
    );
    // Authenticated, but outside the allow-list, or cutting the agent off.
    assert_eq!(
        lab.request("POST", 0, "/faults", Some(own), &fault("cpu")),
        403
    );
    assert_eq!(
        lab.request("POST", 0, "/faults", Some(own), &fault("all")),
        403
    );
    assert!(
        nft_tables(&lab.hosts[0].ns.name).is_empty(),
        "something was injected"
    );
    assert_eq!(lab.request("GET", 0, "/status", Some(own), "-"), 200);
    // The good request works, and is reverted by the runner's DELETE.
    assert_eq!(
        lab.request("POST", 0, "/faults", Some(own), &fault("p")),
        201
    );
    assert_eq!(nft_tables(&lab.hosts[0].ns.name).len(), 1);
    assert_eq!(lab.request("DELETE", 0, "/faults/t-p", Some(own), "-"), 200);
    assert!(nft_tables(&lab.hosts[0].ns.name).is_empty());
    assert_eq!(lab.request("DELETE", 0, "/faults/t-p", Some(own), "-"), 404);
    // A revoke that overtakes its inject: the late inject is refused, nothing applied.
    assert_eq!(
        lab.request("DELETE", 0, "/faults/t-late", Some(own), "-"),
        404
    );
    let late = fault("p").replace("t-p", "t-late");
    assert_eq!(lab.request("POST", 0, "/faults", Some(own), &late), 410);
    assert!(nft_tables(&lab.hosts[0].ns.name).is_empty());
    // The revocation is journaled: a restarted agent still refuses the late inject.
    if let Some(mut a) = lab.hosts[0].agent.take() {
        signal(&a.child, rustix::process::Signal::TERM);
        let _ = a.child.wait();
    }
    lab.start_agent(0);
    assert_eq!(lab.request("POST", 0, "/faults", Some(own), &late), 410);
    assert!(nft_tables(&lab.hosts[0].ns.name).is_empty());
    // Repeated failures from one address: after a few, the agent makes it wait (429).
    let out = in_ns(&lab.runner.name, python())
        .args([
            "-c",
            BURST,
            &format!("{}/status", lab.url(0)),
            "guess",
            "12",
        ])
        .output()
        .unwrap();
    let codes: Vec<u16> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect();
    assert_eq!(codes.len(), 12, "{out:?}");
    assert!(codes.contains(&429), "no backoff: {codes:?}");
    assert!(codes.iter().all(|c| *c == 401 || *c == 429), "{codes:?}");
}

#[test]
fn agent_survives_random_requests() {
    let lab = Lab::new();
    let (host, token) = (&lab.hosts[0].ns.addr, &lab.hosts[0].token);
    for seed in 0..3 {
        let out = in_ns(&lab.runner.name, python())
            .args([
                "-c",
                FUZZ,
                host,
                &AGENT.to_string(),
                token,
                &seed.to_string(),
                "150",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        eprintln!(
            "fuzz seed {seed}: {} answered",
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    assert_eq!(
        lab.request("GET", 0, "/version", None, "-"),
        200,
        "the agent died"
    );
    assert!(
        nft_tables(&lab.hosts[0].ns.name).is_empty(),
        "random requests injected a fault"
    );
}

/// A `sleep` on host 0, in its own process group (the agent refuses its own group).
fn sleeper(lab: &Lab) -> Child {
    use std::os::unix::process::CommandExt as _;
    in_ns(&lab.hosts[0].ns.name, python())
        .args(["-c", "import time; time.sleep(120)"])
        .process_group(0)
        .spawn()
        .unwrap()
}

fn process_fault(id: &str, pid: u32, fault: &str) -> String {
    format!(
        r#"{{"id":"{id}","name":"n","target":"t","on":{{"process":{{"pid":{pid}}}}},"fault":{fault},"lease":"30s"}}"#
    )
}

/// The soft `Max open files` of `pid`, from `/proc/PID/limits`.
fn nofile(pid: u32) -> String {
    soft_limit(pid, "Max open files")
}

/// The soft limit of the `/proc/PID/limits` line starting with `name` (two words).
fn soft_limit(pid: u32, name: &str) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap()
        .to_string();
    line[name.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Kills the process whose pid a file holds when the test ends (a service started in the
/// background, outside anything else the test owns) — if it still runs the script: a pid
/// that was reused by then is left alone.
struct KillFromPidFile(PathBuf, PathBuf);

impl Drop for KillFromPidFile {
    fn drop(&mut self) {
        let Some(raw) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        else {
            return;
        };
        let ours = std::fs::read(format!("/proc/{raw}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(self.1.to_string_lossy().as_ref()));
        if ours && let Some(pid) = rustix::process::Pid::from_raw(raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

#[test]
fn agent_runs_process_limit_and_restart() {
    use std::os::unix::process::CommandExt as _;
    let lab = Lab::new();
    let token = lab.hosts[0].token.as_str();
    let (a, r) = (&lab.hosts[0].ns.addr, &lab.runner.name);
    // process-limit: the soft `Max processes` of a process of an unprivileged user drops
    // during the fault and comes back (root is exempt from RLIMIT_NPROC, and refused).
    let mut target = in_ns(&lab.hosts[0].ns.name, "setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", python()])
        .args(["-c", "import time; time.sleep(120)"])
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = target.id();
    assert!(
        wait_for(Duration::from_secs(5), || std::fs::read_to_string(format!(
            "/proc/{pid}/cmdline"
        ))
        .is_ok_and(|c| c.contains("sleep"))),
        "the unprivileged sleeper never started"
    );
    let before = soft_limit(pid, "Max processes");
    let pl = process_fault("pl-1", pid, r#"{"kind":"process-limit","headroom":3}"#);
    assert_eq!(lab.request("POST", 0, "/faults", Some(token), &pl), 201);
    let during = soft_limit(pid, "Max processes");
    eprintln!("Max processes of {pid}: {before} before, {during} during");
    assert_ne!(during, before, "the process limit did not change");
    assert_eq!(
        lab.request("DELETE", 0, "/faults/pl-1", Some(token), "-"),
        200
    );
    assert_eq!(
        soft_limit(pid, "Max processes"),
        before,
        "the process limit was not restored"
    );
    let _ = target.kill();
    let _ = target.wait();

    // restart: an echo service on host 0 is replaced by the agent running the user's command;
    // the runner reaches the new process once the fault answers.
    const RESTARTED: u16 = 7300;
    let script = lab.dir.write("echo.py", ECHO_SERVER);
    let pidfile = lab.dir.path().join("restarted.pid");
    let _cleanup = KillFromPidFile(pidfile.clone(), script.clone());
    // Started through `sh … &` so that init, not this test, reaps it once the restart kills it.
    let out = in_ns(&lab.hosts[0].ns.name, "setsid")
        .args([
            "sh",
            "-c",
            &format!(
                "{} {} {RESTARTED} >/dev/null 2>&1 & echo $!",
                python(),
                script.display()
            ),
        ])
        .output()
        .unwrap();
    let old: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let _old_cleanup = KillFromPidFile(lab.dir.write("old.pid", &old.to_string()), script.clone());
    assert!(
        wait_for(Duration::from_secs(5), || probe_port(r, a, RESTARTED, 500)
            .is_some()),
        "the service never answered"
    );
    let command = format!(
        "kill $CHAOSFORGE_TARGET_PID; while kill -0 $CHAOSFORGE_TARGET_PID 2>/dev/null; do sleep 0.05; done; {} {} {RESTARTED} >/dev/null 2>&1 & echo $! > {}",
        python(),
        script.display(),
        pidfile.display()
    );
    let restart = process_fault(
        "rs-1",
        old,
        &serde_json::json!({
            "kind": "restart",
            "command": command,
            "ready": { "tcp": format!("127.0.0.1:{RESTARTED}") },
            "timeout": "20s",
        })
        .to_string(),
    );
    assert_eq!(
        lab.request("POST", 0, "/faults", Some(token), &restart),
        201
    );
    // The old process is gone, a new one answers.
    assert!(
        !Path::new(&format!("/proc/{old}")).exists(),
        "the old service survived its restart"
    );
    let new: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(new, old);
    assert!(
        probe_port(r, a, RESTARTED, 2000).is_some(),
        "the restarted service does not answer"
    );
    assert_eq!(
        lab.request("DELETE", 0, "/faults/rs-1", Some(token), "-"),
        200
    );
    let journal = agent_journal(&lab.hosts[0].state);
    assert!(journal.contains(r#""kind":"restart""#), "{journal}");
    assert!(journal.contains("restarted with"), "{journal}");
}

/// Whether a cgroup `pid` is in reports itself frozen: v2 `cgroup.events`, or v1
/// `freezer.state`, whichever freezer the fault used.
fn frozen(pid: u32) -> bool {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    cg.lines().any(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctl, path) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
        match ctl {
            Some("") => std::fs::read_to_string(format!("/sys/fs/cgroup{path}/cgroup.events"))
                .is_ok_and(|e| e.lines().any(|l| l == "frozen 1")),
            Some("freezer") => {
                std::fs::read_to_string(format!("/sys/fs/cgroup/freezer{path}/freezer.state"))
                    .is_ok_and(|s| s.trim() == "FROZEN")
            }
            _ => false,
        }
    })
}

#[test]
fn agent_runs_process_faults_freeze_fd_limit_and_kill() {
    let mut lab = Lab::new();
    lab.restart_agent_seeing_cgroups(0);
    let token = lab.hosts[0].token.as_str();
    let mut target = sleeper(&lab);
    let pid = target.id();
    // fd-exhaustion: the soft limit seen from outside drops during the fault, and comes back.
    let before = nofile(pid);
    let fd = process_fault("fd-1", pid, r#"{"kind":"fd-exhaustion","headroom":5}"#);
    assert_eq!(lab.request("POST", 0, "/faults", Some(token), &fd), 201);
    let during = nofile(pid);
    eprintln!("Max open files of {pid}: {before} before, {during} during");
    assert_ne!(during, before, "the fd limit did not change");
    assert!(during.parse::<u64>().unwrap() < 64, "{during}");
    assert_eq!(
        lab.request("DELETE", 0, "/faults/fd-1", Some(token), "-"),
        200
    );
    assert_eq!(nofile(pid), before, "the fd limit was not restored");
    // freeze: the kernel reports the target's cgroup frozen, and thawed after the DELETE.
    let fz = process_fault("fz-1", pid, r#"{"kind":"freeze","tree":false}"#);
    assert_eq!(lab.request("POST", 0, "/faults", Some(token), &fz), 201);
    assert!(
        wait_for(Duration::from_secs(5), || frozen(pid)),
        "the target's cgroup is not frozen"
    );
    let thaw = Instant::now();
    assert_eq!(
        lab.request("DELETE", 0, "/faults/fz-1", Some(token), "-"),
        200
    );
    assert!(!frozen(pid), "the target stays frozen");
    eprintln!("freeze reverted within {:?} of the DELETE", thaw.elapsed());
    // Never at the agent itself: its own pid is refused before anything is journaled.
    let own = lab.agent(0).child.id();
    let self_fz = process_fault("fz-self", own, r#"{"kind":"freeze","tree":false}"#);
    // (the resolver's own self check answers 422 before the agent's 403 rules run).
    let code = lab.request("POST", 0, "/faults", Some(token), &self_fz);
    assert!(
        matches!(code, 403 | 422),
        "freezing the agent answered {code}"
    );
    assert!(!frozen(own));
    // kill: irreversible; the process is gone.
    let kill = process_fault(
        "kill-1",
        pid,
        r#"{"kind":"kill","signal":9,"signal_name":"SIGKILL"}"#,
    );
    assert_eq!(lab.request("POST", 0, "/faults", Some(token), &kill), 201);
    assert!(
        wait_for(Duration::from_secs(5), || matches!(
            target.try_wait(),
            Ok(Some(_))
        )),
        "the target survived the kill"
    );
    assert_eq!(
        lab.request("DELETE", 0, "/faults/kill-1", Some(token), "-"),
        200
    );
    let journal = agent_journal(&lab.hosts[0].state);
    assert!(
        journal.contains("fd-exhaustion")
            || journal.contains("Nofile")
            || journal.contains("nofile"),
        "{journal}"
    );
}

fn agent_journal(state: &Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(state.join("runs")).unwrap().flatten() {
        if let Ok(t) = std::fs::read_to_string(e.path().join("journal.jsonl")) {
            all.push_str(&t);
        }
    }
    all
}
