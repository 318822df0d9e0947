//! One proxied connection: dialling the upstream, the two [`Link`]s, and the shared
//! [`ConnState`] through which any part (a link, a toxic deadline, `down`, `shutdown`) ends it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use chaosforge::fault::net::Stream;
use socket2::SockRef;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::link::{Link, closed};
use crate::proxy::{ConnectionInfo, Shared};
use crate::toxic::{Ending, mix};

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

/// Removes a connection from the registry however its task ends (even if cancelled).
struct Deregister<'a> {
    shared: &'a Shared,
    id: u64,
}

/// Serves one accepted client until the connection ends. Never fails: errors are logged and end
/// only this connection.
pub(crate) async fn serve(shared: Arc<Shared>, conn: Arc<Conn>, client: TcpStream) {
    let _registered = Deregister {
        shared: &shared,
        id: conn.id,
    };
    let mut state = conn.subscribe();
    let target = shared.upstream();
    // Like Toxiproxy, accept first and dial afterwards: a failed dial shows as connect + EOF.
    let upstream = tokio::select! {
        biased;
        _ = closed(&mut state) => return,
        dialled = TcpStream::connect(&*target) => match dialled {
            Ok(upstream) => upstream,
            Err(error) => {
                let proxy = shared.name();
                tracing::debug!(proxy, conn = conn.id, %error, "cannot dial upstream");
                if shared.resets_unreachable() {
                    // RST instead of FIN: the client sees the connection fail, not an empty
                    // answer it might take for a valid one.
                    if let Err(error) = SockRef::from(&client).set_linger(Some(Duration::ZERO)) {
                        tracing::debug!(conn = conn.id, %error, "cannot set SO_LINGER 0");
                    }
                }
                return;
            }
        },
    };
    // Small writes must not wait for Nagle: they would add tens of ms to what toxics do.
    for socket in [&client, &upstream] {
        if let Err(error) = socket.set_nodelay(true) {
            tracing::debug!(conn = conn.id, %error, "cannot set TCP_NODELAY");
        }
    }
    let (client_r, client_w) = client.into_split();
    let (upstream_r, upstream_w) = upstream.into_split();
    let link = |stream: Stream| Link {
        stream,
        conn: &conn,
        shared: &shared,
        toxics: shared.subscribe_toxics(),
        seed: mix(mix(shared.seed(), conn.id), stream as u64),
        counters: shared.link_counters(stream),
    };
    tokio::join!(
        link(Stream::Upstream).run(client_r, upstream_w),
        link(Stream::Downstream).run(upstream_r, client_w),
    );
    tracing::trace!(proxy = shared.name(), conn = conn.id, "connection closed");
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

impl Drop for Deregister<'_> {
    fn drop(&mut self) {
        self.shared.forget_conn(self.id);
    }
}
