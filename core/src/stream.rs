//! Turning a source of frames into an HTTP response that stays open.
//!
//! [`sse_response`] wraps any stream of encoded frames with what every event stream needs:
//! the right headers (`Content-Type: text/event-stream`, `Cache-Control: no-cache,
//! no-transform`, `X-Accel-Buffering: no` so nginx does not buffer; no `Connection` header, which
//! HTTP/2 forbids: only the connection loop adds `Connection: close`, to HTTP/1.1 streams that
//! take their socket over), a keep-alive comment so the stream is never silent for longer than the
//! configured interval (proxies cut idle connections), and an immediate end when the server shuts
//! down, so graceful shutdown never waits on a stream that would never finish by itself.
//!
//! Frames arrive already encoded and already batched (see [`Subscription::next_batch`]), so each
//! write to the socket is one `Bytes` handed to hyper with no copy and no per-connection encode.
//! A topic's stream ([`LiveResponse`]) goes further once its first frames are out: it takes the
//! socket over from hyper ([`takeover`](crate::edge::takeover)) and its topic's sweeper writes to it directly. A
//! session's stream ([`SessionConnection::into_response`]) does the same, and as its topic has
//! one stream, whoever sends to the session writes to the socket itself.
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

use crate::edge::takeover::TakeoverRequest;

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

/// The header a reconnecting EventSource sends (a constant: a `&str` is parsed per lookup).
const LAST_EVENT_ID: http::HeaderName = http::HeaderName::from_static("last-event-id");

/// The client's resume point: the `Last-Event-ID` header, or for clients that cannot set headers
/// the `lastEventId` query parameter. The header wins when both are present.
///
/// A header that is not plain text (bytes past ASCII, a control byte) is still an id the client
/// sent, read lossily: it is none of ours, so the stream starts with `resync` rather than
/// silently live, as it would if the header were taken for absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LastEventId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(&LAST_EVENT_ID)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .filter(|value| !value.is_empty());
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
    /// This connection as an event stream: `prelude` first, then everything sent to the session.
    /// Like a topic's stream ([`LiveResponse`]) it takes its socket over where it can, and as a
    /// session's topic has a single stream or few, whoever sends to the session (a caller
    /// waiting for its answer, mostly) writes the frame to the client's socket itself, with no
    /// task woken on the way (see [`crate::hub`]'s sweeper). The stream ends when the session
    /// closes; the connection counts as attached until the stream ends, and its next one resumes
    /// after the last frame this one was handed.
    pub fn into_response(
        self,
        prelude: Vec<Frame>,
        config: &StreamConfig,
        metrics: &Metrics,
    ) -> Response {
        let session = self.session().clone();
        let (subscription, attached) = self.into_parts();
        let response = LiveResponse::new(subscription)
            .prelude(prelude)
            .keep(attached)
            .into_response(config, metrics);
        if let Some(StreamHandle(token)) = response.extensions().get::<StreamHandle>() {
            // The stream's own token, which ends it wherever it is (with hyper, or taken over).
            let token = token.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = session.closed() => token.cancel(),
                    () = token.cancelled() => {}
                }
            });
        }
        response
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

/// What a failed replay reports; it ends the stream where it failed.
pub type StreamError = Box<dyn std::error::Error + Send + Sync>;

/// Frames on their way out through hyper. An error ends the stream there: carrying on would
/// leave a silent gap.
type Outgoing = Pin<Box<dyn Stream<Item = Result<Bytes, StreamError>> + Send>>;

/// The live part of a stream still to come, and its request for the connection's socket.
struct LivePart {
    subscription: Subscription,
    takeover: TakeoverRequest,
}

/// What became of a request for the socket.
enum Handover {
    /// The socket is the sweeper's now; this body is done.
    Done,
    /// hyper is still writing out what it holds.
    Waiting(LivePart),
    /// No socket for this stream: it goes on through hyper.
    Refused(Subscription),
}

