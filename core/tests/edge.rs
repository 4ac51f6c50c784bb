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
use sse_core::testing::serve;

async fn echo(JsonBody(body): JsonBody<Value>) -> axum::Json<Value> {
    axum::Json(body)
}

/// A server as the apps build it: token on the app routes, Host/Origin checks on everything.
async fn guarded(token: Token, rate: Option<RateLimit>) -> String {
    let mut app = Router::new().route("/echo", post(echo)).route("/page", get(|| async { "page" }));
    if let Some(rate) = rate {
        app = app.layer(from_fn_with_state(rate, limit));
    }
    let policy =
        HostPolicy::for_bind("127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()), &[], &[]);
    let app = app
        .layer(from_fn_with_state(token, require_token))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(policy, check_host_and_origin));
    serve(app).await.0
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

#[tokio::test]
async fn a_token_link_sets_an_http_only_strict_cookie_that_works_afterwards() {
    let base = guarded(Token::required("s3cret"), None).await;
    let http = reqwest::Client::new();
    let link = http.get(format!("{base}/page?token=s3cret")).send().await.unwrap();
    assert_eq!(link.status(), 200);
    let cookie = link.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("sse_apps_token=s3cret;"));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(!cookie.contains("Secure"), "plain HTTP: the browser must send it back there");
    let with_cookie = http
        .get(format!("{base}/page"))
        .header("cookie", "other=1; sse_apps_token=s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(with_cookie.status(), 200);
    let bad_link = http.get(format!("{base}/page?token=nope")).send().await.unwrap();
    assert!(bad_link.headers().get("set-cookie").is_none());
    assert_eq!(error_code(bad_link, 401).await, "wrong_token");
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
