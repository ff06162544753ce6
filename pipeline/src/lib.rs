//! The Egret streaming pipeline: decode and validate input records, drop duplicates,
//! dead-letter what is bad, pair plate reads between adjacent gantries, and fold the
//! resulting traversals into per-segment event-time windows under watermarks.
//!
//! `Pipeline` is a synchronous state machine over batches (easy to test and to
//! benchmark); `runner::run` drives it from any `Source` and publishes to `LiveState`.

pub mod checkpoint;
pub mod clock;
pub mod cut;
pub mod dedup;
pub mod enforce;
pub mod health;
pub mod hotlist_board;
pub mod incident;
mod inflight;
pub mod laps;
pub mod live;
pub mod marks;
pub mod matcher;
pub mod ownership;
pub mod parking;
pub mod repartition;
pub mod rescale;
mod pipeline;
pub mod runner;
pub mod stage1;
pub mod stage2;
pub mod sweep;
pub mod tags;
pub mod transit;
pub mod update;
pub mod watermark;
pub mod window;
mod wire;

pub use live::LiveState;
pub use pipeline::{BatchOutput, ClockMode, DeadLetter, Pipeline, PipelineConfig, Stats};
pub use parking::LotState;
pub use window::SegmentWindow;

/// The repository's city model (`data/`), which unit tests run against.
#[cfg(test)]
pub(crate) fn repo_city() -> egret_model::CityModel {
    egret_model::CityModel::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data")).expect("the repository's city data")
}

/// The dead-letter topic of contract-v1 §1.
pub const DLQ_TOPIC: &str = "egret.dlq";
