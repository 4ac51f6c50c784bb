//! MCP 2026-07-28 on `/sampling/mcp`, over real HTTP, beside the handshake era: stateless
//! requests with per-request `_meta`, `server/discover`, the version and header rules, and tool
//! calls by multi round-trip requests (an `InputRequiredResult`, then the retry with
//! `inputResponses` and `requestState`), with elicitation, and every way a retry is refused.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use sse_apps::sampling::request_state::{Binding, RoundState, StateKey, digest};
use sse_apps::sampling::{SamplingConfig, router};
use support::{TestApp, spawn_app};

const SECRET: &str = "modern-test-secret";

async fn start() -> TestApp {
    let config =
        SamplingConfig { deadline: Duration::from_secs(300), state_key: StateKey::derived(SECRET) };
    spawn_app(move |core| router(core, config)).await
}

/// A modern client: every request carries `_meta` and the mirrored headers.
struct Modern {
    url: String,
    http: reqwest::Client,
    capabilities: Value,
    bearer: Option<&'static str>,
}

impl Modern {
    fn new(app: &TestApp, capabilities: Value) -> Modern {
        let url = format!("{}/sampling/mcp", app.base);
        Modern { url, http: reqwest::Client::new(), capabilities, bearer: None }
    }

    fn body(&self, method: &str, mut params: Value) -> Value {
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "modern-test", "version": "1.0"},
            "io.modelcontextprotocol/clientCapabilities": self.capabilities,
        });
        json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
    }

    fn request(&self, body: &Value) -> reqwest::RequestBuilder {
        self.request_with(body, "2026-07-28", body["method"].as_str().unwrap())
    }

    /// A request whose mirrored headers say `version` and `method`, whatever the body says.
    fn request_with(&self, body: &Value, version: &str, method: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", version)
            .header("mcp-method", method);
        if let Some(name) = body["params"]["name"].as_str() {
            request = request.header("mcp-name", name);
        }
        if let Some(token) = self.bearer {
            request = request.bearer_auth(token);
        }
        request.json(body)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        assert!(response.headers().get("mcp-session-id").is_none(), "no session is minted");
        (status, response.json().await.unwrap())
    }

    async fn call(&self, method: &str, params: Value) -> (u16, Value) {
        self.send(self.request(&self.body(method, params))).await
    }

    /// A `tools/call` of `tool` with `arguments`, retrying with `responses` and `state` when given.
    async fn tool(&self, tool: &str, arguments: Value, retry: Option<(Value, &str)>) -> Value {
        let mut params = json!({"name": tool, "arguments": arguments});
        if let Some((responses, state)) = retry {
            params["inputResponses"] = responses;
            params["requestState"] = json!(state);
        }
        let (status, body) = self.call("tools/call", params).await;
        assert_eq!(status, 200, "{body}");
        body["result"].clone()
    }
}

fn completion(text: &str) -> Value {
    json!({"role": "assistant", "content": {"type": "text", "text": text},
        "model": "test-model", "stopReason": "endTurn"})
}

