//! One direction of one connection: bytes from `src` to `dst`, through the link's toxic
//! [`Chain`] or, while no toxic applies, through a pipe with `splice(2)`.
//!
//! A link is in one of two modes and moves between them at a boundary where nothing is lost,
//! duplicated or reordered:
//! - **chunked** (some toxic is active): chunks read from `src` are stamped and queued in
//!   `work`, and the front chunk is moved through the chain and written out. Reading goes on
//!   while the front chunk waits for a toxic (latency, bandwidth, timeout), so later chunks'
//!   latency counts from when they were read, as in Toxiproxy; at most [`CHUNKS_IN_FLIGHT`]
//!   chunks wait, which is where backpressure reaches the sending peer. The link leaves this
//!   mode only with `work` empty.
//! - **spliced** (no active toxic): small reads are copied straight socket → socket through a
//!   per-thread buffer; bulk data (a read that fills the buffer) goes socket → pipe → socket in
//!   the kernel, never copied into this process. The link leaves this mode only with nothing
//!   queued: bytes already read were read before the toxic arrived, like a chunk being written.
//!
//! Both modes wait in one `select!` over cancel-safe futures only (`closed`, `changed`,
//! `sleep`, socket readiness), and do their I/O with non-blocking calls after a readiness
//! wakes them, so reacting to a toxic change or the end of the connection never loses part of
//! a read or a write. The toxic list (a `watch` channel) is looked at between every two steps.
//!
//! Nothing is allocated while a link is idle: a read buffer is taken once `src` is readable and
//! given back when it has nothing more to read, and a pipe is made on the first spliced bytes.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use chaosforge::fault::net::Stream;
use rustix::pipe::{PipeFlags, SpliceFlags, fcntl_setpipe_size, pipe_with, splice};
use socket2::SockRef;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use crate::metrics::{LinkCounters, Metrics};
use crate::model::stream_name;
use crate::state::{Conn, ConnState, closed};
use crate::toxic::{Chain, Chunk, Next, Poll, ToxicList};

/// Largest read, and so the largest chunk (Toxiproxy's `io.Copy` buffer is the same size).
pub(crate) const CHUNK_SIZE: usize = 32 * 1024;

/// Chunks read ahead of the writer. Large enough that latency does not cap throughput (Toxiproxy
/// buffers 1024 chunks too); the memory it may take is bounded by `CHUNK_SIZE` times this.
const CHUNKS_IN_FLIGHT: usize = 1024;

/// Reads, or writes, the chunked mode makes per wake-up at most, so that the toxic list and
/// the end of the connection are looked at often even under a steady stream.
const BATCH: usize = 16;

/// A read at most this long is copied into a chunk of its own size, so that many small chunks
/// waiting in a toxic do not each pin a `CHUNK_SIZE` buffer, and the buffer is reused.
const SMALL_READ: usize = 4 * 1024;

/// Capacity asked for the pipe of a spliced link once it carries bulk data (a splice of a whole
/// chunk or more): more bytes per pair of `splice` calls. Links that only carry small messages
/// keep the default (64 KiB), since the kernel counts a pipe's capacity against a per-user
/// limit (`/proc/sys/fs/pipe-user-pages-soft`); if it refuses, the default is kept.
const PIPE_SIZE: usize = 512 * 1024;

/// Tokio's timer ticks every millisecond and rounds a deadline up to the next tick, so a sleep
/// ends 1-2 ms late. Treating whatever is due within one tick as due now centres the error of
/// a release time on zero (within about ±1 ms) instead of always late.
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// One direction of a connection: from `src` to `dst` through the toxics of `stream`.
#[derive(Debug)]
pub(crate) struct Link<'c> {
    pub(crate) stream: Stream,
    pub(crate) conn: &'c Conn,
    /// The proxy's name and metrics, borrowed from the proxy for the connection's lifetime: a
    /// link needs only these two of its state, to count toxic activations.
    pub(crate) proxy: &'c str,
    pub(crate) metrics: Option<&'c Metrics>,
    /// The proxy's toxic list; the link reconciles its chain with it between steps.
    pub(crate) toxics: watch::Receiver<ToxicList>,
    /// Seeds this link's toxics (proxy seed, connection number, stream).
    pub(crate) seed: u64,
    /// Byte counters of this direction, when the proxy has metrics.
    pub(crate) counters: Option<LinkCounters>,
}

