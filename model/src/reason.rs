//! Why an input was rejected: the reason codes of contract-v1 §1, carried in the
//! `egret-error` header of every dead letter and counted per code in `/metrics`.

use std::fmt;

/// A rejected input. `code()` is the stable string operators filter on; the
/// `detail` says which field or id was at fault, for a human reading the dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reason: Reason,
    pub detail: String,
}

/// Reason codes. Stable: dashboards and alert rules match on `code()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Reason {
    Oversized,
    InvalidUtf8,
    NotJson,
    NotAnObject,
    MissingField,
    InvalidField,
    InvalidPlate,
    UnknownType,
    UnknownReader,
    UnknownCamera,
    UnknownLot,
    UnknownRoute,
    CoordinatesOutOfRange,
    TimestampInFuture,
    TimestampTooOld,
    Late,
    Duplicate,
}

impl Reason {
    pub const ALL: [Reason; 17] = [
        Reason::Oversized,
        Reason::InvalidUtf8,
        Reason::NotJson,
        Reason::NotAnObject,
        Reason::MissingField,
        Reason::InvalidField,
        Reason::InvalidPlate,
        Reason::UnknownType,
        Reason::UnknownReader,
        Reason::UnknownCamera,
        Reason::UnknownLot,
        Reason::UnknownRoute,
        Reason::CoordinatesOutOfRange,
        Reason::TimestampInFuture,
        Reason::TimestampTooOld,
        Reason::Late,
        Reason::Duplicate,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::Oversized => "oversized",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::NotJson => "not_json",
            Reason::NotAnObject => "not_an_object",
            Reason::MissingField => "missing_field",
            Reason::InvalidField => "invalid_field",
            Reason::InvalidPlate => "invalid_plate",
            Reason::UnknownType => "unknown_type",
            Reason::UnknownReader => "unknown_reader",
            Reason::UnknownCamera => "unknown_camera",
            Reason::UnknownLot => "unknown_lot",
            Reason::UnknownRoute => "unknown_route",
            Reason::CoordinatesOutOfRange => "coordinates_out_of_range",
            Reason::TimestampInFuture => "timestamp_in_future",
            Reason::TimestampTooOld => "timestamp_too_old",
            Reason::Late => "late",
            Reason::Duplicate => "duplicate",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl Reject {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Reject { reason, detail: detail.into() }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.detail)
    }
}

impl std::error::Error for Reject {}
