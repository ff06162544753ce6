//! `egret serve --kafka`: an API instance without a pipeline. Pipeline instances
//! each serve only the partitions they own; an API instance instead follows the
//! derived topics they all publish (segment speeds, parking, tickets, hotlist hits,
//! incidents, buses, headways) from their start into its own live state. Any
//! number of them can stand behind one load balancer, and each one answers for the
//! whole city.
//!
//! Reader health is not on a topic, so it is not served here. Hotlist edits made
//! here stay here (as they do on any one instance: see the README's operator
//! section).

use crate::serve::{self, ServeOptions};
use egret_api::ingest::{IngestTarget, SinkTarget};
use egret_ingest::kafka::{KafkaConfig, KafkaSink, KafkaSource};
use egret_ingest::{Poll, Record, Source};
use egret_model::CityModel;
use egret_pipeline::enforce::violation::{PossibleHit, Violation};
use egret_pipeline::incident::Incident;
use egret_pipeline::parking::LotState;
use egret_pipeline::BatchOutput;
use egret_pipeline::runner::{self, BATCH};
use egret_pipeline::transit::{BusStatus, TransitEvent};
use egret_pipeline::window::SegmentWindow;
use egret_pipeline::LiveState;
use std::sync::Arc;
use tokio::sync::watch;

/// The derived topics an API instance follows.
pub const FOLLOWED: [&str; 7] = [
    runner::SEGMENT_SPEEDS_TOPIC,
    runner::PARKING_TOPIC,
    runner::VIOLATIONS_TOPIC,
    runner::HOTLIST_HITS_TOPIC,
    runner::INCIDENTS_TOPIC,
    runner::BUS_STATUS_TOPIC,
    runner::HEADWAYS_TOPIC,
];

/// Serves the API over what the pipeline instances publish until Ctrl-C.
pub async fn serve(city: Arc<CityModel>, config: &KafkaConfig, listen: &str, options: &ServeOptions) -> anyhow::Result<()> {
    let metrics = serve::install_metrics();
    let (_stop_tx, stop) = serve::stop_on_ctrl_c();
    let live = Arc::new(LiveState::new(city.clone()));
    for (name, entries) in options.saved_hotlists()? {
        live.hotlists().put(&name, entries);
    }
    // Events posted here go to the input topics, for the pipeline instances.
    let sink = Arc::new(KafkaSink::new(config)?);
    let ingest: Option<Arc<dyn IngestTarget>> = Some(Arc::new(SinkTarget { inputs: sink.clone(), dead_letters: sink }));
    let (state, history) = serve::app_state(&live, metrics, options, ingest)?;
    let (addr, api) = serve::start_api(listen, state, stop.clone()).await?;
    // Every API instance reads everything: a group of its own, new on every start
    // (its live state is rebuilt from the topics, not restored).
    let started_ms = crate::commands::now_ms();
    let group_id = format!("{}-api-{}-{started_ms}", config.group_id, std::process::id());
    let follow_config = KafkaConfig { group_id, instance_id: None, ..config.clone() };
    let status = format!("serving http://{addr} from the derived topics at {} (following {} topics)\n", config.brokers, FOLLOWED.len());
    let _ = std::io::Write::write_all(&mut std::io::stdout(), status.as_bytes());
    follow(&city, &follow_config, &live, stop).await?;
    api.await?;
    serve::flush_history(&history);
    Ok(())
}

/// Applies the derived topics to `live` until `stop` flips.
pub async fn follow(city: &CityModel, config: &KafkaConfig, live: &LiveState, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut source = KafkaSource::subscribe(config, &FOLLOWED).await?;
    loop {
        let polled = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return Ok(()),
            polled = source.poll(BATCH) => polled?,
        };
        if let Poll::Records(records) = polled {
            live.apply(&to_batch(city, &records));
        }
    }
}

/// A lot update as published (`runner::LotUpdate`), with its words as text.
#[derive(serde::Deserialize)]
struct PublishedLot {
    lot_id: String,
    capacity: u32,
    occupied: Option<u32>,
    state: String,
    trend: String,
    minutes_to_full: Option<f64>,
    over_capacity: bool,
    as_of_ms: i64,
}

#[derive(serde::Deserialize)]
struct PublishedWindow {
    segment_id: String,
    #[serde(flatten)]
    window: SegmentWindow,
}

