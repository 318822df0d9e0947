//! A traffic agent: this test binary, re-run inside a network namespace with
//! `ip netns exec NS <this binary> --exact agent::serve_when_spawned_as_agent`, so that every
//! probe is sent from inside a namespace, by a process that checked first that its namespace
//! has no default route.
//!
//! It reads one command per line on stdin and answers one line `cf-agent ok VALUE` or
//! `cf-agent err MESSAGE` on stdout (other stdout lines are libtest's and are skipped). Every
//! command is bounded by its own timeout, and the agent exits when stdin closes, so it never
//! outlives the test process.
//!
//! Commands:
//! - `listen-tcp PORT`: an echo server on `0.0.0.0:PORT`.
//! - `listen-udp PORT`: count datagrams arriving on `0.0.0.0:PORT`; `udp-count` reads the count.
//! - `udp-send ADDR COUNT`: send COUNT datagrams; answers how many the kernel accepted.
//! - `connect ADDR COUNT TIMEOUT_MS`: COUNT probes at once, each a new TCP connection that must
//!   echo one byte back within the timeout; answers how many succeeded.
//! - `open ID ADDR TIMEOUT_MS`: open a TCP connection and keep it as ID.
//! - `echo ID TAG TIMEOUT_MS`: send byte TAG on connection ID and wait for it to come back
//!   (earlier echoes arriving late are skipped); answers 1 or 0.
//! - `connect-p50 ADDR COUNT`: COUNT TCP connects one after the other (2 s timeout each);
//!   answers the median connect time in microseconds and how many succeeded: `P50_US OK`.
//! - `bulk ADDR BYTES`: send BYTES to the echo server at ADDR while reading them back; answers
//!   the milliseconds until the last byte was sent and read back (10 s limit).
//! - `listen-seq PORT`: record the sequence numbers of datagrams arriving on PORT; `seq-stats`
//!   answers `RECEIVED OUT_OF_ORDER` (a datagram is out of order when a later one came first).
//! - `send-seq ADDR FIRST COUNT GAP_US`: send COUNT datagrams numbered from FIRST, one every
//!   GAP_US.
//! - `ping`: answers `pong`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ENV: &str = "CHAOSFORGE_TEST_NS_AGENT";
const PREFIX: &str = "cf-agent ";

/// The agent's entry point; a no-op when the test suite runs normally.
#[test]
fn serve_when_spawned_as_agent() {
    if std::env::var_os(ENV).is_none() {
        return;
    }
    // The only traffic this process sends is from here; refuse where a wrong address could leave
    // the machine.
    chaosforge::testkit::assert_isolated();
    let mut state = State::default();
    reply(Ok("ready".into()));
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => reply(state.handle(line.trim())),
        }
    }
    // Listener threads would keep libtest waiting; the test process is gone or done with us.
    std::process::exit(0);
}