/// Where a link stands, carried across its modes.
#[derive(Debug)]
struct Flow {
    state: watch::Receiver<ConnState>,
    chain: Chain,
    /// `src` reached EOF: nothing more is read.
    eof: bool,
    /// EOF was passed on to `dst`: nothing more to write, only deadlines and the end remain.
    drained: bool,
    /// False once the proxy is gone (its sender dropped): stop waiting for changes.
    watching: bool,
    /// A pipe could not be made (out of file descriptors): stay chunked.
    no_splice: bool,
}

/// How a mode ended.
#[derive(Debug, Clone, Copy)]
enum Exit {
    /// The other mode takes over (nothing is in flight).
    Switch,
    /// The connection is over; close `dst` this way.
    End(ConnState),
}

/// What the chunked mode is waiting for in one turn of its loop (reading goes on meanwhile).
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// The front chunk passed every toxic: `dst` writable.
    Write,
    /// A toxic releases the front chunk (or the end of stream) at that time.
    Until(Instant),
    /// Only a new chunk, a toxic change, a toxic deadline or the end of the connection helps.
    Change,
}

/// The read side of the chunked mode: the buffer reads land in, taken only while reading.
#[derive(Debug, Default)]
struct Reader {
    buf: BytesMut,
}

/// What one non-blocking read gave.
#[derive(Debug)]
enum Read {
    /// These bytes (at most [`CHUNK_SIZE`]).
    Chunk(BytesMut),
    /// Nothing for now.
    Nothing,
    /// The end of the stream.
    Eof,
}

/// What one copy of the transparent mode did.
#[derive(Debug, Clone, Copy)]
enum Copied {
    /// Less than the buffer (or nothing): the socket is drained for now.
    Small,
    /// A whole buffer: more is likely waiting, so the next read splices.
    Full,
    /// The end of the stream.
    Eof,
}

/// A pipe between the two sockets of a spliced link, and how many bytes are in it.
#[derive(Debug)]
struct Pipe {
    rx: OwnedFd,
    tx: OwnedFd,
    len: usize,
    /// Whether growing it to [`PIPE_SIZE`] was tried.
    grown: bool,
}

