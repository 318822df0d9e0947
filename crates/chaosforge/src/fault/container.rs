//! Docker containers as targets, through the Docker Engine API over its unix socket (bollard):
//! `pause` (reverted by unpause), `stop` and `kill` (irreversible), `restart` (nothing to
//! undo), `resource-limit` (`docker update`, reverted to the limits read before), and finding a
//! container's network namespace so that every host network fault (`fault::host`) acts inside
//! it unchanged.
//!
//! The namespace is given an `ip netns` name, `cf-ctr-<first 12 hex of the id>`, bind-mounted
//! from `/proc/PID/ns/net` (`ip netns attach`). The host faults and their `RevertSpec`s address
//! namespaces by that name, so `recover` reaches the same namespace after a crash even when the
//! container's pid has been reused; a name whose namespace is no longer the container's is
//! replaced when the container is resolved again.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::ContainerUpdateBody;
use bollard::query_parameters::{
    KillContainerOptions, ListContainersOptions, RestartContainerOptions, StopContainerOptions,
};

use super::cgroupfs;
use super::params::{ContainerAction, ContainerRef, ContainerSelector};
use super::{BoxError, Fault, FaultError, Guard, InjectCx, Revert, RevertSpec};
use crate::vocab::{CgroupFile, ContainerLimits};

/// The engine's socket when neither the target nor `DOCKER_HOST` names one.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The prefix of the `ip netns` names given to containers' network namespaces.
pub const NETNS_PREFIX: &str = "cf-ctr-";

/// How long one Engine API call may take (the engine's own `stop` grace period comes on top).
const API_TIMEOUT_S: u64 = 30;

/// A container as found when the run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerTarget {
    /// The engine's unix socket.
    pub socket: String,
    /// The full id.
    pub id: String,
    /// The name, without the leading `/`.
    pub name: String,
    /// Its init process's pid on this host (0 when it is not running).
    pub pid: i64,
    /// Whether it runs (a paused container runs).
    pub running: bool,
    /// The `ip netns` name this run gave its namespace ([`attach_netns`]), if it made one;
    /// [`release_netns`] removes it once nothing of the run needs it.
    pub attached: Option<String>,
}

/// A fault on a container through the Engine API.
#[derive(Debug, Clone)]
pub struct ContainerFault {
    /// Target name.
    pub target: String,
    /// The container.
    pub container: ContainerTarget,
    /// What is done to it.
    pub action: ContainerAction,
}

struct Unpause {
    socket: String,
    id: String,
}

struct RestoreLimits {
    socket: String,
    id: String,
    old: ContainerLimits,
}

struct Noted(String);

/// The socket to use: the target's, else `DOCKER_HOST` when it is `unix://PATH`, else
/// [`DEFAULT_SOCKET`].
pub fn socket_path(given: Option<&str>) -> String {
    if let Some(s) = given {
        return s.to_string();
    }
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => h.trim_start_matches("unix://").to_string(),
        _ => DEFAULT_SOCKET.to_string(),
    }
}

/// A client for the engine at `socket`, at the API version both sides speak (an older engine,
/// such as Debian's 20.10 with API 1.41, refuses requests for newer versions).
pub async fn connect(socket: &str) -> Result<Docker, String> {
    if !std::path::Path::new(socket).exists() {
        return Err(format!(
            "no Docker engine socket at {socket} (is dockerd running? set `socket:` or DOCKER_HOST=unix://PATH)"
        ));
    }
    let docker = Docker::connect_with_unix(socket, API_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
        .map_err(|e| format!("cannot use the Docker engine socket {socket}: {e}"))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| format!("the Docker engine at {socket} does not answer: {e}"))
}

/// Finds the container `sel` names: exactly one, by name, id (prefix) or label.
pub async fn find(sel: &ContainerSelector) -> Result<ContainerTarget, String> {
    let socket = socket_path(sel.socket.as_deref());
    let docker = connect(&socket).await?;
    let key = match &sel.by {
        ContainerRef::Name(n) => n.clone(),
        ContainerRef::Id(i) => i.clone(),
        ContainerRef::Label(l) => {
            let filters = HashMap::from([("label".to_string(), vec![l.clone()])]);
            let found = docker
                .list_containers(Some(ListContainersOptions {
                    all: false,
                    filters: Some(filters),
                    ..Default::default()
                }))
                .await
                .map_err(|e| format!("listing containers with label `{l}`: {e}"))?;
            let ids: Vec<String> = found.into_iter().filter_map(|c| c.id).collect();
            match ids.as_slice() {
                [one] => one.clone(),
                [] => return Err(format!("no running container has label `{l}`")),
                many => {
                    return Err(format!(
                        "{} running containers have label `{l}`; a target is one container",
                        many.len()
                    ));
                }
            }
        }
    };
    inspect(&docker, &socket, &key).await
}

