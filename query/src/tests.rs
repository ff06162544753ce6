//! SQL over the live tables sees exactly what the pipeline published.

use super::*;
use egret_model::{CityModel, SegmentIdx};
use egret_pipeline::{BatchOutput, SegmentWindow};

fn live() -> Arc<LiveState> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
    Arc::new(LiveState::new(Arc::new(CityModel::load(&dir).expect("city data"))))
}

fn window(segment: u32, start: i64, mean: f64, is_final: bool) -> SegmentWindow {
    SegmentWindow {
        segment: SegmentIdx(segment),
        window_start_ms: start,
        window_end_ms: start + 60_000,
        mean_speed_kmh: mean,
        median_speed_kmh: mean,
        travel_time_s: 60.0,
        sample_count: 4,
        median_5min_kmh: Some(mean),
        is_final,
        revision: 0,
    }
}

#[tokio::test]
async fn live_and_history_tables_answer_sql() {
    let live = live();
    live.apply(&BatchOutput {
        windows: vec![window(0, 0, 40.0, true), window(0, 60_000, 50.0, false), window(1, 0, 30.0, true)],
        watermark_ms: 70_000,
        ..Default::default()
    });
    let engine = QueryEngine::new(live.clone());
    let n_segments = live.city().segments.len();
    let rows = engine.sql("SELECT count(*) AS n, count(mean_speed_kmh) AS with_data FROM segments").await.expect("sql");
    let batch = &rows[0];
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(0), n_segments as i64);
    assert_eq!(batch.column(1).as_primitive::<Int64Type>().value(0), 2);
    let history = engine.sql("SELECT sum(mean_speed_kmh) FROM segment_windows").await.expect("sql");
    use datafusion::arrow::datatypes::Float64Type;
    assert_eq!(history[0].column(0).as_primitive::<Float64Type>().value(0), 70.0, "only final windows are history");
    let newest = engine.sql("SELECT mean_speed_kmh, is_final FROM segments WHERE mean_speed_kmh IS NOT NULL ORDER BY mean_speed_kmh").await.expect("sql");
    assert_eq!(newest[0].column(0).as_primitive::<Float64Type>().values().to_vec(), vec![30.0, 50.0], "the newer provisional window replaced the final one");
}

#[tokio::test]
async fn bad_sql_is_the_callers_fault() {
    let engine = QueryEngine::new(live());
    assert!(matches!(engine.sql("SELEC nonsense").await, Err(QueryError::Plan(_))));
    assert!(matches!(engine.sql("SELECT * FROM no_such_table").await, Err(QueryError::Plan(_))));
}
