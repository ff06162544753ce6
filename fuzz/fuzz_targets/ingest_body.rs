//! Fuzz target: the body of `POST /api/v1/ingest`, NDJSON events tagged with a
//! `type`, checked line by line as the handler does (`input::ingest_lines`,
//! `input::is_blank`, `input::check_line`, `input::key_of`). Nothing may panic.
//! Every non-blank line is accepted or rejected, never lost; an accepted line
//! decodes on its topic's decoder to the same event (as the pipeline will decode
//! it from the input topic), passes `egret_fuzz::check_decode`, and has a key.
#![no_main]

use egret_fuzz::input::{check_line, ingest_lines, is_blank, key_of};
use egret_model::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let city = egret_fuzz::city();
    let decoder = Decoder::new(city);
    let lines = ingest_lines(body);
    assert_eq!(lines.len(), body.iter().filter(|b| **b == b'\n').count() + 1, "one line per newline, plus the last");
    let (mut accepted, mut rejected, mut blank) = (0, 0, 0);
    for line in &lines {
        if is_blank(line) {
            blank += 1;
            continue;
        }
        match check_line(&decoder, line) {
            Ok((topic, decoded)) => {
                accepted += 1;
                assert_eq!(decoder.decode(topic, line).as_ref(), Ok(&decoded), "the pipeline would read this line differently");
                egret_fuzz::check_decode(topic, line);
                assert!(!key_of(&decoded, city).is_empty(), "an accepted event without a key");
            }
            Err(reject) => {
                rejected += 1;
                assert!(!reject.reason.code().is_empty());
            }
        }
    }
    assert_eq!(accepted + rejected + blank, lines.len());
});
