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
//! A toxic says what happens to the chunk in front of it ([`Poll`]): pass, wait, hold, or be
//! dropped. The end of a stream goes through the chain too ([`Chain::poll_eof`]), after every
//! chunk, so `slow_close` and `reset_peer` can act on it.
//!
//! `down` is not here: it acts on the listener, see `proxy.rs`.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use chaosforge::fault::net::Stream;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

use crate::model::{Toxic, ToxicKind};

mod bandwidth;
mod corrupt;
mod hold;
mod latency;
mod limit_data;
mod reset;
mod reset_peer;
mod slicer;
mod slow_close;
mod timeout;

use self::bandwidth::Bandwidth;
use self::corrupt::Corrupt;
use self::hold::Hold;
use self::latency::Latency;
use self::limit_data::LimitData;
use self::reset::Reset;
use self::reset_peer::ResetPeer;
use self::slicer::Slicer;
use self::slow_close::SlowClose;
use self::timeout::Timeout;

/// The toxics of a proxy as published to its links, in creation (= chain) order.
pub(crate) type ToxicList = Arc<Vec<ToxicEntry>>;

/// One toxic of a proxy with the id that orders it in the chain.
#[derive(Debug, Clone)]
pub(crate) struct ToxicEntry {
    /// Unique per proxy and increasing in creation order.
    pub(crate) id: u64,
    /// Bumped by every update of the toxic, so links re-instantiate (and re-roll) it.
    pub(crate) rev: u64,
    pub(crate) toxic: Toxic,
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

/// What a toxic says about the chunk (or end of stream) in front of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Poll {
    /// It may pass now.
    Ready,
    /// It may pass at that time.
    Until(Instant),
    /// It may not pass while the toxic is there.
    Hold,
    /// It is dropped (never for the end of stream).
    Drop,
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

/// What a [`Chain::reconcile`] changed that the link has to act on.
#[derive(Debug, Default)]
pub(crate) struct Reconciled {
    /// Toxics that became active on this link: (name, type), for the activation metric.
    pub(crate) activated: Vec<(String, &'static str)>,
    /// A removed toxic ends the connection (Toxiproxy's `timeout` cleanup).
    pub(crate) ending: Option<Ending>,
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
    rev: u64,
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
    /// Bandwidth 0: nothing passes (held, so removing the toxic releases it).
    Stall,
    SlowClose(SlowClose),
    Timeout(Timeout),
    ResetPeer(ResetPeer),
    Slicer(Slicer),
    LimitData(LimitData),
    Noop,
    Corrupt(Corrupt),
    Loss(f64),
    Blackhole,
    Hold(Hold),
    Reset(Reset),
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

/// A probability usable with `random::<f64>() < p`: anything outside `0..=1` (or NaN) is
/// clamped rather than trusted (the engine's `Ratio` deserializes without range checks).
pub(crate) fn chance(p: f64) -> f64 {
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
    /// toxicity roll, updated ones are re-instantiated and re-rolled (keeping a `limit_data`
    /// count), new ones are instantiated (and rolled) as of `now`, removed ones are dropped.
    /// Toxics of the other stream, and `down`, are not part of a link.
    pub(crate) fn reconcile(&mut self, list: &[ToxicEntry], now: Instant) -> Reconciled {
        let mut out = Reconciled::default();
        let mut old = std::mem::take(&mut self.toxics).into_iter().peekable();
        let removed = |gone: LinkToxic, out: &mut Reconciled| {
            if gone.active && matches!(gone.behaviour, Behaviour::Timeout(_)) {
                out.ending = Some(Ending::Close);
            }
        };
        for entry in list {
            if entry.toxic.stream != self.stream {
                continue;
            }
            // Both lists are sorted by id, so one merge pass finds the survivors.
            while let Some(gone) = old.next_if(|t| t.id < entry.id) {
                removed(gone, &mut out);
            }
            match old.next_if(|t| t.id == entry.id) {
                Some(kept) if kept.rev == entry.rev => self.toxics.push(kept),
                kept => {
                    let sent = match kept.map(|k| k.behaviour) {
                        Some(Behaviour::LimitData(l)) => l.sent,
                        _ => 0,
                    };
                    if let Some(fresh) = LinkToxic::new(entry, self.seed, now, sent) {
                        if fresh.active {
                            out.activated
                                .push((entry.toxic.name.clone(), entry.toxic.kind.type_name()));
                        }
                        self.toxics.push(fresh);
                    }
                }
            }
        }
        for gone in old {
            removed(gone, &mut out);
        }
        out
    }

    /// Moves the front chunk of `work` as far through the chain as it may go at `now`, and says
    /// what the writer has to do next. A toxic that splits a chunk (bandwidth, slicer) leaves
    /// the rest right behind it in `work`, still in front of every later chunk; a toxic that
    /// drops a chunk removes it from `work`.
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
                Poll::Drop => {
                    work.pop_front();
                    continue;
                }
            }
            let rest = toxic.pass(chunk, now);
            chunk.next = toxic.id + 1;
            chunk.release = None;
            if chunk.data.is_empty() {
                work.pop_front();
            }
            if let Some(rest) = rest {
                work.insert(usize::from(!work.is_empty()), rest);
            }
        }
    }

