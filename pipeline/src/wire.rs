//! Reading the repartition topic's JSON without serde's detour for internally
//! tagged enums.
//!
//! `Internal` and `Update` are written as JSON objects tagged by a field (`"k"`,
//! `"t"`), which keeps the topic readable with any Kafka tool. serde derives the
//! reading of such an enum by first copying the whole object into a generic tree
//! (strings, maps) and then matching the tag; nested twice here, that copy cost
//! stage 2 about a tenth of its thread. Every field name is unique within its
//! object, so one flat struct of optional fields reads any variant in a single pass,
//! in any key order; the variant is then checked for the fields it needs. The wire
//! format does not change: what `Serialize` writes reads back the same.

use crate::repartition::{Entry, Internal};
use crate::update::{Origin, Update};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum InternalKind {
    Data,
    Mark,
    Leave,
    Batch,
    Cut,
}

/// Every field of every `Internal` variant.
#[derive(Deserialize)]
pub(crate) struct FlatInternal {
    k: InternalKind,
    p: u64,
    u: Option<Update>,
    o: Option<Origin>,
    wm: Option<i64>,
    us: Option<Vec<Entry>>,
    i: Option<u32>,
    n: Option<u32>,
    at: Option<i64>,
}

impl TryFrom<FlatInternal> for Internal {
    type Error = String;

