//! Device clocks. Every reader and camera stamps its events with its own clock, and
//! those clocks drift by seconds; the collector's arrival time (the record
//! timestamp) is the trusted clock. Per device, the median of `device ts − arrival`
//! over its recent events estimates the device's offset, and events are corrected
//! by it. The spread of those differences bounds the error left, and enforcement
//! gives that error to the driver: a ticket must hold even at the worst clock.
//!
//! A late delivery only ever makes `device ts − arrival` smaller, and late ones
//! cluster (a backlog arrives together), so the estimate uses the upper half of the
//! recent differences: the events that came straight through. Its middle is the
//! offset and its range the uncertainty. With fewer than four samples the largest
//! difference is the offset and the whole range the uncertainty, so early late
//! arrivals make the doubt large rather than the estimate wrong; and an estimate
//! vaguer than the device's certified accuracy is not used at all.

/// Differences kept per device.
const RING: usize = 32;
/// Samples needed before a device counts as calibrated.
const MIN_SAMPLES: usize = 3;
/// From this many samples on, the upper half of the differences sets the estimate.
const UPPER_HALF_SAMPLES: usize = 4;
/// A device this far off is flagged on the API (its events are still corrected).
pub const SKEW_FLAG_MS: i64 = 1_000;

/// A device clock's correction: subtract `offset_ms`; `uncertainty_ms` remains.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Calibration {
    pub offset_ms: i64,
    pub uncertainty_ms: i64,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
struct DeviceClock {
    diffs: [i32; RING],
    len: u8,
    next: u8,
    /// Samples since the estimate was last computed.
    stale: u8,
    estimate: Option<Calibration>,
}

impl Default for DeviceClock {
    fn default() -> Self {
        DeviceClock { diffs: [0; RING], len: 0, next: 0, stale: 0, estimate: None }
    }
}

/// Clock estimates of every device.
///
/// One estimate per device, from its events on every input partition. Plate reads
/// are keyed by plate, so a device's events are spread over all partitions: an
/// estimate per partition would need as many events again per partition to
/// calibrate (with 4 partitions, a quiet gantry was still uncalibrated when a
/// clean-scenario speeder passed it two minutes in; with 64 it would hardly ever
/// be). A shared estimate follows the order in which partitions interleave, and
/// that order is fixed: the Kafka source releases records merged by arrival time
/// (see `egret_ingest::align`), and the embedded log in order of appends, so a
/// rerun or a restart from a checkpoint corrects every event the same way.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct DeviceClocks {
    /// By dense device number.
    clocks: Vec<DeviceClock>,
    /// Uncertainty of a device not yet calibrated (its certified accuracy).
    uncalibrated_ms: i64,
}

impl DeviceClocks {
    pub fn new(devices: usize, uncalibrated_ms: i64) -> Self {
        DeviceClocks { clocks: vec![DeviceClock::default(); devices], uncalibrated_ms }
    }

    /// The corrected time and its uncertainty of an event of `device` stamped
    /// `device_ts`, by what has been seen of the device so far.
    pub fn correct(&self, device: usize, device_ts: i64) -> (i64, i64) {
        match self.calibration(device) {
            Some(c) => (device_ts - c.offset_ms, c.uncertainty_ms),
            None => (device_ts, self.uncalibrated_ms),
        }
    }

    /// Records an admitted event of `device` stamped `device_ts` that arrived at
    /// `arrival_ms` (if the transport knows). Only admitted events count, so a read
    /// refused as from the future cannot move its device's clock.
    pub fn record(&mut self, device: usize, device_ts: i64, arrival_ms: Option<i64>) {
        let (Some(arrival), Some(clock)) = (arrival_ms, self.clocks.get_mut(device)) else { return };
        let diff = (device_ts - arrival).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        clock.diffs[usize::from(clock.next)] = diff;
        clock.next = ((usize::from(clock.next) + 1) % RING) as u8;
        clock.len = (usize::from(clock.len) + 1).min(RING) as u8;
        clock.stale += 1;
        // Re-estimating costs a sort: do it while calibrating, then every 8th event.
        if usize::from(clock.len) < 16 || clock.stale >= 8 {
            clock.estimate = estimate(&clock.diffs[..usize::from(clock.len)]);
            clock.stale = 0;
        }
    }

    /// The device's estimate, if calibrated: known from enough events, and no
    /// vaguer than the device's certified accuracy (until late deliveries are
    /// outnumbered, the device's own clock is the better guess).
    pub fn calibration(&self, device: usize) -> Option<Calibration> {
        self.clocks.get(device).and_then(|c| c.estimate).filter(|c| c.uncertainty_ms <= self.uncalibrated_ms)
    }

    /// The device's estimate however vague, for reports (health and the API).
    pub fn estimate(&self, device: usize) -> Option<Calibration> {
        self.clocks.get(device).and_then(|c| c.estimate)
    }
}

