//! The wall clock, in milliseconds since the Unix epoch: what every record, event and message
//! the apps keep says for "when".
//!
//! One function, so that every app's times compare: the chat's message times, the dashboard's
//! samples and audit entries, exec's runs and the sampling console's requests all come from here.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch (0 for a clock set before 1970, which no record
/// can mean).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// [`unix_millis`] as SQLite columns and Redis scores hold it: a signed 64-bit integer.
pub fn unix_millis_i64() -> i64 {
    i64::try_from(unix_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    #[test]
    fn the_clock_is_past_2020_and_does_not_go_back_between_two_reads() {
        let first = super::unix_millis();
        assert!(first > 1_577_836_800_000, "{first} is before 2020");
        assert!(super::unix_millis() >= first);
    }
}
