//! NFQUEUE: a userspace delayer, corrupter and reorderer for kernels without netem.
//!
//! Some kernels ship without `sch_netem` and without nft's `queue` statement, but the iptables
//! `NFQUEUE` target and `nfnetlink_queue` work. A rule such as
//! `iptables -t mangle -A OUTPUT … -j NFQUEUE --queue-num N --queue-bypass` hands matching
//! packets to queue `N`; [`QueueHandle::start`] binds that queue on a thread of its own and gives
//! every packet its verdict late, with a bit flipped, or behind later packets, as a [`Behaviour`]
//! says.
//!
//! The contract with the caller: start the handler, then add the rules; remove the rules, then
//! stop. Neither step drops a packet: with `--queue-bypass` an unbound queue lets packets pass,
//! the queue fails open when it is full, and stopping accepts every packet still held before it
//! unbinds.
//!
//! ```no_run
//! use std::time::Duration;
//! use chaosforge::fault::host::nfqueue::{Behaviour, QueueHandle};
//!
//! let behaviour = Behaviour {
//!     delay: Duration::from_millis(50),
//!     jitter: Duration::from_millis(5),
//!     corrupt: 0.0,
//!     reorder: None,
//! };
//! // Bound in namespace `blue` when this returns; now add the NFQUEUE rule for queue 3 there.
//! let handle = QueueHandle::start(Some("blue"), 3, behaviour, 42)?;
//! // … traffic is delayed 45–55 ms …
//! // Remove the rule, then stop: held packets leave at once.
//! let stats = handle.stop()?;
//! println!("{} packets delayed", stats.delayed);
//! # Ok::<(), chaosforge::fault::host::nfqueue::NfqError>(())
//! ```
//!
//! The wire protocol (nfnetlink_queue over a raw `NETLINK_NETFILTER` socket) is encoded and
//! decoded by pure functions, and every random choice is a pure function of the seed and the
//! packet order, so both are unit-tested without root.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink};
// The handler thread runs outside any tokio runtime, so this is always the real monotonic clock
// (never paused test time), which is what kernel-side packets live by.
use tokio::time::Instant;

/// What the handler does to each queued packet.
///
/// Effects combine: a packet's hold time is `delay ± jitter`, plus the reorder gap if it is
/// picked for reordering; corruption is decided independently.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Added to every packet.
    pub delay: Duration,
    /// Each packet's delay is drawn uniformly from `[delay - jitter, delay + jitter]`, clamped at
    /// zero. Packets whose draws cross overtake each other, as with netem.
    pub jitter: Duration,
    /// Chance, in `0.0..=1.0`, that a packet gets one random bit flipped in its transport header
    /// or payload (after the IP header: IPv4 by its IHL, IPv6 as 40 bytes) and is re-injected
    /// with that payload. The IP header is never touched, so the packet still routes.
    pub corrupt: f64,
    /// With `probability`, a packet is held back an extra `gap` so later packets overtake it.
    pub reorder: Option<Reorder>,
}

/// Reordering: some packets are held back so that later ones overtake them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reorder {
    /// Chance, in `0.0..=1.0`, that a packet is held back.
    pub probability: f64,
    /// How much longer a held-back packet waits than its delay alone.
    pub gap: Duration,
}

/// What the handler has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets the kernel handed to the queue.
    pub received: u64,
    /// Packets held for a non-zero time before their verdict.
    pub delayed: u64,
    /// Packets re-injected with one bit flipped.
    pub corrupted: u64,
    /// Packets held back by the reorder gap.
    pub reordered: u64,
    /// Packets given their `NF_ACCEPT` verdict.
    pub accepted: u64,
}

/// Why the NFQUEUE handler could not start, run or stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NfqError {
    /// A probability in the [`Behaviour`] lies outside `0.0..=1.0`.
    #[error("invalid NFQUEUE behaviour: {field} must be within 0.0..=1.0, got {value}")]
    InvalidBehaviour {
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// The network namespace could not be entered.
    #[error("cannot open network namespace `{name}` (/run/netns/{name}): {source}")]
    Netns {
        /// The namespace name.
        name: String,
        /// What failed.
        source: io::Error,
    },
    /// This kernel or namespace has no usable nfnetlink_queue.
    #[error("nfnetlink_queue is unavailable: {what}: {source}")]
    Unavailable {
        /// What was tried.
        what: &'static str,
        /// What failed.
        source: io::Error,
    },
    /// Another netlink socket (usually another process) owns the queue.
    #[error(
        "NFQUEUE {queue} is already bound by another process{}",
        owner.map_or(String::new(), |p| format!(" (netlink port {p})"))
    )]
    QueueBusy {
        /// The queue number.
        queue: u16,
        /// The owner's netlink port id, when `/proc` shows it.
        owner: Option<u32>,
    },
    /// The caller lacks `CAP_NET_ADMIN` in the namespace.
    #[error(
        "not permitted to bind NFQUEUE {queue}: CAP_NET_ADMIN is needed in the network namespace"
    )]
    PermissionDenied {
        /// The queue number.
        queue: u16,
    },
    /// The kernel answered a configuration request with an error.
    #[error("the kernel refused to {request} NFQUEUE {queue}: {source}")]
    Refused {
        /// The queue number.
        queue: u16,
        /// What was asked (`bind`, `unbind`, …).
        request: &'static str,
        /// The kernel's errno.
        source: io::Error,
    },
    /// Reading or writing the netlink socket failed.
    #[error("netlink I/O error while {doing}: {source}")]
    Io {
        /// What the handler was doing.
        doing: &'static str,
        /// What failed.
        source: io::Error,
    },
    /// The handler thread could not be created.
    #[error("cannot start the NFQUEUE handler thread: {0}")]
    Spawn(#[source] io::Error),
    /// The handler thread panicked (a bug); the kernel has dropped the packets it held.
    #[error("the NFQUEUE handler thread panicked")]
    Panicked,
}

/// A running queue handler. [`QueueHandle::stop`] (or dropping it) accepts every packet still
/// held and unbinds the queue.
#[derive(Debug)]
#[must_use = "dropping a QueueHandle stops the handler at once"]
pub struct QueueHandle {
    queue: u16,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    /// An eventfd the handler polls, so a stop request ends its wait at once.
    wake: Arc<OwnedFd>,
    thread: Option<JoinHandle<Result<Stats, NfqError>>>,
}

// === wire format: linux/netlink.h, linux/netfilter/nfnetlink{,_queue}.h ===

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLA_HDRLEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
/// `nla_type` may carry NLA_F_NESTED and NLA_F_NET_BYTEORDER; neither changes the type.
const NLA_TYPE_MASK: u16 = !(0x8000 | 0x4000);

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = NFNL_SUBSYS_QUEUE << 8;
const NFQNL_MSG_VERDICT: u16 = (NFNL_SUBSYS_QUEUE << 8) | 1;
const NFQNL_MSG_CONFIG: u16 = (NFNL_SUBSYS_QUEUE << 8) | 2;
const AF_UNSPEC: u8 = 0;

const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_CFG_CMD_UNBIND: u8 = 2;
const NFQA_CFG_F_FAIL_OPEN: u32 = 1;
const NFQA_CFG_F_GSO: u32 = 4;

const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_PAYLOAD: u16 = 10;
const NFQA_CAP_LEN: u16 = 13;
const NF_ACCEPT: u32 = 1;

/// The kernel copies at most this much (`NFQNL_MAX_COPY_RANGE`: a u16 attribute length).
const MAX_COPY_RANGE: u32 = 0xffff - NLA_HDRLEN as u32;

// === tuning ===

/// Packets the kernel may hold for us at once; beyond that FAIL_OPEN accepts them unqueued.
const QUEUE_MAXLEN: u32 = 8192;
/// A burst must fit in the socket: an overflow costs ENOBUFS and undelayed (failed-open) packets.
const SOCKET_RCVBUF: usize = 8 << 20;
/// One received datagram: a full 64 KiB packet plus its metadata attributes.
const RECV_BUFFER: usize = 128 << 10;
/// Verdicts are sent in batches up to this size; netlink refuses messages near `SO_SNDBUF`.
const BATCH_LIMIT: usize = 96 << 10;
/// The longest wait without looking at the stop flag (the eventfd normally cuts it short).
const MAX_IDLE: Duration = Duration::from_millis(20);
/// Datagrams read per turn, so that due verdicts are not starved by a flood.
const READS_PER_TURN: usize = 256;
/// How long the kernel may take to acknowledge a configuration request.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How many queue numbers [`probe`] tries when others race it for the same one.
const PROBE_ATTEMPTS: usize = 8;

/// How much of each packet the kernel copies to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyMode {
    /// Metadata only: enough to delay and reorder.
    Meta,
    /// The whole packet, to corrupt it.
    Packet,
}

/// A netlink message in a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NlMsg<'a> {
    ty: u16,
    seq: u32,
    /// Everything after the 16-byte header.
    body: &'a [u8],
}

/// A datagram or message whose lengths do not add up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Malformed(&'static str);

/// The netlink messages of one datagram, in order; ends at the first malformed one.
#[derive(Debug)]
struct Msgs<'a> {
    rest: &'a [u8],
}