/// The body of an event stream: frames as they come, a keep-alive comment when the stream has
/// been quiet, and the end as soon as the server shuts down. A live stream hands its socket to
/// the topic's sweeper once its first frames are out, when the connection allows it
/// ([`takeover`](crate::edge::takeover)); until then, and where it cannot, its frames go through hyper.
///
/// Written as a `Stream` by hand rather than with `select!` in a loop because this runs once per
/// event per connection: here the shutdown future is created once (not a new waiter on the shared
/// shutdown token at every poll, which contends across all connections), and the keep-alive is a
/// ticking interval with a "quiet" flag rather than a timer re-armed after every frame.
struct SseBody {
    /// What goes out through hyper now; `None` once it has ended.
    frames: Option<Outgoing>,
    /// The live subscription still to come after `frames`, if it may take the socket.
    live: Option<LivePart>,
    token: CancellationToken,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    keep_alive: Duration,
    /// Ticks every half keep-alive period.
    ticks: Interval,
    /// Nothing was sent since the last tick.
    quiet: bool,
    metrics: Metrics,
    /// These two move to the stream's own task when it takes the socket.
    open: Option<OpenStream>,
    keep: Option<Box<dyn Send>>,
}

impl Stream for SseBody {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(frames) = &mut this.frames {
                match frames.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(bytes))) => return Poll::Ready(Some(Ok(this.sent(bytes)))),
                    Poll::Ready(Some(Err(error))) => {
                        tracing::debug!(%error, "stream cut short; the client resumes from its last id");
                        return Poll::Ready(None);
                    }
                    Poll::Ready(None) => this.frames = None,
                    Poll::Pending => break,
                }
            }
            let Some(live) = this.live.take() else { return Poll::Ready(None) };
            match this.hand_over(live, cx) {
                Handover::Done => return Poll::Ready(None),
                Handover::Waiting(live) => {
                    this.live = Some(live);
                    break;
                }
                Handover::Refused(subscription) => {
                    let batches = subscription.into_stream().map(Ok::<_, StreamError>);
                    this.frames = Some(Box::pin(batches));
                }
            }
        }
        // Checked only once nothing is waiting to be sent (checking takes a lock on the token
        // every stream shares); a stream cannot stay ready forever, as the socket fills.
        if this.shutdown.as_mut().poll(cx).is_ready() {
            this.withdraw();
            return Poll::Ready(None);
        }
        // At most one keep-alive period of silence: a tick finds the stream quiet since the
        // previous tick (half a period ago, at least) and sends a comment, which counts as
        // sending (else a quiet stream would get one every half period).
        while this.ticks.poll_tick(cx).is_ready() {
            if this.quiet {
                return Poll::Ready(Some(Ok(this.sent(Frame::keep_alive().into_bytes()))));
            }
            this.quiet = true;
        }
        Poll::Pending
    }
}

impl SseBody {
    /// Counts and traces bytes on their way out through hyper.
    fn sent(&mut self, bytes: Bytes) -> Bytes {
        self.quiet = false;
        self.metrics.bytes_sent(bytes.len());
        if tracing::enabled!(tracing::Level::TRACE) {
            let text = String::from_utf8_lossy(&bytes);
            tracing::trace!(bytes = bytes.len(), frames = %redact_secrets(&text), "sent");
        }
        bytes
    }

    /// Asks for the connection's socket; once granted, moves the subscription onto its topic's
    /// sweeper and gives the stream's open count, guards and token to the stream's own task.
    fn hand_over(&mut self, live: LivePart, cx: &mut Context<'_>) -> Handover {
        let Some(offer) = live.takeover.0.get() else {
            return Handover::Refused(live.subscription);
        };
        let socket = match offer.poll_take(cx) {
            Poll::Pending => return Handover::Waiting(live),
            Poll::Ready(None) => return Handover::Refused(live.subscription),
            Poll::Ready(Some(socket)) => socket,
        };
        let stream = live.subscription.into_direct(socket, offer.framing);
        let keep: Vec<Box<dyn Send>> = vec![Box::new(self.open.take()), Box::new(self.keep.take())];
        let watch =
            crate::hub::Watch { token: self.token.clone(), keep_alive: self.keep_alive, keep };
        tokio::spawn(async move { stream.run(watch).await });
        Handover::Done
    }

    /// Takes back a request for the socket not granted yet (the stream is ending).
    fn withdraw(&self) {
        if let Some(offer) = self.live.as_ref().and_then(|live| live.takeover.0.get()) {
            offer.withdraw();
        }
    }
}

