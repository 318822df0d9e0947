//! The `process` provider, as chaoslib's `run_process_activity` (Python's `subprocess.run`).
//!
//! - `arguments` as a list is the argv after the path, `null` and `""` items dropped, other
//!   items as Python's `str()`; as a mapping it is flattened to `key value …` (no `--` added);
//!   as a string the command line `"{path} {arguments}"` runs with `/bin/sh -c` (`shell=True`).
//! - `timeout` (seconds, not substituted, as in chaoslib) kills the process (not its children,
//!   as `subprocess.run` kills only the child) and fails the activity.
//! - stdout and stderr are decoded as UTF-8; chaoslib guesses the encoding with
//!   charset-normalizer, which for UTF-8 text agrees; other bytes are replaced (U+FFFD) here.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;

use super::{Failure, failed};
use crate::ctk::config::Context;
use crate::ctk::model::{ProcessProvider, py_str};
use crate::ctk::validate::which;

/// Runs the process and returns `{status, stdout, stderr}`; `status` is negative (minus the
/// signal) when a signal ended it, as Python reports it.
///
/// # Errors
///
/// The timeout, and what Python would raise when the process cannot start.
pub async fn run(p: &ProcessProvider, cx: &Context) -> Result<Value, Failure> {
    let mut arguments = p.arguments.clone().unwrap_or(Value::Array(Vec::new()));
    if super::super::tolerance::py_truthy(&arguments) && !cx.is_empty() {
        arguments = cx.substitute(&arguments);
    }
    let expanded = expand_user(&p.path, cx);
    let path =
        which(&expanded, &cx.env).map_or_else(|| "None".to_owned(), |p| p.display().to_string());
    let mut cmd = match &arguments {
        Value::String(s) => {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c").arg(format!("{path} {s}"));
            c
        }
        other => {
            if path == "None" {
                return Err(Failure {
                    class: "TypeError",
                    message: format!(
                        "expected str, bytes or os.PathLike object, not NoneType (path '{}' not found)",
                        p.path
                    ),
                });
            }
            let mut c = tokio::process::Command::new(&path);
            c.args(argv(other)?);
            c
        }
    };
    cmd.envs(cx.env.overlay())
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| os_error(&e, &path))?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let timeout = match &p.timeout {
        Some(Value::Number(n)) => n.as_f64().map(|s| Duration::from_secs_f64(s.max(0.0))),
        _ => None,
    };
    // As `communicate`: read both pipes to their end and reap the child, all within the timeout.
    let work = async {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let read_o = async {
            if let Some(s) = out.as_mut() {
                let _ = s.read_to_end(&mut o).await;
            }
        };
        let read_e = async {
            if let Some(s) = err.as_mut() {
                let _ = s.read_to_end(&mut e).await;
            }
        };
        tokio::join!(read_o, read_e);
        let status = child.wait().await;
        (status, o, e)
    };
    let (status, stdout, stderr) = match timeout {
        Some(t) => match tokio::time::timeout(t, work).await {
            Ok(r) => r,
            // Dropping `work` drops the child, which `kill_on_drop` kills.
            Err(_) => return Err(failed("process activity took too long to complete")),
        },
        None => work.await,
    };
    let status = status.map_err(|e| os_error(&e, &path))?;
    let code = {
        use std::os::unix::process::ExitStatusExt as _;
        status
            .code()
            .or_else(|| status.signal().map(|s| -s))
            .unwrap_or(-1)
    };
    Ok(json!({
        "status": code,
        "stdout": String::from_utf8_lossy(&stdout),
        "stderr": String::from_utf8_lossy(&stderr),
    }))
}

/// The argv after the path, from list or mapping arguments.
fn argv(arguments: &Value) -> Result<Vec<String>, Failure> {
    let items: Vec<Value> = match arguments {
        Value::Array(a) => a.clone(),
        Value::Object(m) => m
            .iter()
            .flat_map(|(k, v)| [Value::String(k.clone()), v.clone()])
            .collect(),
        Value::Null => Vec::new(),
        other => {
            return Err(Failure {
                class: "TypeError",
                message: format!(
                    "'{}' object is not iterable",
                    crate::ctk::tolerance::py_type(other)
                ),
            });
        }
    };
    Ok(items
        .iter()
        .filter(|v| !(v.is_null() || v.as_str() == Some("")))
        .map(py_str)
        .collect())
}

/// `os.path.expanduser`: a leading `~` or `~/` is `$HOME`.
fn expand_user(path: &str, cx: &Context) -> String {
    match (path.strip_prefix('~'), cx.env.get("HOME")) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            format!("{home}{rest}")
        }
        _ => path.to_owned(),
    }
}

fn os_error(e: &std::io::Error, path: &str) -> Failure {
    let class = match e.kind() {
        std::io::ErrorKind::NotFound => "FileNotFoundError",
        std::io::ErrorKind::PermissionDenied => "PermissionError",
        _ => "OSError",
    };
    Failure {
        class,
        message: format!("[Errno {}] {e}: '{path}'", e.raw_os_error().unwrap_or(0)),
    }
}
