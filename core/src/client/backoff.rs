//! Exponential backoff with jitter.

use std::time::Duration;

use rand::Rng;

/// Delays that double from `base` up to `max`, each drawn at random from its upper half so that
/// many clients cut at once do not come back in lockstep.
///
/// The first delay is `base` exactly, whatever it is: for an event stream that is the server's
/// `retry:`, which the spec says to honour, above `max` too (a server that asks for a minute
/// gets a minute) and at zero (at once). Repeated failures then grow from `base`, or from
/// [`FLOOR`] when `base` is smaller: doubling zero would retry a down server in a busy loop.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

/// The least delay repeated failures grow from.
pub const FLOOR: Duration = Duration::from_millis(100);

impl Backoff {
    /// Starts at `base`; growing, never exceeds `max` (or `base`, when that is larger).
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff { base, max, attempt: 0 }
    }

    /// Changes the first delay (the server's `retry:`), keeping the attempt count.
    pub fn set_base(&mut self, base: Duration) {
        self.base = base;
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        if self.attempt == 1 {
            return self.base; // the first reconnect waits exactly what the server asked
        }
        let factor = 2u32.saturating_pow((self.attempt - 1).min(16));
        let full = self.base.max(FLOOR).saturating_mul(factor).min(self.max.max(self.base));
        let half = full / 2;
        half + rand::rng().random_range(Duration::ZERO..=full - half)
    }

    /// After a success: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_jitter_and_caps() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
        let second = backoff.next_delay();
        assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
        for _ in 0..10 {
            assert!(backoff.next_delay() <= Duration::from_secs(1));
        }
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn the_first_delay_is_the_servers_even_past_the_cap() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        backoff.set_base(Duration::from_secs(60));
        assert_eq!(backoff.next_delay(), Duration::from_secs(60));
        for _ in 0..10 {
            let next = backoff.next_delay();
            assert!(next >= Duration::from_secs(30) && next <= Duration::from_secs(60), "{next:?}");
        }
    }

    #[test]
    fn a_zero_retry_reconnects_at_once_then_backs_off() {
        let mut backoff = Backoff::new(Duration::ZERO, Duration::from_secs(30));
        assert_eq!(backoff.next_delay(), Duration::ZERO, "retry: 0 means at once");
        let second = backoff.next_delay();
        assert!(second >= FLOOR && second <= FLOOR * 2, "{second:?}");
        let later: Vec<Duration> = (0..20).map(|_| backoff.next_delay()).collect();
        assert!(later.iter().all(|d| *d >= FLOOR), "never a busy loop: {later:?}");
        assert!(later.iter().all(|d| *d <= Duration::from_secs(30)), "{later:?}");
    }
}
