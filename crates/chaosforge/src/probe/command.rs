//! The command probe: run a program, judge it by its exit code, read a number from its output.

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::{Probe, Sample, timeout_text};

/// The most of a command's standard output a sample reads; the rest is discarded unread.
///
/// A monitor reads a status line or a small JSON document; a runaway command must not make the
/// runner buffer without bound.
pub const MAX_OUTPUT: u64 = 1 << 20;

/// What a command probe runs and how it reads the result, validated by the planner.
#[derive(Debug, Clone)]
pub struct CommandProbeConfig {
    /// The program and its arguments (a shell command line is `["sh", "-c", line]`).
    pub argv: Vec<String>,
    /// How long one run may take before it is killed with its process group.
    pub timeout: Duration,
    /// How the sample's number is read from standard output, if at all.
    pub value: Option<ValueExtract>,
}

/// How a number is read from a command's output.
#[derive(Debug, Clone)]
pub enum ValueExtract {
    /// The capture group `group` of the first match of `regex`.
    Regex {
        /// The compiled expression.
        regex: regex::Regex,
        /// The capture group holding the number (0 is the whole match).
        group: usize,
    },
    /// The first node a JSONPath selects in the output parsed as JSON.
    Json {
        /// The path as written, for error texts.
        text: String,
        /// The parsed path.
        path: serde_json_path::JsonPath,
    },
}

/// A probe that runs a command per sample.
///
/// `ok` means the command exited with status 0 within the timeout and, when a value is asked
/// for, the value was found. The exit code is the sample's `status`. The command runs in a
/// process group of its own with standard input closed, so that at the timeout the whole group
/// (a shell and everything it started) is killed, not only its leader.
#[derive(Debug)]
pub struct CommandProbe {
    name: String,
    config: CommandProbeConfig,
}

// === impl CommandProbe ===

impl CommandProbe {
    /// A probe running `config.argv` per sample.
    pub fn new(name: impl Into<String>, config: CommandProbeConfig) -> Self {
        CommandProbe {
            name: name.into(),
            config,
        }
    }

    async fn run(&self) -> Result<(std::process::ExitStatus, Vec<u8>), String> {
        let (program, args) = self
            .config
            .argv
            .split_first()
            .ok_or_else(|| "empty command".to_string())?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run `{program}`: {e}"))?;
        let pgid = child.id();
        let mut stdout = child.stdout.take();
        let work = async {
            let mut out = Vec::new();
            if let Some(s) = stdout.as_mut() {
                // A read error (the pipe closed oddly) leaves what was read; the exit code
                // still decides the sample.
                let _ = s.take(MAX_OUTPUT).read_to_end(&mut out).await;
            }
            drop(stdout);
            child.wait().await.map(|status| (status, out))
        };
        match tokio::time::timeout(self.config.timeout, work).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => Err(format!("waiting for `{program}`: {e}")),
            Err(_) => {
                kill_group(pgid);
                Err(timeout_text(self.config.timeout))
            }
        }
    }
}

/// Kills the process group a timed-out command leads; the leader itself is killed and reaped
/// by tokio when its `Child` is dropped (`kill_on_drop`).
fn kill_group(pgid: Option<u32>) {
    let Some(pid) = pgid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        // ESRCH: the group is already gone, which is what we wanted.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

#[async_trait]
impl Probe for CommandProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn sample(&self) -> Sample {
        let started = Instant::now();
        let result = self.run().await;
        let latency = started.elapsed();
        let (status, out) = match result {
            Ok(done) => done,
            Err(e) => return Sample::failure(latency, e),
        };
        let Some(code) = status.code() else {
            use std::os::unix::process::ExitStatusExt;
            let signal = status.signal().unwrap_or(0);
            return Sample::failure(latency, format!("killed by signal {signal}"));
        };
        // Exit codes are 0..=255 on Unix.
        let code16 = u16::try_from(code).unwrap_or(u16::MAX);
        if code != 0 {
            return Sample::failure(latency, format!("exit code {code}")).with_status(code16);
        }
        let sample = Sample::success(latency).with_status(code16);
        match &self.config.value {
            None => sample,
            Some(extract) => match extract.read(&out) {
                Ok(v) => sample.with_value(v),
                Err(e) => Sample::failure(latency, e).with_status(code16),
            },
        }
    }
}

// === impl ValueExtract ===

