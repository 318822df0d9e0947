//! `timeout` (Toxiproxy's): every chunk is dropped; once `timeout` passes without a chunk
//! reaching the toxic the connection is closed. The timer re-arms on every (dropped) chunk, so
//! it is an idle timeout, as in Toxiproxy. Zero never closes. Removing the toxic closes the
//! connections it applied to (see `Chain::reconcile`), as Toxiproxy's cleanup does.

use std::time::Duration;

use tokio::time::Instant;

/// Per-link state of a timeout toxic.
#[derive(Debug)]
pub(crate) struct Timeout {
    timeout: Duration,
    /// When the last chunk reached the toxic (or it started to apply).
    last: Instant,
}

impl Timeout {
    pub(crate) fn new(timeout: Duration, since: Instant) -> Timeout {
        Timeout {
            timeout,
            last: since,
        }
    }

    /// A chunk reached the toxic (and is dropped): re-arm the timer.
    pub(crate) fn touch(&mut self, now: Instant) {
        self.last = now;
    }

    /// When the connection closes, if ever.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        (!self.timeout.is_zero()).then(|| self.last + self.timeout)
    }
}
