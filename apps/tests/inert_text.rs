//! Hostile text on every page renders as inert text, in a real browser (headless Chromium): a
//! corpus of script and HTML payloads goes through chat messages, nicknames and room names, exec
//! output on both pipes, workflow names, prompts and comments, and the dashboard's process, user,
//! disk, interface and sensor names. Each payload must show as the same text, no element of it may
//! exist in the page, and none of its scripts may run (each would set `window.pwned`).
//!
//! Room names and nicknames are restricted to safe characters by the server, so payloads there
//! must be refused, and the refusal shown as text, even when the page's own checks are bypassed.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

#[path = "support/browser.rs"]
mod browser;
#[path = "support/dashboard.rs"]
mod dashboard_source;
mod support;

use browser::{ONE_AT_A_TIME, browser, exec_page, until_true, wait_for};
use dashboard_source::ScriptedSource;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use sse_apps::dashboard::sample::ProcessInfo;
use sse_core::edge::auth::Token;
use support::spawn_app_on;

/// Each payload is at most 64 bytes (the longest a workflow or step name may be) and says
/// `pwned`, which the injection check looks for.
const HOSTILE: [&str; 8] = [
    r#"<img src=x onerror="pwned='img'">"#,
    "<script>pwned='script'</script>",
    r#"<svg onload="pwned='svg'"></svg>"#,
    r#""><iframe src="javascript:parent.pwned='iframe'"></iframe>"#,
    r#"'><a href="javascript:pwned='a'">pwned link</a>"#,
    "<style>body{display:none}</style>pwned style",
    r#"</textarea><details open ontoggle="pwned='details'">"#,
    "{{7*7}} ${7*7} &lt;b&gt;pwned&lt;/b&gt; &amp;",
];

/// Fails the test if any payload became markup or ran: an element with an event-handler
/// attribute or a `javascript:` URL, a risky element carrying the marker, or `window.pwned` set.
async fn assert_inert(client: &Client, place: &str) {
    let found = client
        .execute(
            r#"const risky = ["SCRIPT", "STYLE", "IFRAME", "SVG", "IMG", "DETAILS", "OBJECT", "EMBED"];
               const urls = ["href", "src", "action", "formaction", "xlink:href"];
               const injected = [...document.body.querySelectorAll("*")].filter((e) =>
                 [...e.attributes].some((a) => a.name.startsWith("on")
                   || (urls.includes(a.name) && /^\s*javascript:/i.test(a.value)))
                 || (risky.includes(e.tagName.toUpperCase()) && e.outerHTML.includes("pwned")));
               return { pwned: window.pwned === undefined ? null : String(window.pwned),
                        injected: injected.map((e) => e.outerHTML.slice(0, 120)) };"#,
            vec![],
        )
        .await
        .expect("script runs");
    assert_eq!(
        found,
        json!({ "pwned": null, "injected": [] }),
        "markup ran or rendered in {place}"
    );
}