    fn try_from(f: FlatInternal) -> Result<Internal, String> {
        Ok(match f.k {
            InternalKind::Data => Internal::Data { p: f.p, u: f.u.ok_or("data without its update `u`")?, o: f.o },
            InternalKind::Mark => Internal::Mark { p: f.p, wm: f.wm.ok_or("mark without its watermark `wm`")? },
            InternalKind::Leave => Internal::Leave { p: f.p },
            InternalKind::Batch => Internal::Batch { p: f.p, us: f.us.ok_or("batch without its updates `us`")?, wm: f.wm, i: f.i.unwrap_or(0), n: f.n.unwrap_or(1) },
            InternalKind::Cut => Internal::Cut { p: f.p, at: f.at.ok_or("cut without its instant `at`")?, i: f.i.unwrap_or(0), n: f.n.unwrap_or(1) },
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum UpdateKind {
    Traversal,
    Entered,
    Left,
    Gate,
    BusReport,
    Count,
}

/// Every field of every `Update` variant.
#[derive(Deserialize)]
pub(crate) struct FlatUpdate {
    t: UpdateKind,
    segment: Option<u32>,
    lot: Option<u32>,
    route: Option<u32>,
    enter_ms: Option<i64>,
    exit_ms: Option<i64>,
    ts_ms: Option<i64>,
    entering: Option<bool>,
    occupied: Option<u32>,
    bus_id: Option<String>,
    trip_id: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
    speed_kmh: Option<f64>,
}

fn needs<T>(field: Option<T>, name: &str, kind: &str) -> Result<T, String> {
    field.ok_or_else(|| format!("{kind} update without `{name}`"))
}

impl TryFrom<FlatUpdate> for Update {
    type Error = String;

    fn try_from(f: FlatUpdate) -> Result<Update, String> {
        Ok(match f.t {
            UpdateKind::Traversal => Update::Traversal {
                segment: needs(f.segment, "segment", "traversal")?,
                enter_ms: needs(f.enter_ms, "enter_ms", "traversal")?,
                exit_ms: needs(f.exit_ms, "exit_ms", "traversal")?,
            },
            UpdateKind::Entered => Update::Entered { segment: needs(f.segment, "segment", "entered")?, ts_ms: needs(f.ts_ms, "ts_ms", "entered")? },
            UpdateKind::Left => Update::Left { segment: needs(f.segment, "segment", "left")?, enter_ms: needs(f.enter_ms, "enter_ms", "left")? },
            UpdateKind::Gate => Update::Gate {
                lot: needs(f.lot, "lot", "gate")?,
                entering: needs(f.entering, "entering", "gate")?,
                ts_ms: needs(f.ts_ms, "ts_ms", "gate")?,
            },
            UpdateKind::BusReport => Update::BusReport {
                route: needs(f.route, "route", "bus_report")?,
                bus_id: needs(f.bus_id, "bus_id", "bus_report")?,
                trip_id: f.trip_id,
                lat: needs(f.lat, "lat", "bus_report")?,
                lon: needs(f.lon, "lon", "bus_report")?,
                speed_kmh: f.speed_kmh,
                ts_ms: needs(f.ts_ms, "ts_ms", "bus_report")?,
            },
            UpdateKind::Count => Update::Count {
                lot: needs(f.lot, "lot", "count")?,
                occupied: needs(f.occupied, "occupied", "count")?,
                ts_ms: needs(f.ts_ms, "ts_ms", "count")?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_update() -> Vec<Update> {
        vec![
            Update::Traversal { segment: 3, enter_ms: 1_700_000_000_000, exit_ms: 1_700_000_090_001 },
            Update::Entered { segment: 4, ts_ms: 1_700_000_000_000 },
            Update::Left { segment: 5, enter_ms: 1_700_000_000_000 },
            Update::Gate { lot: 6, entering: true, ts_ms: 1_700_000_000_000 },
            Update::BusReport { route: 7, bus_id: "闽D-B1234".into(), trip_id: Some("t-1".into()), lat: 24.48, lon: 118.09, speed_kmh: None, ts_ms: 1_700_000_000_000 },
            Update::BusReport { route: 7, bus_id: "b".into(), trip_id: None, lat: -0.5, lon: 0.25, speed_kmh: Some(31.5), ts_ms: 1 },
            Update::Count { lot: 8, occupied: 120, ts_ms: 1_700_000_000_000 },
        ]
    }

    #[test]
    fn every_message_reads_back_as_written() {
        let mut messages: Vec<Internal> = every_update().into_iter().map(|u| Internal::Data { p: 42, u, o: Some(Origin(1, 2, 3, 4)) }).collect();
        messages.push(Internal::Data { p: 1, u: Update::Entered { segment: 0, ts_ms: 2 }, o: None });
        messages.push(Internal::Mark { p: 9, wm: i64::MAX });
        messages.push(Internal::Leave { p: 9 });
        let entries = every_update().into_iter().map(|u| Entry { u, o: Some(Origin(1, 2, 3, 4)) });
        messages.push(Internal::Batch { p: 3, us: entries.chain([Entry { u: Update::Left { segment: 1, enter_ms: 2 }, o: None }]).collect(), wm: Some(7), i: 0, n: 1 });
        messages.push(Internal::Batch { p: 3, us: Vec::new(), wm: None, i: 2, n: 3 });
        messages.push(Internal::Cut { p: 3, at: 1_795_996_000_000, i: 1, n: 2 });
        for m in messages {
            let json = serde_json::to_string(&m).expect("encode");
            assert_eq!(serde_json::from_str::<Internal>(&json).expect("decode"), m, "{json}");
        }
    }

    #[test]
    fn keys_may_come_in_any_order() {
        let json = r#"{"o":[1,2,3,4],"u":{"exit_ms":20,"segment":3,"t":"traversal","enter_ms":10},"p":5,"k":"data"}"#;
        let want = Internal::Data { p: 5, u: Update::Traversal { segment: 3, enter_ms: 10, exit_ms: 20 }, o: Some(Origin(1, 2, 3, 4)) };
        assert_eq!(serde_json::from_str::<Internal>(json).expect("decode"), want);
    }

    #[test]
    fn a_message_missing_what_its_kind_needs_is_refused_with_the_reason() {
        for (json, reason) in [
            (r#"{"k":"mark","p":1}"#, "mark without its watermark `wm`"),
            (r#"{"k":"data","p":1}"#, "data without its update `u`"),
            (r#"{"k":"data","p":1,"u":{"t":"gate","lot":2,"ts_ms":3}}"#, "gate update without `entering`"),
            (r#"{"k":"data","p":1,"u":{"t":"teleport","segment":2}}"#, "unknown variant `teleport`"),
            (r#"{"k":"nudge","p":1}"#, "unknown variant `nudge`"),
            (r#"{"k":"leave"}"#, "missing field `p`"),
            (r#"{"k":"batch","p":1,"wm":2}"#, "batch without its updates `us`"),
            (r#"{"k":"batch","p":1,"us":[{"o":[1,2,3,4]}]}"#, "missing field `u`"),
        ] {
            let e = serde_json::from_str::<Internal>(json).expect_err(json).to_string();
            assert!(e.contains(reason), "{json}: {e}");
        }
    }
}