async fn inspect(docker: &Docker, socket: &str, key: &str) -> Result<ContainerTarget, String> {
    let c = docker
        .inspect_container(key, None)
        .await
        .map_err(|e| format!("container `{key}`: {}", api_message(&e)))?;
    let state = c.state.unwrap_or_default();
    Ok(ContainerTarget {
        socket: socket.to_string(),
        id: c.id.unwrap_or_default(),
        name: c
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        pid: state.pid.unwrap_or(0),
        running: state.running.unwrap_or(false),
        attached: None,
    })
}

/// The `ip netns` name of container `id`'s network namespace.
pub fn netns_name(id: &str) -> String {
    let short: String = id.chars().take(12).collect();
    format!("{NETNS_PREFIX}{short}")
}

/// Gives the running container's network namespace its `ip netns` name (see the module doc)
/// and returns the name, recording it in `c.attached` when this call made it. A name already
/// there is kept when it is the same namespace, and replaced when it is not (the container
/// restarted into a new one).
pub async fn attach_netns(c: &mut ContainerTarget) -> Result<String, String> {
    if !c.running || c.pid <= 0 {
        return Err(format!(
            "container `{}` is not running, so it has no network namespace",
            c.name
        ));
    }
    // Only hex ids make names: anything else could reach outside /run/netns.
    if c.id.len() < 12 || !c.id.chars().all(|ch| ch.is_ascii_hexdigit()) {
        return Err(format!(
            "container `{}` has an unexpected id `{}`",
            c.name, c.id
        ));
    }
    let name = netns_name(&c.id);
    let ns_of = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let theirs = ns_of(&format!("/proc/{}/ns/net", c.pid))
        .map_err(|e| format!("container `{}` (pid {}): {e}", c.name, c.pid))?;
    let path = format!("/run/netns/{name}");
    match ns_of(&path) {
        Ok(ours) if ours == theirs => return Ok(name),
        Ok(_) => ip(&["netns", "delete", &name]).await?,
        Err(_) => {}
    }
    ip(&["netns", "attach", &name, &c.pid.to_string()]).await?;
    c.attached = Some(name.clone());
    Ok(name)
}

/// Removes the `ip netns` name [`attach_netns`] made for `c`: only the name (a bind mount), never
/// the namespace, which is the container's. Call it only when nothing open in any journal names
/// it: `recover` would take a missing name for a namespace that is gone.
pub async fn release_netns(c: &ContainerTarget) -> Result<(), String> {
    match &c.attached {
        Some(name) if name.starts_with(NETNS_PREFIX) => ip(&["netns", "delete", name]).await,
        _ => Ok(()),
    }
}

/// Removes the `ip netns` name `name` (a bind mount only, never the namespace): what
/// `recover` does once a dead run's faults in it are reverted. A name already gone is success.
pub async fn delete_netns_name(name: &str) -> Result<(), String> {
    if !name.starts_with(NETNS_PREFIX) || !Path::new("/run/netns").join(name).exists() {
        return Ok(());
    }
    ip(&["netns", "delete", name]).await
}

async fn ip(args: &[&str]) -> Result<(), String> {
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new("ip")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("`ip {}` did not finish within 10s", args.join(" ")))?
    .map_err(|e| format!("cannot run `ip` (is iproute2 installed?): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The engine's own message for an error it answered with, else the error.
fn api_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (HTTP {status_code})"),
        other => other.to_string(),
    }
}

fn is_status(e: &bollard::errors::Error, code: u16) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code, .. } if *status_code == code)
}

fn says(e: &bollard::errors::Error, what: &str) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { message, .. } if message.contains(what))
}

/// Unpauses container `id`: what a `pause`'s revert and `recover` do. A container that is not
/// paused (unpaused already, restarted) or gone is success.
pub async fn unpause(socket: &str, id: &str) -> Result<String, BoxError> {
    let docker = connect(socket).await?;
    match docker.unpause_container(id).await {
        Ok(()) => Ok(format!("container {} unpaused", short(id))),
        Err(e) if is_status(&e, 404) => Ok(format!("container {} is gone", short(id))),
        Err(e) if says(&e, "is not paused") || says(&e, "is not running") => {
            Ok(format!("container {} was not paused any more", short(id)))
        }
        Err(e) => Err(format!("unpausing container {}: {}", short(id), api_message(&e)).into()),
    }
}

