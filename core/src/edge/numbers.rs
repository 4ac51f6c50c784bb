//! Whole numbers in request bodies that may be out of any range, so that the handler's own range
//! check answers them.
//!
//! A field such as `timeout_s` has a documented range and a `422 …_out_of_range` past it. Read
//! into a `u64` by serde, `99999999999999999999` would instead fail the whole body with `400
//! invalid_body` ("expected u64"), as would `70000` for a `u16`. These readers take any whole
//! JSON number and saturate it at the type's bounds, which are past every range we check, so the
//! check refuses it with its own code. A fraction or a non-number is still a shape error.
//!
//! ```
//! #[derive(serde::Deserialize)]
//! struct Body {
//!     #[serde(default, deserialize_with = "sse_core::edge::numbers::saturating_u64")]
//!     timeout_s: Option<u64>,
//! }
//! let body: Body = serde_json::from_str(r#"{"timeout_s": 1e30}"#).unwrap();
//! assert_eq!(body.timeout_s, Some(u64::MAX));
//! ```

use serde::de::{Deserializer, Error, Unexpected, Visitor};

/// An optional whole number, saturated into `u64` (negative numbers are refused: there is no
/// "below zero" for a count or a duration to be out of range by).
pub fn saturating_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    deserializer.deserialize_option(OptionOf(Saturating::<u64>(std::marker::PhantomData)))
}

/// An optional whole number, saturated into `i64`.
pub fn saturating_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    deserializer.deserialize_option(OptionOf(Saturating::<i64>(std::marker::PhantomData)))
}

struct OptionOf<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for OptionOf<V> {
    type Value = Option<V::Value>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.0.expecting(formatter)
    }

    fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self.0).map(Some)
    }
}

struct Saturating<T>(std::marker::PhantomData<T>);

impl Visitor<'_> for Saturating<u64> {
    type Value = u64;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a whole number, zero or more")
    }

    fn visit_u64<E: Error>(self, value: u64) -> Result<u64, E> {
        Ok(value)
    }

    fn visit_i64<E: Error>(self, value: i64) -> Result<u64, E> {
        u64::try_from(value).map_err(|_| E::invalid_value(Unexpected::Signed(value), &self))
    }

    fn visit_f64<E: Error>(self, value: f64) -> Result<u64, E> {
        // Past u64 (JSON has no limit): `as` saturates.
        if value.fract() == 0.0 && value >= 0.0 {
            Ok(value as u64)
        } else {
            Err(E::invalid_value(Unexpected::Float(value), &self))
        }
    }
}

impl Visitor<'_> for Saturating<i64> {
    type Value = i64;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a whole number")
    }

    fn visit_u64<E: Error>(self, value: u64) -> Result<i64, E> {
        Ok(i64::try_from(value).unwrap_or(i64::MAX))
    }

    fn visit_i64<E: Error>(self, value: i64) -> Result<i64, E> {
        Ok(value)
    }

    fn visit_f64<E: Error>(self, value: f64) -> Result<i64, E> {
        if value.fract() == 0.0 {
            Ok(value as i64)
        } else {
            Err(E::invalid_value(Unexpected::Float(value), &self))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default, deserialize_with = "super::saturating_u64")]
        count: Option<u64>,
        #[serde(default, deserialize_with = "super::saturating_i64")]
        pid: Option<i64>,
    }

    fn read(json: &str) -> Result<(Option<u64>, Option<i64>), String> {
        serde_json::from_str::<Body>(json).map(|b| (b.count, b.pid)).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_past_the_type_saturate_and_fit_ones_pass() {
        assert_eq!(read(r#"{"count": 7, "pid": -3}"#), Ok((Some(7), Some(-3))));
        assert_eq!(read(r#"{"count": 99999999999999999999}"#), Ok((Some(u64::MAX), None)));
        assert_eq!(
            read(r#"{"count": 1e300, "pid": -1e300}"#),
            Ok((Some(u64::MAX), Some(i64::MIN)))
        );
        assert_eq!(read(r#"{"pid": 18446744073709551615}"#), Ok((None, Some(i64::MAX))));
        assert_eq!(read(r#"{"count": 2.0}"#), Ok((Some(2), None)));
        assert_eq!(read(r#"{}"#), Ok((None, None)));
        assert_eq!(read(r#"{"count": null}"#), Ok((None, None)));
    }

    #[test]
    fn fractions_negative_counts_and_non_numbers_are_still_shape_errors() {
        for json in [
            r#"{"count": 1.5}"#,
            r#"{"count": -1}"#,
            r#"{"count": "7"}"#,
            r#"{"pid": true}"#,
            r#"{"pid": 0.5}"#,
        ] {
            assert!(read(json).is_err(), "{json}");
        }
    }
}
