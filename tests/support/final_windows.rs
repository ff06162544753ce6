//! A closed window read back from `egret.segment-speeds`, as a row that compares
//! exactly (floats by their bits): the Kafka tests check such rows against an
//! embedded run of the same traffic.

use egret_model::CityModel;

/// (segment index, window start, samples, mean bits, median bits).
pub type WindowRow = (u32, i64, u32, u64, u64);

/// The row of a final window's JSON; `None` for a provisional one.
pub fn final_window_row(city: &CityModel, payload: &[u8]) -> Option<WindowRow> {
    let w: serde_json::Value = serde_json::from_slice(payload).expect("a window is JSON");
    if w["is_final"] != true {
        return None;
    }
    let segment = city.segment_idx(w["segment_id"].as_str().expect("segment_id")).expect("known segment").0;
    let f = |k: &str| w[k].as_f64().expect("number").to_bits();
    let n = |k: &str| w[k].as_i64().expect("integer");
    Some((segment, n("window_start_ms"), n("sample_count") as u32, f("mean_speed_kmh"), f("median_speed_kmh")))
}
