//! Local time of the three cities (China Standard Time, UTC+8, no daylight saving),
//! for rules with hours and the simulator's time-of-day demand.

/// The wall clock in epoch milliseconds (0 if the system clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Minutes since local midnight for an epoch-millisecond instant.
pub fn local_minute_of_day(ts_ms: i64, offset_minutes: i32) -> u32 {
    let local_min = ts_ms.div_euclid(60_000) + i64::from(offset_minutes);
    local_min.rem_euclid(24 * 60) as u32
}

/// Parses "HH:MM" (00:00–24:00) into minutes since midnight.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
}

/// A half-open local time range `[from, to)` in minutes since midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourRange {
    pub from_min: u32,
    pub to_min: u32,
}

impl HourRange {
    pub fn contains(&self, minute_of_day: u32) -> bool {
        if self.from_min <= self.to_min {
            (self.from_min..self.to_min).contains(&minute_of_day)
        } else {
            minute_of_day >= self.from_min || minute_of_day < self.to_min
        }
    }
}

/// Local calendar day number (days since the epoch in local time): the day a
/// once-a-day rule counts in.
pub fn local_day(ts_ms: i64, offset_minutes: i32) -> i64 {
    ts_ms.saturating_add(i64::from(offset_minutes) * 60_000).div_euclid(86_400_000)
}

/// True when `ts_ms` falls within any of `hours` (local time); no hours means all day.
pub fn in_hours(hours: &[HourRange], ts_ms: i64, offset_minutes: i32) -> bool {
    let minute = local_minute_of_day(ts_ms, offset_minutes);
    hours.is_empty() || hours.iter().any(|h| h.contains(minute))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cst_is_utc_plus_eight() {
        // 2026-11-28T00:00:00Z is 08:00 in Xiamen.
        assert_eq!(local_minute_of_day(1_795_824_000_000, 480), 8 * 60);
        assert_eq!(local_minute_of_day(-60_000, 0), 24 * 60 - 1);
    }

    #[test]
    fn hours_parse_and_wrap() {
        assert_eq!(parse_hhmm("07:30"), Some(450));
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        assert_eq!(parse_hhmm("25:00"), None);
        assert_eq!(parse_hhmm("7"), None);
        let night = HourRange { from_min: 22 * 60, to_min: 6 * 60 };
        assert!(night.contains(23 * 60) && night.contains(60) && !night.contains(12 * 60));
    }
}
