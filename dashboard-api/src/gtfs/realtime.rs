//! The two GTFS-realtime feeds as `FeedMessage`s (version 2.0, FULL_DATASET):
//! vehicle positions, and trip updates with a predicted arrival and departure at
//! each stop ahead (the pipeline's predictions and their early/late bounds) plus
//! the trips that never ran, as CANCELED while they would still be on the road.
//! Both list the same buses: those heard lately and still short of their last stop.
//!
//! Trips are the static feed's: a bus names its trip id, and the shared `Schedule`
//! gives that trip's route, direction, start time and stop sequences. A bus whose
//! trip id the timetable lacks keeps its route and direction in the position feed
//! but has no trip update (there is no schedule to relate it to). Entity ids are
//! the bus id for a position and the trip id with its service date for an update:
//! stable from one message to the next and unique within one.

use super::proto::{self, FeedEntity, FeedHeader, FeedMessage, TripDescriptor, TripUpdate, VehicleDescriptor, VehiclePosition};
use super::schedule::{DWELL_S, DirectionPlan, Schedule, StopPlan, TripRef, gtfs_date, gtfs_time};
use egret_pipeline::transit::{BusStatus, TransitEvent};
use std::collections::{BTreeMap, HashSet};

/// A bus last heard longer ago than this (behind the feed's data clock) is in
/// neither feed: GTFS-rt Best Practices want vehicle positions no older than 90
/// seconds, and both feeds list the same buses so consumers can pair them.
const LIVE_WITHIN_MS: i64 = 90_000;

fn header(timestamp: u64) -> FeedHeader {
    FeedHeader {
        gtfs_realtime_version: "2.0".into(),
        incrementality: Some(proto::feed_header::Incrementality::FullDataset as i32),
        timestamp: Some(timestamp),
        ..Default::default()
    }
}

fn seconds(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// A scheduled trip as GTFS-rt names it: trip, route, direction, start time and
/// service date, so a trip id that runs every day is still one instance.
fn scheduled_trip(trip_id: &str, t: TripRef, plan: &DirectionPlan, day: i64, relationship: proto::trip_descriptor::ScheduleRelationship) -> TripDescriptor {
    let first_arrival = plan.stops.first().map_or(0, |s| s.arrival_s);
    TripDescriptor {
        trip_id: Some(trip_id.to_owned()),
        route_id: Some(plan.route_id.clone()),
        direction_id: (plan.direction_id <= 1).then_some(u32::from(plan.direction_id)),
        start_time: Some(gtfs_time(t.minute * 60 + first_arrival)),
        start_date: Some(gtfs_date(day)),
        schedule_relationship: Some(relationship as i32),
        ..Default::default()
    }
}

/// The trip a bus is on: the scheduled one its report names, or, when the
/// timetable lacks that id, just its route and direction.
fn bus_trip<'a>(schedule: &'a Schedule, bus: &BusStatus) -> (TripDescriptor, Option<(&'a DirectionPlan, String)>) {
    match schedule.trip(&bus.trip_id).filter(|(_, plan)| plan.route_id == bus.route_id) {
        Some((t, plan)) => {
            let day = schedule.service_day(t.minute, bus.ts_ms);
            let trip = scheduled_trip(&bus.trip_id, t, plan, day, proto::trip_descriptor::ScheduleRelationship::Scheduled);
            (trip, Some((plan, format!("{}-{}", bus.trip_id, gtfs_date(day)))))
        }
        None => {
            let trip = TripDescriptor {
                route_id: Some(bus.route_id.clone()),
                direction_id: (bus.direction_id <= 1).then_some(u32::from(bus.direction_id)),
                ..Default::default()
            };
            (trip, None)
        }
    }
}

/// The stop a bus goes to next: the pipeline's first prediction, or by distance
/// beyond the prediction horizon; none once it has passed the last.
fn next_stop<'a>(plan: &'a DirectionPlan, bus: &BusStatus) -> Option<&'a StopPlan> {
    bus.next_stops.first().and_then(|e| plan.stop(&e.stop_id)).or_else(|| plan.next_stop_after(bus.distance_m))
}

