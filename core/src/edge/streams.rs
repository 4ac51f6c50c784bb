//! A cap on open event streams per client address; past it, the client's oldest stream closes.
//!
//! Every event stream costs the server a socket, a task and buffers for as long as it is open, so
//! one address opening thousands would crowd out everyone else. Closing the *oldest* rather than
//! refusing the newest keeps the stream a person just opened (a reloaded tab) and drops the one
//! most likely abandoned; an `EventSource` whose stream was closed reconnects by itself, so a
//! client with more tabs than the cap keeps its newest ones live.
//!
//! The client is the address [`TrustedProxies`] resolves (behind a proxy we trust, the one it
//! forwarded for). A server may spare loopback peers ([`StreamCap::sparing_loopback`], the
//! binary's default): they are this machine's own programs, such as a load harness that opens
//! dozens of streams from 127.0.0.1, which a per-address cap would break. A loopback peer that is
//! a trusted proxy is never spared: what it forwards is counted by the address it names, or as
//! the proxy's when it names none.
//!
//! The cap learns of a stream from the [`StreamHandle`] that
//! [`sse_response`](crate::stream::sse_response) puts in the response: a token that closes the
//! stream when cancelled, and that the stream itself cancels when it ends for any reason, so
//! ended streams are recognised and forgotten. It is applied in two steps, the client named
//! before the request is served ([`StreamCap::client_of`]) and the stream counted once its
//! response is out ([`StreamCap::count`]): [`cap_streams`] is both as a middleware, and a server
//! with a service of its own around its router can take both steps there, at no cost to the
//! requests that open no stream.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio_util::sync::CancellationToken;

use super::forwarded::TrustedProxies;
use crate::sync::lock;

/// Put in an event stream's response: cancelling it closes the stream; the stream cancels it
/// when it ends.
#[derive(Clone, Debug)]
pub struct StreamHandle(pub CancellationToken);

/// The streams open per client address, and the cap. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct StreamCap {
    inner: Arc<CapInner>,
}

#[derive(Debug)]
struct CapInner {
    per_client: usize,
    proxies: TrustedProxies,
    spare_loopback: bool,
    open: Mutex<HashMap<IpAddr, VecDeque<CancellationToken>>>,
}

/// Past this many addresses in the table, ended streams of every address are swept out.
const SWEEP_AT: usize = 1024;

impl StreamCap {
    /// At most `per_client` open streams per address, every address counted, the peer taken
    /// as the client; `None` for 0 (no cap).
    pub fn new(per_client: usize) -> Option<StreamCap> {
        (per_client > 0).then(|| StreamCap {
            inner: Arc::new(CapInner {
                per_client,
                proxies: TrustedProxies::default(),
                spare_loopback: false,
                open: Mutex::default(),
            }),
        })
    }

    /// The same cap, with clients behind `proxies` counted by the address they forwarded for.
    pub fn behind(self, proxies: TrustedProxies) -> StreamCap {
        self.rebuilt(|inner| inner.proxies = proxies)
    }

    /// The same cap, leaving loopback clients uncounted.
    pub fn sparing_loopback(self) -> StreamCap {
        self.rebuilt(|inner| inner.spare_loopback = true)
    }

    fn rebuilt(self, change: impl FnOnce(&mut CapInner)) -> StreamCap {
        let mut inner = CapInner {
            per_client: self.inner.per_client,
            proxies: self.inner.proxies.clone(),
            spare_loopback: self.inner.spare_loopback,
            open: Mutex::default(),
        };
        change(&mut inner);
        StreamCap { inner: Arc::new(inner) }
    }

    /// Counts a new stream of `client`, closing its oldest ones beyond the cap.
    pub fn admit(&self, client: IpAddr, stream: CancellationToken) {
        let mut open = lock(&self.inner.open);
        if open.len() >= SWEEP_AT {
            open.retain(|_, streams| {
                streams.retain(|s| !s.is_cancelled());
                !streams.is_empty()
            });
        }
        let streams = open.entry(client).or_default();
        streams.retain(|s| !s.is_cancelled());
        streams.push_back(stream);
        while streams.len() > self.inner.per_client {
            if let Some(oldest) = streams.pop_front() {
                tracing::info!(%client, cap = self.inner.per_client, "closing a client's oldest stream");
                oldest.cancel();
            }
        }
    }

    /// The client `request` comes from, as the cap counts it: `None` when the request has no
    /// peer address (`ConnectInfo<SocketAddr>`) or comes from a spared loopback peer.
    pub fn client_of<B>(&self, request: &http::Request<B>) -> Option<IpAddr> {
        let proxies = &self.inner.proxies;
        // Spared: a loopback peer that is this machine's own program, never a proxy forwarding
        // someone (whatever address the forwarding says, or none).
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
            .filter(|peer| {
                !(self.inner.spare_loopback && peer.is_loopback() && !proxies.trusts(*peer))
            })
            .map(|peer| proxies.client(peer, request.headers()))
    }

    /// Counts `response` against `client`'s cap when it is an event stream.
    pub fn count(&self, client: IpAddr, response: &Response) {
        if let Some(handle) = response.extensions().get::<StreamHandle>() {
            self.admit(client, handle.0.clone());
        }
    }

    /// How many streams of `client` are open.
    pub fn open_for(&self, client: IpAddr) -> usize {
        let open = lock(&self.inner.open);
        open.get(&client).map_or(0, |streams| streams.iter().filter(|s| !s.is_cancelled()).count())
    }
}

/// Middleware: counts every event stream against its client's cap.
/// Use with `axum::middleware::from_fn_with_state(cap, cap_streams)`; needs the peer address
/// (`ConnectInfo<SocketAddr>`), and passes requests without one through uncounted, as it does a
/// loopback client when the cap spares them.
pub async fn cap_streams(State(cap): State<StreamCap>, request: Request, next: Next) -> Response {
    let client = cap.client_of(&request);
    let response = next.run(request).await;
    if let Some(client) = client {
        cap.count(client, &response);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use tokio_util::sync::CancellationToken;

    use super::StreamCap;

    #[test]
    fn the_oldest_streams_close_past_the_cap_per_address() {
        let cap = StreamCap::new(2).expect("a cap");
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let streams: Vec<CancellationToken> = (0..3).map(|_| CancellationToken::new()).collect();
        for stream in &streams {
            cap.admit(a, stream.clone());
        }
        assert!(streams[0].is_cancelled(), "the oldest closed");
        assert!(!streams[1].is_cancelled() && !streams[2].is_cancelled());
        assert_eq!(cap.open_for(a), 2);

        let other = CancellationToken::new();
        cap.admit(b, other.clone());
        assert!(!other.is_cancelled(), "another address has its own count");

        // A stream that ended by itself no longer counts.
        streams[1].cancel();
        let newest = CancellationToken::new();
        cap.admit(a, newest.clone());
        assert!(!streams[2].is_cancelled() && !newest.is_cancelled());
        assert_eq!(cap.open_for(a), 2);
    }

    #[test]
    fn zero_means_no_cap() {
        assert!(StreamCap::new(0).is_none());
    }
}
