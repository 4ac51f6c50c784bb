//! Every body a POST endpoint of the apps accepts, and the Go-compatible `/trigger` and
//! `/response`, fed arbitrary bytes and arbitrary JSON: never a 500, never a panic, and every
//! refusal is a JSON error. The same endpoints are the fuzz targets' (`fuzz/`), which run for
//! minutes; this runs a few hundred cases of each in every test run.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod support;

use proptest::prelude::*;
use serde_json::Value;
use sse_apps::AllApps;
use sse_apps::POST_ENDPOINTS as POSTS;

/// Arbitrary JSON, a few levels deep, with keys the endpoints might look for.
fn json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("id".to_owned()),
        Just("text".to_owned()),
        Just("nick".to_owned()),
        Just("method".to_owned()),
        Just("jsonrpc".to_owned()),
        Just("result".to_owned()),
        Just("language".to_owned()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A body: raw bytes (any, not even UTF-8) or a JSON document.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json().prop_map(|value| value.to_string().into_bytes()),
    ]
}

#[test]
fn arbitrary_bodies_never_get_a_500_and_every_refusal_is_json() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = AllApps::new(data.path());
    let app =
        runtime.block_on(support::spawn_app(move |core| sse_apps::all_apps(core, config).unwrap()));
    let http = reqwest::Client::new();

    let cases =
        ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(cases, |(route in 0..POSTS.len(), body in body(), as_json in any::<bool>())| {
        let url = format!("{}{}", app.base, POSTS[route]);
        let (status, content_type, text) = runtime.block_on(async {
            let mut request = http
                .post(&url)
                .header("client-id", "nobody")
                .header("session-id", "nobody")
                .header("accept", "application/json, text/event-stream")
                .body(body.clone());
            if as_json {
                request = request.header("content-type", "application/json");
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (status, content_type, response.text().await.unwrap_or_default())
        });
        prop_assert_ne!(status.as_u16(), 500, "{} with {:?}: {}", POSTS[route], String::from_utf8_lossy(&body), text);
        if status.is_client_error() || status.is_server_error() {
            prop_assert!(content_type.starts_with("application/json"), "{} answered {} as {}: {}", POSTS[route], status, content_type, text);
            let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let shaped = error["error"]["code"].is_string() || error["error"]["message"].is_string();
            prop_assert!(shaped, "{} answered {} without a JSON error: {}", POSTS[route], status, text);
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_segment_that_is_not_utf_8_is_refused_as_json() {
    let data = tempfile::tempdir().unwrap();
    let config = AllApps::new(data.path());
    let app = support::spawn_app(move |core| sse_apps::all_apps(core, config).unwrap()).await;
    let http = reqwest::Client::new();
    // Every path with a segment of its own (a room, a run, an alert…), that segment made bytes
    // that decode to no text; the GETs of the same resources too.
    let named = ["lobby", "cpu", "r1", "w1", "s1"];
    let gets = ["/chat/rooms/lobby/messages", "/exec/runs/r1/events", "/sampling/requests/r1"];
    let posts = POSTS.iter().filter(|p| named.iter().any(|n| p.contains(&format!("/{n}"))));
    for (method, path) in posts.map(|p| ("POST", *p)).chain(gets.map(|p| ("GET", p))) {
        let mut garbled = path.to_owned();
        for name in named {
            garbled = garbled.replace(&format!("/{name}"), "/%ff%fe");
        }
        let request = match method {
            "POST" => http.post(format!("{}{garbled}", app.base)).json(&serde_json::json!({})),
            _ => http.get(format!("{}{garbled}", app.base)),
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(status, 400, "{method} {garbled}: {text}");
        assert_eq!(error["error"]["code"], "invalid_path", "{method} {garbled}: {text}");
    }
}
