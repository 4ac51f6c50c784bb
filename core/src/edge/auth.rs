//! The shared access token, as Jupyter does it.
//!
//! A server given a token (`--token`, or one it generated with [`Token::generate`] because its
//! apps can change the machine) prints a ready link with it. Clients present it as
//! `Authorization: Bearer <token>`, as this server's cookie, or once as `?token=` in a link:
//! browsers' `EventSource` cannot send headers, so a request carrying the right `?token=` also
//! gets an `HttpOnly; SameSite=Strict` cookie and later requests need nothing in the URL.
//! A browser that opened such a link itself (the printed one, or one on this server's own pages)
//! is sent on at once to the same address without the token, the cookie set on the way, so the
//! secret does not stay in its address bar and history. A link followed from another site is
//! served as it is: the browser would not send a `SameSite=Strict` cookie along a redirect that
//! began elsewhere.
//!
//! **A cookie per server.** Browsers do not scope cookies by port (RFC 6265, 8.5): a cookie set
//! by `127.0.0.1:8080` is sent to every server on `127.0.0.1`, whatever its port. So the cookie
//! is named for the server's port ([`Token::on_port`]: the one it is bound to, or the one
//! browsers reach it at behind a proxy, which instances behind one address share), as in
//! `sse_apps_token_8080`, or over HTTPS `__Host-sse_apps_token_8443` (which a browser accepts
//! only `Secure`, for `Path=/` and with no `Domain`), and two servers on one host each keep their
//! own login. Its value is not the token but HMAC-SHA256(token, "sse-apps cookie " + port): a
//! local server on another port still receives it (nothing stops the browser sending it) but
//! learns nothing about the token, and what it learns opens no other server, even one with the
//! same token. It does open this one: a local listener on another port that the browser visits
//! gets a key to this server. Not even HTTPS helps on loopback, where browsers treat plain HTTP as
//! secure and send `Secure` cookies to it; only a host name of its own keeps the cookie from
//! other local listeners. On a machine shared with people you do not trust, use the bearer
//! header rather than the browser.
//!
//! Tokens and cookies are compared in constant time and never logged (request spans omit the
//! query string).

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use http::StatusCode;
use http::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::ApiError;

/// The start of every server's cookie name; the port it serves on follows (`sse_apps_token_8080`).
pub const COOKIE_PREFIX: &str = "sse_apps_token_";

/// The one cookie name every server used before cookies were per server. It carried the token
/// itself to every port of the host, so a link removes it from the browser.
const LEGACY_COOKIE: &str = "sse_apps_token";

/// The token a server requires, or none (open access), and the cookie that stands for it in a
/// browser. Cheap to clone.
#[derive(Clone, Default)]
pub struct Token {
    secret: Option<Arc<str>>,
    port: u16,
    security: CookieSecurity,
    /// This server's cookie, derived from the three fields above (none for an open server).
    cookie: Option<Arc<ServerCookie>>,
}

/// Whether the cookie a `?token=` link sets may travel over plain HTTP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum CookieSecurity {
    /// Plain HTTP: the browser must send it there.
    #[default]
    AnyScheme,
    /// Served over HTTPS: `Secure` and `__Host-`, so a browser never sends it to a plain-HTTP page.
    HttpsOnly,
}

/// The cookie a browser holds for one server, made once rather than on every request.
struct ServerCookie {
    name: String,
    value: String,
}

impl ServerCookie {
    fn new(secret: &str, port: u16, security: CookieSecurity) -> ServerCookie {
        let name = match security {
            CookieSecurity::AnyScheme => format!("{COOKIE_PREFIX}{port}"),
            CookieSecurity::HttpsOnly => format!("__Host-{COOKIE_PREFIX}{port}"),
        };
        ServerCookie { name, value: cookie_value(secret, port) }
    }
}

