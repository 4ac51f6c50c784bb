//! The shared access token, as Jupyter does it.
//!
//! A server given a token (`--token`, or one it generated with [`Token::generate`] because its
//! apps can change the machine) prints a ready link with it. Clients present it as
//! `Authorization: Bearer <token>`, as the `sse_apps_token` cookie, or once as `?token=` in a
//! link: browsers' `EventSource` cannot send headers, so a request carrying the right `?token=`
//! also gets an `HttpOnly; SameSite=Strict` cookie and later requests need nothing in the URL.
//! A browser that opened such a link itself (the printed one, or one on this server's own pages)
//! is sent on at once to the same address without the token, the cookie set on the way, so the
//! secret does not stay in its address bar and history. A link followed from another site is
//! served as it is: the browser would not send a `SameSite=Strict` cookie along a redirect that
//! began elsewhere.
//! Tokens are compared in constant time and never logged (request spans omit the query string).

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::ApiError;

/// The cookie that carries the token for browsers.
pub const COOKIE_NAME: &str = "sse_apps_token";

/// The token a server requires, or none (open access). Cheap to clone.
#[derive(Clone, Default)]
pub struct Token(Option<Arc<str>>, CookieSecurity);

/// Whether the cookie a `?token=` link sets may travel over plain HTTP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum CookieSecurity {
    /// Plain HTTP: the browser must send it there.
    #[default]
    AnyScheme,
    /// Served over HTTPS: `Secure`, so a browser never sends it to a plain-HTTP page.
    HttpsOnly,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Token(<redacted>)" } else { "Token(none)" })
    }
}

impl Token {
    /// Requires `secret`.
    pub fn required(secret: impl Into<Arc<str>>) -> Token {
        Token(Some(secret.into()), CookieSecurity::AnyScheme)
    }

    /// The same token, for a server that answers over HTTPS: the cookie it sets is `Secure`.
    pub fn over_https(self) -> Token {
        Token(self.0, CookieSecurity::HttpsOnly)
    }

    /// Requires nothing.
    pub fn open() -> Token {
        Token(None, CookieSecurity::AnyScheme)
    }

    /// A fresh random token: 32 bytes from the OS generator, as 64 hex digits.
    pub fn generate() -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The secret, for printing the start-up link (and nothing else).
    pub fn secret(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// Whether a token is required at all.
    pub fn is_required(&self) -> bool {
        self.0.is_some()
    }

    /// Constant-time comparison with what a client presented.
    pub fn matches(&self, candidate: &str) -> bool {
        match &self.0 {
            None => true,
            Some(secret) => bool::from(secret.as_bytes().ct_eq(candidate.as_bytes())),
        }
    }
}

/// The token in an `Authorization: Bearer <token>` header, if there is one. The scheme's name
/// is case-insensitive (RFC 9110, 11.1): `bearer` and `BEARER` are the same scheme.
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(token.trim()).filter(|token| !token.is_empty())
}

/// Where the client put a credential.
#[derive(PartialEq, Eq)]
enum Place {
    Header,
    Query,
    Cookie,
}

/// Every credential the request carries. An app may use the bearer header or `?token=` for a
/// credential of its own (a chat member's token, say) while the server's token rides in the
/// cookie, so each one is tried.
fn presented(req: &Request) -> Vec<(Place, String)> {
    let headers = req.headers();
    let mut found = Vec::new();
    if let Some(token) = bearer(headers) {
        found.push((Place::Header, token.to_owned()));
    }
    if let Some(query) = req.uri().query() {
        let tokens = form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k == "token");
        found.extend(tokens.map(|(_, v)| (Place::Query, v.into_owned())));
    }
    let cookies =
        headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';'));
    let ours =
        cookies.filter_map(|pair| pair.trim().split_once('=')).filter(|(k, _)| *k == COOKIE_NAME);
    found.extend(ours.map(|(_, v)| (Place::Cookie, v.to_owned())));
    found
}

