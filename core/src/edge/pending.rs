//! A budget for connections that have not sent a request yet.
//!
//! A connection costs the server a file descriptor from the moment it is accepted. One that
//! never sends a request is closed at the head deadline ([`super::connections::HEADER_TIMEOUT`]),
//! but a client can open connections faster than that deadline retires them: about 21,000 idle
//! ones filled a server's 20,000 descriptors, `accept` then failed, and every new client waited
//! in the kernel's backlog until the deadline freed some.
//!
//! So connections that have not yet sent a complete request head ("pending") are capped, per
//! client address and in total, the total well below the open-file limit
//! ([`PendingCaps::for_open_file_limit`]: half of it, and half of that per address), leaving the
//! rest for event streams, requests in progress and files. When a cap is reached, room is made
//! by closing the *oldest* pending connection (of the new one's address for the per-address cap,
//! of all for the total), never by refusing the new one: a real client sends its head within
//! milliseconds of connecting, an idle flood never does, so the oldest pending connection is
//! almost always one of the flood's, and clients keep being answered even when they share an
//! address with the flood.
//!
//! A connection leaves the pending set with its first request (its service is called: hyper has
//! read a whole head), and is never closed for the budget after that, whatever it does next. The
//! eviction itself is carried out by the connection's own task, which polls the connection before
//! it looks at the notice ([`Pending::evicted`]): a head that is already waiting on the socket is
//! read and served, and the notice ignored.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use crate::metrics::Metrics;

/// Fewest pending connections allowed in total when the cap is derived from a small open-file
/// limit: below this, a burst of ordinary clients could evict each other.
const MIN_TOTAL: usize = 64;

/// How many connections may be waiting for their first request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingCaps {
    /// In all (0: no cap).
    pub total: usize,
    /// From one client address (0: no cap).
    pub per_address: usize,
}

impl PendingCaps {
    /// No cap at all.
    pub const NONE: PendingCaps = PendingCaps { total: usize::MAX, per_address: usize::MAX };

    /// Caps of `total` and `per_address`, 0 meaning no cap.
    pub fn new(total: usize, per_address: usize) -> PendingCaps {
        let cap = |n: usize| if n == 0 { usize::MAX } else { n };
        PendingCaps { total: cap(total), per_address: cap(per_address) }
    }

    /// Half the process's open-file limit (`RLIMIT_NOFILE`, its soft value, now) in total, at
    /// least 64, and half of that per address.
    pub fn for_open_file_limit() -> PendingCaps {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let half = limit.map_or(usize::MAX, |n| usize::try_from(n / 2).unwrap_or(usize::MAX));
        let total = half.max(MIN_TOTAL);
        PendingCaps { total, per_address: total / 2 }
    }

    fn is_none(self) -> bool {
        self == PendingCaps::NONE
    }
}

impl Default for PendingCaps {
    fn default() -> Self {
        PendingCaps::for_open_file_limit()
    }
}

/// Which cap closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cap {
    /// Its address had as many pending connections as allowed.
    PerAddress = 1,
    /// The server had as many as allowed.
    Total = 2,
}

impl Cap {
    fn label(self) -> &'static str {
        match self {
            Cap::PerAddress => "per_address",
            Cap::Total => "total",
        }
    }
}

/// The pending connections of one server, oldest first. Shared by the accept loop, which adds
/// them, and the connections' tasks, which remove theirs.
#[derive(Debug)]
pub(super) struct Budget {
    caps: PendingCaps,
    state: Mutex<State>,
    metrics: Option<Metrics>,
}

#[derive(Debug, Default)]
struct State {
    /// Numbers in the order connections were accepted.
    next: u64,
    oldest_first: BTreeMap<u64, (IpAddr, Arc<Notice>)>,
    by_address: HashMap<IpAddr, BTreeSet<u64>>,
}

impl State {
    fn remove(&mut self, number: u64, address: IpAddr) -> Option<Arc<Notice>> {
        let (_, notice) = self.oldest_first.remove(&number)?;
        if let Some(numbers) = self.by_address.get_mut(&address) {
            numbers.remove(&number);
            if numbers.is_empty() {
                self.by_address.remove(&address);
            }
        }
        Some(notice)
    }
}

/// Told to a pending connection that is to close.
#[derive(Debug, Default)]
struct Notice {
    closing: Notify,
    /// The [`Cap`] that closes it, 0 until then.
    cap: AtomicU8,
}

impl Budget {
    /// A budget with `caps`, or none when nothing is capped (no cost per connection then).
    pub(super) fn new(caps: PendingCaps, metrics: Option<Metrics>) -> Option<Arc<Budget>> {
        let caps = PendingCaps::new(caps.total, caps.per_address);
        if caps.is_none() {
            return None;
        }
        Some(Arc::new(Budget { caps, state: Mutex::default(), metrics }))
    }

