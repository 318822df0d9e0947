//! One direction of one connection: a reader that stamps and queues chunks, and a writer that
//! moves them through the link's toxic [`Chain`] and writes them out.
//!
//! Reading and writing are separate futures joined in one task, so a chunk held by a toxic
//! (latency, bandwidth, timeout) does not stop the next ones from being read: their latency
//! counts from when they were read, as in Toxiproxy. The queue between them is bounded
//! ([`CHUNKS_IN_FLIGHT`]), which is where backpressure reaches the sending peer.
//!
//! The writer looks at the toxic list (a `watch` channel) between every two steps, so toxics
//! added or removed apply to this open link at the next chunk boundary. Every wait of the writer
//! is a `select!` over cancel-safe futures only (`sleep`, `recv`, `changed`, one `write` call),
//! so reacting to a change never loses part of a write.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use chaosforge::fault::net::Stream;
use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use crate::conn::{Conn, ConnState};
use crate::metrics::LinkCounters;
use crate::model::stream_name;
use crate::proxy::Shared;
use crate::toxic::{Chain, Chunk, Next, Poll, Reconciled, ToxicList};

/// Largest read, and so the largest chunk (Toxiproxy's `io.Copy` buffer is the same size).
pub(crate) const CHUNK_SIZE: usize = 32 * 1024;

/// Chunks read ahead of the writer. Large enough that latency does not cap throughput (Toxiproxy
/// buffers 1024 chunks too); the memory it may take is bounded by `CHUNK_SIZE` times this.
const CHUNKS_IN_FLIGHT: usize = 1024;

/// Tokio's timer ticks every millisecond and rounds a deadline up to the next tick, so a sleep
/// ends 1-2 ms late. Treating whatever is due within one tick as due now centres the error of
/// a release time on zero (within about ±1 ms) instead of always late.
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// One direction of a connection: from `src` to `dst` through the toxics of `stream`.
#[derive(Debug)]
pub(crate) struct Link<'c> {
    pub(crate) stream: Stream,
    pub(crate) conn: &'c Conn,
    pub(crate) shared: &'c Shared,
    /// The proxy's toxic list; the writer reconciles its chain with it between steps.
    pub(crate) toxics: watch::Receiver<ToxicList>,
    /// Seeds this link's toxics (proxy seed, connection number, stream).
    pub(crate) seed: u64,
    /// Byte counters of this direction, when the proxy has metrics.
    pub(crate) counters: Option<LinkCounters>,
}

/// What the writer is waiting for in one turn of its loop.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// A new chunk (or the end of the stream) from the reader.
    Chunk,
    /// A toxic releases the front chunk at that time.
    Until(Instant),
    /// Only a toxic change, a toxic deadline or the end of the connection can help.
    Change,
}

