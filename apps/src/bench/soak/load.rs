//! The soak's load: what each app's users do, at a steady pace, with every answer checked.
//!
//! | app | clients | what they do |
//! |---|---|---|
//! | chat | 20 members in 4 rooms | each reads its room, posts every 2 s, and reconnects every 3-8 s with `Last-Event-ID`; a message seen twice or out of order, or a `resync`, is an error |
//! | bidi | 4 sessions, 1 caller | the caller triggers a request every 50 ms, in turn; each session answers by POST |
//! | exec | 1 | a run every 2 s that reads a line from stdin and echoes it; its output and exit are checked |
//! | sampling | 1 MCP client | a request a second through `POST /sampling/requests`, answered by the client, seen finished `done` on the console's stream |
//! | dashboard | 5 viewers | each reads 3 events, leaves, and comes back |
//! | basic | 5 readers | each reads 2 events and resumes with `Last-Event-ID`; the next id must follow |
//!
//! Clients use the core's own [`EventSource`] and [`Responder`]: the soak also exercises them.
//! Every request carries the server's token as its cookie, so an app's own credential (a chat
//! member's token) can go in `Authorization`.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderValue;
use serde_json::{Value, json};
use sse_core::client::{EventSource, Responder, SseItem};
use sse_core::edge::auth::Token;
use sse_core::sync::lock;
use sse_core::wire::MessageEvent;
use sse_core::wire::jsonrpc::{ErrorObject, Request};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Where the load goes.
#[derive(Clone, Debug)]
pub struct Plan {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The server's token.
    pub token: String,
    /// Whether exec runs can be started (a sandbox exists).
    pub exec: bool,
}

/// Operations done and errors met, by kind. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    counts: Arc<Mutex<(Counts, Counts)>>,
}

/// How many of each kind.
type Counts = BTreeMap<String, u64>;

impl Tally {
    fn done(&self, what: &str) {
        *lock(&self.counts).0.entry(what.to_owned()).or_default() += 1;
    }

    fn error(&self, what: impl Display) {
        let mut what = what.to_string();
        what.truncate(160);
        *lock(&self.counts).1.entry(what).or_default() += 1;
    }

    /// (done, errors) so far.
    pub fn counts(&self) -> (Counts, Counts) {
        lock(&self.counts).clone()
    }
}

const CHAT_MEMBERS: usize = 20;
const CHAT_ROOMS: usize = 4;
const BIDI_SESSIONS: usize = 4;
const DASHBOARD_VIEWERS: usize = 5;
const BASIC_READERS: usize = 5;
/// How long one step may take before it counts as an error (a watchdog, not a target).
const STEP: Duration = Duration::from_secs(30);

/// Runs every client for `how_long`, then stops them and waits until each has finished what
/// it was doing and disconnected. The bidi sessions stop last, once nobody calls them any more,
/// so no request is left waiting on a session that has gone.
pub async fn run(plan: &Plan, tally: &Tally, how_long: Duration) {
    let http = match client(plan) {
        Ok(http) => http,
        Err(error) => return tally.error(format!("building the HTTP client: {error}")),
    };
    // Names are new each time, so a second run of the load does not collide with the first.
    let run = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
    let stop = CancellationToken::new();
    let mut clients = JoinSet::new();
    let env = Env { http, plan: plan.clone(), tally: tally.clone(), stop: stop.clone() };
    for index in 0..CHAT_MEMBERS {
        clients.spawn(chat_member(env.clone(), index, format!("m{index}-{run}")));
    }
    let sessions: Vec<String> = (0..BIDI_SESSIONS).map(|i| format!("soak-{run}-{i}")).collect();
    let (mut responders, responders_stop) = (JoinSet::new(), CancellationToken::new());
    for name in &sessions {
        let responder =
            Responder::new(env.http.clone(), format!("{}/bidi", plan.base)).client_id(name.clone());
        responders.spawn(responder.run(answer_bidi, responders_stop.clone()));
    }
    clients.spawn(bidi_caller(env.clone(), sessions));
    if plan.exec {
        clients.spawn(exec_runs(env.clone()));
    }
    clients.spawn(sampling(env.clone(), format!("soak-sampler-{run}")));
    for _ in 0..DASHBOARD_VIEWERS {
        clients.spawn(dashboard_viewer(env.clone()));
    }
    for _ in 0..BASIC_READERS {
        clients.spawn(basic_reader(env.clone()));
    }
    tokio::time::sleep(how_long).await;
    stop.cancel();
    while let Some(ended) = clients.join_next().await {
        if let Err(error) = ended {
            tally.error(format!("a client task failed: {error}"));
        }
    }
    responders_stop.cancel();
    while responders.join_next().await.is_some() {}
}

