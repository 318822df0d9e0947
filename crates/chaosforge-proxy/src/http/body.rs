//! Bodies through the proxy: one boxed type for everything, streaming wrappers for the
//! corruptions that can stream (truncate, flip bytes), and bounded collection for the ones
//! that need the bytes (JSONPath replacement, replay capture).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::HeaderMap;
use rand::RngExt;
use rand::rngs::SmallRng;
use serde_json_path::JsonPath;

/// The error type of every body in the proxy.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every request and response body the proxy handles. A body passed on unchanged (every
/// request no fault touches) stays hyper's own [`Incoming`], so forwarding it allocates
/// nothing; the others are boxed, `Unsync` because hyper needs only `Send` and the streaming
/// wrappers hold an RNG.
pub(crate) enum ProxyBody {
    /// A client's or an upstream's body, as hyper reads it.
    Incoming(Incoming),
    /// Anything the proxy made or wrapped.
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

/// The outcome of [`collect_up_to`].
pub(crate) enum Collected {
    /// The whole body, within the limit.
    Whole {
        /// Its data, concatenated.
        data: Bytes,
        /// Its trailers, if any.
        trailers: Option<HeaderMap>,
    },
    /// Over the limit: a body that yields what was read, then the rest, unchanged.
    TooLarge(ProxyBody),
}

/// A body that ends after `left` more bytes.
struct Truncated {
    /// `None` once the cut is reached: dropping the rest stops reading it.
    inner: Option<ProxyBody>,
    left: usize,
}

/// Frames already read, then the rest of the body.
struct Prefixed {
    head: VecDeque<Frame<Bytes>>,
    rest: Option<ProxyBody>,
}

/// A body that yields one error.
struct Failed(Option<BoxError>);

/// A body read from a client or an upstream.
pub(crate) fn incoming(body: Incoming) -> ProxyBody {
    ProxyBody::Incoming(body)
}

/// A body of these bytes (its exact length lets hyper set `content-length`).
pub(crate) fn full(data: impl Into<Bytes>) -> ProxyBody {
    boxed(Full::new(data.into()).map_err(|never| match never {}))
}

/// An empty body.
pub(crate) fn empty() -> ProxyBody {
    boxed(Empty::new().map_err(|never| match never {}))
}

/// A body that fails at once with `error` (an upstream body that failed while buffered).
pub(crate) fn failed(error: BoxError) -> ProxyBody {
    boxed(Failed(Some(error)))
}

/// `data` then `trailers`, as a body.
pub(crate) fn rebuilt(data: Bytes, trailers: Option<HeaderMap>) -> ProxyBody {
    if trailers.is_none() {
        return full(data);
    }
    let mut head = VecDeque::from([Frame::data(data)]);
    head.extend(trailers.map(Frame::trailers));
    boxed(Prefixed { head, rest: None })
}

/// `body` boxed.
fn boxed(body: impl Body<Data = Bytes, Error = BoxError> + Send + 'static) -> ProxyBody {
    ProxyBody::Boxed(body.boxed_unsync())
}

/// Keeps the first `keep` bytes of `body`. Streams: nothing past the cut is read.
pub(crate) fn truncate(body: ProxyBody, keep: usize) -> ProxyBody {
    boxed(Truncated {
        inner: Some(body),
        left: keep,
    })
}

/// Inverts each byte of `body` with probability `p`, drawing from `rng`. Streams.
pub(crate) fn flip(body: ProxyBody, p: f64, mut rng: SmallRng) -> ProxyBody {
    if p <= 0.0 {
        return body;
    }
    boxed(body.map_frame(move |frame| {
        frame.map_data(|data| {
            let mut bytes = BytesMut::from(data);
            for byte in bytes.iter_mut() {
                if rng.random::<f64>() < p {
                    *byte ^= 0xFF;
                }
            }
            bytes.freeze()
        })
    }))
}

/// Reads `body` whole if it holds at most `limit` bytes; else gives back a body that replays
/// what was read before the rest, so nothing is lost.
///
/// # Errors
///
/// A read error of the body.
pub(crate) async fn collect_up_to(
    mut body: ProxyBody,
    limit: usize,
) -> Result<Collected, BoxError> {
    // A declared length over the limit needs no reading at all.
    if body.size_hint().lower() > limit as u64 {
        return Ok(Collected::TooLarge(body));
    }
    let mut head = VecDeque::new();
    let mut size = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Some(data) = frame.data_ref() {
            size = size.saturating_add(data.len());
        }
        head.push_back(frame);
        if size > limit {
            return Ok(Collected::TooLarge(boxed(Prefixed {
                head,
                rest: Some(body),
            })));
        }
    }
    let mut data = BytesMut::with_capacity(size);
    let mut trailers = None;
    for frame in head {
        match frame.into_data() {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    Ok(Collected::Whole {
        data: data.freeze(),
        trailers,
    })
}

/// `data` parsed as JSON with every value `path` selects set to `value`; `None` if it is not
/// JSON or nothing is selected.
pub(crate) fn json_replace(
    data: &[u8],
    path: &JsonPath,
    value: &serde_json::Value,
) -> Option<Bytes> {
    let mut doc: serde_json::Value = serde_json::from_slice(data).ok()?;
    // Locations first (they borrow the document), then one mutable lookup each.
    let pointers: Vec<String> = path
        .query_located(&doc)
        .locations()
        .map(|location| location.to_json_pointer())
        .collect();
    if pointers.is_empty() {
        return None;
    }
    for pointer in pointers {
        if let Some(slot) = doc.pointer_mut(&pointer) {
            *slot = value.clone();
        }
    }
    serde_json::to_vec(&doc).ok().map(Bytes::from)
}

// === impl ProxyBody ===

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Incoming(body) => Pin::new(body).poll_frame(cx).map_err(BoxError::from),
            ProxyBody::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Incoming(body) => body.is_end_stream(),
            ProxyBody::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Incoming(body) => body.size_hint(),
            ProxyBody::Boxed(body) => body.size_hint(),
        }
    }
}

