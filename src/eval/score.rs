//! Scoring what the pipeline served against the simulator's ground truth: one pure
//! function per figure of the accuracy table in targets.md, so each can be tested on
//! hand-made inputs.

use egret_pipeline::enforce::violation::{Violation, ViolationKind};
use egret_model::CityModel;
use egret_pipeline::incident::Incident;
use egret_pipeline::transit;
use egret_simulator::TruthRecord;
use std::collections::{BTreeMap, HashMap};

/// Precision and recall of one violation kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Confusion {
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
}

impl Confusion {
    pub fn precision(&self) -> Option<f64> {
        let issued = self.true_positives + self.false_positives;
        (issued > 0).then(|| self.true_positives as f64 / issued as f64)
    }
    pub fn recall(&self) -> Option<f64> {
        let real = self.true_positives + self.false_negatives;
        (real > 0).then(|| self.true_positives as f64 / real as f64)
    }
    pub fn add(&mut self, other: &Confusion) {
        self.true_positives += other.true_positives;
        self.false_positives += other.false_positives;
        self.false_negatives += other.false_negatives;
    }
}

/// A true offence, as the simulator recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrueViolation {
    pub kind: ViolationKind,
    pub plate: String,
    pub ts_ms: i64,
    pub rule_id: String,
    pub location: String,
}

