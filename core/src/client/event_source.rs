//! A reconnecting event-stream reader.

use std::collections::VecDeque;
use std::time::Duration;

use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};

use super::retry_after::retry_after;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio_util::sync::CancellationToken;

use super::Backoff;
use crate::wire::{MessageEvent, Parser};

/// What [`EventSource::next`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseItem {
    /// A connection (or reconnection) was established.
    Open,
    /// An event arrived.
    Event(MessageEvent),
}

/// Why a connection failed. After a retryable error the next call reconnects.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The connection failed or broke.
    #[error("connection failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// The server ended the stream (it will be reopened).
    #[error("the server ended the stream")]
    Ended,
    /// The server answered with a status other than 200.
    #[error("the server answered {0}")]
    Status(StatusCode),
    /// The server answered 200 with something other than `text/event-stream`.
    #[error("the server answered with Content-Type {0:?}, not text/event-stream")]
    ContentType(String),
    /// The stream's last event id cannot travel as a `Last-Event-ID` header (it holds a control
    /// character), so the stream cannot be resumed; it is not reopened.
    #[error("the last event id {0:?} cannot be sent as a Last-Event-ID header")]
    UnsendableLastEventId(String),
    /// A POST was refused for good.
    #[error("the server refused the answer with {status}: {body}")]
    Refused {
        /// The status.
        status: StatusCode,
        /// The body, for the log.
        body: String,
    },
}

impl ClientError {
    /// Whether the client keeps trying after this error.
    pub fn is_retryable(&self) -> bool {
        match self {
            // A request that cannot be built (a malformed URL) or a redirect loop is the same
            // on every try.
            ClientError::Transport(error) => !(error.is_builder() || error.is_redirect()),
            ClientError::Ended => true,
            ClientError::Status(s) => is_retryable_status(*s),
            ClientError::ContentType(_)
            | ClientError::UnsendableLastEventId(_)
            | ClientError::Refused { .. } => false,
        }
    }
}

/// 5xx, 408 and 429 are worth another try; other statuses will not change by retrying.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// A browser-like `EventSource` over reqwest.
///
/// ```no_run
/// # async fn demo() {
/// use sse_core::client::{EventSource, SseItem};
/// let mut source = EventSource::new(reqwest::Client::new(), "http://127.0.0.1:8081/events");
/// while let Some(item) = source.next().await {
///     match item {
///         Ok(SseItem::Event(event)) => println!("{}: {}", event.event, event.data),
///         Ok(SseItem::Open) => println!("connected"),
///         Err(error) => eprintln!("{error}"),
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct EventSource {
    http: reqwest::Client,
    url: String,
    headers: HeaderMap,
    parser: Parser,
    response: Option<reqwest::Response>,
    queue: VecDeque<MessageEvent>,
    backoff: Backoff,
    wait: Option<Duration>,
    closed: bool,
}

/// The reconnection time used until the server sends `retry:`.
pub const DEFAULT_RECONNECT: Duration = Duration::from_secs(1);
const MAX_RECONNECT: Duration = Duration::from_secs(30);

impl EventSource {
    /// A source for `url`; nothing happens until the first [`next`](Self::next).
    pub fn new(http: reqwest::Client, url: impl Into<String>) -> EventSource {
        EventSource {
            http,
            url: url.into(),
            headers: HeaderMap::new(),
            parser: Parser::new(),
            response: None,
            queue: VecDeque::new(),
            backoff: Backoff::new(DEFAULT_RECONNECT, MAX_RECONNECT),
            wait: None,
            closed: false,
        }
    }

    /// Adds a header to every connection attempt (for example `Authorization`).
    pub fn header(mut self, name: http::HeaderName, value: HeaderValue) -> EventSource {
        self.headers.insert(name, value);
        self
    }

    /// The wait before the first reconnect until the server sends `retry:` (default 1 s).
    pub fn reconnect_time(mut self, wait: Duration) -> EventSource {
        self.backoff.set_base(wait);
        self
    }

    /// Starts from a known id, as if the stream had already delivered it.
    pub fn last_event_id(mut self, id: &str) -> EventSource {
        self.parser = Parser::resuming(id);
        self
    }

