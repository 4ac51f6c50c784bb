//! Host and Origin checks.
//!
//! * **Host** (DNS rebinding): a page on `evil.example` whose name is re-pointed at 127.0.0.1
//!   reaches a local server with `Host: evil.example`. A server bound to loopback therefore only
//!   answers Host names that mean loopback (`localhost`, `127.0.0.1`, `[::1]`) plus any the
//!   operator allows. A server bound to another address accepts any Host unless names are given.
//! * **Origin** (CSRF): a state-changing request (anything but GET, HEAD, OPTIONS) that carries an
//!   `Origin` must come from the same origin as the Host it was sent to, or an allowed one.
//!   Requests without `Origin` (curl, the Rust client) are not from a browser page and pass.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{HOST, ORIGIN};
use http::request::Parts;
use http::{HeaderMap, HeaderName, Method, StatusCode, Uri};

use super::ApiError;

/// Which Host names and Origins a server accepts. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HostPolicy {
    /// Lower-case host names without port; `None` accepts any.
    hosts: Option<Arc<[String]>>,
    /// Extra origins (scheme://host[:port]) allowed for state-changing requests.
    origins: Arc<[String]>,
}

impl HostPolicy {
    /// The policy for a server bound to `addr`, with extra allowed host names and origins.
    pub fn for_bind(addr: SocketAddr, extra_hosts: &[String], extra_origins: &[String]) -> Self {
        let mut hosts: Vec<String> = extra_hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        let hosts = if addr.ip().is_loopback() {
            hosts.extend(["localhost", "127.0.0.1", "[::1]"].map(String::from));
            Some(hosts.into())
        } else if hosts.is_empty() {
            None
        } else {
            hosts.push(host_of_ip(addr));
            Some(hosts.into())
        };
        HostPolicy { hosts, origins: extra_origins.to_vec().into() }
    }

    /// Accepts every Host and only same-origin Origins.
    pub fn any_host() -> Self {
        HostPolicy { hosts: None, origins: Arc::from([]) }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let Some(hosts) = &self.hosts else {
            return true;
        };
        let name = strip_port(host);
        hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(name))
    }

    fn origin_allowed(&self, origin: &str, host: &str) -> bool {
        let Some((_, authority)) = origin.split_once("://") else {
            return false;
        };
        authority.eq_ignore_ascii_case(host) || self.origins.iter().any(|o| o == origin)
    }
}

fn host_of_ip(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => v4.ip().to_string(),
        SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
    }
}

/// `example.com:80` → `example.com`, `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// The Host a request was sent to (the `Host` header, or the URI authority under HTTP/2).
fn host_of<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> &'a str {
    headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or_default()
}

/// A header name made once: looked up by `&str`, it would be parsed on every request.
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Whether a browser sent this from another origin than the policy allows: `Sec-Fetch-Site`
/// says another site, or the same site but another origin (a page on another port of the same
/// host, which a browser also sends the cookie to) without an `Origin` the policy allows; or
/// the `Origin` it names is not the Host's own (nor allowed by the policy).
fn is_cross_site(policy: &HostPolicy, headers: &HeaderMap, host: &str) -> bool {
    let allowed =
        |origin: &http::HeaderValue| policy.origin_allowed(origin.to_str().unwrap_or("null"), host);
    match headers.get(SEC_FETCH_SITE).map(http::HeaderValue::as_bytes) {
        Some(b"cross-site") => return true,
        Some(b"same-site") => return !headers.get(ORIGIN).is_some_and(allowed),
        _ => {}
    }
    headers.get(ORIGIN).is_some_and(|origin| !allowed(origin))
}