/// The attributes of a message body, in order; ends at the first malformed one.
#[derive(Debug)]
struct Attrs<'a> {
    rest: &'a [u8],
}

/// A queued packet as the kernel describes it (`NFQNL_MSG_PACKET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PacketMsg<'a> {
    /// `AF_INET` or `AF_INET6`, from the nfgenmsg.
    family: u8,
    id: u32,
    hw_protocol: u16,
    hook: u8,
    /// The packet from its IP header on, when the copy mode asks for it.
    payload: Option<&'a [u8]>,
    /// The packet's full length, present only when `payload` is cut short.
    cap_len: Option<u32>,
}

/// What one received message means to the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Incoming<'a> {
    Packet(PacketMsg<'a>),
    /// `NLMSG_ERROR`: an acknowledgement (`errno == 0`) or a refusal of request `seq`.
    Ack {
        seq: u32,
        errno: i32,
    },
    Other,
}

/// What happens to one packet; a pure function of the behaviour, the RNG and the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decision {
    hold: Duration,
    /// The bit (counted from the first byte of the IP header) to flip.
    flip_bit: Option<usize>,
    reordered: bool,
}

/// A packet waiting for its verdict.
#[derive(Debug)]
struct Held {
    due: Instant,
    /// Arrival order: packets due at the same instant leave in the order they came.
    order: u64,
    id: u32,
    payload: Option<Box<[u8]>>,
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    delayed: AtomicU64,
    corrupted: AtomicU64,
    reordered: AtomicU64,
    accepted: AtomicU64,
}

/// The netlink socket, bound to the kernel's nfnetlink.
#[derive(Debug)]
struct NfqSocket {
    fd: OwnedFd,
    queue: u16,
    seq: u32,
}

/// The outcome of one non-blocking read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    Data(usize),
    Empty,
    /// ENOBUFS: the kernel could not deliver some messages (those packets failed open).
    Overrun,
    /// A datagram larger than the buffer (cannot happen with [`RECV_BUFFER`]).
    Truncated(usize),
}

/// The state of the handler thread.
#[derive(Debug)]
struct Handler {
    sock: NfqSocket,
    behaviour: Behaviour,
    rng: Xoshiro256PlusPlus,
    counters: Arc<Counters>,
    held: BinaryHeap<Reverse<Held>>,
    order: u64,
    /// Verdicts encoded but not yet sent.
    out: Vec<u8>,
    rx: Vec<u8>,
    /// Once stopping, every packet is accepted as it comes.
    draining: bool,
    overruns: u64,
    verdict_errors: u64,
}

/// What the handler thread is given.
#[derive(Debug)]
struct ThreadArgs {
    netns: Option<String>,
    queue: u16,
    behaviour: Behaviour,
    seed: u64,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    wake: Arc<OwnedFd>,
}

// === impl Behaviour ===

impl Behaviour {
    /// Every probability must be a number in `0.0..=1.0`.
    fn validate(&self) -> Result<(), NfqError> {
        let check = |field, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(NfqError::InvalidBehaviour { field, value })
            }
        };
        check("corrupt", self.corrupt)?;
        if let Some(r) = self.reorder {
            check("reorder.probability", r.probability)?;
        }
        Ok(())
    }

    /// Corruption needs the packet's bytes; everything else needs only its id.
    fn copy_mode(&self) -> CopyMode {
        if self.corrupt > 0.0 {
            CopyMode::Packet
        } else {
            CopyMode::Meta
        }
    }
}

// === impl QueueHandle ===

impl QueueHandle {
    /// Spawns a dedicated OS thread that enters `/run/netns/NAME` (if `netns` is `Some(NAME)`),
    /// opens a netlink socket there, binds queue `queue_num` (copying whole packets only when
    /// `behaviour.corrupt > 0`), sets a queue length of 8192 and `NFQA_CFG_F_FAIL_OPEN` (a full
    /// queue passes packets instead of dropping them), and handles packets until stopped.
    ///
    /// Returns once the queue is bound, so the caller may then add the rules that feed it.
    /// `seed` drives every random choice: the same seed and packet order give the same
    /// decisions. Errors if the behaviour is invalid, the namespace cannot be entered, or the
    /// queue cannot be bound (e.g. [`NfqError::QueueBusy`]). Blocks for the bind round trip
    /// (about a millisecond; at most 5 s if the kernel never answers), so async callers should
    /// use `spawn_blocking`.
    pub fn start(
        netns: Option<&str>,
        queue_num: u16,
        behaviour: Behaviour,
        seed: u64,
    ) -> Result<QueueHandle, NfqError> {
        behaviour.validate()?;
        let wake = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| NfqError::Io {
                doing: "creating the stop eventfd",
                source: e.into(),
            })?;
        let wake = Arc::new(wake);
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let args = ThreadArgs {
            netns: netns.map(str::to_string),
            queue: queue_num,
            behaviour,
            seed,
            counters: counters.clone(),
            stop: stop.clone(),
            wake: wake.clone(),
        };
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(format!("nfqueue-{queue_num}"))
            .spawn(move || serve(args, ready_tx))
            .map_err(NfqError::Spawn)?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(QueueHandle {
                queue: queue_num,
                counters,
                stop,
                wake,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                // The thread has already returned; its result says nothing beyond `e`.
                let _ = thread.join();
                Err(e)
            }
            // The thread dropped the sender without a word: it panicked.
            Err(_) => {
                let _ = thread.join();
                Err(NfqError::Panicked)
            }
        }
    }

    /// The queue number this handler owns.
    pub fn queue_num(&self) -> u16 {
        self.queue
    }

    /// What the handler has done so far (a live snapshot; counters only grow).
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Accepts every packet still held at once (stopping never drops a packet), unbinds the
    /// queue, joins the thread and returns the final counts. Dropping the handle does the same,
    /// ignoring errors. Remove the rules that feed the queue first: once it is unbound,
    /// `--queue-bypass` lets their packets through untouched. Blocks like [`QueueHandle::start`]
    /// (about a millisecond). Idempotent with `Drop`: whichever comes first does the work.
    pub fn stop(mut self) -> Result<Stats, NfqError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<Stats, NfqError> {
        let Some(thread) = self.thread.take() else {
            return Ok(self.counters.snapshot());
        };
        self.stop.store(true, Ordering::Release);
        // Writing 1 to an eventfd fails only when its counter is near overflow, in which case
        // a wake-up is pending anyway; the 20 ms idle bound covers the rest.
        let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
        thread.join().unwrap_or(Err(NfqError::Panicked))
    }
}

impl Drop for QueueHandle {
    fn drop(&mut self) {
        if self.thread.is_some()
            && let Err(e) = self.finish()
        {
            tracing::warn!(queue = self.queue, error = %e, "stopping the NFQUEUE handler failed");
        }
    }
}

/// Checks that nfnetlink_queue is usable in the calling thread's network namespace: binds a
/// queue number that is free (counting down from 65535) and unbinds it. The error names what is
/// missing: the subsystem ([`NfqError::Unavailable`]) or the privilege
/// ([`NfqError::PermissionDenied`]).
pub fn probe() -> Result<(), NfqError> {
    let taken = bound_queues();
    let mut candidates = (0..=u16::MAX).rev().filter(|q| !taken.contains(q));
    let mut last = None;
    for _ in 0..PROBE_ATTEMPTS {
        let Some(queue) = candidates.next() else {
            break;
        };
        let behaviour = Behaviour {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            corrupt: 0.0,
            reorder: None,
        };
        let sock = NfqSocket::open(queue)?;
        let mut handler = Handler::new(sock, behaviour, 0, Arc::default());
        match handler.bind() {
            // Someone bound it between our look at /proc and now: try the next one.
            Err(e @ NfqError::QueueBusy { .. }) => last = Some(e),
            Err(e) => return Err(e),
            Ok(()) => return handler.shutdown(),
        }
    }
    Err(last.unwrap_or(NfqError::QueueBusy {
        queue: 0,
        owner: None,
    }))
}

/// The thread body: set up, report readiness, serve until stopped, then release everything.
fn serve(
    args: ThreadArgs,
    ready: mpsc::SyncSender<Result<(), NfqError>>,
) -> Result<Stats, NfqError> {
    let setup = || -> Result<Handler, NfqError> {
        if let Some(name) = &args.netns {
            enter_netns(name)?;
        }
        let sock = NfqSocket::open(args.queue)?;
        let mut handler = Handler::new(
            sock,
            args.behaviour.clone(),
            args.seed,
            args.counters.clone(),
        );
        handler.bind()?;
        Ok(handler)
    };
    let mut handler = match setup() {
        Ok(h) => h,
        Err(e) => {
            // `start` is blocked on this channel, so the send cannot fail while it matters, and
            // it reports `e`; the value returned here is never read.
            let _ = ready.send(Err(e));
            return Ok(Stats::default());
        }
    };
    let _ = ready.send(Ok(()));
    let ran = handler.run(&args.stop, &args.wake);
    if let Err(e) = &ran {
        tracing::warn!(queue = args.queue, error = %e, "NFQUEUE handler failed; releasing held packets");
    }
    // Release even after a failure: held packets would otherwise be dropped when the socket closes.
    let shut = handler.shutdown();
    if handler.overruns > 0 || handler.verdict_errors > 0 {
        tracing::warn!(
            queue = args.queue,
            overruns = handler.overruns,
            verdict_errors = handler.verdict_errors,
            "NFQUEUE handler saw overruns (packets passed undelayed) or refused verdicts"
        );
    }
    ran?;
    shut?;
    Ok(handler.counters.snapshot())
}

