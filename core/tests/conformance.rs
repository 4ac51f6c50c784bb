//! The event-stream format, writer and reader, against WHATWG HTML §9.2.6 (the same cases as
//! web-platform-tests `eventsource/format-*.any.js`). One test per rule of DESIGN.md.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use proptest::prelude::*;
use sse_core::wire::{Event, MessageEvent, Parser};

/// Parses a whole stream given as one chunk.
fn parse(stream: &str) -> Vec<MessageEvent> {
    Parser::new().feed(stream.as_bytes())
}

/// Parses a stream fed one byte at a time (every possible split point).
fn parse_bytewise(stream: &[u8]) -> Vec<MessageEvent> {
    let mut parser = Parser::new();
    stream.iter().flat_map(|b| parser.feed(std::slice::from_ref(b))).collect()
}

fn data(events: &[MessageEvent]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

#[test]
fn lf_cr_and_crlf_all_end_lines() {
    assert_eq!(data(&parse("data: a\n\n")), ["a"]);
    assert_eq!(data(&parse("data: a\r\r")), ["a"]);
    assert_eq!(data(&parse("data: a\r\n\r\n")), ["a"]);
    assert_eq!(data(&parse("data: a\rdata: b\ndata: c\r\n\n")), ["a\nb\nc"]);
}

#[test]
fn crlf_split_across_two_reads_is_one_line_break() {
    let mut parser = Parser::new();
    assert!(parser.feed(b"data: a\r").is_empty());
    // Had the LF been taken as a second line break, this would dispatch an event now.
    assert!(parser.feed(b"\ndata: b\r").is_empty());
    assert_eq!(data(&parser.feed(b"\n\r\n")), ["a\nb"]);
}

#[test]
fn one_leading_bom_is_stripped() {
    assert_eq!(data(&parse("\u{feff}data: a\n\n")), ["a"]);
    // Only one: a second BOM makes the first line's field name "\u{feff}data", which is ignored.
    assert!(parse("\u{feff}\u{feff}data: a\n\n").is_empty());
    // A BOM split across reads is still recognised.
    assert_eq!(data(&parse_bytewise("\u{feff}data: a\n\n".as_bytes())), ["a"]);
}

#[test]
fn lines_starting_with_a_colon_are_comments() {
    assert_eq!(data(&parse(": hello\ndata: a\n: another\n\n")), ["a"]);
    assert!(parse(":\n\n").is_empty());
}

#[test]
fn a_line_without_colon_is_a_field_with_empty_value() {
    assert_eq!(data(&parse("data\n\n")), [""]);
    assert_eq!(data(&parse("data\ndata\n\n")), ["\n"]);
}

#[test]
fn one_leading_space_is_stripped_never_a_tab() {
    assert_eq!(data(&parse("data:a\n\n")), ["a"]);
    assert_eq!(data(&parse("data: a\n\n")), ["a"]);
    assert_eq!(data(&parse("data:  a\n\n")), [" a"]);
    assert_eq!(data(&parse("data:\ta\n\n")), ["\ta"]);
}

#[test]
fn data_lines_join_with_lf_and_the_last_lf_is_dropped() {
    assert_eq!(data(&parse("data: a\ndata: b\n\n")), ["a\nb"]);
    assert_eq!(data(&parse("data: a\ndata:\n\n")), ["a\n"]);
}

#[test]
fn no_data_means_no_event_and_empty_data_dispatches_empty_string() {
    assert!(parse("event: x\n\n").is_empty());
    assert!(parse("id: 1\n\n").is_empty());
    let events = parse("data:\n\n");
    assert_eq!(data(&events), [""]);
}

#[test]
fn empty_event_name_means_message() {
    assert_eq!(parse("data: a\n\n")[0].event, "message");
    assert_eq!(parse("event:\ndata: a\n\n")[0].event, "message");
    assert_eq!(parse("event: add\ndata: a\n\n")[0].event, "add");
    // The type does not carry over to the next event.
    assert_eq!(parse("event: add\ndata: a\n\ndata: b\n\n")[1].event, "message");
}

#[test]
fn an_id_containing_null_is_ignored() {
    let events = parse("id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n");
    assert_eq!(events[1].last_event_id, "1");
}

#[test]
fn an_empty_id_resets_the_last_event_id() {
    let mut parser = Parser::new();
    let events = parser.feed(b"id: 1\ndata: a\n\nid\ndata: b\n\n");
    assert_eq!(events[0].last_event_id, "1");
    assert_eq!(events[1].last_event_id, "");
    assert_eq!(parser.last_event_id(), "");
}

#[test]
fn the_last_id_persists_across_events() {
    let mut parser = Parser::new();
    let events = parser.feed(b"id: 7\ndata: a\n\ndata: b\n\n");
    assert_eq!(events[1].last_event_id, "7");
    // An event with an id but no data still moves the last event id.
    parser.feed(b"id: 8\n\n");
    assert_eq!(parser.last_event_id(), "8");
}

#[test]
fn retry_accepts_ascii_digits_only() {
    let retry = |stream: &str| {
        let mut parser = Parser::new();
        parser.feed(stream.as_bytes());
        parser.reconnection_time().map(|d| d.as_millis())
    };
    assert_eq!(retry("retry: 1500\n\n"), Some(1500));
    assert_eq!(retry("retry: +5\n\n"), None);
    assert_eq!(retry("retry: 1.5\n\n"), None);
    assert_eq!(retry("retry: 5 \n\n"), None);
    assert_eq!(retry("retry: -5\n\n"), None);
    assert_eq!(retry("retry:\n\n"), None);
    assert_eq!(retry("retry: 1000\nretry: x\n\n"), Some(1000));
}

#[test]
fn an_unterminated_event_at_end_of_stream_is_discarded() {
    assert!(parse("data: a\n").is_empty());
    assert!(parse("data: a").is_empty());
    assert_eq!(data(&parse("data: a\n\ndata: b\n")), ["a"]);
}

#[test]
fn null_inside_data_is_kept() {
    assert_eq!(data(&parse("data: a\0b\n\n")), ["a\0b"]);
}

#[test]
fn invalid_utf8_is_decoded_with_replacement_not_an_error() {
    let events = Parser::new().feed(b"data: a\xffb\n\n");
    assert_eq!(data(&events), ["a\u{fffd}b"]);
}

#[test]
fn unknown_fields_are_ignored() {
    assert_eq!(data(&parse("foo: bar\ndata: a\nDATA: b\n\n")), ["a"]);
}

#[test]
fn reconnecting_parser_keeps_the_last_event_id() {
    let parser = Parser::resuming("41");
    assert_eq!(parser.last_event_id(), "41");
    let mut parser = Parser::resuming("41");
    assert_eq!(parser.feed(b"data: a\n\n")[0].last_event_id, "41");
}

#[test]
fn writer_splits_every_line_break_and_keeps_empty_data() {
    let frame = Event::new().event("e").id(3).data("a\r\nb\rc\nd").encode();
    let events = Parser::new().feed(frame.as_bytes());
    assert_eq!(events[0].data, "a\nb\nc\nd");
    assert_eq!(events[0].event, "e");
    assert_eq!(events[0].last_event_id, "3");
    let empty = Event::new().data("").encode();
    assert_eq!(data(&Parser::new().feed(empty.as_bytes())), [""]);
}

/// What a spec-exact reader must deliver for data `s`: its line breaks normalised to LF.
fn normalised(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

proptest! {
    #[test]
    fn any_string_round_trips_through_encode_and_parse(
        text in "(?s)(\\PC|\r|\n|\r\n|\0| |\t|\u{feff}){0,64}",
        name in "[a-z]{0,8}",
        id in any::<u64>(),
    ) {
        let frame = Event::new().event(name.clone()).id(id).data(text.clone()).encode();
        let events = Parser::new().feed(frame.as_bytes());
        prop_assert_eq!(events.len(), 1);
        prop_assert_eq!(&events[0].data, &normalised(&text));
        prop_assert_eq!(&events[0].last_event_id, &id.to_string());
        let expected_name = if name.is_empty() { "message".to_owned() } else { name };
        prop_assert_eq!(&events[0].event, &expected_name);
    }

    #[test]
    fn splitting_a_stream_anywhere_changes_nothing(
        texts in proptest::collection::vec("(?s)(\\PC|\r|\n|\r\n){0,16}", 1..5),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut stream = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            stream.extend_from_slice(Event::new().id(i as u64).data(text.clone()).encode().as_bytes());
        }
        let whole = Parser::new().feed(&stream);
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        points.sort_unstable();
        let mut parser = Parser::new();
        let mut pieces = Vec::new();
        let mut start = 0;
        for point in points.into_iter().chain([stream.len()]) {
            pieces.extend(parser.feed(&stream[start..point]));
            start = point;
        }
        prop_assert_eq!(pieces, whole);
    }

    #[test]
    fn the_reader_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Parser::new().feed(&bytes);
        let _ = parse_bytewise(&bytes);
    }
}