pub fn true_violations(truth: &[TruthRecord]) -> Vec<TrueViolation> {
    truth
        .iter()
        .filter_map(|r| match r {
            TruthRecord::Violation { kind, plate, ts_ms, rule_id, location, .. } => Some(TrueViolation {
                kind: ViolationKind::ALL.into_iter().find(|k| k.as_str() == kind)?,
                plate: plate.clone(),
                ts_ms: *ts_ms,
                rule_id: rule_id.clone(),
                location: location.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// How a served ticket is paired with a true offence: the same kind and plate, the
/// same place (or rule) where the kind has one, and close enough in time.
fn pairing(kind: ViolationKind) -> (bool, bool, i64) {
    // (same location, same rule, time tolerance)
    match kind {
        ViolationKind::SectionSpeed | ViolationKind::PointSpeed | ViolationKind::RedLight | ViolationKind::BusLane => (true, true, 10_000),
        ViolationKind::RestrictedVehicle => (false, true, 86_400_000),
        ViolationKind::Hotlist => (false, true, 30 * 60_000),
        ViolationKind::ClonedPlate => (false, false, 86_400_000),
    }
}

/// A ticket's time span: its instant, or for a section ticket the whole drive from
/// the entry read (a bridged drive covers two segments, each with its own instant).
fn within(v: &Violation, ts_ms: i64, tolerance: i64) -> bool {
    let from = match v.kind {
        ViolationKind::SectionSpeed => v.evidence.sightings.first().map_or(v.ts_ms, |s| s.ts_ms),
        _ => v.ts_ms,
    };
    ts_ms >= from - tolerance && ts_ms <= v.ts_ms + tolerance
}

/// Pairs served tickets with true offences one to one (each ticket with the nearest
/// unpaired offence in time) and counts the confusion per kind. Pairs and misses are
/// counted by the true offence's time and stray tickets by their own, from
/// `scored_from_ms` on (pairing itself looks at everything).
pub fn score_violations(served: &[Violation], truth: &[TrueViolation], scored_from_ms: i64) -> BTreeMap<ViolationKind, Confusion> {
    let mut by_key: HashMap<(ViolationKind, &str), Vec<(usize, &TrueViolation)>> = HashMap::new();
    for (i, t) in truth.iter().enumerate() {
        by_key.entry((t.kind, t.plate.as_str())).or_default().push((i, t));
    }
    let mut paired = vec![false; truth.len()];
    let mut out: BTreeMap<ViolationKind, Confusion> = ViolationKind::ALL.into_iter().map(|k| (k, Confusion::default())).collect();
    let mut served: Vec<&Violation> = served.iter().collect();
    served.sort_by_key(|v| (v.ts_ms, v.violation_id.clone()));
    for v in served {
        let (same_location, same_rule, tolerance) = pairing(v.kind);
        let best = by_key
            .get(&(v.kind, v.plate.as_str()))
            .into_iter()
            .flatten()
            .filter(|(i, t)| {
                !paired[*i]
                    // A bridged section ticket covers two segments: either may be the true one.
                    && (!same_location || v.location.split('+').any(|l| l == t.location))
                    && (!same_rule || t.rule_id == v.rule_id)
                    && within(v, t.ts_ms, tolerance)
            })
            .min_by_key(|(_, t)| (t.ts_ms - v.ts_ms).abs());
        let c = out.entry(v.kind).or_default();
        match best {
            Some((i, t)) => {
                paired[*i] = true;
                if t.ts_ms >= scored_from_ms {
                    c.true_positives += 1;
                }
            }
            None if v.ts_ms < scored_from_ms => {}
            None => {
                if std::env::var_os("EGRET_EVAL_DEBUG").is_some() {
                    eprintln!("false: {} {} {} {} {}", v.kind.as_str(), v.plate, v.ts_ms, v.location, v.evidence.summary);
                }
                c.false_positives += 1
            }
        }
    }
    for (t, was_paired) in truth.iter().zip(paired) {
        if was_paired || t.ts_ms < scored_from_ms {
            continue;
        }
        if std::env::var_os("EGRET_EVAL_DEBUG").is_some() {
            eprintln!("missed: {t:?}");
        }
        {
            out.entry(t.kind).or_default().false_negatives += 1;
        }
    }
    out
}

/// Detected incidents against true ones: a detection on the segment between the
/// onset and 15 minutes after clearance finds it. Returns (segment, delay from
/// onset to the first detection) per found incident, the number missed, and the
/// detections that match no real incident.
pub fn incidents<'a>(truth: &[TruthRecord], detected: impl Iterator<Item = &'a Incident>) -> (Vec<(String, i64)>, usize, usize) {
    let real: Vec<(&str, i64, i64)> = truth
        .iter()
        .filter_map(|r| match r {
            TruthRecord::Incident { segment_id, onset_ms, cleared_ms } => Some((segment_id.as_str(), *onset_ms, *cleared_ms)),
            _ => None,
        })
        .collect();
    let detected: Vec<&Incident> = detected.collect();
    let finds = |d: &Incident, (seg, onset, cleared): (&str, i64, i64)| d.segment_id == seg && d.detected_ms >= onset && d.detected_ms <= cleared + 15 * 60_000;
    let mut delays = Vec::new();
    let mut missed = 0;
    for r in &real {
        match detected.iter().filter(|d| finds(d, *r)).map(|d| d.detected_ms).min() {
            Some(first) => delays.push((r.0.to_owned(), first - r.1)),
            None => missed += 1,
        }
    }
    let false_alarms = detected.iter().filter(|d| !real.iter().any(|r| finds(d, *r))).count();
    if std::env::var_os("EGRET_EVAL_DEBUG").is_some() {
        for d in detected.iter().filter(|d| !real.iter().any(|r| finds(d, *r))) {
            eprintln!("false incident: {d:?}");
        }
    }
    (delays, missed, false_alarms)
}

/// One headway judged bunched or a gap: (stop, following bus, status, arrival).
pub type HeadwayFlag = (String, String, String, i64);

/// True bunching and gaps from the true arrivals: consecutive buses of a route at
/// each stop, judged by the same rule as the pipeline.
pub fn true_headway_flags(city: &CityModel, truth: &[TruthRecord]) -> Vec<HeadwayFlag> {
    let mut by_stop: BTreeMap<(&str, &str), Vec<(i64, &str)>> = BTreeMap::new();
    for r in truth {
        if let TruthRecord::BusArrival { bus_id, route_id, stop_id, ts_ms, .. } = r {
            by_stop.entry((route_id.as_str(), stop_id.as_str())).or_default().push((*ts_ms, bus_id.as_str()));
        }
    }
    let mut flags = Vec::new();
    for ((route_id, stop_id), mut arrivals) in by_stop {
        let Some(route) = city.route_idx(route_id) else { continue };
        arrivals.sort_unstable();
        for pair in arrivals.windows(2) {
            let headway_s = (pair[1].0 - pair[0].0) as f64 / 1000.0;
            let status = transit::classify(headway_s, transit::scheduled_headway_s(city, route as usize, pair[1].0));
            if status != "ok" {
                flags.push((stop_id.to_owned(), pair[1].1.to_owned(), status.to_owned(), pair[1].0));
            }
        }
    }
    flags
}

/// F1 of the served flags against the true ones (same stop, bus and status, within
/// a minute); also returns (true positives, served, real).
pub fn flag_f1(served: &[HeadwayFlag], truth: &[HeadwayFlag]) -> (f64, usize, usize, usize) {
    let mut used = vec![false; truth.len()];
    let mut tp = 0;
    for s in served {
        if let Some(i) = (0..truth.len()).find(|i| !used[*i] && truth[*i].0 == s.0 && truth[*i].1 == s.1 && truth[*i].2 == s.2 && (truth[*i].3 - s.3).abs() <= 60_000) {
            used[i] = true;
            tp += 1;
        }
    }
    if std::env::var_os("EGRET_EVAL_DEBUG").is_some() {
        for t in truth {
            eprintln!("true headway flag: {t:?}");
        }
        for s in served {
            eprintln!("served headway flag: {s:?}");
        }
    }
    let f1 = if served.is_empty() && truth.is_empty() { 1.0 } else { 2.0 * tp as f64 / (served.len() + truth.len()) as f64 };
    (f1, tp, served.len(), truth.len())
}

/// A served prediction: (trip, stop, made at, predicted arrival).
pub type Prediction = (String, String, i64, i64);

/// The ETA accuracy benchmark: per horizon bucket (0–3, 3–6, 6–10, 10–15 minutes
/// ahead, by the prediction), the share of predictions whose bus really arrived
/// within the bucket's band; the score is the mean of the four buckets.
pub fn eta_accuracy(predictions: &[Prediction], truth: &[TruthRecord]) -> (f64, [(usize, usize); 4]) {
    let actual: HashMap<(&str, &str), i64> = truth
        .iter()
        .filter_map(|r| match r {
            TruthRecord::BusArrival { trip_id, stop_id, ts_ms, .. } => Some(((trip_id.as_str(), stop_id.as_str()), *ts_ms)),
            _ => None,
        })
        .collect();
    let mut buckets = [(0usize, 0usize); 4];
    for (trip, stop, made_at, predicted) in predictions {
        let Some(arrived) = actual.get(&(trip.as_str(), stop.as_str())) else { continue };
        let ahead = predicted - made_at;
        let Some(b) = [3, 6, 10, 15].iter().position(|m| ahead <= m * 60_000) else { continue };
        let Some((early, late)) = transit::predict::band(ahead) else { continue };
        buckets[b].1 += 1;
        if *arrived >= predicted - early && *arrived <= predicted + late {
            buckets[b].0 += 1;
        }
    }
    let scores: Vec<f64> = buckets.iter().filter(|(_, n)| *n > 0).map(|(ok, n)| *ok as f64 / *n as f64).collect();
    (if scores.is_empty() { f64::NAN } else { scores.iter().sum::<f64>() / scores.len() as f64 }, buckets)
}

/// Mean absolute percentage error of served window means against the true ones, over
/// served windows with at least `min_samples` samples that have a true counterpart;
/// also returns how many windows were compared and how many had no counterpart.
pub fn speed_mape(served: &BTreeMap<(String, i64), (f64, u32)>, truth: &BTreeMap<(String, i64), f64>, min_samples: u32) -> (f64, usize, usize) {
    let (mut sum, mut n, mut unmatched) = (0.0, 0usize, 0usize);
    for (key, (mean, samples)) in served {
        if *samples < min_samples {
            continue;
        }
        match truth.get(key) {
            Some(t) if *t > 0.0 => {
                sum += (mean - t).abs() / t;
                n += 1;
            }
            _ => unmatched += 1,
        }
    }
    (if n > 0 { 100.0 * sum / n as f64 } else { f64::NAN }, n, unmatched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use egret_pipeline::enforce::violation::Evidence;

    fn served(kind: ViolationKind, plate: &str, ts_ms: i64, location: &str) -> Violation {
        Violation {
            violation_id: format!("{plate}{ts_ms}"),
            kind,
            plate: plate.into(),
            ts_ms,
            location: location.into(),
            measured: 0.0,
            limit: 0.0,
            rule_id: "R".into(),
            rule_version: 1,
            evidence: Evidence::default(),
        }
    }

    fn real(kind: ViolationKind, plate: &str, ts_ms: i64, location: &str) -> TrueViolation {
        TrueViolation { kind, plate: plate.into(), ts_ms, rule_id: "R".into(), location: location.into() }
    }

    #[test]
    fn pairs_one_to_one_by_plate_place_and_time() {
        let k = ViolationKind::PointSpeed;
        let s = [served(k, "A", 1_000, "C1"), served(k, "A", 1_500, "C1"), served(k, "B", 0, "C2"), served(k, "C", 0, "C9")];
        let t = [real(k, "A", 1_200, "C1"), real(k, "B", 50_000, "C2"), real(k, "D", 0, "C1")];
        let c = score_violations(&s, &t, i64::MIN)[&k];
        // A matches once (the second A is a repeat), B is too far in time, C was never real.
        assert_eq!(c, Confusion { true_positives: 1, false_positives: 3, false_negatives: 2 });
        assert_eq!(c.precision(), Some(0.25));
        assert_eq!(c.recall(), Some(1.0 / 3.0));
    }

    #[test]
    fn a_kind_with_nothing_issued_or_real_has_no_ratio() {
        assert_eq!(Confusion::default().precision(), None);
        assert_eq!(Confusion::default().recall(), None);
    }

    #[test]
    fn mape_skips_thin_windows_and_counts_unmatched() {
        let served = BTreeMap::from([(("S".to_owned(), 0), (110.0, 3)), (("S".to_owned(), 60_000), (50.0, 2)), (("T".to_owned(), 0), (10.0, 5))]);
        let truth = BTreeMap::from([(("S".to_owned(), 0), 100.0)]);
        let (mape, n, unmatched) = speed_mape(&served, &truth, 3);
        assert!((mape - 10.0).abs() < 1e-9);
        assert_eq!((n, unmatched), (1, 1));
    }
}
