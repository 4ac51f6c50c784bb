//! The HTTP edge: tokens, Host and Origin checks, body limits, rate limits, JSON errors.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use serde_json::Value;
use sse_core::edge::auth::{Token, require_token};
use sse_core::edge::origin::{HostPolicy, check_host_and_origin};
use sse_core::edge::rate::{RateLimit, limit};
use sse_core::edge::{JsonBody, method_not_allowed, not_found};
use sse_core::testing::{port_of, serve_with_port};

async fn echo(JsonBody(body): JsonBody<Value>) -> axum::Json<Value> {
    axum::Json(body)
}

/// A server as the apps build it: token on the app routes (its cookie named for the port the
/// server got), Host/Origin checks on everything.
async fn guarded(token: Token, rate: Option<RateLimit>) -> String {
    let build = move |port| {
        let mut app =
            Router::new().route("/echo", post(echo)).route("/page", get(|| async { "page" }));
        if let Some(rate) = rate {
            app = app.layer(from_fn_with_state(rate, limit));
        }
        let policy = HostPolicy::for_bind(
            "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            &[],
            &[],
        );
        app.layer(from_fn_with_state(token.on_port(port), require_token))
            .route("/healthz", get(|| async { "ok" }))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(from_fn_with_state(policy, check_host_and_origin))
    };
    serve_with_port(build).await.0
}

/// Asserts the status and that the body is the house error shape; returns the error code.
async fn error_code(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status);
    let body: Value = response.json().await.expect("a JSON body");
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"]["code"].as_str().expect("a code").to_owned()
}

