//! The MCP tools this server offers, each answered by asking the calling client's model
//! (`sampling/createMessage`). `summarize` also takes a `length`; called without one by a client
//! that can show a form (elicitation), it asks the user for one first. Both eras use what is
//! here: the handshake era asks down the stream, the modern era by MRTR.

use serde_json::{Value, json};

/// The summary lengths `summarize` knows, with what each allows.
const LENGTHS: [(&str, &str); 3] = [
    ("short", "one sentence"),
    ("medium", "at most three sentences"),
    ("long", "at most six sentences"),
];

/// The length a summary gets when the user declines to choose one.
pub const DEFAULT_LENGTH: &str = "medium";

/// The `tools/list` result.
pub fn list() -> Value {
    let text = json!({ "type": "object", "properties": { "text": { "type": "string" } }, "required": ["text"] });
    let summarize = json!({ "type": "object", "properties": {
        "text": { "type": "string" },
        "length": { "type": "string", "enum": LENGTHS.map(|(name, _)| name),
            "description": "How long a summary; asked of the user (elicitation) when left out" }
    }, "required": ["text"] });
    json!({ "tools": [
        { "name": "summarize", "description": "Summarize a text in a few sentences, using the client's model.", "inputSchema": summarize },
        { "name": "classify_sentiment", "description": "Say whether a text is positive, negative or neutral, using the client's model.", "inputSchema": text },
        { "name": "explain_code", "description": "Explain what a piece of code does, using the client's model.", "inputSchema": {
            "type": "object",
            "properties": { "code": { "type": "string" }, "language": { "type": "string" } },
            "required": ["code"]
        } },
    ] })
}

/// The `sampling/createMessage` params for a call of tool `name` with `arguments`.
pub fn sampling_params(name: &str, arguments: &Value) -> Result<Value, String> {
    let field = |key: &str| {
        arguments
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| format!("{name} needs a non-empty string {key:?}"))
    };
    let (system, prompt, max_tokens, hints) = match name {
        "summarize" => (
            format!("You summarize texts faithfully in {}.", sentences(arguments.get("length"))?),
            format!("Summarize this text:\n\n{}", field("text")?),
            300,
            ["claude-haiku-4-5", "gpt-4o-mini"],
        ),
        "classify_sentiment" => (
            "You classify sentiment. Answer with one word: positive, negative or neutral."
                .to_owned(),
            format!("What is the sentiment of this text?\n\n{}", field("text")?),
            5,
            ["claude-haiku-4-5", "gpt-4o-mini"],
        ),
        "explain_code" => {
            let language =
                arguments.get("language").and_then(Value::as_str).unwrap_or("the given language");
            (
                "You explain code clearly and briefly to a programmer.".to_owned(),
                format!(
                    "Explain what this code in {language} does:\n\n```\n{}\n```",
                    field("code")?
                ),
                600,
                ["claude-sonnet", "gpt-4o"],
            )
        }
        other => return Err(format!("unknown tool {other:?}")),
    };
    Ok(json!({
        "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
        "systemPrompt": system,
        "modelPreferences": {
            "hints": hints.map(|h| json!({ "name": h })),
            "costPriority": 0.5, "speedPriority": 0.5, "intelligencePriority": 0.5
        },
        "includeContext": "none",
        "maxTokens": max_tokens,
        "metadata": { "tool": name }
    }))
}

/// The text of a `sampling/createMessage` result (its content, or the text blocks of it).
pub fn result_text(result: &Value) -> Option<String> {
    let content = result.get("content")?;
    let blocks: Vec<&Value> = match content {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let text: Vec<&str> = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    (!text.is_empty()).then(|| text.join("\n"))
}

/// How many sentences a summary of `length` may have: `medium`'s when none is given, an error
/// for anything but a known length.
fn sentences(length: Option<&Value>) -> Result<&'static str, String> {
    let Some(length) = length else {
        return Ok(LENGTHS[1].1);
    };
    let name = length.as_str().unwrap_or_default();
    LENGTHS.iter().find(|(known, _)| *known == name).map(|(_, n)| *n).ok_or_else(|| {
        format!("summarize: length must be one of {:?}", LENGTHS.map(|(name, _)| name))
    })
}

/// Whether a call of `name` with `arguments` would ask the user for a summary length (it does,
/// of clients that declared form elicitation, when the caller left the length out).
pub fn wants_length(name: &str, arguments: &Value) -> bool {
    name == "summarize" && arguments.get("length").is_none()
}

/// The arguments with the length the user chose.
pub fn with_length(arguments: &Value, length: &str) -> Value {
    let mut arguments = arguments.clone();
    if let Some(map) = arguments.as_object_mut() {
        map.insert("length".to_owned(), json!(length));
    }
    arguments
}

/// The `elicitation/create` params (form mode) that ask the user for a summary length.
pub fn length_question() -> Value {
    json!({
        "mode": "form",
        "message": "How long should the summary be?",
        "requestedSchema": {
            "type": "object",
            "properties": { "length": {
                "type": "string", "title": "Summary length",
                "enum": LENGTHS.map(|(name, _)| name),
                "default": DEFAULT_LENGTH
            } },
            "required": ["length"]
        }
    })
}

/// What the user did with the length question.
#[derive(Debug, PartialEq, Eq)]
pub enum LengthAnswer {
    /// Accepted with a length: the summary gets it.
    Chosen(String),
    /// Declined to choose: the summary gets [`DEFAULT_LENGTH`].
    Declined,
    /// Cancelled: the call ends with a tool error saying so.
    Cancelled,
    /// Not an `ElicitResult` with a known length; why.
    Invalid(String),
}

/// Reads an `ElicitResult` for [`length_question`].
pub fn length_answer(result: &Value) -> LengthAnswer {
    match result.get("action").and_then(Value::as_str) {
        Some("accept") => {
            let chosen = result.pointer("/content/length");
            match chosen.and_then(Value::as_str) {
                Some(name) if sentences(chosen).is_ok() => LengthAnswer::Chosen(name.to_owned()),
                _ => LengthAnswer::Invalid(format!(
                    "the accepted answer must give length as one of {:?}",
                    LENGTHS.map(|(name, _)| name)
                )),
            }
        }
        Some("decline") => LengthAnswer::Declined,
        Some("cancel") => LengthAnswer::Cancelled,
        _ => LengthAnswer::Invalid("action must be accept, decline or cancel".to_owned()),
    }
}
