//! The writer half of the event-stream format.
//!
//! Rules this file keeps (WHATWG HTML §9.2.6 read backwards):
//! * data is split at every CRLF, CR or LF into one `data:` line each, so a client receives the
//!   original text with LF line breaks. axum 0.8's own `Sse` encoder gets "a\r\nb" wrong (the
//!   client sees "a\n\nb"), which is why this crate encodes frames itself;
//! * an empty string still produces a `data:` line, so the event is dispatched with data "";
//! * ids are integers, so they can never contain LF, CR or NULL (the reader would drop them);
//! * event names and comments cannot break framing: CR and LF in them are removed or split;
//! * `retry:` is written as ASCII digits only.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

/// One encoded event (or comment), ready to be written to any number of connections.
///
/// Cloning a `Frame` clones a reference-counted pointer, never the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// A comment line (`: text`), ignored by every reader. Used for keep-alives.
    pub fn comment(text: &str) -> Frame {
        let mut buf = BytesMut::with_capacity(text.len() + 4);
        for line in split_lines(text) {
            buf.put_slice(b": ");
            buf.put_slice(line.as_bytes());
            buf.put_u8(b'\n');
        }
        buf.put_u8(b'\n');
        Frame(buf.freeze())
    }

    /// The keep-alive comment sent on idle streams so proxies do not cut them.
    pub fn keep_alive() -> Frame {
        Frame(Bytes::from_static(b": keep-alive\n\n"))
    }

    /// The encoded bytes, as written to the socket.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The encoded bytes, by value.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for a zero-length frame (never produced by this module).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A server-sent event under construction.
///
/// ```
/// use sse_core::wire::Event;
/// let frame = Event::new().event("greeting").id(7).data("hello\r\nworld").encode();
/// assert_eq!(
///     frame.as_bytes().as_ref(),
///     b"event: greeting\nid: 7\ndata: hello\ndata: world\n\n"
/// );
/// ```
#[derive(Clone, Debug, Default)]
pub struct Event {
    name: Option<String>,
    id: Option<u64>,
    data: Option<String>,
    retry: Option<Duration>,
}

impl Event {
    /// An event with no fields yet.
    pub fn new() -> Event {
        Event::default()
    }

    /// Sets the event type (`event:`). CR and LF are removed; an empty name means "message".
    pub fn event(mut self, name: impl Into<String>) -> Event {
        let mut name = name.into();
        name.retain(|c| c != '\r' && c != '\n');
        self.name = Some(name);
        self
    }

    /// Sets the event id (`id:`). Ids are integers so they can never break framing.
    pub fn id(mut self, id: u64) -> Event {
        self.id = Some(id);
        self
    }

    /// Sets the data. Any line breaks (CRLF, CR, LF) become separate `data:` lines.
    pub fn data(mut self, data: impl Into<String>) -> Event {
        self.data = Some(data.into());
        self
    }

    /// Sets the data to the JSON encoding of `value` (always a single line: serde_json escapes
    /// line breaks inside strings). Serialized straight into the buffer, not through `Display`,
    /// which would pass every fragment through the formatter, and without building a
    /// `serde_json::Value` first when `value` is a plain struct. A value that cannot be JSON (a
    /// map with non-string keys) is sent as `null` rather than panicking.
    pub fn json(self, value: &(impl serde::Serialize + ?Sized)) -> Event {
        self.data(serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned()))
    }

    /// Sets the client's reconnection time (`retry:`), in whole milliseconds.
    pub fn retry(mut self, retry: Duration) -> Event {
        self.retry = Some(retry);
        self
    }

    /// Encodes the event once. The result can be shared with every subscriber.
    pub fn encode(&self) -> Frame {
        let data_len = self.data.as_ref().map_or(0, String::len);
        let mut buf = BytesMut::with_capacity(data_len + 48);
        if let Some(name) = &self.name {
            buf.put_slice(b"event: ");
            buf.put_slice(name.as_bytes());
            buf.put_u8(b'\n');
        }
        if let Some(id) = self.id {
            buf.put_slice(b"id: ");
            put_decimal(&mut buf, id);
            buf.put_u8(b'\n');
        }
        if let Some(retry) = self.retry {
            buf.put_slice(b"retry: ");
            put_decimal(&mut buf, u64::try_from(retry.as_millis()).unwrap_or(u64::MAX));
            buf.put_u8(b'\n');
        }
        if let Some(data) = &self.data {
            for line in split_lines(data) {
                buf.put_slice(b"data: ");
                buf.put_slice(line.as_bytes());
                buf.put_u8(b'\n');
            }
        }
        buf.put_u8(b'\n');
        Frame(buf.freeze())
    }
}

/// Splits at CRLF, CR or LF; always yields at least one (possibly empty) line.
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        // Both are ASCII, so a byte position is a char boundary; a byte scan is far cheaper than
        // `str::find` with a char-set pattern, and it runs on every event's data.
        match current.bytes().position(|b| b == b'\r' || b == b'\n') {
            None => {
                rest = None;
                Some(current)
            }
            Some(at) => {
                let skip = if current[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&current[at + skip..]);
                Some(&current[..at])
            }
        }
    })
}

/// Writes `value` in decimal (with itoa: two digits a step, no formatter).
fn put_decimal(buf: &mut BytesMut, value: u64) {
    buf.put_slice(itoa::Buffer::new().format(value).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(event: Event) -> String {
        String::from_utf8(event.encode().into_bytes().to_vec()).expect("utf-8")
    }

    #[test]
    fn every_kind_of_line_break_becomes_its_own_data_line() {
        assert_eq!(
            encoded(Event::new().data("a\r\nb\rc\nd")),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }

    #[test]
    fn empty_data_still_writes_a_data_line() {
        assert_eq!(encoded(Event::new().data("")), "data: \n\n");
    }

    #[test]
    fn trailing_line_break_keeps_an_empty_last_line() {
        assert_eq!(encoded(Event::new().data("a\n")), "data: a\ndata: \n\n");
    }

    #[test]
    fn event_names_cannot_break_framing() {
        assert_eq!(encoded(Event::new().event("a\r\nb").data("x")), "event: ab\ndata: x\n\n");
    }

    #[test]
    fn retry_is_digits_only() {
        assert_eq!(encoded(Event::new().retry(Duration::from_millis(1500))), "retry: 1500\n\n");
        assert_eq!(encoded(Event::new().id(0)), "id: 0\n\n");
        assert_eq!(encoded(Event::new().id(u64::MAX)), format!("id: {}\n\n", u64::MAX));
    }

    #[test]
    fn comments_are_split_per_line() {
        assert_eq!(Frame::comment("a\nb").as_bytes().as_ref(), b": a\n: b\n\n");
    }
}
