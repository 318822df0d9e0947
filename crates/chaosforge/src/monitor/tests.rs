//! Monitor scheduling tests under paused time: the clock only moves when every task waits,
//! so sample start times are exact multiples of the interval.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;

use super::*;

/// A probe whose every sample takes `takes`, counting how many run at once.
#[derive(Debug, Default)]
struct SlowProbe {
    takes: Duration,
    running: AtomicUsize,
    peak: AtomicUsize,
}

#[async_trait]
impl Probe for SlowProbe {
    fn name(&self) -> &str {
        "slow"
    }

    async fn sample(&self) -> Sample {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.takes).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        Sample::success(self.takes)
    }
}

fn slow(takes: Duration) -> Arc<SlowProbe> {
    Arc::new(SlowProbe {
        takes,
        ..SlowProbe::default()
    })
}

fn drain(rx: &mut mpsc::UnboundedReceiver<MonitorSample>) -> Vec<MonitorSample> {
    let mut out = Vec::new();
    while let Ok(s) = rx.try_recv() {
        out.push(s);
    }
    out.sort_by_key(|s| s.sample.at);
    out
}

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn samples_start_on_schedule_even_when_each_takes_three_intervals() {
    let epoch = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let probe = slow(300 * MS);
    let handle = spawn_monitor(7, probe.clone(), 100 * MS, epoch, tx);
    // Ticks at 0, 100, …, 900 fall inside this window; the tick at 1000 does not.
    tokio::time::sleep(950 * MS).await;
    handle.stop().await;

    let samples = drain(&mut rx);
    let starts: Vec<_> = samples.iter().map(|s| s.sample.at).collect();
    let expected: Vec<_> = (0..10u32).map(|i| i * 100 * MS).collect();
    // Ten samples, 100 ms apart: the schedule did not stretch to one per 300 ms.
    assert_eq!(starts, expected);
    assert!(samples.iter().all(|s| s.monitor == 7 && s.sample.ok));
    // Samples overlapped (three or four at a time, depending on whether the one ending at a
    // tick finishes before the next starts), which is what keeps the schedule.
    assert!((3..=4).contains(&probe.peak.load(Ordering::SeqCst)));
}

#[tokio::test(start_paused = true)]
async fn stop_waits_for_samples_in_flight() {
    let epoch = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handle = spawn_monitor(0, slow(300 * MS), 100 * MS, epoch, tx);
    tokio::time::sleep(250 * MS).await;
    handle.stop().await;
    // The last sample started at 200 ms and takes 300 ms, so stop returns at 500 ms exactly,
    // and every started sample (0, 100, 200) has been delivered by then.
    assert_eq!(epoch.elapsed(), 500 * MS);
    assert_eq!(drain(&mut rx).len(), 3);
    // Nothing more arrives later: the scheduler is gone and the sender with it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(matches!(
        rx.try_recv(),
        Err(mpsc::error::TryRecvError::Disconnected)
    ));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_stops_scheduling_but_delivers_in_flight() {
    let epoch = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handle = spawn_monitor(0, slow(300 * MS), 100 * MS, epoch, tx);
    tokio::time::sleep(150 * MS).await;
    drop(handle);
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Started at 0 and 100 before the drop; nothing after.
    let starts: Vec<_> = drain(&mut rx).iter().map(|s| s.sample.at).collect();
    assert_eq!(starts, [Duration::ZERO, 100 * MS]);
}

#[tokio::test(start_paused = true)]
async fn ticks_beyond_the_in_flight_bound_are_skipped() {
    let epoch = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Each sample takes 9.5 intervals, but only 4 may run at once. (Not exactly 10: a slot
    // freed at the very instant of a tick would race that tick.)
    let probe = slow(95 * MS);
    let handle = spawn_bounded(0, probe.clone(), 10 * MS, epoch, tx, 4);
    tokio::time::sleep(195 * MS).await;
    handle.stop().await;
    let starts: Vec<_> = drain(&mut rx).iter().map(|s| s.sample.at).collect();
    // 0..=30 fill the four slots; the slot freed at 95 is taken by the tick at 100, and so on:
    // the ticks in between have no sample, which is how a skip shows in the journal.
    let expected: Vec<_> = [0, 10, 20, 30, 100, 110, 120, 130]
        .iter()
        .map(|&ms| ms * MS)
        .collect();
    assert_eq!(starts, expected);
    assert_eq!(probe.peak.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn at_is_relative_to_the_epoch() {
    let epoch = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handle = spawn_monitor(1, slow(MS), Duration::from_secs(1), epoch, tx);
    tokio::time::sleep(1500 * MS).await;
    handle.stop().await;
    let starts: Vec<_> = drain(&mut rx).iter().map(|s| s.sample.at).collect();
    assert_eq!(starts, [Duration::from_secs(2), Duration::from_secs(3)]);
}

#[tokio::test(start_paused = true)]
async fn a_closed_receiver_ends_the_monitor() {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = spawn_monitor(0, slow(MS), 100 * MS, Instant::now(), tx);
    drop(rx);
    // Without the `tx.closed()` arm this would still return (stop is explicit); the point is
    // that the scheduler task has already finished on its own.
    tokio::time::sleep(50 * MS).await;
    assert!(handle.task.is_finished());
    handle.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_zero_interval_does_not_spin() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handle = spawn_monitor(0, slow(MS), Duration::ZERO, Instant::now(), tx);
    tokio::time::sleep(10 * MS).await;
    handle.stop().await;
    // Raised to MIN_INTERVAL: about one sample per millisecond, not an endless burst.
    let n = drain(&mut rx).len();
    assert!((10..=11).contains(&n), "{n}");
}
