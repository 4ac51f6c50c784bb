//! The chat's requests as its tests make them: joining a room, posting to it. Included by the
//! tests that use them (`#[path = "support/chat.rs"] mod chat_requests;`).
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use serde_json::{Value, json};

/// Joins `room` on the server at `base` as `nick` (which must be accepted: 201); returns the
/// member token.
pub async fn join(base: &str, room: &str, nick: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{base}/chat/rooms/{room}/join"))
        .json(&json!({ "nick": nick }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "join {room} as {nick}");
    response.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
}

/// Posts `text` to `room` on the server at `base` as the member `token`, with the client's
/// message id `client_msg_id`; returns the status and the body (`null` when not JSON).
pub async fn say(
    base: &str,
    room: &str,
    token: &str,
    text: &str,
    client_msg_id: &str,
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/chat/rooms/{room}/messages"))
        .bearer_auth(token)
        .json(&json!({ "text": text, "client_msg_id": client_msg_id }))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

/// The next chat message on `stream` (presence and typing skipped), checking that its event id
/// is the message's id: a reader resumes from the last id it saw.
pub async fn chat_message(stream: &mut sse_core::testing::Stream) -> serde_json::Value {
    let event = sse_core::testing::next_event(stream, "message").await;
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(event.last_event_id, data["id"].to_string(), "the event id is the message id");
    data
}
