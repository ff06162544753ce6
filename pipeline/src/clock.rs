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
//! offset and its range the uncertainty. With fewer than four samples the whole
//! range is the uncertainty, so an early late arrival makes the doubt large rather
//! than the estimate wrong.

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

/// Clock estimates of every device, indexed by a dense device number.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct DeviceClocks {
    devices: Vec<DeviceClock>,
    /// Uncertainty of a device not yet calibrated (its certified accuracy).
    uncalibrated_ms: i64,
}

impl DeviceClocks {
    pub fn new(devices: usize, uncalibrated_ms: i64) -> Self {
        DeviceClocks { devices: vec![DeviceClock::default(); devices], uncalibrated_ms }
    }

    /// Records one event of `device` stamped `device_ts`, which arrived at `arrival_ms`
    /// (if the transport knows), and returns its corrected time and uncertainty.
    pub fn observe(&mut self, device: usize, device_ts: i64, arrival_ms: Option<i64>) -> (i64, i64) {
        let Some(clock) = self.devices.get_mut(device) else { return (device_ts, self.uncalibrated_ms) };
        if let Some(arrival) = arrival_ms {
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
        match clock.estimate {
            Some(c) => (device_ts - c.offset_ms, c.uncertainty_ms),
            None => (device_ts, self.uncalibrated_ms),
        }
    }

    /// The current estimate of one device, if calibrated.
    pub fn calibration(&self, device: usize) -> Option<Calibration> {
        self.devices.get(device).and_then(|c| c.estimate)
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
        return Some(Calibration { offset_ms: i64::from(sorted[n / 2]), uncertainty_ms: i64::from(sorted[n - 1]) - i64::from(sorted[0]) });
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

    #[test]
    fn a_clean_clock_is_calibrated_after_three_events_with_no_uncertainty() {
        let mut clocks = DeviceClocks::new(1, 2_000);
        assert_eq!(clocks.observe(0, 1_000, Some(1_000)), (1_000, 2_000));
        assert_eq!(clocks.observe(0, 2_000, Some(2_000)), (2_000, 2_000));
        assert_eq!(clocks.observe(0, 3_000, Some(3_000)), (3_000, 0));
    }

    #[test]
    fn without_arrival_times_a_device_stays_uncalibrated() {
        let mut clocks = DeviceClocks::new(1, 2_000);
        for t in 0..50 {
            assert_eq!(clocks.observe(0, t, None), (t, 2_000));
        }
    }

    #[test]
    fn a_late_arrival_while_calibrating_widens_the_uncertainty_instead_of_moving_the_clock() {
        let mut clocks = DeviceClocks::new(1, 2_000);
        clocks.observe(0, 10_000, Some(8_500)); // 1.5 s fast
        clocks.observe(0, 20_000, Some(18_500));
        let (corrected, uncertainty) = clocks.observe(0, 30_000, Some(58_500)); // 30 s late
        assert_eq!(corrected, 28_500);
        assert!(uncertainty >= 30_000);
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
                let (corrected, uncertainty) = clocks.observe(0, truth + skew, Some(arrival));
                if i >= 16 {
                    // The median difference is −(typical latency): corrected = truth + latency.
                    prop_assert!((corrected - truth).abs() <= uncertainty.max(0) + 300, "error {} vs uncertainty {uncertainty}", corrected - truth);
                }
            }
        }
    }
}