fn state_of(result: &Value) -> String {
    result["requestState"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_list_and_every_tool_by_multi_round_trip() {
    let app = start().await;
    let client = Modern::new(&app, json!({"sampling": {}}));
    let (status, discover) = client.call("server/discover", json!({})).await;
    assert_eq!(status, 200);
    let result = &discover["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["supportedVersions"][0], "2026-07-28");
    assert!(result["supportedVersions"].as_array().unwrap().contains(&json!("2025-11-25")));
    assert!(result["capabilities"]["tools"].is_object());
    assert_eq!(result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "sse-apps");

    let (_, list) = client.call("tools/list", json!({})).await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["summarize", "classify_sentiment", "explain_code"]);
    assert_eq!(list["result"]["resultType"], "complete");

    let calls = [
        ("summarize", json!({"text": "A long story about SSE."}), "A long story about SSE."),
        ("classify_sentiment", json!({"text": "I love it"}), "I love it"),
        ("explain_code", json!({"code": "fn main() {}", "language": "Rust"}), "fn main() {}"),
    ];
    for (tool, arguments, quoted) in calls {
        let first = client.tool(tool, arguments.clone(), None).await;
        assert_eq!(first["resultType"], "input_required", "{tool}");
        let asked = &first["inputRequests"]["sample"];
        assert_eq!(asked["method"], "sampling/createMessage");
        let prompt = asked["params"]["messages"][0]["content"]["text"].as_str().unwrap();
        assert!(prompt.contains(quoted), "{prompt}");
        assert_eq!(first["inputRequests"].as_object().unwrap().len(), 1, "no question undeclared");

        let answer = json!({"sample": completion(&format!("{tool} done."))});
        let last = client.tool(tool, arguments, Some((answer, &state_of(&first)))).await;
        assert_eq!(last["resultType"], "complete");
        assert_eq!(last["isError"], false);
        assert_eq!(last["content"][0]["text"], format!("{tool} done."));
        assert_eq!(last["structuredContent"]["model"], "test-model");
    }

    // A client that did not declare sampling is never asked: a tool error says why.
    let plain = Modern::new(&app, json!({}));
    let result = plain.tool("summarize", json!({"text": "t"}), None).await;
    assert_eq!(
        (result["resultType"].as_str(), result["isError"].as_bool()),
        (Some("complete"), Some(true))
    );
    assert!(result["content"][0]["text"].as_str().unwrap().contains("sampling capability"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_headers_and_methods_follow_the_modern_rules() {
    let app = start().await;
    let client = Modern::new(&app, json!({"sampling": {}}));
    let discover = client.body("server/discover", json!({}));

    // An unknown version, in the header: -32022 naming what this server speaks.
    let (status, error) =
        client.send(client.request_with(&discover, "1900-01-01", "server/discover")).await;
    assert_eq!((status, error["error"]["code"].as_i64()), (400, Some(-32022)), "{error}");
    assert_eq!(error["error"]["data"]["requested"], "1900-01-01");
    assert!(error["error"]["data"]["supported"].as_array().unwrap().contains(&json!("2026-07-28")));
    assert_eq!(error["id"], 7);

    // An unknown version in `_meta` and the header alike: the same.
    let mut future = discover.clone();
    future["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let request = client.request_with(&future, "2099-01-01", "server/discover");
    let (status, error) = client.send(request).await;
    assert_eq!((status, error["error"]["data"]["requested"].as_str()), (400, Some("2099-01-01")));

    // Malformed `_meta`: -32602.
    for meta in [json!("text"), json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"})] {
        let mut bad = discover.clone();
        bad["params"]["_meta"] = meta;
        let (status, error) = client.send(client.request(&bad)).await;
        assert_eq!((status, error["error"]["code"].as_i64()), (400, Some(-32602)), "{error}");
    }

    // Headers that disagree with the body, or are missing: -32020.
    let call = client.body("tools/call", json!({"name": "summarize", "arguments": {"text": "t"}}));
    let mismatches = [
        client.request_with(&call, "2026-07-28", "tools/list"),
        client.request_with(&discover, "2025-11-25", "server/discover"),
        client.request(&discover).header("mcp-method", "server/discover"),
        client.http.post(&client.url).header("mcp-protocol-version", "2026-07-28").json(&call),
    ];
    for request in mismatches {
        let (status, error) = client.send(request).await;
        assert_eq!((status, error["error"]["code"].as_i64()), (400, Some(-32020)), "{error}");
    }
    let renamed = client.http.post(&client.url).header("mcp-protocol-version", "2026-07-28");
    let renamed = renamed.header("mcp-method", "tools/call").header("mcp-name", "explain_code");
    let (status, error) = client.send(renamed.json(&call)).await;
    assert_eq!((status, error["error"]["code"].as_i64()), (400, Some(-32020)));
    // The Base64 sentinel form of `Mcp-Name` is decoded before comparing.
    let encoded = client.http.post(&client.url).header("mcp-protocol-version", "2026-07-28");
    let encoded =
        encoded.header("mcp-method", "tools/call").header("mcp-name", "=?base64?c3VtbWFyaXpl?=");
    let (status, _) = client.send(encoded.json(&call)).await;
    assert_eq!(status, 200);

    // An unknown method: 404 with -32601; `ping` and `initialize` are handshake-era only.
    for method in ["resources/list", "ping"] {
        let (status, error) = client.call(method, json!({})).await;
        assert_eq!((status, error["error"]["code"].as_i64()), (404, Some(-32601)), "{method}");
    }

    // A session id or Last-Event-ID is ignored, never looked up (the handshake era answers an
    // unknown session with 404).
    let stale = client
        .request(&discover)
        .header("mcp-session-id", "no-such-session")
        .header("last-event-id", "42");
    let (status, result) = client.send(stale).await;
    assert_eq!((status, result["result"]["resultType"].as_str()), (200, Some("complete")));

    // No stream, no session: GET and DELETE are not allowed in the modern era.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let response = client
            .http
            .request(method.clone(), &client.url)
            .header("mcp-protocol-version", "2026-07-28")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "POST");
    }
    // Notifications are taken and dropped; batches and responses are not part of the era.
    let note =
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}});
    let response = client
        .http
        .post(&client.url)
        .header("mcp-protocol-version", "2026-07-28")
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    for body in [json!([discover.clone()]), json!({"jsonrpc": "2.0", "id": 1, "result": {}})] {
        let request = client.http.post(&client.url).header("mcp-protocol-version", "2026-07-28");
        let (status, error) = client.send(request.json(&body)).await;
        assert_eq!((status, error["error"]["code"].as_i64()), (400, Some(-32600)), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_state_is_sealed_bound_and_refused_when_it_does_not_fit() {
    let app = start().await;
    let mut alice = Modern::new(&app, json!({"sampling": {}}));
    alice.bearer = Some("alice");
    let arguments = json!({"text": "Bound state."});
    let first = alice.tool("classify_sentiment", arguments.clone(), None).await;
    let state = state_of(&first);
    let answer = json!({"sample": completion("neutral")});

    let refused = |result: (u16, Value)| {
        assert_eq!(
            (result.0, result.1["error"]["code"].as_i64()),
            (400, Some(-32602)),
            "{}",
            result.1
        );
        result.1["error"]["data"]["reason"].as_str().unwrap().to_owned()
    };
    let retry = |client: &Modern, tool: &str, arguments: &Value, state: &str| {
        let params = json!({"name": tool, "arguments": arguments,
            "inputResponses": answer.clone(), "requestState": state});
        client.request(&client.body("tools/call", params))
    };

    // Changed by one character: it no longer verifies.
    let mut tampered = state.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let reason =
        refused(alice.send(retry(&alice, "classify_sentiment", &arguments, &tampered)).await);
    assert_eq!(reason, "state_tampered");

    // Another caller presenting alice's state.
    let mut bob = Modern::new(&app, json!({"sampling": {}}));
    bob.bearer = Some("bob");
    let reason = refused(bob.send(retry(&bob, "classify_sentiment", &arguments, &state)).await);
    assert_eq!(reason, "state_other_principal");

    // The same state on another call: other arguments, another tool.
    let other = json!({"text": "Other text."});
    let reason = refused(alice.send(retry(&alice, "classify_sentiment", &other, &state)).await);
    assert_eq!(reason, "state_other_request");
    let reason = refused(alice.send(retry(&alice, "summarize", &arguments, &state)).await);
    assert_eq!(reason, "state_other_request");

    // Sealed with the server's key, for this very call, but past its expiry.
    let expired = RoundState {
        principal: "anonymous".into(),
        expires_at: 1,
        method: "tools/call".into(),
        tool: "classify_sentiment".into(),
        arguments: digest(&arguments),
        asked: vec!["sample".into()],
        length: None,
        call: "a-call".into(),
        round: 1,
        asked_at: 1,
        asked_on: "elsewhere".into(),
    };
    let sealed = StateKey::derived(SECRET).seal(&expired);
    let anonymous = Modern::new(&app, json!({"sampling": {}}));
    let reason =
        refused(anonymous.send(retry(&anonymous, "classify_sentiment", &arguments, &sealed)).await);
    assert_eq!(reason, "state_expired");
    // The same, still good, is accepted: the key is all another instance would need.
    let good = RoundState { expires_at: u64::MAX, ..expired };
    let binding = Binding {
        principal: "anonymous".into(),
        method: "tools/call".into(),
        tool: "classify_sentiment".into(),
        arguments: digest(&arguments),
    };
    let sealed = StateKey::derived(SECRET).seal(&good);
    assert!(StateKey::derived(SECRET).open(&sealed, 0, &binding).is_ok());
    let (status, done) =
        anonymous.send(retry(&anonymous, "classify_sentiment", &arguments, &sealed)).await;
    assert_eq!((status, done["result"]["content"][0]["text"].as_str()), (200, Some("neutral")));

    // Oversized state is refused before anything else is done with it.
    let huge = "A".repeat(5000);
    let reason = refused(alice.send(retry(&alice, "classify_sentiment", &arguments, &huge)).await);
    assert_eq!(reason, "state_too_large");

    // Answers missing or malformed: the same question again, with fresh state.
    for responses in [json!("not an object"), json!({}), json!({"sample": "text"}), json!([1])] {
        let again = alice
            .tool("classify_sentiment", arguments.clone(), Some((responses.clone(), &state)))
            .await;
        assert_eq!(again["resultType"], "input_required", "{responses}");
        assert_eq!(again["inputRequests"]["sample"]["method"], "sampling/createMessage");
        let done = alice
            .tool(
                "classify_sentiment",
                arguments.clone(),
                Some((answer.clone(), &state_of(&again))),
            )
            .await;
        assert_eq!(done["content"][0]["text"], "neutral");
    }

    // The honest retry completes.
    let done = alice.tool("classify_sentiment", arguments, Some((answer.clone(), &state))).await;
    assert_eq!(done["content"][0]["text"], "neutral");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summarize_asks_for_a_length_of_clients_that_declared_elicitation() {
    let app = start().await;
    let client = Modern::new(&app, json!({"sampling": {}, "elicitation": {"form": {}}}));
    let text = json!({"text": "A text to summarize."});
    let system_prompt = |result: &Value| {
        result["inputRequests"]["sample"]["params"]["systemPrompt"].as_str().unwrap().to_owned()
    };

    let first = client.tool("summarize", text.clone(), None).await;
    assert_eq!(first["resultType"], "input_required");
    let question = &first["inputRequests"]["length"];
    assert_eq!(question["method"], "elicitation/create");
    assert_eq!(question["params"]["mode"], "form");
    assert_eq!(question["params"]["requestedSchema"]["required"], json!(["length"]));
    assert!(first["inputRequests"].get("sample").is_none(), "the prompt depends on the answer");

    // Accept: the chosen length shapes the sampling request.
    let accept = json!({"length": {"action": "accept", "content": {"length": "short"}}});
    let second = client.tool("summarize", text.clone(), Some((accept, &state_of(&first)))).await;
    assert!(system_prompt(&second).contains("one sentence"), "{second}");
    let answer = json!({"sample": completion("Short.")});
    let done = client.tool("summarize", text.clone(), Some((answer, &state_of(&second)))).await;
    assert_eq!(
        (done["content"][0]["text"].as_str(), done["isError"].as_bool()),
        (Some("Short."), Some(false))
    );

    // Decline: the default length.
    let decline = json!({"length": {"action": "decline"}});
    let second = client.tool("summarize", text.clone(), Some((decline, &state_of(&first)))).await;
    assert!(system_prompt(&second).contains("at most three sentences"));

    // Cancel: the call ends, saying so.
    let cancel = json!({"length": {"action": "cancel"}});
    let done = client.tool("summarize", text.clone(), Some((cancel, &state_of(&first)))).await;
    assert_eq!(
        (done["resultType"].as_str(), done["isError"].as_bool()),
        (Some("complete"), Some(true))
    );
    assert!(done["content"][0]["text"].as_str().unwrap().contains("cancelled"));

    // An answer outside the form: asked again.
    let odd = json!({"length": {"action": "accept", "content": {"length": "epic"}}});
    let again = client.tool("summarize", text.clone(), Some((odd, &state_of(&first)))).await;
    assert_eq!(again["inputRequests"]["length"]["method"], "elicitation/create");

    // A length given, or a client without elicitation: no question.
    let given = client.tool("summarize", json!({"text": "t", "length": "long"}), None).await;
    assert!(system_prompt(&given).contains("six sentences"));
    let sampler = Modern::new(&app, json!({"sampling": {}}));
    let direct = sampler.tool("summarize", text, None).await;
    assert!(direct["inputRequests"]["sample"].is_object());
    assert!(direct["inputRequests"].get("length").is_none());

    // An unknown length is refused outright.
    let (status, error) = client
        .call(
            "tools/call",
            json!({"name": "summarize", "arguments": {"text": "t", "length": "epic"}}),
        )
        .await;
    assert_eq!((status, error["error"]["code"].as_i64()), (400, Some(-32602)));
}

/// The console's records of tool calls, from its event stream, up to the first `tool_finished`.
async fn records_until_finished(events: &mut support::Stream) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), events.next())
            .await
            .unwrap()
            .expect("an event");
        if event.event.starts_with("tool_") {
            let data: Value = serde_json::from_str(&event.data).unwrap();
            let last = event.event == "tool_finished";
            seen.push((event.event, data));
            if last {
                return seen;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_sees_each_round_asked_and_answered_then_the_outcome() {
    let app = start().await;
    let mut events = support::Stream::open(&format!("{}/sampling/events", app.base)).await;
    let client = Modern::new(&app, json!({"sampling": {}, "elicitation": {}}));
    let text = json!({"text": "Watched."});
    let first = client.tool("summarize", text.clone(), None).await;
    let accept = json!({"length": {"action": "accept", "content": {"length": "short"}}});
    let second = client.tool("summarize", text.clone(), Some((accept, &state_of(&first)))).await;
    let answer = json!({"sample": completion("Short.")});
    client.tool("summarize", text, Some((answer, &state_of(&second)))).await;

    let records = records_until_finished(&mut events).await;
    let names: Vec<&str> = records.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["tool_round", "tool_round", "tool_round", "tool_round", "tool_finished"]);
    let call = records[0].1["call"].as_str().unwrap();
    for (_, record) in &records {
        assert_eq!(
            (record["call"].as_str(), record["era"].as_str()),
            (Some(call), Some("2026-07-28"))
        );
        assert_eq!(
            (record["tool"].as_str(), record["client"].as_str()),
            (Some("summarize"), Some("modern-test"))
        );
    }
    let (asked, answered) = (&records[0].1, &records[1].1);
    assert_eq!((asked["n"].as_u64(), &asked["asked"]), (Some(1), &json!(["elicitation/create"])));
    assert_eq!(asked["answer"], Value::Null, "asked, not yet answered");
    assert_eq!(answered["answer"], r#"accept {"length":"short"}"#);
    assert!(answered["ms"].is_u64());
    assert_eq!(answered["answered_on"], answered["asked_on"], "one instance here");
    let sampled = &records[3].1;
    assert_eq!(
        (sampled["n"].as_u64(), &sampled["asked"]),
        (Some(2), &json!(["sampling/createMessage"]))
    );
    assert_eq!(sampled["answer"], "test-model: Short.");
    assert_eq!(
        (records[4].1["outcome"].as_str(), records[4].1["text"].as_str()),
        (Some("done"), Some("Short."))
    );

    // The same records are listed for a console that opens later.
    let listed: Value =
        reqwest::get(format!("{}/sampling/rounds", app.base)).await.unwrap().json().await.unwrap();
    let kinds: Vec<&str> =
        listed["rounds"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, names);
}