impl ValueExtract {
    /// The number in `output`, or why there is none.
    pub fn read(&self, output: &[u8]) -> Result<f64, String> {
        let text = String::from_utf8_lossy(output);
        match self {
            ValueExtract::Regex { regex, group } => {
                let caps = regex
                    .captures(&text)
                    .ok_or_else(|| format!("no match for /{}/ in the output", regex.as_str()))?;
                let m = caps.get(*group).ok_or_else(|| {
                    format!("group {group} of /{}/ matched nothing", regex.as_str())
                })?;
                parse_number(m.as_str())
            }
            ValueExtract::Json {
                text: path_text,
                path,
            } => {
                let doc: serde_json::Value = serde_json::from_str(text.trim())
                    .map_err(|e| format!("output is not JSON: {e}"))?;
                let node = path
                    .query(&doc)
                    .first()
                    .ok_or_else(|| format!("`{path_text}` selects nothing in the output"))?;
                match node {
                    serde_json::Value::Number(n) => n
                        .as_f64()
                        .ok_or_else(|| format!("`{path_text}` is not a finite number")),
                    serde_json::Value::String(s) => parse_number(s),
                    other => Err(format!("`{path_text}` is {other}, not a number")),
                }
            }
        }
    }
}

/// A finite number from text, as a sample value.
pub(crate) fn parse_number(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(v) => Err(format!("value `{v}` is not finite")),
        Err(_) => Err(format!("`{}` is not a number", s.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(argv: &[&str], timeout: Duration, value: Option<ValueExtract>) -> CommandProbe {
        CommandProbe::new(
            "cmd",
            CommandProbeConfig {
                argv: argv.iter().map(|s| s.to_string()).collect(),
                timeout,
                value,
            },
        )
    }

    fn regex(r: &str, group: usize) -> Option<ValueExtract> {
        Some(ValueExtract::Regex {
            regex: regex::Regex::new(r).unwrap(),
            group,
        })
    }

    #[tokio::test]
    async fn exit_codes_decide_and_are_recorded() {
        let ok = probe(&["sh", "-c", "exit 0"], Duration::from_secs(5), None)
            .sample()
            .await;
        assert!(ok.ok, "{ok:?}");
        assert_eq!(ok.status, Some(0));
        let bad = probe(&["sh", "-c", "exit 3"], Duration::from_secs(5), None)
            .sample()
            .await;
        assert!(!bad.ok);
        assert_eq!(bad.status, Some(3));
        assert_eq!(bad.error.as_deref(), Some("exit code 3"));
        let missing = probe(&["/nonexistent/program"], Duration::from_secs(5), None)
            .sample()
            .await;
        assert!(!missing.ok);
        assert!(missing.error.unwrap().contains("cannot run"));
    }

    #[tokio::test]
    async fn values_are_read_by_regex_and_json() {
        let r = probe(
            &["sh", "-c", "echo 'queue depth=42 items'"],
            Duration::from_secs(5),
            regex(r"depth=(\d+)", 1),
        )
        .sample()
        .await;
        assert_eq!(r.value, Some(42.0), "{r:?}");
        let j = probe(
            &["sh", "-c", r#"echo '{"queue":{"depth":"7.5"}}'"#],
            Duration::from_secs(5),
            Some(ValueExtract::Json {
                text: "$.queue.depth".into(),
                path: serde_json_path::JsonPath::parse("$.queue.depth").unwrap(),
            }),
        )
        .sample()
        .await;
        assert_eq!(j.value, Some(7.5), "{j:?}");
        let none = probe(
            &["sh", "-c", "echo nothing here"],
            Duration::from_secs(5),
            regex(r"(\d+)", 1),
        )
        .sample()
        .await;
        assert!(!none.ok);
        assert!(none.error.unwrap().contains("no match"));
    }

    #[tokio::test]
    async fn a_hanging_command_and_its_children_are_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        // The shell starts a grandchild that would outlive a kill of the shell alone.
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let started = Instant::now();
        let s = probe(&["sh", "-c", &script], Duration::from_millis(300), None)
            .sample()
            .await;
        assert!(!s.ok);
        assert_eq!(s.error.as_deref(), Some("timeout after 300ms"));
        assert!(started.elapsed() < Duration::from_secs(10));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild got SIGKILL; give the kernel a moment to make it a zombie or reap it.
        let mut gone = false;
        for _ in 0..100 {
            let state = crate::fault::procfs::state_of(pid);
            if matches!(state, None | Some('Z') | Some('X')) {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "the grandchild {pid} survived the timeout");
    }
}
