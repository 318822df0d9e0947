//! `hold` (the engine's `timeout`): the stream stops (data and EOF are held, not dropped) and the connection is closed
//! `after` the toxic started to apply, or never. Removing the toxic releases what was held, in
//! order, on connections that are still open.
//!
//! Toxiproxy drops the data and re-arms its timer on every chunk (an idle timeout), and closes
//! the connection when the toxic is removed; we hold and keep a fixed deadline instead, so a
//! revert is lossless.

use std::time::Duration;

use tokio::time::Instant;

/// Per-link state of a hold toxic.
#[derive(Debug)]
pub(crate) struct Hold {
    after: Option<Duration>,
}

impl Hold {
    pub(crate) fn new(after: Option<Duration>) -> Hold {
        Hold { after }
    }

    /// When the connection closes, counted from when the toxic started to apply (`since`).
    pub(crate) fn deadline(&self, since: Instant) -> Option<Instant> {
        self.after.map(|after| since + after)
    }
}
