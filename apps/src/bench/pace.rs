//! Open-loop pacing, for `bench roundtrip --rate R`: round trips sent on a schedule rather than
//! each as soon as the last came back.
//!
//! A closed loop of C callers says how fast a server can go, but not how long a request waits at
//! a given load: by Little's law its mean latency is C divided by the rate, whatever the server,
//! and a caller stuck on one slow answer sends nothing meanwhile, so the requests that would have
//! waited behind it are never timed ("coordinated omission"). Sent on a schedule, every request
//! that was due counts, and a server that falls behind shows it as growing latency.
//!
//! Each of the C callers keeps one kept-alive connection (HTTP/1.1 has one request in flight
//! per connection) and sends every C/R seconds, the callers staggered by 1/R so that together
//! they send R a second, evenly. A round trip is timed from its due time when the caller was still
//! waiting for the previous answer then (the server's delay), and from the moment it was sent
//! when the caller was idle and woke for it (tokio's timer wakes up to a millisecond late: that is
//! the load generator's delay, not the server's).

use std::time::{Duration, Instant};

/// When one caller's round trips are due.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    first: Instant,
    period: Duration,
    until: Instant,
}

impl Pace {
    /// Caller `caller` of `callers`, which together send `rate` round trips a second from `start`
    /// for `duration`.
    pub fn new(
        rate: u32,
        callers: usize,
        caller: usize,
        start: Instant,
        duration: Duration,
    ) -> Pace {
        let rate = f64::from(rate.max(1));
        Pace {
            first: start + Duration::from_secs_f64(caller as f64 / rate),
            period: Duration::from_secs_f64(callers as f64 / rate),
            until: start + duration,
        }
    }

    /// When round trip `n` (from 0) is due; `None` once that is past the run's end.
    pub fn due(&self, n: usize) -> Option<Instant> {
        let n = u32::try_from(n).ok()?;
        Some(self.first + self.period.checked_mul(n)?).filter(|due| *due < self.until)
    }
}

/// Waits for a round trip due at `due`, and says when its time counts from: `due` if the caller
/// was busy past it, else the moment it woke to send.
pub async fn wait_for(due: Instant) -> Instant {
    let free = Instant::now();
    if free >= due {
        return counted_from(due, free, free);
    }
    tokio::time::sleep_until(due.into()).await;
    counted_from(due, free, Instant::now())
}

/// The start of a round trip due at `due`, its caller free (the previous answer in) at `free`,
/// and sent at `sent`.
fn counted_from(due: Instant, free: Instant, sent: Instant) -> Instant {
    if free >= due { due } else { sent }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_share_the_rate_evenly_and_stop_at_the_end() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        // 1,000/s over 4 callers: each every 4 ms, caller 1 a millisecond after caller 0.
        let zero = Pace::new(1000, 4, 0, start, second);
        let one = Pace::new(1000, 4, 1, start, second);
        assert_eq!(zero.due(0), Some(start));
        assert_eq!(zero.due(1), Some(start + Duration::from_millis(4)));
        assert_eq!(one.due(0), Some(start + Duration::from_millis(1)));
        assert_eq!(one.due(2), Some(start + Duration::from_millis(9)));
        // 250 each in the second, 1,000 in all.
        let per_caller = |c| {
            (0..).take_while(|&n| Pace::new(1000, 4, c, start, second).due(n).is_some()).count()
        };
        assert_eq!((0..4).map(per_caller).sum::<usize>(), 1000);
        assert_eq!(zero.due(250), None);
    }

    #[test]
    fn a_late_caller_counts_from_the_due_time_an_early_one_from_its_send() {
        let due = Instant::now();
        let ms = Duration::from_millis(1);
        // Still waiting for the previous answer at the due time: the server's delay counts.
        assert_eq!(counted_from(due, due + 3 * ms, due + 3 * ms), due);
        // Free before it, woken late by the timer: only the round trip itself counts.
        assert_eq!(counted_from(due, due - 2 * ms, due + ms), due + ms);
    }

    #[tokio::test]
    async fn waiting_ends_no_earlier_than_due() {
        let due = Instant::now() + Duration::from_millis(5);
        assert!(wait_for(due).await >= due);
        let past = Instant::now() - Duration::from_millis(5);
        assert_eq!(wait_for(past).await, past);
    }
}