    /// Whether the end of the stream may be passed on at `now` (call once every chunk is out).
    /// `Drop` never comes back: a toxic that swallows the end holds it instead.
    pub(crate) fn poll_eof(&mut self, now: Instant) -> Poll {
        for t in self.toxics.iter_mut().filter(|t| t.active) {
            match &mut t.behaviour {
                Behaviour::Hold(_) => return Poll::Hold,
                Behaviour::SlowClose(b) => match b.poll_eof(now) {
                    Poll::Ready => {}
                    wait => return wait,
                },
                Behaviour::ResetPeer(b) => {
                    b.trigger(now);
                    return Poll::Hold;
                }
                _ => {}
            }
        }
        Poll::Ready
    }

    /// Whether no toxic of this link applies (none listed, or every one lost its toxicity
    /// roll): then bytes pass unchanged and nothing ends the connection, so the link may take
    /// its zero-copy path.
    pub(crate) fn is_transparent(&self) -> bool {
        !self.toxics.iter().any(|t| t.active)
    }

    /// The earliest time a toxic of this link ends the connection, and how.
    pub(crate) fn deadline(&self) -> Option<(Instant, Ending)> {
        self.toxics
            .iter()
            .filter(|t| t.active)
            .filter_map(|t| match &t.behaviour {
                Behaviour::Hold(b) => b.deadline(t.since).map(|at| (at, Ending::Close)),
                Behaviour::Reset(b) => Some((b.deadline(t.since), Ending::Reset)),
                Behaviour::Timeout(b) => b.deadline().map(|at| (at, Ending::Close)),
                Behaviour::ResetPeer(b) => b.deadline().map(|at| (at, Ending::Reset)),
                _ => None,
            })
            .min_by_key(|(at, _)| *at)
    }

