//! A deadline for a request's whole body.
//!
//! hyper's `header_read_timeout` stops a client that trickles its request head; nothing stops
//! one that sends a whole head, announces `Content-Length: 100` and then sends seven bytes, or
//! one byte every few seconds: the handler waits in its body extractor, and the connection is
//! held for as long as the client likes. [`DeadlineBody`] gives the body [`BODY_TIMEOUT`] (by
//! default) from the moment the server first has to wait for it; past that it ends in a
//! [`BodyTimeout`] error, which the extractors answer with `408 body_timeout`.
//!
//! Written here rather than taken from tower-http: its `TimeoutBody` restarts its timer at every
//! frame, so a byte every few seconds would never trip it. Nothing is armed for a body that is
//! already in (most are: a small POST arrives with its head), so the usual request pays for no
//! timer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// How long a client may take to send a request's body, by default.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The body did not arrive within its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// A request body that fails with [`BodyTimeout`] once it has kept the server waiting for
/// `timeout` in all.
#[derive(Debug)]
pub struct DeadlineBody<B> {
    inner: B,
    timeout: Duration,
    /// Armed the first time the body is not ready.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> DeadlineBody<B> {
    /// `inner`, with `timeout` for the whole of it.
    pub fn new(inner: B, timeout: Duration) -> DeadlineBody<B> {
        DeadlineBody { inner, timeout, deadline: None }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let timeout = this.timeout;
        let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimeout(timeout)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `error`, or an error it was caused by, is a [`BodyTimeout`] (extractors wrap the
/// body's error in their own).
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<BodyTimeout>() {
            return true;
        }
        cause = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn a_body_already_in_needs_no_timer_and_passes_unchanged() {
        let body = DeadlineBody::new(http_body_util::Full::new(Bytes::from("{}")), Duration::ZERO);
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected, "{}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_trickles_past_its_deadline_fails_with_body_timeout() {
        let (mut sender, inner) = http_body_util::channel::Channel::<Bytes>::new(1);
        let trickle = tokio::spawn(async move {
            // A byte every 10 s: each well within the deadline, all of them far beyond it.
            for _ in 0..10 {
                if sender.send_data(Bytes::from_static(b"x")).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        });
        let started = tokio::time::Instant::now();
        let body = DeadlineBody::new(inner, Duration::from_secs(30));
        let error = body.collect().await.unwrap_err();
        assert!(is_body_timeout(error.as_ref()), "{error}");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(30),
            "the deadline is for the whole body"
        );
        trickle.abort();
    }
}
