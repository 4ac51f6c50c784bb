//! The pages in a real browser (headless Chromium through chromedriver): the SSE test page shows
//! events, survives a server restart and resumes with Last-Event-ID, with no gap and no duplicate;
//! two chat tabs talk, a reload restores history, and script in a message stays text.
//!
//! The browser comes from `support::browser` (Debian's Chromium; outside CI a missing one skips
//! with a notice).
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

#[path = "support/browser.rs"]
mod browser;
#[path = "support/dashboard.rs"]
mod dashboard_source;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use browser::{ONE_AT_A_TIME, browser, exec_page, text_of, until_true, wait_for};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use sse_apps::basic::BasicConfig;
use sse_core::edge::auth::Token;
use support::spawn_app_on;

/// The ids of the events the page lists, in order.
async fn listed_ids(client: &Client) -> Vec<u64> {
    let ids = client
        .execute(
            "return [...document.querySelectorAll('#events li')].map(li => li.dataset.id);",
            vec![],
        )
        .await
        .expect("script runs");
    ids.as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_str().and_then(|s| s.parse().ok()).expect("numeric id"))
        .collect()
}

fn contiguous_from_one(ids: &[u64]) -> bool {
    ids.iter().enumerate().all(|(i, id)| *id == i as u64 + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_page_streams_survives_a_restart_and_resumes() {
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    let config = BasicConfig { count: 0, interval: Duration::from_millis(150) };
    let app = spawn_app_on("127.0.0.1:0".parse().expect("addr"), Token::open(), move |core| {
        sse_apps::basic_server(core, config)
    })
    .await;
    let addr: SocketAddr = app.addr;

    client.goto(&format!("http://{addr}/")).await.expect("page loads");
    wait_for(client, "#events li:nth-child(3)").await;
    assert_eq!(text_of(client, "#status").await, "connected");
    let first_event = text_of(client, "#events li:first-child").await;
    assert!(first_event.contains("[id 1] Event 1 at "), "{first_event}");

    // Restart the server: the page notices, the browser reconnects with Last-Event-ID.
    app.stop().await;
    wait_for(client, "#log li[data-kind=\"reconnect\"]").await;
    let before = listed_ids(client).await;
    let last = *before.last().expect("some events");
    let app =
        spawn_app_on(addr, Token::open(), move |core| sse_apps::basic_server(core, config)).await;
    wait_for(client, "#log li[data-kind=\"resume\"]").await;
    let resumed = text_of(client, "#log li[data-kind=\"resume\"]").await;
    assert!(resumed.contains(&format!("server resumed after Last-Event-ID {last}")), "{resumed}");
    wait_for(client, &format!("#events li[data-id=\"{}\"]", last + 3)).await;
    let after = listed_ids(client).await;
    assert!(contiguous_from_one(&after), "a gap or a duplicate across the restart: {after:?}");

    // Disconnect, then Connect: a new EventSource resumes through the lastEventId parameter.
    client.find(Locator::Css("#disconnect")).await.expect("button").click().await.expect("click");
    assert_eq!(text_of(client, "#status").await, "disconnected");
    let stopped_at = *listed_ids(client).await.last().expect("events");
    client.find(Locator::Css("#connect")).await.expect("button").click().await.expect("click");
    wait_for(client, &format!("#events li[data-id=\"{}\"]", stopped_at + 2)).await;
    let ids = listed_ids(client).await;
    assert!(contiguous_from_one(&ids), "a gap or a duplicate across Disconnect/Connect: {ids:?}");

    // Clear empties both lists.
    browser::screenshot(client, "basic").await;
    client.find(Locator::Css("#clear")).await.expect("button").click().await.expect("click");
    let counts: Value = client
        .execute("return [document.querySelectorAll('#events li').length, document.querySelectorAll('#log li').length];", vec![])
        .await
        .expect("script runs");
    assert!(counts[0].as_u64().expect("count") <= 1, "events after Clear: {counts}");

    browser.client.close().await.expect("browser closes");
    app.stop().await;
}

async fn join_chat(client: &Client, base: &str, room: &str, nick: &str) {
    client.goto(&format!("{base}/chat")).await.expect("page loads");
    client.find(Locator::Id("room-name")).await.unwrap().send_keys(room).await.unwrap();
    client.find(Locator::Id("nick")).await.unwrap().send_keys(nick).await.unwrap();
    client.find(Locator::Id("join")).await.unwrap().click().await.unwrap();
    wait_for(client, "#conn-status[data-state=\"open\"]").await;
}

async fn type_message(client: &Client, text: &str) {
    client.find(Locator::Id("text")).await.unwrap().send_keys(text).await.unwrap();
    client.find(Locator::Id("send")).await.unwrap().click().await.unwrap();
}

/// Waits until a message whose text is exactly `text` is listed.
async fn wait_for_message(client: &Client, text: &str) {
    assert!(!text.contains('\''), "an XPath literal cannot hold a single quote here");
    let xpath = format!("//ol[@id='messages']//span[@class='text' and .='{text}']");
    client
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|e| panic!("the page never listed {text:?}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chat_tabs_talk_a_reload_restores_history_and_markup_stays_text() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(browser) = browser().await else { return };
    let client = &browser.client;
    let data = tempfile::tempdir().expect("a temporary directory");
    let config = sse_apps::chat::ChatConfig::new(data.path().to_owned());
    let app =
        support::spawn_app(move |core| sse_apps::chat::router(core, &config).expect("store opens"))
            .await;

    join_chat(client, &app.base, "lobby", "Ada").await;
    let ada = client.window().await.expect("a window");
    let bob = client.new_window(true).await.expect("a new tab").handle;
    client.switch_to_window(bob.clone()).await.expect("switch");
    join_chat(client, &app.base, "lobby", "Bob").await;

    let payload =
        "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script> & <b>bold</b>";
    type_message(client, payload).await;
    client.switch_to_window(ada.clone()).await.expect("switch");
    wait_for_message(client, payload).await;
    let inert: Value = client
        .execute("return [window.pwned === undefined, document.querySelectorAll('#messages img, #messages script, #messages b').length];", vec![])
        .await
        .expect("script runs");
    assert_eq!(inert, json!([true, 0]), "the payload must render as text");
    wait_for(client, "#online li:nth-child(2)").await;

    type_message(client, "hello Bob").await;
    client.switch_to_window(bob.clone()).await.expect("switch");
    wait_for_message(client, "hello Bob").await;

    // A reload restores history and the same member.
    client.switch_to_window(ada).await.expect("switch");
    client.refresh().await.expect("reload");
    wait_for(client, "#conn-status[data-state=\"open\"]").await;
    wait_for_message(client, payload).await;
    wait_for_message(client, "hello Bob").await;
    browser::screenshot(client, "chat").await;
    let title = text_of(client, "#room-title").await;
    assert_eq!(title, "#lobby as Ada");

    browser.client.close().await.expect("browser closes");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_charts_takes_an_ack_and_confirms_a_control_action() {
    use std::os::unix::process::ExitStatusExt;
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(browser) = browser().await else { return };
    let client = &browser.client;
    let mut sleeper = std::process::Command::new("sleep").arg("300").spawn().expect("sleep starts");
    let pid = sleeper.id();
    // CPU at 60% for a few ticks raises a `careful` alert. The process list is the machine's own.
    let source = dashboard_source::ScriptedSource::with_cpu(&[20.0, 30.0, 40.0, 60.0]);
    let data = tempfile::tempdir().expect("a temporary directory");
    let mut config = sse_apps::dashboard::DashboardConfig::new(data.path().to_owned());
    config.interval = Duration::from_millis(200);
    let app = spawn_app_on("127.0.0.1:0".parse().expect("addr"), Token::required("t0k"), |core| {
        sse_apps::dashboard::router_with_source(core, config, source).expect("dashboard starts")
    })
    .await;

    // The token link sets the cookie the stream and the POSTs then use, and the browser is sent
    // on to the address without it, so the secret stays out of its address bar and history.
    client.goto(&format!("{}/dashboard?token=t0k", app.base)).await.expect("page loads");
    wait_for(client, "#conn-status[data-state=\"open\"]").await;
    let address = client.current_url().await.expect("the page's address");
    assert_eq!(address.as_str(), format!("{}/dashboard", app.base), "the token left the address");

    // Charts draw: after a few ticks the CPU chart has the series' colour along a line.
    until_true(
        client,
        "five points",
        "return Number(document.querySelector('#chart-cpu').dataset.points) >= 5",
    )
    .await;
    let painted: Value = client
        .execute(
            r#"const c = document.querySelector('#chart-cpu');
               const want = getComputedStyle(document.documentElement).getPropertyValue('--accent').trim();
               const probe = document.createElement('canvas').getContext('2d');
               probe.fillStyle = want; probe.fillRect(0, 0, 1, 1);
               const [r, g, b] = probe.getImageData(0, 0, 1, 1).data;
               const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
               let n = 0;
               for (let i = 0; i < px.length; i += 4)
                 if (px[i + 3] > 200 && Math.abs(px[i] - r) + Math.abs(px[i + 1] - g) + Math.abs(px[i + 2] - b) < 60) n++;
               return n;"#,
            vec![],
        )
        .await
        .expect("script runs");
    assert!(
        painted.as_u64().expect("a count") > 150,
        "the CPU line is not drawn: {painted} pixels"
    );
    let unavailable_shown = text_of(client, "#now").await;
    assert!(
        unavailable_shown.contains("n/a"),
        "the scripted source has no swap: {unavailable_shown}"
    );

    // An alert appears; acknowledging it shows who did, as every viewer sees it.
    wait_for(client, "#alerts li[data-level=\"careful\"] button.ack").await;
    client
        .find(Locator::Css("#alerts button.ack"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    wait_for(client, "#alerts li .ack-by").await;
    assert!(text_of(client, "#alerts li .ack-by").await.starts_with("acknowledged by 127.0.0.1"));

    // The process list finds the child by name among every process, and it may be reniced.
    let search = client.find(Locator::Css("#process-search")).await.expect("search box");
    search.send_keys("slee").await.expect("type");
    client.find(Locator::Css("#process-mine")).await.expect("box").click().await.expect("click");
    // Only matching rows, the child's with its buttons (the search answers after a pause).
    let found = format!(
        "const rows = [...document.querySelectorAll('#processes tbody tr')]; \
         return rows.length > 0 && rows.every(tr => tr.children[1].textContent.includes('slee')) \
           && !!document.querySelector('tr[data-pid=\"{pid}\"] button.renice');"
    );
    until_true(client, "the child, found by name", &found).await;
    let renice = format!(
        "document.querySelector('button.renice[data-pid=\"{pid}\"]').click(); return true;"
    );
    client.execute(&renice, vec![]).await.expect("click");
    wait_for(client, "dialog#confirm[open]").await;
    let nice = client.find(Locator::Css("#nice")).await.expect("nice field");
    nice.clear().await.expect("clear");
    nice.send_keys("7").await.expect("type");
    client.find(Locator::Css("#confirm-ok")).await.expect("button").click().await.expect("click");
    wait_for(client, "#commands li[data-state=\"completed\"]").await;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the child's stat");
    let nice_now = stat[stat.rfind(')').expect("name") + 2..].split(' ').nth(16).expect("nice");
    assert_eq!(nice_now, "7", "the child was reniced");
    // The audit names who did it shortly, the whole user agent on hover.
    wait_for(client, "#audit tr[data-outcome=\"completed\"] td.who").await;
    let who = text_of(client, "#audit tr[data-outcome=\"completed\"] td.who").await;
    assert!(who.starts_with("127.0.0.1 · Chrome "), "{who}");
    let title = client
        .execute("return document.querySelector('#audit td.who').title", vec![])
        .await
        .expect("script runs");
    assert!(title.as_str().unwrap_or("").contains("Mozilla/5.0"), "{title}");

    // A refused action is shown next to the control that asked for it: this process is gone by
    // the time the confirmation is sent.
    let mut gone = std::process::Command::new("sleep").arg("301").spawn().expect("sleep starts");
    let gone_pid = gone.id();
    let button = format!("button.terminate[data-pid=\"{gone_pid}\"]");
    until_true(client, "the second child", &format!("return !!document.querySelector('{button}')"))
        .await;
    client
        .execute(&format!("document.querySelector('{button}').click(); return true;"), vec![])
        .await
        .expect("click");
    wait_for(client, "dialog#confirm[open]").await;
    gone.kill().expect("kill");
    gone.wait().expect("reaped");
    client.find(Locator::Css("#confirm-ok")).await.expect("button").click().await.expect("click");
    wait_for(client, "#process-error:not([hidden])").await;
    let refusal = text_of(client, "#process-error").await;
    assert!(
        refusal.starts_with("Refused: 404") && refusal.contains(&gone_pid.to_string()),
        "{refusal}"
    );

    // A control action asks first: Cancel sends nothing more.
    let terminate = format!(
        "document.querySelector('button.terminate[data-pid=\"{pid}\"]').click(); return true;"
    );
    client.execute(&terminate, vec![]).await.expect("click");
    wait_for(client, "dialog#confirm[open]").await;
    assert!(text_of(client, "#confirm-text").await.contains(&format!("pid {pid}")));
    client
        .find(Locator::Css("#confirm-cancel"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    until_true(
        client,
        "the dialog closed",
        "return !document.querySelector('dialog#confirm').open",
    )
    .await;
    assert!(sleeper.try_wait().expect("status").is_none(), "Cancel must not terminate");
    let sent: Value = client
        .execute("return document.querySelectorAll('#commands li[data-command-id]').length", vec![])
        .await
        .expect("script runs");
    assert_eq!(sent, json!(1), "Cancel must send nothing (the one accepted command is the renice)");

    // Confirm sends it; the page reports the result and the audit log shows it.
    client.execute(&terminate, vec![]).await.expect("click");
    wait_for(client, "dialog#confirm[open]").await;
    client.find(Locator::Css("#confirm-ok")).await.expect("button").click().await.expect("click");
    until_true(
        client,
        "the terminate completed",
        "return document.querySelectorAll('#commands li[data-state=\"completed\"]').length === 2",
    )
    .await;
    let result = text_of(client, "#commands li[data-state=\"completed\"]").await;
    assert!(result.contains("terminate") && result.contains("TERM"), "{result}");
    assert_eq!(sleeper.wait().expect("exit").signal(), Some(15));
    until_true(
        client,
        "the renice and the terminate completed in the audit",
        "const done = [...document.querySelectorAll('#audit tr[data-outcome=\"completed\"]')] \
           .map(tr => tr.children[2].textContent); \
         return done.some(t => t.startsWith('renice')) && done.some(t => t.startsWith('terminate'));",
    )
    .await;

    browser::screenshot(client, "dashboard").await;
    // At phone width nothing overflows the page sideways.
    client.set_window_size(375, 800).await.expect("resize");
    until_true(
        client,
        "the page within a phone's width",
        "return window.innerWidth <= 400 \
         && document.documentElement.scrollWidth <= window.innerWidth",
    )
    .await;

    browser.client.close().await.expect("browser closes");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_run_takes_typed_input_replays_after_a_reload_and_can_be_killed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some((browser, app, _data)) = exec_page().await else { return };
    let client = &browser.client;
    let sandbox = text_of(client, "#sandbox").await;
    assert!(sandbox.starts_with("bubblewrap, cgroup v"), "{sandbox}");

    let code = client.find(Locator::Css("#code")).await.expect("editor");
    code.clear().await.expect("clear");
    code.send_keys("echo 'name?'\nread n\necho \"hi $n\"\nsleep 60").await.expect("type");
    client.find(Locator::Css("#run")).await.expect("button").click().await.expect("click");
    until_true(
        client,
        "the prompt",
        "return document.querySelector('#output').textContent.includes('name?')",
    )
    .await;

    let input = client.find(Locator::Css("#stdin")).await.expect("input");
    input.send_keys("Ada\n").await.expect("type");
    until_true(
        client,
        "the echo",
        "return document.querySelector('#output').textContent.includes('hi Ada')",
    )
    .await;

    // A reload reattaches to the run (its id is in the URL) and replays the whole output.
    client.refresh().await.expect("reload");
    until_true(
        client,
        "the replay",
        "return document.querySelector('#output').textContent === 'name?\\nhi Ada\\n'",
    )
    .await;

    client.find(Locator::Css("#kill")).await.expect("button").click().await.expect("click");
    wait_for(client, "#exit[data-reason=\"killed_by_user\"]").await;
    assert!(text_of(client, "#exit").await.starts_with("Ended: killed by user (signal KILL)"));
    wait_for(client, "#runs li a").await;

    browser.client.close().await.expect("browser closes");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_started_from_the_page_waits_for_an_approval_given_there() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some((browser, app, _data)) = exec_page().await else { return };
    let client = &browser.client;
    // The example workflow: a step, then one that needs approval.
    client
        .find(Locator::Css("#workflow-start"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    wait_for(client, "#approval:not([hidden])").await;
    assert_eq!(text_of(client, "#approval-prompt").await, "Deploy now?");
    client
        .find(Locator::Css("#approval-comment"))
        .await
        .expect("input")
        .send_keys("go")
        .await
        .expect("type");
    client.find(Locator::Css("#approve")).await.expect("button").click().await.expect("click");
    wait_for(client, "#workflow-events li[data-kind=\"finished-succeeded\"]").await;
    let decided = text_of(client, "#workflow-events li[data-kind=\"decision\"]").await;
    assert!(
        decided.starts_with("Step deploy: approved by 127.0.0.1") && decided.ends_with(": go"),
        "{decided}"
    );

    browser.client.close().await.expect("browser closes");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampling_console_sends_a_request_to_a_client_shows_it_complete_and_lists_a_tool_calls_rounds()
 {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(browser) = browser().await else { return };
    let client = &browser.client;
    let config = sse_apps::sampling::SamplingConfig::default();
    let app = spawn_app_on("127.0.0.1:0".parse().expect("addr"), Token::required("t0k"), |core| {
        sse_apps::sampling::router(core, config)
    })
    .await;
    // An MCP client that declares sampling, holding its stream open.
    let http = reqwest::Client::new();
    let url = format!("{}/sampling/mcp", app.base);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {"sampling": {}},
        "clientInfo": {"name": "browser-test-client", "version": "1.0"}}});
    let response = http.post(&url).bearer_auth("t0k").json(&init).send().await.expect("initialize");
    let session = response.headers()["mcp-session-id"].to_str().expect("id").to_owned();
    let stream = http
        .get(&url)
        .bearer_auth("t0k")
        .header("mcp-session-id", &session)
        .send()
        .await
        .expect("the stream");
    let mut requests = support::Stream::from_response(stream);

    client.goto(&format!("{}/sampling?token=t0k&view=all", app.base)).await.expect("page loads");
    wait_for(client, "#clients tr[data-handle]").await;
    let address = client.current_url().await.expect("the page's address");
    let clean = format!("{}/sampling?view=all", app.base);
    assert_eq!(address.as_str(), clean, "the token left the address; the rest stayed");
    assert!(text_of(client, "#clients tbody").await.contains("browser-test-client"));
    let message = client.find(Locator::Css("#message")).await.expect("textarea");
    message.clear().await.expect("clear");
    message.send_keys("Name a colour.").await.expect("type");
    client.find(Locator::Css("#send")).await.expect("button").click().await.expect("click");
    wait_for(client, "#requests li[data-state=\"sent\"] .countdown").await;

    let asked = requests.next().await.expect("the sampling request");
    let asked: Value = serde_json::from_str(&asked.data).expect("JSON");
    assert_eq!(asked["params"]["messages"][0]["content"]["text"], "Name a colour.");
    let answer = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "role": "assistant", "content": {"type": "text", "text": "Teal."}, "model": "test-model", "stopReason": "endTurn"}});
    let posted = http
        .post(&url)
        .bearer_auth("t0k")
        .header("mcp-session-id", &session)
        .json(&answer)
        .send()
        .await
        .expect("answer");
    assert_eq!(posted.status(), 202);
    wait_for(client, "#requests li[data-state=\"done\"] .result").await;
    assert_eq!(text_of(client, "#requests li[data-state=\"done\"] .result").await, "Teal.");
    assert!(
        text_of(client, "#requests li[data-state=\"done\"]").await.contains("model test-model")
    );
    browser::screenshot(client, "sampling").await;

    // A 2026-07-28 tool call, by rounds: the console lists its round, then its outcome.
    let modern = |extra: Value| {
        let mut params = json!({"name": "classify_sentiment", "arguments": {"text": "Lovely."},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "modern-browser-test", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {"sampling": {}}}});
        params.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        http.post(&url)
            .bearer_auth("t0k")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "classify_sentiment")
            .json(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params}))
            .send()
    };
    let first: Value = modern(json!({})).await.expect("round 1").json().await.expect("JSON");
    wait_for(client, "#calls li[data-state=\"asking\"]").await;
    let retry = json!({"requestState": first["result"]["requestState"], "inputResponses": {"sample": {
        "role": "assistant", "content": {"type": "text", "text": "positive"}, "model": "test-model"}}});
    modern(retry).await.expect("round 2");
    wait_for(client, "#calls li[data-state=\"done\"] .result").await;
    let call = text_of(client, "#calls li[data-state=\"done\"]").await;
    assert!(call.contains("classify_sentiment · 2026-07-28 · modern-browser-test"), "{call}");
    assert!(call.contains("sampling/createMessage → test-model: positive"), "{call}");

    browser.client.close().await.expect("browser closes");
    app.stop().await;
}

/// The text on the page's terminal (its scrollback and screen), one line per row.
const TERMINAL_TEXT: &str = "const b = window.execTerminal.buffer.active; const rows = []; \
     for (let i = 0; i < b.length; i++) rows.push(b.getLine(i).translateToString(true)); \
     return rows.join('\\n');";

/// The terminal's text now.
async fn terminal_text(client: &Client) -> String {
    let text = client.execute(TERMINAL_TEXT, vec![]).await.expect("script runs");
    text.as_str().expect("text").to_owned()
}

/// Waits until the terminal shows `text`.
async fn terminal_shows(client: &Client, text: &str) {
    let script = format!(
        "return window.execTerminal !== undefined && (() => {{ {TERMINAL_TEXT} }})().includes({});",
        json!(text)
    );
    until_true(client, &format!("{text:?} in the terminal"), &script).await;
}

/// Types `keys` (WebDriver key codes allowed) into the terminal.
async fn type_in_terminal(client: &Client, keys: &str) {
    let input = client.find(Locator::Css("#terminal-view .xterm-helper-textarea")).await;
    input.expect("the terminal's input").send_keys(keys).await.expect("typing");
}

const TAB: &str = "\u{E004}";
const ARROW_UP: &str = "\u{E013}";
/// Ctrl held for the next key, then released.
fn ctrl(key: char) -> String {
    format!("\u{E009}{key}\u{E000}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exec_terminal_runs_a_shell_a_repl_and_top_as_a_terminal_would() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some((browser, app, _data)) = exec_page().await else { return };
    let client = &browser.client;

    // The editor's code survives a reload.
    let code = client.find(Locator::Css("#code")).await.expect("editor");
    code.clear().await.expect("clear");
    code.send_keys("bash --norc --noprofile").await.expect("type");
    client.execute("document.querySelector('#language').value = 'argv'; document.querySelector('#language').dispatchEvent(new Event('input'));", vec![]).await.expect("script");
    client.find(Locator::Css("#terminal")).await.expect("box").click().await.expect("click");
    client.refresh().await.expect("reload");
    until_true(
        client,
        "the saved editor",
        "return document.querySelector('#code').value === 'bash --norc --noprofile' \
         && document.querySelector('#language').value === 'argv' \
         && document.querySelector('#terminal').checked",
    )
    .await;

    client.find(Locator::Css("#run")).await.expect("button").click().await.expect("click");
    terminal_shows(client, "$ ").await;
    // Colours arrive as colours: the cells of "red" are in palette colour 1.
    type_in_terminal(client, "printf '\\033[31mred\\033[0m\\n'\n").await;
    terminal_shows(client, "\nred").await;
    let red = client
        .execute(
            "const b = window.execTerminal.buffer.active; \
             for (let i = 0; i < b.length; i++) { const line = b.getLine(i); \
               if (line.translateToString(true) === 'red') { const cell = line.getCell(0); \
                 return cell.isFgPalette() && cell.getFgColor() === 1; } } return false;",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(red, json!(true), "red arrives as palette colour 1");
    // TERM says what the terminal is.
    type_in_terminal(client, "echo term=$TERM colours=$(tput colors)\n").await;
    terminal_shows(client, "term=xterm-256color colours=256").await;
    // Tab completes a file name in bash.
    type_in_terminal(client, "touch alphabet_soup\n").await;
    type_in_terminal(client, &format!("ls alph{TAB}")).await;
    terminal_shows(client, "ls alphabet_soup").await;
    type_in_terminal(client, "\n").await;
    // Ctrl-C interrupts a sleep: the next command runs long before the sleep would end.
    type_in_terminal(client, "sleep 300\n").await;
    terminal_shows(client, "sleep 300").await;
    type_in_terminal(client, &ctrl('c')).await;
    type_in_terminal(client, "echo after-$((6*7))\n").await;
    terminal_shows(client, "\nafter-42").await;

    // A program's query to the terminal (where is the cursor?) is answered.
    type_in_terminal(client, "printf '\\033[6n'; read -s -d R -t 5 cpr; echo \"cpr=${#cpr}\"\n")
        .await;
    terminal_shows(client, "\ncpr=").await;
    assert!(!terminal_text(client).await.contains("\ncpr=0"), "the query was answered");

    // A reload mid-run redraws the screen from the replay, and the run goes on.
    client.refresh().await.expect("reload");
    terminal_shows(client, "\nafter-42").await;
    terminal_shows(client, "ls alphabet_soup").await;
    // The replayed query is not answered again: nobody typed anything for it.
    type_in_terminal(client, "read -t 1 -r late; echo \"late=${#late}\"\n").await;
    terminal_shows(client, "\nlate=0").await;

    // Arrow-up recalls the last line in the Python REPL.
    type_in_terminal(client, "python3 -q\n").await;
    terminal_shows(client, ">>> ").await;
    type_in_terminal(client, "print(6*7)\n").await;
    terminal_shows(client, "\n42").await;
    type_in_terminal(client, &format!("{ARROW_UP}\n")).await;
    let twice = format!(
        "return (() => {{ {TERMINAL_TEXT} }})().split('\\n').filter(l => l === '42').length === 2;"
    );
    until_true(client, "42 twice", &twice).await;
    type_in_terminal(client, &ctrl('d')).await;
    // A full-screen program draws, and `q` quits it.
    type_in_terminal(client, "top -d 1\n").await;
    terminal_shows(client, "load average").await;
    browser::screenshot(client, "exec").await;
    type_in_terminal(client, "q").await;
    type_in_terminal(client, "echo top-quit\n").await;
    terminal_shows(client, "\ntop-quit").await;
    // Ctrl-D ends the shell, and with it the run.
    type_in_terminal(client, &ctrl('d')).await;
    wait_for(client, "#exit[data-reason=\"exited\"]").await;

    browser.client.close().await.expect("browser closes");
    app.stop().await;
}