/// HMAC-SHA256 keyed with the token over the port, as hex: what only a holder of the token can
/// make, different for every port, and from which the token cannot be recovered.
fn cookie_value(secret: &str, port: u16) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(format!("sse-apps cookie {port}").as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secret.is_some() { "Token(<redacted>)" } else { "Token(none)" })
    }
}

impl Token {
    /// Requires `secret`. Its cookie is named for port 0 until [`Token::on_port`] says which
    /// port the server is bound to, which every server must (it may have asked for port 0).
    pub fn required(secret: impl Into<Arc<str>>) -> Token {
        Token { secret: Some(secret.into()), ..Token::default() }.with_cookie()
    }

    /// The same token, for a server at `port` (the port it is bound to, or the one browsers
    /// reach it at): its cookie is named for that port and means nothing to a server on another.
    pub fn on_port(self, port: u16) -> Token {
        Token { port, ..self }.with_cookie()
    }

    /// The same token, for a server that answers over HTTPS: its cookie is `Secure` and
    /// `__Host-` prefixed.
    pub fn over_https(self) -> Token {
        Token { security: CookieSecurity::HttpsOnly, ..self }.with_cookie()
    }

    /// Requires nothing.
    pub fn open() -> Token {
        Token::default()
    }

    fn with_cookie(self) -> Token {
        let cookie = self
            .secret
            .as_deref()
            .map(|s| Arc::new(ServerCookie::new(s, self.port, self.security)));
        Token { cookie, ..self }
    }

    /// A fresh random token: 32 bytes from the OS generator, as 64 hex digits.
    pub fn generate() -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The secret, for printing the start-up link (and nothing else).
    pub fn secret(&self) -> Option<&str> {
        self.secret.as_deref()
    }

    /// The cookie a browser holds once it opened this server's link, as `name=value` for a
    /// `Cookie` header: for clients that present it as a browser would (a load generator, a
    /// test). None for an open server.
    pub fn cookie(&self) -> Option<String> {
        self.cookie.as_ref().map(|c| format!("{}={}", c.name, c.value))
    }

    /// Whether a token is required at all.
    pub fn is_required(&self) -> bool {
        self.secret.is_some()
    }

    /// Constant-time comparison with what a client presented.
    pub fn matches(&self, candidate: &str) -> bool {
        match &self.secret {
            None => true,
            Some(secret) => bool::from(secret.as_bytes().ct_eq(candidate.as_bytes())),
        }
    }