/// Moves the calling thread into `/run/netns/NAME`; sockets it opens afterwards live there.
fn enter_netns(name: &str) -> Result<(), NfqError> {
    let fail = |source: io::Error| NfqError::Netns {
        name: name.to_string(),
        source,
    };
    // A name with `/` or `..` would reach outside /run/netns.
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(fail(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a network namespace name",
        )));
    }
    let fd = rustix::fs::open(
        format!("/run/netns/{name}"),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| fail(e.into()))?;
    rustix::thread::move_into_link_name_space(
        fd.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| fail(e.into()))
}

/// Queue numbers bound in the calling thread's namespace, with their owners' netlink ports.
/// Empty when the module is not loaded yet (binding loads it).
fn bound_queue_owners() -> Vec<(u16, u32)> {
    // thread-self, not self: the handler thread may sit in another namespace than the process.
    std::fs::read_to_string("/proc/thread-self/net/netfilter/nfnetlink_queue")
        .map(|text| parse_bound_queues(&text))
        .unwrap_or_default()
}

fn bound_queues() -> Vec<u16> {
    bound_queue_owners().into_iter().map(|(q, _)| q).collect()
}

/// Parses `/proc/net/netfilter/nfnetlink_queue`: `queue_num peer_portid queue_total …` per line.
fn parse_bound_queues(text: &str) -> Vec<(u16, u32)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let queue = fields.next()?.parse().ok()?;
            let owner = fields.next()?.parse().ok()?;
            Some((queue, owner))
        })
        .collect()
}

// === impl NfqSocket ===

impl NfqSocket {
    /// Opens a non-blocking `NETLINK_NETFILTER` socket in the calling thread's namespace.
    fn open(queue: u16) -> Result<NfqSocket, NfqError> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            Some(netlink::NETFILTER),
        )
        .map_err(|e| match e {
            Errno::PROTONOSUPPORT | Errno::AFNOSUPPORT => NfqError::Unavailable {
                what: "the kernel has no NETLINK_NETFILTER sockets",
                source: e.into(),
            },
            _ => NfqError::Io {
                doing: "opening a netlink socket",
                source: e.into(),
            },
        })?;
        rustix::net::bind(&fd, &netlink::SocketAddrNetlink::new(0, 0)).map_err(|e| {
            NfqError::Io {
                doing: "binding the netlink socket",
                source: e.into(),
            }
        })?;
        // FORCE lifts the rmem_max cap for a privileged caller; otherwise take what is allowed.
        if rustix::net::sockopt::set_socket_recv_buffer_size_force(&fd, SOCKET_RCVBUF).is_err()
            && let Err(e) = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, SOCKET_RCVBUF)
        {
            tracing::debug!(error = %e, "cannot enlarge the NFQUEUE socket buffer; bursts may fail open");
        }
        Ok(NfqSocket { fd, queue, seq: 0 })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&self, buf: &[u8], doing: &'static str) -> Result<(), NfqError> {
        let kernel = netlink::SocketAddrNetlink::new(0, 0);
        loop {
            match rustix::net::sendto(&self.fd, buf, SendFlags::empty(), &kernel) {
                Ok(_) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(e) => {
                    return Err(NfqError::Io {
                        doing,
                        source: e.into(),
                    });
                }
            }
        }
    }

    fn recv(&self, buf: &mut [u8]) -> Result<Recv, NfqError> {
        loop {
            return match rustix::net::recv(&self.fd, &mut *buf, RecvFlags::TRUNC) {
                Ok((_, len)) if len > buf.len() => Ok(Recv::Truncated(len)),
                Ok((len, _)) => Ok(Recv::Data(len)),
                Err(Errno::AGAIN) => Ok(Recv::Empty),
                Err(Errno::NOBUFS) => Ok(Recv::Overrun),
                Err(Errno::INTR) => continue,
                Err(e) => Err(NfqError::Io {
                    doing: "receiving from nfnetlink_queue",
                    source: e.into(),
                }),
            };
        }
    }

    /// Waits until the socket (or `wake`) is readable, or `timeout` passes.
    fn wait(&self, wake: Option<&OwnedFd>, timeout: Duration) -> Result<(), NfqError> {
        let ts = Timespec::try_from(timeout.min(MAX_IDLE)).unwrap_or(Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        });
        let mut fds = [
            PollFd::new(&self.fd, PollFlags::IN),
            PollFd::new(wake.unwrap_or(&self.fd), PollFlags::IN),
        ];
        let watched = if wake.is_some() { 2 } else { 1 };
        match rustix::event::poll(&mut fds[..watched], Some(&ts)) {
            Ok(_) | Err(Errno::INTR) => Ok(()),
            Err(e) => Err(NfqError::Io {
                doing: "waiting for packets",
                source: e.into(),
            }),
        }
    }
}

// === impl Handler ===

impl Handler {
    fn new(sock: NfqSocket, behaviour: Behaviour, seed: u64, counters: Arc<Counters>) -> Handler {
        Handler {
            sock,
            behaviour,
            // A named algorithm (not StdRng/SmallRng) so a seed replays the same across rand
            // releases.
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            counters,
            held: BinaryHeap::new(),
            order: 0,
            out: Vec::with_capacity(BATCH_LIMIT),
            rx: vec![0; RECV_BUFFER],
            draining: false,
            overruns: 0,
            verdict_errors: 0,
        }
    }

    /// Binds the queue and configures it in one message, so no packet can find it bound but
    /// without a copy mode (the kernel would drop it).
    fn bind(&mut self) -> Result<(), NfqError> {
        let mode = self.behaviour.copy_mode();
        let flags = match mode {
            // GSO super-packets are fine when we never look inside: one verdict instead of dozens.
            CopyMode::Meta => NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO,
            // To corrupt, we need the wire packet with its checksum computed.
            CopyMode::Packet => NFQA_CFG_F_FAIL_OPEN,
        };
        let queue = self.sock.queue;
        let errno = self.request("binding the queue", |buf, seq, q| {
            encode_bind(buf, seq, q, mode, QUEUE_MAXLEN, flags);
        })?;
        // Compared as raw numbers: the kernel's errno is data, not something to assert on.
        let is = |e: Errno| errno == e.raw_os_error();
        if errno == 0 {
            Ok(())
        } else if is(Errno::PERM) {
            // EPERM is both "another socket owns it" and "no CAP_NET_ADMIN"; /proc tells which.
            match bound_queue_owners().into_iter().find(|(q, _)| *q == queue) {
                Some((_, owner)) => Err(NfqError::QueueBusy {
                    queue,
                    owner: Some(owner),
                }),
                None => Err(NfqError::PermissionDenied { queue }),
            }
        } else if is(Errno::BUSY) || is(Errno::EXIST) {
            Err(NfqError::QueueBusy { queue, owner: None })
        } else if (is(Errno::INVAL) || is(Errno::OPNOTSUPP))
            // nfnetlink answers EINVAL for a subsystem it does not have.
            && !std::path::Path::new("/proc/thread-self/net/netfilter/nfnetlink_queue").exists()
        {
            Err(NfqError::Unavailable {
                what: "binding a queue failed and /proc/net/netfilter/nfnetlink_queue is missing",
                source: io::Error::from_raw_os_error(errno),
            })
        } else {
            Err(NfqError::Refused {
                queue,
                request: "bind",
                source: io::Error::from_raw_os_error(errno),
            })
        }
    }

    /// Serves packets until `stop` is set.
    fn run(&mut self, stop: &AtomicBool, wake: &OwnedFd) -> Result<(), NfqError> {
        while !stop.load(Ordering::Acquire) {
            let wait = match self.held.peek() {
                Some(Reverse(next)) => next.due.saturating_duration_since(Instant::now()),
                None => MAX_IDLE,
            };
            if !wait.is_zero() {
                // ppoll sleeps on an hrtimer: verdicts leave within tens of microseconds.
                self.sock.wait(Some(wake), wait)?;
            }
            self.read_available(None)?;
            self.release_due(Instant::now())?;
            self.flush()?;
        }
        Ok(())
    }

