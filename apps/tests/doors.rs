//! Every door checked: each state-changing endpoint of every app refuses a missing token, a
//! wrong token, a foreign Origin and a foreign Host, each with its own status and JSON error.
//!
//! The endpoints come from [`sse_apps::POST_ENDPOINTS`], and the first test holds that list to
//! the endpoint tables of `use-cases/*.md` (which `apps/tests/docs.rs` holds to the running
//! app), so a POST endpoint added to an app and its document cannot be missed here.
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
