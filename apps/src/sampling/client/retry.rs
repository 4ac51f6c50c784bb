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

use std::time::Duration;

use rand::Rng;

/// Tries after the first: a call is made at most `1 + RETRIES` times.
pub const RETRIES: u32 = 2;

/// The longest wait the client accepts before trying again.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// The first wait when the provider named none; later ones double.
pub const FIRST_WAIT: Duration = Duration::from_secs(1);

/// `Retry-After` in both its forms, read as the core's clients read it.
pub use sse_core::client::retry_after;

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
