//! Chinese licence plates, normalised and stored inline in 16 bytes.
//!
//! Plates are the join key of the whole pipeline (millions in flight), so a plate is
//! a `Copy` value with no heap allocation. Normalisation folds full-width characters
//! and case, and drops spaces, dots and hyphens that cameras and clerks insert.

use std::fmt;

/// Province abbreviations that begin a civilian plate.
const PROVINCES: &str = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼";
/// Characters allowed as the last character of a 7-character special plate.
const SUFFIXES: &str = "学警挂港澳领使";
const CAPACITY: usize = 15;

/// A normalised plate such as `闽D12345` (7 characters) or `闽DD12345` (new energy, 8).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Plate {
    len: u8,
    bytes: [u8; CAPACITY],
}

/// Why a string is not a plate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlateError(pub &'static str);

impl fmt::Display for PlateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for PlateError {}

impl Plate {
    /// Normalises and validates a plate as written by a device or a person.
    pub fn parse(raw: &str) -> Result<Plate, PlateError> {
        let mut chars = raw.chars().filter_map(normalise_char);
        let province = chars.next().ok_or(PlateError("empty plate"))?;
        if !PROVINCES.contains(province) {
            return Err(PlateError("plate must start with a province abbreviation"));
        }
        let city = chars.next().ok_or(PlateError("plate too short"))?;
        if !city.is_ascii_uppercase() {
            return Err(PlateError("second character must be a letter"));
        }
        let mut plate = Plate { len: 0, bytes: [0; CAPACITY] };
        plate.push(province)?;
        plate.push(city)?;
        let mut serial = 0usize;
        let mut suffix = false;
        for c in chars {
            if suffix {
                return Err(PlateError("characters after a special suffix"));
            }
            if c.is_ascii_uppercase() || c.is_ascii_digit() {
                serial += 1;
            } else if SUFFIXES.contains(c) {
                suffix = true;
            } else {
                return Err(PlateError("invalid character in plate"));
            }
            plate.push(c)?;
        }
        match (serial, suffix) {
            (5, false) | (6, false) | (4, true) => Ok(plate),
            _ => Err(PlateError("plate must have 5 or 6 serial characters")),
        }
    }

    fn push(&mut self, c: char) -> Result<(), PlateError> {
        let n = c.len_utf8();
        let at = usize::from(self.len);
        if at + n > CAPACITY {
            return Err(PlateError("plate too long"));
        }
        c.encode_utf8(&mut self.bytes[at..at + n]);
        self.len += n as u8;
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        // Only whole chars are ever pushed, so the prefix is valid UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The prefix of the issuing city, e.g. `闽D` (Xiamen).
    pub fn region(&self) -> &str {
        let s = self.as_str();
        let end = s.char_indices().nth(2).map_or(s.len(), |(i, _)| i);
        &s[..end]
    }

    /// Number of characters (7 for ordinary plates, 8 for new-energy plates).
    pub fn char_count(&self) -> usize {
        self.as_str().chars().count()
    }

    /// Plates of the same length that differ in exactly one character: how a
    /// camera or reader misreads one.
    pub fn one_character_from(&self, other: &Plate) -> bool {
        let (a, b) = (self.as_str(), other.as_str());
        a.chars().count() == b.chars().count() && a.chars().zip(b.chars()).filter(|(x, y)| x != y).count() == 1
    }

    /// The plate with one ASCII character after the province replaced by `*`, for
    /// every such position: two plates share a key exactly when they differ in that
    /// one character, which is how a one-character misread is found in an index.
    pub fn wildcard_keys(&self) -> impl Iterator<Item = [u8; CAPACITY + 1]> + '_ {
        let len = usize::from(self.len);
        (0..len).filter(move |&i| i > 0 && self.bytes[i].is_ascii_alphanumeric()).map(move |i| {
            let mut key = [0u8; CAPACITY + 1];
            key[0] = self.len;
            key[1..].copy_from_slice(&self.bytes);
            key[1 + i] = b'*';
            key
        })
    }
}

/// Folds full-width ASCII to half-width and lower case to upper; drops separators.
fn normalise_char(c: char) -> Option<char> {
    let c = match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        _ => c,
    };
    match c {
        ' ' | '-' | '.' | '·' | '•' | '\t' => None,
        _ => Some(c.to_ascii_uppercase()),
    }
}

impl fmt::Display for Plate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Plate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plate({})", self.as_str())
    }
}

/// A plate is saved (in checkpoints) as its normalised text, which parses back to
/// the same plate.
impl serde::Serialize for Plate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Plate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Plate, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Plate::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_width_case_and_separators() {
        let p = Plate::parse("闽ｄ·１２３ab").unwrap();
        assert_eq!(p.as_str(), "闽D123AB");
        assert_eq!(p.region(), "闽D");
        assert_eq!(Plate::parse(" 闽D-12345 ").unwrap().as_str(), "闽D12345");
        assert_eq!(Plate::parse("闽DD12345").unwrap().char_count(), 8);
        assert_eq!(Plate::parse("闽D1234学").unwrap().as_str(), "闽D1234学");
    }

    #[test]
    fn rejects_what_is_not_a_plate() {
        for bad in ["", "闽", "XD12345", "闽112345", "闽D1234", "闽D1234567", "闽D12!45", "闽D1234学5"] {
            assert!(Plate::parse(bad).is_err(), "{bad} accepted");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_roundtrips(s in "\\PC{0,20}") {
            if let Ok(p) = Plate::parse(&s) {
                prop_assert_eq!(Plate::parse(p.as_str()), Ok(p));
            }
        }
    }
}
