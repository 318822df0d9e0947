//! `reset_peer`: the first chunk (or the end of stream) that reaches the toxic triggers it and
//! is dropped, like everything after it; `timeout` later both sockets are closed with RST.
//!
//! Unlike Toxiproxy, `SO_LINGER` 0 is set only when the reset happens, not on every connection
//! of a proxy that has the toxic: with toxicity 0 a normal close stays a normal close, and a
//! toxic added to an open connection still resets it.

use std::time::Duration;

use tokio::time::Instant;

/// Per-link state of a reset_peer toxic.
#[derive(Debug)]
pub(crate) struct ResetPeer {
    timeout: Duration,
    triggered: Option<Instant>,
}

impl ResetPeer {
    pub(crate) fn new(timeout: Duration) -> ResetPeer {
        ResetPeer {
            timeout,
            triggered: None,
        }
    }

    /// Data or the end of stream reached the toxic.
    pub(crate) fn trigger(&mut self, now: Instant) {
        self.triggered.get_or_insert(now);
    }

    /// When the connection is reset, once triggered.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.triggered.map(|at| at + self.timeout)
    }
}