/// The HTTP response for an event stream made of `frames`. It carries a [`StreamHandle`] that
/// closes the stream when cancelled (used by the per-client cap in [`crate::edge::streams`]).
pub fn sse_response(frames: FrameStream, config: &StreamConfig, metrics: &Metrics) -> Response {
    let frames: Outgoing = Box::pin(frames.map(Ok::<_, StreamError>));
    response(Some(frames), None, None, config, metrics)
}

/// An event stream whose live part is a topic [`Subscription`]: first a prelude (a greeting, a
/// snapshot), then an optional replay, then the subscription. Where the connection allows, the
/// stream takes its socket once the prelude and replay are out, and the topic's sweeper writes to
/// it directly from then on ([`takeover`](crate::edge::takeover)); elsewhere it works the same through hyper.
///
/// ```
/// # fn demo(core: &sse_core::Core) -> axum::response::Response {
/// use sse_core::hub::Resume;
/// use sse_core::stream::LiveResponse;
/// use sse_core::wire::Event;
///
/// let subscription = core.hub.topic("news").subscribe(&Resume::Live);
/// LiveResponse::new(subscription)
///     .prelude(vec![Event::new().event("hello").data("").encode()])
///     .into_response(&core.streams, &core.metrics)
/// # }
/// ```
pub struct LiveResponse {
    prelude: Vec<Frame>,
    replay: Option<Outgoing>,
    subscription: Subscription,
    keep: Option<Box<dyn Send>>,
}

impl std::fmt::Debug for LiveResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveResponse")
            .field("prelude", &self.prelude.len())
            .field("replay", &self.replay.is_some())
            .finish_non_exhaustive()
    }
}

impl LiveResponse {
    /// A stream of `subscription`'s frames.
    pub fn new(subscription: Subscription) -> LiveResponse {
        LiveResponse { prelude: Vec::new(), replay: None, subscription, keep: None }
    }

    /// Frames to send first.
    pub fn prelude(mut self, frames: Vec<Frame>) -> LiveResponse {
        self.prelude = frames;
        self
    }

    /// Pages of a replay to send after the prelude (read from a store, say). An error ends the
    /// stream there, before anything live: the client resumes from the last id it got.
    pub fn replay<E>(mut self, pages: impl Stream<Item = Result<Bytes, E>> + Send + 'static) -> Self
    where
        E: Into<StreamError>,
    {
        self.replay = Some(Box::pin(pages.map(|page| page.map_err(Into::into))));
        self
    }

    /// Keeps `guard` alive for as long as the stream is open (a presence count, say).
    pub fn keep(mut self, guard: impl Send + 'static) -> LiveResponse {
        self.keep = Some(Box::new(guard));
        self
    }

    /// The HTTP response, with a [`StreamHandle`] as [`sse_response`] gives.
    pub fn into_response(self, config: &StreamConfig, metrics: &Metrics) -> Response {
        let prelude = futures_util::stream::iter(self.prelude.into_iter().map(Frame::into_bytes));
        let mut head: Outgoing = Box::pin(prelude.map(Ok::<_, StreamError>));
        if let Some(replay) = self.replay {
            head = Box::pin(head.chain(replay));
        }
        let live =
            LivePart { subscription: self.subscription, takeover: TakeoverRequest::default() };
        response(Some(head), Some(live), self.keep, config, metrics)
    }
}

fn response(
    frames: Option<Outgoing>,
    live: Option<LivePart>,
    keep: Option<Box<dyn Send>>,
    config: &StreamConfig,
    metrics: &Metrics,
) -> Response {
    metrics.stream_opened();
    // This stream's own token: cancelled by a server shutdown (its parent), by the per-client
    // cap, or by the stream itself when it ends.
    let token = config.shutdown.child_token();
    let half = (config.keep_alive / 2).max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval_at(Instant::now() + half, half);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let takeover = live.as_ref().map(|live| live.takeover.clone());
    let body = SseBody {
        frames,
        live,
        shutdown: Box::pin(token.clone().cancelled_owned()),
        token: token.clone(),
        keep_alive: config.keep_alive,
        ticks,
        quiet: true,
        metrics: metrics.clone(),
        open: Some(OpenStream { metrics: metrics.clone(), ended: token.clone() }),
        keep,
    };
    let mut response = Body::from_stream(body).into_response();
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response.extensions_mut().insert(StreamHandle(token));
    if let Some(takeover) = takeover {
        response.extensions_mut().insert(takeover);
    }
    response
}
