//! Faults: the [`Fault`] trait, the [`Guard`] of an injected fault, and the journaled undo data
//! ([`RevertSpec`]).
//!
//! # The fault contract
//!
//! Every fault kind, whatever it acts on:
//! 1. writes `Injecting` — with a [`RevertSpec`] holding everything needed to undo it — to the
//!    journal, durably, **before** its first change ([`InjectCx::announce`]);
//! 2. changes behaviour observably from outside;
//! 3. returns a [`Guard`]: `revert().await` restores behaviour and journals `Reverted`; a second
//!    revert is a no-op; dropping an unreverted guard reverts it in the background;
//! 4. can be undone by `chaosforge recover` from the journal alone, in a fresh process, after the
//!    runner was SIGKILLed ([`RevertSpec::revert_detached`]);
//! 5. if it cannot be undone, says so ([`Guard::irreversible`]) and is refused by the plan unless
//!    `policies.allow_irreversible` is set.
//!
//! One file per family: [`proxy`] (toxics on a TCP proxy), [`process`] (signals to a process,
//! its group or its cgroup), [`limits`] (`RLIMIT_NOFILE`/`RLIMIT_NPROC`), [`freeze`] (the cgroup
//! freezer), [`restart`] (a restart command and a readiness wait), [`stress`], [`host`],
//! [`container`] (Docker containers through the Engine API).

use std::fmt;

use async_trait::async_trait;

use crate::journal::{Event, FaultId, Journal, JournalError};

use crate::vocab::is_inet;

pub use crate::vocab::RevertSpec;

pub mod agent;
mod cgroupfs;
pub mod container;
pub mod freeze;
pub mod host;
pub mod http;
pub mod limits;
pub mod net;
pub mod params;
pub mod process;
pub(crate) mod procfs;
pub mod proxy;
pub mod remote;
pub mod restart;
pub mod stress;

/// An error a revert reports; kept as text in the journal.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A reversible change to how a target behaves.
#[async_trait]
pub trait Fault: fmt::Debug + Send + Sync {
    /// The kind users write (`latency`, `pause`, …).
    fn kind(&self) -> &'static str;

    /// The name of the target it acts on.
    fn target(&self) -> &str;

    /// Journals `Injecting` (with revert data) through [`InjectCx::announce`] **before**
    /// touching anything, applies the fault and returns its guard. On a partial failure it undoes
    /// what it did before returning the error; whatever it could not undo stays open in the
    /// journal for `recover`.
    async fn inject(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError>;
}

/// The undo half of a fault, as live code. Consumed by the revert.
#[async_trait]
pub trait Revert: Send + Sync {
    /// Undoes the fault. Idempotent with respect to the world: it may find the fault already
    /// gone. Returns a note for the journal ("SIGCONT sent", "process already gone").
    async fn revert(self: Box<Self>) -> Result<String, BoxError>;
}

/// Why a fault could not be injected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FaultError {
    /// The journal could not record the fault, so nothing was changed.
    #[error("cannot journal the fault, nothing injected: {0}")]
    Journal(#[from] JournalError),
    /// The target is not there or not usable.
    #[error("target `{target}`: {message}")]
    Target {
        /// The target.
        target: String,
        /// What is wrong.
        message: String,
    },
    /// Applying failed. `undone` says whether what was partly applied was undone; when it was
    /// not, the journal entry stays open for `recover`.
    #[error("injecting failed: {message}")]
    Apply {
        /// What went wrong.
        message: String,
        /// Whether nothing of it is left applied.
        undone: bool,
    },
}

/// Why a revert failed; the fault may still be active.
#[derive(Debug, thiserror::Error)]
#[error("reverting fault {id:?} failed: {message}")]
#[non_exhaustive]
pub struct RevertError {
    /// The fault instance.
    pub id: FaultId,
    /// What went wrong.
    pub message: String,
}

/// What a fault needs while injecting: the journal and who it is.
#[derive(Debug)]
pub struct InjectCx<'a> {
    /// The run's journal.
    pub journal: &'a Journal,
    /// This fault instance.
    pub id: FaultId,
    /// The fault's name in the plan.
    pub name: &'a str,
}

/// The live handle of an injected fault.
#[must_use = "dropping a Guard reverts the fault; call `revert().await` to see errors"]
pub struct Guard {
    id: FaultId,
    undo: Option<Box<dyn Revert>>,
    journal: Journal,
    irreversible: Option<String>,
}

// === impl InjectCx ===

impl InjectCx<'_> {
    /// Journals `Injecting` durably. Call before the first change; if it fails, change nothing.
    pub fn announce(&self, target: &str, kind: &str, revert: RevertSpec) -> Result<(), FaultError> {
        self.journal.append_durable(&Event::Injecting {
            fault: self.id,
            name: self.name.to_string(),
            target: target.to_string(),
            kind: kind.to_string(),
            revert,
            at: self.journal.now(),
        })?;
        Ok(())
    }

    /// A guard that reverts with `undo`.
    pub fn guard(&self, undo: Box<dyn Revert>) -> Guard {
        Guard {
            id: self.id,
            undo: Some(undo),
            journal: self.journal.clone(),
            irreversible: None,
        }
    }
}

// === impl Guard ===

impl Guard {
    /// A guard for a fault nothing can undo: reverting it journals that nothing was done.
    pub fn irreversible(cx: &InjectCx<'_>, reason: impl Into<String>) -> Guard {
        Guard {
            id: cx.id,
            undo: None,
            journal: cx.journal.clone(),
            irreversible: Some(reason.into()),
        }
    }

    /// The fault instance.
    pub fn id(&self) -> FaultId {
        self.id
    }