fn vehicle(bus: &BusStatus) -> VehicleDescriptor {
    // The fleet id only: never a plate (the public feed must not carry one).
    VehicleDescriptor { id: Some(bus.bus_id.clone()), ..Default::default() }
}

/// Compass bearing (degrees clockwise from north) of the route where a bus is: the
/// way to the next point of its shape.
fn bearing(plan: &DirectionPlan, distance_m: f64) -> Option<f32> {
    let i = plan.shape.iter().position(|(_, along)| *along > distance_m)?;
    let (a, b) = (plan.shape.get(i.checked_sub(1)?)?.0, plan.shape[i].0);
    let (lat1, lat2) = (a[1].to_radians(), b[1].to_radians());
    let dlon = (b[0] - a[0]).to_radians();
    let y = dlon.sin() * lat2.cos();
    let x = lat1.cos() * lat2.sin() - lat1.sin() * lat2.cos() * dlon.cos();
    Some(y.atan2(x).to_degrees().rem_euclid(360.0) as f32)
}

pub fn vehicle_positions(schedule: &Schedule, buses: &[BusStatus], data_ms: i64, header_s: u64) -> FeedMessage {
    let entity = buses
        .iter()
        .filter(|b| b.ts_ms >= data_ms - LIVE_WITHIN_MS)
        .filter_map(|bus| {
            let (trip, scheduled) = bus_trip(schedule, bus);
            let plan = scheduled.map(|(plan, _)| plan).or_else(|| schedule.direction(&bus.route_id, bus.direction_id));
            let next = plan.and_then(|p| next_stop(p, bus));
            if plan.is_some() && next.is_none() {
                return None; // Past its last stop: the trip is over.
            }
            let position = proto::Position {
                latitude: bus.lat as f32,
                longitude: bus.lon as f32,
                bearing: plan.and_then(|p| bearing(p, bus.distance_m)),
                ..Default::default()
            };
            let vp = VehiclePosition {
                trip: Some(trip),
                vehicle: Some(vehicle(bus)),
                position: Some(position),
                current_stop_sequence: next.map(|s| s.sequence),
                stop_id: next.map(|s| s.stop_id.clone()),
                current_status: next.map(|_| proto::vehicle_position::VehicleStopStatus::InTransitTo as i32),
                timestamp: u64::try_from(seconds(bus.ts_ms)).ok(),
                ..Default::default()
            };
            Some(FeedEntity { id: bus.bus_id.clone(), vehicle: Some(vp), ..Default::default() })
        })
        .collect();
    FeedMessage { header: header(header_s), entity }
}

fn event(time_s: i64, uncertainty_s: i32) -> proto::trip_update::StopTimeEvent {
    proto::trip_update::StopTimeEvent { time: Some(time_s), uncertainty: Some(uncertainty_s), ..Default::default() }
}

