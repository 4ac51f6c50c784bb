//! Rate limits (token buckets, from `governor`) keyed by client address or by any other key (a
//! chat member, say), answering 429 with `Retry-After` in whole seconds.

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::StatusCode;

use super::ApiError;

/// A rate limit keyed by `K` (by default the client's IP). Cheap to clone (shared).
#[derive(Debug)]
pub struct RateLimit<K: Hash + Eq + Clone = IpAddr> {
    limiter: Arc<DefaultKeyedRateLimiter<K>>,
}

impl<K: Hash + Eq + Clone> Clone for RateLimit<K> {
    fn clone(&self) -> Self {
        RateLimit { limiter: self.limiter.clone() }
    }
}

impl<K: Hash + Eq + Clone> RateLimit<K> {
    /// `per_second` requests a second with bursts of `burst`; `None` when `per_second` is 0.
    pub fn new(per_second: u32, burst: u32) -> Option<RateLimit<K>> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(rate);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(RateLimit { limiter: Arc::new(RateLimiter::keyed(quota)) })
    }

    /// Forgets keys whose buckets are full again, so memory stays bounded by active keys.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
    }

    /// Takes one token for `key`, or says how long to wait.
    pub fn check(&self, key: &K) -> Result<(), ApiError> {
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests")
                .retry_after(seconds.max(1))
        })
    }
}

/// Middleware applying a [`RateLimit`] by the peer's address (when the server records it).
pub async fn limit(State(rate): State<RateLimit>, req: Request, next: Next) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    match rate.check(&client) {
        Ok(()) => next.run(req).await,
        Err(error) => error.into_response(),
    }
}
