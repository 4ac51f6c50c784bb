//! A lean event-stream scanner for the load generator.
//!
//! At a million deliveries a second on one core, the core's spec-complete [`Parser`] (which
//! builds a `String` per field) would make the load generator, not the server, the bottleneck.
//! The bench only needs two things from each event, its data and whether it is a `resync`, from
//! servers whose framing it knows (`\n` line ends, `field: value`), so it scans for them in place.
//!
//! [`Parser`]: sse_core::wire::Parser

use memchr::memmem;

/// What the scanner saw in one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<'a> {
    /// An event with data (the first `data:` line).
    Data(&'a [u8]),
    /// A `resync` event.
    Resync,
}

/// Splits a stream into events as bytes arrive, keeping a partial event until its end comes.
#[derive(Debug, Default)]
pub struct Scanner {
    carry: Vec<u8>,
}

impl Scanner {
    /// Feeds the next bytes of the stream; `on_event` gets every event they complete.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(Seen<'_>)) {
        if self.carry.is_empty() {
            let used = scan(chunk, &mut on_event);
            self.carry.extend_from_slice(&chunk[used..]);
        } else {
            self.carry.extend_from_slice(chunk);
            let used = scan(&self.carry, &mut on_event);
            self.carry.drain(..used);
        }
    }
}

/// Reports every complete event in `bytes`; returns how many bytes they took.
fn scan(bytes: &[u8], on_event: &mut impl FnMut(Seen<'_>)) -> usize {
    let mut start = 0;
    for end in memmem::find_iter(bytes, b"\n\n") {
        if let Some(seen) = read_event(&bytes[start..end]) {
            on_event(seen);
        }
        start = end + 2;
    }
    start
}

/// One event's lines (without the blank line that ends it).
fn read_event(event: &[u8]) -> Option<Seen<'_>> {
    let mut data = None;
    for line in event.split(|b| *b == b'\n') {
        if line == b"event: resync" {
            return Some(Seen::Resync);
        }
        if data.is_none() {
            data = line.strip_prefix(b"data: ");
        }
    }
    data.map(Seen::Data)
}

#[cfg(test)]
mod tests {
    use super::{Scanner, Seen};

    fn seen(chunks: &[&[u8]]) -> Vec<String> {
        let mut scanner = Scanner::default();
        let mut seen = Vec::new();
        for chunk in chunks {
            scanner.feed(chunk, |event| {
                seen.push(match event {
                    Seen::Data(data) => String::from_utf8_lossy(data).into_owned(),
                    Seen::Resync => "RESYNC".to_owned(),
                });
            });
        }
        seen
    }

    #[test]
    fn finds_data_resyncs_and_skips_comments() {
        let stream: &[u8] = b": keep-alive\n\nid: 1\ndata: 1 100 xx\n\nevent: resync\nid: 9\ndata: {\"reason\":\"lagged\"}\n\nid: 10\ndata: 10 200\n\n";
        assert_eq!(seen(&[stream]), ["1 100 xx", "RESYNC", "10 200"]);
    }

    #[test]
    fn an_event_split_anywhere_is_seen_once_whole() {
        let stream: &[u8] = b"id: 1\ndata: 1 100\n\nid: 2\ndata: 2 200\n\n";
        for cut in 0..=stream.len() {
            for second in cut..=stream.len() {
                let parts = [&stream[..cut], &stream[cut..second], &stream[second..]];
                assert_eq!(seen(&parts), ["1 100", "2 200"], "cut at {cut} and {second}");
            }
        }
    }

    #[test]
    fn an_unfinished_event_is_not_reported() {
        assert_eq!(seen(&[b"id: 1\ndata: 1 100\n"]), Vec::<String>::new());
    }
}
