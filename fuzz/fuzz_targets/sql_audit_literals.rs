//! Fuzz target: `input::pseudonymise_literals`, which writes the SQL of
//! `POST /api/v1/sql` to the audit log with every quoted plate replaced by its
//! pseudonym. It must not panic, must change nothing but quoted plates (with an
//! identity pseudonym the text comes back unchanged, and the quotes stay where
//! they were), and no plate may be left after a quote in what it writes, whether
//! or not the quotes before it were balanced.
#![no_main]

use egret_fuzz::input::pseudonymise_literals;
use egret_model::Plate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let sql = String::from_utf8_lossy(bytes);
    assert_eq!(pseudonymise_literals(&sql, str::to_owned), sql, "changed more than quoted plates");
    let mut replaced = 0;
    let written = pseudonymise_literals(&sql, |_| {
        replaced += 1;
        "p:0123abcd".to_owned()
    });
    assert_eq!(written.matches('\'').count(), sql.matches('\'').count(), "quotes moved");
    // Whatever a quote opens may be a literal: a comment or a "quoted identifier"
    // with an apostrophe shifts which quotes open literals.
    for part in written.split('\'').skip(1) {
        assert!(Plate::parse(part).is_err(), "plate {part:?} left in the audit text of {sql:?}");
    }
    let plates_quoted = sql.split('\'').skip(1).filter(|part| Plate::parse(part).is_ok()).count();
    assert_eq!(replaced, plates_quoted);
});