#[tokio::test]
async fn a_token_is_required_and_compared_exactly() {
    let base = guarded(Token::required("s3cret"), None).await;
    let http = reqwest::Client::new();
    let missing = http.get(format!("{base}/page")).send().await.unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert_eq!(error_code(missing, 401).await, "missing_token");
    // A browser opening the page without the token gets a page saying how to get in, still 401.
    let browsing = http
        .get(format!("{base}/page"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(browsing.status(), 401);
    assert_eq!(browsing.headers()["content-type"], "text/html; charset=utf-8");
    assert!(browsing.text().await.unwrap().contains("needs its token"));
    let wrong = http.get(format!("{base}/page")).bearer_auth("s3cre").send().await.unwrap();
    assert_eq!(error_code(wrong, 401).await, "wrong_token");
    let longer = http.get(format!("{base}/page")).bearer_auth("s3cret!").send().await.unwrap();
    assert_eq!(error_code(longer, 401).await, "wrong_token");
    let right = http.get(format!("{base}/page")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(right.status(), 200);
    // The scheme's name is case-insensitive; another scheme is no bearer token.
    for (authorization, status) in
        [("bearer s3cret", 200), ("BEARER s3cret", 200), ("Basic s3cret", 401), ("Bearer", 401)]
    {
        let page = format!("{base}/page");
        let response = http.get(page).header("authorization", authorization).send().await.unwrap();
        assert_eq!(response.status(), status, "{authorization}");
    }
    // Health checks never need the token.
    assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
}

/// The `Set-Cookie` headers of a response.
fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    let values = response.headers().get_all("set-cookie").iter();
    values.map(|v| v.to_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_token_link_sets_an_http_only_strict_cookie_of_this_port_that_works_afterwards() {
    let base = guarded(Token::required("s3cret"), None).await;
    let port = port_of(&base);
    let http = reqwest::Client::new();
    let link = http.get(format!("{base}/page?token=s3cret")).send().await.unwrap();
    assert_eq!(link.status(), 200);
    let cookies = set_cookies(&link);
    let ours = format!("sse_apps_token_{port}=");
    let cookie = cookies.iter().find(|c| c.starts_with(&ours)).expect("this port's cookie");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let value = pair.split_once('=').unwrap().1;
    assert!(!value.contains("s3cret"), "the value is not the token: {cookie}");
    assert_eq!(value.len(), 64, "HMAC-SHA256 as hex: {cookie}");
    assert_eq!(Some(pair.clone()), Token::required("s3cret").on_port(port).cookie());
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(cookie.contains("Path=/") && !cookie.contains("Domain"));
    assert!(!cookie.contains("Secure"), "plain HTTP: the browser must send it back there");
    // The old cookie, which carried the token to every port, is dropped.
    assert!(cookies.iter().any(|c| c.starts_with("sse_apps_token=;") && c.contains("Max-Age=0")));

    let with_cookie = |cookie: String| http.get(format!("{base}/page")).header("cookie", cookie);
    let ok = with_cookie(format!("other=1; {pair}")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    // The token itself is no cookie value, under this name or the old one.
    let token_as_value = with_cookie(format!("{ours}s3cret")).send().await.unwrap();
    assert_eq!(error_code(token_as_value, 401).await, "wrong_token");
    let legacy = with_cookie("sse_apps_token=s3cret".to_owned()).send().await.unwrap();
    assert_eq!(error_code(legacy, 401).await, "missing_token");
    let bad_link = http.get(format!("{base}/page?token=nope")).send().await.unwrap();
    assert!(bad_link.headers().get("set-cookie").is_none());
    assert_eq!(error_code(bad_link, 401).await, "wrong_token");
}

#[tokio::test]
async fn the_cookie_of_one_server_opens_no_other_even_with_the_same_token() {
    let (a, b) = (
        guarded(Token::required("s4me"), None).await,
        guarded(Token::required("s4me"), None).await,
    );
    let http = reqwest::Client::new();
    let link = http.get(format!("{a}/page?token=s4me")).send().await.unwrap();
    let cookies = set_cookies(&link);
    let a_cookie = cookies.iter().find(|c| !c.starts_with("sse_apps_token=;")).unwrap();
    let a_pair = a_cookie.split(';').next().unwrap().to_owned();
    let a_value = a_pair.split_once('=').unwrap().1;
    let page = |base: &str, cookie: String| {
        http.get(format!("{base}/page")).header("cookie", cookie).send()
    };
    assert_eq!(page(&a, a_pair.clone()).await.unwrap().status(), 200);
    // B does not read A's cookie, and A's value under B's name is wrong.
    assert_eq!(error_code(page(&b, a_pair.clone()).await.unwrap(), 401).await, "missing_token");
    let b_name = format!("sse_apps_token_{}", port_of(&b));
    let replayed = page(&b, format!("{b_name}={a_value}")).await.unwrap();
    assert_eq!(error_code(replayed, 401).await, "wrong_token");
    // B's own cookie works on B only.
    let b_pair = Token::required("s4me").on_port(port_of(&b)).cookie().unwrap();
    assert_eq!(page(&b, b_pair.clone()).await.unwrap().status(), 200);
    assert_eq!(error_code(page(&a, b_pair).await.unwrap(), 401).await, "missing_token");
}

#[tokio::test]
async fn foreign_hosts_are_refused_everywhere() {
    let base = guarded(Token::open(), None).await;
    let http = reqwest::Client::new();
    for path in ["/page", "/healthz", "/echo"] {
        let response = http
            .get(format!("{base}{path}"))
            .header("host", "rebind.example:80")
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(response, 403).await, "host_not_allowed", "{path}");
    }
    let localhost =
        http.get(format!("{base}/page")).header("host", "localhost:1234").send().await.unwrap();
    assert_eq!(localhost.status(), 200);
}

#[tokio::test]
async fn cross_origin_writes_are_refused_and_same_origin_ones_pass() {
    let base = guarded(Token::open(), None).await;
    let http = reqwest::Client::new();
    let host = base.trim_start_matches("http://").to_owned();
    let post = |origin: Option<String>| {
        let mut request = http.post(format!("{base}/echo")).json(&serde_json::json!({"a": 1}));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let foreign = post(Some("http://evil.example".into())).await.unwrap();
    assert_eq!(error_code(foreign, 403).await, "origin_not_allowed");
    let null = post(Some("null".into())).await.unwrap();
    assert_eq!(error_code(null, 403).await, "origin_not_allowed");
    assert_eq!(post(Some(format!("http://{host}"))).await.unwrap().status(), 200);
    assert_eq!(post(None).await.unwrap().status(), 200, "non-browser clients send no Origin");
    // Reads are not state-changing: a cross-origin GET is left to the browser's CORS rules.
    let read = http
        .get(format!("{base}/page"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
}

#[tokio::test]
async fn bad_bodies_get_their_own_statuses() {
    let base = guarded(Token::open(), None).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/echo");
    let plain =
        http.post(&url).header("content-type", "text/plain").body("{}").send().await.unwrap();
    assert_eq!(error_code(plain, 415).await, "unsupported_media_type");
    let broken = http
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"a\":")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(broken, 400).await, "malformed_json");
    let huge = "[".to_owned() + &"1,".repeat(1_500_000) + "1]";
    let large =
        http.post(&url).header("content-type", "application/json").body(huge).send().await.unwrap();
    assert_eq!(error_code(large, 413).await, "body_too_large");
    let nowhere = http.get(format!("{base}/nowhere")).send().await.unwrap();
    assert_eq!(error_code(nowhere, 404).await, "not_found");
    let wrong_method = http.delete(&url).send().await.unwrap();
    assert_eq!(error_code(wrong_method, 405).await, "method_not_allowed");
}

#[tokio::test]
async fn a_flood_gets_429_with_retry_after() {
    let base = guarded(Token::open(), RateLimit::new(1, 3)).await;
    let http = reqwest::Client::new();
    // Sent at once, so a slow machine cannot let a token refill between them.
    let requests = (0..5).map(|_| http.get(format!("{base}/page")).send());
    let mut statuses = Vec::new();
    for response in futures_util::future::join_all(requests).await {
        let response = response.unwrap();
        if response.status() == 429 {
            let retry_after: u64 =
                response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
            assert_eq!(error_code(response, 429).await, "rate_limited");
            statuses.push(429);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 200, 429, 429], "a burst of 3, then refused");
}
