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
use tokio_util::sync::CancellationToken;

use super::ApiError;
use super::forwarded::TrustedProxies;

/// A rate limit keyed by `K` (by default the client's IP). Cheap to clone (shared).
#[derive(Debug)]
pub struct RateLimit<K: Hash + Eq + Clone = IpAddr> {
    limiter: Arc<DefaultKeyedRateLimiter<K>>,
    /// Whose forwarding headers say who the client is (keyed by IP only).
    proxies: TrustedProxies,
}

impl<K: Hash + Eq + Clone> Clone for RateLimit<K> {
    fn clone(&self) -> Self {
        RateLimit { limiter: self.limiter.clone(), proxies: self.proxies.clone() }
    }
}

impl<K: Hash + Eq + Clone> RateLimit<K> {
    /// `per_second` requests a second with bursts of `burst`; `None` when `per_second` is 0.
    pub fn new(per_second: u32, burst: u32) -> Option<RateLimit<K>> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(rate);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(RateLimit {
            limiter: Arc::new(RateLimiter::keyed(quota)),
            proxies: TrustedProxies::default(),
        })
    }

    /// The same limit, with clients behind `proxies` keyed by the address they forwarded for.
    pub fn behind(self, proxies: TrustedProxies) -> RateLimit<K> {
        RateLimit { proxies, ..self }
    }

    /// Forgets keys whose buckets are full again, so memory stays bounded by active keys.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
    }

    /// Forgets idle keys every minute until `shutdown` (a task on the current runtime). Without
    /// it the limiter would keep a bucket for every key it has ever seen: every client address,
    /// which over IPv6 has no bound.
    pub fn forget_idle_every_minute(&self, shutdown: CancellationToken)
    where
        K: Send + Sync + 'static,
    {
        let limit = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = every.tick() => limit.forget_idle(),
                    () = shutdown.cancelled() => return,
                }
            }
        });
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

/// Middleware applying a [`RateLimit`] by the client's address (the peer's, or behind a trusted
/// proxy the one it forwarded for; all requests share one bucket where the server records no
/// peers).
pub async fn limit(State(rate): State<RateLimit>, req: Request, next: Next) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| {
            rate.proxies.client(info.0.ip(), req.headers())
        });
    match rate.check(&client) {
        Ok(()) => next.run(req).await,
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn buckets_of_keys_gone_quiet_are_forgotten_every_minute() {
        // A bucket refills in a millisecond: governor's clock is the real one, not tokio's.
        let Some(rate) = RateLimit::<u32>::new(1000, 1) else { panic!("a limit of 1000/s") };
        let shutdown = CancellationToken::new();
        rate.forget_idle_every_minute(shutdown.clone());
        for client in 0..100 {
            assert!(rate.check(&client).is_ok());
        }
        assert_eq!(rate.limiter.len(), 100);
        // The buckets full again (really: a few of governor's milliseconds), a minute passes.
        std::thread::sleep(std::time::Duration::from_millis(5));
        tokio::time::sleep(std::time::Duration::from_secs(61)).await;
        assert_eq!(rate.limiter.len(), 0, "idle keys are dropped");
        shutdown.cancel();
    }
}
