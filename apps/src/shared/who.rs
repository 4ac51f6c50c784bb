//! Who made a request, in the words the audit records use: the client's address and its user
//! agent.
//!
//! Not an identity (the apps have one token, not users): enough for a person reading an audit
//! log to tell one browser from another, and short enough that a forged user agent cannot flood
//! the log.

use std::net::SocketAddr;

use axum::http::{HeaderMap, header};

/// How much of a user agent is kept.
const AGENT_CHARS: usize = 120;

/// Who made a request: `ADDRESS (USER AGENT)`.
pub fn who(addr: SocketAddr, headers: &HeaderMap) -> String {
    let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let agent: String = agent.unwrap_or("no user agent").chars().take(AGENT_CHARS).collect();
    format!("{} ({agent})", addr.ip())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    use axum::http::{HeaderMap, HeaderValue, header};

    #[test]
    fn names_the_address_and_a_bounded_user_agent() {
        let addr = "192.0.2.7:5555".parse().expect("an address");
        assert_eq!(super::who(addr, &HeaderMap::new()), "192.0.2.7 (no user agent)");
        let mut headers = HeaderMap::new();
        let long = "x".repeat(500);
        headers.insert(header::USER_AGENT, HeaderValue::from_str(&long).expect("ascii"));
        assert_eq!(super::who(addr, &headers), format!("192.0.2.7 ({})", "x".repeat(120)));
    }
}