/// Arrival and departure at each stop ahead. The uncertainty is the wider of the
/// early and late bounds, so the whole band lies within ± it. Times only go up
/// from stop to stop (consumers and validators rely on it): a departure is the
/// arrival plus the dwell, and a prediction no later than the one before it is
/// moved a second past that.
///
/// A bus whose next stop is beyond the prediction horizon (a long intercity leg)
/// gets that stop as NO_DATA: the trip is running, with this bus, and nothing is
/// predicted for the rest of it, so consumers keep to the timetable.
fn stop_time_updates(plan: &DirectionPlan, bus: &BusStatus) -> Vec<proto::trip_update::StopTimeUpdate> {
    use proto::trip_update::stop_time_update::ScheduleRelationship;
    let last_sequence = plan.stops.last().map_or(0, |s| s.sequence);
    let mut previous_s = i64::MIN;
    let mut previous_sequence = 0;
    let mut out = Vec::with_capacity(bus.next_stops.len());
    for eta in &bus.next_stops {
        let Some(stop) = plan.stop(&eta.stop_id).filter(|s| s.sequence > previous_sequence) else { continue };
        let uncertainty = i32::try_from(eta.early_ms.max(eta.late_ms).div_euclid(1000)).unwrap_or(i32::MAX);
        let arrival_s = seconds(eta.predicted_ms + 500).max(previous_s.saturating_add(1));
        // The last stop has no departure, and GTFS-rt wants none there.
        let departure_s = (stop.sequence < last_sequence).then_some(arrival_s + i64::from(DWELL_S));
        previous_s = departure_s.unwrap_or(arrival_s);
        previous_sequence = stop.sequence;
        out.push(proto::trip_update::StopTimeUpdate {
            stop_sequence: Some(stop.sequence),
            stop_id: Some(stop.stop_id.clone()),
            arrival: Some(event(arrival_s, uncertainty)),
            departure: departure_s.map(|d| event(d, uncertainty)),
            schedule_relationship: Some(ScheduleRelationship::Scheduled as i32),
            ..Default::default()
        });
    }
    if out.is_empty()
        && let Some(stop) = next_stop(plan, bus)
    {
        out.push(proto::trip_update::StopTimeUpdate {
            stop_sequence: Some(stop.sequence),
            stop_id: Some(stop.stop_id.clone()),
            schedule_relationship: Some(ScheduleRelationship::NoData as i32),
            ..Default::default()
        });
    }
    out
}

pub fn trip_updates(schedule: &Schedule, buses: &[BusStatus], events: &[TransitEvent], data_ms: i64, header_s: u64) -> FeedMessage {
    // One update per trip instance: were two buses to claim one, the newer report.
    let mut updates: BTreeMap<String, (i64, TripUpdate)> = BTreeMap::new();
    for bus in buses.iter().filter(|b| b.ts_ms >= data_ms - LIVE_WITHIN_MS) {
        let (trip, Some((plan, key))) = bus_trip(schedule, bus) else { continue };
        let stop_time_update = stop_time_updates(plan, bus);
        if stop_time_update.is_empty() || updates.get(&key).is_some_and(|(ts, _)| *ts >= bus.ts_ms) {
            continue;
        }
        let update = TripUpdate {
            trip,
            vehicle: Some(vehicle(bus)),
            stop_time_update,
            timestamp: u64::try_from(seconds(bus.ts_ms)).ok(),
            ..Default::default()
        };
        updates.insert(key, (bus.ts_ms, update));
    }
    let running: HashSet<String> = buses.iter().filter_map(|b| bus_trip(schedule, b).1.map(|(_, key)| key)).collect();
    for e in events {
        let TransitEvent::GhostTrip { trip_id, scheduled_ms, .. } = e else { continue };
        let Some((t, plan)) = schedule.trip(trip_id) else { continue };
        let day = schedule.service_day(t.minute, *scheduled_ms);
        let key = format!("{trip_id}-{}", gtfs_date(day));
        let last_arrival_s = plan.stops.last().map_or(0, |s| s.arrival_s);
        let scheduled_end_ms = schedule.midnight_ms(day) + (i64::from(t.minute) * 60 + i64::from(last_arrival_s)) * 1000;
        // Riders care while the trip would still be on the road; a bus that did
        // turn up after all is running, not cancelled.
        if scheduled_end_ms < data_ms || running.contains(&key) || updates.contains_key(&key) {
            continue;
        }
        let trip = scheduled_trip(trip_id, t, plan, day, proto::trip_descriptor::ScheduleRelationship::Canceled);
        // No vehicle to name; its absence was last confirmed as of the data clock.
        let update = TripUpdate { trip, timestamp: u64::try_from(seconds(data_ms)).ok(), ..Default::default() };
        updates.insert(key, (*scheduled_ms, update));
    }
    let entity = updates.into_iter().map(|(id, (_, update))| FeedEntity { id, trip_update: Some(update), ..Default::default() }).collect();
    FeedMessage { header: header(header_s), entity }
}