fn reply(r: Result<String, String>) {
    let line = match r {
        Ok(v) => format!("{PREFIX}ok {v}\n"),
        Err(e) => format!("{PREFIX}err {}\n", e.replace('\n', " ")),
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

#[derive(Default)]
struct State {
    udp_count: Arc<AtomicUsize>,
    conns: HashMap<String, TcpStream>,
    /// Datagrams received on the `listen-seq` port and how many came after a later one.
    seq: Arc<Mutex<(u64, u64, Option<u64>)>>,
}

impl State {
    fn handle(&mut self, line: &str) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let e = |e: std::io::Error| e.to_string();
        match words[..] {
            ["ping"] => Ok("pong".into()),
            ["listen-tcp", port] => {
                let l = TcpListener::bind(("0.0.0.0", num(port)?)).map_err(e)?;
                std::thread::spawn(move || {
                    for c in l.incoming().flatten() {
                        std::thread::spawn(move || echo_server(c));
                    }
                });
                Ok("listening".into())
            }
            ["listen-udp", port] => {
                let s = UdpSocket::bind(("0.0.0.0", num(port)?)).map_err(e)?;
                let count = self.udp_count.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while s.recv(&mut buf).is_ok() {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                });
                Ok("listening".into())
            }
            ["udp-count"] => Ok(self.udp_count.load(Ordering::SeqCst).to_string()),
            ["connect-p50", addr, count] => {
                let to = addr_of(addr)?;
                let mut times = Vec::new();
                for _ in 0..num(count)? {
                    let start = Instant::now();
                    if TcpStream::connect_timeout(&to, Duration::from_secs(2)).is_ok() {
                        times.push(start.elapsed().as_micros());
                    }
                }
                times.sort_unstable();
                let p50 = times.get(times.len() / 2).copied().unwrap_or(0);
                Ok(format!("{p50} {}", times.len()))
            }
            ["bulk", addr, bytes] => {
                let n: usize = bytes.parse().map_err(|_| "bad byte count")?;
                let mut c = TcpStream::connect_timeout(&addr_of(addr)?, Duration::from_secs(2))
                    .map_err(e)?;
                c.set_read_timeout(Some(Duration::from_secs(10)))
                    .map_err(e)?;
                let mut w = c.try_clone().map_err(e)?;
                let start = Instant::now();
                let writer = std::thread::spawn(move || {
                    let chunk = [7u8; 16 * 1024];
                    let mut left = n;
                    while left > 0 {
                        let k = left.min(chunk.len());
                        if w.write_all(&chunk[..k]).is_err() {
                            break;
                        }
                        left -= k;
                    }
                });
                let mut got = 0;
                let mut buf = vec![0u8; 64 * 1024];
                while got < n {
                    match c.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => got += k,
                        Err(err) => return Err(err.to_string()),
                    }
                }
                let ms = start.elapsed().as_millis();
                let _ = writer.join();
                if got < n {
                    return Err(format!("only {got} of {n} bytes came back"));
                }
                Ok(ms.to_string())
            }
            ["listen-seq", port] => {
                let s = UdpSocket::bind(("0.0.0.0", num(port)?)).map_err(e)?;
                let seq = self.seq.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.recv(&mut buf) {
                        let Ok(bytes) = <[u8; 8]>::try_from(&buf[..n.min(8)]) else {
                            continue;
                        };
                        let k = u64::from_be_bytes(bytes);
                        let Ok(mut st) = seq.lock() else { break };
                        st.0 += 1;
                        match st.2 {
                            Some(max) if k < max => st.1 += 1,
                            _ => st.2 = Some(k),
                        }
                    }
                });
                Ok("listening".into())
            }
            ["seq-stats"] => {
                let st = self.seq.lock().map_err(|_| "poisoned")?;
                Ok(format!("{} {}", st.0, st.1))
            }
            ["send-seq", addr, first, count, gap_us] => {
                let first: u64 = first.parse().map_err(|_| "bad first number")?;
                let to = addr_of(addr)?;
                let gap = Duration::from_micros(gap_us.parse().map_err(|_| "bad gap")?);
                let s = UdpSocket::bind(("0.0.0.0", 0)).map_err(e)?;
                let start = Instant::now();
                let count: u64 = count.parse().map_err(|_| "bad count")?;
                for k in 0..count {
                    // Paced against the start, so a late wakeup does not stretch the run.
                    let due = start + gap * k as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let _ = s.send_to(&(first + k).to_be_bytes(), to);
                }
                Ok(count.to_string())
            }
            ["udp-send", addr, count] => {
                let to = addr_of(addr)?;
                let s = UdpSocket::bind(("0.0.0.0", 0)).map_err(e)?;
                let sent = (0..num(count)?)
                    .filter(|_| s.send_to(b"x", to).is_ok())
                    .count();
                Ok(sent.to_string())
            }
            ["connect", addr, count, ms] => {
                let to = addr_of(addr)?;
                let timeout = Duration::from_millis(num(ms)?.into());
                let probes: Vec<_> = (0..num(count)?)
                    .map(|_| std::thread::spawn(move || probe(to, timeout)))
                    .collect();
                let ok = probes
                    .into_iter()
                    .filter_map(|p| p.join().ok())
                    .filter(|ok| *ok)
                    .count();
                Ok(ok.to_string())
            }
            ["open", id, addr, ms] => {
                let timeout = Duration::from_millis(num(ms)?.into());
                let c = TcpStream::connect_timeout(&addr_of(addr)?, timeout).map_err(e)?;
                self.conns.insert(id.to_string(), c);
                Ok("open".into())
            }
            ["echo", id, tag, ms] => {
                let c = self.conns.get_mut(id).ok_or("no such connection")?;
                let tag: u8 = tag.parse().map_err(|_| "bad tag")?;
                let deadline = Instant::now() + Duration::from_millis(num(ms)?.into());
                c.write_all(&[tag]).map_err(e)?;
                let mut b = [0u8; 1];
                while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                    c.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                        .map_err(e)?;
                    match c.read(&mut b) {
                        Ok(1) if b[0] == tag => return Ok("1".into()),
                        Ok(1) => continue,
                        Ok(_) => return Err("connection closed".into()),
                        Err(err)
                            if matches!(
                                err.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            break;
                        }
                        Err(err) => return Err(err.to_string()),
                    }
                }
                Ok("0".into())
            }
            _ => Err(format!("unknown command `{line}`")),
        }
    }
}

