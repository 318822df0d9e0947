//! Monitors: a probe sampled on a fixed schedule during a run.
//!
//! Samples *start* every `interval` (the first one at once), whether or not earlier samples
//! have finished. A system that slows down must not thin out its own samples: if each sample
//! waited for the previous one, a 3 s hang would look like one slow request instead of thirty.
//! The number of samples in flight is bounded by [`MAX_IN_FLIGHT`]; a tick beyond the bound is
//! skipped, and the skip is visible because no sample exists for that tick.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::probe::{Probe, Sample};

/// The most samples of one monitor in flight at once; ticks beyond it are skipped.
///
/// With each sample bounded by its probe timeout, 64 covers a timeout 64× the interval
/// (e.g. 100 ms interval, 6.4 s timeout) without skipping, while a hung target cannot make a
/// monitor pile up unbounded tasks and sockets.
pub const MAX_IN_FLIGHT: usize = 64;

/// The shortest interval a monitor uses; shorter ones (including zero) are raised to it.
///
/// Validation refuses such intervals first; this only keeps the scheduler from spinning.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// A sample tagged with the index of the monitor that took it.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSample {
    /// The monitor's index in the plan (its position under `hypothesis.monitors`).
    pub monitor: usize,
    /// The measurement, with `at` stamped relative to the run's epoch.
    pub sample: Sample,
}

/// The running schedule of one monitor.
///
/// [`stop`](MonitorHandle::stop) ends it and waits for samples in flight. Dropping the handle
/// also stops scheduling new samples; in-flight ones still finish and are still sent, but
/// nobody waits for them.
#[must_use = "dropping a MonitorHandle stops the monitor at once"]
#[derive(Debug)]
pub struct MonitorHandle {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    slots: Arc<Semaphore>,
    max_in_flight: usize,
    started: InFlight,
}

/// Start times (since the epoch) of the samples in flight, by sample number.
type InFlight = Arc<std::sync::Mutex<std::collections::BTreeMap<u64, Duration>>>;

/// Starts sampling `probe` every `interval`, the first sample at once, on the current runtime.
///
/// Each sample is sent on `tx` as a [`MonitorSample`] with `monitor: index` when it finishes,
/// so samples arrive in completion order, not start order; sort by `sample.at` where it
/// matters. `at` is the sample's start time minus `epoch`.
///
/// Scheduling stops when the handle is stopped or dropped, or when the receiver of `tx` is
/// gone. Must be called within a tokio runtime.
pub fn spawn_monitor(
    index: usize,
    probe: Arc<dyn Probe>,
    interval: Duration,
    epoch: Instant,
    tx: mpsc::UnboundedSender<MonitorSample>,
) -> MonitorHandle {
    spawn_bounded(index, probe, interval, epoch, tx, MAX_IN_FLIGHT)
}

fn spawn_bounded(
    index: usize,
    probe: Arc<dyn Probe>,
    interval: Duration,
    epoch: Instant,
    tx: mpsc::UnboundedSender<MonitorSample>,
    max_in_flight: usize,
) -> MonitorHandle {
    let (stop, stopped) = oneshot::channel();
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let started = InFlight::default();
    let task = tokio::spawn(schedule(
        index,
        probe,
        interval.max(MIN_INTERVAL),
        epoch,
        tx,
        (slots.clone(), started.clone()),
        stopped,
    ));
    MonitorHandle {
        stop,
        task,
        slots,
        max_in_flight,
        started,
    }
}

async fn schedule(
    index: usize,
    probe: Arc<dyn Probe>,
    interval: Duration,
    epoch: Instant,
    tx: mpsc::UnboundedSender<MonitorSample>,
    (slots, started): (Arc<Semaphore>, InFlight),
    mut stopped: oneshot::Receiver<()>,
) {
    let max_in_flight = slots.available_permits();
    let mut seq = 0u64;
    let mut in_flight = JoinSet::new();
    let mut ticks = tokio::time::interval(interval);
    let mut skipped = 0u64;
    // If the scheduler itself falls behind (a starved runtime), stay on the original grid
    // instead of bursting: a burst would start several samples at the same instant and
    // misreport when the system was measured.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            // Stop first: after `stop` no new sample may start, even if a tick is also ready.
            biased;
            // Fires on `stop()` and, with an error, when the handle is dropped: both stop.
            _ = &mut stopped => break,
            _ = tx.closed() => break,
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => report_panic(index, probe.name(), done),
            _ = ticks.tick() => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    // Warn once per stretch of skipping, not on every tick of a hung target.
                    if skipped == 0 {
                        tracing::warn!(monitor = index, probe = probe.name(), "{max_in_flight} samples in flight; skipping ticks");
                    }
                    skipped += 1;
                    continue;
                };
                if skipped > 0 {
                    tracing::info!(monitor = index, probe = probe.name(), skipped, "sampling resumed");
                    skipped = 0;
                }
                let (probe, tx, started) = (probe.clone(), tx.clone(), started.clone());
                seq += 1;
                let id = seq;
                in_flight.spawn(async move {
                    let at = Instant::now().saturating_duration_since(epoch);
                    lock(&started).insert(id, at);
                    let sample = probe.sample().await.started_at(at);
                    // A closed receiver means the run no longer wants samples; nothing to do.
                    let _ = tx.send(MonitorSample { monitor: index, sample });
                    lock(&started).remove(&id);
                    drop(slot);
                });
            }
        }
    }
    // Each sample is bounded by its probe's timeout, so this wait is bounded too.
    while let Some(done) = in_flight.join_next().await {
        report_panic(index, probe.name(), done);
    }
}

fn lock(m: &InFlight) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<u64, Duration>> {
    // The map stays consistent even if a holder panicked: every operation is a single call.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Probes must not panic; if one does, say so loudly rather than lose the sample silently.
fn report_panic(index: usize, name: &str, done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(
            monitor = index,
            probe = name,
            "probe sample task failed: {e}"
        );
    }
}

// === impl MonitorHandle ===

impl MonitorHandle {
    /// The start time of the oldest sample still in flight (not yet sent), if any.
    pub fn oldest_in_flight(&self) -> Option<Duration> {
        lock(&self.started).values().min().copied()
    }

    /// Samples started but not yet sent. A sample's slot is released only after it was sent,
    /// so 0 means every sample started so far is in the channel.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight
            .saturating_sub(self.slots.available_permits())
    }

    /// Stops starting new samples and waits until every sample in flight has been sent.
    ///
    /// The wait is bounded by the probe's timeout. After this returns, the monitor sends
    /// nothing more.
    pub async fn stop(self) {
        // An error means the scheduler already ended (its receiver closed); nothing to stop.
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::error!("monitor scheduler failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
