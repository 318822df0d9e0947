//! The run's claims (`crate::claims`), taken first thing in the validate phase — before any
//! proxy binds its address, any probe starts or any fault is injected — and held until the run
//! has finished (they live in `Run`, dropped last). Taking them before the proxies start means a
//! second run on the same listen address is refused naming the holder, instead of failing to
//! bind.
//!
//! What is claimed, from the plan and a look at the world (the pid a selector names now, a host's
//! interface): every proxy's listen address (except port 0, a fresh port each time), and for
//! each target a fault acts on, the target itself (`process:PID@START`, `host:…`,
//! `remote-proxy:…`) and the kernel resources its faults change: the qdisc of a host's
//! interface per direction (netem, htb), its NFQUEUE handler, the cgroup a freeze or a cgroup
//! kill acts on, the process group of a group kill.
//!
//! Also how a run notices a halt request (`crate::halt`): its file, checked when a nudge comes
//! and on every tick.

use std::time::Duration;

use tokio::time::Instant;

use super::{Engine, Run, errored};
use crate::claims::{Claim, ClaimError};
use crate::journal::Event;
use crate::plan::{FaultKind, KillReach, Mechanism, NetDirection, Plan, TargetKind};
use crate::vocab::{Outcome, Phase};

/// What a run does when another run holds one of its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClaimWait {
    /// Refuse to run (an error in the validate phase: exit 2), naming the holder.
    #[default]
    Refuse,
    /// Wait until they are free, at most this long (`None`: as long as it takes), then refuse.
    /// A halt or a signal ends the wait.
    Wait(Option<Duration>),
}

/// How often a waiting run tries again.
const RETRY: Duration = Duration::from_millis(50);