/// One of `words`, as the pipeline spells it.
fn known(word: &str, words: &[&'static str]) -> Option<&'static str> {
    words.iter().copied().find(|w| *w == word)
}

/// The records of one poll as the batch output they were made from. A record that
/// does not read (another producer on the topic, or a newer format) is logged and
/// counted, and the rest still apply.
pub fn to_batch(city: &CityModel, records: &[Record]) -> BatchOutput {
    let mut out = BatchOutput { watermark_ms: i64::MIN, ..BatchOutput::default() };
    for r in records {
        if let Err(e) = absorb(city, r, &mut out) {
            tracing::warn!("{}/{}@{}: unreadable: {e}", r.topic, r.partition, r.offset);
            metrics::counter!("egret_follow_unreadable_total", "topic" => r.topic.clone()).increment(1);
        }
    }
    out
}

fn absorb(city: &CityModel, r: &Record, out: &mut BatchOutput) -> anyhow::Result<()> {
    match r.topic.as_str() {
        runner::SEGMENT_SPEEDS_TOPIC => {
            let PublishedWindow { segment_id, mut window } = serde_json::from_slice(&r.payload)?;
            window.segment = city.segment_idx(&segment_id).ok_or_else(|| anyhow::anyhow!("unknown segment {segment_id}"))?;
            out.watermark_ms = out.watermark_ms.max(window.window_end_ms);
            out.windows.push(window);
        }
        runner::PARKING_TOPIC => {
            let p: PublishedLot = serde_json::from_slice(&r.payload)?;
            let lot = city.lot_idx(&p.lot_id).ok_or_else(|| anyhow::anyhow!("unknown lot {}", p.lot_id))?;
            let state = known(&p.state, &["open", "full", "closed", "unknown"]).ok_or_else(|| anyhow::anyhow!("unknown lot state {}", p.state))?;
            let trend = known(&p.trend, &["filling", "emptying", "steady"]).ok_or_else(|| anyhow::anyhow!("unknown trend {}", p.trend))?;
            out.watermark_ms = out.watermark_ms.max(p.as_of_ms);
            out.lots.push(LotState {
                lot,
                capacity: p.capacity,
                occupied: p.occupied,
                state,
                trend,
                minutes_to_full: p.minutes_to_full,
                over_capacity: p.over_capacity,
                as_of_ms: p.as_of_ms,
            });
        }
        runner::VIOLATIONS_TOPIC => out.tickets.violations.push(serde_json::from_slice::<Violation>(&r.payload)?),
        runner::HOTLIST_HITS_TOPIC => out.tickets.possible_hits.push(serde_json::from_slice::<PossibleHit>(&r.payload)?),
        runner::INCIDENTS_TOPIC => out.incidents.push(serde_json::from_slice::<Incident>(&r.payload)?),
        runner::BUS_STATUS_TOPIC => out.transit.statuses.push(serde_json::from_slice::<BusStatus>(&r.payload)?),
        runner::HEADWAYS_TOPIC => out.transit.events.push(serde_json::from_slice::<TransitEvent>(&r.payload)?),
        other => anyhow::bail!("not a followed topic: {other}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use egret_model::SegmentIdx;

    fn record(topic: &str, value: serde_json::Value) -> Record {
        Record { topic: topic.into(), partition: 0, offset: 0, key: None, payload: serde_json::to_vec(&value).unwrap_or_default().into(), headers: Vec::new(), timestamp_ms: None }
    }

    #[test]
    fn published_records_read_back_into_a_batch_and_an_unreadable_one_is_skipped() {
        let city = crate::load_city(None).expect("the repo's city");
        let window = SegmentWindow {
            segment: SegmentIdx(3),
            window_start_ms: 60_000,
            window_end_ms: 120_000,
            mean_speed_kmh: 41.0,
            median_speed_kmh: 40.0,
            travel_time_s: 30.0,
            sample_count: 4,
            median_5min_kmh: Some(39.0),
            is_final: true,
            revision: 1,
        };
        // As `runner::publish` writes it: the window flattened beside its segment id.
        let mut published = serde_json::to_value(&window).expect("window JSON");
        published["segment_id"] = city.segments[3].segment_id.clone().into();
        let lot = serde_json::json!({"lot_id": city.lots[1].lot_id, "capacity": 100, "occupied": 100, "state": "full", "trend": "filling",
            "minutes_to_full": null, "over_capacity": false, "as_of_ms": 130_000});
        let records = [
            record(runner::SEGMENT_SPEEDS_TOPIC, published),
            record(runner::SEGMENT_SPEEDS_TOPIC, serde_json::json!({"segment_id": "XX-NOWHERE", "window_start_ms": 0})),
            record(runner::PARKING_TOPIC, lot),
        ];
        let out = to_batch(&city, &records);
        assert_eq!(out.windows, [window]);
        assert_eq!(out.lots.len(), 1);
        assert_eq!((out.lots[0].lot, out.lots[0].state, out.lots[0].trend, out.lots[0].occupied), (1, "full", "filling", Some(100)));
        assert_eq!(out.watermark_ms, 130_000);
    }
}
