//! Fuzz target: what a WebSocket client sends to `GET /ws` — the message parser
//! `input::parse_client_message` and the channel names of `input::Channel::parse`,
//! the code `ws.rs` runs on every text frame. Neither may panic; a message that
//! parses is written back to JSON that parses to the same message; a channel that
//! parses has a name that parses back to the same channel.
#![no_main]

use egret_fuzz::input::{Channel, ClientMessage, parse_client_message};
use libfuzzer_sys::fuzz_target;

fn check_channel(name: &str) {
    if let Ok(channel) = Channel::parse(name, egret_fuzz::city()) {
        assert_eq!(channel.name(), name, "channel {name:?} is named differently");
        assert_eq!(Channel::parse(&channel.name(), egret_fuzz::city()), Ok(channel));
    }
}

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    // The raw text as a channel name too: names are where the project's own logic is.
    check_channel(&text);
    let Ok(message) = parse_client_message(&text) else { return };
    let json = serde_json::to_string(&message).expect("a client message serialises");
    assert_eq!(parse_client_message(&json), Ok(message.clone()), "written back as {json}");
    if let ClientMessage::Subscribe { channel } | ClientMessage::Unsubscribe { channel } = &message {
        check_channel(channel);
    }
});
