//! The SSE reader on arbitrary bytes: it never panics, and where the input is cut into reads
//! changes nothing (the first byte picks the cut points).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_core::wire::Parser;

fuzz_target!(|input: &[u8]| {
    let Some((&seed, stream)) = input.split_first() else { return };
    let whole = Parser::new().feed(stream);
    let mut parser = Parser::new();
    let mut pieces = Vec::new();
    let step = usize::from(seed % 7) + 1;
    for chunk in stream.chunks(step) {
        pieces.extend(parser.feed(chunk));
    }
    assert_eq!(whole, pieces, "cutting the stream into {step}-byte reads changed the events");
});
