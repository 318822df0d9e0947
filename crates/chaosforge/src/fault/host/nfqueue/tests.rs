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
    // [10, 30] ms drawn. Nothing leaves early, whatever the load: 2 ms for the clock. A busy
    // machine can hold a few packets back longer (a late wakeup of the sender, the handler or
    // the receiver), so the upper bound is on the 95th percentile, not the maximum.
    let mut sorted = added.clone();
    sorted.sort_by(f64::total_cmp);
    let p95 = sorted[sorted.len() * 95 / 100];
    assert!(
        lo >= 8.0 && p95 <= 32.0,
        "added latency outside [8, 32] ms: min {lo:.3}, p95 {p95:.3} (max {hi:.3})"
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
