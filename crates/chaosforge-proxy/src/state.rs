//! What the listener, its connections and their links share, so that each layer can take it
//! from below instead of importing the layer above: the proxy's [`Shared`] state (toxic list,
//! connection registry, metrics, seed, options), one connection's [`Conn`] handle and
//! [`ConnState`], and the [`ConnectionInfo`] snapshot the HTTP API lists.
//!
//! A leaf among the three: it imports `toxic`, `metrics` and `model` only.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use chaosforge::fault::net::Stream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::{ByteLabels, LinkCounters, Metrics};
use crate::model::stream_name;
use crate::toxic::{Ending, ToxicEntry, ToxicList};

/// One open connection, as `GET /proxies/{name}/connections` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Accept number within the proxy.
    pub id: u64,
    /// The client's address.
    pub client: SocketAddr,
    /// Bytes read from the client so far.
    pub upstream_bytes: u64,
    /// Bytes read from the upstream so far.
    pub downstream_bytes: u64,
    /// Time since the connection was accepted.
    pub age: Duration,
}

/// What the accept loop and connections share with the proxy handle.
#[derive(Debug)]
pub(crate) struct Shared {
    name: String,
    upstream: RwLock<Arc<str>>,
    /// The concrete address the listener is (or was last) bound to.
    bound: Mutex<Option<SocketAddr>>,
    seed: u64,
    reset_unreachable: AtomicBool,
    metrics: Option<Arc<Metrics>>,
    /// The toxic list every link watches.
    toxics: watch::Sender<ToxicList>,
    /// Open connections by accept number, so `down` and `shutdown` can end them.
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
    next_conn: AtomicU64,
}

/// Whether a connection is open, and if not how its sockets are to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnState {
    /// Bytes flow.
    Open,
    /// Close both sockets normally (FIN).
    Closed,
    /// Close both sockets with RST.
    Reset,
}

/// The shared handle of one connection, kept in the proxy's registry while it lives.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Accept order within the proxy; part of the seed of the connection's toxics.
    id: u64,
    state: watch::Sender<ConnState>,
    /// How many directions have forwarded their EOF; at two the connection is over.
    drained: AtomicU8,
    /// The client's address.
    peer: SocketAddr,
    opened: Instant,
    /// Bytes read so far, indexed by `Stream as usize` (upstream = from the client).
    bytes: [AtomicU64; 2],
}

// === impl Shared ===