    /// Releases everything and unbinds. Packets held or arriving meanwhile are accepted at once.
    fn shutdown(&mut self) -> Result<(), NfqError> {
        self.draining = true;
        while let Some(Reverse(held)) = self.held.pop() {
            self.verdict(held.id, held.payload.as_deref())?;
        }
        self.flush()?;
        // A queue length of 0 makes the kernel fail open (accept) every new packet instead of
        // queueing it. Everything queued before the ack sits ahead of it in our socket and is
        // accepted while `request` waits, so the unbind below finds the queue empty — unbinding
        // a queue that still holds packets would drop them.
        let errno = self.request("closing the queue to new packets", |buf, seq, q| {
            encode_maxlen(buf, seq, q, 0);
        })?;
        if errno != 0 {
            tracing::warn!(
                queue = self.sock.queue,
                errno,
                "cannot close the NFQUEUE to new packets; unbinding may drop a few"
            );
        }
        self.read_available(None)?;
        self.flush()?;
        let errno = self.request("unbinding the queue", encode_unbind)?;
        if errno != 0 {
            return Err(NfqError::Refused {
                queue: self.sock.queue,
                request: "unbind",
                source: io::Error::from_raw_os_error(errno),
            });
        }
        Ok(())
    }

    /// Sends a configuration message and waits for its acknowledgement, handling packets that
    /// arrive meanwhile. Returns the kernel's errno (0: done).
    fn request(
        &mut self,
        doing: &'static str,
        encode: impl FnOnce(&mut Vec<u8>, u32, u16),
    ) -> Result<i32, NfqError> {
        self.flush()?;
        let seq = self.sock.next_seq();
        let mut msg = Vec::with_capacity(64);
        encode(&mut msg, seq, self.sock.queue);
        self.sock.send(&msg, doing)?;
        let deadline = Instant::now() + ACK_TIMEOUT;
        loop {
            let ack = self.read_available(Some(seq))?;
            // Packets read while waiting may have been accepted at once.
            self.flush()?;
            if let Some(errno) = ack {
                return Ok(errno);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NfqError::Io {
                    doing,
                    source: io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no acknowledgement from the kernel",
                    ),
                });
            }
            self.sock.wait(None, left)?;
        }
    }

    /// Reads what the socket holds (a bounded number of datagrams), scheduling packets.
    /// Returns the errno of the acknowledgement for `awaiting`, once it is seen.
    fn read_available(&mut self, awaiting: Option<u32>) -> Result<Option<i32>, NfqError> {
        // The buffer is taken out so that handling a packet may borrow `self` mutably.
        let mut rx = std::mem::take(&mut self.rx);
        let result = self.read_into(&mut rx, awaiting);
        self.rx = rx;
        result
    }

    fn read_into(&mut self, rx: &mut [u8], awaiting: Option<u32>) -> Result<Option<i32>, NfqError> {
        let mut ack = None;
        for _ in 0..READS_PER_TURN {
            let len = match self.sock.recv(rx)? {
                Recv::Data(len) => len,
                Recv::Empty => break,
                Recv::Overrun => {
                    self.overruns += 1;
                    tracing::debug!(queue = self.sock.queue, "NFQUEUE socket overrun (ENOBUFS)");
                    continue;
                }
                Recv::Truncated(len) => {
                    tracing::warn!(
                        queue = self.sock.queue,
                        len,
                        "oversized netlink datagram skipped"
                    );
                    continue;
                }
            };
            let now = Instant::now();
            for msg in Msgs::new(&rx[..len]) {
                let incoming = msg.and_then(classify);
                match incoming {
                    Ok(Incoming::Packet(packet)) => self.on_packet(&packet, now)?,
                    Ok(Incoming::Ack { seq, errno }) if awaiting == Some(seq) => ack = Some(errno),
                    Ok(Incoming::Ack { seq, errno }) => {
                        if errno != 0 {
                            // A refused verdict (e.g. ENOENT); the packet is the kernel's again.
                            self.verdict_errors += 1;
                            tracing::debug!(queue = self.sock.queue, seq, errno, "verdict refused");
                        }
                    }
                    Ok(Incoming::Other) => {}
                    Err(Malformed(why)) => {
                        tracing::warn!(
                            queue = self.sock.queue,
                            why,
                            "malformed netlink message skipped"
                        );
                        break;
                    }
                }
            }
            if ack.is_some() {
                break;
            }
        }
        Ok(ack)
    }

    fn on_packet(&mut self, packet: &PacketMsg<'_>, now: Instant) -> Result<(), NfqError> {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        if self.draining {
            return self.verdict(packet.id, None);
        }
        // A cut-short copy cannot be re-injected: the kernel would trim the packet to it.
        let whole = match (packet.payload, packet.cap_len) {
            (Some(p), Some(cap)) if (cap as usize) > p.len() => None,
            (payload, _) => payload,
        };
        let decision = decide(&self.behaviour, &mut self.rng, whole);
        let payload = match (decision.flip_bit, whole) {
            (Some(bit), Some(bytes)) => {
                let mut changed = bytes.to_vec().into_boxed_slice();
                flip_bit(&mut changed, bit);
                self.counters.corrupted.fetch_add(1, Ordering::Relaxed);
                Some(changed)
            }
            _ => None,
        };
        if decision.reordered {
            self.counters.reordered.fetch_add(1, Ordering::Relaxed);
        }
        if decision.hold.is_zero() {
            return self.verdict(packet.id, payload.as_deref());
        }
        self.counters.delayed.fetch_add(1, Ordering::Relaxed);
        self.order += 1;
        self.held.push(Reverse(Held {
            // Absurd holds (years) saturate instead of overflowing the clock.
            due: now
                .checked_add(decision.hold)
                .unwrap_or(now + Duration::from_secs(86_400 * 365)),
            order: self.order,
            id: packet.id,
            payload,
        }));
        Ok(())
    }

    fn release_due(&mut self, now: Instant) -> Result<(), NfqError> {
        while self.held.peek().is_some_and(|Reverse(h)| h.due <= now) {
            if let Some(Reverse(held)) = self.held.pop() {
                self.verdict(held.id, held.payload.as_deref())?;
            }
        }
        Ok(())
    }

    /// Queues an `NF_ACCEPT` verdict, sending the batch first if it would grow too large.
    fn verdict(&mut self, id: u32, payload: Option<&[u8]>) -> Result<(), NfqError> {
        let needed =
            NLMSG_HDRLEN + NFGENMSG_LEN + 12 + payload.map_or(0, |p| NLA_HDRLEN + p.len() + 3);
        if self.out.len() + needed > BATCH_LIMIT {
            self.flush()?;
        }
        let seq = self.sock.next_seq();
        encode_verdict(&mut self.out, seq, self.sock.queue, id, payload);
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sends the pending verdicts; nfnetlink processes every message of a datagram in order.
    fn flush(&mut self) -> Result<(), NfqError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let sent = self.sock.send(&self.out, "sending verdicts");
        self.out.clear();
        sent
    }
}

// === impl Counters ===

impl Counters {
    fn snapshot(&self) -> Stats {
        Stats {
            received: self.received.load(Ordering::Relaxed),
            delayed: self.delayed.load(Ordering::Relaxed),
            corrupted: self.corrupted.load(Ordering::Relaxed),
            reordered: self.reordered.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
        }
    }
}

// === impl Held ===

impl Ord for Held {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}

impl Eq for Held {}

// === decisions (pure) ===

/// Decides one packet's fate. `packet` is its bytes from the IP header on, when they are all
/// there. The draws happen in a fixed order, and the corruption coin is tossed for every packet
/// even when it cannot be corrupted, so the stream of choices depends only on the seed and the
/// packet order.
fn decide(b: &Behaviour, rng: &mut Xoshiro256PlusPlus, packet: Option<&[u8]>) -> Decision {
    let mut hold = if b.jitter.is_zero() {
        b.delay
    } else {
        let offset = rng.random_range(-1.0..=1.0) * b.jitter.as_secs_f64();
        Duration::try_from_secs_f64((b.delay.as_secs_f64() + offset).max(0.0)).unwrap_or(b.delay)
    };
    let mut reordered = false;
    if let Some(r) = b.reorder
        && r.probability > 0.0
        && rng.random_bool(r.probability)
    {
        hold = hold.saturating_add(r.gap);
        reordered = true;
    }
    let mut flip = None;
    if b.corrupt > 0.0 && rng.random_bool(b.corrupt) {
        flip = packet.and_then(|p| {
            let start = transport_offset(p)?;
            Some(rng.random_range(start * 8..p.len() * 8))
        });
    }
    Decision {
        hold,
        flip_bit: flip,
        reordered,
    }
}

/// Where the transport header starts (IPv4: by its IHL; IPv6: after the 40-byte fixed header),
/// or `None` if there is nothing after the IP header to corrupt.
fn transport_offset(packet: &[u8]) -> Option<usize> {
    let first = *packet.first()?;
    let start = match first >> 4 {
        4 => usize::from(first & 0x0f) * 4,
        6 => 40,
        _ => return None,
    };
    (start >= 20 && start < packet.len()).then_some(start)
}

fn flip_bit(packet: &mut [u8], bit: usize) {
    if let Some(byte) = packet.get_mut(bit / 8) {
        *byte ^= 0x80 >> (bit % 8);
    }
}

// === encoding (pure) ===

/// Appends an nlmsghdr and nfgenmsg; returns where the message starts, for [`end_msg`].
fn begin_msg(buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, queue: u16) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by end_msg
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port 0: the kernel
    buf.extend_from_slice(&[AF_UNSPEC, 0]); // family, NFNETLINK_V0
    buf.extend_from_slice(&queue.to_be_bytes()); // res_id
    start
}

