//! RFID tags as the vehicle's identity. A tag is issued to one registered plate,
//! so a read whose plate is one character away from the plate its tag has been
//! read with (twice, so the tag's plate is established) is a misread of that plate,
//! and is taken as that plate. Other reads are taken as they come: a plate that is
//! really different (a clone with a forged tag id) is left for the cloned-plate rule.

use egret_model::Plate;
use egret_model::FastMap;

/// Reads that agree on a tag's plate before it is trusted to correct others.
const ESTABLISHED_AFTER: u8 = 2;

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy)]
struct TagPlate {
    plate: Plate,
    agreeing: u8,
    last_ms: i64,
    /// Where it was last read: two reads in one pass are one observation.
    last_reader: u32,
}

/// Reads of a tag at one gantry this close together are the same pass.
const SAME_PASS_MS: i64 = 10_000;

#[derive(serde::Serialize, serde::Deserialize, Debug, Default)]
pub struct TagRegistry {
    tags: FastMap<u32, TagPlate>,
    /// Reads whose plate was corrected.
    pub corrected: u64,
}

impl TagRegistry {
    /// The plate a read of `tag` at gantry `reader` showing `plate` at `ts_ms` belongs to.
    /// What the tag showed before `forget_before_ms` is forgotten here and now, so the
    /// answer never depends on when `expire` last ran.
    pub fn resolve(&mut self, tag: u32, reader: u32, plate: Plate, ts_ms: i64, forget_before_ms: i64) -> Plate {
        if tag == 0 {
            return plate;
        }
        let fresh = TagPlate { plate, agreeing: 0, last_ms: ts_ms, last_reader: u32::MAX };
        let entry = self.tags.entry(tag).or_insert(fresh);
        if entry.last_ms < forget_before_ms {
            *entry = fresh;
        }
        let same_pass = entry.last_reader == reader && (ts_ms - entry.last_ms).abs() < SAME_PASS_MS;
        entry.last_ms = entry.last_ms.max(ts_ms);
        entry.last_reader = reader;
        if entry.plate == plate {
            if !same_pass {
                entry.agreeing = entry.agreeing.saturating_add(1);
            }
            return plate;
        }
        if entry.agreeing >= ESTABLISHED_AFTER && entry.plate.one_character_from(&plate) {
            self.corrected += 1;
            return entry.plate;
        }
        if entry.agreeing < ESTABLISHED_AFTER {
            // Not established yet: the newer plate may be the right one.
            *entry = TagPlate { plate, agreeing: 1, last_ms: ts_ms, last_reader: reader };
        }
        plate
    }

    /// Forgets tags not read since `horizon_ms`.
    pub fn expire(&mut self, horizon_ms: i64) {
        self.tags.retain(|_, t| t.last_ms >= horizon_ms);
    }

    pub fn len(&self) -> usize {
        self.tags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plate(s: &str) -> Plate {
        Plate::parse(s).expect("plate")
    }

    #[test]
    fn a_misread_of_an_established_tag_is_corrected() {
        let mut r = TagRegistry::default();
        assert_eq!(r.resolve(7, 1, plate("闽D12345"), 0, i64::MIN), plate("闽D12345"));
        assert_eq!(r.resolve(7, 2, plate("闽D12345"), 60_000, i64::MIN), plate("闽D12345"));
        assert_eq!(r.resolve(7, 3, plate("闽D12845"), 120_000, i64::MIN), plate("闽D12345"));
        assert_eq!(r.corrected, 1);
    }

    #[test]
    fn a_tag_not_read_within_the_horizon_is_established_anew() {
        let mut r = TagRegistry::default();
        r.resolve(7, 1, plate("闽D12345"), 0, i64::MIN);
        r.resolve(7, 2, plate("闽D12345"), 60_000, i64::MIN);
        // Whether or not `expire` has run since, the old plate is forgotten.
        assert_eq!(r.resolve(7, 3, plate("闽D12845"), 3_000_000, 3_000_000 - 2_700_000), plate("闽D12845"));
        assert_eq!(r.corrected, 0);
    }

    #[test]
    fn two_reads_in_one_pass_are_one_observation() {
        let mut r = TagRegistry::default();
        r.resolve(7, 1, plate("闽D12845"), 0, i64::MIN);
        r.resolve(7, 1, plate("闽D12845"), 2_000, i64::MIN);
        // Not established by one pass read twice: the true plate is not "corrected".
        assert_eq!(r.resolve(7, 2, plate("闽D12345"), 60_000, i64::MIN), plate("闽D12345"));
        assert_eq!(r.corrected, 0);
    }

    #[test]
    fn an_unestablished_tag_or_a_different_plate_is_not_corrected() {
        let mut r = TagRegistry::default();
        r.resolve(7, 1, plate("闽D12845"), 0, i64::MIN);
        // The first read was the misread: the next ones take over.
        assert_eq!(r.resolve(7, 2, plate("闽D12345"), 60_000, i64::MIN), plate("闽D12345"));
        assert_eq!(r.resolve(7, 3, plate("闽D12345"), 120_000, i64::MIN), plate("闽D12345"));
        assert_eq!(r.resolve(7, 4, plate("闽D12845"), 180_000, i64::MIN), plate("闽D12345"));
        // Two characters away: another plate, not a misread.
        assert_eq!(r.resolve(7, 5, plate("闽E99345"), 240_000, i64::MIN), plate("闽E99345"));
        assert_eq!(r.resolve(0, 1, plate("闽D00001"), 5, i64::MIN), plate("闽D00001"));
    }
}
