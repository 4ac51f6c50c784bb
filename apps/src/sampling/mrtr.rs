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
use super::rounds::{self, CallId};
use super::tools::{self, LengthAnswer};
use crate::shared::clock::unix_millis;

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
pub struct Call<'a> {
    /// The key that seals and opens `requestState`.
    pub key: &'a StateKey,
    /// How long a round's state stays good.
    pub ttl: Duration,
    /// The caller ([`super::request_state::principal`]).
    pub principal: String,
    /// The capabilities this request's `_meta` declared.
    pub capabilities: &'a Value,
    /// The client's name, from `_meta` (for the console only).
    pub client: String,
    /// This instance's name (for the console).
    pub instance: &'a str,
    /// Where the console's records go (`tool_round`, `tool_finished`).
    pub log: &'a (dyn Fn(&'static str, Value) + Send + Sync),
}

impl std::fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call").field("principal", &self.principal).finish_non_exhaustive()
    }
}

/// The round about to be asked: which call, which question of it.
struct Step {
    call: String,
    n: u32,
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
            None | Some(Value::Null) => {
                let step = Step { call: uuid::Uuid::new_v4().simple().to_string(), n: 1 };
                return Ok(self.first_round(&binding, &arguments, &step));
            }
            Some(Value::String(sealed)) => {
                self.key.open(sealed, unix_millis(), &binding).map_err(|error| CallError {
                    code: codes::INVALID_PARAMS,
                    message: error.to_string(),
                    data: Some(json!({ "reason": error.reason() })),
                })?
            }
            Some(_) => return Err(CallError::params("requestState must be a string")),
        };
        // The state is sealed, but a token holder can seal their own: no arithmetic on it may fail.
        let step = Step { call: round.call.clone(), n: round.round.saturating_add(1) };
        let Some(answers) = answered(params.get("inputResponses"), &round.asked) else {
            // Missing answers are asked for again, with fresh state, rather than refused.
            self.record_answer(&binding, &round, "missing or malformed: asked again".to_owned());
            return Ok(self.ask_again(&binding, &arguments, &round, &step));
        };
        let summary: Vec<String> = round
            .asked
            .iter()
            .map(|key| rounds::summary(method_of(key), answers.get(key).unwrap_or(&Value::Null)))
            .collect();
        self.record_answer(&binding, &round, summary.join("; "));
        let result = self.next_round(&binding, &arguments, &round, &answers, &step);
        if result.get("resultType").and_then(Value::as_str) == Some("complete") {
            (self.log)(
                "tool_finished",
                rounds::finished(&self.call_id(&binding, &step.call), &result),
            );
        }
        Ok(result)
    }

    fn call_id(&self, binding: &Binding, call: &str) -> CallId {
        CallId {
            call: call.to_owned(),
            tool: super::rounds::shorten(&binding.tool),
            era: mcp::MODERN,
            client: super::rounds::shorten(&self.client),
        }
    }

    /// The console's record of `round`, answered here with `answer`.
    fn record_answer(&self, binding: &Binding, round: &RoundState, answer: String) {
        let asked = round.asked.iter().map(|key| method_of(key).to_owned()).collect();
        let record =
            rounds::asked(&self.call_id(binding, &round.call), round.round, asked, &round.asked_on);
        let took = Duration::from_millis(unix_millis().saturating_sub(round.asked_at));
        (self.log)("tool_round", json!(record.answered(answer, took, self.instance)));
    }

    /// The first round: the length question when it applies, else the sampling request.
    fn first_round(&self, binding: &Binding, arguments: &Value, step: &Step) -> Value {
        if tools::wants_length(&binding.tool, arguments)
            && mcp::declares_form_elicitation(self.capabilities)
        {
            return self.ask(binding, LENGTH_KEY, tools::length_question(), None, step);
        }
        self.sampling_round(binding, arguments, None, step)
    }

    /// The questions of `round` again: its answers were missing or malformed.
    fn ask_again(
        &self,
        binding: &Binding,
        arguments: &Value,
        round: &RoundState,
        step: &Step,
    ) -> Value {
        if round.asked.iter().any(|key| key == LENGTH_KEY) {
            return self.ask(binding, LENGTH_KEY, tools::length_question(), None, step);
        }
        self.sampling_round(binding, arguments, round.length.as_deref(), step)
    }

    /// What follows the answers to `round`.
    fn next_round(
        &self,
        binding: &Binding,
        arguments: &Value,
        round: &RoundState,
        answers: &Map<String, Value>,
        step: &Step,
    ) -> Value {
        if let Some(answer) = answers.get(LENGTH_KEY) {
            return match tools::length_answer(answer) {
                LengthAnswer::Chosen(length) => {
                    self.sampling_round(binding, arguments, Some(&length), step)
                }
                LengthAnswer::Declined => {
                    self.sampling_round(binding, arguments, Some(tools::DEFAULT_LENGTH), step)
                }
                LengthAnswer::Cancelled => {
                    tool_error("the user cancelled the question about the summary's length")
                }
                LengthAnswer::Invalid(_) => self.ask_again(binding, arguments, round, step),
            };
        }
        let sample = answers.get(SAMPLE_KEY).unwrap_or(&Value::Null);
        match tools::result_text(sample) {
            Some(text) => complete(json!({
                "content": [{ "type": "text", "text": text }],
                "structuredContent": { "model": sample.get("model"), "stopReason": sample.get("stopReason") },
                "isError": false
            })),
            None => tool_error("the client's answer had no text"),
        }
    }

    /// The sampling round, for a summary of `length` when one was chosen.
    fn sampling_round(
        &self,
        binding: &Binding,
        arguments: &Value,
        length: Option<&str>,
        step: &Step,
    ) -> Value {
        let arguments = match length {
            Some(length) => tools::with_length(arguments, length),
            None => arguments.clone(),
        };
        match tools::sampling_params(&binding.tool, &arguments) {
            Ok(params) => self.ask(binding, SAMPLE_KEY, params, length.map(str::to_owned), step),
            // Checked before the first round; a length from the state is one of ours.
            Err(message) => tool_error(&message),
        }
    }

    /// An `InputRequiredResult` asking under `key` (its method: [`method_of`]), with the state of
    /// this round; the console hears of the question.
    fn ask(
        &self,
        binding: &Binding,
        key: &str,
        params: Value,
        length: Option<String>,
        step: &Step,
    ) -> Value {
        let now = unix_millis();
        let state = RoundState {
            principal: binding.principal.clone(),
            expires_at: now.saturating_add(self.ttl.as_millis() as u64),
            method: binding.method.clone(),
            tool: binding.tool.clone(),
            arguments: binding.arguments.clone(),
            asked: vec![key.to_owned()],
            length,
            call: step.call.clone(),
            round: step.n,
            asked_at: now,
            asked_on: self.instance.to_owned(),
        };
        let method = method_of(key);
        let record = rounds::asked(
            &self.call_id(binding, &step.call),
            step.n,
            vec![method.to_owned()],
            self.instance,
        );
        (self.log)("tool_round", json!(record));
        json!({
            "resultType": "input_required",
            "inputRequests": { key: { "method": method, "params": params } },
            "requestState": self.key.seal(&state),
        })
    }
}

/// The method asked under an `inputRequests` key.
fn method_of(key: &str) -> &'static str {
    if key == LENGTH_KEY { "elicitation/create" } else { "sampling/createMessage" }
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
