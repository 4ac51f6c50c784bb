//! MCP sampling over real HTTP: a client speaking Streamable HTTP (and one speaking the 2024-11-05
//! HTTP+SSE transport) initializes, lists the tools, calls one, and answers the server's
//! `sampling/createMessage` by POST; the session rules; rejection as -1; cancellation when the
//! caller goes away; requests sent by hand and their states.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use sse_apps::sampling::{SamplingConfig, router};
use sse_core::testing::next_message;
use support::{Stream, TestApp, spawn_app};

const WATCHDOG: Duration = Duration::from_secs(60);

async fn start(deadline: Duration) -> TestApp {
    spawn_app(move |core| router(core, SamplingConfig { deadline, ..SamplingConfig::default() }))
        .await
}

/// A Streamable HTTP client.
struct Client {
    base: String,
    http: reqwest::Client,
    session: String,
}

impl Client {
    async fn initialize(base: &str, name: &str, capabilities: Value) -> (Client, Value) {
        let http = reqwest::Client::new();
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": capabilities,
            "clientInfo": {"name": name, "version": "1.0"}}});
        let response = http
            .post(format!("{base}/sampling/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let session = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let result: Value = response.json().await.unwrap();
        let client = Client { base: base.to_owned(), http, session };
        let (status, _) =
            client.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        assert_eq!(status, 202);
        (client, result)
    }

    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/sampling/mcp", self.base))
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", "2025-11-25")
            .header("accept", "application/json, text/event-stream")
    }

    async fn post(&self, body: Value) -> (u16, Value) {
        let response = self.request(reqwest::Method::POST).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn stream(&self) -> Stream {
        Stream::open_with(self.request(reqwest::Method::GET)).await
    }
}

/// The next request on a stream, past any notifications.
async fn next_request(stream: &mut Stream) -> Value {
    loop {
        let message = next_message(stream).await;
        if message.get("id").is_some() && message.get("method").is_some() {
            return message;
        }
    }
}