    /// The `Set-Cookie` header a correct `?token=` link is answered with.
    fn set_cookie(&self) -> Option<HeaderValue> {
        let cookie = self.cookie.as_ref()?;
        let secure = if self.security == CookieSecurity::HttpsOnly { "; Secure" } else { "" };
        let ServerCookie { name, value } = cookie.as_ref();
        format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/{secure}").parse().ok()
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
/// cookie, so each one is tried. Only a cookie of this server's own name counts.
fn presented(req: &Request, cookie_name: &str) -> Vec<(Place, String)> {
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
        cookies.filter_map(|pair| pair.trim().split_once('=')).filter(|(k, _)| *k == cookie_name);
    found.extend(ours.map(|(_, v)| (Place::Cookie, v.to_owned())));
    found
}

/// Middleware: refuses requests without the right token with 401, and turns a correct `?token=`
/// into this server's cookie. Use with `axum::middleware::from_fn_with_state(token,
/// require_token)`, the token given the server's port with [`Token::on_port`].
pub async fn require_token(State(token): State<Token>, req: Request, next: Next) -> Response {
    let Some(cookie) = &token.cookie else {
        return next.run(req).await;
    };
    let candidates = presented(&req, &cookie.name);
    if candidates.is_empty() {
        if navigates(req.headers()) {
            return sign_in_page();
        }
        return unauthorized("missing_token", "this endpoint needs the server's token");
    }
    let valid = |(place, value): &(Place, String)| match place {
        Place::Cookie => bool::from(cookie.value.as_bytes().ct_eq(value.as_bytes())),
        Place::Header | Place::Query => token.matches(value),
    };
    let Some((place, _)) = candidates.iter().find(|c| valid(c)) else {
        // A person whose cookie went stale (a new token, or one overwritten from another port)
        // reads how to get in, as one without any.
        if navigates(req.headers()) {
            return sign_in_page();
        }
        return unauthorized("wrong_token", "the token is not valid for this server");
    };
    if *place != Place::Query {
        return next.run(req).await;
    }
    let clean = (req.method() == Method::GET && opened_by_this_browser(req.headers()))
        .then(|| address_without_token(req.uri()))
        .and_then(|address| HeaderValue::from_str(&address).ok());
    let mut response = match clean {
        Some(location) => (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response(),
        None => next.run(req).await,
    };
    if let Some(value) = token.set_cookie() {
        response.headers_mut().append(SET_COOKIE, value);
    }
    // The old shared cookie held the token itself and went to every port: a browser that still
    // has it drops it here (a `Secure` one can only be replaced by a `Secure` one).
    let secure = if token.security == CookieSecurity::HttpsOnly { "; Secure" } else { "" };
    let forget = format!("{LEGACY_COOKIE}=; Max-Age=0; Path=/{secure}");
    if let Ok(value) = forget.parse() {
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

/// A browser opening a page (not a script fetching an API): it gets a page to read, not JSON.
fn navigates(headers: &HeaderMap) -> bool {
    headers.get(SEC_FETCH_MODE).is_some_and(|mode| mode == "navigate")
        || headers.get(http::header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|accept| {
            accept.split(',').any(|kind| kind.trim().starts_with("text/html"))
        })
}

/// What a person who opened a page without the token reads: how to get in. Still 401, so
/// scripts and monitors see the refusal.
fn sign_in_page() -> Response {
    const PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
        <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
        <title>Token needed</title></head><body style=\"font-family:system-ui,sans-serif;\
        max-width:40em;margin:3em auto;padding:0 1em;line-height:1.5\">\
        <h1>This server needs its token</h1>\
        <p>Open the link the server printed when it started: it ends in <code>?token=…</code> \
        and signs this browser in (the token then stays in a cookie for this server only).</p>\
        <p>Lost it? The token is the one given with <code>--token-file</code>, \
        <code>SSE_APPS_TOKEN</code> or <code>--token</code>; when none was given, the server \
        made one up and printed it at start: restart it to see a new one.</p>\
        </body></html>\n";
    let mut response = (
        StatusCode::UNAUTHORIZED,
        [(http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        PAGE,
    )
        .into_response();
    response.headers_mut().insert(WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
    response
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
    fn each_port_has_its_own_cookie_whose_value_is_not_the_token() {
        let token = Token::required("t0k");
        let (a, b) = (token.clone().on_port(8080), token.clone().on_port(8081));
        let [a, b] = [a, b].map(|t| t.cookie().unwrap_or_default());
        let (a_name, a_value) = a.split_once('=').unwrap_or_default();
        let (b_name, b_value) = b.split_once('=').unwrap_or_default();
        assert_eq!((a_name, b_name), ("sse_apps_token_8080", "sse_apps_token_8081"));
        assert_ne!(a_value, b_value);
        assert!(!a_value.contains("t0k"));
        // Standard HMAC-SHA256, as another tool makes it (so a client can too):
        // `printf 'sse-apps cookie 8080' | openssl dgst -sha256 -hmac Jefe`.
        assert_eq!(
            cookie_value("Jefe", 8080),
            "c742d5cd654daa749577ec48db58fe9ebb169d02de247267c8c2e3a1cdc576b3",
        );
        let https = token.on_port(8443).over_https().cookie().unwrap_or_default();
        assert!(https.starts_with("__Host-sse_apps_token_8443="), "{https}");
        assert_eq!(Token::open().on_port(8080).cookie(), None);
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
