//! Every door checked: each state-changing endpoint of every app refuses a missing token, a
//! wrong token, a foreign Origin and a foreign Host, each with its own status and JSON error.
//!
//! The endpoints come from [`sse_apps::POST_ENDPOINTS`], which is held in both directions to the
//! router itself (its routes, and the methods each takes) and to the endpoint tables of
//! `use-cases/*.md`, so a POST endpoint added to an app cannot be missed here.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod support;

use serde_json::Value;
use sse_apps::{AllApps, POST_ENDPOINTS};
use sse_core::edge::auth::Token;

const TOKEN: &str = "door-token-7c1e";

/// `/a/{x}/b?q` → segments, `{x}` as a wildcard, the query dropped.
fn segments(path: &str) -> Vec<String> {
    let path = path.split('?').next().unwrap_or_default();
    path.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn matches(documented: &str, concrete: &str) -> bool {
    let (pattern, path) = (segments(documented), segments(concrete));
    pattern.len() == path.len()
        && pattern
            .iter()
            .zip(&path)
            .all(|(p, s)| (p.starts_with('{') && p.ends_with('}')) || p == s)
}

#[test]
fn the_list_holds_every_documented_post_endpoint() {
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../use-cases");
    let mut documented = Vec::new();
    for entry in std::fs::read_dir(docs).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("| POST | `") else { continue };
            let path = rest.split('`').next().unwrap();
            // The bidirectional server's paths are documented as it serves them alone.
            let app = ["/chat/", "/dashboard/", "/exec/", "/sampling/"];
            let path = if app.iter().any(|p| path.starts_with(p)) {
                path.to_owned()
            } else {
                format!("/bidi{path}")
            };
            documented.push(path);
        }
    }
    assert!(documented.len() >= 15, "found the tables: {documented:?}");
    for path in &documented {
        assert!(
            POST_ENDPOINTS.iter().any(|e| matches(path, e)),
            "{path} is documented but not in POST_ENDPOINTS"
        );
    }
    for endpoint in POST_ENDPOINTS {
        assert!(documented.iter().any(|d| matches(d, endpoint)), "{endpoint} is not documented");
    }
}

/// Every path the router holds, read from the router itself: axum has no API that lists routes,
/// but its `Debug` output names each one, quoted. Reading it is tied to axum's formatting, so the
/// test that uses it also checks it found the routes it knows must be there.
fn routed_paths(router: &axum::Router) -> Vec<String> {
    let printed = format!("{router:?}");
    let mut paths: Vec<String> = printed
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|quoted| quoted.starts_with('/'))
        .map(str::to_owned)
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// A concrete path for a route pattern: every `{param}` filled in.
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| match segment {
            "{room}" => "lobby",
            s if s.starts_with('{') => "x1",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_list_is_every_route_of_the_router_that_takes_a_post() {
    let data = tempfile::tempdir().unwrap();
    let config = AllApps::new(data.path());
    let mut routes = Vec::new();
    let app = support::spawn_app_on(
        "127.0.0.1:0".parse().unwrap(),
        Token::required(TOKEN.to_owned()),
        |core| {
            let router = sse_apps::all_apps(core, config).unwrap();
            routes = routed_paths(&router);
            router
        },
    )
    .await;
    for known in ["/chat/rooms/{room}/messages", "/exec/runs", "/bidi/response", "/sampling/mcp"] {
        assert!(routes.iter().any(|r| r == known), "{known} not read from the router: {routes:?}");
    }
    // Which methods each route takes, as the router itself says: a method no route has gets
    // `405 Method Not Allowed` with the route's methods in `Allow`.
    let http = reqwest::Client::new();
    let mut takes_post = Vec::new();
    for route in &routes {
        let url = format!("{}{}", app.base, concrete(route));
        let response = http.patch(&url).bearer_auth(TOKEN).send().await.unwrap();
        let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
        if allow.is_some_and(|methods| methods.split(',').any(|m| m.trim() == "POST")) {
            takes_post.push(route.clone());
        }
    }
    for route in &takes_post {
        assert!(
            POST_ENDPOINTS.iter().any(|e| matches(route, e)),
            "the router takes POST at {route}, which POST_ENDPOINTS (and so the door checks) miss"
        );
    }
    for endpoint in POST_ENDPOINTS {
        assert!(
            takes_post.iter().any(|r| matches(r, endpoint)),
            "{endpoint} is listed but the router takes no POST there ({takes_post:?})"
        );
    }
}

#[tokio::test]
async fn every_state_changing_endpoint_refuses_each_bad_caller_with_its_status() {
    let data = tempfile::tempdir().unwrap();
    let config = AllApps::new(data.path());
    let app = support::spawn_app_on(
        "127.0.0.1:0".parse().unwrap(),
        Token::required(TOKEN.to_owned()),
        move |core| sse_apps::all_apps(core, config).unwrap(),
    )
    .await;
    let http = reqwest::Client::new();
    for endpoint in POST_ENDPOINTS {
        let url = format!("{}{endpoint}", app.base);
        let cases: [(&str, reqwest::RequestBuilder, u16, &str); 4] = [
            ("no token", http.post(&url), 401, "missing_token"),
            ("a wrong token", http.post(&url).bearer_auth("not-the-token"), 401, "wrong_token"),
            (
                "a foreign Origin",
                http.post(&url).bearer_auth(TOKEN).header("origin", "http://evil.example"),
                403,
                "origin_not_allowed",
            ),
            (
                "a foreign Host",
                http.post(&url).bearer_auth(TOKEN).header("host", "evil.example"),
                403,
                "host_not_allowed",
            ),
        ];
        for (who, request, status, code) in cases {
            let response =
                request.header("content-type", "application/json").body("{}").send().await.unwrap();
            assert_eq!(response.status(), status, "{endpoint} from {who}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], code, "{endpoint} from {who}: {body}");
        }
    }
}