// === impl Truncated ===

impl Body for Truncated {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.left == 0 {
            this.inner = None;
            return Poll::Ready(None);
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(inner).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    data.truncate(this.left);
                    this.left -= data.len();
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => Poll::Ready(other),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0 || self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let left = self.left as u64;
        let Some(inner) = &self.inner else {
            return SizeHint::with_exact(0);
        };
        let hint = inner.size_hint();
        let mut out = SizeHint::new();
        out.set_upper(hint.upper().map_or(left, |u| u.min(left)));
        out.set_lower(hint.lower().min(left));
        out
    }
}

// === impl Prefixed ===

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(frame) = this.head.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match this.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_empty() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self
            .head
            .iter()
            .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
            .sum();
        let Some(rest) = &self.rest else {
            return SizeHint::with_exact(buffered);
        };
        let hint = rest.size_hint();
        let mut out = SizeHint::new();
        out.set_lower(buffered.saturating_add(hint.lower()));
        if let Some(upper) = hint.upper() {
            out.set_upper(buffered.saturating_add(upper));
        }
        out
    }
}

// === impl Failed ===

impl Body for Failed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.take().map(Err))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// A streaming body of these chunks, with no declared length.
    fn chunks(parts: &[&'static [u8]]) -> ProxyBody {
        let mut head: VecDeque<Frame<Bytes>> = parts
            .iter()
            .map(|p| Frame::data(Bytes::from_static(p)))
            .collect();
        head.push_back(Frame::trailers(HeaderMap::new()));
        boxed(Prefixed { head, rest: None })
    }

    async fn bytes_of(body: ProxyBody) -> Bytes {
        body.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn truncate_cuts_across_chunks_and_fixes_the_length() {
        let body = truncate(chunks(&[b"abc", b"def", b"ghi"]), 5);
        assert_eq!(bytes_of(body).await, "abcde");
        let body = truncate(full("abcdef"), 4);
        assert_eq!(body.size_hint().exact(), Some(4));
        assert_eq!(bytes_of(body).await, "abcd");
        assert_eq!(bytes_of(truncate(full("ab"), 10)).await, "ab");
        assert_eq!(bytes_of(truncate(full("ab"), 0)).await, "");
    }

    #[tokio::test]
    async fn flip_keeps_the_length_and_changes_about_p() {
        let data = vec![0u8; 10_000];
        let out = bytes_of(flip(full(data), 0.1, SmallRng::seed_from_u64(1))).await;
        assert_eq!(out.len(), 10_000);
        let flipped = out.iter().filter(|b| **b == 0xFF).count();
        assert!((800..1200).contains(&flipped), "{flipped}");
        assert!(out.iter().all(|b| *b == 0 || *b == 0xFF));
    }

    #[tokio::test]
    async fn collect_keeps_everything_over_the_limit() {
        let Collected::Whole { data, trailers } =
            collect_up_to(chunks(&[b"ab", b"cd"]), 4).await.unwrap()
        else {
            panic!("within the limit");
        };
        assert_eq!(data, "abcd");
        assert!(trailers.is_some());
        let Collected::TooLarge(body) = collect_up_to(chunks(&[b"ab", b"cd", b"ef"]), 3)
            .await
            .unwrap()
        else {
            panic!("over the limit");
        };
        assert_eq!(bytes_of(body).await, "abcdef");
        let Collected::TooLarge(body) = collect_up_to(full("abcdef"), 3).await.unwrap() else {
            panic!("declared over the limit");
        };
        assert_eq!(bytes_of(body).await, "abcdef");
    }

    #[test]
    fn json_replace_sets_every_selected_value() {
        let path = JsonPath::parse("$.items[*].price").unwrap();
        let out = json_replace(
            br#"{"items":[{"price":1},{"price":2}],"n":2}"#,
            &path,
            &serde_json::json!(-1),
        )
        .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"items":[{"price":-1},{"price":-1}],"n":2})
        );
        assert!(json_replace(b"not json", &path, &serde_json::json!(0)).is_none());
        assert!(json_replace(b"{}", &path, &serde_json::json!(0)).is_none());
    }
}
