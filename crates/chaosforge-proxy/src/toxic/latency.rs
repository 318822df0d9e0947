//! `latency`: every chunk is held `delay ± jitter` from the time it was read; order is kept
//! because the link releases chunks one at a time, in order.

use std::time::Duration;

use rand::RngExt;
use rand::rngs::SmallRng;
use tokio::time::Instant;

use super::Poll;

/// Per-link state of a latency toxic (none beyond its settings: the jitter is drawn per chunk).
#[derive(Debug)]
pub(crate) struct Latency {
    delay: Duration,
    jitter: Duration,
}

impl Latency {
    pub(crate) fn new(delay: Duration, jitter: Duration) -> Latency {
        Latency { delay, jitter }
    }

    /// Release time of a chunk read at `stamp`: drawn on the first poll, then the booked one.
    pub(crate) fn poll(
        &self,
        stamp: Instant,
        booked: Option<Instant>,
        rng: &mut SmallRng,
        now: Instant,
    ) -> (Poll, Option<Instant>) {
        let release = booked.unwrap_or_else(|| stamp + self.draw(rng));
        let poll = if now >= release {
            Poll::Ready
        } else {
            Poll::Until(release)
        };
        (poll, Some(release))
    }

    /// `delay` plus a uniform offset in `[-jitter, +jitter]`, never below zero.
    pub(crate) fn draw(&self, rng: &mut SmallRng) -> Duration {
        if self.jitter.is_zero() {
            return self.delay;
        }
        let offset = rng.random_range(-1.0..=1.0) * self.jitter.as_secs_f64();
        Duration::try_from_secs_f64((self.delay.as_secs_f64() + offset).max(0.0))
            .unwrap_or(self.delay)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn jitter_stays_within_bounds_and_spreads() {
        let l = Latency::new(Duration::from_millis(100), Duration::from_millis(20));
        let mut rng = SmallRng::seed_from_u64(1);
        let draws: Vec<Duration> = (0..1000).map(|_| l.draw(&mut rng)).collect();
        let (min, max) = (draws.iter().min().unwrap(), draws.iter().max().unwrap());
        assert!(*min >= Duration::from_millis(80) && *max <= Duration::from_millis(120));
        // Spread over most of the interval, so the jitter is really drawn per chunk.
        assert!(*max - *min > Duration::from_millis(30), "{min:?}..{max:?}");
    }

    #[test]
    fn jitter_larger_than_delay_never_goes_negative() {
        let l = Latency::new(Duration::from_millis(5), Duration::from_millis(50));
        let mut rng = SmallRng::seed_from_u64(2);
        assert!((0..1000).all(|_| l.draw(&mut rng) <= Duration::from_millis(55)));
    }

    #[test]
    fn release_is_booked_once() {
        let l = Latency::new(Duration::from_millis(100), Duration::from_millis(50));
        let mut rng = SmallRng::seed_from_u64(3);
        let t0 = Instant::now();
        let (p1, r1) = l.poll(t0, None, &mut rng, t0);
        let (p2, r2) = l.poll(t0, r1, &mut rng, t0);
        assert_eq!(
            (p1, r1),
            (p2, r2),
            "a second poll must not redraw the jitter"
        );
        let r = r1.unwrap();
        assert_eq!(l.poll(t0, r1, &mut rng, r).0, Poll::Ready);
    }
}
