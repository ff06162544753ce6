//! Reader health, in stage 1 where the reads arrive: a gantry whose clock is off
//! (corrected, and flagged when beyond a second), one whose clock cannot be trusted
//! (off by more than a minute): its reads are excluded, and one gone silent while
//! the gantries around it still see traffic.

use crate::clock::{Calibration, SKEW_FLAG_MS};
use egret_model::{CityModel, ReaderIdx};
use serde::{Deserialize, Serialize};

/// A clock this far off is not corrected but distrusted.
pub const UNTRUSTED_OFFSET_MS: i64 = 60_000;
/// Silent this long while its neighbours see traffic: a reader that has stopped.
pub const SILENT_AFTER_MS: i64 = 10 * 60_000;
/// Reads at the neighbouring gantries in that time that make silence suspicious.
const NEIGHBOUR_READS: u32 = 5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReaderHealth {
    pub reader_id: String,
    /// `ok`, `clock_skewed` (corrected), `untrusted` (reads excluded), `silent`, or
    /// `unknown` (never read).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_offset_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_read_ms: Option<i64>,
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub struct Health {
    last_read: Vec<Option<i64>>,
    /// Per reader: read times at its neighbours (either end of its segments), recent.
    #[serde(skip)]
    neighbours: Vec<Vec<ReaderIdx>>,
    recent_reads: Vec<std::collections::VecDeque<i64>>,
}

/// Whether a device clock can be corrected, or its events must be set aside. (An
/// uncertain clock is still corrected: its doubt goes to the driver.)
pub fn trusted(c: Option<Calibration>) -> bool {
    c.is_none_or(|c| c.offset_ms.abs() <= UNTRUSTED_OFFSET_MS)
}

impl Health {
    /// After a restore: the parts built from the city model come from `fresh`.
    pub(crate) fn take_city_parts_from(&mut self, fresh: Health) {
        self.neighbours = fresh.neighbours;
    }

    pub fn new(city: &CityModel) -> Self {
        let mut neighbours = vec![Vec::new(); city.readers.len()];
        for i in 0..city.segments.len() {
            let s = egret_model::SegmentIdx(i as u32);
            let (a, b) = (city.segment_from(s), city.segment_to(s));
            neighbours[a.0 as usize].push(b);
            neighbours[b.0 as usize].push(a);
        }
        for n in &mut neighbours {
            n.sort_unstable();
            n.dedup();
        }
        Health { last_read: vec![None; city.readers.len()], neighbours, recent_reads: vec![Default::default(); city.readers.len()] }
    }

    pub fn read(&mut self, reader: ReaderIdx, ts_ms: i64) {
        let i = reader.0 as usize;
        self.last_read[i] = Some(self.last_read[i].map_or(ts_ms, |t| t.max(ts_ms)));
        let recent = &mut self.recent_reads[i];
        recent.push_back(ts_ms);
        while recent.len() > 64 || recent.front().is_some_and(|t| *t < ts_ms - SILENT_AFTER_MS) {
            recent.pop_front();
        }
    }

    /// Every reader's health as of `watermark_ms`; `clock` gives a reader's calibration.
    pub fn report(&self, city: &CityModel, watermark_ms: i64, clock: impl Fn(usize) -> Option<Calibration>) -> Vec<ReaderHealth> {
        let since = watermark_ms.saturating_sub(SILENT_AFTER_MS);
        (0..city.readers.len())
            .map(|i| {
                let calibration = clock(i);
                let busy_around: u32 = self.neighbours[i].iter().map(|n| self.recent_reads[n.0 as usize].iter().filter(|t| **t >= since).count() as u32).sum();
                let status = match self.last_read[i] {
                    None => "unknown",
                    Some(_) if !trusted(calibration) => "untrusted",
                    Some(last) if last < since && busy_around >= NEIGHBOUR_READS => "silent",
                    Some(_) if calibration.is_some_and(|c| c.offset_ms.abs() > SKEW_FLAG_MS) => "clock_skewed",
                    Some(_) => "ok",
                };
                ReaderHealth {
                    reader_id: city.readers[i].reader_id.clone(),
                    status: status.into(),
                    clock_offset_ms: calibration.map(|c| c.offset_ms),
                    last_read_ms: self.last_read[i],
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn city() -> Arc<CityModel> {
        Arc::new(crate::repo_city())
    }

    #[test]
    fn skewed_untrusted_silent_and_unknown_readers() {
        let city = city();
        let mut h = Health::new(&city);
        let (a, b) = (city.segment_from(egret_model::SegmentIdx(0)), city.segment_to(egret_model::SegmentIdx(0)));
        // `a` read once long ago; its neighbour `b` busy since.
        h.read(a, 0);
        for t in 0..10 {
            h.read(b, 11 * 60_000 + t * 1_000);
        }
        let clock = |i: usize| match i {
            i if i == b.0 as usize => Some(Calibration { offset_ms: 1_500, uncertainty_ms: 100 }),
            _ => None,
        };
        let report = h.report(&city, 12 * 60_000, clock);
        assert_eq!(report[a.0 as usize].status, "silent");
        assert_eq!(report[b.0 as usize].status, "clock_skewed");
        assert_eq!(report[b.0 as usize].clock_offset_ms, Some(1_500));
        let never = (0..city.readers.len()).find(|i| *i != a.0 as usize && *i != b.0 as usize).expect("another reader");
        assert_eq!(report[never].status, "unknown");
        let untrusted = h.report(&city, 12 * 60_000, |_| Some(Calibration { offset_ms: 120_000, uncertainty_ms: 0 }));
        assert_eq!(untrusted[b.0 as usize].status, "untrusted");
        assert!(trusted(Some(Calibration { offset_ms: 0, uncertainty_ms: 20_000 })), "unsure is corrected, with a margin");
        assert!(trusted(None), "an uncalibrated clock is trusted within its certified accuracy");
    }
}
