//! `bidi-client`: answers a bidirectional server's requests, concurrently.
//!
//! It speaks the Go original's wire format by default (so it works against the original server
//! too: no ids, no keep-alives, single-line `data:`), or the core's native JSON-RPC one with
//! `--protocol native`. Each request runs in its own task; every answer is POSTed with retries on
//! network errors and 5xx (a 409 means an earlier try arrived); a dropped stream is reopened.

use std::sync::Arc;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};
use sse_core::client::{EventSource, Responder, post_json_with_retry};
use sse_core::wire::jsonrpc::{ErrorObject, Request, codes};
use tokio_util::sync::CancellationToken;

/// Which wire format to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// The Go original's: `/events?client_id=`, `POST /response` with `Client-ID`.
    Compat,
    /// The core's: JSON-RPC over `/rpc/events` and `POST /rpc/responses`.
    Native,
}

/// Settings of one client.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:8082`.
    pub server: String,
    /// This client's id.
    pub client_id: String,
    /// The wire format.
    pub protocol: Protocol,
    /// Simulated work per request (the original slept 1 s).
    pub work: Duration,
    /// Sent as `Authorization: Bearer` when the server wants a token.
    pub token: Option<String>,
}

impl ClientConfig {
    /// The headers every request of this client carries.
    fn auth_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let bearer =
            self.token.as_ref().and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok());
        if let Some(value) = bearer {
            headers.insert(AUTHORIZATION, value);
        }
        headers
    }
}

/// The default handler: a short analysis of the message.
pub fn analyze(message: &str) -> String {
    let chars = message.chars().count();
    let words = message.split_whitespace().count();
    format!("Analysis result for '{message}': {chars} characters, {words} words.")
}

/// Answers one request by method.
async fn handle(method: &str, message: Option<&str>, work: Duration) -> Result<Value, ErrorObject> {
    if !work.is_zero() {
        tokio::time::sleep(work).await;
    }
    match (method, message) {
        ("analyze", Some(message)) => Ok(Value::String(analyze(message))),
        ("analyze", None) => {
            Err(ErrorObject::new(codes::INVALID_PARAMS, "analyze needs a message"))
        }
        (other, _) => {
            Err(ErrorObject::new(codes::METHOD_NOT_FOUND, format!("unknown method {other:?}")))
        }
    }
}

/// Runs until `shutdown`.
pub async fn run(config: ClientConfig, shutdown: CancellationToken) {
    let http = match reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build() {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "could not build the HTTP client");
            return;
        }
    };
    match config.protocol {
        Protocol::Native => {
            let work = config.work;
            let handler = move |request: Request| async move {
                let message =
                    request.params.as_ref().and_then(|p| p.get("message")).and_then(Value::as_str);
                handle(&request.method, message, work).await
            };
            let mut responder = Responder::new(http, &config.server).client_id(&config.client_id);
            for (name, value) in &config.auth_headers() {
                responder = responder.header(name.clone(), value.clone());
            }
            responder.run(handler, shutdown).await;
        }
        Protocol::Compat => run_compat(http, Arc::new(config), shutdown).await,
    }
}

#[derive(Debug, Deserialize)]
struct CompatFrame {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<String>,
    method: Option<String>,
    message: Option<String>,
}

async fn run_compat(http: reqwest::Client, config: Arc<ClientConfig>, shutdown: CancellationToken) {
    let base = config.server.trim_end_matches('/');
    let url = match reqwest::Url::parse_with_params(
        &format!("{base}/events"),
        [("client_id", &config.client_id)],
    ) {
        Ok(url) => url,
        Err(error) => {
            tracing::error!(%error, server = %config.server, "not a valid server URL");
            return;
        }
    };
    let mut source = EventSource::new(http.clone(), url.as_str());
    for (name, value) in &config.auth_headers() {
        source = source.header(name.clone(), value.clone());
    }
    let mut client_id = config.client_id.clone();
    while let Some(event) = source.next_event(&shutdown).await {
        if event.event == "resync" {
            // Requests were missed (we were away too long, or fell behind): the server will time
            // them out; nothing to answer.
            tracing::warn!("the server says we missed requests (resync)");
            continue;
        }
        let frame: CompatFrame = match serde_json::from_str(&event.data) {
            Ok(frame) => frame,
            Err(error) => {
                tracing::warn!(%error, data = %event.data, "unreadable frame");
                continue;
            }
        };
        if frame.kind.as_deref() == Some("client_id") {
            if let Some(id) = frame.id {
                tracing::info!(client_id = %id, "server confirmed our id");
                client_id = id;
            }
            continue;
        }
        let (Some(id), Some(method)) = (frame.id, frame.method) else {
            tracing::warn!(data = %event.data, "frame is neither a greeting nor a request");
            continue;
        };
        let (http, config, client_id) = (http.clone(), config.clone(), client_id.clone());
        tokio::spawn(async move {
            tracing::info!(request = %id, %method, "request received");
            let result = match handle(&method, frame.message.as_deref(), config.work).await {
                Ok(result) => result,
                // The original format has no error member: say it in the result, never stay silent.
                Err(error) => Value::String(format!("error: {}", error.message)),
            };
            let mut headers = config.auth_headers();
            if let Ok(value) = client_id.parse() {
                headers.insert("client-id", value);
            }
            let url = format!("{}/response", config.server.trim_end_matches('/'));
            let body = json!({ "id": id, "result": result });
            match post_json_with_retry(&http, &url, &headers, &body, 8).await {
                Ok(outcome) => tracing::info!(request = %id, ?outcome, "answer sent"),
                Err(error) => tracing::warn!(request = %id, %error, "answer not delivered"),
            }
        });
    }
}