fn num(s: &str) -> Result<u16, String> {
    s.parse().map_err(|_| format!("not a number: {s}"))
}

fn addr_of(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| format!("not an address: {s}"))
}

fn echo_server(mut c: TcpStream) {
    let mut buf = [0u8; 256];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 || c.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// A new connection that carries one byte there and back within `timeout`.
fn probe(to: SocketAddr, timeout: Duration) -> bool {
    let start = Instant::now();
    let Ok(mut c) = TcpStream::connect_timeout(&to, timeout) else {
        return false;
    };
    let left = timeout.saturating_sub(start.elapsed());
    if left.is_zero() || c.set_read_timeout(Some(left)).is_err() || c.write_all(b"p").is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    matches!(c.read(&mut b), Ok(1) if &b == b"p")
}

/// The test side: a running agent in a namespace.
pub struct Agent {
    ns: String,
    child: Mutex<Child>,
    io: Mutex<(ChildStdin, BufReader<ChildStdout>)>,
}

impl Agent {
    /// Starts the agent in `ns` and waits for it to say it is ready (it has checked isolation).
    pub fn spawn(ns: &str) -> Agent {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args([
                "--exact",
                "agent::serve_when_spawned_as_agent",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let io = (
            child.stdin.take().unwrap(),
            BufReader::new(child.stdout.take().unwrap()),
        );
        let agent = Agent {
            ns: ns.to_string(),
            child: Mutex::new(child),
            io: Mutex::new(io),
        };
        agent.read_reply().unwrap();
        agent
    }

    /// Sends one command and returns its `ok` value; panics on `err` or a dead agent.
    pub fn ask(&self, command: &str) -> String {
        // Blocks for up to the command's timeout: keep the runtime's other tasks (a guard's
        // background revert) running meanwhile.
        tokio::task::block_in_place(|| self.ask_blocking(command))
    }

    fn ask_blocking(&self, command: &str) -> String {
        {
            let mut io = self.io.lock().unwrap();
            writeln!(io.0, "{command}").unwrap();
            io.0.flush().unwrap();
        }
        self.read_reply()
            .unwrap_or_else(|e| panic!("agent in {}: `{command}`: {e}", self.ns))
    }

    fn read_reply(&self) -> Result<String, String> {
        let mut io = self.io.lock().unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            // Bounded: every command has a timeout, and a dead agent closes the pipe.
            if io.1.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err(format!(
                    "the agent in {} exited (see its stderr above)",
                    self.ns
                ));
            }
            if let Some(rest) = line.trim_end().strip_prefix(PREFIX) {
                return match rest.split_once(' ') {
                    Some(("ok", v)) => Ok(v.to_string()),
                    Some(("err", e)) => Err(e.to_string()),
                    _ => Err(format!("garbled reply `{rest}`")),
                };
            }
        }
    }

    /// Ends the agent now (its namespace is about to be deleted).
    pub fn kill(&self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}
