//! The realtime feeds built from hand-made bus statuses against the repo's city:
//! trips and stop sequences resolve to the static schedule, times only go up,
//! unknown trips lose their trip id but keep their route, stale buses and finished
//! trips drop out, a bus beyond the prediction horizon says NO_DATA, and a trip
//! that never ran is CANCELED until it would have arrived.

use super::proto::{FeedMessage, trip_descriptor::ScheduleRelationship};
use super::realtime;
use super::schedule::Schedule;
use egret_model::CityModel;
use egret_pipeline::transit::{BusStatus, StopEta, TransitEvent};

/// 2026-11-30 07:45 local.
const NOW: i64 = 1_795_995_900_000;

fn city() -> CityModel {
    CityModel::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data")).expect("city")
}

/// A bus of the first route's first direction (BRT 1, every 4 minutes from 07:04)
/// on the trip of `trip_minute`, at its first stop, with predictions for the next
/// three stops a minute apart.
fn bus(city: &CityModel, bus_id: &str, trip_minute: u32, ts_ms: i64) -> BusStatus {
    let route = &city.routes[0];
    let dir = &route.directions[0];
    let next_stops = dir.stops[1..4]
        .iter()
        .enumerate()
        .map(|(k, s)| StopEta { stop_id: s.stop_id.clone(), predicted_ms: ts_ms + 60_000 * (k as i64 + 1), early_ms: 30_000, late_ms: 90_000 })
        .collect();
    BusStatus {
        bus_id: bus_id.into(),
        route_id: route.route_id.clone(),
        direction_id: dir.direction_id,
        trip_id: route.trip_id(dir.direction_id, trip_minute),
        ts_ms,
        lat: dir.stops[0].lat,
        lon: dir.stops[0].lon,
        distance_m: 1.0,
        next_stops,
    }
}

fn trip_ids(feed: &FeedMessage) -> Vec<String> {
    feed.entity.iter().filter_map(|e| e.trip_update.as_ref().and_then(|u| u.trip.trip_id.clone())).collect()
}

#[test]
fn trip_updates_name_scheduled_trips_with_increasing_times() {
    let city = city();
    let schedule = Schedule::new(&city);
    let b = bus(&city, "XM-B0001", 7 * 60 + 40, NOW);
    let feed = realtime::trip_updates(&schedule, std::slice::from_ref(&b), &[], NOW, NOW as u64 / 1000);
    assert_eq!(feed.header.gtfs_realtime_version, "2.0");
    assert_eq!(feed.header.incrementality, Some(0));
    assert_eq!(feed.entity.len(), 1);
    let entity = &feed.entity[0];
    let update = entity.trip_update.as_ref().expect("trip update");
    assert_eq!(entity.id, format!("{}-20261130", b.trip_id));
    assert_eq!(update.trip.trip_id.as_deref(), Some(b.trip_id.as_str()));
    assert_eq!(update.trip.start_date.as_deref(), Some("20261130"));
    assert_eq!(update.trip.start_time.as_deref(), Some("07:40:00"));
    assert_eq!(update.vehicle.as_ref().and_then(|v| v.license_plate.as_ref()), None);
    let sequences: Vec<u32> = update.stop_time_update.iter().filter_map(|u| u.stop_sequence).collect();
    assert_eq!(sequences, [2, 3, 4]);
    let mut times = Vec::new();
    for u in &update.stop_time_update {
        let arrival = u.arrival.as_ref().expect("arrival");
        assert_eq!(arrival.uncertainty, Some(90));
        times.push(arrival.time.expect("time"));
        times.extend(u.departure.as_ref().and_then(|d| d.time));
    }
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
}