impl Shared {
    /// A proxy's state before its first bind: no toxic, no connection.
    pub(crate) fn new(
        name: &str,
        upstream: &str,
        seed: u64,
        reset_unreachable: bool,
        metrics: Option<Arc<Metrics>>,
    ) -> Shared {
        Shared {
            name: name.to_owned(),
            upstream: RwLock::new(Arc::from(upstream)),
            bound: Mutex::new(None),
            seed,
            reset_unreachable: AtomicBool::new(reset_unreachable),
            metrics,
            toxics: watch::Sender::new(Arc::new(Vec::new())),
            conns: Mutex::new(BTreeMap::new()),
            next_conn: AtomicU64::new(0),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn upstream(&self) -> Arc<str> {
        Arc::clone(&self.upstream.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Connections dial the new upstream from their next accept on; open ones keep theirs.
    pub(crate) fn set_upstream(&self, upstream: &str) {
        *self
            .upstream
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::from(upstream);
    }

    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    pub(crate) fn resets_unreachable(&self) -> bool {
        self.reset_unreachable.load(Ordering::Relaxed)
    }

    /// Read when a dial fails, so a change applies to connections accepted from then on.
    pub(crate) fn set_reset_unreachable(&self, reset: bool) {
        self.reset_unreachable.store(reset, Ordering::Relaxed);
    }

    pub(crate) fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_deref()
    }

    pub(crate) fn bound(&self) -> Option<SocketAddr> {
        *self.bound.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Kept after the listener closes: `listen_addr` and the byte counters' `listener` label
    /// still name it while the proxy is down.
    pub(crate) fn set_bound(&self, bound: SocketAddr) {
        *self.bound.lock().unwrap_or_else(PoisonError::into_inner) = Some(bound);
    }

    /// The byte counters of one direction, labelled as Toxiproxy labels them.
    pub(crate) fn link_counters(&self, stream: Stream) -> Option<LinkCounters> {
        let metrics = self.metrics.as_ref()?;
        Some(metrics.link(&ByteLabels {
            direction: stream_name(stream).to_owned(),
            listener: self.bound().map(|a| a.to_string()).unwrap_or_default(),
            proxy: self.name.clone(),
            upstream: self.upstream().to_string(),
        }))
    }

    pub(crate) fn subscribe_toxics(&self) -> watch::Receiver<ToxicList> {
        self.toxics.subscribe()
    }

    /// Drops a closed connection from the registry.
    pub(crate) fn forget_conn(&self, id: u64) {
        if self.lock_conns().remove(&id).is_some()
            && let Some(metrics) = &self.metrics
        {
            metrics.connection(&self.name, -1);
        }
    }

    pub(crate) fn publish(&self, toxics: &[ToxicEntry]) {
        // `send_replace` also works with no receiver (no connection open).
        self.toxics.send_replace(Arc::new(toxics.to_vec()));
    }

    pub(crate) fn register(&self, peer: SocketAddr) -> Arc<Conn> {
        let conn = Arc::new(Conn::new(
            self.next_conn.fetch_add(1, Ordering::Relaxed),
            peer,
        ));
        self.lock_conns().insert(conn.id(), Arc::clone(&conn));
        if let Some(metrics) = &self.metrics {
            metrics.connection(&self.name, 1);
        }
        conn
    }

    pub(crate) fn close_all(&self) {
        for conn in self.lock_conns().values() {
            conn.close();
        }
    }

    pub(crate) fn lock_conns(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        // The map stays consistent even if a holder panicked: every operation is one call.
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Conn ===

impl Conn {
    /// A new open connection with accept number `id`, from the client at `peer`.
    pub(crate) fn new(id: u64, peer: SocketAddr) -> Conn {
        Conn {
            id,
            state: watch::Sender::new(ConnState::Open),
            drained: AtomicU8::new(0),
            peer,
            opened: Instant::now(),
            bytes: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// Counts `n` bytes read for `stream`.
    pub(crate) fn count(&self, stream: Stream, n: usize) {
        self.bytes[stream as usize].fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A snapshot for the connection listing.
    pub(crate) fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            id: self.id,
            client: self.peer,
            upstream_bytes: self.bytes[Stream::Upstream as usize].load(Ordering::Relaxed),
            downstream_bytes: self.bytes[Stream::Downstream as usize].load(Ordering::Relaxed),
            age: self.opened.elapsed(),
        }
    }

    /// The accept number.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Watches the state; [`closed`] resolves once it is no longer open.
    pub(crate) fn subscribe(&self) -> watch::Receiver<ConnState> {
        self.state.subscribe()
    }

    /// Ends the connection gracefully. Idempotent; the first ending wins.
    pub(crate) fn close(&self) {
        self.set(ConnState::Closed);
    }

    /// Ends the connection the way a toxic says.
    pub(crate) fn end(&self, ending: Ending) {
        self.set(match ending {
            Ending::Close => ConnState::Closed,
            Ending::Reset => ConnState::Reset,
        });
    }

    /// Ends the connection after an I/O error on either socket; returns how it ends.
    pub(crate) fn fail(&self, error: &io::Error) -> ConnState {
        tracing::debug!(conn = self.id, %error, "connection error");
        self.set(ConnState::Closed);
        *self.state.borrow()
    }

    /// One direction forwarded its EOF; after both, nothing is left to do.
    pub(crate) fn drained(&self) {
        if self.drained.fetch_add(1, Ordering::AcqRel) + 1 >= 2 {
            self.close();
        }
    }

    fn set(&self, to: ConnState) {
        self.state.send_if_modified(|state| {
            let open = *state == ConnState::Open;
            if open {
                *state = to;
            }
            open
        });
    }
}

/// Resolves when the connection is no longer open, with how it ends.
pub(crate) async fn closed(state: &mut watch::Receiver<ConnState>) -> ConnState {
    match state.wait_for(|s| *s != ConnState::Open).await {
        Ok(s) => *s,
        // The connection's sender lives as long as the connection: gone means over.
        Err(_) => ConnState::Closed,
    }
}
