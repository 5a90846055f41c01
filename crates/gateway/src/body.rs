//! Body types shared by the listener, the proxy and the admin server.

use bytes::Bytes;

use http_body_util::{combinators::BoxBody, BodyExt, Full};

/// The error a streamed body can end with (an upstream reset, a client gone).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body Airlock produces: full, empty, or streamed from the cluster.
pub type Body = BoxBody<Bytes, BodyError>;

/// A body that is already complete.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

pin_project_lite::pin_project! {
    /// A body that runs a callback when it is dropped: for gauges of open streams.
    struct Guarded<F: FnOnce()> {
        #[pin]
        inner: Body,
        on_drop: Option<F>,
    }

    impl<F: FnOnce()> PinnedDrop for Guarded<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(f) = this.project().on_drop.take() {
                f();
            }
        }
    }
}

impl<F: FnOnce()> http_body::Body for Guarded<F> {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BodyError>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps a body so that `on_drop` runs once when the stream ends or the client goes away.
pub fn guarded<F: FnOnce() + Send + Sync + 'static>(inner: Body, on_drop: F) -> Body {
    Guarded {
        inner,
        on_drop: Some(on_drop),
    }
    .boxed()
}
