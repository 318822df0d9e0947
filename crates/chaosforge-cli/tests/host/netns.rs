//! Three hosts made of network namespaces, `cf-<pid>-<random>-{a,b,c}`, each with one interface
//! `eth0` (10.77.R.1, .2, .3/24) plugged into a Linux bridge that lives in a fourth namespace,
//! `cf-<pid>-<random>-br`. Nothing is created in the namespace the tests run in, no namespace
//! has a default route (checked), and everything is deleted on drop — also when a test panics.
//! Namespaces left by a test process that was killed (its pid is gone) are deleted by the next
//! fixture.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::agent::Agent;

/// The TCP echo port every host listens on.
pub const TCP_PORT: u16 = 7000;
/// The UDP port every host counts datagrams on.
pub const UDP_PORT: u16 = 7001;

/// One host: a namespace, its address, and an agent sending traffic from inside it.
pub struct Host {
    /// The namespace.
    pub ns: String,
    /// Its address on the bridge.
    pub addr: Ipv4Addr,
    /// The agent running in it.
    pub agent: Agent,
}

/// The three hosts. Field order matters: agents are dropped (killed) before the namespaces.
pub struct Hosts {
    pub a: Host,
    pub b: Host,
    pub c: Host,
    _namespaces: Namespaces,
}

/// Deletes its namespaces on drop.
struct Namespaces(Vec<String>);

impl Hosts {
    /// Builds the hosts, starts an agent in each (TCP echo and UDP counter listening), and waits
    /// until every host reaches every other one.
    pub fn new() -> Hosts {
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
            (nanos ^ (seq << 24)) & 0x00ff_ffff
        );
        let subnet = (nanos % 250 + 1) as u8;
        let name = |role: &str| format!("cf-{id}-{role}");

        let mut namespaces = Namespaces(Vec::new());
        let br = name("br");
        for ns in [br.clone(), name("a"), name("b"), name("c")] {
            ip(&["netns", "add", &ns]);
            namespaces.0.push(ns);
        }
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        let mut hosts = Vec::new();
        for (i, role) in ["a", "b", "c"].into_iter().enumerate() {
            let ns = name(role);
            let port = format!("v{role}");
            let addr = Ipv4Addr::new(10, 77, subnet, i as u8 + 1);
            let cidr = format!("{addr}/24");
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"]);
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            hosts.push((ns, addr));
        }
        for ns in &namespaces.0 {
            assert_no_default_route(ns);
        }
        let mut hosts = hosts.into_iter().map(|(ns, addr)| {
            let agent = Agent::spawn(&ns);
            agent.ask(&format!("listen-tcp {TCP_PORT}"));
            agent.ask(&format!("listen-udp {UDP_PORT}"));
            Host { ns, addr, agent }
        });
        let (a, b, c) = (
            hosts.next().unwrap(),
            hosts.next().unwrap(),
            hosts.next().unwrap(),
        );
        let hosts = Hosts {
            a,
            b,
            c,
            _namespaces: namespaces,
        };
        hosts.wait_connected();
        hosts
    }

    /// Until links are up every probe may fail; wait (bounded) until all six directions work.
    fn wait_connected(&self) {
        let all = [&self.a, &self.b, &self.c];
        for from in all {
            for to in all {
                if from.ns == to.ns {
                    continue;
                }
                let ok = (0..50).any(|_| {
                    from.agent.ask(&format!("connect {} 1 200", to.tcp())) == "1" || {
                        std::thread::sleep(Duration::from_millis(100));
                        false
                    }
                });
                assert!(ok, "{} cannot reach {} on a fresh bridge", from.ns, to.ns);
            }
        }
    }
}

impl Host {
    /// `ADDR:TCP_PORT`.
    pub fn tcp(&self) -> String {
        format!("{}:{TCP_PORT}", self.addr)
    }

    /// `ADDR:UDP_PORT`.
    pub fn udp(&self) -> String {
        format!("{}:{UDP_PORT}", self.addr)
    }

    /// How many of `n` simultaneous TCP probes from this host to `to` (`ADDR:PORT`) got their
    /// byte echoed within `ms`.
    pub fn probes_ok(&self, to: &str, n: usize, ms: u64) -> usize {
        self.agent
            .ask(&format!("connect {to} {n} {ms}"))
            .parse()
            .unwrap()
    }

    /// Datagrams received so far on the UDP port.
    pub fn udp_count(&self) -> usize {
        self.agent.ask("udp-count").parse().unwrap()
    }

    /// Sends `n` datagrams from this host to `to` and returns how many `to` received within
    /// `wait` (it stops early once all arrived).
    pub fn udp_delivered(&self, to: &Host, n: usize, wait: Duration) -> usize {
        let before = to.udp_count();
        self.agent.ask(&format!("udp-send {} {n}", to.udp()));
        let step = Duration::from_millis(50);
        let mut waited = Duration::ZERO;
        loop {
            let got = to.udp_count() - before;
            if got >= n || waited >= wait {
                return got;
            }
            std::thread::sleep(step);
            waited += step;
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            delete(ns);
        }
    }
}

fn delete(ns: &str) {
    let out = Command::new("ip").args(["netns", "del", ns]).output();
    if !matches!(&out, Ok(o) if o.status.success()) {
        eprintln!("warning: could not delete network namespace {ns}: {out:?}");
    }
}

/// Deletes `cf-<pid>-<hex>-<role>` namespaces whose test process is gone.
fn remove_stale() {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let parts: Vec<&str> = name.split('-').collect();
        let ["cf", pid, hex, "a" | "b" | "c" | "br"] = parts[..] else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && u32::from_str_radix(hex, 16).is_ok() && !alive(pid) {
            delete(name);
        }
    }
}

/// A zombie counts as gone: a killed test process may wait a while to be reaped.
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X'))
    })
}

fn assert_no_default_route(ns: &str) {
    for family in ["-4", "-6"] {
        let out = Command::new("ip")
            .args(["-n", ns, family, "route", "show", "default"])
            .output()
            .unwrap();
        assert!(out.status.success(), "ip route show in {ns}: {out:?}");
        assert!(
            out.stdout.is_empty(),
            "refusing to generate traffic: {ns} has a default route: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `ip` (install iproute2): {e}");
    });
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
