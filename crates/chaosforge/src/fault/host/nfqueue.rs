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
mod tests;
