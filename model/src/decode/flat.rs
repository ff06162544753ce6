//! A fast path for the shape nearly every plate read has on the wire: one flat
//! JSON object of plain strings (no escapes), integers, booleans and nulls.
//!
//! serde_json's derived reader spent about 7,000 instructions on such a read of
//! 150 bytes (callgrind): a visitor per field, a `String` per optional text field
//! (serde does not borrow through `Option<Cow>`), a generic number reader. This
//! scanner reads the object in one pass and borrows every string.
//!
//! It never decides anything serde would decide differently: whatever it is not
//! sure of (an escape, a nested value, a float, a duplicate or mistyped field, a
//! missing one, trailing text) makes it answer `None`, and the message goes
//! through serde (`super::parse`), which then accepts it or names what is wrong.
//! A property test holds the two to the same answer on every input both read.

use crate::event::PlateRead;
use std::borrow::Cow;

/// A value the fast path reads: anything else sends the message to serde.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scalar<'a> {
    Text(&'a str),
    Integer(i64),
    Null,
    Boolean,
}

struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    /// JSON's whitespace, and then the next byte.
    fn next_token(&mut self) -> Option<u8> {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
        self.peek()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.next_token()? == byte).then(|| self.at += 1)
    }

    /// A string without escapes or control characters, after its opening quote.
    fn plain_string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let end = start + first_special(&self.bytes()[start..])?;
        if self.bytes()[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        // Both ends are ASCII quotes in text checked as UTF-8: char boundaries.
        self.text.get(start..end)
    }

    fn literal(&mut self, word: &str, value: Scalar<'a>) -> Option<Scalar<'a>> {
        self.text[self.at..].starts_with(word).then(|| {
            self.at += word.len();
            value
        })
    }

    /// An integer as JSON writes it, small enough for an `i64` without overflow
    /// checks (18 digits); a fraction or exponent makes it a float, serde's to
    /// judge, and so does `-0` (found by the property test below).
    fn integer(&mut self) -> Option<i64> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let digits_from = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        let digits = &self.bytes()[digits_from..self.at];
        if digits.is_empty() || digits.len() > 18 || (digits[0] == b'0' && digits.len() > 1) || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let magnitude = digits.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
        match (negative, magnitude) {
            // serde_json keeps the sign of `-0` by reading it as a float.
            (true, 0) => None,
            (true, m) => Some(-m),
            (false, m) => Some(m),
        }
    }

    fn scalar(&mut self) -> Option<Scalar<'a>> {
        match self.next_token()? {
            b'"' => self.plain_string().map(Scalar::Text),
            b'-' | b'0'..=b'9' => self.integer().map(Scalar::Integer),
            b'n' => self.literal("null", Scalar::Null),
            b't' => self.literal("true", Scalar::Boolean),
            b'f' => self.literal("false", Scalar::Boolean),
            _ => None,
        }
    }
}

/// Where the first quote, backslash or control character is in `bytes`: eight
/// bytes a step (a byte-by-byte search was half of this reader's instructions).
/// In each step the lowest flagged byte is exact: the borrows of the subtractions
/// only ever flag bytes above a true match.
fn first_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let flags = zero_byte(w ^ (b'"' as u64 * ONES)) | zero_byte(w ^ (b'\\' as u64 * ONES)) | (w.wrapping_sub(0x20 * ONES) & !w & HIGHS);
        if flags != 0 {
            return Some(at + flags.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    chunks.remainder().iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).map(|i| at + i)
}

/// Sets a field seen for the first time; a second one is serde's to refuse.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    slot.is_none().then(|| *slot = Some(value))
}

