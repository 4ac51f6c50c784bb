//! How one sampling request ended, said twice from one value: to the server, as the JSON-RPC
//! answer, and to the person running the client, as one line on stdout.
//!
//! The line is the client's log of its work: one per request, whatever became of it, so a
//! person (or a script reading stdout) can see what each request cost and why any failed
//! without turning on tracing. It reads `<outcome> req <id>: <what>, <ms> ms`, e.g.
//!
//! ```text
//! answered req 7: gpt-4o-mini, 123 in / 45 out tokens, stop: endTurn, 812 ms
//! rejected req 8: the person rejected the request, 4021 ms
//! failed req 9: the model call to claude-haiku-4-5 failed: the provider refused the API key (401): check ANTHROPIC_API_KEY, 35 ms
//! ```
//!
//! The time is from the request's arrival to its answer being ready (approval included), the
//! wait the server saw.

use std::time::Duration;

use serde_json::{Value, json};

use super::llm::Completion;
use crate::sampling::mcp;

/// What became of one `sampling/createMessage`.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The model answered and the answer is going back.
    Answered(Completion),
    /// A person rejected it at one of the two checkpoints.
    Rejected(Checkpoint),
    /// It could not be answered: the JSON-RPC error code and a message saying why.
    Failed {
        /// The JSON-RPC error code.
        code: i64,
        /// Why, in words that name what to change.
        message: String,
    },
}

/// MCP's two human-in-the-loop checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    /// Before the request reaches the model.
    Request,
    /// Before the completion reaches the server.
    Completion,
}

impl Outcome {
    /// The JSON-RPC response for the server.
    pub fn answer(&self, id: &Value) -> Value {
        let error = |code, message: &str| {
            let id = serde_json::from_value(id.clone())
                .unwrap_or(sse_core::wire::jsonrpc::Id::Number(0));
            mcp::error(Some(&id), code, message)
        };
        match self {
            Outcome::Answered(completion) => json!({ "jsonrpc": "2.0", "id": id, "result": {
                "role": "assistant",
                "content": { "type": "text", "text": completion.text },
                "model": completion.model,
                "stopReason": completion.stop_reason,
            } }),
            Outcome::Rejected(Checkpoint::Request) => {
                error(mcp::codes::USER_REJECTED, "User rejected sampling request")
            }
            Outcome::Rejected(Checkpoint::Completion) => {
                error(mcp::codes::USER_REJECTED, "User rejected the completion")
            }
            Outcome::Failed { code, message } => error(*code, message),
        }
    }

    /// The line for stdout, for request `id` that took `took`.
    pub fn line(&self, id: &Value, took: Duration) -> String {
        let (verb, what) = match self {
            Outcome::Answered(completion) => ("answered", completion.summary()),
            Outcome::Rejected(Checkpoint::Request) => {
                ("rejected", "the person rejected the request".to_owned())
            }
            Outcome::Rejected(Checkpoint::Completion) => {
                ("rejected", "the person rejected the completion".to_owned())
            }
            Outcome::Failed { message, .. } => ("failed", message.clone()),
        };
        line(verb, id, &what, took)
    }
}

/// `<verb> req <id>: <what>, <ms> ms`; also for requests that end without an [`Outcome`]
/// (cancelled by the server, abandoned with their session).
pub fn line(verb: &str, id: &Value, what: &str, took: Duration) -> String {
    format!("{verb} req {}: {what}, {} ms", shown(id), took.as_millis())
}

/// A request id as a person reads it: `7`, or `abc` for the string id `"abc"`.
pub fn shown(id: &Value) -> String {
    match id {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::client::llm::Usage;

    fn completion(stop: Option<&str>, usage: Usage) -> Completion {
        Completion {
            text: "Hi".into(),
            model: "gpt-4o-mini".into(),
            stop_reason: stop.map(str::to_owned),
            usage,
        }
    }

    #[test]
    fn each_outcome_is_one_line_with_its_model_tokens_time_or_reason() {
        let counted = Usage { input: Some(123), output: Some(45) };
        let ms = Duration::from_millis(812);
        assert_eq!(
            Outcome::Answered(completion(Some("endTurn"), counted)).line(&json!(7), ms),
            "answered req 7: gpt-4o-mini, 123 in / 45 out tokens, stop: endTurn, 812 ms"
        );
        assert_eq!(
            Outcome::Answered(completion(None, Usage::default())).line(&json!("a-1"), ms),
            "answered req a-1: gpt-4o-mini, tokens not reported, 812 ms",
            "no stop reason, no Some(..), and a string id without its quotes"
        );
        assert_eq!(
            Outcome::Rejected(Checkpoint::Completion).line(&json!(8), ms),
            "rejected req 8: the person rejected the completion, 812 ms"
        );
        let failed = Outcome::Failed { code: -32603, message: "the model call failed".into() };
        assert_eq!(failed.line(&json!(9), ms), "failed req 9: the model call failed, 812 ms");
        assert_eq!(failed.answer(&json!(9))["error"]["code"], -32603);
        assert_eq!(
            Outcome::Rejected(Checkpoint::Request).answer(&json!(9))["error"]["code"],
            mcp::codes::USER_REJECTED
        );
    }
}
