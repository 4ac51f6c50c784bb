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
//! per connection). Round trip k of the run is due k/R seconds after the start and is caller
//! k mod C's, so together they send R a second, evenly. A round trip is timed from its due time
//! when its caller was still waiting for the previous answer then (the server's delay), and from
//! the moment it was sent when the caller was idle and woke for it (waking is the load
//! generator's delay, not the server's).
//!
//! Callers are woken by a [`Pacer`], a thread of its own that sleeps until the next due time (a
//! quarter of a millisecond at least) and wakes every caller whose round trip is due by then,
//! rather than by tokio's timer: that one rounds every deadline up to the next millisecond, so at
//! 20,000/s the callers would set off twenty at a time, once a millisecond, and the server would
//! be timed on bursts no client sends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// When the round trips of a run are due.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    start: Instant,
    rate: u32,
    callers: usize,
    until: Instant,
}

impl Schedule {
    /// `rate` round trips a second over `callers` callers, from `start` for `duration`.
    pub fn new(rate: u32, callers: usize, start: Instant, duration: Duration) -> Schedule {
        Schedule { start, rate: rate.max(1), callers: callers.max(1), until: start + duration }
    }

    /// When round trip `n` (from 0) of caller `caller` is due; `None` once that is past the end.
    pub fn due_for(&self, caller: usize, n: usize) -> Option<Instant> {
        let k = u64::try_from(n).ok()?.checked_mul(self.callers as u64)?;
        self.due(k.checked_add(caller as u64)?)
    }

    /// When round trip `k` of the whole run is due (in whole nanoseconds, so that the pacer and
    /// the callers compute the same instant).
    fn due(&self, k: u64) -> Option<Instant> {
        let nanos = u128::from(k) * 1_000_000_000 / u128::from(self.rate);
        let due = self.start.checked_add(Duration::from_nanos(u64::try_from(nanos).ok()?))?;
        (due < self.until).then_some(due)
    }
}

/// The pacer's shortest sleep. Waking for every round trip (20,000 times a second) costs the load
/// generator's core a fifth of its time, and a thread's wake-ups and the cross-thread wakes of
/// the callers compete with the reading of answers; a tick of a quarter of a millisecond wakes it
/// 4,000 times a second at most and sets off callers a few at a time.
const TICK: Duration = Duration::from_micros(250);

/// Wakes each caller at its due times, from a thread of its own (see the module's doc).
#[derive(Debug)]
pub struct Pacer {
    schedule: Schedule,
    bells: Vec<Notify>,
}

impl Pacer {
    /// Starts ringing for `schedule`; the thread ends with the schedule.
    pub fn start(schedule: Schedule) -> Arc<Pacer> {
        let bells = (0..schedule.callers).map(|_| Notify::new()).collect();
        let pacer = Arc::new(Pacer { schedule, bells });
        let ringing = pacer.clone();
        std::thread::spawn(move || ringing.ring());
        pacer
    }

    /// When `caller`'s round trip `n` is due (see [`Schedule::due_for`]).
    pub fn due_for(&self, caller: usize, n: usize) -> Option<Instant> {
        self.schedule.due_for(caller, n)
    }

    fn ring(&self) {
        let mut k = 0u64;
        while let Some(due) = self.schedule.due(k) {
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).max(TICK));
            }
            let now = Instant::now();
            while self.schedule.due(k).is_some_and(|due| due <= now) {
                // A caller still busy finds the permit when it next waits, and checks the time.
                self.bells[(k % self.schedule.callers as u64) as usize].notify_one();
                k += 1;
            }
        }
    }

    /// Waits for `caller`'s round trip due at `due`, and says when its time counts from: `due` if
    /// the caller was busy past it, else the moment it woke to send.
    pub async fn wait(&self, caller: usize, due: Instant) -> Instant {
        let free = Instant::now();
        let mut now = free;
        // A permit left from a round trip the caller was late for wakes it early: wait again.
        while now < due {
            self.bells[caller].notified().await;
            now = Instant::now();
        }
        counted_from(due, free, now)
    }
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
        let schedule = Schedule::new(1000, 4, start, Duration::from_secs(1));
        // 1,000/s over 4 callers: each every 4 ms, caller 1 a millisecond after caller 0.
        assert_eq!(schedule.due_for(0, 0), Some(start));
        assert_eq!(schedule.due_for(0, 1), Some(start + Duration::from_millis(4)));
        assert_eq!(schedule.due_for(1, 0), Some(start + Duration::from_millis(1)));
        assert_eq!(schedule.due_for(1, 2), Some(start + Duration::from_millis(9)));
        // 250 each in the second, 1,000 in all.
        let per_caller = |c| (0..).take_while(|&n| schedule.due_for(c, n).is_some()).count();
        assert_eq!((0..4).map(per_caller).sum::<usize>(), 1000);
        assert_eq!(schedule.due_for(0, 250), None);
        // Rates that do not divide a second keep to whole nanoseconds: 3/s, the third at 666 ms.
        let thirds = Schedule::new(3, 1, start, Duration::from_secs(1));
        assert_eq!(thirds.due_for(0, 2), Some(start + Duration::from_nanos(666_666_666)));
    }

    #[test]
    fn a_late_caller_counts_from_the_due_time_an_early_one_from_its_send() {
        let due = Instant::now();
        let ms = Duration::from_millis(1);
        // Still waiting for the previous answer at the due time: the server's delay counts.
        assert_eq!(counted_from(due, due + 3 * ms, due + 3 * ms), due);
        // Free before it, woken late: only the round trip itself counts.
        assert_eq!(counted_from(due, due - 2 * ms, due + ms), due + ms);
    }

    #[tokio::test]
    async fn callers_wake_at_or_after_each_due_time_even_after_missing_one() {
        // A run that began 3.5 ms ago: caller 1's first two round trips (at 1 and 3 ms) are past
        // when it first waits, as for a caller busy past them, and the pacer has rung for both.
        let start = Instant::now().checked_sub(Duration::from_micros(3500)).expect("a clock");
        let schedule = Schedule::new(1000, 2, start, Duration::from_millis(40));
        let pacer = Pacer::start(schedule);
        let mut n = 0;
        while let Some(due) = schedule.due_for(1, n) {
            let counted = pacer.wait(1, due).await;
            if n < 2 {
                assert_eq!(counted, due, "a round trip missed counts from its due time");
            } else {
                // The permit left by those two must not wake the third early.
                assert!(counted >= due, "round trip {n} woke early");
            }
            n += 1;
        }
        assert_eq!(n, 20, "every round trip of the caller's 20");
    }
}
