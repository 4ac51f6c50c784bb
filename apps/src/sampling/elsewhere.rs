//! MCP sessions on other instances, when several share a Redis (`--redis`).
//!
//! An MCP session lives where its client opened it: its stream, its pending `createMessage`
//! requests and the callers waiting on them are in that process. A load balancer without sticky
//! sessions sends the client's later requests anywhere, the POSTed answers included, so a request
//! that names a session this instance does not hold (the `MCP-Session-Id` header, or the legacy
//! transport's `?sessionId=`) is forwarded to the instance the session directory names
//! ([`crate::forward`]); the answer reaches the caller waiting there. A session no instance holds
//! is answered here, as unknown.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sse_core::session::SessionId;

use super::SamplingState;
use crate::forward;

/// The session a request names: `MCP-Session-Id`, or `sessionId` in the query.
fn named_session(request: &Request) -> Option<String> {
    if let Some(id) = request.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()) {
        return Some(id.to_owned());
    }
    let query = request.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "sessionId")
        .map(|(_, value)| value.into_owned())
        .filter(|value| !value.is_empty())
}

/// Middleware: a request for a session another instance holds goes there.
pub async fn to_session(
    State(state): State<SamplingState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(cluster) = state.core.cluster() else { return next.run(request).await };
    let Some(id) = named_session(&request).map(|id| SessionId::from(id.as_str())) else {
        return next.run(request).await;
    };
    if forward::is_forwarded(request.headers()) || state.core.sessions.get(&id).is_some() {
        return next.run(request).await;
    }
    let Some(remote) = cluster.locate(&id).await else { return next.run(request).await };
    forward::to_instance(cluster, &remote.instance, "this MCP session", request).await
}

#[cfg(test)]
mod tests {
    use axum::extract::Request;

    fn request(uri: &str, session: Option<&str>) -> Request {
        let mut builder = Request::builder().uri(uri);
        if let Some(session) = session {
            builder = builder.header("mcp-session-id", session);
        }
        builder.body(Default::default()).expect("a valid request")
    }

    #[test]
    fn finds_the_session_in_the_header_or_the_query() {
        let named = |uri, session| super::named_session(&request(uri, session));
        assert_eq!(named("/sampling/mcp", Some("s1")).as_deref(), Some("s1"));
        assert_eq!(named("/sampling/messages?sessionId=s2", None).as_deref(), Some("s2"));
        assert_eq!(named("/sampling/messages?sessionId=", None), None);
        assert_eq!(named("/sampling/mcp", None), None);
    }
}