#[test]
fn unknown_trips_keep_their_route_but_get_no_update_and_stale_buses_drop() {
    let city = city();
    let schedule = Schedule::new(&city);
    let mut stray = bus(&city, "XM-B0002", 7 * 60 + 40, NOW);
    stray.trip_id = format!("{}-0-0741", stray.route_id);
    let stale = bus(&city, "XM-B0003", 7 * 60 + 20, NOW - 5 * 60_000);
    let buses = [stray.clone(), stale];
    let positions = realtime::vehicle_positions(&schedule, &buses, NOW, NOW as u64 / 1000);
    assert_eq!(positions.entity.len(), 1, "the stale bus is left out");
    let vp = positions.entity[0].vehicle.as_ref().expect("vehicle");
    let trip = vp.trip.as_ref().expect("trip");
    assert_eq!((trip.trip_id.as_deref(), trip.route_id.as_deref()), (None, Some(stray.route_id.as_str())));
    assert_eq!(vp.current_stop_sequence, Some(2));
    assert!(vp.position.as_ref().and_then(|p| p.bearing).is_some_and(|b| (0.0..360.0).contains(&b)));
    let updates = realtime::trip_updates(&schedule, &buses, &[], NOW, NOW as u64 / 1000);
    assert!(trip_ids(&updates).is_empty(), "the stray trip has no schedule to update, the stale bus is gone");
}

#[test]
fn beyond_the_horizon_the_next_stop_is_no_data_and_past_the_last_the_bus_is_gone() {
    use super::proto::trip_update::stop_time_update::ScheduleRelationship as StopRelationship;
    let city = city();
    let schedule = Schedule::new(&city);
    let mut far = bus(&city, "XM-B0006", 7 * 60 + 40, NOW);
    far.next_stops.clear();
    let mut done = bus(&city, "XM-B0007", 7 * 60 + 20, NOW);
    done.next_stops.clear();
    done.distance_m = 1e9;
    let buses = [far.clone(), done];
    let updates = realtime::trip_updates(&schedule, &buses, &[], NOW, NOW as u64 / 1000);
    assert_eq!(trip_ids(&updates), [far.trip_id.clone()]);
    let stops = &updates.entity[0].trip_update.as_ref().expect("update").stop_time_update;
    assert_eq!(stops.len(), 1);
    assert_eq!((stops[0].stop_sequence, stops[0].schedule_relationship), (Some(2), Some(StopRelationship::NoData as i32)));
    assert!(stops[0].arrival.is_none() && stops[0].departure.is_none());
    let positions = realtime::vehicle_positions(&schedule, &buses, NOW, NOW as u64 / 1000);
    let ids: Vec<&str> = positions.entity.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["XM-B0006"], "the bus past its last stop has no trip to serve");
}

#[test]
fn a_trip_that_never_ran_is_canceled_until_it_would_have_arrived() {
    let city = city();
    let schedule = Schedule::new(&city);
    let route = &city.routes[0];
    // The last departure by 07:30.
    let minute = route.timetable.departure_minutes().into_iter().filter(|m| *m <= 7 * 60 + 30).max().expect("a morning trip");
    let trip_id = route.trip_id(route.directions[0].direction_id, minute);
    let scheduled_ms = NOW - i64::from(7 * 60 + 45 - minute) * 60_000;
    let ghost = TransitEvent::GhostTrip { route_id: route.route_id.clone(), direction_id: 0, trip_id: trip_id.clone(), scheduled_ms };
    let feed = realtime::trip_updates(&schedule, &[], std::slice::from_ref(&ghost), NOW, NOW as u64 / 1000);
    let update = feed.entity[0].trip_update.as_ref().expect("update");
    assert_eq!(update.trip.schedule_relationship, Some(ScheduleRelationship::Canceled as i32));
    assert!(update.stop_time_update.is_empty());
    // Long after its last stop, nobody waits for it any more.
    let later = realtime::trip_updates(&schedule, &[], &[ghost], NOW + 6 * 3_600_000, 0);
    assert!(later.entity.is_empty());
}

#[test]
fn two_buses_on_one_trip_make_one_update_from_the_newer_report() {
    let city = city();
    let schedule = Schedule::new(&city);
    let buses = [bus(&city, "XM-B0004", 7 * 60 + 40, NOW - 30_000), bus(&city, "XM-B0005", 7 * 60 + 40, NOW)];
    let feed = realtime::trip_updates(&schedule, &buses, &[], NOW, NOW as u64 / 1000);
    assert_eq!(feed.entity.len(), 1);
    let vehicle = feed.entity[0].trip_update.as_ref().and_then(|u| u.vehicle.as_ref()).and_then(|v| v.id.clone());
    assert_eq!(vehicle.as_deref(), Some("XM-B0005"));
}
