//! Mock model servers for tests: the HTTP contracts of OpenAI-compatible Chat Completions and
//! Anthropic Messages, both streaming and counting tokens as the real ones do, with failures (and
//! their `Retry-After`) on demand. Every request is recorded, so a test can count them.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// A status to answer with, and the `Retry-After` to send with it.
pub type Failure = (u16, Option<String>);

/// What the mock provider does and what it saw.
#[derive(Clone, Default)]
pub struct Mock {
    /// Statuses to answer before succeeding, last first (e.g. [429] then a stream), each with
    /// the `Retry-After` to send, if any; 0 stalls (answers nothing for an hour). Set with
    /// [`Mock::fail`].
    pub failures: Arc<Mutex<Vec<Failure>>>,
    /// Every request body received.
    pub seen: Arc<Mutex<Vec<Value>>>,
    /// The credentials each request came with (`Authorization`, or Anthropic's `x-api-key`).
    pub keys: Arc<Mutex<Vec<String>>>,
}

#[allow(dead_code, reason = "used by the tests that make the model fail or count its calls")]
impl Mock {
    /// Answers the next requests with these statuses, in this order, before succeeding again.
    pub fn fail(&self, answers: &[(u16, Option<&str>)]) {
        *self.failures.lock().unwrap() = answers
            .iter()
            .rev()
            .map(|(status, after)| (*status, after.map(str::to_owned)))
            .collect();
    }

    /// How many requests the mock has received.
    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn note_key(&self, headers: &axum::http::HeaderMap) {
        let key = ["authorization", "x-api-key"]
            .iter()
            .find_map(|name| headers.get(*name)?.to_str().ok())
            .unwrap_or_default();
        self.keys.lock().unwrap().push(key.to_owned());
    }
}

fn sse_body(events: &[(Option<&str>, Value)], done: bool) -> Response {
    let mut body = String::new();
    for (name, data) in events {
        if let Some(name) = name {
            body.push_str(&format!("event: {name}\n"));
        }
        body.push_str(&format!("data: {data}\n\n"));
    }
    if done {
        body.push_str("data: [DONE]\n\n");
    }
    ([("content-type", "text/event-stream")], body).into_response()
}

async fn failure((status, retry_after): Failure) -> Response {
    if status == 0 {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
    let status = StatusCode::from_u16(status).unwrap();
    let body = json!({"error": {"message": format!("mock says {status}"), "type": "mock_error", "code": "mock"}});
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(after) = retry_after {
        response.headers_mut().insert("retry-after", after.parse().unwrap());
    }
    response
}

async fn openai(
    State(mock): State<Mock>,
    headers: axum::http::HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    mock.note_key(&headers);
    let usage_asked = body.pointer("/stream_options/include_usage") == Some(&json!(true));
    mock.seen.lock().unwrap().push(body);
    let next = mock.failures.lock().unwrap().pop();
    if let Some(failed) = next {
        return failure(failed).await;
    }
    let chunk = |content: Option<&str>, finish: Option<&str>| {
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "mock-gpt",
               "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]})
    };
    let mut events = vec![
        (None, chunk(Some("Hel"), None)),
        (None, chunk(Some("lo."), None)),
        (None, chunk(None, Some("length"))),
    ];
    // As OpenAI does: the counts in one last chunk without choices, only when asked for.
    if usage_asked {
        events.push((
            None,
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "mock-gpt",
                   "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}),
        ));
    }
    sse_body(&events, true)
}

async fn anthropic(
    State(mock): State<Mock>,
    headers: axum::http::HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    mock.note_key(&headers);
    mock.seen.lock().unwrap().push(body);
    let next = mock.failures.lock().unwrap().pop();
    if let Some(failed) = next {
        return failure(failed).await;
    }
    sse_body(
        &[
            (
                Some("message_start"),
                json!({"type": "message_start", "message": {"model": "mock-claude",
                       "usage": {"input_tokens": 7, "output_tokens": 1}}}),
            ),
            (
                Some("content_block_delta"),
                json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Bonjour"}}),
            ),
            (
                Some("message_delta"),
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                       "usage": {"output_tokens": 3}}),
            ),
            (Some("message_stop"), json!({"type": "message_stop"})),
        ],
        false,
    )
}

pub async fn mock_server(mock: Mock) -> String {
    let app = Router::new()
        .route("/v1/chat/completions", post(openai))
        .route("/v1/messages", post(anthropic))
        .with_state(mock);
    sse_core::testing::serve(app).await.0
}
