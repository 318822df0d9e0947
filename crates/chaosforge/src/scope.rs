//! Targets, selectors and scopes: which targets a fault acts on, chosen reproducibly from the
//! run's seed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How many of the matching targets a fault takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One, chosen with the seed.
    Single,
    /// This many, chosen with the seed.
    Count(usize),
    /// This fraction (`0 < f <= 1`), rounded up, at least one.
    Fraction(f64),
    /// Every match.
    All,
    /// Every matching target of one cluster or region (by the `cluster` or `region` label).
    Group {
        /// Which label groups the targets.
        by: GroupLabel,
        /// The group the file names (`{ cluster: eu-1 }`), or `None`: the seed chooses.
        named: Option<String>,
        /// The group chosen, once the plan has chosen it.
        chosen: Option<String>,
        /// Every group the selector's matches fall into, sorted.
        among: Vec<String>,
    },
}

/// The label a [`Scope::Group`] groups targets by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupLabel {
    /// `cluster`.
    Cluster,
    /// `region`.
    Region,
}

impl GroupLabel {
    /// The label key.
    pub fn key(self) -> &'static str {
        match self {
            GroupLabel::Cluster => "cluster",
            GroupLabel::Region => "region",
        }
    }
}

/// A small, fast PRNG whose stream is fixed forever (SplitMix64), so that a seed written in a
/// journal years ago still selects the same targets: a crate's RNG may change its stream between
/// versions.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

// === impl Scope ===

impl Scope {
    /// How many of `matches` targets this scope takes (at least one when `matches > 0`).
    pub fn size(&self, matches: usize) -> usize {
        let n = match *self {
            Scope::Single => 1,
            Scope::Count(n) => n,
            Scope::Fraction(f) => (f * matches as f64).ceil() as usize,
            // The group was chosen before: every candidate left is in it.
            Scope::All | Scope::Group { .. } => matches,
        };
        n.clamp(usize::from(matches > 0), matches)
    }

    /// Chooses targets among `candidates` (in file order), reproducibly for `seed` and `salt`
    /// (the fault's name, so that reordering faults does not change each one's choice).
    /// The result keeps file order.
    pub fn choose<T: Clone>(&self, candidates: &[T], seed: u64, salt: &str) -> Vec<T> {
        let k = self.size(candidates.len());
        let mut idx: Vec<usize> = (0..candidates.len()).collect();
        let mut rng = SeededRng::new(seed ^ fnv1a(salt));
        // Partial Fisher–Yates: the first k slots become a uniform sample.
        for i in 0..k {
            let j = i + rng.below(idx.len() - i);
            idx.swap(i, j);
        }
        let mut chosen: Vec<usize> = idx.into_iter().take(k).collect();
        chosen.sort_unstable();
        chosen.into_iter().map(|i| candidates[i].clone()).collect()
    }
}

/// Chooses one of `groups` (sorted, non-empty) reproducibly for `seed` and `salt`: every group
/// is equally likely, and the same seed and salt always choose the same one.
pub fn choose_group<'g>(groups: &'g [String], seed: u64, salt: &str) -> Option<&'g String> {
    if groups.is_empty() {
        return None;
    }
    let mut rng = SeededRng::new(seed ^ fnv1a(&format!("{salt}/group")));
    groups.get(rng.below(groups.len()))
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Single => f.write_str("single"),
            Scope::Count(n) => write!(f, "count {n}"),
            Scope::Fraction(x) => {
                let pct = format!("{:.2}", x * 100.0);
                write!(f, "{}%", pct.trim_end_matches('0').trim_end_matches('.'))
            }
            Scope::All => f.write_str("all"),
            Scope::Group {
                by, named: Some(n), ..
            } => write!(f, "{} {n}", by.key()),
            Scope::Group {
                by,
                named: None,
                chosen,
                among,
            } => match chosen {
                Some(c) => write!(
                    f,
                    "{} {c}, chosen by the seed among {}",
                    by.key(),
                    among.join(", ")
                ),
                None => write!(f, "one {}, chosen with the seed", by.key()),
            },
        }
    }
}

/// `true` when a target with `name` and `labels` has every label of `selector`. The key `name`
/// also matches the target's name, so `select: { name: db }` picks one target by name.
pub fn matches(
    selector: &BTreeMap<String, String>,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v) || (k == "name" && v == name))
}

// === impl SeededRng ===

impl SeededRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`); the modulo bias is below 2^-32 for any n we use.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// FNV-1a: a stable hash (std's `DefaultHasher` may change between releases).
pub fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(Scope::Single.size(5), 1);
        assert_eq!(Scope::Count(3).size(5), 3);
        assert_eq!(Scope::Count(9).size(5), 5);
        assert_eq!(Scope::Fraction(0.5).size(5), 3);
        assert_eq!(Scope::Fraction(0.01).size(5), 1);
        assert_eq!(Scope::All.size(5), 5);
        assert_eq!(Scope::All.size(0), 0);
    }

    #[test]
    fn same_seed_same_choice_and_seeds_differ() {
        let c: Vec<u32> = (0..20).collect();
        let a = Scope::Count(5).choose(&c, 42, "f");
        assert_eq!(a, Scope::Count(5).choose(&c, 42, "f"));
        assert_eq!(a.len(), 5);
        let distinct: std::collections::BTreeSet<Vec<u32>> = (0..20)
            .map(|s| Scope::Count(5).choose(&c, s, "f"))
            .collect();
        assert!(
            distinct.len() > 10,
            "seeds should spread choices: {distinct:?}"
        );
    }

    #[test]
    fn single_is_roughly_uniform() {
        let c: Vec<u32> = (0..4).collect();
        let mut hits = [0u32; 4];
        for s in 0..4000 {
            hits[Scope::Single.choose(&c, s, "x")[0] as usize] += 1;
        }
        assert!(hits.iter().all(|&h| (800..1200).contains(&h)), "{hits:?}");
    }

    #[test]
    fn selector_matching() {
        let labels: BTreeMap<String, String> = [("service".into(), "db".into())].into();
        let sel = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(matches(&sel("service", "db"), "db-1", &labels));
        assert!(matches(&sel("name", "db-1"), "db-1", &labels));
        assert!(!matches(&sel("service", "web"), "db-1", &labels));
        assert!(matches(&BTreeMap::new(), "db-1", &labels));
    }
}