/// What every client gets.
#[derive(Clone, Debug)]
struct Env {
    http: reqwest::Client,
    plan: Plan,
    tally: Tally,
    stop: CancellationToken,
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.plan.base)
    }

    /// POSTs `body` to `path`; the status and the JSON answer (`null` if none), or an error
    /// saying what failed.
    async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), String> {
        let response = tokio::time::timeout(STEP, self.http.post(self.url(path)).json(body).send())
            .await
            .map_err(|_| format!("POST {path}: no answer"))?
            .map_err(|error| format!("POST {path}: {error}"))?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// The next event of `source`, errors counted under `what`; `None` when stopped, the source
    /// closed, or nothing came within the step's watchdog.
    async fn next_event(&self, source: &mut EventSource, what: &str) -> Option<MessageEvent> {
        self.next_event_unless(source, what, &self.stop).await
    }

    /// The same, stopped only by `stop` (a step that must finish once begun passes a token
    /// nobody cancels).
    async fn next_event_unless(
        &self,
        source: &mut EventSource,
        what: &str,
        stop: &CancellationToken,
    ) -> Option<MessageEvent> {
        loop {
            let item = tokio::select! {
                () = stop.cancelled() => return None,
                item = tokio::time::timeout(STEP, source.next()) => item,
            };
            match item {
                Err(_) => {
                    self.tally.error(format!("{what}: no event within {STEP:?}"));
                    return None;
                }
                Ok(None) => return None,
                Ok(Some(Ok(SseItem::Open))) => {}
                Ok(Some(Ok(SseItem::Event(event)))) => return Some(event),
                Ok(Some(Err(error))) => self.tally.error(format!("{what}: {error}")),
            }
        }
    }
}

/// An HTTP client that presents the server's cookie on every request, as a browser that opened
/// the server's link would: named for the server's port, its value derived from the token.
fn client(plan: &Plan) -> anyhow::Result<reqwest::Client> {
    let url = reqwest::Url::parse(&plan.base)?;
    let port = url.port_or_known_default().ok_or_else(|| anyhow::anyhow!("no port in {url}"))?;
    let token = Token::required(plan.token.as_str()).on_port(port);
    let token = if url.scheme() == "https" { token.over_https() } else { token };
    let cookie = token.cookie().unwrap_or_default();
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::COOKIE, HeaderValue::from_str(&cookie)?);
    Ok(reqwest::Client::builder().default_headers(headers).build()?)
}

/// A chat member: joins, then reads, posts and reconnects until stopped.
async fn chat_member(env: Env, index: usize, nick: String) {
    let room = format!("soak-{}", index % CHAT_ROOMS);
    let member = match env.post(&format!("/chat/rooms/{room}/join"), &json!({ "nick": nick })).await
    {
        Ok((201, body)) => body["token"].as_str().unwrap_or_default().to_owned(),
        Ok((status, body)) => return env.tally.error(format!("chat join: {status} {body}")),
        Err(error) => return env.tally.error(error),
    };
    let events = env.url(&format!("/chat/rooms/{room}/events?token={member}"));
    let (mut newest, mut resume_from, mut posts) = (0u64, String::new(), 0u64);
    let mut post_every = tokio::time::interval(Duration::from_secs(2));
    for visit in 0u64.. {
        let mut source = EventSource::new(env.http.clone(), events.clone());
        if !resume_from.is_empty() {
            source = source.last_event_id(&resume_from);
        }
        let stay = tokio::time::sleep(Duration::from_secs(3 + (index as u64 * 7 + visit) % 6));
        tokio::pin!(stay);
        loop {
            tokio::select! {
                () = &mut stay => break,
                _ = post_every.tick() => {
                    posts += 1;
                    post_chat(&env, &room, &member, &format!("{nick}-{posts}")).await;
                }
                event = env.next_event(&mut source, "chat stream") => {
                    let Some(event) = event else { return };
                    resume_from.clone_from(&event.last_event_id);
                    match event.event.as_str() {
                        "message" => {
                            let id = serde_json::from_str::<Value>(&event.data)
                                .ok()
                                .and_then(|m| m["id"].as_u64())
                                .unwrap_or(0);
                            if id <= newest {
                                env.tally.error("chat: a message delivered twice or out of order");
                            }
                            newest = newest.max(id);
                            env.tally.done("chat deliveries");
                        }
                        "resync" => env.tally.error("chat: resync on a resumed stream"),
                        _ => {}
                    }
                }
            }
        }
        env.tally.done("chat reconnects");
    }
}

