//! Tool calls in the modern era (2026-07-28), by multi round-trip requests (MRTR): the server
//! never sends the client a request. A call that needs the client's model answers at once with
//! an `InputRequiredResult` whose `inputRequests` hold a `sampling/createMessage` (and, for
//! `summarize` without a `length`, first an `elicitation/create` form); the client gathers the
//! answers and calls again with `inputResponses` and the `requestState` it was given, which says
//! what this round asked ([`super::request_state`]). Nothing is kept between rounds: any instance
//! holding the key can serve the retry.
//!
//! | the call brings | the answer |
//! |---|---|
//! | no `requestState` | the first `InputRequiredResult` |
//! | a `requestState` that does not verify, has expired, or belongs to another caller or call | a JSON-RPC error (-32602, `data.reason` says which) |
//! | `inputResponses` that are not an object, or lack an asked key, or hold a non-object there | the same questions again, in a new `InputRequiredResult` (the spec's rule) |
//! | the length answered (`accept`, `decline`: the default length; `cancel`: a tool error) | the sampling round |
//! | the completion | the tool's result |
//!
//! Only what the client declared in this request's `_meta` is asked: no sampling, a tool error
//! saying so; no form elicitation, the default length without a question.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::mcp::{self, codes};
use super::request_state::{Binding, RoundState, StateKey, digest};
use super::tools::{self, LengthAnswer};
use crate::dashboard::system::unix_millis;

/// The `inputRequests` key of the length question.
pub const LENGTH_KEY: &str = "length";
/// The `inputRequests` key of the sampling request.
pub const SAMPLE_KEY: &str = "sample";

/// A JSON-RPC error to answer the call with.
#[derive(Debug)]
pub struct CallError {
    /// Its code.
    pub code: i64,
    /// Its message.
    pub message: String,
    /// Its data, if any.
    pub data: Option<Value>,
}

impl CallError {
    fn params(message: impl Into<String>) -> CallError {
        CallError { code: codes::INVALID_PARAMS, message: message.into(), data: None }
    }
}

/// One modern `tools/call`, with what it needs from its request.
#[derive(Debug)]
pub struct Call<'a> {
    /// The key that seals and opens `requestState`.
    pub key: &'a StateKey,
    /// How long a round's state stays good.
    pub ttl: Duration,
    /// The caller ([`super::request_state::principal`]).
    pub principal: String,
    /// The capabilities this request's `_meta` declared.
    pub capabilities: &'a Value,
}