/// Sets container `id`'s limits back to `old`: what a `resource-limit`'s revert and `recover`
/// do. The cgroup files written past the engine get their old content first, then the engine
/// its old `HostConfig` values. Setting the same values twice changes nothing; a gone container
/// (its cgroup removed with it) is success.
pub async fn restore_limits(
    socket: &str,
    id: &str,
    old: &ContainerLimits,
) -> Result<String, BoxError> {
    for f in old.cgroup.iter().rev() {
        // The path comes from the journal: a damaged one must not point a write elsewhere.
        if !cgroupfs::is_cgroup_path(&f.path) {
            return Err(
                format!("refusing to write {}: not a cgroup file", f.path.display()).into(),
            );
        }
        match tokio::fs::write(&f.path, &f.old).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(
                    format!("writing `{}` back to {}: {e}", f.old, f.path.display()).into(),
                );
            }
        }
    }
    // Only values that were limits before are given to the engine (0 there means
    // "unchanged"), so it ends with exactly the `HostConfig` it had.
    let body = ContainerUpdateBody {
        nano_cpus: old.nano_cpus.filter(|n| *n > 0),
        cpu_quota: old.cpu_quota.filter(|q| *q > 0),
        cpu_period: old.cpu_period.filter(|p| *p > 0),
        memory: old.memory.filter(|m| *m > 0),
        memory_swap: old.memory_swap.filter(|s| *s != 0),
        ..Default::default()
    };
    if body == ContainerUpdateBody::default() {
        return Ok(format!(
            "container {} limits set back to {}",
            short(id),
            describe_limits(old)
        ));
    }
    let docker = connect(socket).await?;
    match docker.update_container(id, body).await {
        Ok(()) => Ok(format!(
            "container {} limits set back to {}",
            short(id),
            describe_limits(old)
        )),
        Err(e) if is_status(&e, 404) => Ok(format!("container {} is gone", short(id))),
        Err(e) => Err(format!(
            "setting container {}'s limits back: {}",
            short(id),
            api_message(&e)
        )
        .into()),
    }
}

/// The cgroup directory of `pid` holding `controller` (`cpu`, `memory`), and whether it is in
/// the unified (v2) hierarchy: the v1 hierarchy with that controller when one is mounted, else
/// the unified one.
fn cgroup_dir(pid: i64, controller: &str) -> Result<(PathBuf, bool), String> {
    let pid = i32::try_from(pid).map_err(|_| format!("pid {pid} is not a process id"))?;
    let mounts = cgroupfs::mounts().map_err(|e| format!("cannot read the mounts: {e}"))?;
    let mount = mounts
        .iter()
        .find(|m| m.has(controller))
        .or_else(|| mounts.iter().find(|m| m.v2))
        .ok_or_else(|| {
            format!("no cgroup hierarchy with the {controller} controller is mounted")
        })?;
    Ok((mount.cgroup_of(pid)?, mount.v2))
}

fn read_trim(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("reading {}: {e}", p.display()))
}

