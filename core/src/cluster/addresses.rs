//! The instances' addresses in Redis, signed.
//!
//! An instance forwards a request, with the client's credentials, to the address another
//! instance wrote in Redis (`apps/src/forward.rs`). Whoever can write to that Redis could write an
//! address of their own and receive those credentials. So when the instances share a token, each
//! signs its record with an HMAC keyed with it, and a record whose signature does not hold (or
//! that has none) names no instance: it is neither listed nor forwarded to. Without a token
//! (an open server has no credentials to lose) records are written and read unsigned.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// `address` as this instance writes it: followed by its signature when there is a key.
pub(super) fn record(key: Option<&str>, instance: &str, address: &str) -> String {
    match key {
        Some(key) => format!("{address} {}", signature(key, instance, address)),
        None => address.to_owned(),
    }
}

/// The address a record for `instance` names, if it holds: with a key, only a record signed with
/// it; without one, the address whatever follows it.
pub(super) fn address_in(key: Option<&str>, instance: &str, record: &str) -> Option<String> {
    let (address, signed) = match record.split_once(' ') {
        Some((address, signed)) => (address, Some(signed)),
        None => (record, None),
    };
    match key {
        None => Some(address.to_owned()),
        Some(key) => {
            let expected = signature(key, instance, address);
            let holds = signed.is_some_and(|signed| {
                bool::from(subtle::ConstantTimeEq::ct_eq(signed.as_bytes(), expected.as_bytes()))
            });
            holds.then(|| address.to_owned())
        }
    }
}

/// HMAC-SHA256 keyed with the token over the instance and its address, as hex.
fn signature(key: &str, instance: &str, address: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(format!("sse-apps address {instance} {address}").as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_signed_record_names_its_address_only_under_its_key_and_instance() {
        let signed = record(Some("secret"), "a", "http://127.0.0.1:8082");
        assert_eq!(
            address_in(Some("secret"), "a", &signed).as_deref(),
            Some("http://127.0.0.1:8082")
        );
        assert_eq!(address_in(Some("other"), "a", &signed), None, "another key");
        assert_eq!(address_in(Some("secret"), "b", &signed), None, "another instance's name");
        let planted = "http://127.0.0.1:9999";
        assert_eq!(address_in(Some("secret"), "a", planted), None, "unsigned");
        let moved = signed.replace("8082", "9999");
        assert_eq!(address_in(Some("secret"), "a", &moved), None, "another address");
        assert_eq!(address_in(Some("secret"), "a", ""), None);
    }

    #[test]
    fn without_a_key_records_are_plain() {
        assert_eq!(record(None, "a", "http://x:1"), "http://x:1");
        assert_eq!(address_in(None, "a", "http://x:1").as_deref(), Some("http://x:1"));
        let signed = record(Some("secret"), "a", "http://x:1");
        assert_eq!(address_in(None, "a", &signed).as_deref(), Some("http://x:1"));
    }
}
