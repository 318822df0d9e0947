//! `chaosforge recover`: revert every fault that a dead run left open, from the journals alone.
//!
//! Runs that are still alive (their lock is held) are skipped: their runner is in charge of its
//! faults. A dead run's journal is appended to (`Reverted { by: "recover" }`, then
//! `RunFinished` if it never finished), so a second `recover` finds nothing to do.
//!
//! A run whose lock is still held but whose heartbeat is older than its timeout
//! ([`crate::deadman`]: the runner is stopped, deadlocked or frozen) is not in charge of its
//! faults either: `recover` takes it over (the takeover record first, then `Halted { policy:
//! "deadman" }`), reverts its open faults the same way and closes its journal with
//! `Halted { reason: "recovered: runner stopped heartbeating (last beat 6.2s ago)" }`. The runner
//! itself is left alone — killing a process that may only be slow is not ours to do; if it
//! wakes up, it finds the takeover and halts without injecting again. A stuck run with no open
//! fault is left alone too: there is nothing to revert, and its runner may yet finish.
//! `chaosforge recover --watch` calls [`recover`] on an interval.
//!
//! Then the claims of dead runs are deleted (`crate::claims::sweep`): their locks died with
//! their runners, so they block nobody, but a claim file left behind would still be listed.

use std::path::Path;

use crate::journal::{self, Event, Journal, JournalError};
use crate::vocab::{FaultId, Outcome, Phase, RevertSpec, RunId};

/// One fault `recover` dealt with.
#[derive(Debug, Clone)]
pub struct RecoveredFault {
    /// The run it belonged to.
    pub run: RunId,
    /// The fault instance.
    pub fault: FaultId,
    /// Fault name.
    pub name: String,
    /// Target name.
    pub target: String,
    /// What was done, or the error.
    pub result: Result<String, String>,
}

/// What `recover` did.
#[derive(Debug, Default)]
pub struct RecoverSummary {
    /// Faults reverted (or failed to revert).
    pub faults: Vec<RecoveredFault>,
    /// Unfinished runs whose journal was closed.
    pub closed_runs: Vec<RunId>,
    /// Live runs with open faults, left to their runner.
    pub live_runs: Vec<RunId>,
    /// Runs that stopped heartbeating and were taken over, with why.
    pub stuck_runs: Vec<(RunId, String)>,
    /// Runs whose journal could not be read or written, with the error.
    pub failed_runs: Vec<(RunId, String)>,
    /// Claims of dead runs that were deleted.
    pub freed_claims: Vec<crate::claims::ClaimRecord>,
    /// Why the claims could not be swept, if they could not.
    pub claims_error: Option<String>,
}

impl RecoverSummary {
    /// `true` when there was nothing to do and nothing left undone.
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
            && self.closed_runs.is_empty()
            && self.live_runs.is_empty()
            && self.stuck_runs.is_empty()
            && self.failed_runs.is_empty()
            && self.freed_claims.is_empty()
            && self.claims_error.is_none()
    }

    /// `true` when a revert failed or a run could not be handled.
    pub fn has_failures(&self) -> bool {
        self.faults.iter().any(|f| f.result.is_err())
            || !self.failed_runs.is_empty()
            || self.claims_error.is_some()
    }
}

/// Reverts every open fault of every dead run under `state_dir`. Idempotent.
///
/// One unreadable run does not stop the others: it is listed in `failed_runs`.
pub async fn recover(state_dir: &Path) -> Result<RecoverSummary, JournalError> {
    let mut summary = RecoverSummary::default();
    for run in journal::runs(state_dir)? {
        if let Err(e) = recover_run(&run, &mut summary).await {
            summary.failed_runs.push((run.id.clone(), e.to_string()));
        }
    }
    // After the reverts: a run's claims go only once what it injected is undone.
    match crate::claims::sweep(state_dir) {
        Ok(freed) => summary.freed_claims = freed,
        Err(e) => summary.claims_error = Some(e.to_string()),
    }
    Ok(summary)
}

async fn recover_run(
    run: &journal::RunDir,
    summary: &mut RecoverSummary,
) -> Result<(), JournalError> {
    let path = run.dir.join("journal.jsonl");
    // A first look without the lock, only to skip finished runs cheaply.
    let events = journal::read(&path)?;
    let finished = events
        .iter()
        .any(|e| matches!(e, Event::RunFinished { .. }));
    if finished && journal::open_faults(&events).is_empty() {
        return Ok(());
    }
    let Some(j) = Journal::open_dead(&run.dir)? else {
        if journal::open_faults(&events).is_empty() {
            return Ok(());
        }
        let age = crate::deadman::read(&run.dir)
            .and_then(|beat| crate::deadman::overdue(&beat, jiff::Timestamp::now()));
        match age {
            Some(age) => take_over(run, &crate::deadman::reason(age), summary).await?,
            None => summary.live_runs.push(run.id.clone()),
        }
        return Ok(());
    };
    // Decide from what the journal says now that we hold the lock: the runner may have
    // finished (and reverted everything) between the first look and taking the lock.
    let events = journal::read(&path)?;
    let finished = events
        .iter()
        .any(|e| matches!(e, Event::RunFinished { .. }));
    revert_open(&j, run, journal::open_faults(&events), summary).await?;
    if !finished {
        j.append_durable(&Event::RunFinished {
            outcome: Outcome::Errored {
                phase: last_phase(&events),
                error: "the runner stopped before the end; faults reverted by `chaosforge recover`"
                    .into(),
            },
            at: j.now(),
        })?;
        summary.closed_runs.push(run.id.clone());
    }
    Ok(())
}

