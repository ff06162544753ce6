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

/// Clock estimates of every device, one per device and input partition.
///
/// Events of one device reach Egret on every partition (plate reads are keyed by
/// plate), and partitions interleave differently on every run. An estimate shared
/// by all partitions would follow that interleaving, so a rerun or a restart would
/// correct the same read by a slightly different offset, and a ticket's evidence
/// (and id) would change. Within a partition the order is fixed: an estimate per
/// partition gives every run the same corrections.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct DeviceClocks {
    /// By input partition, then by dense device number; created on first use.
    partitions: std::collections::BTreeMap<u32, Vec<DeviceClock>>,
    devices: usize,
    /// Uncertainty of a device not yet calibrated (its certified accuracy).
    uncalibrated_ms: i64,
}

impl DeviceClocks {
    pub fn new(devices: usize, uncalibrated_ms: i64) -> Self {
        DeviceClocks { partitions: Default::default(), devices, uncalibrated_ms }
    }

    /// The corrected time and its uncertainty of an event of `device` stamped
    /// `device_ts`, by what `partition` has seen of the device so far.
    pub fn correct(&self, device: usize, partition: u32, device_ts: i64) -> (i64, i64) {
        match self.calibration(device, partition) {
            Some(c) => (device_ts - c.offset_ms, c.uncertainty_ms),
            None => (device_ts, self.uncalibrated_ms),
        }
    }

    /// Records an admitted event of `device` stamped `device_ts` that arrived at
    /// `arrival_ms` (if the transport knows). Only admitted events count, so a read
    /// refused as from the future cannot move its device's clock.
    pub fn record(&mut self, device: usize, partition: u32, device_ts: i64, arrival_ms: Option<i64>) {
        let (Some(arrival), true) = (arrival_ms, device < self.devices) else { return };
        let devices = self.devices;
        let clock = &mut self.partitions.entry(partition).or_insert_with(|| vec![DeviceClock::default(); devices])[device];
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

    /// The estimate of one device through one partition, if calibrated: known from
    /// enough events, and no vaguer than the device's certified accuracy (until
    /// late deliveries are outnumbered, the device's own clock is the better guess).
    pub fn calibration(&self, device: usize, partition: u32) -> Option<Calibration> {
        self.partitions
            .get(&partition)
            .and_then(|p| p.get(device))
            .and_then(|c| c.estimate)
            .filter(|c| c.uncertainty_ms <= self.uncalibrated_ms)
    }

    /// The device's best-informed estimate (the partition that has seen most of it),
    /// for reports: health and the API.
    pub fn device_calibration(&self, device: usize) -> Option<Calibration> {
        self.partitions.values().filter_map(|p| p.get(device)).filter(|c| c.estimate.is_some()).max_by_key(|c| c.len).and_then(|c| c.estimate)
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
        // median would follow two late events of three (a sparse camera's
        // partition sees few events, and one backlog can hold two of them).
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
    fn observe(clocks: &mut DeviceClocks, device: usize, partition: u32, device_ts: i64, arrival_ms: Option<i64>) -> (i64, i64) {
        let corrected = clocks.correct(device, partition, device_ts);
        clocks.record(device, partition, device_ts, arrival_ms);
        corrected
    }

    #[test]
    fn a_clean_clock_is_calibrated_by_three_events_with_no_uncertainty() {
        let mut clocks = DeviceClocks::new(1, 2_000);
        for t in [1_000, 2_000, 3_000] {
            assert_eq!(observe(&mut clocks, 0, 0, t, Some(t)), (t, 2_000));
        }
        assert_eq!(observe(&mut clocks, 0, 0, 4_000, Some(4_000)), (4_000, 0));
    }

    #[test]
    fn without_arrival_times_a_device_stays_uncalibrated() {
        let mut clocks = DeviceClocks::new(1, 2_000);
        for t in 0..50 {
            assert_eq!(observe(&mut clocks, 0, 0, t, None), (t, 2_000));
        }
    }

    #[test]
    fn a_late_arrival_while_calibrating_widens_the_uncertainty_instead_of_moving_the_clock() {
        let mut clocks = DeviceClocks::new(1, 2_000);
        observe(&mut clocks, 0, 0, 10_000, Some(8_500)); // 1.5 s fast
        observe(&mut clocks, 0, 0, 20_000, Some(18_500));
        observe(&mut clocks, 0, 0, 30_000, Some(58_500)); // 30 s late
        // Vaguer than the clock's certified 2 s: the device's own time, with that doubt.
        assert_eq!(observe(&mut clocks, 0, 0, 40_000, Some(38_500)), (40_000, 2_000));
        // Once straight deliveries outnumber it, the clock is corrected again.
        for t in [50_000, 60_000, 70_000] {
            observe(&mut clocks, 0, 0, t, Some(t - 1_500));
        }
        assert_eq!(observe(&mut clocks, 0, 0, 80_000, Some(78_500)), (78_500, 0));
    }

    #[test]
    fn two_late_arrivals_of_three_while_calibrating_leave_the_device_its_own_time() {
        let mut clocks = DeviceClocks::new(1, 2_000);
        observe(&mut clocks, 0, 0, 10_000, Some(9_000)); // 1 s fast, straight through
        observe(&mut clocks, 0, 0, 20_000, Some(35_000)); // a backlog, 16 s late
        observe(&mut clocks, 0, 0, 30_000, Some(45_500));
        assert_eq!(observe(&mut clocks, 0, 0, 40_000, Some(39_000)), (40_000, 2_000));
    }

    #[test]
    fn each_partition_calibrates_on_its_own_events_whatever_the_interleaving() {
        let events: Vec<(u32, i64)> = (0..40).map(|i| (i % 3, i64::from(i) * 1_000)).collect();
        let run = |order: &mut dyn Iterator<Item = &(u32, i64)>| {
            let mut clocks = DeviceClocks::new(1, 2_000);
            let mut corrected: Vec<((u32, i64), (i64, i64))> =
                order.map(|&(p, t)| ((p, t), observe(&mut clocks, 0, p, t + 700 + t % 900, Some(t)))).collect();
            corrected.sort_by_key(|(k, _)| *k);
            corrected
        };
        // Partition by partition, against round robin: the same corrections.
        let mut by_partition = events.clone();
        by_partition.sort_by_key(|(p, t)| (*p, *t));
        assert_eq!(run(&mut events.iter()), run(&mut by_partition.iter()));
    }

    #[test]
    fn a_device_number_out_of_range_is_uncalibrated_and_recorded_nowhere() {
        let mut clocks = DeviceClocks::new(1, 2_000);
        for t in 0..10 {
            assert_eq!(observe(&mut clocks, 7, 0, t, Some(t)), (t, 2_000));
        }
        assert_eq!(clocks.device_calibration(7), None);
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
                let (corrected, uncertainty) = observe(&mut clocks, 0, 0, truth + skew, Some(arrival));
                if i >= 16 {
                    // The median difference is −(typical latency): corrected = truth + latency.
                    prop_assert!((corrected - truth).abs() <= uncertainty.max(0) + 300, "error {} vs uncertainty {uncertainty}", corrected - truth);
                }
            }
        }
    }
}