    /// Changes the URL used by the next connection attempt.
    pub fn set_url(&mut self, url: impl Into<String>) {
        self.url = url.into();
    }

    /// The id that will be sent as `Last-Event-ID` on the next reconnect.
    pub fn current_last_event_id(&self) -> &str {
        self.parser.last_event_id()
    }

    /// Stops: the current connection is dropped and [`next`](Self::next) returns `None`.
    pub fn close(&mut self) {
        self.closed = true;
        self.response = None;
    }

    /// The next event only, for clients that just act on events: connecting is logged at info,
    /// errors at warn (the source keeps reconnecting after retryable ones). `None` once the
    /// source is closed or `shutdown` fires.
    pub async fn next_event(&mut self, shutdown: &CancellationToken) -> Option<MessageEvent> {
        loop {
            let item = tokio::select! {
                () = shutdown.cancelled() => return None,
                item = self.next() => item?,
            };
            match item {
                Ok(SseItem::Event(event)) => return Some(event),
                Ok(SseItem::Open) => tracing::info!(url = %self.url, "connected"),
                Err(error) => tracing::warn!(%error, url = %self.url, "stream error"),
            }
        }
    }

    /// The next connection event, message, or error; `None` once closed (a 204, a fatal error,
    /// or [`close`](Self::close)).
    pub async fn next(&mut self) -> Option<Result<SseItem, ClientError>> {
        loop {
            if self.closed {
                return None;
            }
            if let Some(event) = self.queue.pop_front() {
                return Some(Ok(SseItem::Event(event)));
            }
            let Some(response) = self.response.as_mut() else {
                return self.connect().await;
            };
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    let events = self.parser.feed(&bytes);
                    if let Some(retry) = self.parser.reconnection_time() {
                        self.backoff.set_base(retry);
                    }
                    if !events.is_empty() {
                        self.backoff.reset();
                    }
                    self.queue.extend(events);
                }
                Ok(None) => return Some(Err(self.lost(ClientError::Ended))),
                Err(error) => return Some(Err(self.lost(ClientError::Transport(error)))),
            }
        }
    }

    /// The connection broke: schedule a reconnect.
    fn lost(&mut self, error: ClientError) -> ClientError {
        self.response = None;
        self.wait = Some(self.backoff.next_delay());
        tracing::debug!(%error, wait = ?self.wait, "stream lost; will reconnect");
        error
    }

    async fn connect(&mut self) -> Option<Result<SseItem, ClientError>> {
        if let Some(wait) = self.wait.take() {
            tokio::time::sleep(wait).await;
        }
        let mut request = self
            .http
            .get(&self.url)
            .headers(self.headers.clone())
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache");
        let last_id = self.parser.last_event_id();
        if !last_id.is_empty() {
            // As its UTF-8 bytes, as browsers send it. The spec allows any id without NUL, CR
            // or LF; a header value cannot hold the other control characters, and sending no id
            // would resume from the wrong place.
            let Ok(value) = HeaderValue::from_bytes(last_id.as_bytes()) else {
                self.closed = true;
                return Some(Err(ClientError::UnsendableLastEventId(last_id.to_owned())));
            };
            request = request.header("last-event-id", value);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let error = ClientError::Transport(error);
                if !error.is_retryable() {
                    self.closed = true;
                    return Some(Err(error));
                }
                return Some(Err(self.lost(error)));
            }
        };
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            self.closed = true;
            return None;
        }
        if status != StatusCode::OK {
            let error = ClientError::Status(status);
            if error.is_retryable() {
                let hint = retry_after(response.headers());
                let error = self.lost(error);
                self.wait = self.wait.max(hint);
                return Some(Err(error));
            }
            self.closed = true;
            return Some(Err(error));
        }
        let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let is_event_stream = content_type
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/event-stream"));
        if !is_event_stream {
            self.closed = true;
            return Some(Err(ClientError::ContentType(content_type.unwrap_or("").to_owned())));
        }
        // A new stream: line state starts over, the last event id carries across.
        let last_id = self.parser.last_event_id().to_owned();
        let retry = self.parser.reconnection_time();
        self.parser = Parser::resuming(&last_id);
        if let Some(retry) = retry {
            self.backoff.set_base(retry);
        }
        self.response = Some(response);
        Some(Ok(SseItem::Open))
    }
}
