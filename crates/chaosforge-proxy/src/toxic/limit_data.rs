//! `limit_data`: forwards at most `bytes` on the link, cutting the chunk that crosses the limit,
//! then closes the connection once what passed is written. The count survives updates of the
//! toxic (Toxiproxy keeps it as toxic state too). With `bytes` 0 the close waits for the first
//! data, as in Toxiproxy.

/// Per-link state of a limit_data toxic.
#[derive(Debug)]
pub(crate) struct LimitData {
    bytes: u64,
    /// Bytes passed so far on this link.
    pub(crate) sent: u64,
    /// The limit was reached by data: the connection is to be closed.
    pub(crate) exhausted: bool,
}

impl LimitData {
    pub(crate) fn new(bytes: u64, sent: u64) -> LimitData {
        LimitData {
            bytes,
            sent,
            exhausted: false,
        }
    }

    /// How many bytes of a `len`-byte chunk may pass; marks the toxic exhausted when the limit
    /// is reached.
    pub(crate) fn admit(&mut self, len: usize) -> usize {
        let left = self.bytes.saturating_sub(self.sent);
        let take = left.min(len as u64);
        self.sent += take;
        if self.sent >= self.bytes {
            self.exhausted = true;
        }
        usize::try_from(take).unwrap_or(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_the_crossing_chunk_then_is_exhausted() {
        let mut l = LimitData::new(10, 0);
        assert_eq!(l.admit(7), 7);
        assert!(!l.exhausted);
        assert_eq!(l.admit(9), 3);
        assert!(l.exhausted);
        assert_eq!(l.admit(5), 0);
        let mut zero = LimitData::new(0, 0);
        assert_eq!(zero.admit(1), 0);
        assert!(zero.exhausted);
    }
}
