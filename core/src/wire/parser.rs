//! The reader half of the event-stream format: bytes in, events out, exactly as a browser would.
//!
//! Written by hand rather than taken from `eventsource-stream` (the parser under
//! `reqwest-eventsource`) because that one departs from the spec where it matters to us: it
//! accepts `retry: +5` (it uses `u64::from_str`), and it fails the whole stream on invalid UTF-8
//! instead of decoding with replacement characters. The spec's algorithm is short; here it is.
//!
//! Rules (WHATWG HTML §9.2.6), each with its own test in `core/tests/conformance.rs`:
//! CR, LF and CRLF all end a line, also when a CRLF is split across two reads; one leading BOM is
//! stripped; lines starting with `:` are comments; a line without a colon is a field with an
//! empty value; one leading space (never a tab) is stripped from a value; data lines are joined
//! with LF and the last LF dropped; an event without data is not dispatched but still sets the
//! last event id; an empty event type means "message"; an id containing NULL is ignored, an
//! empty id resets it, and the last id persists across events; `retry` takes ASCII digits only;
//! an unterminated event at the end of the stream is discarded.

use std::time::Duration;

/// One dispatched event, as `EventSource` would deliver it to a `MessageEvent` listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageEvent {
    /// The event type; "message" when the stream named none.
    pub event: String,
    /// The data lines joined by LF.
    pub data: String,
    /// The last event id of the stream at the time of dispatch (it persists across events).
    pub last_event_id: String,
}

/// An incremental event-stream parser. Feed it bytes as they arrive; it returns complete events.
///
/// ```
/// use sse_core::wire::Parser;
/// let mut parser = Parser::new();
/// assert!(parser.feed(b"id: 1\r\ndata: hel").is_empty());
/// let events = parser.feed(b"lo\r\n\r\n");
/// assert_eq!(events[0].data, "hello");
/// assert_eq!(parser.last_event_id(), "1");
/// ```
#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes of the line being read (never contains CR or LF).
    line: Vec<u8>,
    /// Whether the start of the stream (and a possible BOM) has been dealt with.
    bom_checked: bool,
    /// The previous read ended in CR: an LF at the start of the next read belongs to it.
    skip_lf: bool,
    data: String,
    event_type: String,
    id_buffer: String,
    last_event_id: String,
    reconnection_time: Option<Duration>,
}

const BOM: &[u8] = "\u{feff}".as_bytes();

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Parser {
        Parser::default()
    }

    /// A parser for a reconnection: the stream starts afresh but the last event id carries over,
    /// as it does for `EventSource`.
    pub fn resuming(last_event_id: &str) -> Parser {
        Parser {
            id_buffer: last_event_id.to_owned(),
            last_event_id: last_event_id.to_owned(),
            ..Parser::default()
        }
    }

    /// The id a reconnecting client sends as `Last-Event-ID` (empty means "send none").
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection time the server asked for with `retry:`, if it did.
    pub fn reconnection_time(&self) -> Option<Duration> {
        self.reconnection_time
    }

    /// Consumes a chunk of the stream and returns the events it completed.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Vec<MessageEvent> {
        let mut events = Vec::new();
        if self.skip_lf && !chunk.is_empty() {
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
            self.skip_lf = false;
        }
        while !chunk.is_empty() {
            if !self.bom_checked {
                chunk = self.strip_bom(chunk);
                if !self.bom_checked {
                    return events;
                }
                continue;
            }
            match chunk.iter().position(|&b| b == b'\r' || b == b'\n') {
                None => {
                    self.line.extend_from_slice(chunk);
                    break;
                }
                Some(at) => {
                    self.line.extend_from_slice(&chunk[..at]);
                    let mut next = at + 1;
                    if chunk[at] == b'\r' {
                        match chunk.get(next) {
                            Some(b'\n') => next += 1,
                            Some(_) => {}
                            None => self.skip_lf = true,
                        }
                    }
                    chunk = &chunk[next..];
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.process_line(&String::from_utf8_lossy(&line)) {
                        events.push(event);
                    }
                }
            }
        }
        events
    }

    /// Looks for a BOM at the very start of the stream, which may arrive a byte at a time.
    /// Bytes that match the BOM so far are held in `self.line`; they contain no line break, so if
    /// the BOM turns out not to be one they simply stay there as the start of the first line.
    fn strip_bom<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        let mut rest = chunk;
        while let Some((&byte, tail)) = rest.split_first() {
            if BOM.get(self.line.len()) != Some(&byte) {
                self.bom_checked = true;
                return rest;
            }
            self.line.push(byte);
            rest = tail;
            if self.line.len() == BOM.len() {
                self.line.clear();
                self.bom_checked = true;
                return rest;
            }
        }
        rest
    }

    fn process_line(&mut self, line: &str) -> Option<MessageEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event_type),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => value.clone_into(&mut self.id_buffer),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Digits only, so parsing fails only on overflow: treat that as "very long".
                let millis = value.parse::<u64>().unwrap_or(u64::MAX);
                self.reconnection_time = Some(Duration::from_millis(millis));
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<MessageEvent> {
        self.last_event_id.clone_from(&self.id_buffer);
        let event_type = std::mem::take(&mut self.event_type);
        if self.data.is_empty() {
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the LF appended after the last data line
        Some(MessageEvent {
            event: if event_type.is_empty() { "message".to_owned() } else { event_type },
            data,
            last_event_id: self.last_event_id.clone(),
        })
    }
}
