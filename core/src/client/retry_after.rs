//! `Retry-After`, read in both of the forms RFC 9110 §10.2.3 allows: delta-seconds (`120`) and
//! an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`, the IMF-fixdate of RFC 9110 §5.6.7, which is not
//! RFC 3339). Servers and proxies send either; a client that reads only the first retries at once
//! when told a date.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::RETRY_AFTER;

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
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
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
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
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
}
