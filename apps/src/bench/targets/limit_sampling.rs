//! The `limit` baseline of `bench sampling`: 2026-07-28's multi round-trip tool call with no
//! framework at all, to show what one core can do here for the two rounds every call takes.
//!
//! `POST /sampling/mcp` with a `tools/call` and no `requestState` answers an
//! `InputRequiredResult` asking for one `sampling/createMessage`, its `requestState` an HMAC-
//! sealed call number (the one piece of work the stateless protocol cannot skip: a retry must
//! prove the server asked); the retry, with that state and the completion in `inputResponses`,
//! answers the tool's result with the completion's text. HTTP/1.1 kept alive, heads parsed with
//! `httparse` ([`super::limit_roundtrip::read_request`]), one task per connection, JSON by
//! serde_json, and nothing else: no router, no middleware, no token, no `_meta` checks, no
//! console records, no expiry or binding in the state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::{TcpListener, TcpStream};

use super::limit_roundtrip::{read_request, write_response};

/// The key the state is sealed with, and the calls asked so far.
struct Server {
    key: [u8; 32],
    calls: AtomicU64,
}

/// Serves until the process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    let server = Arc::new(Server { key, calls: AtomicU64::new(0) });
    loop {
        let (socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        tokio::spawn(connection(socket, server.clone()));
    }
}

/// Answers requests on one connection until it closes.
async fn connection(mut socket: TcpStream, server: Arc<Server>) {
    let mut buffer = Vec::with_capacity(4096);
    while let Some(asked) = read_request(&mut socket, &mut buffer).await {
        let (status, body) = match (asked.method.as_str(), asked.path.as_str()) {
            ("POST", "/sampling/mcp") => match serde_json::from_slice::<Value>(&asked.body) {
                Ok(request) => (200, server.call(&request).to_string()),
                Err(_) => (400, "{}".to_owned()),
            },
            _ => (404, "{}".to_owned()),
        };
        if !write_response(&mut socket, status, &body).await {
            return;
        }
    }
}

impl Server {
    /// The JSON-RPC response to one `tools/call`: the question, or the result.
    fn call(&self, request: &Value) -> Value {
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let params = &request["params"];
        let result = match params.get("requestState").and_then(Value::as_str) {
            None => self.ask(),
            Some(state) if self.opens(state) => {
                let text = params.pointer("/inputResponses/sample/content/text").cloned();
                json!({ "resultType": "complete",
                    "content": [{ "type": "text", "text": text.unwrap_or(Value::Null) }] })
            }
            Some(_) => {
                return json!({ "jsonrpc": "2.0", "id": id,
                    "error": { "code": -32602, "message": "requestState does not verify" } });
            }
        };
        json!({ "jsonrpc": "2.0", "id": id, "result": result })
    }

    /// The first round's `InputRequiredResult`, with a freshly sealed call number.
    fn ask(&self) -> Value {
        let call = self.calls.fetch_add(1, Ordering::Relaxed).to_string();
        let tag = URL_SAFE_NO_PAD.encode(self.mac(call.as_bytes()));
        json!({ "resultType": "input_required",
            "inputRequests": { "sample": { "method": "sampling/createMessage", "params": {
                "messages": [{ "role": "user", "content": { "type": "text",
                    "text": "Classify the sentiment of: A quick benchmark." } }],
                "maxTokens": 16 } } },
            "requestState": format!("{call}.{tag}") })
    }

    /// Whether `state` is a call number this server sealed.
    fn opens(&self, state: &str) -> bool {
        let Some((call, tag)) = state.split_once('.') else { return false };
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else { return false };
        let mut mac = self.hmac();
        mac.update(call.as_bytes());
        mac.verify_slice(&tag).is_ok()
    }

    fn mac(&self, message: &[u8]) -> Vec<u8> {
        let mut mac = self.hmac();
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }

    fn hmac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"))
    }
}
