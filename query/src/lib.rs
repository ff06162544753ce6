//! The query layer: read-only DataFusion SQL over the live state and its Parquet
//! history, for police and operators (`POST /api/v1/sql`). Typed API endpoints read
//! the live state directly and never plan SQL.
//!
//! Each query gets a fresh session in which only the tables it names are built, each
//! from one read of its part of the live state: a query never sees a table change
//! under it, and `SELECT … FROM segments` does not pay for serialising a hundred
//! thousand tickets. Within a table, only the columns the plan reads are built where
//! that pays (`violations`: its evidence JSON). History tables list the archive's Parquet files at planning
//! time, so files written a moment ago are already visible.

pub mod history;
mod json;
mod tables;

pub use history::{HistoryArchive, HistoryError, hour_partition};
pub use tables::{
    LIVE_TABLES, arrivals_batch, buses_batch, headways_batch, incidents_batch, parking_batch, possible_hits_batch, readers_batch,
    segment_windows_batch, segments_batch, violations_batch,
};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use egret_pipeline::LiveState;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

/// At most this many rows are returned by `sql_json`; more is `truncated: true`.
pub const MAX_ROWS: usize = 10_000;
/// Memory all SQL queries of one engine may hold at once (sorts, joins,
/// aggregations); beyond it they spill or fail rather than starve the pipeline.
pub const SQL_MEMORY_LIMIT: usize = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL is wrong or not allowed: the caller's fault.
    #[error("{0}")]
    Plan(String),
    /// Running it failed.
    #[error("query failed: {0}")]
    Execution(String),
}

/// The rows of a query with a row cap.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// Rows in `batches` (never more than the cap).
    pub row_count: usize,
    /// The query had more rows than the cap; the rest were not computed.
    pub truncated: bool,
}

/// Runs read-only SQL over the live tables and, given an archive directory, the
/// `history_*` tables.
#[derive(Clone)]
pub struct QueryEngine {
    live: Arc<LiveState>,
    history_dir: Option<PathBuf>,
    /// Shared by every query's session, so the memory limit is for all of them.
    runtime: Arc<RuntimeEnv>,
}

impl QueryEngine {
    /// `history_dir` is the directory a `HistoryArchive` writes to; without it the
    /// history tables do not exist.
    pub fn new(live: Arc<LiveState>, history_dir: Option<PathBuf>) -> Self {
        // No cached directory listings: the archive adds files every few seconds and
        // the next query must see them. (File metadata may be cached: files never change.)
        let caches = CacheManagerConfig::default().with_list_files_cache_limit(0);
        // Only an invalid setting could fail here; the default runtime still answers.
        let runtime =
            RuntimeEnvBuilder::new().with_memory_limit(SQL_MEMORY_LIMIT, 1.0).with_cache_manager(caches).build_arc().unwrap_or_default();
        QueryEngine { live, history_dir, runtime }
    }

    /// Every table a query may name, with its columns, for documentation.
    pub fn tables(&self) -> Vec<(String, SchemaRef)> {
        let mut out: Vec<(String, SchemaRef)> =
            LIVE_TABLES.iter().filter_map(|name| tables::build(name, &self.live, true).map(|b| ((*name).to_owned(), b.schema()))).collect();
        if let Some(dir) = &self.history_dir {
            for (name, _) in history::HISTORY_TABLES {
                if let Some(Ok((_, schema))) = history::history_table(name, dir, &self.live) {
                    out.push((name.to_owned(), schema));
                }
            }
        }
        out
    }

    /// All rows of a read-only query, uncapped: for trusted callers in this process.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        self.plan(sql).await?.collect().await.map_err(execution)
    }

    /// At most `max_rows` rows of a read-only query; the plan stops after one more.
    pub async fn sql_limited(&self, sql: &str, max_rows: usize) -> Result<QueryResult, QueryError> {
        let df = self.plan(sql).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        // One row past the cap tells a full answer from a cut one. EXPLAIN and
        // DESCRIBE must stay the root of their plan; their few rows are cut below.
        let df = if matches!(df.logical_plan(), LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) | LogicalPlan::DescribeTable(_)) {
            df
        } else {
            df.limit(0, Some(max_rows.saturating_add(1))).map_err(plan)?
        };
        let mut batches = Vec::new();
        let mut row_count = 0;
        let mut truncated = false;
        for batch in df.collect().await.map_err(execution)? {
            let take = batch.num_rows().min(max_rows - row_count);
            if take < batch.num_rows() {
                truncated = true;
            }
            if take > 0 {
                batches.push(batch.slice(0, take));
                row_count += take;
            }
        }
        Ok(QueryResult { schema, batches, row_count, truncated })
    }

    /// A read-only query as the JSON document `POST /api/v1/sql` returns:
    /// `{"columns":[{"name","type"}],"rows":[{column: value}],"row_count","truncated"}`,
    /// at most `MAX_ROWS` rows.
    pub async fn sql_json(&self, sql: &str) -> Result<serde_json::Value, QueryError> {
        let result = self.sql_limited(sql, MAX_ROWS).await?;
        json::to_json(&result.schema, &result.batches, result.truncated).map_err(|e| QueryError::Execution(e.to_string()))
    }

    /// Parses `sql`, builds the tables it names, plans it and refuses anything but
    /// a query (DDL, DML including COPY, and statements such as SET).
    async fn plan(&self, sql: &str) -> Result<DataFrame, QueryError> {
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), self.runtime.clone());
        let state = ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(sql, &dialect).map_err(plan)?;
        let mut registered = HashSet::new();
        for reference in state.resolve_table_references(&statement).map_err(plan)? {
            let name = reference.table().to_owned();
            if registered.insert(name.clone()) {
                self.register(&ctx, &name)?;
            }
        }
        // The state again: the one above predates the registrations.
        let logical = ctx.state().statement_to_plan(statement).await.map_err(plan)?;
        let read_only = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
        read_only
            .verify_plan(&logical)
            .map_err(|e| QueryError::Plan(format!("only read-only queries are allowed ({})", strip_context(&e))))?;
        ctx.execute_logical_plan(logical).await.map_err(plan)
    }

    /// Registers the table `name` if it is one of ours; other names are left for
    /// the planner to report as unknown (CTEs, typos).
    fn register(&self, ctx: &SessionContext, name: &str) -> Result<(), QueryError> {
        if let Some(table) = tables::provider(name, &self.live) {
            ctx.register_table(name, Arc::new(table)).map_err(execution)?;
        } else if let Some(dir) = &self.history_dir
            && let Some(table) = history::history_table(name, dir, &self.live)
        {
            let (provider, _) = table.map_err(execution)?;
            ctx.register_table(name, provider).map_err(execution)?;
        }
        Ok(())
    }
}

/// DataFusion's message without its "Error during planning: " prefix.
fn strip_context(e: &DataFusionError) -> String {
    match e {
        DataFusionError::Plan(msg) => msg.clone(),
        other => other.to_string(),
    }
}

fn plan(e: DataFusionError) -> QueryError {
    QueryError::Plan(e.to_string())
}

fn execution(e: DataFusionError) -> QueryError {
    QueryError::Execution(e.to_string())
}

#[cfg(test)]
mod tests;