async fn post_chat(env: &Env, room: &str, member: &str, key: &str) {
    let body = json!({ "text": format!("soak message {key}"), "client_msg_id": key });
    let url = env.url(&format!("/chat/rooms/{room}/messages"));
    let sent = env.http.post(url).bearer_auth(member).json(&body).send().await;
    match sent {
        Ok(response) if response.status() == 201 => env.tally.done("chat posts"),
        Ok(response) => env.tally.error(format!("chat post: {}", response.status())),
        Err(error) => env.tally.error(format!("chat post: {error}")),
    }
}

/// A bidi session's answer to every request.
async fn answer_bidi(request: Request) -> Result<Value, ErrorObject> {
    Ok(json!({ "answered": request.method }))
}

/// Triggers requests to the sessions in turn, once each has connected.
async fn bidi_caller(env: Env, sessions: Vec<String>) {
    let trigger = |name: &str, n: u64| {
        let url = env.url(&format!("/bidi/trigger?client_id={name}&message=m{n}"));
        let request = env.http.post(url).send();
        async move {
            let response = tokio::time::timeout(STEP, request)
                .await
                .map_err(|_| "no answer".to_owned())?
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            Ok::<_, String>((status, body))
        }
    };
    // A session is ready once it has connected: until then the server rightly answers 404.
    for name in &sessions {
        let ready = async {
            while !matches!(trigger(name, 0).await, Ok((200, _))) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            () = env.stop.cancelled() => return,
            waited = tokio::time::timeout(STEP, ready) => if waited.is_err() {
                return env.tally.error(format!("bidi: session {name} never connected"));
            },
        }
    }
    let mut every = tokio::time::interval(Duration::from_millis(50));
    for n in 1u64.. {
        tokio::select! {
            () = env.stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let name = &sessions[n as usize % sessions.len()];
        match trigger(name, n).await {
            Ok((200, body)) if body["result"]["answered"] == "analyze" => {
                env.tally.done("bidi round trips");
            }
            Ok((status, body)) => env.tally.error(format!("bidi trigger: {status} {body}")),
            Err(error) => env.tally.error(format!("bidi trigger: {error}")),
        }
    }
}

/// A run every 2 s that echoes a line of stdin; its output and exit are checked.
async fn exec_runs(env: Env) {
    let mut every = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            () = env.stop.cancelled() => return,
            _ = every.tick() => {}
        }
        match exec_once(&env).await {
            Ok(()) => env.tally.done("exec runs"),
            Err(error) => env.tally.error(format!("exec: {error}")),
        }
    }
}

async fn exec_once(env: &Env) -> Result<(), String> {
    let code = "read line; echo \"got $line\"";
    let id = match env.post("/exec/runs", &json!({ "language": "sh", "code": code })).await? {
        (201, body) => body["id"].as_str().unwrap_or_default().to_owned(),
        (status, body) => return Err(format!("start: {status} {body}")),
    };
    let mut source =
        EventSource::new(env.http.clone(), env.url(&format!("/exec/runs/{id}/events")));
    let stdin = json!({ "data": "soak\n", "eof": true });
    match env.post(&format!("/exec/runs/{id}/stdin"), &stdin).await? {
        (200, _) => {}
        (status, body) => return Err(format!("stdin: {status} {body}")),
    }
    let mut stdout = String::new();
    // A finished run is never stopped half-way: the soak waits for its exit.
    while let Some(item) = tokio::time::timeout(STEP, source.next()).await.map_err(|_| "stalled")? {
        let SseItem::Event(event) = item.map_err(|e| format!("stream: {e}"))? else { continue };
        let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
        match event.event.as_str() {
            "stdout" => stdout += data["text"].as_str().unwrap_or_default(),
            "exit" if data["reason"] == "exited" && data["code"] == 0 && stdout == "got soak\n" => {
                return Ok(());
            }
            "exit" => return Err(format!("ended {data} with output {stdout:?}")),
            _ => {}
        }
    }
    Err("the stream ended before exit".to_owned())
}

/// An MCP client (Streamable HTTP) answering sampling requests sent through the console's API,
/// one round trip a second, each seen finished `done` on the console's stream. A round trip
/// once begun is finished, so none is left pending at the server when the load stops.
async fn sampling(env: Env, name: String) {
    if let Err(error) = sampling_client(&env, &name).await {
        env.tally.error(format!("sampling: {error}"));
    }
}

