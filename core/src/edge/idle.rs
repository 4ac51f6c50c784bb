//! How long a connection may sit with nothing in progress.
//!
//! hyper closes an HTTP/1 keep-alive connection that brings no new request head within its head
//! deadline, but it has no such rule for HTTP/2: a client could send one request and then hold
//! the connection, and its descriptor, for ever with no stream open. And before the first
//! request, hyper waits for the bytes that tell HTTP/1 from HTTP/2 with no timer at all.
//!
//! [`Activity`] is what a connection's service tells the task serving it: that a request came,
//! and on HTTP/2 how many exchanges are in progress, each from its request until its response
//! body has ended or been dropped ([`Exchange`], carried inside the body by [`ExchangeBody`]).
//! [`idle_for`] turns that into a deadline: a connection with nothing in progress for the head
//! deadline is to be closed, at once if it never sent a request, and otherwise with HTTP/2's
//! GOAWAY, so its client knows no request of its was dropped unanswered. An HTTP/2 event stream
//! is an exchange in progress for as long as it is open, so it is never cut off.
//!
//! HTTP/1 connections are left to hyper after their first request: counting their exchanges too
//! would wrap every response body, on the path every round trip takes, for a rule hyper keeps.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http::Version;
use http_body::{Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;

/// What a connection's service tells its serving task; shared by both.
#[derive(Debug, Default)]
pub(super) struct Activity {
    /// Told when a request comes and when the last open exchange ends.
    changed: Notify,
    asked: AtomicBool,
    http1: AtomicBool,
    /// HTTP/2 exchanges in progress.
    open: AtomicUsize,
}

impl Activity {
    /// Notes a request. On HTTP/2 it returns the exchange it begins, in progress until dropped.
    pub(super) fn request(self: &Arc<Self>, version: Version) -> Option<Exchange> {
        if version == Version::HTTP_2 {
            self.asked.store(true, Ordering::Release);
            self.open.fetch_add(1, Ordering::AcqRel);
            self.changed.notify_one();
            return Some(Exchange(self.clone()));
        }
        // Only the first one matters: hyper watches the connection from then on.
        if !self.http1.swap(true, Ordering::AcqRel) {
            self.asked.store(true, Ordering::Release);
            self.changed.notify_one();
        }
        None
    }
}

/// One HTTP/2 request and its response, in progress until dropped.
#[derive(Debug)]
pub(super) struct Exchange(Arc<Activity>);

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_one();
        }
    }
}

/// Why [`idle_for`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Idle {
    /// No request came in time: close the connection.
    NeverAsked,
    /// An HTTP/2 connection had nothing in progress for the whole time: send GOAWAY.
    AfterRequests,
    /// The connection speaks HTTP/1, which hyper watches from its first request on.
    LeftToHyper,
}

/// Waits until the connection has had nothing in progress for `within`, or has turned out to
/// speak HTTP/1.
pub(super) async fn idle_for(activity: &Activity, within: Duration) -> Idle {
    loop {
        // Listening before reading the counts, so a change between the two is not missed.
        let changed = activity.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if activity.http1.load(Ordering::Acquire) {
            return Idle::LeftToHyper;
        }
        // Read afresh after every change: a request that came and went restarts the wait.
        let idle_since = (activity.open.load(Ordering::Acquire) == 0).then(Instant::now);
        let deadline = async {
            match idle_since {
                Some(since) => tokio::time::sleep_until(since + within).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = changed => {}
            () = deadline => {
                let asked = activity.asked.load(Ordering::Acquire);
                return if asked { Idle::AfterRequests } else { Idle::NeverAsked };
            }
        }
    }
}

/// A response body that keeps its [`Exchange`] in progress until it ends or is dropped.
#[derive(Debug)]
pub(super) struct ExchangeBody {
    body: Body,
    exchange: Option<Exchange>,
}

impl ExchangeBody {
    pub(super) fn new(body: Body, exchange: Exchange) -> ExchangeBody {
        ExchangeBody { body, exchange: Some(exchange) }
    }
}

impl http_body::Body for ExchangeBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            // Ended: hyper may keep the body a while before dropping it.
            self.exchange = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_is_idle_only_while_no_exchange_is_open() {
        let activity = Arc::new(Activity::default());
        let within = Duration::from_secs(10);
        assert_eq!(idle_for(&activity, within).await, Idle::NeverAsked);

        let exchange = activity.request(Version::HTTP_2);
        let watch = idle_for(&activity, within);
        tokio::pin!(watch);
        let open_for_long = tokio::time::sleep(within * 5);
        tokio::select! {
            idle = &mut watch => panic!("idle ({idle:?}) while an exchange was open"),
            () = open_for_long => {}
        }
        drop(exchange);
        assert_eq!(watch.await, Idle::AfterRequests);
    }

    #[tokio::test(start_paused = true)]
    async fn an_http1_connection_is_left_to_hyper_after_its_first_request() {
        let activity = Arc::new(Activity::default());
        assert!(activity.request(Version::HTTP_11).is_none());
        let idle = idle_for(&activity, Duration::from_secs(10)).await;
        assert_eq!(idle, Idle::LeftToHyper);
    }
}