fn describe_limits(l: &ContainerLimits) -> String {
    let mut parts = Vec::new();
    if let Some(n) = l.nano_cpus {
        parts.push(format!("NanoCpus={n}"));
    }
    if let Some(q) = l.cpu_quota {
        parts.push(format!("CpuQuota={q}"));
    }
    if let Some(p) = l.cpu_period {
        parts.push(format!("CpuPeriod={p}"));
    }
    if let Some(m) = l.memory {
        parts.push(format!("Memory={m}"));
    }
    if let Some(s) = l.memory_swap {
        parts.push(format!("MemorySwap={s}"));
    }
    for f in &l.cgroup {
        parts.push(format!("{}={}", f.path.display(), f.old));
    }
    parts.join(" ")
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

// === impl ContainerFault ===

impl ContainerFault {
    fn target_err(&self, message: impl Into<String>) -> FaultError {
        FaultError::Target {
            target: self.target.clone(),
            message: message.into(),
        }
    }

    /// The change `Limit` makes and the old values it must restore, from the container's
    /// current `HostConfig`: the engine's update body, and the cgroup files (with their new
    /// content) for limits the engine could not lift again.
    async fn plan_limits(
        &self,
        docker: &Docker,
        nano_cpus: Option<i64>,
        memory: Option<i64>,
    ) -> Result<(ContainerUpdateBody, Vec<(PathBuf, String)>, ContainerLimits), FaultError> {
        let c = &self.container;
        let hc = docker
            .inspect_container(&c.id, None)
            .await
            .map_err(|e| self.target_err(api_message(&e)))?
            .host_config
            .unwrap_or_default();
        let mut body = ContainerUpdateBody::default();
        let mut files = Vec::new();
        let mut old = ContainerLimits::default();
        let mut direct = |path: PathBuf, new: String, old: &mut ContainerLimits| {
            let before = read_trim(&path).map_err(|m| self.target_err(m))?;
            old.cgroup.push(CgroupFile {
                path: path.clone(),
                old: before,
            });
            files.push((path, new));
            Ok::<(), FaultError>(())
        };
        if let Some(n) = nano_cpus {
            let old_nano = hc.nano_cpus.unwrap_or(0);
            let old_quota = hc.cpu_quota.unwrap_or(0);
            let old_period = hc.cpu_period.unwrap_or(0);
            let quota_of = |period: i64| {
                ((i128::from(n) * i128::from(period) / 1_000_000_000) as i64).max(1000)
            };
            if old_nano > 0 {
                // Already limited by `--cpus`: lower that, and give the same number back.
                body.nano_cpus = Some(n);
                old.nano_cpus = Some(old_nano);
            } else if old_quota > 0 {
                // Limited by `--cpu-quota`: lower the quota within the period it has (the
                // kernel's 100ms when `CpuPeriod` is 0), which stays untouched.
                let period = if old_period > 0 { old_period } else { 100_000 };
                body.cpu_quota = Some(quota_of(period));
                old.cpu_quota = Some(old_quota);
            } else {
                // No CPU limit: the quota goes into the cgroup directly, because the engine
                // cannot lift a limit again (0 means "unchanged"); its `HostConfig` stays as is.
                let (dir, unified) = cgroup_dir(c.pid, "cpu").map_err(|m| self.target_err(m))?;
                if unified {
                    let path = dir.join("cpu.max");
                    let now = read_trim(&path).map_err(|m| self.target_err(m))?;
                    let period = now
                        .split_whitespace()
                        .nth(1)
                        .and_then(|p| p.parse::<i64>().ok())
                        .filter(|p| *p > 0)
                        .unwrap_or(100_000);
                    direct(path, format!("{} {period}", quota_of(period)), &mut old)?;
                } else {
                    let period = read_trim(&dir.join("cpu.cfs_period_us"))
                        .ok()
                        .and_then(|p| p.parse::<i64>().ok())
                        .filter(|p| *p > 0)
                        .unwrap_or(100_000);
                    direct(
                        dir.join("cpu.cfs_quota_us"),
                        quota_of(period).to_string(),
                        &mut old,
                    )?;
                }
            }
        }
        if let Some(m) = memory {
            let old_mem = hc.memory.unwrap_or(0);
            if old_mem > 0 {
                let old_swap = hc.memory_swap.unwrap_or(0);
                body.memory = Some(m);
                old.memory = Some(old_mem);
                if old_swap > 0 && m > old_swap {
                    body.memory_swap = Some(m);
                }
                old.memory_swap = Some(old_swap);
            } else {
                // No memory limit: the engine cannot lift one again (it refuses -1, and 0 means
                // "unchanged"), so the limit goes into the cgroup and `max` / -1 comes back.
                let (dir, unified) = cgroup_dir(c.pid, "memory").map_err(|m| self.target_err(m))?;
                let file = if unified {
                    "memory.max"
                } else {
                    "memory.limit_in_bytes"
                };
                direct(dir.join(file), m.to_string(), &mut old)?;
            }
        }
        Ok((body, files, old))
    }

    /// Waits until the container runs again, at most `timeout`.
    async fn wait_running(&self, docker: &Docker, timeout: Duration) -> Result<(), String> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let c = inspect(docker, &self.container.socket, &self.container.id).await?;
            if c.running {
                return Ok(());
            }
            if tokio::time::Instant::now() >= until {
                return Err(format!(
                    "container `{}` did not run again within {timeout:?}",
                    self.container.name
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[async_trait]
impl Fault for ContainerFault {
    fn kind(&self) -> &'static str {
        match self.action {
            ContainerAction::Pause => "pause",
            ContainerAction::Stop { .. } => "stop",
            ContainerAction::Kill { .. } => "kill",
            ContainerAction::Restart { .. } => "restart",
            ContainerAction::Limit { .. } => "resource-limit",
        }
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn inject(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        let c = &self.container;
        let docker = connect(&c.socket).await.map_err(|m| self.target_err(m))?;
        let apply = |e: bollard::errors::Error, what: &str| FaultError::Apply {
            message: format!("{what} container `{}`: {}", c.name, api_message(&e)),
            // The engine either did it or did not; a failed call leaves nothing to undo.
            undone: true,
        };
        let secs = |d: &Duration| i32::try_from(d.as_secs()).unwrap_or(i32::MAX);
        match &self.action {
            ContainerAction::Pause => {
                cx.announce(
                    &self.target,
                    self.kind(),
                    RevertSpec::ContainerUnpause {
                        socket: c.socket.clone(),
                        id: c.id.clone(),
                    },
                )?;
                docker
                    .pause_container(&c.id)
                    .await
                    .map_err(|e| apply(e, "pausing"))?;
                Ok(cx.guard(Box::new(Unpause {
                    socket: c.socket.clone(),
                    id: c.id.clone(),
                })))
            }
            ContainerAction::Stop { timeout } => {
                let reason = format!("container `{}` ({}) stopped", c.name, short(&c.id));
                cx.announce(
                    &self.target,
                    self.kind(),
                    RevertSpec::Irreversible {
                        reason: reason.clone(),
                    },
                )?;
                docker
                    .stop_container(
                        &c.id,
                        Some(StopContainerOptions {
                            t: Some(secs(timeout)),
                            signal: None,
                        }),
                    )
                    .await
                    .map_err(|e| apply(e, "stopping"))?;
                Ok(Guard::irreversible(cx, reason))
            }
            ContainerAction::Kill { signal } => {
                let reason = format!("{signal} sent to container `{}` ({})", c.name, short(&c.id));
                cx.announce(
                    &self.target,
                    self.kind(),
                    RevertSpec::Irreversible {
                        reason: reason.clone(),
                    },
                )?;
                docker
                    .kill_container(
                        &c.id,
                        Some(KillContainerOptions {
                            signal: signal.clone(),
                        }),
                    )
                    .await
                    .map_err(|e| apply(e, "killing"))?;
                Ok(Guard::irreversible(cx, reason))
            }
            ContainerAction::Restart { timeout } => {
                cx.announce(
                    &self.target,
                    self.kind(),
                    RevertSpec::Nothing {
                        note: format!("container `{}` restarted by the engine", c.name),
                    },
                )?;
                let started = tokio::time::Instant::now();
                docker
                    .restart_container(
                        &c.id,
                        Some(RestartContainerOptions {
                            t: Some(secs(timeout)),
                            signal: None,
                        }),
                    )
                    .await
                    .map_err(|e| apply(e, "restarting"))?;
                self.wait_running(&docker, *timeout)
                    .await
                    .map_err(|message| FaultError::Apply {
                        message,
                        undone: true,
                    })?;
                let note = format!(
                    "container `{}` restarted and running again after {}ms",
                    c.name,
                    started.elapsed().as_millis()
                );
                Ok(cx.guard(Box::new(Noted(note))))
            }
            ContainerAction::Limit { nano_cpus, memory } => {
                let (body, files, old) = self.plan_limits(&docker, *nano_cpus, *memory).await?;
                cx.announce(
                    &self.target,
                    self.kind(),
                    RevertSpec::ContainerResources {
                        socket: c.socket.clone(),
                        id: c.id.clone(),
                        old: old.clone(),
                    },
                )?;
                if body != ContainerUpdateBody::default() {
                    docker
                        .update_container(&c.id, body)
                        .await
                        .map_err(|e| apply(e, "updating the limits of"))?;
                }
                for (path, new) in &files {
                    if let Err(e) = tokio::fs::write(path, new).await {
                        let undone = restore_limits(&c.socket, &c.id, &old).await.is_ok();
                        return Err(FaultError::Apply {
                            message: format!(
                                "writing {new} to {} for container `{}`: {e}",
                                path.display(),
                                c.name
                            ),
                            undone,
                        });
                    }
                }
                Ok(cx.guard(Box::new(RestoreLimits {
                    socket: c.socket.clone(),
                    id: c.id.clone(),
                    old,
                })))
            }
        }
    }
}

#[async_trait]
impl Revert for Unpause {
    async fn revert(self: Box<Self>) -> Result<String, BoxError> {
        unpause(&self.socket, &self.id).await
    }
}

#[async_trait]
impl Revert for RestoreLimits {
    async fn revert(self: Box<Self>) -> Result<String, BoxError> {
        restore_limits(&self.socket, &self.id, &self.old).await
    }
}

#[async_trait]
impl Revert for Noted {
    async fn revert(self: Box<Self>) -> Result<String, BoxError> {
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_names_are_the_id_prefix() {
        assert_eq!(
            netns_name("0f0a0f7bc515fa5d5d04b1d24eb2f20f026a3330cadaa424237690095b1bdd43"),
            "cf-ctr-0f0a0f7bc515"
        );
    }

    #[test]
    fn a_given_socket_wins() {
        assert_eq!(socket_path(Some("/run/x.sock")), "/run/x.sock");
    }
}