    /// Adds a connection just accepted from `address`, closing the oldest pending connection of
    /// that address, or of all, if a cap is reached.
    pub(super) fn admit(self: &Arc<Self>, address: IpAddr) -> Arc<Pending> {
        let notice = Arc::new(Notice::default());
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let of_address = state.by_address.get(&address).map_or(0, BTreeSet::len);
        if of_address >= self.caps.per_address {
            let oldest = state.by_address.get(&address).and_then(|n| n.first().copied());
            if let Some(oldest) = oldest {
                self.evict(&mut state, oldest, address, Cap::PerAddress);
            }
        }
        if state.oldest_first.len() >= self.caps.total {
            let oldest = state.oldest_first.first_key_value().map(|(n, (a, _))| (*n, *a));
            if let Some((number, address)) = oldest {
                self.evict(&mut state, number, address, Cap::Total);
            }
        }
        let number = state.next;
        state.next += 1;
        state.oldest_first.insert(number, (address, notice.clone()));
        state.by_address.entry(address).or_default().insert(number);
        drop(state);
        if let Some(metrics) = &self.metrics {
            metrics.connection_pending();
        }
        Arc::new(Pending { budget: self.clone(), number, address, notice, asked: false.into() })
    }

    fn evict(&self, state: &mut State, number: u64, address: IpAddr, cap: Cap) {
        if let Some(notice) = state.remove(number, address) {
            self.no_longer_pending();
            notice.cap.store(cap as u8, Ordering::Release);
            // Kept until the connection's task looks, even if it is not waiting right now.
            notice.closing.notify_one();
        }
    }

    fn remove(&self, number: u64, address: IpAddr) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.remove(number, address).is_some() {
            drop(state);
            self.no_longer_pending();
        }
    }

    fn no_longer_pending(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.connection_no_longer_pending();
        }
    }
}

/// One connection's place in the [`Budget`]; it leaves it with its first request, or when it
/// closes.
#[derive(Debug)]
pub(super) struct Pending {
    budget: Arc<Budget>,
    number: u64,
    address: IpAddr,
    notice: Arc<Notice>,
    /// A request came.
    asked: AtomicBool,
}

impl Pending {
    /// Notes a request: the first takes the connection out of the budget for good. Called for
    /// every request, so after the first it is one load.
    pub(super) fn request(&self) {
        if self.asked.load(Ordering::Acquire) || self.asked.swap(true, Ordering::AcqRel) {
            return;
        }
        self.budget.remove(self.number, self.address);
    }

    /// Whether a request has come.
    pub(super) fn asked(&self) -> bool {
        self.asked.load(Ordering::Acquire)
    }

    /// Waits until the budget wants this connection closed to make room, and says which cap.
    pub(super) async fn evicted(&self) -> Cap {
        self.notice.closing.notified().await;
        match self.notice.cap.load(Ordering::Acquire) {
            1 => Cap::PerAddress,
            _ => Cap::Total,
        }
    }

    /// Counts the connection as closed for `cap` (by its task, which closes it).
    pub(super) fn count_eviction(&self, cap: Cap) {
        tracing::debug!(
            address = %self.address,
            cap = cap.label(),
            "closing the oldest connection without a request to make room for a new one"
        );
        if let Some(metrics) = &self.budget.metrics {
            metrics.connection_evicted(cap.label());
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !*self.asked.get_mut() {
            self.budget.remove(self.number, self.address);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion
    use std::future::Future;

    use super::*;

    fn address(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    /// Whether `pending` has been told to close, without waiting (a notice is seen once).
    fn told(pending: &Pending) -> Option<Cap> {
        let evicted = pending.evicted();
        tokio::pin!(evicted);
        let waker = std::task::Waker::noop();
        match evicted.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(cap) => Some(cap),
            std::task::Poll::Pending => None,
        }
    }

    #[test]
    fn past_the_address_cap_that_addresss_oldest_is_told_to_close() {
        let budget = Budget::new(PendingCaps::new(10, 2), None).unwrap();
        let first = budget.admit(address(1));
        let other = budget.admit(address(2));
        let second = budget.admit(address(1));
        assert_eq!(told(&first), None);
        let third = budget.admit(address(1));
        assert_eq!(told(&first), Some(Cap::PerAddress));
        assert_eq!((told(&second), told(&third), told(&other)), (None, None, None));
    }

    #[test]
    fn past_the_total_cap_the_oldest_of_all_is_told_to_close() {
        let budget = Budget::new(PendingCaps::new(2, 2), None).unwrap();
        let first = budget.admit(address(1));
        let second = budget.admit(address(2));
        let third = budget.admit(address(3));
        assert_eq!(told(&first), Some(Cap::Total));
        assert_eq!((told(&second), told(&third)), (None, None));
    }

    #[test]
    fn a_connection_that_asked_or_closed_leaves_the_budget_and_is_never_told() {
        let budget = Budget::new(PendingCaps::new(2, 2), None).unwrap();
        let asked = budget.admit(address(1));
        asked.request();
        let closed = budget.admit(address(1));
        drop(closed);
        let a = budget.admit(address(1));
        let b = budget.admit(address(1));
        let c = budget.admit(address(1));
        assert_eq!(told(&a), Some(Cap::PerAddress), "the oldest still pending");
        assert_eq!((told(&asked), told(&b), told(&c)), (None, None, None));
    }

    #[test]
    fn no_caps_means_no_budget() {
        assert!(Budget::new(PendingCaps { total: 0, per_address: 0 }, None).is_none());
        assert!(Budget::new(PendingCaps::NONE, None).is_none());
        let derived = PendingCaps::for_open_file_limit();
        assert!(derived.total >= MIN_TOTAL && derived.per_address == derived.total / 2);
    }
}
