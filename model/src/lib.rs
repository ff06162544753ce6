//! Shared types of Egret: the contract-v1 input events with their decoder and
//! validator, normalised plates, the city model loaded from `data/`, and local time.
//!
//! Every other crate speaks in these types, so the pipeline, the simulator and the
//! API agree on one meaning of "a plate read" or "a segment" without copying code.

pub mod city;
pub mod decode;
pub mod event;
pub mod fast_hash;
pub mod plate;
pub mod reason;
pub mod time;

pub use city::{CityModel, ReaderIdx, SegmentIdx};
pub use decode::{Decoded, Decoder};
pub use fast_hash::{FastMap, FastSet};
pub use event::{BusGps, CameraEvent, CameraKind, ParkingCount, PlateRead, Topic, VehicleClass};
pub use plate::Plate;
pub use reason::Reject;
