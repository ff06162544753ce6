//! The bus tables: `buses` (where each bus is), `arrivals` (one row per bus and
//! stop ahead, with its prediction) and `headways` (every route's headway events and
//! trips that never ran, flattened into one table).

use super::{batch, floats, ints, strs};
use datafusion::arrow::array::RecordBatch;
use egret_pipeline::transit::{BusStatus, StopEta, TransitEvent};

/// `buses`: every bus on the map, with the first stop ahead.
pub fn buses_batch(buses: &[BusStatus]) -> RecordBatch {
    batch(vec![
        ("bus_id", strs(buses, |b| Some(b.bus_id.as_str()))),
        ("route_id", strs(buses, |b| Some(b.route_id.as_str()))),
        ("direction_id", ints(buses, |b| Some(i64::from(b.direction_id)))),
        ("trip_id", strs(buses, |b| Some(b.trip_id.as_str()))),
        ("ts_ms", ints(buses, |b| Some(b.ts_ms))),
        ("lat", floats(buses, |b| Some(b.lat))),
        ("lon", floats(buses, |b| Some(b.lon))),
        ("distance_m", floats(buses, |b| Some(b.distance_m))),
        ("next_stop_id", strs(buses, |b| b.next_stops.first().map(|e| e.stop_id.as_str()))),
        ("next_stop_predicted_ms", ints(buses, |b| b.next_stops.first().map(|e| e.predicted_ms))),
        ("stops_ahead", ints(buses, |b| i64::try_from(b.next_stops.len()).ok())),
    ])
}

/// `arrivals`: one row per bus and stop ahead of it. `stop_seq` counts the stops
/// ahead from 1 (the next one); the bus may come `early_ms` before or `late_ms`
/// after `predicted_ms`.
pub fn arrivals_batch(buses: &[BusStatus]) -> RecordBatch {
    let rows: Vec<(&BusStatus, usize, &StopEta)> =
        buses.iter().flat_map(|b| b.next_stops.iter().enumerate().map(move |(i, e)| (b, i + 1, e))).collect();
    batch(vec![
        ("stop_id", strs(&rows, |(_, _, e)| Some(e.stop_id.as_str()))),
        ("bus_id", strs(&rows, |(b, _, _)| Some(b.bus_id.as_str()))),
        ("route_id", strs(&rows, |(b, _, _)| Some(b.route_id.as_str()))),
        ("direction_id", ints(&rows, |(b, _, _)| Some(i64::from(b.direction_id)))),
        ("trip_id", strs(&rows, |(b, _, _)| Some(b.trip_id.as_str()))),
        ("stop_seq", ints(&rows, |(_, i, _)| i64::try_from(*i).ok())),
        ("predicted_ms", ints(&rows, |(_, _, e)| Some(e.predicted_ms))),
        ("early_ms", ints(&rows, |(_, _, e)| Some(e.early_ms))),
        ("late_ms", ints(&rows, |(_, _, e)| Some(e.late_ms))),
        ("as_of_ms", ints(&rows, |(b, _, _)| Some(b.ts_ms))),
    ])
}

/// `headways`: `type` is `headway` (a bus reached a stop: headway and its
/// `status`, ok / bunched / gap) or `ghost_trip` (a scheduled trip that never ran);
/// columns that do not apply to a type are null.
pub fn headways_batch(events: &[TransitEvent]) -> RecordBatch {
    use TransitEvent::{GhostTrip, Headway};
    batch(vec![
        ("type", strs(events, |e| Some(match e {
            Headway { .. } => "headway",
            GhostTrip { .. } => "ghost_trip",
        }))),
        ("route_id", strs(events, |e| match e {
            Headway { route_id, .. } | GhostTrip { route_id, .. } => Some(route_id.as_str()),
        })),
        ("direction_id", ints(events, |e| match e {
            Headway { direction_id, .. } | GhostTrip { direction_id, .. } => Some(i64::from(*direction_id)),
        })),
        ("stop_id", strs(events, |e| if let Headway { stop_id, .. } = e { Some(stop_id.as_str()) } else { None })),
        ("bus_id", strs(events, |e| if let Headway { bus_id, .. } = e { Some(bus_id.as_str()) } else { None })),
        ("previous_bus_id", strs(events, |e| if let Headway { previous_bus_id, .. } = e { Some(previous_bus_id.as_str()) } else { None })),
        ("arrival_ms", ints(events, |e| if let Headway { arrival_ms, .. } = e { Some(*arrival_ms) } else { None })),
        ("headway_s", floats(events, |e| if let Headway { headway_s, .. } = e { Some(*headway_s) } else { None })),
        ("scheduled_headway_s", floats(events, |e| if let Headway { scheduled_headway_s, .. } = e { Some(*scheduled_headway_s) } else { None })),
        ("status", strs(events, |e| if let Headway { status, .. } = e { Some(status.as_str()) } else { None })),
        ("trip_id", strs(events, |e| if let GhostTrip { trip_id, .. } = e { Some(trip_id.as_str()) } else { None })),
        ("scheduled_ms", ints(events, |e| if let GhostTrip { scheduled_ms, .. } = e { Some(*scheduled_ms) } else { None })),
    ])
}
