//! Running host tools (`ip`, `tc`, `nft`) in a network namespace, behind a seam.
//!
//! Host faults never build a `Command` themselves: they call an [`Executor`], so the same fault
//! code acts on the local host or on a namespace, and unit tests swap in a
//! [`RecordingExecutor`] that records the exact commands and answers from a script.

use std::fmt;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

/// What a command printed; `status` is its exit status (always 0 in an `Ok`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status.
    pub status: i32,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

/// Why a command did not succeed. `command` is the full command line, for messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The program could not be started (not installed, not executable).
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Talking to the running program failed (feeding stdin, collecting output).
    #[error("`{command}`: {source}")]
    Io {
        /// The command line.
        command: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The program ran and failed. `status` is `None` when a signal ended it.
    #[error("`{command}` failed (exit status {}): {}", status.map_or("none".to_string(), |s| s.to_string()), stderr.trim())]
    Failed {
        /// The command line.
        command: String,
        /// Exit status.
        status: Option<i32>,
        /// What it printed on standard error.
        stderr: String,
    },
    /// The program did not finish in time and was killed.
    #[error("`{command}` did not finish within {after:?}; killed")]
    Timeout {
        /// The command line.
        command: String,
        /// The limit.
        after: Duration,
    },
    /// A name given to the executor cannot be used safely (a namespace name that `ip` would read
    /// as an option or a path, a table that is not chaosforge's).
    #[error("refusing `{value}`: {reason}")]
    Refused {
        /// The offending value.
        value: String,
        /// Why.
        reason: String,
    },
}

/// Runs host tools, in a network namespace or in the current one.
///
/// Implementations must not go through a shell: `args` reach the program as they are.
#[async_trait]
pub trait Executor: fmt::Debug + Send + Sync {
    /// Runs `program args…` inside network namespace `netns` (`None`: the current one), feeding
    /// `stdin` if given. A non-zero exit is an [`ExecError::Failed`] carrying standard error.
    async fn run(
        &self,
        netns: Option<&str>,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<ExecOutput, ExecError>;
}

/// The real executor: `ip netns exec NS program args…` (or `program args…` for the current
/// namespace) through `tokio::process`, killed after [`SystemExecutor::TIMEOUT`]. Runs with
/// `LC_ALL=C` so that error messages can be recognised.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemExecutor;

/// One command a [`RecordingExecutor`] was asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The namespace.
    pub netns: Option<String>,
    /// The program and its arguments, joined by spaces.
    pub command: String,
    /// What was fed on stdin.
    pub stdin: Option<String>,
}

/// A scripted answer of a [`RecordingExecutor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Exit 0, printing this on stdout.
    Ok(String),
    /// Exit with this status, printing this on stderr.
    Fail(i32, String),
}

/// A fake executor for unit tests: records every call and answers from a script.
///
/// Rules added with [`on`](Self::on) match when the command line (program and arguments joined
/// by spaces) starts with their prefix; the most recently added matching rule wins, and a rule
/// added with [`once`](Self::once) is used up by its first match. Without a match the answer is
/// success with empty output.
#[derive(Debug, Default)]
pub struct RecordingExecutor {
    calls: Mutex<Vec<Call>>,
    script: Mutex<Vec<Rule>>,
}

#[derive(Debug)]
struct Rule {
    prefix: String,
    answer: Answer,
    once: bool,
}

// === impl SystemExecutor ===

impl SystemExecutor {
    /// How long a command may run before it is killed.
    pub const TIMEOUT: Duration = Duration::from_secs(10);
}

#[async_trait]
impl Executor for SystemExecutor {
    async fn run(
        &self,
        netns: Option<&str>,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<ExecOutput, ExecError> {
        let mut argv: Vec<&str> = Vec::with_capacity(args.len() + 4);
        if let Some(ns) = netns {
            check_netns_name(ns)?;
            argv.extend(["ip", "netns", "exec", ns]);
        }
        argv.push(program);
        argv.extend_from_slice(args);
        let command = argv.join(" ");

        let mut cmd = tokio::process::Command::new(argv[0]);
        cmd.args(&argv[1..])
            .env("LC_ALL", "C")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| ExecError::Spawn {
            command: command.clone(),
            source,
        })?;
        let pipe = child.stdin.take();
        let feed = async move {
            if let (Some(mut pipe), Some(text)) = (pipe, stdin) {
                pipe.write_all(text.as_bytes()).await?;
                pipe.shutdown().await?;
            }
            Ok::<(), std::io::Error>(())
        };
        // Feed and collect at once: a program may fill its stdout before reading all of stdin.
        let both = async { tokio::join!(feed, child.wait_with_output()) };
        let (fed, output) = tokio::time::timeout(Self::TIMEOUT, both)
            .await
            .map_err(|_| ExecError::Timeout {
                command: command.clone(),
                after: Self::TIMEOUT,
            })?;
        let output = output.map_err(|source| ExecError::Io {
            command: command.clone(),
            source,
        })?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if !output.status.success() {
            return Err(ExecError::Failed {
                command,
                status: output.status.code(),
                stderr,
            });
        }
        // A program that succeeded without reading all of its input is not an error of ours.
        if let Err(source) = fed
            && source.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(ExecError::Io { command, source });
        }
        Ok(ExecOutput {
            status: 0,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr,
        })
    }
}