impl Call<'_> {
    /// The result of `tools/call` with `params`: a final result, or an `InputRequiredResult`.
    pub fn run(&self, params: &Value) -> Result<Value, CallError> {
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| CallError::params("tools/call needs a tool name"))?;
        let arguments = match params.get("arguments") {
            None | Some(Value::Null) => json!({}),
            Some(object @ Value::Object(_)) => object.clone(),
            Some(_) => return Err(CallError::params("arguments must be an object")),
        };
        // Unknown tools and bad arguments are refused before anything is asked.
        tools::sampling_params(name, &arguments).map_err(CallError::params)?;
        if !mcp::declares_sampling(self.capabilities) {
            return Ok(tool_error(
                "this client did not declare the sampling capability, so it cannot run the model",
            ));
        }
        let binding = Binding {
            principal: self.principal.clone(),
            method: "tools/call".to_owned(),
            tool: name.to_owned(),
            arguments: digest(&arguments),
        };
        let round = match params.get("requestState") {
            None | Some(Value::Null) => return Ok(self.first_round(&binding, &arguments)),
            Some(Value::String(sealed)) => {
                self.key.open(sealed, unix_millis(), &binding).map_err(|error| CallError {
                    code: codes::INVALID_PARAMS,
                    message: error.to_string(),
                    data: Some(json!({ "reason": error.reason() })),
                })?
            }
            Some(_) => return Err(CallError::params("requestState must be a string")),
        };
        let Some(answers) = answered(params.get("inputResponses"), &round.asked) else {
            // Missing answers are asked for again, with fresh state, rather than refused.
            return Ok(self.ask_again(&binding, &arguments, &round));
        };
        self.next_round(&binding, &arguments, &round, &answers)
    }

    /// The first round: the length question when it applies, else the sampling request.
    fn first_round(&self, binding: &Binding, arguments: &Value) -> Value {
        if tools::wants_length(&binding.tool, arguments)
            && mcp::declares_form_elicitation(self.capabilities)
        {
            return self.ask(
                binding,
                LENGTH_KEY,
                "elicitation/create",
                tools::length_question(),
                None,
            );
        }
        self.sampling_round(binding, arguments, None)
    }

    /// The questions of `round` again: its answers were missing or malformed.
    fn ask_again(&self, binding: &Binding, arguments: &Value, round: &RoundState) -> Value {
        if round.asked.iter().any(|key| key == LENGTH_KEY) {
            return self.ask(
                binding,
                LENGTH_KEY,
                "elicitation/create",
                tools::length_question(),
                None,
            );
        }
        self.sampling_round(binding, arguments, round.length.as_deref())
    }

    /// What follows the answers to `round`.
    fn next_round(
        &self,
        binding: &Binding,
        arguments: &Value,
        round: &RoundState,
        answers: &Map<String, Value>,
    ) -> Result<Value, CallError> {
        if let Some(answer) = answers.get(LENGTH_KEY) {
            return Ok(match tools::length_answer(answer) {
                LengthAnswer::Chosen(length) => {
                    self.sampling_round(binding, arguments, Some(&length))
                }
                LengthAnswer::Declined => {
                    self.sampling_round(binding, arguments, Some(tools::DEFAULT_LENGTH))
                }
                LengthAnswer::Cancelled => {
                    tool_error("the user cancelled the question about the summary's length")
                }
                LengthAnswer::Invalid(_) => self.ask_again(binding, arguments, round),
            });
        }
        let sample = answers.get(SAMPLE_KEY).unwrap_or(&Value::Null);
        Ok(match tools::result_text(sample) {
            Some(text) => complete(json!({
                "content": [{ "type": "text", "text": text }],
                "structuredContent": { "model": sample.get("model"), "stopReason": sample.get("stopReason") },
                "isError": false
            })),
            None => tool_error("the client's answer had no text"),
        })
    }

    /// The sampling round, for a summary of `length` when one was chosen.
    fn sampling_round(&self, binding: &Binding, arguments: &Value, length: Option<&str>) -> Value {
        let arguments = match length {
            Some(length) => tools::with_length(arguments, length),
            None => arguments.clone(),
        };
        match tools::sampling_params(&binding.tool, &arguments) {
            Ok(params) => self.ask(
                binding,
                SAMPLE_KEY,
                "sampling/createMessage",
                params,
                length.map(str::to_owned),
            ),
            // Checked before the first round; a length from the state is one of ours.
            Err(message) => tool_error(&message),
        }
    }

    /// An `InputRequiredResult` asking `method` under `key`, with the state of this round.
    fn ask(
        &self,
        binding: &Binding,
        key: &str,
        method: &str,
        params: Value,
        length: Option<String>,
    ) -> Value {
        let expires_at = unix_millis().saturating_add(self.ttl.as_millis() as u64);
        let state = RoundState {
            principal: binding.principal.clone(),
            expires_at,
            method: binding.method.clone(),
            tool: binding.tool.clone(),
            arguments: binding.arguments.clone(),
            asked: vec![key.to_owned()],
            length,
        };
        json!({
            "resultType": "input_required",
            "inputRequests": { key: { "method": method, "params": params } },
            "requestState": self.key.seal(&state),
        })
    }
}

/// The answers to every key of `asked`, if `responses` is an object holding an object for each.
fn answered(responses: Option<&Value>, asked: &[String]) -> Option<Map<String, Value>> {
    let responses = responses?.as_object()?;
    asked
        .iter()
        .all(|key| responses.get(key).is_some_and(Value::is_object))
        .then(|| responses.clone())
}

/// A final result of the modern era.
fn complete(mut result: Value) -> Value {
    result["resultType"] = json!("complete");
    result
}

/// A tool result reporting a failure, so the model calling the tool can see what went wrong.
fn tool_error(message: &str) -> Value {
    complete(json!({ "content": [{ "type": "text", "text": message }], "isError": true }))
}
