//! `slicer`: cuts each chunk into pieces by recursive halving, the cut point moved by a random
//! offset in `[-v, v)`, until a piece is at most `average_size + size_variation` bytes
//! (Toxiproxy's algorithm); pieces leave `delay` apart.
//!
//! `v` is `size_variation` clamped, cut by cut, so that both halves keep at least one byte.
//! Toxiproxy moves the cut by the full variation, so from `size_variation >= average_size + 2`
//! a cut can land outside the piece and the server panics (`slice bounds out of range`,
//! upstream issue #541); at `average_size` or `average_size + 1` it can emit empty pieces.
//! With the clamp every piece is `1..=average_size + size_variation` bytes and the pieces add
//! up to the chunk, in order, whatever the variation. Below `average_size` the clamp never
//! bites (a piece that is cut has more than `2 * size_variation + 1` bytes), so slicing is
//! Toxiproxy's there. `average_size` is at least 1 (the API refuses 0, on which Toxiproxy
//! overflows its stack), which is what keeps the halving finite.

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
        Slicer {
            average: usize::try_from(average).unwrap_or(usize::MAX).max(1),
            variation: usize::try_from(variation).unwrap_or(usize::MAX),
            delay,
            pending: VecDeque::new(),
        }
    }

    /// Size of the next piece to cut from a chunk of `len` bytes. A chunk that is not the rest
    /// of the one being sliced (toxics changed in between) is planned afresh.
    pub(crate) fn next_piece(&mut self, len: usize, rng: &mut SmallRng) -> usize {
        if self.pending.iter().sum::<usize>() != len {
            self.pending.clear();
            self.plan(len, rng);
        }
        self.pending.pop_front().unwrap_or(len)
    }

    /// Queues the piece sizes of a chunk of `len` bytes, in order. A list of parts still to
    /// cut replaces Toxiproxy's recursion: a large variation makes the cuts uneven and so the
    /// halving deep, and that depth must not be the task's stack.
    fn plan(&mut self, len: usize, rng: &mut SmallRng) {
        let largest = self.average.saturating_add(self.variation);
        // The next part to cut is on top, so parts come off in the order of their bytes.
        let mut parts = vec![len];
        while let Some(part) = parts.pop() {
            if part <= largest {
                self.pending.push_back(part);
                continue;
            }
            // `part > largest >= 1`, so `half >= 1`; a cut in `[half - v, half + v)` leaves
            // at least one byte on each side.
            let half = part / 2;
            let v = self.variation.min(half - 1);
            let cut = if v == 0 {
                half
            } else {
                half - v + rng.random_range(0..2 * v)
            };
            parts.push(part - cut);
            parts.push(cut);
        }
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

    #[test]
    fn any_variation_gives_pieces_of_one_to_average_plus_variation() {
        for avg in [1u64, 2, 7, 100, 1000] {
            for var in [
                0,
                avg - 1,
                avg,
                avg + 1,
                avg + 2,
                10 * avg,
                100_000,
                u64::MAX,
            ] {
                let largest = usize::try_from(avg.saturating_add(var)).unwrap_or(usize::MAX);
                for len in [1, 2, 3, 21, 1000, 4096, 32 * 1024] {
                    let p = pieces(len, avg, var);
                    assert_eq!(
                        p.iter().sum::<usize>(),
                        len,
                        "avg {avg} var {var} len {len}"
                    );
                    assert!(
                        p.iter().all(|&n| (1..=largest).contains(&n)),
                        "avg {avg} var {var} len {len}: {p:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_large_variation_still_slices() {
        // avg 10, var 1000: pieces up to 1010 bytes, and a 32 KiB chunk is really cut (the
        // clamped cut lands anywhere inside a part, not on its edge).
        let p = pieces(32 * 1024, 10, 1000);
        assert!(p.len() >= 32, "{}", p.len());
        let crumbs = p.iter().filter(|&&n| n == 1).count();
        assert!(crumbs * 4 < p.len(), "mostly one-byte pieces: {p:?}");
    }
}
