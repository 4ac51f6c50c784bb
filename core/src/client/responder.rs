//! Answers a server's requests: the client half of the correlator.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::Value;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::{EventSource, post_json_with_retry};
use crate::session::CANCELLED;
use crate::sync::lock;
use crate::wire::jsonrpc::{ErrorObject, Id, Message, Request, Response, codes};

/// What answers a request: `method` and `params` in, a result or a JSON-RPC error out.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request.
    fn handle(
        &self,
        request: Request,
    ) -> Pin<Box<dyn Future<Output = Result<Value, ErrorObject>> + Send>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, ErrorObject>> + Send + 'static,
{
    fn handle(
        &self,
        request: Request,
    ) -> Pin<Box<dyn Future<Output = Result<Value, ErrorObject>> + Send>> {
        Box::pin(self(request))
    }
}

/// A client of a server's native session stream (`GET {base}/rpc/events`,
/// `POST {base}/rpc/responses`).
#[derive(Debug)]
pub struct Responder {
    http: reqwest::Client,
    base: String,
    client_id: Option<String>,
    headers: HeaderMap,
}

#[derive(Deserialize)]
struct Hello {
    session_id: String,
}

/// The header a POSTed answer names its session with.
pub use crate::rpc::http::SESSION_HEADER;

impl Responder {
    /// A responder for the server whose session endpoints live under `base` (for example
    /// `http://127.0.0.1:8082`).
    pub fn new(http: reqwest::Client, base: impl Into<String>) -> Responder {
        let base = base.into().trim_end_matches('/').to_owned();
        Responder { http, base, client_id: None, headers: HeaderMap::new() }
    }

    /// A name for this client (the server can address it by name).
    pub fn client_id(mut self, id: impl Into<String>) -> Responder {
        self.client_id = Some(id.into());
        self
    }

    /// A header sent with every request (for example `Authorization`).
    pub fn header(mut self, name: http::HeaderName, value: HeaderValue) -> Responder {
        self.headers.insert(name, value);
        self
    }

    fn events_url(&self, session: Option<&str>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(name) = &self.client_id {
            query.append_pair("client_id", name);
        }
        if let Some(session) = session {
            query.append_pair("session_id", session);
        }
        format!("{}/rpc/events?{}", self.base, query.finish())
    }

    /// Runs until `shutdown` fires or the server stops the stream for good.
    pub async fn run(self, handler: impl Handler, shutdown: CancellationToken) {
        let handler: Arc<dyn Handler> = Arc::new(handler);
        let running: Arc<Mutex<HashMap<Id, AbortHandle>>> = Arc::default();
        let mut source = EventSource::new(self.http.clone(), self.events_url(None));
        for (name, value) in &self.headers {
            source = source.header(name.clone(), value.clone());
        }
        let mut session: Option<String> = None;
        while let Some(event) = source.next_event(&shutdown).await {
            match event.event.as_str() {
                "session" => match serde_json::from_str::<Hello>(&event.data) {
                    Ok(hello) => {
                        if session.as_deref() != Some(hello.session_id.as_str()) {
                            tracing::info!(session = %&hello.session_id[..8.min(hello.session_id.len())], "joined session");
                        }
                        source.set_url(self.events_url(Some(&hello.session_id)));
                        session = Some(hello.session_id);
                    }
                    Err(error) => tracing::warn!(%error, "unreadable session greeting"),
                },
                "request" => {
                    let Some(session) = session.clone() else {
                        tracing::warn!("request before the session greeting; ignored");
                        continue;
                    };
                    self.spawn_handler(&handler, &running, session, &event.data);
                }
                "notification" => cancel_if_asked(&running, &event.data),
                "resync" => tracing::warn!("the server says we missed events (resync)"),
                other => tracing::debug!(event = other, "ignored event"),
            }
        }
        for (_, task) in lock(&running).drain() {
            task.abort();
        }
    }

    fn spawn_handler(
        &self,
        handler: &Arc<dyn Handler>,
        running: &Arc<Mutex<HashMap<Id, AbortHandle>>>,
        session: String,
        data: &str,
    ) {
        let request = match Message::parse(data.as_bytes()) {
            Ok(Message::Request(request)) => request,
            other => {
                tracing::warn!(?other, "the server sent something that is not a request");
                return;
            }
        };
        let id = request.id.clone();
        let handler = handler.clone();
        let running_for_task = running.clone();
        let http = self.http.clone();
        let url = format!("{}/rpc/responses", self.base);
        let mut headers = self.headers.clone();
        if let Ok(value) = HeaderValue::from_str(&session) {
            headers.insert(SESSION_HEADER, value);
        }
        let mut map = lock(running);
        let task_id = id.clone();
        let task = tokio::spawn(async move {
            // Run the handler in its own task so a panic becomes an error answer, not silence;
            // the drop guard stops it too when this task is aborted (a cancellation).
            let work = AbortOnDropHandle::new(tokio::spawn(handler.handle(request)));
            let outcome = match work.await {
                Ok(outcome) => outcome,
                Err(_) => Err(ErrorObject::new(codes::INTERNAL_ERROR, "the handler failed")),
            };
            let response = Response { id: task_id.clone(), outcome };
            lock(&running_for_task).remove(&task_id);
            match post_json_with_retry(&http, &url, &headers, &response.to_value(), 8).await {
                Ok(outcome) => tracing::info!(request = %task_id, ?outcome, "answer sent"),
                Err(error) => tracing::warn!(request = %task_id, %error, "answer not delivered"),
            }
        });
        map.insert(id, task.abort_handle());
    }
}

/// Stops the handler of a request the server no longer waits for.
fn cancel_if_asked(running: &Mutex<HashMap<Id, AbortHandle>>, data: &str) {
    let Ok(Message::Notification(note)) = Message::parse(data.as_bytes()) else {
        return;
    };
    if note.method != CANCELLED {
        return;
    }
    let Some(id) = note.params.as_ref().and_then(|p| p.get("requestId")) else {
        return;
    };
    let Ok(id) = serde_json::from_value::<Id>(id.clone()) else {
        return;
    };
    if let Some(task) = lock(running).remove(&id) {
        task.abort();
        tracing::info!(request = %id, "request cancelled by the server");
    }
}
