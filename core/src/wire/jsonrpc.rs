//! JSON-RPC 2.0 envelopes: the shape of server→client requests and the client's answers.
//!
//! Incoming messages are classified by hand ([`Message::parse`]) rather than with serde's
//! untagged enums, so that a malformed answer gets a precise error ("has both result and error")
//! instead of "data did not match any variant", and so that `"result": null` stays a valid result.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::reserved::reserved_key;

/// The version tag every envelope carries.
pub const VERSION: &str = "2.0";

/// JSON-RPC error codes used by this crate.
pub mod codes {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON sent is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal error (the handler failed).
    pub const INTERNAL_ERROR: i64 = -32603;
}

/// A request id: a number or a string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    /// An integer id (this crate generates these).
    Number(i64),
    /// A string id.
    String(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Number(n) => fmt::Display::fmt(n, f),
            Id::String(s) => f.write_str(s),
        }
    }
}

impl Id {
    /// Reads an id that arrived as text (for example from a protocol that only has string ids):
    /// digits become a number, anything else stays a string.
    pub fn from_text(text: &str) -> Id {
        match text.parse::<i64>() {
            // Only the number's own spelling: "017" and "+17" stay strings.
            Ok(n) if itoa::Buffer::new().format(n) == text => Id::Number(n),
            _ => Id::String(text.to_owned()),
        }
    }

    /// The id written as a JSON string whatever its type, for protocols whose ids are text
    /// (the Go original's). Unlike `to_string()`, it allocates nothing.
    pub fn as_text(&self) -> IdText<'_> {
        IdText(self)
    }

    fn from_value(value: &Value) -> Result<Id, EnvelopeError> {
        match value {
            Value::String(s) => Ok(Id::String(s.clone())),
            Value::Number(n) => n.as_i64().map(Id::Number).ok_or(EnvelopeError::BadId),
            _ => Err(EnvelopeError::BadId),
        }
    }
}

/// An [`Id`] serialized as a JSON string: see [`Id::as_text`].
#[derive(Clone, Copy, Debug)]
pub struct IdText<'a>(&'a Id);

impl Serialize for IdText<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Id::Number(n) => serializer.serialize_str(itoa::Buffer::new().format(*n)),
            Id::String(text) => serializer.serialize_str(text),
        }
    }
}

/// A request: a call that expects an answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Request {
    /// Always "2.0".
    pub jsonrpc: &'static str,
    /// The id the answer must carry.
    pub id: Id,
    /// The method name.
    pub method: String,
    /// Parameters, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

impl Request {
    /// A request with the given id, method and params.
    pub fn new(id: Id, method: impl Into<String>, params: Option<Value>) -> Request {
        Request { jsonrpc: VERSION, id, method: method.into(), params }
    }
}

/// A notification: a call with no answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notification {
    /// Always "2.0".
    pub jsonrpc: &'static str,
    /// The method name.
    pub method: String,
    /// Parameters, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

impl Notification {
    /// A notification with the given method and params.
    pub fn new(method: impl Into<String>, params: Option<Value>) -> Notification {
        Notification { jsonrpc: VERSION, method: method.into(), params }
    }
}

/// The error member of an error response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// A JSON-RPC error code.
    pub code: i64,
    /// A short description.
    pub message: String,
    /// Anything else the sender wants to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// An error with a code and a message.
    pub fn new(code: i64, message: impl Into<String>) -> ErrorObject {
        ErrorObject { code, message: message.into(), data: None }
    }
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

/// An answer: exactly one of a result or an error, for one request id.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The id of the request this answers.
    pub id: Id,
    /// The result or the error.
    pub outcome: Result<Value, ErrorObject>,
}

impl Response {
    /// A successful answer.
    pub fn result(id: Id, result: Value) -> Response {
        Response { id, outcome: Ok(result) }
    }

    /// An error answer.
    pub fn error(id: Id, error: ErrorObject) -> Response {
        Response { id, outcome: Err(error) }
    }

    /// The JSON form of this answer.
    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("jsonrpc".into(), VERSION.into());
        map.insert("id".into(), serde_json::to_value(&self.id).unwrap_or(Value::Null));
        match &self.outcome {
            Ok(result) => map.insert("result".into(), result.clone()),
            Err(error) => {
                map.insert("error".into(), serde_json::to_value(error).unwrap_or(Value::Null))
            }
        };
        Value::Object(map)
    }
}

/// Any JSON-RPC 2.0 message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A call expecting an answer.
    Request(Request),
    /// A call without an answer.
    Notification(Notification),
    /// An answer.
    Response(Response),
}

/// Why a JSON text is not a valid JSON-RPC 2.0 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not JSON at all.
    #[error("body is not valid JSON: {0}")]
    Json(String),
    /// A JSON array: batches are not supported.
    #[error("batches are not supported; send one message per request")]
    Batch,
    /// Not a JSON object.
    #[error("a JSON-RPC message must be a JSON object")]
    NotAnObject,
    /// `jsonrpc` is missing or not "2.0".
    #[error("\"jsonrpc\" must be \"2.0\"")]
    Version,
    /// The id is neither an integer nor a string.
    #[error("\"id\" must be an integer or a string")]
    BadId,
    /// `method` is not a string.
    #[error("\"method\" must be a string")]
    BadMethod,
    /// A response without an id.
    #[error("a response needs an \"id\"")]
    MissingId,
    /// A response with both or neither of result and error.
    #[error("a response needs exactly one of \"result\" and \"error\"")]
    ResultXorError,
    /// The error member is malformed.
    #[error("\"error\" must be an object with an integer \"code\" and a string \"message\"")]
    BadError,
    /// An object key that serde_json reads as an instruction (see [`super::reserved`]).
    #[error(
        "the object key {0:?} is reserved (serde_json reads it as an instruction, so the message would not pass on intact)"
    )]
    ReservedKey(String),
}

