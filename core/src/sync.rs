//! Locking without poisoning.
//!
//! A panic while a `std` mutex is held poisons it, and every later `lock()` returns an error that
//! callers would each have to handle. Every critical section in this crate (and in the apps that
//! use it) leaves its data consistent before anything that could panic, so a poisoned mutex holds
//! good data: [`lock`] takes it anyway. This lives on its own, below every other module, because
//! nearly all of them lock something.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, recovering the data if a thread panicked while holding it (see the module
/// docs for why that is safe here).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
