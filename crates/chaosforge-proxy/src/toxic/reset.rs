//! `reset`: `after` the toxic started to apply to a connection, both of its sockets are closed
//! with a TCP RST (`SO_LINGER` 0, set by the link writers when they see the ending). Data flows
//! untouched until then.
//!
//! Unlike Toxiproxy's `reset_peer`, the linger option is set only when the reset happens, so a
//! reset toxic added to an open connection still sends RST, and one with toxicity 0 never does.

use std::time::Duration;

use tokio::time::Instant;

/// Per-link state of a reset toxic.
#[derive(Debug)]
pub(crate) struct Reset {
    after: Duration,
}

impl Reset {
    pub(crate) fn new(after: Duration) -> Reset {
        Reset { after }
    }

    /// When the connection is reset, counted from when the toxic started to apply (`since`).
    pub(crate) fn deadline(&self, since: Instant) -> Instant {
        since + self.after
    }
}
