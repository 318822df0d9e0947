//! `slow_close`: data passes untouched; the end of the stream waits `delay` from when it reached
//! the toxic before it is passed on (so the destination sees its FIN late).

use std::time::Duration;

use tokio::time::Instant;

use super::Poll;

/// Per-link state of a slow_close toxic.
#[derive(Debug)]
pub(crate) struct SlowClose {
    delay: Duration,
    /// When the end of stream first reached the toxic.
    eof_at: Option<Instant>,
}

impl SlowClose {
    pub(crate) fn new(delay: Duration) -> SlowClose {
        SlowClose {
            delay,
            eof_at: None,
        }
    }

    /// Whether the end of stream may pass at `now`.
    pub(crate) fn poll_eof(&mut self, now: Instant) -> Poll {
        let release = *self.eof_at.get_or_insert(now) + self.delay;
        if now >= release {
            Poll::Ready
        } else {
            Poll::Until(release)
        }
    }
}