/// Every claim of `plan`.
pub async fn resources(plan: &Plan) -> Vec<Claim> {
    let mut out = Vec::new();
    for t in &plan.targets {
        let faults: Vec<&FaultKind> = plan
            .faults
            .iter()
            .filter(|f| f.targets.contains(&t.name))
            .map(|f| &f.kind)
            .collect();
        let mut add = |resource: String| {
            out.push(Claim {
                resource,
                target: t.name.clone(),
            })
        };
        // A target on an agent's host: the agent holds its kernel resources; claim it by the
        // agent's address, so two runs on this machine do not drive the same remote target.
        if let Some(a) = &t.agent {
            add(match &t.kind {
                TargetKind::Host { netns, .. } => format!(
                    "agent:{}/host:{}",
                    a.url,
                    netns.as_deref().unwrap_or("local")
                ),
                TargetKind::Process(sel) => format!("agent:{}/process:{sel:?}", a.url),
                _ => format!("agent:{}/{}", a.url, t.name),
            });
            continue;
        }
        match &t.kind {
            TargetKind::Proxy { listen, .. } | TargetKind::HttpProxy { listen, .. } => {
                if !listen.ends_with(":0") {
                    add(format!("listen:{listen}"));
                }
            }
            _ if faults.is_empty() => {}
            TargetKind::RemoteProxy { api, name } => add(format!("remote-proxy:{api}/{name}")),
            TargetKind::Process(sel) => {
                // A target that cannot be found now is refused by the validate phase itself.
                let Ok(p) = crate::fault::process::resolve(sel) else {
                    continue;
                };
                add(format!("process:{}@{}", p.pid, p.start_time));
                for k in &faults {
                    match k {
                        FaultKind::Freeze { .. }
                        | FaultKind::Kill {
                            reach: KillReach::Cgroup,
                            ..
                        } => {
                            if let Some(c) = cgroup_key(p.pid) {
                                add(c);
                            }
                        }
                        FaultKind::Kill {
                            reach: KillReach::Group,
                            ..
                        } => {
                            if let Some(pg) = rustix::process::Pid::from_raw(p.pid)
                                .and_then(|pid| rustix::process::getpgid(Some(pid)).ok())
                            {
                                add(format!("pgid:{}", pg.as_raw_nonzero()));
                            }
                        }
                        _ => {}
                    }
                }
            }
            TargetKind::Container(sel) => {
                // By full id, however the file names it; a container that cannot be found now
                // is refused by the validate phase itself.
                if let Ok(c) = crate::fault::container::find(sel).await {
                    add(format!("container:{}", c.id));
                }
            }
            TargetKind::Host { netns, interface } => {
                let ns = netns.as_deref().unwrap_or("local");
                add(match netns {
                    Some(n) => format!("host:netns={n}"),
                    None => "host:local".into(),
                });
                for k in &faults {
                    let FaultKind::Network {
                        mechanism,
                        direction,
                        ..
                    } = k
                    else {
                        continue;
                    };
                    match mechanism {
                        Some(Mechanism::Netem | Mechanism::Htb) => {
                            let iface = match interface {
                                Some(i) => i.clone(),
                                None => crate::host_target::resolve(netns.as_deref(), None)
                                    .await
                                    .ok()
                                    .and_then(|h| h.interface)
                                    .unwrap_or_else(|| "default".into()),
                            };
                            if matches!(direction, NetDirection::Egress | NetDirection::Both) {
                                add(format!("qdisc:{ns}/{iface}/egress"));
                            }
                            if matches!(direction, NetDirection::Ingress | NetDirection::Both) {
                                add(format!("qdisc:{ns}/{iface}/ingress"));
                            }
                        }
                        Some(Mechanism::Nfqueue) => add(format!("nfqueue:{ns}")),
                        Some(Mechanism::NftDup) | None => {}
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.resource == b.resource);
    out
}

/// The cgroups `pid` is in, as one key; `None` in the root cgroup everywhere (a freeze then
/// makes a cgroup of its own, so there is nothing shared to claim).
fn cgroup_key(pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let paths: Vec<&str> = text
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .collect();
    if paths.iter().all(|p| *p == "/") {
        return None;
    }
    Some(format!("cgroup:{}", text.trim().replace('\n', ";")))
}

// === impl Run ===

impl Run<'_> {
    /// Takes the plan's claims into `self.claims` and journals them, waiting as `engine` says;
    /// the outcome when the run must end instead.
    pub(super) async fn claim(&mut self, engine: &Engine) -> Result<(), Outcome> {
        let claims = resources(self.plan).await;
        let holder = crate::claims::holder_here(self.run_id.clone(), &self.plan.name);
        let started = Instant::now();
        let mut waited = false;
        loop {
            let (dir, h, c) = (engine.state_dir.clone(), holder.clone(), claims.clone());
            // File locks and small writes: off the async threads.
            let tried =
                tokio::task::spawn_blocking(move || crate::claims::acquire(&dir, &h, &c)).await;
            let err = match tried {
                Ok(Ok(guard)) => {
                    self.claims = Some(guard);
                    let _ = self.journal.append_durable(&Event::Claimed {
                        holder,
                        claims,
                        waited: waited.then(|| started.elapsed()),
                        at: self.journal.now(),
                    });
                    return Ok(());
                }
                Ok(Err(e)) => e,
                Err(e) => {
                    return Err(errored(
                        Phase::Validate,
                        format!("cannot take the claims: {e}"),
                    ));
                }
            };
            let limit = match (&err, engine.claim_wait) {
                (ClaimError::Held { .. }, ClaimWait::Wait(limit)) => limit,
                (ClaimError::Held { holder, .. }, ClaimWait::Refuse) => {
                    let hint = holder.as_ref().map_or_else(String::new, |h| {
                        format!(", or halt it with `chaosforge halt {}`", h.run_id.0)
                    });
                    return Err(errored(
                        Phase::Validate,
                        format!(
                            "{err}; nothing was injected (wait for it with \
                             --wait-for-targets{hint})"
                        ),
                    ));
                }
                _ => {
                    return Err(errored(
                        Phase::Validate,
                        format!("cannot take the claims: {err}"),
                    ));
                }
            };
            if let Some(l) = limit
                && started.elapsed() >= l
            {
                return Err(errored(
                    Phase::Validate,
                    format!(
                        "{err} still after waiting {}; nothing was injected",
                        crate::units::format_duration(l)
                    ),
                ));
            }
            if !waited {
                tracing::warn!("waiting for targets: {err}");
                waited = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                changed = self.shutdown.changed(), if !self.signals_gone => match changed {
                    Ok(()) if *self.shutdown.borrow() => self.interrupted = true,
                    Ok(()) => {}
                    Err(_) => self.signals_gone = true,
                },
                _ = crate::halt::nudged(&mut self.halt_nudges) => {}
            }
            if self.interrupted || self.halt_requested() {
                return Err(self.halt_by_signal());
            }
        }
    }

    /// Whether a halt was asked for this run (its request file exists), or `recover` took its
    /// faults over (`crate::deadman`); remembers which.
    pub(super) fn halt_requested(&mut self) -> bool {
        if let Some(dir) = self.journal.path().parent() {
            if self.halt.is_none() {
                self.halt = crate::halt::requested(dir);
            }
            if self.taken.is_none() {
                self.taken = crate::deadman::taken_over(dir);
            }
        }
        self.halt.is_some() || self.taken.is_some()
    }
}