/// Reverts the open faults of a live run that stopped heartbeating, fenced by its takeover
/// record (see [`crate::deadman`]), and closes its journal.
async fn take_over(
    run: &journal::RunDir,
    reason: &str,
    summary: &mut RecoverSummary,
) -> Result<(), JournalError> {
    let io = |source| JournalError::Io {
        path: run.dir.join(crate::deadman::TAKEOVER_FILE),
        source,
    };
    // Another recoverer is at it right now: it is in charge.
    let Some(fence) = crate::deadman::take_over(&run.dir, reason).map_err(io)? else {
        return Ok(());
    };
    let reason = fence.takeover.reason.clone();
    let j = Journal::open_taken_over(&run.dir, fence.file)?;
    // Read again behind the fence: the runner may have reverted and finished meanwhile (it
    // finds the record from now on, and acts on no fault without looking).
    let events = journal::read(j.path())?;
    let finished = events
        .iter()
        .any(|e| matches!(e, Event::RunFinished { .. }));
    let open = journal::open_faults(&events);
    if open.is_empty() && finished {
        return Ok(());
    }
    let halted =
        |e: &Event| matches!(e, Event::Halted { policy, .. } if policy == crate::deadman::POLICY);
    if !events.iter().any(halted) {
        j.append_durable(&Event::Halted {
            policy: crate::deadman::POLICY.into(),
            reason: reason.clone(),
            at: j.now(),
        })?;
    }
    revert_open(&j, run, open, summary).await?;
    if !finished {
        j.append_durable(&Event::RunFinished {
            outcome: Outcome::Halted {
                policy: crate::deadman::POLICY.into(),
                reason: format!("recovered: {reason}"),
            },
            at: j.now(),
        })?;
    }
    summary.stuck_runs.push((run.id.clone(), reason));
    Ok(())
}

/// Reverts `open` (in reverse order of injection, as the runner would have), journaling each
/// result as `recover`'s.
async fn revert_open(
    j: &Journal,
    run: &journal::RunDir,
    open: Vec<(FaultId, String, String, RevertSpec)>,
    summary: &mut RecoverSummary,
) -> Result<(), JournalError> {
    // The `cf-ctr-…` names the dead run bind-mounted for containers' namespaces: released once
    // every fault naming one is reverted, kept (for the next `recover`) while one is not.
    let mut names: std::collections::BTreeMap<String, bool> = Default::default();
    for (fault, name, target, spec) in open.into_iter().rev() {
        let result = spec.revert_detached().await.map_err(|e| e.to_string());
        if let Some(ns) = container_netns(&spec) {
            let all_ok = names.entry(ns.to_string()).or_insert(true);
            *all_ok &= result.is_ok();
        }
        let event = match &result {
            Ok(note) => Event::Reverted {
                fault,
                by: "recover".into(),
                note: Some(format!("{note} (at {})", jiff::Timestamp::now())),
                at: j.now(),
            },
            Err(error) => Event::RevertFailed {
                fault,
                error: error.clone(),
                at: j.now(),
            },
        };
        j.append_durable(&event)?;
        summary.faults.push(RecoveredFault {
            run: run.id.clone(),
            fault,
            name,
            target,
            result,
        });
    }
    for (ns, all_ok) in names {
        if all_ok {
            // The run's containers are claimed by it alone, so no other live journal names
            // this namespace; the name only pins it.
            if let Err(e) = crate::fault::container::delete_netns_name(&ns).await {
                summary.failed_runs.push((run.id.clone(), e));
            }
        }
    }
    Ok(())
}

/// The container namespace name a revert acts in, if it is one chaosforge attached.
fn container_netns(spec: &RevertSpec) -> Option<&str> {
    let ns = match spec {
        RevertSpec::NftTable { netns, .. }
        | RevertSpec::Qdisc { netns, .. }
        | RevertSpec::QueueChains { netns, .. } => netns.as_deref()?,
        _ => return None,
    };
    ns.starts_with(crate::fault::container::NETNS_PREFIX)
        .then_some(ns)
}

/// The phase the run was in last, as its journal says.
fn last_phase(events: &[Event]) -> Phase {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Phase { phase, .. } => Some(*phase),
            _ => None,
        })
        .unwrap_or(Phase::Validate)
}
