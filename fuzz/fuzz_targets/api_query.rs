//! Fuzz target: the query parameters of the API as a client writes them. The
//! input is a query string, deserialised as axum's `Query` does
//! (`serde_urlencoded`), then checked by the project's parsers the handlers call:
//! `input::violation_filter` and `input::parse_cursor` (`GET /api/v1/violations`),
//! `input::parse_point` (`GET /api/v1/route`) and `input::check_list_name`
//! (`/api/v1/hotlists/{name}`). The raw input also goes to each parser directly.
//!
//! None may panic. What they accept must hold: a limit within 1..=MAX_PAGE, a
//! cursor that is exactly the text the API gives out for its position, a point
//! with finite, in-range coordinates that reads back the same when written.
#![no_main]

use egret_fuzz::input::{self, MAX_PAGE};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

/// The fields of the handlers' query structs, as loosely typed as the wire is
/// (the handlers' own structs also refuse unknown fields and `kind`s).
#[derive(Deserialize)]
struct Params {
    plate: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    limit: Option<usize>,
    cursor: Option<String>,
    from: Option<String>,
    to: Option<String>,
    name: Option<String>,
}

fn check_cursor(text: &str) {
    if let Ok(seq) = input::parse_cursor(text) {
        assert_eq!(input::cursor(seq), text, "cursor {text:?} is not the one given out for {seq}");
    }
}

fn check_point(name: &str, value: Option<&str>) {
    if let Ok((lat, lon)) = input::parse_point(name, value) {
        assert!(lat.is_finite() && lon.is_finite() && (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon));
        assert_eq!(input::parse_point(name, Some(&format!("{lat},{lon}"))), Ok((lat, lon)));
    }
}

fn check_name(name: &str) {
    if input::check_list_name(name).is_ok() {
        assert!((1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
}

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    check_cursor(&text);
    check_point("from", Some(&text));
    check_name(&text);
    if let Some(seq) = bytes.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes) {
        assert_eq!(input::parse_cursor(&input::cursor(seq)), Ok(seq));
    }

    let Ok(p) = serde_urlencoded::from_bytes::<Params>(bytes) else { return };
    if let Ok(filter) = input::violation_filter(p.plate.as_deref(), p.limit, p.cursor.as_deref(), p.since_ms, p.until_ms) {
        assert!((1..=MAX_PAGE).contains(&filter.limit), "limit {}", filter.limit);
        assert_eq!(filter.since_ms, p.since_ms.unwrap_or(i64::MIN));
        assert_eq!(filter.until_ms, p.until_ms.unwrap_or(i64::MAX));
        if let Some(plate) = &filter.plate {
            egret_fuzz::check_plate(plate);
        }
        match &p.cursor {
            Some(c) => assert_eq!(&input::cursor(filter.after), c),
            None => assert_eq!(filter.after, 0),
        }
    }
    check_point("from", p.from.as_deref());
    check_point("to", p.to.as_deref());
    if let Some(name) = &p.name {
        check_name(name);
    }
});