/// A plate read of the usual shape, exactly as serde would read it; `None` for
/// anything else, which serde then reads (or refuses with its reason).
pub(super) fn plate_read(text: &str) -> Option<PlateRead<'_>> {
    let mut s = Scanner { text, at: 0 };
    s.eat(b'{')?;
    let (mut event_id, mut reader_id, mut plate, mut ts_ms) = (None, None, None, None);
    let (mut tag_id, mut vehicle_class, mut lane) = (None, None, None);
    loop {
        let key = s.plain_string()?;
        s.eat(b':')?;
        let value = s.scalar()?;
        match (key, value) {
            ("event_id", Scalar::Text(v)) => once(&mut event_id, v)?,
            ("reader_id", Scalar::Text(v)) => once(&mut reader_id, v)?,
            ("plate", Scalar::Text(v)) => once(&mut plate, v)?,
            ("ts_ms", Scalar::Integer(v)) => once(&mut ts_ms, v)?,
            ("tag_id", Scalar::Text(v)) => once(&mut tag_id, Some(v))?,
            ("tag_id", Scalar::Null) => once(&mut tag_id, None)?,
            ("vehicle_class", Scalar::Text(v)) => once(&mut vehicle_class, Some(v))?,
            ("vehicle_class", Scalar::Null) => once(&mut vehicle_class, None)?,
            ("lane", Scalar::Integer(v)) => once(&mut lane, Some(u8::try_from(v).ok()?))?,
            ("lane", Scalar::Null) => once(&mut lane, None)?,
            // A known field of the wrong type: serde names it.
            ("event_id" | "reader_id" | "plate" | "ts_ms" | "tag_id" | "vehicle_class" | "lane", _) => return None,
            // Unknown fields are ignored (contract-v1 §1), as serde does.
            _ => {}
        }
        match s.next_token()? {
            b',' => s.at += 1,
            b'}' => break s.at += 1,
            _ => return None,
        }
    }
    if s.next_token().is_some() {
        return None;
    }
    Some(PlateRead {
        event_id: Cow::Borrowed(event_id?),
        reader_id: Cow::Borrowed(reader_id?),
        plate: Cow::Borrowed(plate?),
        tag_id: tag_id.flatten().map(Cow::Borrowed),
        vehicle_class: vehicle_class.flatten().map(Cow::Borrowed),
        lane: lane.flatten(),
        ts_ms: ts_ms?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde_reads(text: &str) -> Result<PlateRead<'_>, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_device_s_read_takes_the_fast_path() {
        let text = r#"{"event_id":"r-000001","reader_id":"XM-R0001","plate":"闽D12345","tag_id":"E2000017221101441890","vehicle_class":"car","lane":1,"ts_ms":1795838400123}"#;
        let fast = plate_read(text).expect("the usual shape");
        assert_eq!(Ok(fast.clone()), serde_reads(text));
        assert!(matches!(fast.plate, Cow::Borrowed(_)) && matches!(fast.tag_id, Some(Cow::Borrowed(_))), "nothing copied");
        let spaced = " {\n \"ts_ms\" : 1795838400123 , \"plate\":\"闽D12345\",\"reader_id\":\"XM-R0001\",\"event_id\":\"r-1\",\"tag_id\":null,\"extra\":[1]}";
        assert_eq!(plate_read(spaced), None, "an unknown nested value goes to serde");
        let unknown = r#"{"event_id":"r-1","reader_id":"XM-R0001","plate":"闽D12345","ts_ms":1795838400123,"firmware":"2.1","ok":true,"rssi":-61}"#;
        assert_eq!(plate_read(unknown).map(|r| r.event_id.into_owned()), Some("r-1".into()), "unknown scalars are skipped");
    }

    #[test]
    fn what_serde_would_refuse_or_read_otherwise_goes_to_serde() {
        for text in [
            r#"{"event_id":"r-1","reader_id":"XM-R0001","plate":"闽D12345","ts_ms":1}x"#,
            r#"{"event_id":"r-1","reader_id":"XM-R0001","plate":"闽D12345","ts_ms":1,}"#,
            r#"{"event_id":"r-1","reader_id":"XM-R0001","plate":"闽D12345","ts_ms":1.0}"#,
            r#"{"event_id":"r-1","reader_id":"XM-R0001","plate":"闽D12345","ts_ms":01}"#,
            r#"{"event_id":"r-1","reader_id":"XM-R0001","plate":"闽D12345","ts_ms":1,"ts_ms":2}"#,
            r#"{"event_id":"r-1","reader_id":"XM-R0001","plate":"闽D\u0031","ts_ms":1}"#,
            r#"{"event_id":"r-1","reader_id":"XM-R0001","plate":"闽D12345","ts_ms":1,"lane":256}"#,
            r#"{"event_id":"r-1","reader_id":"XM-R0001","plate":null,"ts_ms":1}"#,
            r#"{"event_id":"r-1","reader_id":"XM-R0001","ts_ms":1}"#,
            r#"{"event_id":"r-1","reader_id":"XM-R0001","plate":"闽D12345","ts_ms":12345678901234567890}"#,
            r#"{}"#,
            r#"[]"#,
        ] {
            assert_eq!(plate_read(text), None, "{text}");
        }
    }

    /// Texts of reads: the four fields a read needs, of the right types, and up to
    /// five more (the optional fields, unknown ones, and known ones again) of values
    /// of every kind, spaced and ordered at random, sometimes with text after them.
    /// About half are well formed; the rest are broken in every way listed.
    pub(super) fn objects() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec!["event_id", "reader_id", "plate", "ts_ms", "tag_id", "vehicle_class", "lane", "extra", "ts_m\\u0073", ""]);
        let value = prop_oneof![
            "[a-zA-Z0-9 闽-]{0,12}".prop_map(|s| format!("\"{s}\"")),
            prop::sample::select(vec!["\"a\\\"b\"", "\"tab\there\"", "\"\\u95fdD1\"", "\"\""]).prop_map(str::to_owned),
            any::<i64>().prop_map(|n| n.to_string()),
            (0i64..300).prop_map(|n| n.to_string()),
            prop::sample::select(vec!["null", "true", "false", "nul", "-", "-0", "007", "1.5", "2e3", "1795838400123", "[]", "{\"a\":1}", "\"x\"y"]).prop_map(str::to_owned),
        ];
        let space = prop::sample::select(vec!["", " ", "\n\t", "\r\n  "]);
        let required = Just(vec![
            ("event_id", "\"r-1\"".to_owned()),
            ("reader_id", "\"XM-R0001\"".to_owned()),
            ("plate", "\"闽D12345\"".to_owned()),
            ("ts_ms", "1795838400123".to_owned()),
        ]);
        let extra = prop::collection::vec((key, value), 0..6);
        let tail = prop::sample::select(vec!["", "", "", "", "", ",", "}", "x", " \n"]);
        (required, extra, space, tail)
            .prop_flat_map(|(mut fields, extra, space, tail)| {
                fields.extend(extra);
                (Just(fields).prop_shuffle(), Just(space), Just(tail))
            })
            .prop_map(|(fields, space, tail)| {
                let body: Vec<String> = fields.into_iter().map(|(k, v)| format!("{space}\"{k}\"{space}:{space}{v}{space}")).collect();
                format!("{space}{{{}}}{tail}", body.join(","))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        /// Eight bytes a step finds what a byte-by-byte search finds.
        #[test]
        fn the_word_search_finds_the_first_special_byte(bytes in prop::collection::vec(prop_oneof![1 => Just(b'"'), 1 => Just(b'\\'), 1 => 0u8..0x20, 40 => 0x20u8..=0xff], 0..64)) {
            let expected = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            prop_assert_eq!(first_special(&bytes), expected);
        }

        /// Whatever the fast path reads, serde reads the same.
        #[test]
        fn the_fast_path_reads_what_serde_reads(text in objects()) {
            if let Some(fast) = plate_read(&text) {
                prop_assert_eq!(Ok(fast), serde_reads(&text), "{}", text);
            }
        }

        /// The usual shape in any order and spacing always takes the fast path.
        #[test]
        fn every_well_formed_read_takes_the_fast_path(
            order in Just((0..7).collect::<Vec<usize>>()).prop_shuffle(),
            ts in 946_684_800_000i64..4_102_444_800_000,
            lane in prop::option::of(any::<u8>()),
            space in prop::sample::select(vec!["", " ", "\n  "]),
        ) {
            let lane = lane.map_or("null".to_owned(), |l| l.to_string());
            let fields = [
                "\"event_id\":\"r-9\"".to_owned(), "\"reader_id\":\"XM-R0001\"".to_owned(), "\"plate\":\"闽DD12345\"".to_owned(),
                format!("\"ts_ms\":{ts}"), "\"tag_id\":\"E1\"".to_owned(), "\"vehicle_class\":null".to_owned(), format!("\"lane\":{lane}"),
            ];
            let text = format!("{{{}}}", order.iter().map(|i| format!("{space}{}{space}", fields[*i])).collect::<Vec<_>>().join(","));
            let fast = plate_read(&text);
            prop_assert!(fast.is_some(), "{}", text);
            prop_assert_eq!(Ok(fast.expect("checked")), serde_reads(&text));
        }
    }
}
