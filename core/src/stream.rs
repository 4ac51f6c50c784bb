//! Turning a source of frames into an HTTP response that stays open.
//!
//! [`sse_response`] wraps any stream of encoded frames with what every event stream needs:
//! the right headers (`Content-Type: text/event-stream`, `Cache-Control: no-cache,
//! no-transform`, `X-Accel-Buffering: no` so nginx does not buffer; never a `Connection` header,
//! which HTTP/2 forbids), a keep-alive comment so the stream is never silent for longer than the
//! configured interval (proxies cut idle connections), and an immediate end when the server shuts
//! down, so graceful shutdown never waits on a stream that would never finish by itself.
//!
//! Frames arrive already encoded and already batched (see [`Subscription::next_batch`]), so each
//! write to the socket is one `Bytes` handed to hyper with no copy and no per-connection encode.
//!
//! [`Subscription::next_batch`]: crate::hub::Subscription::next_batch

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::edge::redact_secrets;
use crate::edge::streams::StreamHandle;
use crate::hub::Subscription;
use crate::metrics::Metrics;
use crate::session::SessionConnection;
use crate::wire::Frame;

/// Settings shared by every stream of a server.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// Send a keep-alive comment after this long without any frame.
    pub keep_alive: Duration,
    /// Cancelled when the server shuts down: every open stream ends at once.
    pub shutdown: CancellationToken,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig { keep_alive: Duration::from_secs(15), shutdown: CancellationToken::new() }
    }
}

/// The client's resume point: the `Last-Event-ID` header, or for clients that cannot set headers
/// the `lastEventId` query parameter. The header wins when both are present.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LastEventId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        let query = || {
            let query = parts.uri.query()?;
            form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "lastEventId")
                .map(|(_, v)| v.into_owned())
        };
        Ok(LastEventId(header.or_else(query).filter(|v| !v.is_empty())))
    }
}

/// A boxed stream of encoded frames.
pub type FrameStream = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

impl Subscription {
    /// This subscription as a stream of batches.
    pub fn into_stream(self) -> FrameStream {
        Box::pin(futures_util::stream::unfold(self, |mut sub| async move {
            sub.next_batch().await.map(|batch| (batch, sub))
        }))
    }
}

impl SessionConnection {
    /// This connection as a stream of batches; dropping the stream detaches the connection.
    pub fn into_stream(self) -> FrameStream {
        Box::pin(futures_util::stream::unfold(self, |mut conn| async move {
            conn.next_batch().await.map(|batch| (batch, conn))
        }))
    }
}

/// Frames to send before the stream's own (a greeting, a `retry:` hint…), then the stream.
pub fn with_prelude(prelude: Vec<Frame>, frames: FrameStream) -> FrameStream {
    let first = futures_util::stream::iter(prelude.into_iter().map(Frame::into_bytes));
    Box::pin(first.chain(frames))
}

/// Counts a stream as open from creation to drop (the client went away, or the stream ended),
/// and marks it ended on its [`StreamHandle`].
struct OpenStream {
    metrics: Metrics,
    ended: CancellationToken,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.ended.cancel();
        self.metrics.stream_closed();
        tracing::debug!("stream closed");
    }
}

/// The body of an event stream: frames as they come, a keep-alive comment when the stream has
/// been quiet, and the end as soon as the server shuts down.
///
/// Written as a `Stream` by hand rather than with `select!` in a loop because this runs once per
/// event per connection: here the shutdown future is created once (not a new waiter on the shared
/// shutdown token at every poll, which contends across all connections), and the keep-alive is a
/// ticking interval with a "quiet" flag rather than a timer re-armed after every frame.
struct SseBody {
    frames: FrameStream,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Ticks every half keep-alive period.
    ticks: Interval,
    /// Nothing was sent since the last tick.
    quiet: bool,
    open: OpenStream,
}

impl Stream for SseBody {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.frames.as_mut().poll_next(cx) {
            Poll::Ready(Some(bytes)) => {
                this.quiet = false;
                this.open.metrics.bytes_sent(bytes.len());
                if tracing::enabled!(tracing::Level::TRACE) {
                    let text = String::from_utf8_lossy(&bytes);
                    tracing::trace!(bytes = bytes.len(), frames = %redact_secrets(&text), "sent");
                }
                return Poll::Ready(Some(Ok(bytes)));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        // Checked only once nothing is waiting to be sent (checking takes a lock on the token
        // every stream shares); a stream cannot stay ready forever, as the socket fills.
        if this.shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        // At most one keep-alive period of silence: a tick finds the stream quiet since the
        // previous tick (half a period ago, at least) and sends a comment.
        while this.ticks.poll_tick(cx).is_ready() {
            if this.quiet {
                return Poll::Ready(Some(Ok(Frame::keep_alive().into_bytes())));
            }
            this.quiet = true;
        }
        Poll::Pending
    }
}

/// The HTTP response for an event stream made of `frames`. It carries a [`StreamHandle`] that
/// closes the stream when cancelled (used by the per-client cap in [`crate::edge::streams`]).
pub fn sse_response(frames: FrameStream, config: &StreamConfig, metrics: &Metrics) -> Response {
    metrics.stream_opened();
    // This stream's own token: cancelled by a server shutdown (its parent), by the per-client
    // cap, or by the stream itself when it ends.
    let token = config.shutdown.child_token();
    let half = (config.keep_alive / 2).max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval_at(Instant::now() + half, half);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let body = SseBody {
        frames,
        shutdown: Box::pin(token.clone().cancelled_owned()),
        ticks,
        quiet: true,
        open: OpenStream { metrics: metrics.clone(), ended: token.clone() },
    };
    let mut response = Body::from_stream(body).into_response();
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response.extensions_mut().insert(StreamHandle(token));
    response
}
