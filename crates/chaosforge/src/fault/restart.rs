//! `restart`: restart a service with the user's command, then wait — bounded — until it is
//! ready again, and report how long that took.
//!
//! The command runs as `sh -c COMMAND` (it is the user's own shell line, e.g. `systemctl restart
//! api` or `docker restart db`), in a process group of its own so that a Ctrl-C meant for the
//! runner does not reach the service it starts, with `CHAOSFORGE_TARGET_PID` set to the target's
//! pid. Its output, and the output of anything it leaves running, goes to `restart-<n>.log` in
//! the run's directory: a file, not a pipe, so that a service started in the background never
//! dies of SIGPIPE when the runner ends.
//!
//! The restart must replace the target: once the command has exited 0, the old process must
//! be gone (within the timeout) before readiness is checked, or a check would pass against the
//! old process and the time to ready would mean nothing. Readiness is then polled every 100ms.
//! The command, the old process's exit and readiness share one `timeout`; past it, the
//! injection fails and says which step did not finish.
//!
//! Nothing is undone: the journal records [`RevertSpec::Nothing`], and the revert's note —
//! shown in the report — carries the measured times.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::params::Readiness;
use super::procfs::{ProcessId, start_time_of, state_of};
use super::{BoxError, Fault, FaultError, Guard, InjectCx, Revert, RevertSpec};
use crate::units::format_duration_short;

/// How often readiness is checked.
const POLL: Duration = Duration::from_millis(100);

/// The longest one readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// `restart`: run a command that restarts the target's service and wait until it is ready.
#[derive(Debug, Clone)]
pub struct RestartFault {
    /// Target name.
    pub target: String,
    /// The process the restart replaces.
    pub process: ProcessId,
    /// The shell command (`sh -c`).
    pub command: String,
    /// When the service counts as back.
    pub ready: Readiness,
    /// The longest the command, the old process's exit and readiness may take together.
    pub timeout: Duration,
}

/// The revert of a restart: nothing to undo, only the note with what was measured.
struct Measured(String);

// === impl RestartFault ===

#[async_trait]
impl Fault for RestartFault {
    fn kind(&self) -> &'static str {
        "restart"
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn inject(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        let log = cx
            .journal
            .path()
            .parent()
            .map(|d| d.join(format!("restart-{}.log", cx.id.0)))
            .unwrap_or_else(|| PathBuf::from(format!("restart-{}.log", cx.id.0)));
        cx.announce(
            &self.target,
            self.kind(),
            RevertSpec::Nothing {
                note: format!("restarted with `{}`", self.command),
            },
        )?;
        let note = self
            .restart(&log)
            .await
            .map_err(|message| FaultError::Apply {
                message: format!("{message} (output in {})", log.display()),
                // The restart may have half happened, but there is nothing chaosforge could undo.
                undone: true,
            })?;
        tracing::info!("{}: {note}", self.target);
        Ok(cx.guard(Box::new(Measured(note))))
    }
}

