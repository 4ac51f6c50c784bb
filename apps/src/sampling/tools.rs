//! The MCP tools this server offers, each answered by asking the calling client's model
//! (`sampling/createMessage`).

use serde_json::{Value, json};

/// The `tools/list` result.
pub fn list() -> Value {
    let text = json!({ "type": "object", "properties": { "text": { "type": "string" } }, "required": ["text"] });
    json!({ "tools": [
        { "name": "summarize", "description": "Summarize a text in a few sentences, using the client's model.", "inputSchema": text },
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
            "You summarize texts faithfully in at most three sentences.",
            format!("Summarize this text:\n\n{}", field("text")?),
            300,
            ["claude-3-5-haiku", "gpt-4o-mini"],
        ),
        "classify_sentiment" => (
            "You classify sentiment. Answer with one word: positive, negative or neutral.",
            format!("What is the sentiment of this text?\n\n{}", field("text")?),
            5,
            ["claude-3-5-haiku", "gpt-4o-mini"],
        ),
        "explain_code" => {
            let language =
                arguments.get("language").and_then(Value::as_str).unwrap_or("the given language");
            (
                "You explain code clearly and briefly to a programmer.",
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
