//! The basic server: the Go original's wire format, plus ids, resume and 204.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod support;

use std::time::Duration;

use sse_apps::basic::BasicConfig;
use support::{Stream, spawn_app};

fn fast(count: u64) -> BasicConfig {
    BasicConfig { count, interval: Duration::from_millis(5) }
}

/// `Event <i> at HH:MM:SS`.
fn is_event_text(data: &str, i: u64) -> bool {
    let Some(time) = data.strip_prefix(&format!("Event {i} at ")) else {
        return false;
    };
    let parts: Vec<&str> = time.split(':').collect();
    parts.len() == 3 && parts.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[tokio::test]
async fn the_stream_is_the_go_originals_with_ids_and_then_ends() {
    let app = spawn_app(|core| sse_apps::basic_server(core, fast(3))).await;
    let response = reqwest::get(format!("{}/events", app.base)).await.unwrap();
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache, no-transform");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert!(headers.get("connection").is_none(), "a Connection header breaks HTTP/2");
    let body = response.text().await.unwrap(); // ends after the third event
    let frames: Vec<&str> = body.split("\n\n").filter(|f| !f.is_empty()).collect();
    assert_eq!(frames[0], "retry: 1000");
    assert_eq!(frames.len(), 4, "{body}");
    for (i, frame) in (1..=3).zip(&frames[1..]) {
        let (id, data) = frame.split_once('\n').unwrap();
        assert_eq!(id, format!("id: {i}"));
        let data = data.strip_prefix("data: ").unwrap();
        assert!(is_event_text(data, i), "{data:?}");
    }
}

#[tokio::test]
async fn a_reconnect_resumes_after_its_last_event_id_and_a_finished_stream_answers_204() {
    let app = spawn_app(|core| sse_apps::basic_server(core, fast(5))).await;
    let http = reqwest::Client::new();
    let url = format!("{}/events", app.base);
    let mut stream = Stream::open_with(http.get(&url).header("last-event-id", "2")).await;
    let resumed = stream.next().await.unwrap();
    assert_eq!(resumed.event, "resumed");
    assert_eq!(resumed.data, r#"{"last_event_id":"2"}"#);
    let mut ids = Vec::new();
    while let Some(event) = stream.next().await {
        assert!(is_event_text(&event.data, event.last_event_id.parse().unwrap()));
        ids.push(event.last_event_id);
    }
    assert_eq!(ids, ["3", "4", "5"]);
    let done = http.get(&url).header("last-event-id", "5").send().await.unwrap();
    assert_eq!(done.status(), 204);
    // The query parameter works the same for clients that cannot set headers.
    let done = http.get(format!("{url}?lastEventId=5")).send().await.unwrap();
    assert_eq!(done.status(), 204);
}

#[tokio::test]
async fn count_zero_streams_forever() {
    let app = spawn_app(|core| {
        sse_apps::basic_server(core, BasicConfig { count: 0, interval: Duration::from_millis(1) })
    })
    .await;
    let mut stream = Stream::open(&format!("{}/events", app.base)).await;
    for i in 1..=50u64 {
        let event = stream.next().await.unwrap();
        assert_eq!(event.last_event_id, i.to_string());
    }
}

#[tokio::test]
async fn shutdown_ends_open_streams_at_once() {
    let app = spawn_app(|core| {
        sse_apps::basic_server(core, BasicConfig { count: 0, interval: Duration::from_secs(3600) })
    })
    .await;
    let mut stream = Stream::open(&format!("{}/events", app.base)).await;
    assert_eq!(stream.next().await.unwrap().last_event_id, "1");
    app.stop().await; // returns only once the server has stopped, stream included
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn the_test_page_is_served_alone_and_under_basic() {
    let app = spawn_app(|core| sse_apps::basic_server(core, fast(1))).await;
    for path in ["/", "/basic", "/basic/"] {
        let page = reqwest::get(format!("{}{path}", app.base)).await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
        assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        for (name, value) in [
            ("x-frame-options", "DENY"),
            (
                "content-security-policy",
                "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
            ),
            ("referrer-policy", "no-referrer"),
            ("x-content-type-options", "nosniff"),
            ("cache-control", "no-store"),
        ] {
            assert_eq!(page.headers()[name], value, "{path}");
        }
        let html = page.text().await.unwrap();
        for control in
            ["id=\"connect\"", "id=\"disconnect\"", "id=\"clear\"", "id=\"events\"", "id=\"log\""]
        {
            assert!(html.contains(control), "{path} lacks {control}");
        }
    }
    let script = reqwest::get(format!("{}/static/sse-test.js", app.base)).await.unwrap();
    assert_eq!(script.status(), 200);
    assert!(script.text().await.unwrap().contains("new EventSource"));

    // A file that is not there, a way out of the folder, a method that writes: JSON errors, as
    // from every route (ServeDir's own are empty).
    let http = reqwest::Client::new();
    for (method, path, status, code) in [
        ("GET", "/static/nope.js", 404, "not_found"),
        ("GET", "/static/%2e%2e/Cargo.toml", 404, "not_found"),
        ("POST", "/static/sse-test.js", 405, "method_not_allowed"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = http.request(method, format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        if status == 405 {
            assert_eq!(response.headers()["allow"], "GET,HEAD");
        }
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{path}");
    }
}

#[tokio::test]
async fn all_apps_serve_the_index_and_each_app_under_its_prefix() {
    let data = tempfile::tempdir().unwrap();
    let app =
        spawn_app(|core| sse_apps::all_apps(core, sse_apps::AllApps::new(data.path())).unwrap())
            .await;
    let index = reqwest::get(format!("{}/", app.base)).await.unwrap().text().await.unwrap();
    for href in ["/chat", "/basic/", "/bidi/"] {
        assert!(index.contains(&format!("href=\"{href}\"")), "the index lacks {href}");
    }
    let mut stream = Stream::open(&format!("{}/basic/events", app.base)).await;
    assert_eq!(stream.next().await.unwrap().last_event_id, "1");
    assert_eq!(reqwest::get(format!("{}/healthz", app.base)).await.unwrap().status(), 200);
    let metrics =
        reqwest::get(format!("{}/metrics", app.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sse_streams_opened_total 1"), "{metrics}");
    assert_eq!(reqwest::get(format!("{}/bidi/", app.base)).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(format!("{}/chat", app.base)).await.unwrap().status(), 200);
}

#[tokio::test]
async fn an_id_that_is_not_ours_gets_resync_and_the_stream_starts_over() {
    let app = spawn_app(|core| sse_apps::basic_server(core, fast(2))).await;
    // Not digits (`+1` and `-1` are not ids this server sends, though Rust would parse `+1`).
    for id in ["abc", "+1", "-1", "1e3"] {
        let request =
            reqwest::Client::new().get(format!("{}/events", app.base)).header("last-event-id", id);
        let mut stream = Stream::open_with(request).await;
        let resync = stream.next().await.unwrap();
        assert_eq!(
            (resync.event.as_str(), resync.data.as_str()),
            ("resync", r#"{"reason":"unknown_id"}"#),
            "{id:?}"
        );
        assert_eq!(stream.next().await.unwrap().last_event_id, "1");
    }
    // A number past every count, even past what a u64 holds, is past the end: 204.
    for id in ["2", "18446744073709551615", "18446744073709551616", "99999999999999999999999"] {
        let request =
            reqwest::Client::new().get(format!("{}/events", app.base)).header("last-event-id", id);
        assert_eq!(request.send().await.unwrap().status(), 204, "{id}");
    }
}

#[tokio::test]
async fn metrics_are_served_as_openmetrics_text() {
    let app = spawn_app(|core| sse_apps::basic_server(core, fast(1))).await;
    let metrics = reqwest::get(format!("{}/metrics", app.base)).await.unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("sse_rpc_circuits_open 0") && text.trim_end().ends_with("# EOF"),
        "{text}"
    );
    // The server counts the connections it accepted: this scrape's is the first.
    assert!(text.contains("\nsse_connections_accepted_total 1\n"), "{text}");
    // Valid OpenMetrics to a parser we did not write, every family: the core's, the requests by
    // route and status (this scrape's own request counted by the next), the process, the build.
    let again = reqwest::get(format!("{}/metrics", app.base)).await.unwrap().text().await.unwrap();
    let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&again)
        .unwrap_or_else(|e| panic!("{e:?}\n{again}"));
    for family in [
        "sse_streams_open",
        "sse_http_requests",
        "sse_http_request_duration_seconds",
        "sse_build",
        "sse_process_cpu_seconds",
        "sse_process_resident_memory_bytes",
        "sse_process_open_fds",
    ] {
        assert!(
            parsed.families.contains_key(family),
            "no {family} in {:?}",
            parsed.families.keys()
        );
    }
    assert!(
        again.contains(r#"sse_http_requests_total{route="metrics",method="GET",status="200"} 1"#),
        "{again}"
    );
}

#[tokio::test]
async fn the_largest_ids_neither_panic_nor_wrap() {
    let app = spawn_app(|core| {
        sse_apps::basic_server(core, BasicConfig { count: 0, interval: Duration::from_millis(1) })
    })
    .await;
    for id in [u64::MAX, u64::MAX - 1] {
        let request = reqwest::Client::new()
            .get(format!("{}/events", app.base))
            .header("last-event-id", id.to_string());
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "Last-Event-ID {id}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("id: 0\n") && !body.contains("id: 1\n"), "ids wrapped: {body}");
    }
}
