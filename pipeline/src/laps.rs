//! Where a stage's loop spends its time: each turn is cut into phases (waiting for
//! input, processing, handing outputs to the producer, waiting for acknowledgements
//! and committing) and each phase's duration goes
//! to the `egret_loop_seconds{stage, phase}` histogram, with the batch size in
//! `egret_loop_batch_records{stage}`. A record waits, on average, half a turn
//! before it is polled and a whole turn before its outputs are out, so the turn's
//! phases are what an event's latency is made of; operators read them on
//! `/metrics` and `egret bench` prints them beside the latency figure.

use std::time::Instant;

/// Times one turn of a loop, phase by phase.
pub struct Laps {
    stage: &'static str,
    at: Instant,
}

impl Laps {
    pub fn start(stage: &'static str) -> Self {
        Laps { stage, at: Instant::now() }
    }

    /// Ends `phase` now and starts the next.
    pub fn lap(&mut self, phase: &'static str) {
        let now = Instant::now();
        metrics::histogram!("egret_loop_seconds", "stage" => self.stage, "phase" => phase).record(now.saturating_duration_since(self.at).as_secs_f64());
        self.at = now;
    }

    /// The records of a turn that had any.
    pub fn batch(&self, records: usize) {
        if records == 0 {
            return;
        }
        metrics::histogram!("egret_loop_batch_records", "stage" => self.stage).record(records as f64);
    }
}
