//! JSON-RPC envelopes from arbitrary bytes: parsing never panics, and whatever parses encodes
//! back to a message that parses to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_core::wire::jsonrpc::Message;

fn encode(message: &Message) -> serde_json::Value {
    match message {
        Message::Request(request) => serde_json::to_value(request).expect("encodes"),
        Message::Notification(notification) => serde_json::to_value(notification).expect("encodes"),
        Message::Response(response) => response.to_value(),
    }
}

fuzz_target!(|input: &[u8]| {
    if let Ok(message) = Message::parse(input) {
        let again = Message::parse(encode(&message).to_string().as_bytes())
            .expect("an encoded message parses");
        assert_eq!(message, again);
    }
});