impl Link<'_> {
    /// Pumps bytes until the connection ends. Returns only once both halves may be dropped.
    pub(crate) async fn run(self, src: OwnedReadHalf, dst: OwnedWriteHalf) {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let (conn, stream, counters) = (self.conn, self.stream, self.counters.clone());
        tokio::join!(read(conn, stream, counters, src, tx), self.write(dst, rx));
    }

    /// The writer: advances queued chunks through the chain, writes them, forwards EOF as a
    /// half-close, and carries out toxic deadlines (timeout, reset) for the whole connection.
    async fn write(mut self, mut dst: OwnedWriteHalf, mut rx: mpsc::Receiver<Chunk>) {
        let mut state = self.conn.subscribe();
        let mut chain = Chain::new(self.stream, self.seed);
        let changes = chain.reconcile(&self.toxics.borrow_and_update(), Instant::now());
        self.apply(changes);
        let mut work: VecDeque<Chunk> = VecDeque::new();
        // The reader is done (EOF or error) and every chunk it sent is in `work`.
        let mut eof = false;
        // EOF was passed on to `dst`: nothing more to write, only deadlines and the end remain.
        let mut drained = false;
        // False once the proxy is gone (its sender dropped): stop waiting for changes.
        let mut watching = true;
        loop {
            if watching && self.toxics.has_changed().unwrap_or(false) {
                let changes = chain.reconcile(&self.toxics.borrow_and_update(), Instant::now());
                self.apply(changes);
            }
            if work.is_empty()
                && let Some(ending) = chain.ending()
            {
                // Everything that passed is written (limit_data reached): end like Toxiproxy.
                self.conn.end(ending);
            }
            let wait = match chain.advance(&mut work, Instant::now() + TIMER_SLACK) {
                Next::Write => {
                    if let Some(chunk) = work.pop_front()
                        && let Err(end) = self
                            .write_chunk(&mut dst, &mut state, &chain, &chunk.data)
                            .await
                    {
                        return finish(dst, end);
                    }
                    continue;
                }
                Next::Wait(at) => Wait::Until(at),
                Next::Hold => Wait::Change,
                Next::Idle if !eof => Wait::Chunk,
                Next::Idle if drained => Wait::Change,
                Next::Idle => match chain.poll_eof(Instant::now() + TIMER_SLACK) {
                    Poll::Until(at) => Wait::Until(at),
                    Poll::Hold | Poll::Drop => Wait::Change,
                    Poll::Ready => {
                        // Propagate the half-close; the other direction goes on.
                        if let Err(error) = dst.shutdown().await {
                            tracing::debug!(conn = self.conn.id(), ?error, "half-close failed");
                        }
                        drained = true;
                        self.conn.drained();
                        continue;
                    }
                },
            };
            let deadline = chain.deadline();
            // Placeholders where a branch is disabled: `select!` still evaluates the expression.
            let end_at = deadline.map_or_else(Instant::now, |(at, _)| at);
            let wake_at = match wait {
                Wait::Until(at) => at.checked_sub(TIMER_SLACK).unwrap_or(at),
                Wait::Chunk | Wait::Change => Instant::now(),
            };
            tokio::select! {
                biased;
                end = closed(&mut state) => return finish(dst, end),
                // `changed` marks the new list as seen, so reconcile here and now.
                changed = self.toxics.changed(), if watching => match changed {
                    Ok(()) => {
                        let changes =
                            chain.reconcile(&self.toxics.borrow_and_update(), Instant::now());
                        self.apply(changes);
                    }
                    Err(_) => watching = false,
                },
                _ = sleep_until(end_at), if deadline.is_some() => {
                    if let Some((_, ending)) = deadline {
                        self.conn.end(ending);
                    }
                }
                _ = sleep_until(wake_at), if matches!(wait, Wait::Until(_)) => {}
                chunk = rx.recv(), if matches!(wait, Wait::Chunk) => match chunk {
                    Some(chunk) => work.push_back(chunk),
                    None => eof = true,
                },
            }
        }
    }

    /// Writes one chunk, one cancel-safe `write` call at a time, while still honouring the end
    /// of the connection and this link's toxic deadline (a peer that stops reading must not
    /// keep a reset or timeout from happening).
    async fn write_chunk(
        &self,
        dst: &mut OwnedWriteHalf,
        state: &mut watch::Receiver<ConnState>,
        chain: &Chain,
        mut data: &[u8],
    ) -> Result<(), ConnState> {
        let deadline = chain.deadline();
        let end_at = deadline.map_or_else(Instant::now, |(at, _)| at);
        while !data.is_empty() {
            tokio::select! {
                biased;
                end = closed(state) => return Err(end),
                _ = sleep_until(end_at), if deadline.is_some() => {
                    if let Some((_, ending)) = deadline {
                        self.conn.end(ending);
                    }
                }
                written = dst.write(data) => match written {
                    Ok(0) => return Err(self.conn.fail(&io::Error::from(io::ErrorKind::WriteZero))),
                    Ok(n) => {
                        data = &data[n..];
                        if let Some(counters) = &self.counters {
                            counters.sent.inc_by(n as u64);
                        }
                    }
                    Err(error) => return Err(self.conn.fail(&error)),
                },
            }
        }
        Ok(())
    }
}

impl Link<'_> {
    /// Acts on what a reconcile changed: counts activations, ends the connection if a removed
    /// toxic says so.
    fn apply(&self, changes: Reconciled) {
        if let Some(metrics) = self.shared.metrics() {
            for (toxic, kind) in &changes.activated {
                metrics.activated(self.shared.name(), toxic, kind, stream_name(self.stream));
            }
        }
        if let Some(ending) = changes.ending {
            self.conn.end(ending);
        }
    }
}

/// The reader: reads chunks from `src`, stamps them, counts them, queues them. Dropping `tx`
/// tells the writer the stream ended; a read error ends the whole connection.
async fn read(
    conn: &Conn,
    stream: Stream,
    counters: Option<LinkCounters>,
    mut src: OwnedReadHalf,
    tx: mpsc::Sender<Chunk>,
) {
    let mut state = conn.subscribe();
    let mut buf = BytesMut::new();
    loop {
        buf.reserve(CHUNK_SIZE);
        // `limit` caps a read at one chunk even when `buf` has more spare capacity.
        let mut room = (&mut buf).limit(CHUNK_SIZE);
        let read = tokio::select! {
            biased;
            _ = closed(&mut state) => return,
            read = src.read_buf(&mut room) => read,
        };
        match read {
            Ok(0) => return,
            Ok(n) => {
                conn.count(stream, n);
                if let Some(counters) = &counters {
                    counters.received.inc_by(n as u64);
                }
                let chunk = Chunk::new(buf.split(), Instant::now());
                tokio::select! {
                    biased;
                    _ = closed(&mut state) => return,
                    sent = tx.send(chunk) => if sent.is_err() { return },
                }
            }
            Err(error) => {
                conn.fail(&error);
                return;
            }
        }
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

/// Lets go of the write half the way the connection ends: with a FIN, or with an RST.
fn finish(dst: OwnedWriteHalf, end: ConnState) {
    if end == ConnState::Reset {
        // SO_LINGER 0 makes the final close send RST. `forget` skips the shutdown(Write) a
        // dropped write half does, which would send a FIN first and let the peer see EOF.
        if let Err(error) = SockRef::from(dst.as_ref()).set_linger(Some(Duration::ZERO)) {
            tracing::debug!(
                ?error,
                "cannot set SO_LINGER 0; the peer sees a FIN instead of RST"
            );
        }
        dst.forget();
    }
}
