//! When to try a model call again, and how long to wait first.
//!
//! There is exactly one retry layer for model calls, and it is this one: async-openai's own
//! (three more tries of every 429 and 5xx, reading only the delta-seconds form of `Retry-After`)
//! is switched off in [`super::llm`], because two layers multiply (3 of ours × 4 of theirs made
//! 12 requests for one sampling request, and waits nobody chose).
//!
//! A provider that says when to come back is obeyed: `Retry-After` is read in both of the forms
//! RFC 9110 §10.2.3 allows, delta-seconds (`120`) and an HTTP-date (`Wed, 21 Oct 2015 07:28:00
//! GMT`, the IMF-fixdate of RFC 9110 §5.6.7, which is not RFC 3339). Its wait is exact, with no
//! jitter: the provider chose it. A wait longer than [`MAX_WAIT`] is not shortened (coming back
//! early only earns another 429) but reported, so the server hears why at once instead of after
//! minutes. Without `Retry-After` the waits double from [`FIRST_WAIT`], each drawn at random
//! from its upper half so that many clients refused at once do not return in lockstep.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// Tries after the first: a call is made at most `1 + RETRIES` times.
pub const RETRIES: u32 = 2;

/// The longest wait the client accepts before trying again.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// The first wait when the provider named none; later ones double.
pub const FIRST_WAIT: Duration = Duration::from_secs(1);

/// The wait a `Retry-After` value asks for, measured from `now`; `None` when it is neither
/// form. A date in the past means at once.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits beyond u64 are still "a very long time", not garbage.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The `Retry-After` of a response's headers, read now.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// What to do after failed attempt number `attempt` (1 for the first call).
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then try again.
    Wait(Duration),
    /// Report the failure: the tries are used up.
    GiveUp,
    /// Report the failure: the provider asked for a wait longer than [`MAX_WAIT`].
    TooLong(Duration),
}

/// The decision after failed attempt `attempt`, given the provider's `Retry-After` if any.
pub fn next(attempt: u32, asked: Option<Duration>) -> Next {
    if attempt > RETRIES {
        return Next::GiveUp;
    }
    match asked {
        Some(wait) if wait > MAX_WAIT => Next::TooLong(wait),
        Some(wait) => Next::Wait(wait),
        None => Next::Wait(jittered(attempt)),
    }
}

/// `FIRST_WAIT` doubled for each earlier retry, drawn from the upper half of that.
fn jittered(attempt: u32) -> Duration {
    let full = FIRST_WAIT.saturating_mul(1 << (attempt - 1).min(16)).min(MAX_WAIT);
    let half = full / 2;
    half + rand::rng().random_range(Duration::ZERO..=full - half)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Dec 2026 05:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Sun, 06 Dec 2026 05:00:02 GMT", now),
            Some(Duration::from_secs(2)),
            "an IMF-fixdate two seconds ahead"
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Dec 2026 04:59:00 GMT", now),
            Some(Duration::ZERO),
            "a date already past means at once"
        );
        for garbage in ["", "-1", "1.5", "soon", "2026-12-06T05:00:02Z"] {
            assert_eq!(parse_retry_after(garbage, now), None, "{garbage:?}");
        }
    }

    #[test]
    fn the_providers_wait_is_exact_capped_and_the_tries_are_counted() {
        assert_eq!(next(1, Some(Duration::from_secs(1))), Next::Wait(Duration::from_secs(1)));
        assert_eq!(next(2, Some(Duration::ZERO)), Next::Wait(Duration::ZERO));
        assert_eq!(
            next(1, Some(Duration::from_secs(600))),
            Next::TooLong(Duration::from_secs(600))
        );
        assert_eq!(next(RETRIES + 1, Some(Duration::ZERO)), Next::GiveUp);
        assert_eq!(next(RETRIES + 1, None), Next::GiveUp);
    }

    #[test]
    fn without_retry_after_the_waits_double_with_jitter() {
        for _ in 0..50 {
            let Next::Wait(first) = next(1, None) else { panic!("a wait") };
            assert!(first >= FIRST_WAIT / 2 && first <= FIRST_WAIT, "{first:?}");
            let Next::Wait(second) = next(2, None) else { panic!("a wait") };
            assert!(second >= FIRST_WAIT && second <= FIRST_WAIT * 2, "{second:?}");
        }
    }
}
