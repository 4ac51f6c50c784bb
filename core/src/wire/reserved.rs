//! Object keys that serde_json reads as instructions rather than as data.
//!
//! With its `raw_value` feature on (axum turns it on, so every crate here has it), serde_json
//! treats an object whose **first** key is `$serde_json::private::RawValue` as a raw value: the
//! object is replaced by whatever JSON its string member spells (`arbitrary_precision` does the
//! same with `$serde_json::private::Number`). At any other position the key is ordinary data,
//! but serde_json's maps keep their keys sorted and `$` sorts before every letter, so the key is
//! first once such an object is written out again. A peer's object holding it therefore parses
//! here as one thing and, passed on, as another or not at all at the next Rust reader, which
//! breaks the promise that what is relayed is what was sent. The fuzz target `jsonrpc` found it.
//!
//! So a peer's JSON that is kept and passed on is checked with [`reserved_key`] and refused when
//! it holds such a key. No real protocol uses these names. The first-key case cannot be seen
//! after parsing (serde_json has already replaced the object), and needs no refusal: the value
//! it became encodes back to itself.

use serde_json::Value;

/// The prefix of the keys serde_json reserves.
pub const RESERVED_PREFIX: &str = "$serde_json::private::";

/// The first object key in `value`, at any depth, that serde_json reserves, if any.
///
/// Recursion is bounded: serde_json refuses input nested more than 128 levels deep.
pub fn reserved_key(value: &Value) -> Option<&str> {
    match value {
        Value::Object(map) => map.iter().find_map(|(key, member)| {
            if key.starts_with(RESERVED_PREFIX) { Some(key.as_str()) } else { reserved_key(member) }
        }),
        Value::Array(items) => items.iter().find_map(reserved_key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn finds_a_reserved_key_at_any_depth() {
        let key = "$serde_json::private::RawValue";
        assert_eq!(reserved_key(&json!({ "a": 1, key: "2" })), Some(key));
        assert_eq!(reserved_key(&json!([1, { "b": [{ "a": 1, key: "2" }] }])), Some(key));
        let number = "$serde_json::private::Number";
        assert_eq!(reserved_key(&json!({ "x": { number: "1" } })), Some(number));
    }

    #[test]
    fn leaves_ordinary_json_alone() {
        assert_eq!(reserved_key(&json!(null)), None);
        assert_eq!(reserved_key(&json!("$serde_json::private::RawValue")), None);
        assert_eq!(reserved_key(&json!({ "serde_json::private::RawValue": 1, "$x": [] })), None);
        assert_eq!(reserved_key(&json!({ "a": ["$serde_json::private::RawValue"] })), None);
    }

    #[test]
    fn the_key_changes_meaning_once_written_out_which_is_why_it_is_refused() {
        let sent = br#"{"b":1,"$serde_json::private::RawValue":"[1,2]"}"#;
        let parsed: Value = serde_json::from_slice(sent).expect("valid JSON, read as an object");
        assert!(parsed.is_object());
        // Read back, it is something else or nothing at all, never the object that was sent.
        let again = serde_json::from_str::<Value>(&parsed.to_string());
        assert!(again.as_ref().map_or(true, |again| *again != parsed), "{again:?}");
    }
}