impl Link<'_> {
    /// Pumps bytes until the connection ends. Returns only once both halves may be dropped.
    pub(crate) async fn run(mut self, src: OwnedReadHalf, mut dst: OwnedWriteHalf) {
        let mut flow = Flow {
            state: self.conn.subscribe(),
            chain: Chain::new(self.stream, self.seed),
            eof: false,
            drained: false,
            watching: true,
            no_splice: false,
        };
        self.reconcile(&mut flow.chain);
        loop {
            let exit = if flow.chain.is_transparent() && !flow.no_splice {
                self.spliced(&src, &mut dst, &mut flow).await
            } else {
                self.chunked(&src, &mut dst, &mut flow).await
            };
            if let Exit::End(end) = exit {
                return finish(dst, end);
            }
        }
    }

    /// The chunked mode: reads chunks, advances them through the chain, writes them, forwards
    /// EOF as a half-close, and carries out toxic deadlines (timeout, reset) for the whole
    /// connection. Returns `Switch` once no toxic applies and nothing is queued.
    async fn chunked(
        &mut self,
        src: &OwnedReadHalf,
        dst: &mut OwnedWriteHalf,
        flow: &mut Flow,
    ) -> Exit {
        let mut work: VecDeque<Chunk> = VecDeque::new();
        let mut reader = Reader::default();
        loop {
            if flow.watching && self.toxics.has_changed().unwrap_or(false) {
                self.reconcile(&mut flow.chain);
            }
            if work.is_empty() {
                if let Some(ending) = flow.chain.ending() {
                    // Everything that passed is written (limit_data reached): end like Toxiproxy.
                    self.conn.end(ending);
                } else if flow.chain.is_transparent() && !flow.no_splice {
                    return Exit::Switch;
                }
            }
            let wait = match flow.chain.advance(&mut work, Instant::now() + TIMER_SLACK) {
                Next::Write => Wait::Write,
                Next::Wait(at) => Wait::Until(at),
                Next::Hold => Wait::Change,
                Next::Idle if !flow.eof || flow.drained => Wait::Change,
                Next::Idle => match flow.chain.poll_eof(Instant::now() + TIMER_SLACK) {
                    Poll::Until(at) => Wait::Until(at),
                    Poll::Hold | Poll::Drop => Wait::Change,
                    Poll::Ready => {
                        self.half_close(dst, flow).await;
                        continue;
                    }
                },
            };
            let read = !flow.eof && work.len() < CHUNKS_IN_FLIGHT;
            let deadline = flow.chain.deadline();
            // Placeholders where a branch is disabled: `select!` still evaluates the expression.
            let end_at = deadline.map_or_else(Instant::now, |(at, _)| at);
            let wake_at = match wait {
                Wait::Until(at) => at.checked_sub(TIMER_SLACK).unwrap_or(at),
                Wait::Write | Wait::Change => Instant::now(),
            };
            tokio::select! {
                biased;
                end = closed(&mut flow.state) => return Exit::End(end),
                // `changed` marks the new list as seen, so reconcile here and now.
                changed = self.toxics.changed(), if flow.watching => match changed {
                    Ok(()) => self.reconcile(&mut flow.chain),
                    Err(_) => flow.watching = false,
                },
                _ = sleep_until(end_at), if deadline.is_some() => {
                    if let Some((_, ending)) = deadline {
                        self.conn.end(ending);
                    }
                }
                _ = sleep_until(wake_at), if matches!(wait, Wait::Until(_)) => {}
                ready = dst.writable(), if matches!(wait, Wait::Write) => {
                    let written = ready.and_then(|()| self.write_ready(dst, &mut work, &mut flow.chain));
                    if let Err(error) = written {
                        return Exit::End(self.conn.fail(&error));
                    }
                }
                ready = src.readable(), if read => {
                    // Several chunks per wake-up while `src` has them: fewer turns of the loop.
                    if let Err(error) = ready {
                        return Exit::End(self.conn.fail(&error));
                    }
                    for _ in 0..BATCH {
                        match reader.read(src) {
                            Ok(Read::Chunk(chunk)) => {
                                self.count_read(chunk.len());
                                work.push_back(Chunk::new(chunk, Instant::now()));
                                if work.len() >= CHUNKS_IN_FLIGHT {
                                    break;
                                }
                            }
                            Ok(Read::Nothing) => break,
                            Ok(Read::Eof) => {
                                flow.eof = true;
                                break;
                            }
                            Err(error) => return Exit::End(self.conn.fail(&error)),
                        }
                    }
                }
            }
        }
    }

    /// Writes what `dst` takes now of the front chunk (which passed every toxic), and of the
    /// chunks after it as long as they pass the chain at once (up to [`BATCH`]).
    fn write_ready(
        &self,
        dst: &OwnedWriteHalf,
        work: &mut VecDeque<Chunk>,
        chain: &mut Chain,
    ) -> io::Result<()> {
        for _ in 0..BATCH {
            let Some(chunk) = work.front_mut() else {
                return Ok(());
            };
            match dst.try_write(&chunk.data) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    self.count_sent(n);
                    chunk.data.advance(n);
                    if !chunk.data.is_empty() {
                        return Ok(());
                    }
                    work.pop_front();
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) => return Err(error),
            }
            if chain.advance(work, Instant::now() + TIMER_SLACK) != Next::Write {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The transparent mode (no active toxic): moves bytes `src` → `dst` unchanged and forwards
    /// EOF as a half-close. Returns `Switch` once a toxic applies and nothing is in flight.
    ///
    /// Small reads are copied straight from socket to socket through a per-thread buffer: for
    /// them a pipe costs more system calls than the copy saves (splice in, splice out, and a
    /// third splice to learn that the socket is empty). Once a read fills the whole buffer,
    /// bytes are spliced through a pipe instead (zero-copy), until a splice moves less than a
    /// chunk again. Whatever `dst` could not take stays queued (in the pipe, or in `rest`), and
    /// nothing is read while anything is queued, so the two ways never reorder bytes.
    ///
    /// Bytes are spliced in only into an empty pipe: a `splice` that would block cannot say
    /// whether the socket or the pipe is the reason, and only the socket's may clear its
    /// readiness (clearing it for a full pipe would miss the next wake-up).
    async fn spliced(
        &mut self,
        src: &OwnedReadHalf,
        dst: &mut OwnedWriteHalf,
        flow: &mut Flow,
    ) -> Exit {
        let mut pipe: Option<Pipe> = None;
        // Copied bytes `dst` did not take yet; allocated only when a write falls short.
        let mut rest = BytesMut::new();
        // The last read was bulk: splice the next one.
        let mut bulk = false;
        loop {
            if flow.watching && self.toxics.has_changed().unwrap_or(false) {
                self.reconcile(&mut flow.chain);
            }
            let switching = !flow.chain.is_transparent();
            let queued = pipe.as_ref().map_or(0, |p| p.len) + rest.len();
            if queued == 0 {
                if switching {
                    return Exit::Switch;
                }
                if flow.eof && !flow.drained {
                    self.half_close(dst, flow).await;
                    continue;
                }
            }
            let read = queued == 0 && !flow.eof && !switching;
            // A toxic arrived while bytes were queued: its deadline runs already.
            let deadline = flow.chain.deadline();
            let end_at = deadline.map_or_else(Instant::now, |(at, _)| at);
            tokio::select! {
                biased;
                end = closed(&mut flow.state) => return Exit::End(end),
                changed = self.toxics.changed(), if flow.watching => match changed {
                    Ok(()) => self.reconcile(&mut flow.chain),
                    Err(_) => flow.watching = false,
                },
                _ = sleep_until(end_at), if deadline.is_some() => {
                    if let Some((_, ending)) = deadline {
                        self.conn.end(ending);
                    }
                }
                ready = dst.writable(), if queued > 0 => {
                    let written = ready.and_then(|()| match &mut pipe {
                        Some(pipe) if pipe.len > 0 => self.splice_out(pipe, dst),
                        _ => self.write_rest(&mut rest, dst),
                    });
                    if let Err(error) = written {
                        return Exit::End(self.conn.fail(&error));
                    }
                }
                ready = src.readable(), if read => {
                    if let Err(error) = ready {
                        return Exit::End(self.conn.fail(&error));
                    }
                    if !bulk || flow.no_splice {
                        match self.copy(src, dst, &mut rest) {
                            Ok(Copied::Small) => {}
                            Ok(Copied::Full) => bulk = true,
                            Ok(Copied::Eof) => flow.eof = true,
                            Err(error) => return Exit::End(self.conn.fail(&error)),
                        }
                        continue;
                    }
                    let pipe = match &mut pipe {
                        Some(pipe) => pipe,
                        None => match Pipe::new() {
                            Ok(made) => pipe.insert(made),
                            Err(error) => {
                                let conn = self.conn.id();
                                tracing::debug!(conn, %error, "cannot make a pipe; copying instead");
                                flow.no_splice = true;
                                continue;
                            }
                        },
                    };
                    match self.splice_in(src, pipe) {
                        Ok(Some(n)) => bulk = n >= CHUNK_SIZE,
                        Ok(None) => {}
                        Err(error) => return Exit::End(self.conn.fail(&error)),
                    }
                    if pipe.len == 0 && !bulk {
                        // Nothing came (or EOF): the copy path looks again and sees which.
                        continue;
                    }
                    // Most often `dst` can take the bytes at once: save a turn of the loop.
                    if let Err(error) = self.splice_out(pipe, dst) {
                        return Exit::End(self.conn.fail(&error));
                    }
                }
            }
        }
    }

    /// Copies what `src` has now (up to [`CHUNK_SIZE`]) to `dst` through this thread's copy
    /// buffer, queueing in `rest` what `dst` does not take at once.
    fn copy(
        &self,
        src: &OwnedReadHalf,
        dst: &OwnedWriteHalf,
        rest: &mut BytesMut,
    ) -> io::Result<Copied> {
        COPY_BUF.with_borrow_mut(|buf| {
            let n = match read_draining(src, &mut buf[..]) {
                Ok(0) => return Ok(Copied::Eof),
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Copied::Small);
                }
                Err(error) => return Err(error),
            };
            self.count_read(n);
            let sent = match dst.try_write(&buf[..n]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(sent) => sent,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => 0,
                Err(error) => return Err(error),
            };
            self.count_sent(sent);
            rest.extend_from_slice(&buf[sent..n]);
            Ok(if n == buf.len() {
                Copied::Full
            } else {
                Copied::Small
            })
        })
    }

    /// Writes what `dst` takes now of the copied bytes it did not take before.
    fn write_rest(&self, rest: &mut BytesMut, dst: &OwnedWriteHalf) -> io::Result<()> {
        match dst.try_write(rest) {
            Ok(0) if !rest.is_empty() => Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => {
                self.count_sent(n);
                rest.advance(n);
                if rest.is_empty() {
                    // A link that fell behind once may stay idle for long: let the buffer go.
                    *rest = BytesMut::new();
                }
                Ok(())
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Splices what `src` has into the (empty) pipe: how many bytes, `Some(0)` at EOF, `None`
    /// if it had nothing.
    fn splice_in(&self, src: &OwnedReadHalf, pipe: &mut Pipe) -> io::Result<Option<usize>> {
        let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
        let socket = src.as_ref();
        match socket.try_io(Interest::READABLE, || {
            Ok(splice(socket, None, &pipe.tx, None, PIPE_SIZE, flags)?)
        }) {
            Ok(n) => {
                pipe.len += n;
                self.count_read(n);
                if n >= CHUNK_SIZE && !pipe.grown {
                    pipe.grow();
                }
                Ok(Some(n))
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Splices what `dst` takes now out of the pipe.
    fn splice_out(&self, pipe: &mut Pipe, dst: &OwnedWriteHalf) -> io::Result<()> {
        if pipe.len == 0 {
            return Ok(());
        }
        let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
        let socket = dst.as_ref();
        match socket.try_io(Interest::WRITABLE, || {
            Ok(splice(&pipe.rx, None, socket, None, pipe.len, flags)?)
        }) {
            Ok(0) => Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => {
                pipe.len -= n;
                self.count_sent(n);
                Ok(())
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Propagates the end of `src` as a half-close of `dst`; the other direction goes on.
    async fn half_close(&self, dst: &mut OwnedWriteHalf, flow: &mut Flow) {
        if let Err(error) = dst.shutdown().await {
            tracing::debug!(conn = self.conn.id(), ?error, "half-close failed");
        }
        flow.drained = true;
        self.conn.drained();
    }

    /// Brings the chain up to date with the latest toxic list and acts on what changed: counts
    /// activations, ends the connection if a removed toxic says so.
    fn reconcile(&mut self, chain: &mut Chain) {
        let changes = chain.reconcile(&self.toxics.borrow_and_update(), Instant::now());
        if let Some(metrics) = self.metrics {
            for (toxic, kind) in &changes.activated {
                metrics.activated(self.proxy, toxic, kind, stream_name(self.stream));
            }
        }
        if let Some(ending) = changes.ending {
            self.conn.end(ending);
        }
    }

    fn count_read(&self, n: usize) {
        self.conn.count(self.stream, n);
        if let Some(counters) = &self.counters {
            counters.received.inc_by(n as u64);
        }
    }

    fn count_sent(&self, n: usize) {
        if let Some(counters) = &self.counters {
            counters.sent.inc_by(n as u64);
        }
    }
}

// === impl Reader ===

impl Reader {
    /// Reads what `src` has now, up to one chunk. Gives the buffer back when there is nothing
    /// more to read: the link may stay idle for long.
    fn read(&mut self, src: &OwnedReadHalf) -> io::Result<Read> {
        self.buf.reserve(CHUNK_SIZE);
        // `limit` caps a read at one chunk even when `buf` has more spare capacity.
        let mut room = (&mut self.buf).limit(CHUNK_SIZE);
        match src.try_read_buf(&mut room) {
            Ok(0) => {
                self.buf = BytesMut::new();
                Ok(Read::Eof)
            }
            Ok(n) if n <= SMALL_READ => {
                let chunk = BytesMut::from(&self.buf[..]);
                self.buf.clear();
                Ok(Read::Chunk(chunk))
            }
            Ok(_) => Ok(Read::Chunk(self.buf.split())),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                self.buf = BytesMut::new();
                Ok(Read::Nothing)
            }
            Err(error) => Err(error),
        }
    }
}

// === impl Pipe ===

impl Pipe {
    /// An empty non-blocking pipe of the default size.
    fn new() -> io::Result<Pipe> {
        let (rx, tx) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        Ok(Pipe {
            rx,
            tx,
            len: 0,
            grown: false,
        })
    }

    /// Makes the pipe as large as the kernel lets it be, up to [`PIPE_SIZE`]; once.
    fn grow(&mut self) {
        self.grown = true;
        if let Err(error) = fcntl_setpipe_size(&self.tx, PIPE_SIZE) {
            tracing::trace!(%error, "cannot grow a pipe; keeping its size");
        }
    }
}

thread_local! {
    /// The transparent mode's copy buffer: one per thread rather than per link, since it never
    /// holds bytes across an `await` (what `dst` does not take moves to the link's own `rest`),
    /// so idle links own no buffer.
    static COPY_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; CHUNK_SIZE].into_boxed_slice());
}

/// Reads what `src` has into `buf` (`Ok(0)` at EOF). A read that does not fill `buf` has
/// emptied the socket's queue (a stream socket hands over what it holds), so the readiness is
/// cleared then, as tokio's own `poll_read` does: that saves the extra read that would only
/// say "would block", one system call per message of a ping-pong.
fn read_draining(src: &OwnedReadHalf, buf: &mut [u8]) -> io::Result<usize> {
    let socket = src.as_ref();
    let len = buf.len();
    let mut short = None;
    let read = socket.try_io(Interest::READABLE, || {
        let n = rustix::io::read(socket, &mut *buf)?;
        if 0 < n && n < len {
            short = Some(n);
            // `try_io` clears the readiness (unless an event came meanwhile) only on this.
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        Ok(n)
    });
    match (read, short) {
        (Err(_), Some(n)) => Ok(n),
        (read, _) => read,
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
