//! What goes over the wire, with no IO: SSE frames out, SSE events in, JSON-RPC envelopes both ways.
//!
//! * [`Event`] builds one server-sent event and encodes it **once** into a [`Frame`] (cheaply
//!   cloneable [`bytes::Bytes`]); fan-out then shares those bytes with every connection.
//! * [`Parser`] is the reader side of the same format, written to the letter of WHATWG HTML
//!   §9.2.6 ("interpreting an event stream"); the Rust [`client`](crate::client) uses it.
//! * [`jsonrpc`] holds the JSON-RPC 2.0 envelopes that server→client requests and their answers
//!   travel in.
//! * [`Framing`] delimits a body's bytes the way hyper does (chunked or until close), for streams
//!   written to directly.
//! * [`reserved`] finds the object keys serde_json reads as instructions, which a peer's JSON
//!   must not carry if it is to be passed on intact.
//!
//! The writer and the reader are tested against each other (any string survives a round trip)
//! and each reader rule of the spec has its own test in `core/tests/conformance.rs`.

mod event;
mod framing;
pub mod jsonrpc;
mod parser;
pub mod reserved;

pub use event::{Event, Frame};
pub use framing::Framing;
pub use parser::{MessageEvent, Parser};