    /// Undoes the fault and journals the result (`Reverted` or `RevertFailed`).
    pub async fn revert(mut self) -> Result<(), RevertError> {
        let undo = self.undo.take();
        let irreversible = self.irreversible.take();
        run_revert(self.id, undo, irreversible, &self.journal, "run").await
    }

    /// Undoes the fault like [`Guard::revert`], journaling `by` as who reverted it (an agent's
    /// lease expiring journals `lease`).
    pub async fn revert_as(mut self, by: &str) -> Result<(), RevertError> {
        let undo = self.undo.take();
        let irreversible = self.irreversible.take();
        run_revert(self.id, undo, irreversible, &self.journal, by).await
    }

    /// Leaves the fault in place on purpose; `recover` will still find it in the journal.
    pub fn forget(mut self) -> FaultId {
        self.undo = None;
        self.irreversible = None;
        self.id
    }
}

async fn run_revert(
    id: FaultId,
    undo: Option<Box<dyn Revert>>,
    irreversible: Option<String>,
    journal: &Journal,
    by: &str,
) -> Result<(), RevertError> {
    let result = match (undo, irreversible) {
        (Some(u), _) => u.revert().await.map_err(|e| e.to_string()),
        (None, Some(reason)) => Ok(format!("irreversible, nothing to undo: {reason}")),
        (None, None) => return Ok(()),
    };
    let at = journal.now();
    match result {
        Ok(note) => journal
            .append_durable(&Event::Reverted {
                fault: id,
                by: by.into(),
                note: Some(note),
                at,
            })
            .map_err(|e| RevertError {
                id,
                message: format!("reverted, but the journal could not record it: {e}"),
            }),
        Err(message) => {
            let _ = journal.append_durable(&Event::RevertFailed {
                fault: id,
                error: message.clone(),
                at,
            });
            Err(RevertError { id, message })
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let (undo, irreversible) = (self.undo.take(), self.irreversible.take());
        if undo.is_none() && irreversible.is_none() {
            return;
        }
        let (id, journal) = (self.id, self.journal.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = run_revert(id, undo, irreversible, &journal, "drop").await {
                        tracing::error!("{e}; run `chaosforge recover`");
                    }
                });
            }
            // No runtime to revert on: the journal entry stays open and `recover` undoes it.
            Err(_) => {
                tracing::error!("fault {id:?} dropped outside a runtime; run `chaosforge recover`")
            }
        }
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("id", &self.id)
            .field("armed", &self.undo.is_some())
            .field("irreversible", &self.irreversible)
            .finish()
    }
}

// === impl RevertSpec ===

impl RevertSpec {
    /// Undoes the fault from this record alone (used by `chaosforge recover`). Idempotent.
    pub async fn revert_detached(&self) -> Result<String, BoxError> {
        match self {
            RevertSpec::InProcessToxics { target, .. } => Ok(format!(
                "proxy `{target}` ran inside the runner and ended with it; nothing left to undo"
            )),
            RevertSpec::RemoteAgent {
                url,
                fault_id,
                token_env,
                fingerprint,
            } => agent::revert_detached(url, fault_id, token_env, fingerprint.as_deref()).await,
            RevertSpec::RemoteToxics {
                api,
                proxy,
                toxics,
                reenable,
            } => remote::revert_detached(api, proxy, toxics, *reenable).await,
            RevertSpec::NftTable {
                netns,
                table,
                families,
            } if is_inet(families) => {
                host::partition::revert_nft_table(netns.as_deref(), table).await
            }
            RevertSpec::NftTable {
                netns,
                table,
                families,
            } => {
                let families: Vec<&str> = families.iter().map(String::as_str).collect();
                let n = host::nft::delete_tables(
                    &host::exec::SystemExecutor,
                    netns.as_deref(),
                    table,
                    &families,
                )
                .await?;
                Ok(format!("deleted {n} nft table(s) {table}"))
            }
            RevertSpec::Qdisc {
                netns,
                interface,
                egress,
                ifb,
            } => {
                host::netdeg::revert_qdisc(netns.as_deref(), interface, *egress, ifb.as_deref())
                    .await
            }
            RevertSpec::QueueChains {
                netns,
                chains,
                families,
            } => host::netdeg::revert_queue_chains(netns.as_deref(), chains, families).await,
            RevertSpec::Cgroup { path } => stress::revert_cgroup(path).await,
            RevertSpec::Ballast { path } => stress::revert_ballast(path).await,
            RevertSpec::CtkRollbacks {
                file,
                rollbacks,
                configuration,
                vars,
            } => crate::ctk::replay_rollbacks(file, rollbacks, configuration, vars).await,
            RevertSpec::ContainerUnpause { socket, id } => container::unpause(socket, id).await,
            RevertSpec::ContainerResources { socket, id, old } => {
                container::restore_limits(socket, id, old).await
            }
            RevertSpec::ContinueProcess { pid, start_time } => {
                process::continue_if_same(*pid, *start_time)
            }
            RevertSpec::RestoreLimit {
                pid,
                start_time,
                resource,
                soft,
                hard,
            } => limits::restore_if_same(
                process::ProcessId {
                    pid: *pid,
                    start_time: *start_time,
                },
                *resource,
                limits::Limits {
                    soft: *soft,
                    hard: *hard,
                },
            ),
            RevertSpec::Thaw { cgroup, v2, moved } => {
                freeze::thaw(cgroup, *v2, moved.as_ref()).await
            }
            RevertSpec::Nothing { note } => Ok(format!("nothing to undo: {note}")),
            RevertSpec::Irreversible { reason } => {
                Ok(format!("irreversible, nothing to undo: {reason}"))
            }
        }
    }
}
