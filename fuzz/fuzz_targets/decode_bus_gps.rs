//! Fuzz target: `egret_model::Decoder::decode` on the `egret.bus-gps` topic, with
//! any bytes. It must never panic, and what it accepts or rejects must have the
//! properties of `egret_fuzz::check_decode`.
#![no_main]

use egret_model::Topic;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| egret_fuzz::check_decode(Topic::BusGps, bytes));
