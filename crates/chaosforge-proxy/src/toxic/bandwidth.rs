//! `bandwidth`: at most `rate` bytes per second.
//!
//! A chunk is cut into slices of about 10 ms worth of data and each slice is released when an
//! ideal line of that rate would have finished sending it, like Toxiproxy's sleep per chunk. The
//! line is modelled as a virtual clock: a slice starts when the line is free (`free_at`) or when
//! its data became available (the chunk's stamp), whichever is later. A writer that wakes up
//! late therefore catches up instead of losing bandwidth (this matters on a loaded machine),
//! while an idle line saves up nothing: data arriving after a pause starts from its arrival.
//! Catching up is bounded ([`MAX_CATCH_UP`]), so a long stall (a peer that stopped reading)
//! does not turn into a burst.

use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

use super::Poll;

/// Slices carry about this much time worth of data: small enough that a large read is not
/// sent as a burst, large enough to keep timer wake-ups (about 1 ms precision) negligible.
const SLICE_TIME: Duration = Duration::from_millis(10);
/// Upper bound of a slice, whatever the rate (the read size of a link).
const MAX_SLICE: usize = 32 * 1024;
/// How far behind the schedule a late writer may catch up: covers scheduling delays on a busy
/// machine, bounds the burst after a stall to this much time worth of data.
const MAX_CATCH_UP: Duration = Duration::from_millis(100);

/// Per-link state of a bandwidth toxic.
#[derive(Debug)]
pub(crate) struct Bandwidth {
    /// Bytes per second, at least 1 (0 would never deliver anything and divide by zero).
    rate: u64,
    slice: usize,
    /// When the line is free again: the release time of the last booked slice. Starts when the
    /// toxic started to apply, so data queued before then is not paced "in the past".
    free_at: Instant,
}

impl Bandwidth {
    pub(crate) fn new(rate: u64, since: Instant) -> Bandwidth {
        let rate = rate.max(1);
        let per_slice = (rate as f64 * SLICE_TIME.as_secs_f64()) as usize;
        Bandwidth {
            rate,
            slice: per_slice.clamp(1, MAX_SLICE),
            free_at: since,
        }
    }

    /// Books the next slice of a chunk of `len` bytes, available since `stamp`, on the first
    /// poll; then waits for its release.
    pub(crate) fn poll(
        &mut self,
        len: usize,
        stamp: Instant,
        booked: Option<Instant>,
        now: Instant,
    ) -> (Poll, Option<Instant>) {
        let release = booked.unwrap_or_else(|| {
            let floor = now.checked_sub(MAX_CATCH_UP).unwrap_or(now);
            let start = self.free_at.max(stamp).max(floor);
            let bytes = len.min(self.slice) as f64;
            let at = start + Duration::from_secs_f64(bytes / self.rate as f64);
            self.free_at = at;
            at
        });
        let poll = if now >= release {
            Poll::Ready
        } else {
            Poll::Until(release)
        };
        (poll, Some(release))
    }

    /// Keeps the booked slice in `data` and returns what is left, if anything.
    pub(crate) fn split(&self, data: &mut BytesMut) -> Option<BytesMut> {
        (data.len() > self.slice).then(|| data.split_off(self.slice))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives the toxic like a link would, with a clock that wakes `late` after each release,
    /// and returns when the last byte of `total` bytes (all read at once) is released.
    fn finish_time(rate: u64, total: usize, late: Duration) -> Duration {
        let t0 = Instant::now();
        let mut b = Bandwidth::new(rate, t0);
        let mut now = t0;
        let mut data = BytesMut::zeroed(total);
        loop {
            let (mut poll, booked) = b.poll(data.len(), t0, None, now);
            while let Poll::Until(at) = poll {
                now = at + late;
                poll = b.poll(data.len(), t0, booked, now).0;
            }
            match b.split(&mut data) {
                Some(rest) => data = rest,
                None => return now - t0,
            }
        }
    }

    #[test]
    fn one_megabyte_at_one_megabyte_per_second_takes_one_second() {
        let t = finish_time(1_000_000, 1_000_000, Duration::ZERO);
        assert!((t.as_secs_f64() - 1.0).abs() < 0.001, "{t:?}");
    }

    #[test]
    fn late_timers_do_not_slow_the_rate() {
        // Every wake-up is 2 ms late, 20 % of a slice: the virtual clock absorbs it.
        let t = finish_time(1_000_000, 1_000_000, Duration::from_millis(2));
        assert!((t.as_secs_f64() - 1.0).abs() < 0.01, "{t:?}");
        // Even wake-ups later than a whole slice (a loaded machine) are caught up.
        let t = finish_time(1_000_000, 1_000_000, Duration::from_millis(25));
        assert!((t.as_secs_f64() - 1.0).abs() < 0.03, "{t:?}");
    }

    #[test]
    fn a_long_stall_is_not_made_up_with_a_burst() {
        let t0 = Instant::now();
        let mut b = Bandwidth::new(1_000_000, t0);
        // Data read at t0, but the writer only gets to it a second later.
        let late = t0 + Duration::from_secs(1);
        let (_, release) = b.poll(10_000, t0, None, late);
        assert_eq!(release, Some(late - MAX_CATCH_UP + SLICE_TIME));
    }

    #[test]
    fn an_idle_line_saves_up_no_burst() {
        let t0 = Instant::now();
        let mut b = Bandwidth::new(1_000_000, t0);
        let (_, first) = b.poll(10_000, t0, None, t0);
        assert_eq!(first, Some(t0 + SLICE_TIME));
        // Data read a second later still takes its own 10 ms.
        let later = t0 + Duration::from_secs(1);
        let (poll, second) = b.poll(10_000, later, None, later);
        assert_eq!(
            (poll, second),
            (Poll::Until(later + SLICE_TIME), Some(later + SLICE_TIME))
        );
    }

    #[test]
    fn slices_are_small_and_rate_zero_is_clamped() {
        let now = Instant::now();
        assert_eq!(Bandwidth::new(1_000_000, now).slice, 10_000);
        assert_eq!(Bandwidth::new(1, now).slice, 1);
        assert_eq!(Bandwidth::new(0, now).rate, 1);
        assert_eq!(Bandwidth::new(u64::MAX, now).slice, MAX_SLICE);
    }
}
