//! The query layer: live state as Arrow record batches, registered in DataFusion.
//!
//! Every SQL query sees one consistent snapshot: the tables are built from a single
//! read of the live state and registered in a fresh session, so a query never mixes
//! two moments. Typed API endpoints read the live state directly and plan no SQL.

mod tables;

pub use tables::{segment_windows_batch, segments_batch};

use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use egret_pipeline::LiveState;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL is wrong: the caller's fault.
    #[error("{0}")]
    Plan(String),
    /// Running it failed.
    #[error("query failed: {0}")]
    Execution(String),
}

/// Runs SQL over the live tables `segments` and `segment_windows`.
#[derive(Clone)]
pub struct QueryEngine {
    live: Arc<LiveState>,
}

impl QueryEngine {
    pub fn new(live: Arc<LiveState>) -> Self {
        QueryEngine { live }
    }

    /// A session with the current snapshot registered.
    pub fn session(&self) -> Result<SessionContext, QueryError> {
        let ctx = SessionContext::new();
        let snapshot = self.live.snapshot();
        let city = self.live.city();
        let segments = segments_batch(city, &snapshot);
        let windows = segment_windows_batch(city, &self.live.all_history());
        ctx.register_batch("segments", segments).map_err(|e| QueryError::Execution(e.to_string()))?;
        ctx.register_batch("segment_windows", windows).map_err(|e| QueryError::Execution(e.to_string()))?;
        Ok(ctx)
    }

    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let ctx = self.session()?;
        let df = ctx.sql(sql).await.map_err(|e| QueryError::Plan(e.to_string()))?;
        df.collect().await.map_err(|e| QueryError::Execution(e.to_string()))
    }
}

#[cfg(test)]
mod tests;