fn estimate(diffs: &[i32]) -> Option<Calibration> {
    if diffs.len() < MIN_SAMPLES {
        return None;
    }
    let mut sorted = diffs.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    if n < UPPER_HALF_SAMPLES {
        // Too few to tell a backlog from the truth: the most direct delivery (the
        // largest difference) is the offset, and the whole range is the doubt. The
        // median would follow two late events of three (a quiet camera calibrates
        // on few events, and one backlog can hold two of them).
        return Some(Calibration { offset_ms: i64::from(sorted[n - 1]), uncertainty_ms: i64::from(sorted[n - 1]) - i64::from(sorted[0]) });
    }
    // Delays only ever lower the difference, so the events that came straight
    // through are the upper half: its middle is the offset, its range the doubt.
    let upper = &sorted[n / 2..];
    let offset_ms = i64::from(upper[upper.len() / 2]);
    Some(Calibration { offset_ms, uncertainty_ms: i64::from(upper[upper.len() - 1]) - i64::from(upper[0]) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Corrects an event by what came before it, then records it: the order stage 1
    /// uses (an event is recorded only once admitted).
    fn observe(clocks: &mut DeviceClocks, device: usize, device_ts: i64, arrival_ms: Option<i64>) -> (i64, i64) {
        let corrected = clocks.correct(device, device_ts);
        clocks.record(device, device_ts, arrival_ms);
        corrected
    }

    #[test]
    fn a_clean_clock_is_calibrated_by_three_events_with_no_uncertainty() {
        let mut clocks = DeviceClocks::new(1, 2_000);
        for t in [1_000, 2_000, 3_000] {
            assert_eq!(observe(&mut clocks, 0, t, Some(t)), (t, 2_000));
        }
        assert_eq!(observe(&mut clocks, 0, 4_000, Some(4_000)), (4_000, 0));
    }

    #[test]
    fn without_arrival_times_a_device_stays_uncalibrated() {
        let mut clocks = DeviceClocks::new(1, 2_000);
        for t in 0..50 {
            assert_eq!(observe(&mut clocks, 0, t, None), (t, 2_000));
        }
    }

    #[test]
    fn a_late_arrival_while_calibrating_widens_the_uncertainty_instead_of_moving_the_clock() {
        let mut clocks = DeviceClocks::new(1, 2_000);
        observe(&mut clocks, 0, 10_000, Some(8_500)); // 1.5 s fast
        observe(&mut clocks, 0, 20_000, Some(18_500));
        observe(&mut clocks, 0, 30_000, Some(58_500)); // 30 s late
        // Vaguer than the clock's certified 2 s: the device's own time, with that doubt.
        assert_eq!(observe(&mut clocks, 0, 40_000, Some(38_500)), (40_000, 2_000));
        // Once straight deliveries outnumber it, the clock is corrected again.
        for t in [50_000, 60_000, 70_000] {
            observe(&mut clocks, 0, t, Some(t - 1_500));
        }
        assert_eq!(observe(&mut clocks, 0, 80_000, Some(78_500)), (78_500, 0));
    }

    #[test]
    fn two_late_arrivals_of_three_while_calibrating_leave_the_device_its_own_time() {
        let mut clocks = DeviceClocks::new(1, 2_000);
        observe(&mut clocks, 0, 10_000, Some(9_000)); // 1 s fast, straight through
        observe(&mut clocks, 0, 20_000, Some(35_000)); // a backlog, 16 s late
        observe(&mut clocks, 0, 30_000, Some(45_500));
        assert_eq!(observe(&mut clocks, 0, 40_000, Some(39_000)), (40_000, 2_000));
    }

    #[test]
    fn a_device_number_out_of_range_is_uncalibrated_and_recorded_nowhere() {
        let mut clocks = DeviceClocks::new(1, 2_000);
        for t in 0..10 {
            assert_eq!(observe(&mut clocks, 7, t, Some(t)), (t, 2_000));
        }
        assert_eq!(clocks.estimate(7), None);
    }

    proptest! {
        /// A skewed clock with jittery, sometimes late delivery: once calibrated, the
        /// corrected time is within the stated uncertainty plus the jitter of the truth.
        #[test]
        fn corrected_time_is_within_the_uncertainty(
            skew in -2_000i64..=2_000,
            events in proptest::collection::vec((0i64..=300, proptest::bool::weighted(0.1), 1i64..60_000), 40..120),
        ) {
            let mut clocks = DeviceClocks::new(1, 2_000);
            for (i, (jitter, late, delay)) in events.into_iter().enumerate() {
                let truth = i as i64 * 1_000;
                let arrival = truth + jitter + if late { delay } else { 0 };
                let (corrected, uncertainty) = observe(&mut clocks, 0, truth + skew, Some(arrival));
                if i >= 16 {
                    // The median difference is −(typical latency): corrected = truth + latency.
                    prop_assert!((corrected - truth).abs() <= uncertainty.max(0) + 300, "error {} vs uncertainty {uncertainty}", corrected - truth);
                }
            }
        }
    }
}