/// Waits until the text of the elements `css` matches includes every payload.
async fn until_every_payload_shows(client: &Client, css: &str, what: &str) {
    let script = format!(
        "const shown = [...document.querySelectorAll({css:?})].map((e) => e.textContent).join('\\n');
         return {payloads}.every((p) => shown.includes(p));",
        payloads = json!(HOSTILE),
    );
    until_true(client, what, &script).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_messages_stay_text_and_hostile_names_are_refused_as_text() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(browser) = browser().await else { return };
    let client = &browser.client;
    let data = tempfile::tempdir().unwrap();
    let config = sse_apps::chat::ChatConfig::new(data.path().to_owned());
    let app = support::spawn_app(move |core| sse_apps::chat::router(core, &config).unwrap()).await;
    client.goto(&format!("{}/chat", app.base)).await.unwrap();

    // The page's own form checks are bypassed: the join goes to the server as a script would.
    for payload in HOSTILE {
        for (room, nick, refusal) in [
            (payload, "Ada", "a room name is 1 to 32 of a-z"),
            ("lobby", payload, "a nickname is 1 to 24 letters"),
        ] {
            client
                .execute(
                    "return enterRoom(arguments[0], arguments[1]);",
                    vec![json!(room), json!(nick)],
                )
                .await
                .unwrap();
            let shown = client.find(Locator::Id("join-error")).await.unwrap().text().await.unwrap();
            assert!(shown.starts_with(refusal), "{payload:?} was not refused: {shown:?}");
            assert_inert(client, "the chat's join form").await;
        }
    }
    let joined: Value = client
        .execute("return document.querySelector('#room-view').hidden;", vec![])
        .await
        .unwrap();
    assert_eq!(joined, json!(true), "no hostile name got into a room");

    // A stored "last room" that was tampered with is refused the same way on load.
    client
        .execute(
            "sessionStorage.setItem('chat.last', JSON.stringify({ room: arguments[0], nick: 'Ada' }));",
            vec![json!(HOSTILE[0])],
        )
        .await
        .unwrap();
    client.refresh().await.unwrap();
    until_true(
        client,
        "the refusal",
        "return document.querySelector('#join-error').textContent !== ''",
    )
    .await;
    assert_inert(client, "the chat page restored from storage").await;

    // Messages: typed and sent as people do, shown live and again from history after a reload.
    client.find(Locator::Id("room-name")).await.unwrap().clear().await.unwrap();
    client.find(Locator::Id("room-name")).await.unwrap().send_keys("lobby").await.unwrap();
    client.find(Locator::Id("nick")).await.unwrap().send_keys("Ada").await.unwrap();
    client.find(Locator::Id("join")).await.unwrap().click().await.unwrap();
    wait_for(client, "#conn-status[data-state=\"open\"]").await;
    for payload in HOSTILE {
        client.find(Locator::Id("text")).await.unwrap().send_keys(payload).await.unwrap();
        client.find(Locator::Id("send")).await.unwrap().click().await.unwrap();
    }
    until_every_payload_shows(client, "#messages .text", "every message").await;
    assert_inert(client, "live chat messages").await;
    client.refresh().await.unwrap();
    wait_for(client, "#conn-status[data-state=\"open\"]").await;
    until_every_payload_shows(client, "#messages .text", "every message from history").await;
    assert_inert(client, "chat history").await;

    browser.client.close().await.unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_output_and_workflow_texts_stay_text() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some((browser, app, _data)) = exec_page().await else { return };
    let client = &browser.client;

    // Output on both pipes, written by the program byte for byte.
    let corpus = HOSTILE.join("\n");
    let code = format!("cat <<'END'\n{corpus}\nEND\ncat >&2 <<'END'\n{corpus}\nEND\n");
    let started: Value = reqwest::Client::new()
        .post(format!("{}/exec/runs", app.base))
        .bearer_auth("t0k")
        .json(&json!({ "language": "sh", "code": code }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = started["id"].as_str().unwrap();
    client.goto(&format!("{}/exec?token=t0k#run={id}", app.base)).await.unwrap();
    wait_for(client, "#exit[data-reason=\"exited\"]").await;
    until_true(
        client,
        "both copies of the output",
        &format!(
            "return document.querySelector('#output').textContent === {};",
            json!(format!("{corpus}\n{corpus}\n"))
        ),
    )
    .await;
    assert_inert(client, "exec output").await;

    // A workflow whose name, step names, prompt and rejection comment are all payloads.
    let definition = json!({
        "name": HOSTILE[3],
        "steps": [
            { "name": HOSTILE[0], "approval": { "prompt": HOSTILE[1] } },
            { "name": HOSTILE[2], "language": "sh", "code": "true" },
        ],
    });
    client
        .execute(
            "document.querySelector('#workflow').value = arguments[0];
             document.querySelector('#workflow-start').click();",
            vec![json!(definition.to_string())],
        )
        .await
        .unwrap();
    wait_for(client, "#approval:not([hidden])").await;
    client
        .execute(
            "document.querySelector('#approval-comment').value = arguments[0];",
            vec![json!(HOSTILE[4])],
        )
        .await
        .unwrap();
    client.find(Locator::Css("#reject")).await.unwrap().click().await.unwrap();
    wait_for(client, "#workflow-events li[data-kind=\"finished-rejected\"]").await;
    let shown = [HOSTILE[0], HOSTILE[1], HOSTILE[3], HOSTILE[4]];
    let all_shown: Value = client
        .execute(
            "const text = document.querySelector('#workflow-events').textContent
                 + document.querySelector('#approval-prompt').textContent;
             return arguments[0].every((p) => text.includes(p));",
            vec![json!(shown)],
        )
        .await
        .unwrap();
    assert_eq!(all_shown, json!(true), "every workflow text is shown as written");
    assert_inert(client, "the workflow view").await;

    browser.client.close().await.unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_names_from_the_machine_stay_text() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(browser) = browser().await else { return };
    let client = &browser.client;
    // Any local user names their processes; devices name their sensors.
    let source = ScriptedSource::with_cpu(&[10.0]);
    {
        let mut script = source.script.lock().unwrap();
        script.names = HOSTILE.iter().map(|p| (*p).to_owned()).collect();
        script.processes = (0..HOSTILE.len())
            .map(|i| ProcessInfo {
                pid: 3_000_000 + i as u32,
                name: HOSTILE[i].to_owned(),
                user: Some(HOSTILE[HOSTILE.len() - 1 - i].to_owned()),
                cpu: Some(1.0),
                memory: 1 << 20,
            })
            .collect();
    }
    let data = tempfile::tempdir().unwrap();
    let mut config = sse_apps::dashboard::DashboardConfig::new(data.path().to_owned());
    config.interval = std::time::Duration::from_millis(200);
    let app = spawn_app_on("127.0.0.1:0".parse().unwrap(), Token::required("t0k"), |core| {
        sse_apps::dashboard::router_with_sources(core, config, source.clone(), source).unwrap()
    })
    .await;
    client.goto(&format!("{}/dashboard?token=t0k", app.base)).await.unwrap();
    wait_for(client, "#conn-status[data-state=\"open\"]").await;
    for (table, what) in [
        ("#processes tbody td", "process and user names"),
        ("#disks tbody td", "disk names and mounts"),
        ("#networks tbody td", "interface names"),
        ("#temperatures li", "sensor labels"),
    ] {
        until_every_payload_shows(client, table, what).await;
    }
    let swap: Value = client
        .execute(
            "return document.querySelector('#now').textContent.includes(arguments[0]);",
            vec![json!(HOSTILE[0])],
        )
        .await
        .unwrap();
    assert_eq!(swap, json!(true), "the reason for no swap is shown as written");
    assert_inert(client, "the dashboard's tables").await;

    // The confirmation names the process: as text too.
    client
        .execute(
            "document.querySelector('button.terminate[data-pid=\"3000000\"]').click();",
            vec![],
        )
        .await
        .unwrap();
    wait_for(client, "dialog#confirm[open]").await;
    let asked = client.find(Locator::Css("#confirm-text")).await.unwrap().text().await.unwrap();
    assert!(asked.contains(HOSTILE[0]), "the dialog shows the name as written: {asked:?}");
    assert_inert(client, "the confirmation dialog").await;
    client.find(Locator::Css("#confirm-cancel")).await.unwrap().click().await.unwrap();

    browser.client.close().await.unwrap();
    app.stop().await;
}
