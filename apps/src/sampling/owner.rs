//! Which instance holds an MCP session, when several share a Redis (`--redis`): sampling's
//! answer to [`crate::owner_routing`].
//!
//! An MCP session lives where its client opened it: its stream, its pending `createMessage`
//! requests and the callers waiting on them are in that process. A load balancer without sticky
//! sessions sends the client's later requests anywhere, the POSTed answers included, so a request
//! that names a session this instance does not hold (the `MCP-Session-Id` header, or the legacy
//! transport's `?sessionId=`) goes to the instance the session directory names; the answer
//! reaches the caller waiting there. A session no instance holds is answered here, as unknown.

use axum::http::{HeaderMap, Uri};
use sse_core::cluster::Cluster;
use sse_core::session::SessionId;

use super::SamplingState;
use crate::owner_routing::{FindOwner, Owner};

/// The session a request names: `MCP-Session-Id`, or `sessionId` in the query.
fn named_session(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    if let Some(id) = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) {
        return Some(id.to_owned());
    }
    let query = uri.query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "sessionId")
        .map(|(_, value)| value.into_owned())
        .filter(|value| !value.is_empty())
}

impl FindOwner for SamplingState {
    fn cluster(&self) -> Option<&Cluster> {
        self.core.cluster()
    }

    /// The instance the session directory names for the session a request names, unless this
    /// instance holds it; a session nobody holds is answered here (as unknown).
    async fn owner(&self, cluster: &Cluster, uri: &Uri, headers: &HeaderMap) -> Owner {
        let Some(id) = named_session(uri, headers).map(|id| SessionId::from(id.as_str())) else {
            return Owner::Here;
        };
        if self.core.sessions.get(&id).is_some() {
            return Owner::Here;
        }
        match cluster.locate(&id).await {
            Some(remote) => Owner::instance(cluster, &remote.instance, "this MCP session").await,
            None => Owner::Here,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
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
        let named = |uri, session| {
            let request = request(uri, session);
            super::named_session(request.uri(), request.headers())
        };
        assert_eq!(named("/sampling/mcp", Some("s1")).as_deref(), Some("s1"));
        assert_eq!(named("/sampling/messages?sessionId=s2", None).as_deref(), Some("s2"));
        assert_eq!(named("/sampling/messages?sessionId=", None), None);
        assert_eq!(named("/sampling/mcp", None), None);
    }
}