/// `ip netns exec` takes a name, but a name starting with `-` would be read as an option and one
/// with `/` as a path outside `/run/netns`.
fn check_netns_name(ns: &str) -> Result<(), ExecError> {
    let bad = ns.is_empty()
        || ns.starts_with('-')
        || ns.contains('/')
        || ns == "."
        || ns == ".."
        || ns.chars().any(char::is_whitespace);
    if bad {
        return Err(ExecError::Refused {
            value: ns.to_string(),
            reason: "not a network namespace name".into(),
        });
    }
    Ok(())
}

// === impl RecordingExecutor ===

impl RecordingExecutor {
    /// An executor that answers success to everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers `answer` to every command line starting with `prefix`.
    pub fn on(self, prefix: &str, answer: Answer) -> Self {
        self.push(prefix, answer, false);
        self
    }

    /// Answers `answer` to the next command line starting with `prefix`, once.
    pub fn once(self, prefix: &str, answer: Answer) -> Self {
        self.push(prefix, answer, true);
        self
    }

    fn push(&self, prefix: &str, answer: Answer, once: bool) {
        self.script.lock().expect("script lock").push(Rule {
            prefix: prefix.to_string(),
            answer,
            once,
        });
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls lock").clone()
    }

    /// Every call so far as `[netns] command`, for short assertions.
    pub fn lines(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .map(|c| match c.netns {
                Some(ns) => format!("[{ns}] {}", c.command),
                None => c.command,
            })
            .collect()
    }
}

#[async_trait]
impl Executor for RecordingExecutor {
    async fn run(
        &self,
        netns: Option<&str>,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<ExecOutput, ExecError> {
        let command = std::iter::once(program)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        self.calls.lock().expect("calls lock").push(Call {
            netns: netns.map(str::to_string),
            command: command.clone(),
            stdin: stdin.map(str::to_string),
        });
        let answer = {
            let mut script = self.script.lock().expect("script lock");
            match script.iter().rposition(|r| command.starts_with(&r.prefix)) {
                Some(i) if script[i].once => Some(script.remove(i).answer),
                Some(i) => Some(script[i].answer.clone()),
                None => None,
            }
        };
        match answer {
            None => Ok(ExecOutput {
                status: 0,
                stdout: String::new(),
                stderr: String::new(),
            }),
            Some(Answer::Ok(stdout)) => Ok(ExecOutput {
                status: 0,
                stdout,
                stderr: String::new(),
            }),
            Some(Answer::Fail(status, stderr)) => Err(ExecError::Failed {
                command,
                status: Some(status),
                stderr,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn system_executor_reports_output_failures_and_feeds_stdin() {
        let out = SystemExecutor
            .run(None, "cat", &[], Some("hello\n"))
            .await
            .unwrap();
        assert_eq!(out.stdout, "hello\n");
        let err = SystemExecutor
            .run(None, "sh", &["-c", "echo oops >&2; exit 3"], None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ExecError::Failed { status: Some(3), stderr, .. } if stderr == "oops\n"),
            "{err:?}"
        );
        let err = SystemExecutor
            .run(None, "/nonexistent/chaosforge-tool", &[], None)
            .await
            .unwrap_err();
        assert!(matches!(err, ExecError::Spawn { .. }), "{err:?}");
        let err = SystemExecutor
            .run(Some("-n"), "true", &[], None)
            .await
            .unwrap_err();
        assert!(matches!(err, ExecError::Refused { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn recording_executor_records_and_answers_from_its_script() {
        let exec = RecordingExecutor::new()
            .on("nft list", Answer::Ok("table inet x\n".into()))
            .once("nft delete", Answer::Fail(1, "gone".into()));
        let out = exec.run(Some("ns"), "nft", &["list", "tables"], None).await;
        assert_eq!(out.unwrap().stdout, "table inet x\n");
        assert!(exec.run(None, "nft", &["delete", "t"], None).await.is_err());
        // A `once` rule is used up; the default is success.
        assert!(exec.run(None, "nft", &["delete", "t"], None).await.is_ok());
        assert_eq!(
            exec.lines(),
            ["[ns] nft list tables", "nft delete t", "nft delete t"]
        );
    }
}