/// Appends one attribute, padded to 4 bytes. `data` is at most 65531 bytes: every payload we
/// send came from a kernel attribute of the same size.
fn put_attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = NLA_HDRLEN + data.len();
    debug_assert!(len <= usize::from(u16::MAX), "attribute too long: {len}");
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len() + align4(len) - len, 0);
}

fn end_msg(buf: &mut [u8], start: usize) {
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// BIND plus copy mode, queue length and flags in one config message, acknowledged.
fn encode_bind(buf: &mut Vec<u8>, seq: u32, queue: u16, mode: CopyMode, maxlen: u32, flags: u32) {
    let start = begin_msg(buf, NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, queue);
    // nfqnl_msg_config_cmd { u8 command, u8 pad, be16 pf }; pf is unused since Linux 3.8.
    put_attr(buf, NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, 0, 0]);
    // nfqnl_msg_config_params { be32 copy_range, u8 copy_mode }, packed: 5 bytes.
    let (range, mode) = match mode {
        CopyMode::Meta => (0, 1),
        CopyMode::Packet => (MAX_COPY_RANGE, 2),
    };
    let mut params = range.to_be_bytes().to_vec();
    params.push(mode);
    put_attr(buf, NFQA_CFG_PARAMS, &params);
    put_attr(buf, NFQA_CFG_QUEUE_MAXLEN, &maxlen.to_be_bytes());
    put_attr(
        buf,
        NFQA_CFG_MASK,
        &(NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO).to_be_bytes(),
    );
    put_attr(buf, NFQA_CFG_FLAGS, &flags.to_be_bytes());
    end_msg(buf, start);
}

fn encode_unbind(buf: &mut Vec<u8>, seq: u32, queue: u16) {
    let start = begin_msg(buf, NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, queue);
    put_attr(buf, NFQA_CFG_CMD, &[NFQNL_CFG_CMD_UNBIND, 0, 0, 0]);
    end_msg(buf, start);
}

fn encode_maxlen(buf: &mut Vec<u8>, seq: u32, queue: u16, maxlen: u32) {
    let start = begin_msg(buf, NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, queue);
    put_attr(buf, NFQA_CFG_QUEUE_MAXLEN, &maxlen.to_be_bytes());
    end_msg(buf, start);
}

/// An `NF_ACCEPT` verdict, with the replacement packet if there is one. Not acknowledged: the
/// kernel still reports a refused verdict with an `NLMSG_ERROR`.
fn encode_verdict(buf: &mut Vec<u8>, seq: u32, queue: u16, id: u32, payload: Option<&[u8]>) {
    let start = begin_msg(buf, NFQNL_MSG_VERDICT, NLM_F_REQUEST, seq, queue);
    let mut hdr = [0u8; 8];
    hdr[..4].copy_from_slice(&NF_ACCEPT.to_be_bytes());
    hdr[4..].copy_from_slice(&id.to_be_bytes());
    put_attr(buf, NFQA_VERDICT_HDR, &hdr);
    if let Some(payload) = payload {
        put_attr(buf, NFQA_PAYLOAD, payload);
    }
    end_msg(buf, start);
}

// === decoding (pure) ===

