//! The rounds of tool calls, for the console: every time a tool asks its client something
//! (`sampling/createMessage`, `elicitation/create`), what was asked, what came back, how long
//! the client took, and which instance asked and which got the answer; then how the call ended.
//! Both eras are shown alike: in the handshake era a round is a request down the stream and its
//! POSTed answer; in 2026-07-28 it is an `InputRequiredResult` and the retry that answers it,
//! which may reach another instance.
//!
//! Each change is one `tool_round` or `tool_finished` event on `GET /sampling/events` carrying the
//! whole round (a round is sent when asked, and again when answered; the console keeps the
//! latest by call and round number), and the last [`KEPT`] of this instance are in the snapshot.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use sse_core::sync::lock;

use crate::shared::clock::unix_millis;

/// Records kept for the snapshot.
pub const KEPT: usize = 500;

/// Which tool call a round belongs to.
#[derive(Clone, Debug, Serialize)]
pub struct CallId {
    /// A random id, carried in the modern era's `requestState` from round to round.
    pub call: String,
    /// The tool.
    pub tool: String,
    /// `handshake` or `2026-07-28`.
    pub era: &'static str,
    /// The client's name (`clientInfo.name`).
    pub client: String,
}

/// One question to the client, asked or answered.
#[derive(Clone, Debug, Serialize)]
pub struct Round {
    /// The call.
    #[serde(flatten)]
    pub id: CallId,
    /// 1 for the first question of the call.
    pub n: u32,
    /// The methods asked (`sampling/createMessage`, `elicitation/create`).
    pub asked: Vec<String>,
    /// What came back, in a few words; `None` while the client is working on it.
    pub answer: Option<String>,
    /// How long the client took, once it answered.
    pub ms: Option<u64>,
    /// The instance that asked.
    pub asked_on: String,
    /// The instance the answer reached, once it did.
    pub answered_on: Option<String>,
    /// Ms since the epoch.
    pub at: u64,
}

/// This instance's recent rounds and outcomes, as their events' data.
#[derive(Debug, Default)]
pub struct Rounds(Mutex<VecDeque<(&'static str, Value)>>);

impl Rounds {
    /// Keeps `data` as the latest event `name`; the caller publishes it.
    pub fn keep(&self, name: &'static str, data: Value) {
        let mut kept = lock(&self.0);
        kept.push_front((name, data));
        kept.truncate(KEPT);
    }

    /// Every kept record, oldest first, each with its `kind` (the event's name).
    pub fn list(&self) -> Vec<Value> {
        lock(&self.0)
            .iter()
            .rev()
            .map(|(name, data)| {
                let mut record = data.clone();
                record["kind"] = json!(name);
                record
            })
            .collect()
    }
}

/// A round just asked.
pub fn asked(id: &CallId, n: u32, asked: Vec<String>, instance: &str) -> Round {
    Round {
        id: id.clone(),
        n,
        asked,
        answer: None,
        ms: None,
        asked_on: instance.to_owned(),
        answered_on: None,
        at: unix_millis(),
    }
}

impl Round {
    /// The same round, answered with `answer` on `instance`, `took` after it was asked.
    pub fn answered(mut self, answer: String, took: Duration, instance: &str) -> Round {
        self.answer = Some(answer);
        self.ms = Some(took.as_millis() as u64);
        self.answered_on = Some(instance.to_owned());
        self.at = unix_millis();
        self
    }
}

/// How a call ended, for its `tool_finished` event: from its result.
pub fn finished(id: &CallId, result: &Value) -> Value {
    let text = super::tools::result_text(result).unwrap_or_default();
    let outcome = if result.get("isError") == Some(&Value::Bool(true)) { "error" } else { "done" };
    let mut data = json!(id);
    data["outcome"] = json!(outcome);
    data["text"] = json!(shorten(&text));
    data["at"] = json!(unix_millis());
    data
}

/// An answer to `method` in a few words: the form's action and content, or the completion's
/// model and the start of its text.
pub fn summary(method: &str, answer: &Value) -> String {
    if method == "elicitation/create" {
        let action = answer.get("action").and_then(Value::as_str).unwrap_or("?");
        return match answer.get("content") {
            Some(content) if action == "accept" => shorten(&format!("accept {content}")),
            _ => shorten(action),
        };
    }
    let model = answer.get("model").and_then(Value::as_str).unwrap_or("an unnamed model");
    let text = super::tools::result_text(answer).unwrap_or_default();
    format!("{}: {}", shorten(model), shorten(&text))
}

/// The first 80 characters: what a record keeps of any text a client chose (its name, a tool's
/// name, an answer), so that 500 records stay small whatever the clients send.
pub fn shorten(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}
