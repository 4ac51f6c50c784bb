//! The bidirectional server's `/trigger` as its tests call it. Included by the tests that use it
//! (`#[path = "support/bidi.rs"] mod bidi_requests;`).
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::time::Duration;

use serde_json::Value;

/// A watchdog for a trigger that never comes back; not a timing assertion (the servers under
/// test give up on a silent client well before it).
const WATCHDOG: Duration = Duration::from_secs(60);

/// Asks the server at `base` to send `message` to the client `client_id` (`GET /trigger`, the
/// Go original's form); returns the status and the body (`null` when not JSON).
pub async fn trigger(base: &str, client_id: &str, message: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{base}/trigger"))
        .query(&[("client_id", client_id), ("message", message)])
        .timeout(WATCHDOG)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