fn sampling() -> Value {
    json!({"sampling": {}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_is_answered_by_the_clients_model_with_progress_on_the_way() {
    let app = start(Duration::from_secs(300)).await;
    let (client, init) = Client::initialize(&app.base, "tester", sampling()).await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert!(init["result"]["capabilities"]["tools"].is_object());
    let (_, tools) = client.post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["summarize", "classify_sentiment", "explain_code"]);

    let _stream = client.stream().await;
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "summarize", "arguments": {"text": "A long story about SSE."},
        "_meta": {"progressToken": "p1"}}});
    let response = client.request(reqwest::Method::POST).json(&call).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut tool = Stream::from_response(response);

    // The sampling request travels on the call's own stream, with the progress notes.
    let (a, b) = (next_message(&mut tool).await, next_message(&mut tool).await);
    let (asked, progress) = if a.get("id").is_some() { (a, b) } else { (b, a) };
    assert_eq!(asked["method"], "sampling/createMessage");
    assert_eq!(
        (progress["method"].as_str(), &progress["params"]["progressToken"]),
        (Some("notifications/progress"), &json!("p1"))
    );
    let params = &asked["params"];
    assert!(
        params["messages"][0]["content"]["text"]
            .as_str()
            .unwrap()
            .contains("A long story about SSE.")
    );
    assert!(params["maxTokens"].as_u64().unwrap() > 0);
    assert!(params["modelPreferences"]["hints"].is_array());

    let answer = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "role": "assistant", "content": {"type": "text", "text": "A story."},
        "model": "test-model", "stopReason": "endTurn"}});
    let (status, _) = client.post(answer.clone()).await;
    assert_eq!(status, 202);
    let result = loop {
        let message = next_message(&mut tool).await;
        if message.get("id").is_some() {
            break message;
        }
    };
    assert_eq!(result["id"], 3);
    assert_eq!(result["result"]["content"][0]["text"], "A story.");
    assert_eq!(result["result"]["structuredContent"]["model"], "test-model");
    assert_eq!(result["result"]["isError"], false);
    let after = sse_core::testing::within("the call's stream ending", tool.next()).await;
    assert!(after.is_none(), "the response is the call's stream's last message: {after:?}");
    let (status, error) = client.post(answer).await;
    assert_eq!(
        (status, error["error"]["data"]["reason"].as_str()),
        (409, Some("already_answered"))
    );
    assert_eq!(error["error"]["code"], -32600, "a JSON-RPC error body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_cancellation_and_clients_without_sampling() {
    let app = start(Duration::from_secs(300)).await;
    let (client, _) = Client::initialize(&app.base, "tester", sampling()).await;
    let mut requests = client.stream().await;
    let call = |id: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "classify_sentiment", "arguments": {"text": "great"}}})
    };

    // The user says no: JSON-RPC error -1 becomes a tool error.
    let response = client.request(reqwest::Method::POST).json(&call(4)).send().await.unwrap();
    let mut tool = Stream::from_response(response);
    let asked = next_request(&mut tool).await;
    client.post(json!({"jsonrpc": "2.0", "id": asked["id"], "error": {"code": -1, "message": "User rejected sampling request"}})).await;
    let result = next_message(&mut tool).await;
    assert_eq!(result["result"]["isError"], true);
    assert!(result["result"]["content"][0]["text"].as_str().unwrap().contains("rejected"));

    // The caller goes away: the client is told the request is cancelled.
    let response = client.request(reqwest::Method::POST).json(&call(5)).send().await.unwrap();
    let asked = next_request(&mut Stream::from_response(response)).await;
    let cancelled = next_message(&mut requests).await;
    assert_eq!(cancelled["method"], "notifications/cancelled");
    assert_eq!(cancelled["params"]["requestId"], asked["id"]);

    // A client that did not declare sampling is never asked.
    let (plain, _) = Client::initialize(&app.base, "plain", json!({})).await;
    let response = plain.request(reqwest::Method::POST).json(&call(6)).send().await.unwrap();
    let result = next_message(&mut Stream::from_response(response)).await;
    assert_eq!(result["result"]["isError"], true);
    assert!(
        result["result"]["content"][0]["text"].as_str().unwrap().contains("sampling capability")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_rules_are_enforced() {
    let app = start(Duration::from_secs(300)).await;
    let http = reqwest::Client::new();
    let url = format!("{}/sampling/mcp", app.base);
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let missing = http.post(&url).json(&ping).send().await.unwrap();
    assert_eq!(missing.status(), 400);
    let unknown =
        http.post(&url).header("mcp-session-id", "nope").json(&ping).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    let (client, init) = Client::initialize(&app.base, "tester", sampling()).await;
    let bad_version = http
        .post(&url)
        .header("mcp-session-id", &client.session)
        .header("mcp-protocol-version", "1999-01-01")
        .json(&ping)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_version.status(), 400);
    let (status, pong) = client.post(ping.clone()).await;
    assert_eq!((status, &pong["result"]), (200, &json!({})));
    let foreign = http
        .post(&url)
        .header("mcp-session-id", &client.session)
        .header("origin", "https://evil.example")
        .json(&ping)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    // Bodies that are not a message, each refused with a JSON-RPC error body: not JSON (-32700,
    // as a batch too), not sent as JSON (415), too large (413).
    let refusals = [
        ("{".to_owned(), "application/json", 400, -32700),
        ("[1,".to_owned(), "application/json", 400, -32700),
        ("[]".to_owned(), "application/json", 400, -32600),
        (ping.to_string(), "text/plain", 415, -32600),
        (format!("[{}]", "1,".repeat(1_500_000)), "application/json", 413, -32600),
    ];
    for (body, content_type, status, code) in refusals {
        let refused = http
            .post(&url)
            .header("mcp-session-id", &client.session)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), status, "{content_type}");
        let error: Value = refused.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{error}");
    }
    let (status, unknown_method) =
        client.post(json!({"jsonrpc": "2.0", "id": 9, "method": "resources/list"})).await;
    assert_eq!((status, unknown_method["error"]["code"].as_i64()), (200, Some(-32601)));
    // An older client gets its own version; an unknown one gets the latest.
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    let deleted = client.request(reqwest::Method::DELETE).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let (status, _) = client.post(ping).await;
    assert_eq!(status, 404, "a deleted session is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_sse_transport_carries_the_same_exchange() {
    let app = start(Duration::from_secs(300)).await;
    let mut stream = Stream::open(&format!("{}/sampling/sse", app.base)).await;
    let endpoint = tokio::time::timeout(WATCHDOG, stream.next()).await.unwrap().unwrap();
    assert_eq!(endpoint.event, "endpoint");
    let post_url = format!("{}{}", app.base, endpoint.data);
    let http = reqwest::Client::new();
    let post = |body: Value| {
        let (http, url) = (http.clone(), post_url.clone());
        async move { http.post(url).json(&body).send().await.unwrap().status().as_u16() }
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {"sampling": {}}, "clientInfo": {"name": "old", "version": "0.1"}}});
    assert_eq!(post(init).await, 202);
    let initialized = next_message(&mut stream).await;
    assert_eq!(initialized["result"]["protocolVersion"], "2024-11-05");
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "explain_code", "arguments": {"code": "fn main() {}", "language": "rust"}}});
    assert_eq!(post(call).await, 202);
    let asked = next_message(&mut stream).await;
    assert_eq!(asked["method"], "sampling/createMessage");
    let answer = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "role": "assistant", "content": {"type": "text", "text": "It does nothing."}, "model": "m"}});
    assert_eq!(post(answer).await, 202);
    let result = next_message(&mut stream).await;
    assert_eq!(
        (result["id"].as_u64(), result["result"]["content"][0]["text"].as_str()),
        (Some(2), Some("It does nothing."))
    );
    let unknown = http
        .post(format!("{}/sampling/messages?sessionId=nope", app.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let not_json = http
        .post(format!("{}/sampling/messages?sessionId=nope", app.base))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);
    let error: Value = not_json.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unsupported_media_type");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sent_by_hand_report_their_state() {
    let app = start(Duration::from_millis(500)).await;
    let (client, _) = Client::initialize(&app.base, "worker", sampling()).await;
    let mut requests = client.stream().await;
    let mut events = Stream::open(&format!("{}/sampling/events", app.base)).await;
    let snapshot = tokio::time::timeout(WATCHDOG, events.next()).await.unwrap().unwrap();
    let snapshot: Value = serde_json::from_str(&snapshot.data).unwrap();
    assert_eq!(snapshot["clients"][0]["name"], "worker");
    let (_, clients) = get(&app.base, "/sampling/clients").await;
    assert_eq!(clients["clients"][0]["sampling"], true);

    let http = reqwest::Client::new();
    let body = json!({"client": "worker", "messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}], "maxTokens": 10});
    let sent: Value = http
        .post(format!("{}/sampling/requests", app.base))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = sent["id"].as_str().unwrap().to_owned();
    let asked = next_message(&mut requests).await;
    let (status, _) = client.post(json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "hello"}, "model": "m", "stopReason": "endTurn"}})).await;
    assert_eq!(status, 202);
    // Once the client's answer is taken (its 202), the request's record says so.
    let (_, one) = get(&app.base, &format!("/sampling/requests/{id}")).await;
    assert_eq!(
        (one["state"].as_str(), &one["result"]["content"]["text"]),
        (Some("done"), &json!("hello"))
    );
    let finished = next_finished(&mut events).await;
    assert_eq!(
        (finished["id"].as_str(), finished["state"].as_str()),
        (Some(id.as_str()), Some("done"))
    );

    // Nobody answers within the (short) deadline.
    let sent: Value = http
        .post(format!("{}/sampling/requests", app.base))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let timed_out = next_finished(&mut events).await;
    assert_eq!((&timed_out["id"], timed_out["state"].as_str()), (&sent["id"], Some("timed_out")));

    let bad = [
        (json!({"messages": [], "maxTokens": 1}), 422, "missing_client"),
        (json!({"client": "worker", "messages": [], "maxTokens": 1}), 422, "invalid_params"),
        (
            json!({"client": "worker", "messages": [{"role": "system", "content": {"type": "text", "text": "x"}}], "maxTokens": 1}),
            422,
            "invalid_params",
        ),
        (
            json!({"client": "worker", "messages": [{"role": "user", "content": {"type": "text", "text": "x"}}]}),
            422,
            "invalid_params",
        ),
        (
            json!({"client": "nobody", "messages": [{"role": "user", "content": {"type": "text", "text": "x"}}], "maxTokens": 1}),
            404,
            "unknown_client",
        ),
    ];
    for (body, status, code) in bad {
        let response =
            http.post(format!("{}/sampling/requests", app.base)).json(&body).send().await.unwrap();
        let got = response.status().as_u16();
        let error: Value = response.json().await.unwrap();
        assert_eq!((got, error["error"]["code"].as_str()), (status, Some(code)), "{body}");
    }
    // A key serde_json reads as an instruction, not first (as a client may well write it): it
    // would reach the client as something else, so it is refused. Sent as text, because a
    // `json!` map would put the key first.
    let reserved = r#"{"client":"worker","maxTokens":1,"messages":[{"role":"user","content":{"type":"text","text":"x","$serde_json::private::RawValue":"1"}}]}"#;
    let response = http
        .post(format!("{}/sampling/requests", app.base))
        .header("content-type", "application/json")
        .body(reserved)
        .send()
        .await
        .unwrap();
    let got = response.status().as_u16();
    let error: Value = response.json().await.unwrap();
    assert_eq!((got, error["error"]["code"].as_str()), (400, Some("reserved_key")));
    let (status, _) = get(&app.base, "/sampling/requests/nope").await;
    assert_eq!(status, 404);
}

