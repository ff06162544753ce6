//! Parsers of what clients send the API: WebSocket client messages and channel
//! names, the filters and cursor of `GET /api/v1/violations`, `lat,lon` points,
//! hotlist names, the NDJSON lines of HTTP ingest, and the plate literals of SQL
//! written to the audit log.
//!
//! They live apart from the handlers and use only `std`, `serde`, `serde_json` and
//! `egret-model`, so the fuzz targets (`fuzz/`) compile this very file (by
//! `#[path]`) without building the API's heavy dependencies (DataFusion,
//! librdkafka). Keep it so: no `crate::` paths here. Errors are plain text; the
//! handlers turn them into `400 bad_request` (or a dead letter, for ingest).

use egret_model::decode::{Decoded, Decoder};
use egret_model::reason::{Reason, Reject};
use egret_model::{CityModel, Plate, Topic};
use serde::{Deserialize, Serialize};

// ---- WebSocket (`GET /ws`)

/// What a WebSocket client may send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    Subscribe { channel: String },
    Unsubscribe { channel: String },
    Auth { token: String },
    Ping,
}

/// Parses one text message of a WebSocket client; the error says what a good one
/// looks like.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, String> {
    serde_json::from_str(text).map_err(|e| format!("{e}; send {{\"op\":\"subscribe\",\"channel\":\"segments\"}}"))
}

/// A channel of live state a WebSocket client subscribes to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Channel {
    Segments,
    Parking,
    Incidents,
    Buses(Option<String>),
    Violations,
}

impl Channel {
    /// The channel of a name; `buses:<route_id>` must name a route of `city`.
    pub fn parse(name: &str, city: &CityModel) -> Result<Channel, String> {
        match name {
            "segments" => Ok(Channel::Segments),
            "parking" => Ok(Channel::Parking),
            "incidents" => Ok(Channel::Incidents),
            "buses" => Ok(Channel::Buses(None)),
            "violations" => Ok(Channel::Violations),
            _ => match name.strip_prefix("buses:") {
                Some(route) if city.route_idx(route).is_some() => Ok(Channel::Buses(Some(route.to_owned()))),
                Some(route) => Err(format!("no route {route}")),
                None => Err(format!("no channel {name:?}; channels: segments, parking, incidents, buses, buses:<route_id>, violations")),
            },
        }
    }

    /// The name `parse` reads back.
    pub fn name(&self) -> String {
        match self {
            Channel::Segments => "segments".into(),
            Channel::Parking => "parking".into(),
            Channel::Incidents => "incidents".into(),
            Channel::Buses(None) => "buses".into(),
            Channel::Buses(Some(route)) => format!("buses:{route}"),
            Channel::Violations => "violations".into(),
        }
    }
}

// ---- Query parameters

/// Tickets per page of `GET /api/v1/violations` when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;
/// Largest `limit` of `GET /api/v1/violations`.
pub const MAX_PAGE: usize = 1000;

/// The checked filters of `GET /api/v1/violations`.
#[derive(Debug, Clone, PartialEq)]
pub struct ViolationFilter {
    /// Normalised.
    pub plate: Option<Plate>,
    pub limit: usize,
    /// Tickets that arrived after this arrival number (0: from the first).
    pub after: u64,
    pub since_ms: i64,
    pub until_ms: i64,
}

/// Checks the query parameters of `GET /api/v1/violations` (`kind` is checked
/// by its type when the query is deserialised).
pub fn violation_filter(
    plate: Option<&str>,
    limit: Option<usize>,
    cursor: Option<&str>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
) -> Result<ViolationFilter, String> {
    let plate = plate.map(|p| Plate::parse(p).map_err(|e| format!("plate: {e}"))).transpose()?;
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(format!("limit must be 1 to {MAX_PAGE}"));
    }
    let after = cursor.map(parse_cursor).transpose()?.unwrap_or(0);
    Ok(ViolationFilter { plate, limit, after, since_ms: since_ms.unwrap_or(i64::MIN), until_ms: until_ms.unwrap_or(i64::MAX) })
}

/// The cursor of the page that ends with the ticket of arrival number `seq`.
pub fn cursor(seq: u64) -> String {
    format!("v{seq}")
}

/// The arrival number in a cursor that `cursor` gave out. Only that exact text is
/// read back (no sign, no leading zero: the pattern `^v[0-9]{1,19}$` of the
/// OpenAPI document), so each position has one cursor. Found by fuzzing: `v00`,
/// `v+7` and `v007` used to be taken for positions the API never named so.
pub fn parse_cursor(text: &str) -> Result<u64, String> {
    match text.strip_prefix('v').and_then(|n| n.parse::<u64>().ok()) {
        Some(seq) if cursor(seq) == text => Ok(seq),
        _ => Err(format!("cursor {text:?} is not one this API gave out")),
    }
}

/// Parses `lat,lon`, with a message that says which parameter and what is wrong.
pub fn parse_point(name: &str, value: Option<&str>) -> Result<(f64, f64), String> {
    let value = value.ok_or_else(|| format!("missing `{name}`: give it as {name}=lat,lon, e.g. {name}=24.4798,118.0894"))?;
    let shown: String = value.chars().take(60).collect();
    let malformed = || format!("`{name}` must be lat,lon: two decimal numbers separated by a comma, got \"{shown}\"");
    let mut parts = value.split(',');
    let (Some(lat), Some(lon), None) = (parts.next(), parts.next(), parts.next()) else { return Err(malformed()) };
    let (Ok(lat), Ok(lon)) = (lat.trim().parse::<f64>(), lon.trim().parse::<f64>()) else { return Err(malformed()) };
    if !lat.is_finite() || !lon.is_finite() {
        return Err(format!("`{name}` must be finite numbers, got \"{shown}\""));
    }
    if !(-90.0..=90.0).contains(&lat) {
        // The usual slip is lon,lat: Xiamen's longitude (118) is no latitude.
        return Err(format!("`{name}` latitude {lat} is outside -90..90; the order is lat,lon"));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(format!("`{name}` longitude {lon} is outside -180..180"));
    }
    Ok((lat, lon))
}