impl RestartFault {
    /// Runs the command, waits for the old process to go and for readiness; returns the note.
    async fn restart(&self, log: &std::path::Path) -> Result<String, String> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let limit = format_duration_short(self.timeout);
        let status = run_shell(&self.command, log, Some(self.process.pid), deadline)
            .await?
            .ok_or_else(|| format!("`{}` did not finish within {limit}", self.command))?;
        let ran = started.elapsed();
        if !status.success() {
            return Err(format!("`{}` failed ({status}){}", self.command, tail(log)));
        }
        let ProcessId { pid, start_time } = self.process;
        while start_time_of(pid) == Some(start_time) && state_of(pid) != Some('Z') {
            if Instant::now() >= deadline {
                return Err(format!(
                    "`{}` exited 0 but pid {pid} (the target) still runs after {limit}: the command did not restart it",
                    self.command
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        loop {
            let Err(last) = check(&self.ready, log, deadline).await else {
                break;
            };
            if Instant::now() + POLL >= deadline {
                return Err(format!(
                    "not ready within {limit} after `{}`: {} never held (last: {last})",
                    self.command,
                    self.ready.describe()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(format!(
            "restarted with `{}` (exit 0 after {}); pid {pid} replaced; ready ({}) {} after the restart began",
            self.command,
            format_duration_short(ran),
            self.ready.describe(),
            format_duration_short(started.elapsed())
        ))
    }
}

#[async_trait]
impl Revert for Measured {
    async fn revert(self: Box<Self>) -> Result<String, BoxError> {
        Ok(format!("nothing to undo: {}", self.0))
    }
}

/// Runs `sh -c command` (with `CHAOSFORGE_TARGET_PID` when given) with its output appended to
/// `log`; `None` if it was still running at `deadline` (it is then killed).
async fn run_shell(
    command: &str,
    log: &std::path::Path,
    target_pid: Option<i32>,
    deadline: Instant,
) -> Result<Option<std::process::ExitStatus>, String> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let mut cmd = tokio::process::Command::new("sh");
    if let Some(pid) = target_pid {
        cmd.env("CHAOSFORGE_TARGET_PID", pid.to_string());
    }
    let mut child = cmd
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run `sh -c {command}`: {e}"))?;
    match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(status) => status
            .map(Some)
            .map_err(|e| format!("waiting for `{command}`: {e}")),
        Err(_) => {
            // Only the shell: whatever it started may be the service itself.
            let _ = child.start_kill();
            let _ = child.wait().await;
            Ok(None)
        }
    }
}

/// One readiness check, bounded by [`CHECK_TIMEOUT`] and `deadline`.
async fn check(ready: &Readiness, log: &std::path::Path, deadline: Instant) -> Result<(), String> {
    let until = deadline.min(Instant::now() + CHECK_TIMEOUT);
    let timed_out = || "timed out".to_string();
    match ready {
        Readiness::Tcp(addr) => {
            match tokio::time::timeout_at(until, tokio::net::TcpStream::connect(addr.as_str()))
                .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(timed_out()),
            }
        }
        Readiness::Http(url) => {
            let client = reqwest::Client::builder()
                .timeout(until.saturating_duration_since(Instant::now()))
                .build()
                .map_err(|e| e.to_string())?;
            match client.get(url).send().await {
                Ok(r) if r.status().is_success() || r.status().is_redirection() => Ok(()),
                Ok(r) => Err(format!("status {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        }
        Readiness::Command(c) => match run_shell(c, log, None, until).await? {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(format!("`{c}` {s}")),
            None => Err(timed_out()),
        },
    }
}

/// The last lines of the command's output, for an error message.
fn tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let from = lines.len().saturating_sub(5);
    format!(": {}", lines[from..].join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(
        command: &str,
        ready: Readiness,
        timeout: Duration,
    ) -> (RestartFault, std::process::Child) {
        let victim = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = victim.id() as i32;
        let f = RestartFault {
            target: "svc".into(),
            process: ProcessId {
                pid,
                start_time: start_time_of(pid).unwrap(),
            },
            command: command.into(),
            ready,
            timeout,
        };
        (f, victim)
    }

    #[tokio::test]
    async fn a_restart_waits_for_the_old_process_then_for_readiness() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("ready");
        let (f, mut victim) = fault(
            &format!(
                "kill $CHAOSFORGE_TARGET_PID; (sleep 0.3; touch {}) &",
                flag.display()
            ),
            Readiness::Command(format!("test -f {}", flag.display())),
            Duration::from_secs(10),
        );
        let note = f.restart(&dir.path().join("log")).await.unwrap();
        let _ = victim.wait();
        assert!(flag.exists());
        assert!(note.contains("replaced"), "{note}");
        assert!(note.contains("`test -f"), "{note}");
    }

    #[tokio::test]
    async fn each_step_that_does_not_finish_in_time_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let short = Duration::from_millis(600);
        let (f, mut v) = fault(
            "echo boom >&2; exit 3",
            Readiness::Command("true".into()),
            short,
        );
        let err = f.restart(&log).await.unwrap_err();
        assert!(err.contains("failed") && err.contains("boom"), "{err}");
        let (f, mut w) = fault("sleep 5", Readiness::Command("true".into()), short);
        let err = f.restart(&log).await.unwrap_err();
        assert!(err.contains("did not finish within"), "{err}");
        let (f, mut x) = fault("true", Readiness::Command("true".into()), short);
        let err = f.restart(&log).await.unwrap_err();
        assert!(err.contains("still runs"), "{err}");
        let (f, mut y) = fault(
            "kill $CHAOSFORGE_TARGET_PID",
            Readiness::Command("false".into()),
            short,
        );
        let err = f.restart(&log).await.unwrap_err();
        assert!(
            err.contains("not ready within") && err.contains("`false` exits 0"),
            "{err}"
        );
        for c in [&mut v, &mut w, &mut x, &mut y] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
