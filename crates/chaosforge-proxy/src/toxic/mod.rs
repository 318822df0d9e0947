//! Toxic behaviours, one file per kind, and the per-link [`Chain`] that runs them.
//!
//! A proxy publishes its toxics as a [`ToxicList`] through a `watch` channel. Each link (one
//! direction of one connection) keeps a [`Chain`]: its own instance of every toxic of its
//! stream, with per-link state (token bucket, timers, RNG) and the toxicity roll made once when
//! the link first sees the toxic. [`Chain::reconcile`] brings a chain up to date with a new list
//! between two steps, keeping the state of toxics that are still there.
//!
//! Data moves through a chain as [`Chunk`]s. A chunk remembers the id of the next toxic it has to
//! pass (`next`), not an index: toxic ids grow in creation order and the chain is kept in that
//! order, so after any add or remove a chunk resumes at the first remaining toxic it has not
//! passed yet. That is what keeps bytes from being lost, duplicated or reordered while toxics
//! change under an open connection.
//!
//! `down` is not here: it acts on the listener, see `proxy.rs`.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use chaosforge::fault::net::{ProxyFault, ProxyToxic, Stream};
use chaosforge::units::Ratio;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

mod bandwidth;
mod corrupt;
mod latency;
mod reset;
mod timeout;

use self::bandwidth::Bandwidth;
use self::corrupt::Corrupt;
use self::latency::Latency;
use self::reset::Reset;
use self::timeout::Timeout;

/// The toxics of a proxy as published to its links, in creation (= chain) order.
pub(crate) type ToxicList = Arc<Vec<ToxicEntry>>;

/// One toxic of a proxy with the id that orders it in the chain.
#[derive(Debug, Clone)]
pub(crate) struct ToxicEntry {
    /// Unique per proxy and increasing in creation order.
    pub(crate) id: u64,
    pub(crate) toxic: ProxyToxic,
}

/// A piece of data read from one side, on its way through the chain to the other side.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) data: BytesMut,
    /// When the bytes were read; latency counts from here (and pushes it forward, so chained
    /// latency toxics add up).
    stamp: Instant,
    /// Id of the next toxic this chunk has to pass: every toxic with a smaller id is done.
    next: u64,
    /// The release time a toxic computed for this chunk, with that toxic's id. Kept so a toxic
    /// draws its jitter or books its bandwidth once per chunk, however often it is polled.
    release: Option<(u64, Instant)>,
}

/// What a toxic says about the chunk in front of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Poll {
    /// It may pass now.
    Ready,
    /// It may pass at that time.
    Until(Instant),
    /// It may not pass while the toxic is there.
    Hold,
}

/// What the link writer should do next with its work queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// The front chunk passed every toxic: write it.
    Write,
    /// Wake up at that time and advance again.
    Wait(Instant),
    /// Nothing can move until the toxics or the connection change.
    Hold,
    /// The queue is empty.
    Idle,
}

/// How a toxic ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Close both sockets normally (the peers see EOF).
    Close,
    /// Close both sockets with a TCP RST.
    Reset,
}

/// The toxics of one link, with their per-link state.
#[derive(Debug)]
pub(crate) struct Chain {
    stream: Stream,
    /// Seeds the RNG of each toxic this link instantiates.
    seed: u64,
    toxics: Vec<LinkToxic>,
}

/// One toxic as instantiated on one link.
#[derive(Debug)]
struct LinkToxic {
    id: u64,
    /// The toxicity roll for this link; an inactive toxic is skipped (a no-op).
    active: bool,
    /// When the toxic started to apply to this link; timers count from here.
    since: Instant,
    rng: SmallRng,
    behaviour: Behaviour,
}

/// The closed set of per-link behaviours; one `match` dispatches to the files of this module.
#[derive(Debug)]
enum Behaviour {
    Latency(Latency),
    Bandwidth(Bandwidth),
    Timeout(Timeout),
    Reset(Reset),
    Corrupt(Corrupt),
}