/// The next `request_finished` event on the events stream.
async fn next_finished(events: &mut Stream) -> Value {
    loop {
        let event = tokio::time::timeout(WATCHDOG, events.next()).await.unwrap().unwrap();
        if event.event == "request_finished" {
            return serde_json::from_str(&event.data).unwrap();
        }
    }
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_resumes_with_last_event_id_and_misses_no_request() {
    let app = start(Duration::from_secs(300)).await;
    let (client, _) = Client::initialize(&app.base, "resumer", sampling()).await;
    let http = reqwest::Client::new();
    let send = |text: &'static str| {
        let (http, base) = (http.clone(), app.base.clone());
        async move {
            let body = json!({"client": "resumer", "maxTokens": 5,
                "messages": [{"role": "user", "content": {"type": "text", "text": text}}]});
            let sent =
                http.post(format!("{base}/sampling/requests")).json(&body).send().await.unwrap();
            assert_eq!(sent.status(), 202);
        }
    };
    let mut stream = client.stream().await;
    send("first").await;
    let first = tokio::time::timeout(WATCHDOG, stream.next()).await.unwrap().unwrap();
    assert!(first.data.contains("first"));
    drop(stream);
    // Sent while the client is away: it waits in the session.
    send("second").await;
    let resumed = client
        .request(reqwest::Method::GET)
        .header("last-event-id", &first.last_event_id)
        .send()
        .await
        .unwrap();
    let mut stream = Stream::from_response(resumed);
    let second = next_message(&mut stream).await;
    assert_eq!(
        second["params"]["messages"][0]["content"]["text"], "second",
        "nothing missed, nothing repeated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_opens_the_get_stream_still_answers_a_tool_call() {
    let app = start(Duration::from_secs(300)).await;
    let (client, _) = Client::initialize(&app.base, "post-only", sampling()).await;
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "summarize", "arguments": {"text": "x"}}});
    let response = client.request(reqwest::Method::POST).json(&call).send().await.unwrap();
    let mut tool = Stream::from_response(response);
    let asked = next_request(&mut tool).await;
    let answer = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "role": "assistant", "content": {"type": "text", "text": "short"}, "model": "m"}});
    assert_eq!(client.post(answer).await.0, 202);
    let result = loop {
        let message = next_message(&mut tool).await;
        if message["id"] == 7 {
            break message;
        }
    };
    assert_eq!(result["result"]["content"][0]["text"], "short");

    // Streams are checked for Origin too: a page elsewhere cannot attach to a session.
    let foreign = client
        .request(reqwest::Method::GET)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cancelling_its_tool_call_cancels_the_sampling_request() {
    let app = start(Duration::from_secs(300)).await;
    let (client, _) = Client::initialize(&app.base, "canceller", sampling()).await;
    let mut session_stream = client.stream().await;
    let call = json!({"jsonrpc": "2.0", "id": "call-9", "method": "tools/call", "params": {
        "name": "summarize", "arguments": {"text": "x"}}});
    let response = client.request(reqwest::Method::POST).json(&call).send().await.unwrap();
    let mut tool = Stream::from_response(response);
    let asked = next_request(&mut tool).await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": "call-9", "reason": "changed my mind"}});
    assert_eq!(client.post(cancel).await.0, 202);
    let cancelled = next_message(&mut session_stream).await;
    assert_eq!(cancelled["method"], "notifications/cancelled");
    assert_eq!(cancelled["params"]["requestId"], asked["id"]);
    let ended = tokio::time::timeout(WATCHDOG, async {
        while let Some(event) = tool.next().await {
            let message: Value = serde_json::from_str(&event.data).unwrap();
            assert!(message.get("result").is_none(), "a cancelled call sends no result");
        }
    });
    ended.await.expect("the call's stream ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_answered_as_an_array_of_responses() {
    let app = start(Duration::from_secs(300)).await;
    let (client, _) = Client::initialize(&app.base, "batcher", sampling()).await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {}}
    ]);
    let (status, responses) = client.post(batch).await;
    assert_eq!(status, 200);
    let responses = responses.as_array().unwrap();
    assert_eq!(responses.len(), 3, "one response per request: {responses:?}");
    assert_eq!((responses[0]["id"].as_u64(), &responses[0]["result"]), (Some(1), &json!({})));
    assert_eq!(responses[1]["result"]["tools"].as_array().unwrap().len(), 3);
    assert_eq!(responses[2]["error"]["code"], -32600, "initialize may not be batched");
    let (status, _) =
        client.post(json!([{"jsonrpc": "2.0", "method": "notifications/initialized"}])).await;
    assert_eq!(status, 202, "notifications only");
    let (status, _) = client.post(json!([])).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summarize_asks_for_a_length_down_the_stream_when_the_client_can_answer_forms() {
    let app = start(Duration::from_secs(300)).await;
    let mut console = Stream::open(&format!("{}/sampling/events", app.base)).await;
    let capabilities = json!({"sampling": {}, "elicitation": {}});
    let (client, _) = Client::initialize(&app.base, "former", capabilities).await;
    let call = |id: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "summarize", "arguments": {"text": "A text to summarize."}}})
    };
    let answer = |asked: &Value, result: Value| json!({"jsonrpc": "2.0", "id": asked["id"], "result": result});
    let open = |id: u64| {
        let response = client.request(reqwest::Method::POST).json(&call(id));
        async move { Stream::from_response(response.send().await.unwrap()) }
    };

    // Accept: the question first, then the sampling request shaped by the answer.
    let mut tool = open(3).await;
    let question = next_request(&mut tool).await;
    assert_eq!(question["method"], "elicitation/create");
    assert_eq!(question["params"]["mode"], "form");
    assert_eq!(question["params"]["requestedSchema"]["properties"]["length"]["type"], "string");
    let accept = json!({"action": "accept", "content": {"length": "long"}});
    assert_eq!(client.post(answer(&question, accept)).await.0, 202);
    let asked = next_request(&mut tool).await;
    assert_eq!(asked["method"], "sampling/createMessage");
    assert!(asked["params"]["systemPrompt"].as_str().unwrap().contains("six sentences"));
    let completion = json!({"role": "assistant", "content": {"type": "text", "text": "Long."},
        "model": "m", "stopReason": "endTurn"});
    client.post(answer(&asked, completion)).await;
    let result = next_message(&mut tool).await;
    assert_eq!(
        (result["id"].as_u64(), &result["result"]["content"][0]["text"]),
        (Some(3), &json!("Long."))
    );

    // The console saw both rounds, asked then answered, and the outcome.
    let mut records = Vec::new();
    while records.last().is_none_or(|(name, _): &(String, Value)| name != "tool_finished") {
        let event = tokio::time::timeout(WATCHDOG, console.next()).await.unwrap().unwrap();
        if event.event.starts_with("tool_") {
            records.push((event.event, serde_json::from_str::<Value>(&event.data).unwrap()));
        }
    }
    let rounds: Vec<(Option<u64>, Value, Value)> = records
        .iter()
        .filter(|(name, _)| name == "tool_round")
        .map(|(_, r)| (r["n"].as_u64(), r["asked"].clone(), r["answer"].clone()))
        .collect();
    assert_eq!(
        rounds,
        [
            (Some(1), json!(["elicitation/create"]), Value::Null),
            (Some(1), json!(["elicitation/create"]), json!(r#"accept {"length":"long"}"#)),
            (Some(2), json!(["sampling/createMessage"]), Value::Null),
            (Some(2), json!(["sampling/createMessage"]), json!("m: Long.")),
        ]
    );
    let finished = &records.last().unwrap().1;
    assert_eq!(
        (finished["era"].as_str(), finished["client"].as_str()),
        (Some("handshake"), Some("former"))
    );
    assert_eq!(
        (finished["outcome"].as_str(), finished["text"].as_str()),
        (Some("done"), Some("Long."))
    );

    // Decline: the default length.
    let mut tool = open(4).await;
    let question = next_request(&mut tool).await;
    client.post(answer(&question, json!({"action": "decline"}))).await;
    let asked = next_request(&mut tool).await;
    assert!(asked["params"]["systemPrompt"].as_str().unwrap().contains("at most three sentences"));
    drop(tool);

    // Cancel: the call ends with a tool error, and the model is never asked.
    let mut tool = open(5).await;
    let question = next_request(&mut tool).await;
    client.post(answer(&question, json!({"action": "cancel"}))).await;
    let result = next_message(&mut tool).await;
    assert_eq!(
        (result["id"].as_u64(), result["result"]["isError"].as_bool()),
        (Some(5), Some(true))
    );
    assert!(result["result"]["content"][0]["text"].as_str().unwrap().contains("cancelled"));
}