impl<'a> Msgs<'a> {
    fn new(datagram: &'a [u8]) -> Msgs<'a> {
        Msgs { rest: datagram }
    }
}

impl<'a> Iterator for Msgs<'a> {
    type Item = Result<NlMsg<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let hdr = self
                .rest
                .get(..NLMSG_HDRLEN)
                .ok_or(Malformed("short netlink header"))?;
            let len = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
            if len < NLMSG_HDRLEN || len > self.rest.len() {
                return Err(Malformed("netlink length out of bounds"));
            }
            let msg = NlMsg {
                ty: u16::from_ne_bytes([hdr[4], hdr[5]]),
                seq: u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]),
                body: &self.rest[NLMSG_HDRLEN..len],
            };
            Ok((msg, align4(len).min(self.rest.len())))
        })();
        match parsed {
            Ok((msg, used)) => {
                self.rest = &self.rest[used..];
                Some(Ok(msg))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let hdr = self.rest.get(..NLA_HDRLEN)?;
        let len = usize::from(u16::from_ne_bytes([hdr[0], hdr[1]]));
        let ty = u16::from_ne_bytes([hdr[2], hdr[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let data = &self.rest[NLA_HDRLEN..len];
        // The kernel does not pad the last attribute of a packet message.
        self.rest = &self.rest[align4(len).min(self.rest.len())..];
        Some((ty, data))
    }
}

/// Tells packets and acknowledgements apart.
fn classify(msg: NlMsg<'_>) -> Result<Incoming<'_>, Malformed> {
    match msg.ty {
        NFQNL_MSG_PACKET => parse_packet(msg.body).map(Incoming::Packet),
        NLMSG_ERROR => {
            let err = msg.body.get(..4).ok_or(Malformed("short NLMSG_ERROR"))?;
            let error = i32::from_ne_bytes([err[0], err[1], err[2], err[3]]);
            Ok(Incoming::Ack {
                seq: msg.seq,
                errno: error.saturating_neg(),
            })
        }
        _ => Ok(Incoming::Other),
    }
}

/// Parses the body of an `NFQNL_MSG_PACKET` (nfgenmsg, then attributes).
fn parse_packet(body: &[u8]) -> Result<PacketMsg<'_>, Malformed> {
    let nfgen = body
        .get(..NFGENMSG_LEN)
        .ok_or(Malformed("short nfgenmsg"))?;
    let mut packet = PacketMsg {
        family: nfgen[0],
        id: 0,
        hw_protocol: 0,
        hook: 0,
        payload: None,
        cap_len: None,
    };
    let mut have_header = false;
    for (ty, data) in (Attrs {
        rest: &body[NFGENMSG_LEN..],
    }) {
        match ty {
            // nfqnl_msg_packet_hdr { be32 packet_id, be16 hw_protocol, u8 hook }, packed.
            NFQA_PACKET_HDR if data.len() >= 7 => {
                packet.id = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                packet.hw_protocol = u16::from_be_bytes([data[4], data[5]]);
                packet.hook = data[6];
                have_header = true;
            }
            NFQA_PAYLOAD => packet.payload = Some(data),
            NFQA_CAP_LEN if data.len() >= 4 => {
                packet.cap_len = Some(u32::from_be_bytes([data[0], data[1], data[2], data[3]]));
            }
            _ => {}
        }
    }
    if have_header {
        Ok(packet)
    } else {
        Err(Malformed("packet message without NFQA_PACKET_HDR"))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, UdpSocket};
    use std::process::Command;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU32;

    use super::*;

    // ---- wire format (no root) ----

    /// A real `NFQNL_MSG_PACKET` from Linux 6.18 (x86_64): queue 9, packet id 1, hook LOCAL_OUT,
    /// out-ifindex 1, and a 38-byte IPv4/UDP packet 127.0.0.1 → 127.0.0.1 carrying
    /// "chaosforge". Its last attribute is not padded (82 bytes in all).
    const CAPTURED_PACKET: &str = "52000000000300000000000000000000020000090b0001000000000108000300\
                                   08000600000000012a000a0045000026e4704000401158547f0000017f000001\
                                   d3288e0f001291796368616f73666f726765";
    /// The kernel's acknowledgement of a bind request with seq 1 (NLMSG_ERROR, error 0, capped).
    const CAPTURED_ACK: &str = "2400000002000001010000008b1b0000000000004000000002030500010000000000\
                                0000";

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn nlmsghdr(len: u32, ty: u16, flags: u16, seq: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v
    }

    #[test]
    fn bind_config_is_one_acked_message_with_every_setting() {
        let mut buf = Vec::new();
        encode_bind(
            &mut buf,
            7,
            0x0102,
            CopyMode::Packet,
            8192,
            NFQA_CFG_F_FAIL_OPEN,
        );
        let mut want = nlmsghdr(64, 0x0302, NLM_F_REQUEST | NLM_F_ACK, 7);
        want.extend_from_slice(&[0, 0, 0x01, 0x02]); // AF_UNSPEC, v0, queue (big-endian)
        want.extend_from_slice(&[8, 0, 1, 0, 1, 0, 0, 0]); // CMD: BIND, pf 0
        want.extend_from_slice(&[9, 0, 2, 0, 0, 0, 0xff, 0xfb, 2, 0, 0, 0]); // PARAMS: 65531, PACKET
        want.extend_from_slice(&[8, 0, 3, 0, 0, 0, 0x20, 0]); // QUEUE_MAXLEN 8192
        want.extend_from_slice(&[8, 0, 4, 0, 0, 0, 0, 5]); // MASK: FAIL_OPEN | GSO
        want.extend_from_slice(&[8, 0, 5, 0, 0, 0, 0, 1]); // FLAGS: FAIL_OPEN
        // The attribute headers above are written little-endian, as on this machine.
        if cfg!(target_endian = "little") {
            assert_eq!(buf, want);
        }
        assert_eq!(buf.len(), 64);

        // Metadata mode copies nothing and lets GSO packets through whole.
        let mut meta = Vec::new();
        encode_bind(
            &mut meta,
            7,
            1,
            CopyMode::Meta,
            8192,
            NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO,
        );
        assert_eq!(&meta[32..37], &[0, 0, 0, 0, 1]); // copy_range 0, META
        assert_eq!(&meta[60..64], &[0, 0, 0, 5]);
    }

    #[test]
    fn unbind_and_maxlen_are_acked_config_messages() {
        let mut buf = Vec::new();
        encode_unbind(&mut buf, 3, 9);
        let mut want = nlmsghdr(28, 0x0302, NLM_F_REQUEST | NLM_F_ACK, 3);
        want.extend_from_slice(&[0, 0, 0, 9]);
        want.extend_from_slice(&8u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(&[2, 0, 0, 0]);
        assert_eq!(buf, want);

        let mut buf = Vec::new();
        encode_maxlen(&mut buf, 4, 9, 0);
        assert_eq!(buf.len(), 28);
        assert_eq!(&buf[24..28], &[0, 0, 0, 0]);
    }

    #[test]
    fn verdicts_accept_with_or_without_a_payload() {
        let mut buf = Vec::new();
        encode_verdict(&mut buf, 11, 9, 0xdead_beef, None);
        let mut want = nlmsghdr(32, 0x0301, NLM_F_REQUEST, 11);
        want.extend_from_slice(&[0, 0, 0, 9]);
        want.extend_from_slice(&12u16.to_ne_bytes());
        want.extend_from_slice(&2u16.to_ne_bytes());
        want.extend_from_slice(&[0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]); // NF_ACCEPT, id
        assert_eq!(buf, want);

        // A payload is padded to 4 bytes and the padding is counted in the message length.
        let mut with = Vec::new();
        encode_verdict(&mut with, 12, 9, 5, Some(&[1, 2, 3, 4, 5]));
        assert_eq!(with.len(), 32 + 12);
        assert_eq!(&with[..4], &44u32.to_ne_bytes());
        assert_eq!(&with[32..34], &9u16.to_ne_bytes());
        assert_eq!(&with[34..36], &NFQA_PAYLOAD.to_ne_bytes());
        assert_eq!(&with[36..44], &[1, 2, 3, 4, 5, 0, 0, 0]);

        // Batched verdicts are back-to-back messages that parse apart again.
        buf.extend_from_slice(&with);
        let msgs: Vec<_> = Msgs::new(&buf).map(Result::unwrap).collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[0].ty, msgs[0].seq), (NFQNL_MSG_VERDICT, 11));
        assert_eq!((msgs[1].ty, msgs[1].seq), (NFQNL_MSG_VERDICT, 12));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn a_captured_packet_message_parses() {
        let raw = unhex(CAPTURED_PACKET);
        let msgs: Vec<_> = Msgs::new(&raw).collect();
        assert_eq!(msgs.len(), 1);
        let Ok(Incoming::Packet(p)) = msgs[0].and_then(classify) else {
            panic!("not a packet: {msgs:?}");
        };
        assert_eq!((p.family, p.id, p.hw_protocol, p.hook), (2, 1, 0x0800, 3));
        assert_eq!(p.cap_len, None);
        let payload = p.payload.unwrap();
        assert_eq!(payload.len(), 38);
        assert_eq!(transport_offset(payload), Some(20));
        assert!(payload.ends_with(b"chaosforge"));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn a_captured_ack_and_a_packet_in_one_datagram_both_parse() {
        let mut raw = unhex(CAPTURED_ACK);
        raw.extend_from_slice(&unhex(CAPTURED_PACKET));
        let parsed: Vec<_> = Msgs::new(&raw)
            .map(|m| m.and_then(classify).unwrap())
            .collect();
        assert_eq!(parsed[0], Incoming::Ack { seq: 1, errno: 0 });
        assert!(matches!(
            parsed[1],
            Incoming::Packet(PacketMsg { id: 1, .. })
        ));

        // A refusal carries the negated errno.
        let mut refused = nlmsghdr(36, NLMSG_ERROR, 0, 4);
        refused.extend_from_slice(&(-1i32).to_ne_bytes());
        refused.extend_from_slice(&[0; 16]);
        assert_eq!(
            Msgs::new(&refused).next().unwrap().and_then(classify),
            Ok(Incoming::Ack { seq: 4, errno: 1 })
        );
    }

    #[test]
    fn malformed_input_is_reported_not_trusted() {
        // A length beyond the datagram, a length below the header, a packet without its header.
        let mut long = nlmsghdr(400, NFQNL_MSG_PACKET, 0, 0);
        long.extend_from_slice(&[2, 0, 0, 9]);
        assert!(Msgs::new(&long).next().unwrap().is_err());
        let short = nlmsghdr(8, NFQNL_MSG_PACKET, 0, 0);
        assert!(Msgs::new(&short).next().unwrap().is_err());
        let mut headless = nlmsghdr(28, NFQNL_MSG_PACKET, 0, 0);
        headless.extend_from_slice(&[2, 0, 0, 9, 8, 0, 6, 0, 0, 0, 0, 1]);
        assert!(
            Msgs::new(&headless)
                .next()
                .unwrap()
                .and_then(classify)
                .is_err()
        );
        // Masked type bits still name the attribute.
        let mut nested = nlmsghdr(32, NFQNL_MSG_PACKET, 0, 0);
        nested.extend_from_slice(&[2, 0, 0, 9]);
        nested.extend_from_slice(&11u16.to_ne_bytes());
        nested.extend_from_slice(&(NFQA_PACKET_HDR | 0x4000).to_ne_bytes());
        nested.extend_from_slice(&[0, 0, 0, 42, 0x86, 0xdd, 3, 0]);
        let Ok(Incoming::Packet(p)) = Msgs::new(&nested).next().unwrap().and_then(classify) else {
            panic!("packet expected");
        };
        assert_eq!((p.id, p.hw_protocol), (42, 0x86dd));
    }

    proptest::proptest! {
        /// Whatever the kernel (or a bug) hands us, parsing ends without a panic.
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            for msg in Msgs::new(&bytes) {
                let _ = msg.and_then(classify);
            }
        }
    }

    #[test]
    fn bit_flips_land_after_the_ip_header() {
        let mut v4 = vec![0u8; 60];
        v4[0] = 0x45;
        assert_eq!(transport_offset(&v4), Some(20));
        v4[0] = 0x47; // two option words
        assert_eq!(transport_offset(&v4), Some(28));
        v4[0] = 0x44; // IHL below the minimum
        assert_eq!(transport_offset(&v4), None);
        v4[0] = 0x4f;
        assert_eq!(
            transport_offset(&v4[..60]),
            None,
            "nothing after a 60-byte header"
        );
        let mut v6 = vec![0u8; 48];
        v6[0] = 0x60;
        assert_eq!(transport_offset(&v6), Some(40));
        assert_eq!(transport_offset(&v6[..40]), None);
        assert_eq!(transport_offset(&[0x70; 64]), None);
        assert_eq!(transport_offset(&[]), None);

        let always = Behaviour {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            corrupt: 1.0,
            reorder: None,
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let mut v4 = vec![0u8; 40];
        v4[0] = 0x46; // 24-byte header
        let mut seen = [false; 16];
        for _ in 0..2000 {
            let bit = decide(&always, &mut rng, Some(&v4)).flip_bit.unwrap();
            assert!((24 * 8..40 * 8).contains(&bit), "bit {bit}");
            seen[(bit - 24 * 8) / 8] = true;
            let bit6 = decide(&always, &mut rng, Some(&v6)).flip_bit.unwrap();
            assert!((40 * 8..48 * 8).contains(&bit6), "bit {bit6}");
        }
        assert!(seen.iter().all(|s| *s), "every transport byte is reachable");
        // Nothing to corrupt: no flip, but the packet still goes.
        assert_eq!(decide(&always, &mut rng, None).flip_bit, None);

        let mut bytes = vec![0u8; 4];
        flip_bit(&mut bytes, 17);
        assert_eq!(bytes, [0, 0, 0x40, 0]);
        flip_bit(&mut bytes, 17);
        assert_eq!(bytes, [0; 4]);
        flip_bit(&mut bytes, 99); // out of range: ignored
        assert_eq!(bytes, [0; 4]);
    }

    fn holds(b: &Behaviour, seed: u64, n: usize) -> Vec<Decision> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n).map(|_| decide(b, &mut rng, None)).collect()
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_spreads() {
        let b = Behaviour {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(10),
            corrupt: 0.0,
            reorder: None,
        };
        let d = holds(&b, 1, 5000);
        let ms: Vec<f64> = d.iter().map(|d| d.hold.as_secs_f64() * 1e3).collect();
        assert!(ms.iter().all(|m| (10.0..=30.0).contains(m)));
        let below_15 = ms.iter().filter(|m| **m < 15.0).count();
        let above_25 = ms.iter().filter(|m| **m > 25.0).count();
        // Uniform: a quarter of the mass in each outer quarter of the range.
        assert!((1000..1500).contains(&below_15), "{below_15}");
        assert!((1000..1500).contains(&above_25), "{above_25}");

        // Clamped at zero, not redrawn: about a third of 5ms±15ms lands on exactly 0.
        let clamped = Behaviour {
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(15),
            ..b
        };
        let zeros = holds(&clamped, 1, 3000)
            .iter()
            .filter(|d| d.hold.is_zero())
            .count();
        assert!((850..1150).contains(&zeros), "{zeros}");
    }

    #[test]
    fn reordering_holds_a_share_back_by_the_gap() {
        let b = Behaviour {
            delay: Duration::from_millis(3),
            jitter: Duration::ZERO,
            corrupt: 0.0,
            reorder: Some(Reorder {
                probability: 0.25,
                gap: Duration::from_millis(10),
            }),
        };
        let d = holds(&b, 9, 4000);
        let back: Vec<_> = d.iter().filter(|d| d.reordered).collect();
        assert!((900..1100).contains(&back.len()), "{}", back.len());
        assert!(back.iter().all(|d| d.hold == Duration::from_millis(13)));
        assert!(
            d.iter()
                .filter(|d| !d.reordered)
                .all(|d| d.hold == Duration::from_millis(3))
        );
    }

    #[test]
    fn the_same_seed_makes_the_same_choices() {
        let b = Behaviour {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(10),
            corrupt: 0.3,
            reorder: Some(Reorder {
                probability: 0.2,
                gap: Duration::from_millis(5),
            }),
        };
        assert_eq!(holds(&b, 42, 500), holds(&b, 42, 500));
        assert_ne!(holds(&b, 42, 500), holds(&b, 43, 500));
    }

    #[test]
    fn held_packets_leave_by_due_time_then_arrival() {
        let t = Instant::now();
        let mut heap = BinaryHeap::new();
        for (ms, order) in [(5, 1), (1, 2), (5, 0), (3, 3)] {
            heap.push(Reverse(Held {
                due: t + Duration::from_millis(ms),
                order,
                id: order as u32,
                payload: None,
            }));
        }
        let ids: Vec<u32> = std::iter::from_fn(|| heap.pop().map(|Reverse(h)| h.id)).collect();
        assert_eq!(ids, [2, 3, 0, 1]);
    }

    #[test]
    fn invalid_probabilities_are_refused_before_anything_starts() {
        let mut b = Behaviour {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            corrupt: 1.5,
            reorder: None,
        };
        let err = QueueHandle::start(None, 1, b.clone(), 0).unwrap_err();
        assert!(
            matches!(
                err,
                NfqError::InvalidBehaviour {
                    field: "corrupt",
                    ..
                }
            ),
            "{err}"
        );
        b.corrupt = 0.0;
        b.reorder = Some(Reorder {
            probability: f64::NAN,
            gap: Duration::ZERO,
        });
        assert!(matches!(
            b.validate(),
            Err(NfqError::InvalidBehaviour {
                field: "reorder.probability",
                ..
            })
        ));
    }

    #[test]
    fn a_missing_namespace_is_named_in_the_error() {
        let b = Behaviour {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            corrupt: 0.0,
            reorder: None,
        };
        let err = QueueHandle::start(Some("cf-nfq-no-such-ns"), 1, b.clone(), 0).unwrap_err();
        assert!(matches!(err, NfqError::Netns { .. }), "{err}");
        assert!(err.to_string().contains("cf-nfq-no-such-ns"), "{err}");
        let err = QueueHandle::start(Some("../etc"), 1, b, 0).unwrap_err();
        assert!(matches!(err, NfqError::Netns { .. }), "{err}");
    }

    #[test]
    fn proc_listing_of_bound_queues_parses() {
        let text = "    5   1234     0 2 65531     0     0        7  1\n\
                    65535 4294967295     0 1     0     0     0        0  1\n";
        assert_eq!(parse_bound_queues(text), [(5, 1234), (65535, u32::MAX)]);
        assert_eq!(parse_bound_queues("garbage\n"), []);
    }

    // ---- in a namespace of the test's own (root) ----

    /// The timing tests share two cores with the rest of the suite; running them one at a time
    /// keeps the handler's wake-ups prompt and the figures honest.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A network namespace of the test's own, deleted on drop (even when the test panics).
    /// Its iptables rules and queues go with it.
    struct Netns {
        name: String,
    }

    impl Netns {
        fn new() -> Netns {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "cf-nfq-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            sh(&["ip", "netns", "add", &name]);
            let ns = Netns { name };
            sh(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
            ns
        }

        fn queue_udp(&self, port: u16, queue: u16) {
            let (port, queue) = (port.to_string(), queue.to_string());
            sh(&[
                "ip",
                "netns",
                "exec",
                &self.name,
                "iptables",
                "-t",
                "mangle",
                "-A",
                "OUTPUT",
                "-o",
                "lo",
                "-p",
                "udp",
                "--dport",
                &port,
                "-j",
                "NFQUEUE",
                "--queue-num",
                &queue,
                "--queue-bypass",
            ]);
        }

        /// Runs `f` on a thread inside the namespace; sockets it creates stay there.
        fn inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
            std::thread::scope(|s| {
                s.spawn(|| {
                    enter_netns(&self.name).unwrap();
                    f()
                })
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
        }

        fn start(&self, queue: u16, behaviour: Behaviour, seed: u64) -> QueueHandle {
            QueueHandle::start(Some(&self.name), queue, behaviour, seed).unwrap()
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }

    fn sh(argv: &[&str]) {
        let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
        assert!(
            out.status.success(),
            "`{}` failed (these tests need root): {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Two UDP sockets on 127.0.0.1 in the namespace. The sender is not connected, so that no
    /// ICMP error from a mangled datagram can surface as a send error.
    struct Link {
        rx: UdpSocket,
        tx: UdpSocket,
        to: SocketAddr,
    }

    impl Link {
        fn new(ns: &Netns, queue: u16) -> Link {
            let link = ns.inside(|| {
                let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
                let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
                rx.set_read_timeout(Some(Duration::from_millis(10)))
                    .unwrap();
                let to = rx.local_addr().unwrap();
                Link { rx, tx, to }
            });
            ns.queue_udp(link.to.port(), queue);
            link
        }
    }

    const DATAGRAM: usize = 64;

    /// `seq`, the send time since the run's epoch, then a pattern derived from `seq`, so that
    /// the receiver can tell a changed byte anywhere.
    fn datagram(seq: u32, sent: Duration) -> [u8; DATAGRAM] {
        let mut d = [0u8; DATAGRAM];
        d[..4].copy_from_slice(&seq.to_be_bytes());
        d[4..12].copy_from_slice(&(sent.as_nanos() as u64).to_be_bytes());
        for (i, b) in d[12..].iter_mut().enumerate() {
            *b = (seq as u8).wrapping_mul(31).wrapping_add(i as u8);
        }
        d
    }

    #[derive(Debug, Clone, Copy)]
    struct Arrival {
        seq: u32,
        latency: Duration,
        intact: bool,
    }

    /// Sends datagrams `seqs`, one every `pace`, timestamped against `epoch`.
    fn send_paced(link: &Link, epoch: Instant, seqs: std::ops::Range<u32>, pace: Duration) {
        let start = Instant::now();
        for (i, seq) in seqs.enumerate() {
            let at = start + pace * i as u32;
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            link.tx
                .send_to(&datagram(seq, epoch.elapsed()), link.to)
                .unwrap();
        }
    }

    /// Receives datagrams numbered in `seqs` until all have come or `until` passes.
    fn collect(
        link: &Link,
        epoch: Instant,
        seqs: std::ops::Range<u32>,
        until: Instant,
    ) -> Vec<Arrival> {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while got.len() < seqs.len() && Instant::now() < until {
            let len = match link.rx.recv(&mut buf) {
                Ok(len) => len,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => panic!("receive: {e}"),
            };
            let now = epoch.elapsed();
            if len != DATAGRAM {
                continue;
            }
            let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
            let sent = Duration::from_nanos(u64::from_be_bytes(buf[4..12].try_into().unwrap()));
            if seqs.contains(&seq) {
                got.push(Arrival {
                    seq,
                    latency: now.saturating_sub(sent),
                    intact: buf[..DATAGRAM] == datagram(seq, sent),
                });
            }
        }
        got
    }

    /// Sends `seqs` paced while receiving them on another thread; waits `settle` after the last.
    fn exchange(
        link: &Link,
        seqs: std::ops::Range<u32>,
        pace: Duration,
        settle: Duration,
    ) -> Vec<Arrival> {
        let epoch = Instant::now();
        let until = epoch + pace * seqs.len() as u32 + settle;
        std::thread::scope(|s| {
            let rx = s.spawn(|| collect(link, epoch, seqs.clone(), until));
            send_paced(link, epoch, seqs.clone(), pace);
            rx.join().unwrap()
        })
    }

    fn quantile(arrivals: &[Arrival], q: f64) -> Duration {
        let mut l: Vec<Duration> = arrivals.iter().map(|a| a.latency).collect();
        l.sort();
        l[((l.len() - 1) as f64 * q).round() as usize]
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1e3
    }

    fn delay_of(delay: Duration, jitter: Duration) -> Behaviour {
        Behaviour {
            delay,
            jitter,
            corrupt: 0.0,
            reorder: None,
        }
    }

    #[test]
    fn delay_adds_its_latency_and_stopping_restores_the_baseline() {
        crate::testkit::assert_isolated();
        let _one_at_a_time = serial();
        let ns = Netns::new();
        let link = Link::new(&ns, 3);
        let pace = Duration::from_millis(2);

        // The rule is in place but nobody listens on queue 3: --queue-bypass passes everything.
        let before = exchange(&link, 0..200, pace, Duration::from_millis(300));
        assert_eq!(before.len(), 200, "baseline lost datagrams");
        let base = quantile(&before, 0.5);
        assert!(base < Duration::from_millis(5), "baseline p50 {base:?}");

        let handle = ns.start(3, delay_of(Duration::from_millis(50), Duration::ZERO), 1);
        let during = exchange(&link, 1000..1200, pace, Duration::from_millis(500));
        let stats = handle.stop().unwrap();
        assert_eq!(during.len(), 200, "datagrams lost while delayed");
        let added = quantile(&during, 0.5).saturating_sub(base);
        eprintln!(
            "delay 50ms: baseline p50 {:.3} ms, p50 added {:.3} ms, min {:.3} ms, p99 {:.3} ms; {stats:?}",
            ms(base),
            ms(added),
            ms(quantile(&during, 0.0)),
            ms(quantile(&during, 0.99))
        );
        assert!(
            (Duration::from_millis(45)..=Duration::from_millis(55)).contains(&added),
            "p50 added {added:?}"
        );
        // A verdict is never early: every datagram waited its 50 ms.
        assert!(quantile(&during, 0.0) >= Duration::from_millis(50));
        assert_eq!(
            (stats.received, stats.delayed, stats.accepted),
            (200, 200, 200)
        );

        let after = exchange(&link, 2000..2200, pace, Duration::from_millis(300));
        assert_eq!(after.len(), 200, "datagrams lost after stop");
        let p50 = quantile(&after, 0.5);
        assert!(p50 < Duration::from_millis(5), "p50 after stop {p50:?}");
    }

    #[test]
    fn jitter_spreads_latency_within_its_bounds() {
        crate::testkit::assert_isolated();
        let _one_at_a_time = serial();
        let ns = Netns::new();
        let link = Link::new(&ns, 4);
        let pace = Duration::from_millis(1);
        let before = exchange(&link, 0..100, pace, Duration::from_millis(200));
        assert_eq!(before.len(), 100);
        let base = quantile(&before, 0.5);

        let handle = ns.start(
            4,
            delay_of(Duration::from_millis(20), Duration::from_millis(10)),
            2,
        );
        let during = exchange(&link, 1000..1300, pace, Duration::from_millis(300));
        let stats = handle.stop().unwrap();
        assert_eq!(during.len(), 300, "datagrams lost");
        let added: Vec<f64> = during
            .iter()
            .map(|a| ms(a.latency.saturating_sub(base)))
            .collect();
        let lo = added.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = added.iter().copied().fold(0.0, f64::max);
        eprintln!(
            "jitter 20±10ms: added min {lo:.3} ms, p10 {:.3}, p50 {:.3}, p90 {:.3}, max {hi:.3} ms; {stats:?}",
            ms(quantile(&during, 0.1)),
            ms(quantile(&during, 0.5)),
            ms(quantile(&during, 0.9))
        );
        // [10, 30] ms drawn; 2 ms either side for the clock and the scheduler.
        assert!(
            lo >= 8.0 && hi <= 32.0,
            "added latency outside [8, 32] ms: {lo:.3}..{hi:.3}"
        );
        // The spread is real: the outer parts of the range are used, not just the middle.
        assert!(quantile(&during, 0.1) < Duration::from_millis(15));
        assert!(quantile(&during, 0.9) > Duration::from_millis(25));
    }

    #[test]
    fn corruption_hits_its_share_of_datagrams() {
        crate::testkit::assert_isolated();
        let _one_at_a_time = serial();
        let ns = Netns::new();
        let link = Link::new(&ns, 5);
        let handle = ns.start(
            5,
            Behaviour {
                delay: Duration::ZERO,
                jitter: Duration::ZERO,
                corrupt: 0.3,
                reorder: None,
            },
            3,
        );
        let n = 2000;
        let got = exchange(
            &link,
            0..n,
            Duration::from_micros(250),
            Duration::from_millis(300),
        );
        let stats = handle.stop().unwrap();
        let lost = n as usize - got.len();
        let changed = got.iter().filter(|a| !a.intact).count();
        let seen = got.len() as f64 / f64::from(n);
        eprintln!(
            "corrupt 30%: receiver saw {:.1}% ({} of {n}), {changed} changed, {lost} lost; {stats:?}",
            seen * 100.0,
            got.len()
        );
        assert_eq!(stats.received, u64::from(n));
        // A flipped bit breaks the UDP checksum (the kernel computed it before copying the packet
        // to us, and a mangled packet is re-checked), so the receiving stack drops the datagram:
        // a corrupted datagram vanishes rather than arriving changed.
        if changed == 0 {
            assert!(
                (0.65..=0.75).contains(&seen),
                "receiver saw {:.1}%",
                seen * 100.0
            );
        } else {
            // A kernel that trusted the checksum would deliver them changed instead.
            assert!(
                lost == 0,
                "both lost and changed datagrams: {lost}, {changed}"
            );
            let share = changed as f64 / f64::from(n);
            assert!(
                (0.25..=0.35).contains(&share),
                "changed {:.1}%",
                share * 100.0
            );
        }
        // Every vanished (or changed) datagram is one the handler corrupted.
        assert!(
            (lost + changed).abs_diff(stats.corrupted as usize) <= 2,
            "lost {lost} + changed {changed} vs corrupted {}",
            stats.corrupted
        );
    }

    #[test]
    fn reordering_lets_later_datagrams_overtake() {
        crate::testkit::assert_isolated();
        let _one_at_a_time = serial();
        let ns = Netns::new();
        let link = Link::new(&ns, 6);
        let handle = ns.start(
            6,
            Behaviour {
                delay: Duration::ZERO,
                jitter: Duration::ZERO,
                corrupt: 0.0,
                reorder: Some(Reorder {
                    probability: 0.25,
                    gap: Duration::from_millis(10),
                }),
            },
            4,
        );
        let n = 400;
        let got = exchange(
            &link,
            0..n,
            Duration::from_millis(1),
            Duration::from_millis(300),
        );
        let stats = handle.stop().unwrap();
        assert_eq!(got.len(), n as usize, "datagrams lost");
        // Out of order: a datagram arriving after one sent later than it.
        let mut highest = None;
        let mut late = 0;
        for a in &got {
            if highest.is_some_and(|h| a.seq < h) {
                late += 1;
            }
            highest = highest.max(Some(a.seq));
        }
        let share = f64::from(late) / f64::from(n);
        eprintln!(
            "reorder 25% gap 10ms: {:.1}% arrived out of order; {stats:?}",
            share * 100.0
        );
        assert!(
            (0.15..=0.35).contains(&share),
            "out of order {:.1}%",
            share * 100.0
        );
    }

    #[test]
    fn stopping_releases_every_held_datagram() {
        crate::testkit::assert_isolated();
        let _one_at_a_time = serial();
        let ns = Netns::new();
        let link = Link::new(&ns, 7);
        let handle = ns.start(7, delay_of(Duration::from_secs(10), Duration::ZERO), 5);
        let epoch = Instant::now();
        send_paced(&link, epoch, 0..50, Duration::from_millis(1));
        for _ in 0..200 {
            if handle.stats().received == 50 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            handle.stats().received,
            50,
            "the handler never saw them all"
        );
        let early = collect(
            &link,
            epoch,
            0..50,
            Instant::now() + Duration::from_millis(50),
        );
        assert!(
            early.is_empty(),
            "{} arrived before their 10 s",
            early.len()
        );

        let stopped = Instant::now();
        let stats = handle.stop().unwrap();
        let got = collect(&link, epoch, 0..50, Instant::now() + Duration::from_secs(2));
        eprintln!(
            "stop with 50 held: {} arrived, stop took {:.3} ms; {stats:?}",
            got.len(),
            ms(stopped.elapsed())
        );
        assert_eq!(got.len(), 50, "held datagrams lost by stopping");
        assert!(stopped.elapsed() < Duration::from_secs(3));
        assert_eq!(stats.accepted, 50);
    }

    #[test]
    fn a_queue_bound_elsewhere_is_refused_and_probe_finds_a_free_one() {
        crate::testkit::assert_isolated();
        let _one_at_a_time = serial();
        let ns = Netns::new();
        let first = ns.start(8, delay_of(Duration::ZERO, Duration::ZERO), 6);
        let err = QueueHandle::start(
            Some(&ns.name),
            8,
            delay_of(Duration::ZERO, Duration::ZERO),
            6,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                NfqError::QueueBusy {
                    queue: 8,
                    owner: Some(_)
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("already bound"), "{err}");
        ns.inside(probe).unwrap();
        first.stop().unwrap();
        // Unbinding freed it.
        ns.start(8, delay_of(Duration::ZERO, Duration::ZERO), 6)
            .stop()
            .unwrap();
    }
}