impl Message {
    /// Parses and classifies one message.
    pub fn parse(text: &[u8]) -> Result<Message, EnvelopeError> {
        let value: Value =
            serde_json::from_slice(text).map_err(|e| EnvelopeError::Json(e.to_string()))?;
        Message::from_value(value)
    }

    /// Classifies one already-parsed message.
    pub fn from_value(value: Value) -> Result<Message, EnvelopeError> {
        if let Some(key) = reserved_key(&value) {
            return Err(EnvelopeError::ReservedKey(key.to_owned()));
        }
        let mut map = match value {
            Value::Object(map) => map,
            Value::Array(_) => return Err(EnvelopeError::Batch),
            _ => return Err(EnvelopeError::NotAnObject),
        };
        if map.get("jsonrpc").and_then(Value::as_str) != Some(VERSION) {
            return Err(EnvelopeError::Version);
        }
        let id = map.get("id").map(Id::from_value).transpose()?;
        if let Some(method) = map.remove("method") {
            let Value::String(method) = method else {
                return Err(EnvelopeError::BadMethod);
            };
            let params = map.remove("params");
            return Ok(match id {
                Some(id) => Message::Request(Request::new(id, method, params)),
                None => Message::Notification(Notification::new(method, params)),
            });
        }
        let id = id.ok_or(EnvelopeError::MissingId)?;
        let outcome = match (map.remove("result"), map.remove("error")) {
            (Some(result), None) => Ok(result),
            (None, Some(error)) => {
                Err(serde_json::from_value(error).map_err(|_| EnvelopeError::BadError)?)
            }
            _ => return Err(EnvelopeError::ResultXorError),
        };
        Ok(Message::Response(Response { id, outcome }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn null_result_is_a_result() {
        let msg = Message::parse(br#"{"jsonrpc":"2.0","id":3,"result":null}"#).expect("valid");
        assert_eq!(msg, Message::Response(Response::result(Id::Number(3), Value::Null)));
    }

    #[test]
    fn malformed_responses_are_named() {
        let both = br#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"x"}}"#;
        assert_eq!(Message::parse(both), Err(EnvelopeError::ResultXorError));
        assert_eq!(Message::parse(br#"[1]"#), Err(EnvelopeError::Batch));
        assert_eq!(Message::parse(br#"{"id":1,"result":1}"#), Err(EnvelopeError::Version));
        assert_eq!(
            Message::parse(br#"{"jsonrpc":"2.0","id":1.5,"result":1}"#),
            Err(EnvelopeError::BadId)
        );
        assert!(matches!(Message::parse(b"{"), Err(EnvelopeError::Json(_))));
    }

    #[test]
    fn a_reserved_key_anywhere_is_refused() {
        // The shape the fuzz target found: parsed, then encoded with the key first, it no
        // longer parsed.
        let nested = br#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":1,"$serde_json::private::RawValue":"0E"}}"#;
        assert_eq!(
            Message::parse(nested),
            Err(EnvelopeError::ReservedKey("$serde_json::private::RawValue".into()))
        );
        let in_a_result =
            br#"{"jsonrpc":"2.0","id":1,"result":[{"z":0,"$serde_json::private::Number":"1"}]}"#;
        assert!(matches!(Message::parse(in_a_result), Err(EnvelopeError::ReservedKey(_))));
    }

    #[test]
    fn numbers_pass_on_unchanged() {
        // Found by the fuzz target: without serde_json's `float_roundtrip` this parsed to one
        // f64, was written as the shortest text for it, and that text parsed to the next one.
        let sent =
            br#"{"jsonrpc":"2.0","id":1,"result":[10.001844674407370955161,0.1,1e308,5e-324]}"#;
        let parsed = Message::parse(sent).expect("valid");
        let Message::Response(response) = &parsed else { panic!("a response: {parsed:?}") };
        let again = Message::parse(response.to_value().to_string().as_bytes()).expect("valid");
        assert_eq!(again, parsed);
    }

    #[test]
    fn response_round_trips() {
        let response = Response::error(Id::String("a".into()), ErrorObject::new(-1, "no"));
        let back = Message::from_value(response.to_value()).expect("valid");
        assert_eq!(back, Message::Response(response));
        assert_eq!(
            Response::result(Id::Number(1), json!("ok")).to_value(),
            json!({"jsonrpc":"2.0","id":1,"result":"ok"})
        );
    }

    #[test]
    fn text_ids_keep_their_type() {
        assert_eq!(Id::from_text("17"), Id::Number(17));
        assert_eq!(Id::from_text("-17"), Id::Number(-17));
        assert_eq!(Id::from_text("017"), Id::String("017".into()));
        assert_eq!(Id::from_text("+17"), Id::String("+17".into()));
        assert_eq!(Id::from_text("-0"), Id::String("-0".into()));
        assert_eq!(Id::from_text("req_1"), Id::String("req_1".into()));
        assert_eq!(Id::from_text(&i64::MIN.to_string()), Id::Number(i64::MIN));
    }

    #[test]
    fn ids_as_text_are_json_strings_of_their_display() {
        for id in [Id::Number(17), Id::Number(i64::MIN), Id::String("a\"b".into())] {
            let text = serde_json::to_string(&id.as_text()).expect("serializes");
            assert_eq!(serde_json::from_str::<String>(&text).expect("a string"), id.to_string());
            assert_eq!(Id::from_text(&id.to_string()), id);
        }
    }
}