impl HostPolicy {
    /// The 403 this policy answers `req` with (a Host outside it, or a cross-origin
    /// state-changing request), or `None` when the request may go on. For layers that check
    /// before they call the service below; [`check_host_and_origin`] is the middleware form.
    pub fn refusal(&self, req: &Request) -> Option<Response> {
        let host = host_of(req.headers(), req.uri());
        if !self.host_allowed(host) {
            tracing::warn!(host, "refused a request for a foreign Host");
            return Some(forbidden(
                "host_not_allowed",
                "this server does not answer to that Host name",
            ));
        }
        let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe && is_cross_site(self, req.headers(), host) {
            tracing::warn!(host, "refused a cross-origin request");
            return Some(forbidden("origin_not_allowed", "cross-origin requests are not allowed"));
        }
        None
    }
}

/// Middleware: 403 for a Host outside the policy, or a cross-origin state-changing request.
/// Use with `axum::middleware::from_fn_with_state(policy, check_host_and_origin)`.
pub async fn check_host_and_origin(
    State(policy): State<HostPolicy>,
    req: Request,
    next: Next,
) -> Response {
    match policy.refusal(&req) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

/// The 403 for a request a page on another site sent, whatever its method, or `None`.
/// Non-browser clients send neither `Origin` nor `Sec-Fetch-Site` and pass.
fn cross_site_refusal(headers: &HeaderMap, uri: &Uri) -> Option<ApiError> {
    let host = host_of(headers, uri);
    if !is_cross_site(&HostPolicy::any_host(), headers, host) {
        return None;
    }
    tracing::warn!(host, "refused a cross-site request to a state-changing GET");
    Some(ApiError::new(
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
        "cross-site requests are not allowed here",
    ))
}

/// Middleware for groups of routes that change state even on GET (MCP's GET opens a session):
/// cross-site requests are refused whatever the method, so a page elsewhere cannot fire them
/// with an `<img>` tag. For one handler, the [`SameSite`] extractor does the same for less.
pub async fn refuse_cross_site(req: Request, next: Next) -> Response {
    match cross_site_refusal(req.headers(), req.uri()) {
        Some(refused) => refused.into_response(),
        None => next.run(req).await,
    }
}

/// Extractor form of [`refuse_cross_site`], for a handler that changes state on GET (kept for
/// compatibility, such as `/trigger`, or a stream that takes a client's name, such as
/// `/rpc/events`): put it first among the handler's arguments.
///
/// Why an extractor: a `route_layer(from_fn(..))` clones the boxed route below it and boxes one
/// more future on every call, and `/trigger` is the round-trip benchmark's hot path.
#[derive(Debug, Clone, Copy)]
pub struct SameSite;

impl<S: Send + Sync> FromRequestParts<S> for SameSite {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match cross_site_refusal(&parts.headers, &parts.uri) {
            Some(refused) => Err(refused),
            None => Ok(SameSite),
        }
    }
}

fn forbidden(code: &'static str, message: &str) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, code, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_policy_accepts_loopback_names_only() {
        let policy = HostPolicy::for_bind("127.0.0.1:8080".parse().expect("addr"), &[], &[]);
        assert!(policy.host_allowed("localhost:8080"));
        assert!(policy.host_allowed("127.0.0.1:1"));
        assert!(policy.host_allowed("[::1]:8080"));
        assert!(!policy.host_allowed("evil.example:8080"));
        assert!(!policy.host_allowed(""));
    }

    #[test]
    fn host_names_match_whatever_their_case() {
        let extra = ["Dev.Example".to_owned()];
        let policy = HostPolicy::for_bind("127.0.0.1:8080".parse().expect("addr"), &extra, &[]);
        assert!(policy.host_allowed("LOCALHOST:8080"));
        assert!(policy.host_allowed("dev.example"));
        assert!(policy.host_allowed("DEV.EXAMPLE:443"));
        assert!(!policy.host_allowed("dev.example.evil"));
    }

    #[test]
    fn origins_must_match_the_host() {
        let policy = HostPolicy::any_host();
        assert!(policy.origin_allowed("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(!policy.origin_allowed("http://evil.example", "127.0.0.1:8080"));
        assert!(!policy.origin_allowed("null", "127.0.0.1:8080"));
    }
}