/// Mixes seeds (SplitMix64 finalizer) so that nearby inputs give unrelated RNG streams.
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A probability usable with `random::<f64>() < p`. `Ratio` deserializes without range
/// checks, so anything outside `0..=1` (or NaN) is clamped rather than trusted.
pub(crate) fn chance(ratio: Ratio) -> f64 {
    let p = ratio.get();
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

/// Whether an event of probability `p` happens. `p = 0` never, `p = 1` always.
pub(crate) fn happens(rng: &mut SmallRng, p: f64) -> bool {
    rng.random::<f64>() < p
}

// === impl Chunk ===

impl Chunk {
    /// A chunk read at `stamp`, before any toxic.
    pub(crate) fn new(data: BytesMut, stamp: Instant) -> Chunk {
        Chunk {
            data,
            stamp,
            next: 0,
            release: None,
        }
    }

    /// The release time booked by toxic `id`, if this chunk is still at that toxic.
    fn release_for(&self, id: u64) -> Option<Instant> {
        self.release
            .and_then(|(at, when)| (at == id).then_some(when))
    }
}

// === impl Chain ===

impl Chain {
    /// An empty chain for one link; `seed` is already specific to the link (proxy seed,
    /// connection number, stream).
    pub(crate) fn new(stream: Stream, seed: u64) -> Chain {
        Chain {
            stream,
            seed,
            toxics: Vec::new(),
        }
    }

    /// Brings the chain up to date with `list`: toxics still listed keep their state and their
    /// toxicity roll, new ones are instantiated (and rolled) as of `now`, removed ones are
    /// dropped. Toxics of the other stream, and `down`, are not part of a link.
    pub(crate) fn reconcile(&mut self, list: &[ToxicEntry], now: Instant) {
        let mut old = std::mem::take(&mut self.toxics).into_iter().peekable();
        for entry in list {
            if entry.toxic.stream != self.stream {
                continue;
            }
            // Both lists are sorted by id, so one merge pass finds the survivors.
            while old.next_if(|t| t.id < entry.id).is_some() {}
            if let Some(kept) = old.next_if(|t| t.id == entry.id) {
                self.toxics.push(kept);
            } else if let Some(fresh) = LinkToxic::new(entry, self.seed, now) {
                self.toxics.push(fresh);
            }
        }
    }

    /// Moves the front chunk of `work` as far through the chain as it may go at `now`, and says
    /// what the writer has to do next. A toxic that splits a chunk (bandwidth) leaves the rest
    /// right behind it in `work`, still in front of every later chunk.
    pub(crate) fn advance(&mut self, work: &mut VecDeque<Chunk>, now: Instant) -> Next {
        loop {
            let Some(chunk) = work.front_mut() else {
                return Next::Idle;
            };
            let Some(toxic) = self
                .toxics
                .iter_mut()
                .find(|t| t.active && t.id >= chunk.next)
            else {
                return Next::Write;
            };
            match toxic.poll(chunk, now) {
                Poll::Ready => {}
                Poll::Until(when) => return Next::Wait(when),
                Poll::Hold => return Next::Hold,
            }
            let rest = toxic.pass(chunk);
            chunk.next = toxic.id + 1;
            chunk.release = None;
            if let Some(rest) = rest {
                work.insert(1, rest);
            }
        }
    }

    /// Whether an end of stream must wait: a `timeout` toxic holds everything, EOF included.
    pub(crate) fn holds_eof(&self) -> bool {
        self.toxics
            .iter()
            .any(|t| t.active && matches!(t.behaviour, Behaviour::Timeout(_)))
    }

    /// The earliest time a toxic of this link ends the connection, and how.
    pub(crate) fn deadline(&self) -> Option<(Instant, Ending)> {
        self.toxics
            .iter()
            .filter(|t| t.active)
            .filter_map(|t| match &t.behaviour {
                Behaviour::Timeout(b) => b.deadline(t.since).map(|at| (at, Ending::Close)),
                Behaviour::Reset(b) => Some((b.deadline(t.since), Ending::Reset)),
                _ => None,
            })
            .min_by_key(|(at, _)| *at)
    }

    /// Number of toxics instantiated on this link and how many of them are active (tests).
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        (
            self.toxics.len(),
            self.toxics.iter().filter(|t| t.active).count(),
        )
    }
}

// === impl LinkToxic ===

impl LinkToxic {
    /// Instantiates `entry` on a link and rolls its toxicity; `None` for proxy-wide faults.
    fn new(entry: &ToxicEntry, link_seed: u64, now: Instant) -> Option<LinkToxic> {
        let mut rng = SmallRng::seed_from_u64(mix(link_seed, entry.id));
        // The roll is the first draw, so it depends only on (seed, connection, stream, toxic).
        let active = happens(&mut rng, chance(entry.toxic.toxicity));
        let behaviour = match &entry.toxic.fault {
            ProxyFault::Latency { delay, jitter } => {
                Behaviour::Latency(Latency::new(*delay, *jitter))
            }
            ProxyFault::Bandwidth { rate } => Behaviour::Bandwidth(Bandwidth::new(*rate, now)),
            ProxyFault::Timeout { after } => Behaviour::Timeout(Timeout::new(*after)),
            ProxyFault::Reset { after } => Behaviour::Reset(Reset::new(*after)),
            ProxyFault::Corrupt { probability, per } => {
                Behaviour::Corrupt(Corrupt::new(chance(*probability), *per))
            }
            // Acts on the listener, not on links (see proxy.rs); unknown future kinds are
            // ignored by links rather than guessed at.
            ProxyFault::Down => return None,
            _ => return None,
        };
        Some(LinkToxic {
            id: entry.id,
            active,
            since: now,
            rng,
            behaviour,
        })
    }

    fn poll(&mut self, chunk: &mut Chunk, now: Instant) -> Poll {
        let booked = chunk.release_for(self.id);
        let (poll, release) = match &mut self.behaviour {
            Behaviour::Latency(b) => b.poll(chunk.stamp, booked, &mut self.rng, now),
            Behaviour::Bandwidth(b) => b.poll(chunk.data.len(), chunk.stamp, booked, now),
            Behaviour::Timeout(_) => (Poll::Hold, None),
            Behaviour::Reset(_) | Behaviour::Corrupt(_) => (Poll::Ready, None),
        };
        if let Some(when) = release {
            chunk.release = Some((self.id, when));
        }
        poll
    }

    /// Lets the chunk pass (after `poll` said `Ready`); returns the part left behind, if any.
    fn pass(&mut self, chunk: &mut Chunk) -> Option<Chunk> {
        match &mut self.behaviour {
            Behaviour::Latency(_) => {
                if let Some(when) = chunk.release_for(self.id) {
                    chunk.stamp = when;
                }
                None
            }
            Behaviour::Bandwidth(b) => {
                let rest = b.split(&mut chunk.data)?;
                Some(Chunk {
                    data: rest,
                    stamp: chunk.stamp,
                    next: self.id,
                    release: None,
                })
            }
            Behaviour::Corrupt(b) => {
                b.apply(&mut chunk.data, &mut self.rng);
                None
            }
            Behaviour::Timeout(_) | Behaviour::Reset(_) => None,
        }
    }
}

#[cfg(test)]
mod tests;
