//! `corrupt`: flips one random bit of a byte, with a probability per byte or per chunk.

use bytes::BytesMut;
use chaosforge::fault::net::CorruptUnit;
use rand::RngExt;
use rand::rngs::SmallRng;

use super::happens;

/// Per-link state of a corrupt toxic.
#[derive(Debug)]
pub(crate) struct Corrupt {
    /// Probability in `0..=1` (already clamped).
    p: f64,
    per: CorruptUnit,
}

impl Corrupt {
    pub(crate) fn new(p: f64, per: CorruptUnit) -> Corrupt {
        Corrupt { p, per }
    }

    /// Corrupts `data` in place.
    pub(crate) fn apply(&self, data: &mut BytesMut, rng: &mut SmallRng) {
        if self.p <= 0.0 || data.is_empty() {
            return;
        }
        match self.per {
            CorruptUnit::Byte => {
                for byte in data.iter_mut() {
                    if happens(rng, self.p) {
                        *byte ^= 1 << rng.random_range(0..8u32);
                    }
                }
            }
            CorruptUnit::Chunk => {
                if happens(rng, self.p) {
                    let at = rng.random_range(0..data.len());
                    data[at] ^= 1 << rng.random_range(0..8u32);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn flipped_bits(p: f64, per: CorruptUnit) -> Vec<u32> {
        let original = BytesMut::from(&[0x5Au8; 4096][..]);
        let mut data = original.clone();
        Corrupt::new(p, per).apply(&mut data, &mut SmallRng::seed_from_u64(9));
        data.iter()
            .zip(original.iter())
            .map(|(a, b)| (a ^ b).count_ones())
            .collect()
    }

    #[test]
    fn per_byte_probability_one_flips_exactly_one_bit_of_every_byte() {
        assert!(
            flipped_bits(1.0, CorruptUnit::Byte)
                .iter()
                .all(|&bits| bits == 1)
        );
    }

    #[test]
    fn probability_zero_changes_nothing() {
        assert!(
            flipped_bits(0.0, CorruptUnit::Byte)
                .iter()
                .all(|&bits| bits == 0)
        );
        assert!(
            flipped_bits(0.0, CorruptUnit::Chunk)
                .iter()
                .all(|&bits| bits == 0)
        );
    }

    #[test]
    fn per_chunk_flips_one_bit_of_the_chunk() {
        assert_eq!(flipped_bits(1.0, CorruptUnit::Chunk).iter().sum::<u32>(), 1);
    }

    #[test]
    fn per_byte_half_flips_about_half() {
        let n = flipped_bits(0.5, CorruptUnit::Byte)
            .iter()
            .filter(|&&b| b == 1)
            .count();
        assert!((1800..2300).contains(&n), "{n}");
    }
}