async fn sampling_client(env: &Env, name: &str) -> Result<(), String> {
    const VERSION: &str = "2025-11-25";
    let accept = "application/json, text/event-stream";
    let initialize = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": VERSION, "capabilities": { "sampling": {} },
        "clientInfo": { "name": name, "version": "1" } } });
    let response = env
        .http
        .post(env.url("/sampling/mcp"))
        .header("accept", accept)
        .json(&initialize)
        .send()
        .await
        .map_err(|e| format!("initialize: {e}"))?;
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("initialize: {} without a session", response.status()))?
        .to_owned();
    let mcp = |builder: reqwest::RequestBuilder| {
        builder
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", VERSION)
            .header("accept", accept)
    };
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let sent = mcp(env.http.post(env.url("/sampling/mcp"))).json(&initialized).send().await;
    if !sent.is_ok_and(|r| r.status() == 202) {
        return Err("notifications/initialized was not accepted".to_owned());
    }
    let header = |value: &str| HeaderValue::from_str(value).map_err(|e| e.to_string());
    let mut requests = EventSource::new(env.http.clone(), env.url("/sampling/mcp"))
        .header(http::HeaderName::from_static("mcp-session-id"), header(&session)?)
        .header(http::HeaderName::from_static("mcp-protocol-version"), header(VERSION)?)
        .header(http::header::ACCEPT, HeaderValue::from_static("text/event-stream"));
    let mut console = EventSource::new(env.http.clone(), env.url("/sampling/events"));
    // Both streams open before the first request, so none is sent to a client not listening.
    for (source, what) in [(&mut requests, "sampling stream"), (&mut console, "sampling console")] {
        match tokio::time::timeout(STEP, source.next()).await {
            Ok(Some(Ok(SseItem::Open))) => {}
            other => return Err(format!("{what} did not open: {other:?}")),
        }
    }
    let finish = CancellationToken::new();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = env.stop.cancelled() => return Ok(()),
            _ = every.tick() => {}
        }
        let ask = json!({ "client": name, "maxTokens": 16, "messages": [
            { "role": "user", "content": { "type": "text", "text": "say ok" } }] });
        let id = match env.post("/sampling/requests", &ask).await? {
            (200..=202, body) => body["id"].as_str().unwrap_or_default().to_owned(),
            (status, body) => return Err(format!("request: {status} {body}")),
        };
        // The request down the client's stream, answered by POST.
        let asked = loop {
            let event = env.next_event_unless(&mut requests, "sampling stream", &finish).await;
            let Some(event) = event else { return Err("the client's stream ended".to_owned()) };
            let message: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            if message["method"] == "sampling/createMessage" {
                break message;
            }
        };
        let answer = json!({ "jsonrpc": "2.0", "id": asked["id"], "result": {
            "role": "assistant", "content": { "type": "text", "text": "ok" },
            "model": "soak", "stopReason": "endTurn" } });
        let posted = mcp(env.http.post(env.url("/sampling/mcp"))).json(&answer).send().await;
        if !posted.is_ok_and(|r| r.status() == 202) {
            env.tally.error("sampling: the answer was not accepted");
        }
        // The console sees it finished.
        loop {
            let event = env.next_event_unless(&mut console, "sampling console", &finish).await;
            let Some(event) = event else { return Err("the console's stream ended".to_owned()) };
            let finished: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            if event.event == "request_finished" && finished["id"] == id.as_str() {
                match finished["state"].as_str() {
                    Some("done") => env.tally.done("sampling round trips"),
                    other => env.tally.error(format!("sampling: a request ended {other:?}")),
                }
                break;
            }
        }
    }
}

/// A dashboard viewer: 3 events, leave, come back.
async fn dashboard_viewer(env: Env) {
    while !env.stop.is_cancelled() {
        let mut source = EventSource::new(env.http.clone(), env.url("/dashboard/events"));
        for _ in 0..3 {
            if env.next_event(&mut source, "dashboard stream").await.is_none() {
                return;
            }
            env.tally.done("dashboard events");
        }
        env.tally.done("dashboard reconnects");
    }
}

/// A reader of the learning stream: 2 events, then resume from the last id, which the next
/// event must follow; a fresh start once the stream has ended (204).
async fn basic_reader(env: Env) {
    let mut last: u64 = 0;
    while !env.stop.is_cancelled() {
        let mut source = EventSource::new(env.http.clone(), env.url("/basic/events"));
        if last > 0 {
            source = source.last_event_id(&last.to_string());
        }
        let mut read = 0;
        while read < 2 {
            let Some(event) = env.next_event(&mut source, "basic stream").await else {
                if env.stop.is_cancelled() {
                    return;
                }
                last = 0; // all ten delivered: the server said 204
                break;
            };
            if event.event != "message" {
                continue;
            }
            let id: u64 = event.last_event_id.parse().unwrap_or(0);
            if id != last + 1 {
                env.tally.error(format!("basic: event {id} after {last}"));
            }
            last = id;
            read += 1;
            env.tally.done("basic events");
        }
    }
}