    /// How the connection ends once everything that passed is written: a `limit_data` toxic
    /// that reached its limit closes it.
    pub(crate) fn ending(&self) -> Option<Ending> {
        self.toxics
            .iter()
            .any(|t| t.active && matches!(&t.behaviour, Behaviour::LimitData(l) if l.exhausted))
            .then_some(Ending::Close)
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
    /// `sent` carries a `limit_data` count over an update.
    fn new(entry: &ToxicEntry, link_seed: u64, now: Instant, sent: u64) -> Option<LinkToxic> {
        let mut rng = SmallRng::seed_from_u64(mix(mix(link_seed, entry.id), entry.rev));
        // The roll is the first draw, so it depends only on (seed, connection, stream, toxic).
        let active = happens(&mut rng, chance(f64::from(entry.toxic.toxicity)));
        let behaviour = match &entry.toxic.kind {
            ToxicKind::Latency { latency, jitter } => {
                Behaviour::Latency(Latency::new(*latency, *jitter))
            }
            ToxicKind::Bandwidth { rate: 0 } => Behaviour::Stall,
            ToxicKind::Bandwidth { rate } => Behaviour::Bandwidth(Bandwidth::new(*rate, now)),
            ToxicKind::SlowClose { delay } => Behaviour::SlowClose(SlowClose::new(*delay)),
            ToxicKind::Timeout { timeout } => Behaviour::Timeout(Timeout::new(*timeout, now)),
            ToxicKind::ResetPeer { timeout } => Behaviour::ResetPeer(ResetPeer::new(*timeout)),
            ToxicKind::Slicer {
                average_size,
                size_variation,
                delay,
            } => Behaviour::Slicer(Slicer::new(*average_size, *size_variation, *delay)),
            ToxicKind::LimitData { bytes } => Behaviour::LimitData(LimitData::new(*bytes, sent)),
            ToxicKind::Noop => Behaviour::Noop,
            ToxicKind::Corrupt { probability, per } => {
                Behaviour::Corrupt(Corrupt::new(chance(*probability), *per))
            }
            ToxicKind::Loss { probability } => Behaviour::Loss(chance(*probability)),
            ToxicKind::Blackhole => Behaviour::Blackhole,
            ToxicKind::Hold { after } => Behaviour::Hold(Hold::new(*after)),
            ToxicKind::Reset { after } => Behaviour::Reset(Reset::new(*after)),
            // Acts on the listener, not on links (see proxy.rs).
            ToxicKind::Down => return None,
        };
        Some(LinkToxic {
            id: entry.id,
            rev: entry.rev,
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
            Behaviour::Slicer(_) => match booked {
                Some(at) if at > now => (Poll::Until(at), booked),
                _ => (Poll::Ready, None),
            },
            Behaviour::Stall | Behaviour::Hold(_) => (Poll::Hold, None),
            Behaviour::Timeout(b) => {
                b.touch(now);
                (Poll::Drop, None)
            }
            Behaviour::ResetPeer(b) => {
                b.trigger(now);
                (Poll::Drop, None)
            }
            Behaviour::Blackhole => (Poll::Drop, None),
            Behaviour::Loss(p) => {
                let p = *p;
                let lost = happens(&mut self.rng, p);
                (if lost { Poll::Drop } else { Poll::Ready }, None)
            }
            Behaviour::LimitData(b) => {
                // Exhausted: what comes after the limit is dropped; the link closes once idle.
                (if b.exhausted { Poll::Drop } else { Poll::Ready }, None)
            }
            Behaviour::SlowClose(_)
            | Behaviour::Noop
            | Behaviour::Reset(_)
            | Behaviour::Corrupt(_) => (Poll::Ready, None),
        };
        if let Some(when) = release {
            chunk.release = Some((self.id, when));
        }
        poll
    }

    /// Lets the chunk pass (after `poll` said `Ready`); returns the part left behind, if any.
    /// May leave `chunk` empty (all of it cut away), which the caller drops.
    fn pass(&mut self, chunk: &mut Chunk, now: Instant) -> Option<Chunk> {
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
            Behaviour::Slicer(b) => {
                let piece = b.next_piece(chunk.data.len(), &mut self.rng);
                if piece >= chunk.data.len() {
                    return None;
                }
                let rest = chunk.data.split_off(piece);
                let release = (!b.delay.is_zero()).then(|| (self.id, now + b.delay));
                Some(Chunk {
                    data: rest,
                    stamp: chunk.stamp,
                    next: self.id,
                    release,
                })
            }
            Behaviour::LimitData(b) => {
                let take = b.admit(chunk.data.len());
                chunk.data.truncate(take);
                None
            }
            Behaviour::Corrupt(b) => {
                b.apply(&mut chunk.data, &mut self.rng);
                None
            }
            Behaviour::Stall
            | Behaviour::SlowClose(_)
            | Behaviour::Timeout(_)
            | Behaviour::ResetPeer(_)
            | Behaviour::Noop
            | Behaviour::Loss(_)
            | Behaviour::Blackhole
            | Behaviour::Hold(_)
            | Behaviour::Reset(_) => None,
        }
    }
}

#[cfg(test)]
mod tests;