/// Middleware: refuses requests without the right token with 401, and turns a correct `?token=`
/// into a cookie. Use with `axum::middleware::from_fn_with_state(token, require_token)`.
pub async fn require_token(State(token): State<Token>, req: Request, next: Next) -> Response {
    if !token.is_required() {
        return next.run(req).await;
    }
    let candidates = presented(&req);
    if candidates.is_empty() {
        return unauthorized("missing_token", "this endpoint needs the server's token");
    }
    let Some((place, secret)) = candidates.into_iter().find(|(_, t)| token.matches(t)) else {
        return unauthorized("wrong_token", "the token is not valid for this server");
    };
    if place != Place::Query {
        return next.run(req).await;
    }
    let clean = (req.method() == Method::GET && opened_by_this_browser(req.headers()))
        .then(|| address_without_token(req.uri()))
        .and_then(|address| HeaderValue::from_str(&address).ok());
    let mut response = match clean {
        Some(location) => (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response(),
        None => next.run(req).await,
    };
    let secure = if token.1 == CookieSecurity::HttpsOnly { "; Secure" } else { "" };
    let cookie = format!("{COOKIE_NAME}={secret}; HttpOnly; SameSite=Strict; Path=/{secure}");
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// A browser's navigation it began itself (`none`: typed, or opened from outside it) or from a
/// page of this origin: one along which it will send the cookie just set.
fn opened_by_this_browser(headers: &HeaderMap) -> bool {
    let navigates = headers.get(SEC_FETCH_MODE).is_some_and(|mode| mode == "navigate");
    let site = headers.get(SEC_FETCH_SITE);
    navigates && site.is_some_and(|site| site == "none" || site == "same-origin")
}

/// The request's own address without its `token` parameters, relative to itself (`./name?rest`),
/// so it stays right behind a proxy that serves this server under a path of its own.
fn address_without_token(uri: &http::Uri) -> String {
    let last_segment = uri.path().rsplit('/').next().unwrap_or_default();
    let kept: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            form_urlencoded::parse(key.as_bytes()).next().is_none_or(|(key, _)| key != "token")
        })
        .collect();
    // "./" first: a segment with a colon in it would otherwise read as a scheme.
    if kept.is_empty() {
        format!("./{last_segment}")
    } else {
        format!("./{last_segment}?{}", kept.join("&"))
    }
}

fn unauthorized(code: &'static str, message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, code, message).into_response();
    response.headers_mut().insert(WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(uri: &str) -> String {
        address_without_token(&uri.parse().unwrap_or_else(|e| panic!("{uri}: {e}")))
    }

    #[test]
    fn the_clean_address_drops_every_token_and_keeps_the_rest_as_sent() {
        assert_eq!(clean("/?token=abc"), "./");
        assert_eq!(clean("/dashboard?token=abc"), "./dashboard");
        assert_eq!(clean("/chat/?room=a%20b&token=abc&token=def&x"), "./?room=a%20b&x");
        assert_eq!(clean("/a/b:c?t%6Fken=abc&tokens=1"), "./b:c?tokens=1");
    }

    #[test]
    fn only_a_navigation_this_browser_began_or_this_origin_sent_is_redirected() {
        let headers = |mode: &'static str, site: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(SEC_FETCH_MODE, HeaderValue::from_static(mode));
            headers.insert(SEC_FETCH_SITE, HeaderValue::from_static(site));
            headers
        };
        assert!(opened_by_this_browser(&headers("navigate", "none")));
        assert!(opened_by_this_browser(&headers("navigate", "same-origin")));
        assert!(!opened_by_this_browser(&headers("navigate", "cross-site")));
        assert!(!opened_by_this_browser(&headers("navigate", "same-site")));
        assert!(!opened_by_this_browser(&headers("cors", "same-origin")), "an EventSource, say");
        assert!(!opened_by_this_browser(&HeaderMap::new()), "curl");
    }
}
