//! The proxy family: toxics on a TCP proxy target (`latency`, `bandwidth`, `timeout`, `reset`,
//! `down`, `corrupt`), per stream, on a share of connections.

use std::time::Duration;

use super::FaultKind;
use crate::fault::net::{CorruptUnit, ProxyFault, Stream};
use crate::plan::Cx;
use crate::spec;
use crate::units::{self, Ratio};

/// `latency 200ms ±20ms (downstream, toxicity 50%)`.
pub(super) fn describe(streams: &[Stream], toxicity: Ratio, fault: &ProxyFault) -> String {
    let what = match fault {
        ProxyFault::Latency { delay, jitter } if jitter.is_zero() => {
            format!("latency {}", units::format_duration(*delay))
        }
        ProxyFault::Latency { delay, jitter } => format!(
            "latency {} ±{}",
            units::format_duration(*delay),
            units::format_duration(*jitter)
        ),
        ProxyFault::Bandwidth { rate } => format!("bandwidth {rate} B/s"),
        ProxyFault::Timeout { after: Some(a) } => {
            format!("timeout (close after {})", units::format_duration(*a))
        }
        ProxyFault::Timeout { after: None } => "timeout (hold forever)".into(),
        ProxyFault::Reset { after } => {
            format!("reset after {}", units::format_duration(*after))
        }
        ProxyFault::Down => "down".into(),
        ProxyFault::Corrupt { probability, per } => {
            format!(
                "corrupt {probability} per {}",
                if *per == CorruptUnit::Byte {
                    "byte"
                } else {
                    "chunk"
                }
            )
        }
    };
    let dir = match streams {
        [Stream::Upstream] => "upstream",
        [Stream::Downstream] => "downstream",
        _ => "both ways",
    };
    let tox = if toxicity == Ratio::ONE {
        String::new()
    } else {
        format!(", toxicity {toxicity}")
    };
    if matches!(fault, ProxyFault::Down) {
        what
    } else {
        format!("{what} ({dir}{tox})")
    }
}

/// `down`: the proxy stops listening; open connections are closed.
pub(super) fn down() -> FaultKind {
    toxic(vec![Stream::Downstream], Ratio::ONE, ProxyFault::Down)
}

fn toxic(streams: Vec<Stream>, toxicity: Ratio, fault: ProxyFault) -> FaultKind {
    FaultKind::Proxy {
        streams,
        toxicity,
        fault,
    }
}

// === impl Cx ===

impl Cx<'_> {
    pub(super) fn proxy_latency(&mut self, p: &str, l: &spec::LatencySpec) -> FaultKind {
        let before = self.diags.len();
        let delay = self.duration(&format!("{p}.delay"), Some(&l.delay), Duration::ZERO);
        // A delay that did not parse stands at zero; comparing the jitter with it would only
        // repeat that problem.
        let delay_ok = self.diags.len() == before;
        let jitter = self.duration(&format!("{p}.jitter"), l.jitter.as_deref(), Duration::ZERO);
        // Each chunk waits `delay ± jitter`; a jitter beyond the delay would ask for negative
        // waits, which the proxy can only clamp to zero, so `1.5s ±2h` is a typo, not a plan.
        if delay_ok && jitter > delay {
            self.err(
                &format!("{p}.jitter"),
                format!(
                    "jitter {} is larger than the delay {}: each chunk waits delay ± jitter, and a chunk cannot leave before it arrived",
                    units::format_duration(jitter),
                    units::format_duration(delay)
                ),
            );
        }
        self.proxy_only(p, &l.peers, &l.ports);
        let tox = self.ratio(&format!("{p}.toxicity"), l.toxicity.as_deref(), Ratio::ONE);
        toxic(
            self.proxy_streams(p, l.direction),
            tox,
            ProxyFault::Latency { delay, jitter },
        )
    }

    pub(super) fn proxy_corrupt(&mut self, p: &str, c: &spec::CorruptSpec) -> FaultKind {
        let probability = self.ratio(
            &format!("{p}.probability"),
            Some(&c.probability),
            Ratio::ZERO,
        );
        self.proxy_only(p, &c.peers, &c.ports);
        let tox = self.ratio(&format!("{p}.toxicity"), c.toxicity.as_deref(), Ratio::ONE);
        let per = match c.per.unwrap_or_default() {
            spec::CorruptPerSpec::Byte => CorruptUnit::Byte,
            spec::CorruptPerSpec::Chunk => CorruptUnit::Chunk,
        };
        toxic(
            self.proxy_streams(p, c.direction),
            tox,
            ProxyFault::Corrupt { probability, per },
        )
    }

    pub(super) fn bandwidth(&mut self, p: &str, b: &spec::BandwidthSpec) -> FaultKind {
        let rate = units::parse_byte_rate(&b.rate).unwrap_or_else(|e| {
            self.unit_err(&format!("{p}.rate"), e);
            1
        });
        let tox = self.ratio(&format!("{p}.toxicity"), b.toxicity.as_deref(), Ratio::ONE);
        toxic(
            self.proxy_streams(p, Some(b.direction)),
            tox,
            ProxyFault::Bandwidth { rate },
        )
    }

    pub(super) fn timeout(&mut self, p: &str, t: &spec::TimeoutSpec) -> FaultKind {
        let after = t
            .after
            .as_deref()
            .map(|a| self.duration(&format!("{p}.after"), Some(a), Duration::ZERO));
        let tox = self.ratio(&format!("{p}.toxicity"), t.toxicity.as_deref(), Ratio::ONE);
        toxic(
            self.proxy_streams(p, Some(t.direction)),
            tox,
            ProxyFault::Timeout { after },
        )
    }

    pub(super) fn reset(&mut self, p: &str, r: &spec::ResetSpec) -> FaultKind {
        let after = self.duration(&format!("{p}.after"), r.after.as_deref(), Duration::ZERO);
        let tox = self.ratio(&format!("{p}.toxicity"), r.toxicity.as_deref(), Ratio::ONE);
        toxic(vec![Stream::Downstream], tox, ProxyFault::Reset { after })
    }

    /// A proxy fault's streams; `egress`/`ingress` are host words.
    fn proxy_streams(&mut self, p: &str, d: Option<spec::DirectionSpec>) -> Vec<Stream> {
        match d.unwrap_or_default() {
            spec::DirectionSpec::Upstream => vec![Stream::Upstream],
            spec::DirectionSpec::Downstream => vec![Stream::Downstream],
            spec::DirectionSpec::Both => vec![Stream::Upstream, Stream::Downstream],
            d @ (spec::DirectionSpec::Egress | spec::DirectionSpec::Ingress) => {
                self.err(
                    &format!("{p}.direction"),
                    format!(
                        "`{}` is for host targets; on a proxy write `upstream`, `downstream` or `both`",
                        if d == spec::DirectionSpec::Egress { "egress" } else { "ingress" }
                    ),
                );
                vec![Stream::Downstream]
            }
        }
    }

    /// `peers` and `ports` narrow host faults only.
    fn proxy_only(&mut self, p: &str, peers: &[String], ports: &[u16]) {
        for (field, given) in [("peers", !peers.is_empty()), ("ports", !ports.is_empty())] {
            if given {
                self.err(
                    &format!("{p}.{field}"),
                    format!(
                        "`{field}` is for host (`netns`/`host`) targets; this fault acts on a proxy"
                    ),
                );
            }
        }
    }
}
