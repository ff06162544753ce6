//! Fuzz target: `egret_model::Plate::parse`, the join key of the pipeline, on any
//! text. It must never panic; a plate it accepts is normalised (its own text
//! parses back to it, `egret_fuzz::check_plate`), and writing that plate the way
//! devices and clerks do (lower case, full-width letters and digits, separators)
//! gives the same plate.
#![no_main]

use egret_model::Plate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let raw = String::from_utf8_lossy(bytes);
    let Ok(plate) = Plate::parse(&raw) else { return };
    egret_fuzz::check_plate(&plate);
    let written: String = plate
        .as_str()
        .chars()
        .enumerate()
        .map(|(i, c)| match (i % 3, c) {
            // Full-width ASCII, as some cameras send.
            (0, '!'..='~') => char::from_u32(c as u32 + 0xFEE0).unwrap_or(c).to_string(),
            (1, _) => format!("{}-", c.to_ascii_lowercase()),
            _ => format!(" {c}·"),
        })
        .collect();
    assert_eq!(Plate::parse(&written), Ok(plate), "{written:?} is not {plate:?} written another way");
});