/// A hotlist name: 1 to 64 of A-Z, a-z, 0-9, `-` and `_`.
pub fn check_list_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok { Ok(()) } else { Err("a list name is 1 to 64 of A-Z, a-z, 0-9, - and _".to_owned()) }
}

// ---- HTTP ingest (`POST /api/v1/ingest`)

/// The lines of an NDJSON body, `\n` or `\r\n` separated, blank ones included (so
/// an index is the line number less one).
pub fn ingest_lines(body: &[u8]) -> Vec<&[u8]> {
    body.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect()
}

/// A line with nothing but whitespace, skipped rather than rejected.
pub fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// One ingest line checked: its topic by its `type`, then the decoder of that
/// topic, the same one the Kafka path uses.
pub fn check_line(decoder: &Decoder<'_>, line: &[u8]) -> Result<(Topic, Decoded), Reject> {
    std::str::from_utf8(line)
        .map_err(|e| Reject::new(Reason::InvalidUtf8, format!("invalid UTF-8 at byte {}", e.valid_up_to())))
        .and_then(|_| topic_of(line))
        .and_then(|topic| decoder.decode(topic, line).map(|d| (topic, d)))
}

/// The type tag of a line, or why it has none.
pub fn topic_of(line: &[u8]) -> Result<Topic, Reject> {
    #[derive(serde::Deserialize)]
    struct Tagged<'a> {
        #[serde(borrow, rename = "type")]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    let tagged: Tagged<'_> = serde_json::from_slice(line).map_err(|e| {
        if e.is_data() { Reject::new(Reason::NotAnObject, e.to_string()) } else { Reject::new(Reason::NotJson, e.to_string()) }
    })?;
    let kind = tagged.kind.ok_or_else(|| Reject::new(Reason::MissingField, "\"type\" is missing"))?;
    Topic::ALL
        .into_iter()
        .find(|t| t.ingest_type() == kind)
        .ok_or_else(|| Reject::new(Reason::UnknownType, format!("type {kind:?} is not plate_read, bus_gps, camera or parking_count")))
}

/// The contract's key of an event: plate, bus id, plate else camera id, lot id.
pub fn key_of(decoded: &Decoded, city: &CityModel) -> String {
    match decoded {
        Decoded::PlateRead(r) => r.plate.to_string(),
        Decoded::BusGps(g) => g.bus_id.clone(),
        Decoded::Camera(c) => c.plate.map_or_else(|| city.cameras[c.camera as usize].camera_id.clone(), |p| p.to_string()),
        Decoded::ParkingCount(p) => city.lots[p.lot as usize].lot_id.clone(),
    }
}

// ---- SQL (`POST /api/v1/sql`)

/// The SQL with every single-quoted literal that is a plate replaced by
/// `pseudonym(literal)`, for the audit log.
///
/// Any text after a quote and up to the next one is taken for a literal, not
/// only every other one: an apostrophe in a comment (`-- who's`) or a quoted
/// identifier (`"driver's"`) shifts which quotes open literals, and counting
/// them wrongly used to write such a query's plates in clear (found by fuzzing).
/// Text between a closing and an opening quote is never a plate in valid SQL.
pub fn pseudonymise_literals(sql: &str, mut pseudonym: impl FnMut(&str) -> String) -> String {
    let parts: Vec<&str> = sql.split('\'').collect();
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| if i > 0 && Plate::parse(part).is_ok() { pseudonym(part) } else { (*part).to_owned() })
        .collect::<Vec<_>>()
        .join("'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_read_back_only_as_it_was_given_out() {
        for seq in [0, 1, 120, u64::MAX] {
            assert_eq!(parse_cursor(&cursor(seq)), Ok(seq));
        }
        // fuzz/api_query found `v00` accepted as position 0.
        for bad in ["v00", "v007", "v+7", "v", "", "7", "v-1", "v 7", " v7", "V7", "v7 ", "v18446744073709551616"] {
            assert!(parse_cursor(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn no_quoted_plate_reaches_the_audit_text() {
        let hide = |sql: &str| pseudonymise_literals(sql, |_| "p:1".to_owned());
        assert_eq!(hide("SELECT * FROM violations WHERE plate = '闽D12345'"), "SELECT * FROM violations WHERE plate = 'p:1'");
        assert_eq!(hide("SELECT 'it''s', 'red_light'"), "SELECT 'it''s', 'red_light'");
        // fuzz/sql_audit_literals: an apostrophe outside a literal left the plate in clear.
        assert_eq!(hide("SELECT \"driver's\" FROM v WHERE plate = '闽D12345'"), "SELECT \"driver's\" FROM v WHERE plate = 'p:1'");
        assert_eq!(hide("-- who's this\nSELECT * FROM v WHERE plate IN ('闽DD12345', 'x')"), "-- who's this\nSELECT * FROM v WHERE plate IN ('p:1', 'x')");
    }
}
