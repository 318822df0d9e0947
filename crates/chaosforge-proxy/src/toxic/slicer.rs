//! `slicer`: cuts each chunk into pieces by recursive halving, the cut point moved by a random
//! offset in `[-size_variation, size_variation)`, until a piece is at most
//! `average_size + size_variation` bytes (Toxiproxy's algorithm); pieces leave `delay` apart.
//! `average_size` is at least 1 and `size_variation` below it (checked by the API), which is
//! what keeps the halving finite; Toxiproxy overflows its stack on `average_size` 0.

use std::collections::VecDeque;
use std::time::Duration;

use rand::RngExt;
use rand::rngs::SmallRng;

/// Per-link state of a slicer toxic.
#[derive(Debug)]
pub(crate) struct Slicer {
    average: usize,
    variation: usize,
    pub(crate) delay: Duration,
    /// Sizes of the pieces still to cut from the chunk being sliced.
    pending: VecDeque<usize>,
}

impl Slicer {
    pub(crate) fn new(average: u64, variation: u64, delay: Duration) -> Slicer {
        let average = usize::try_from(average).unwrap_or(usize::MAX).max(1);
        let variation = usize::try_from(variation)
            .unwrap_or(usize::MAX)
            .min(average - 1);
        Slicer {
            average,
            variation,
            delay,
            pending: VecDeque::new(),
        }
    }

    /// Size of the next piece to cut from a chunk of `len` bytes. A chunk that is not the rest
    /// of the one being sliced (toxics changed in between) is planned afresh.
    pub(crate) fn next_piece(&mut self, len: usize, rng: &mut SmallRng) -> usize {
        if self.pending.iter().sum::<usize>() != len {
            self.pending.clear();
            self.plan(0, len, rng);
        }
        self.pending.pop_front().unwrap_or(len)
    }

    fn plan(&mut self, start: usize, end: usize, rng: &mut SmallRng) {
        if end - start <= self.average + self.variation {
            self.pending.push_back(end - start);
            return;
        }
        let mut mid = start + (end - start) / 2;
        if self.variation > 0 {
            let offset = rng.random_range(0..2 * self.variation);
            mid = (mid + offset)
                .saturating_sub(self.variation)
                .clamp(start + 1, end - 1);
        }
        self.plan(start, mid, rng);
        self.plan(mid, end, rng);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn pieces(len: usize, avg: u64, var: u64) -> Vec<usize> {
        let mut s = Slicer::new(avg, var, Duration::ZERO);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut left = len;
        let mut out = Vec::new();
        while left > 0 {
            let p = s.next_piece(left, &mut rng);
            out.push(p);
            left -= p;
        }
        out
    }

    #[test]
    fn without_variation_pieces_are_between_half_and_full_average() {
        let p = pieces(2000, 100, 0);
        // Toxiproxy measured 32 reads for this case.
        assert_eq!(p.len(), 32);
        assert!(p.iter().all(|&n| n > 50 && n <= 100), "{p:?}");
        assert_eq!(p.iter().sum::<usize>(), 2000);
    }

    #[test]
    fn with_variation_pieces_stay_bounded_and_add_up() {
        let p = pieces(10_000, 10, 9);
        assert!(p.iter().all(|n| (1..=19).contains(n)), "{p:?}");
        assert_eq!(p.iter().sum::<usize>(), 10_000);
        assert_eq!(pieces(1, 1, 0), [1]);
    }
}
