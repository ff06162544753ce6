//! Live tables as DataFusion table providers that build only the columns a plan
//! reads.
//!
//! DataFusion tells `scan` which columns the plan needs. `SELECT kind, count(*) FROM
//! violations GROUP BY kind` then builds one text column, not ten, and never renders
//! a hundred thousand tickets' evidence as JSON. The rows are read from the live
//! state once, when the query registers the table, so every scan of one query (a
//! self-join, a subquery) sees the same rows.

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::project_schema;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use std::sync::Arc;

/// Builds the batch of a projection: the columns at those indices, in that order
/// (all columns for `None`).
type BuildProjection = dyn Fn(Option<&[usize]>) -> RecordBatch + Send + Sync;

/// A live table read once, whose columns are built per scan as the plan asks.
pub(crate) struct ProjectedTable {
    schema: SchemaRef,
    build: Box<BuildProjection>,
}

impl ProjectedTable {
    /// `schema` is the table's full schema; `build` must give its columns.
    pub(crate) fn new(schema: SchemaRef, build: impl Fn(Option<&[usize]>) -> RecordBatch + Send + Sync + 'static) -> Self {
        ProjectedTable { schema, build: Box::new(build) }
    }

    /// A table already built in full: a scan only selects its columns.
    pub(crate) fn built(batch: RecordBatch) -> Self {
        let schema = batch.schema();
        ProjectedTable::new(schema, move |projection| match projection {
            // The indices come from the plan of this very schema.
            Some(indices) => batch.project(indices).unwrap_or_else(|e| unreachable!("projection outside the table: {e}")),
            None => batch.clone(),
        })
    }
}

impl std::fmt::Debug for ProjectedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectedTable").field("schema", &self.schema).finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TableProvider for ProjectedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = project_schema(&self.schema, projection)?;
        // The table's own schema object, so the plan sees exactly the fields it planned.
        let batch = (self.build)(projection.map(Vec::as_slice)).with_schema(Arc::clone(&schema))?;
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None)?)
    }
}

/// The columns of a table, each built only if a projection asks for it.
pub(crate) struct LazyColumns<'a> {
    rows: usize,
    columns: Vec<(&'static str, Box<dyn FnOnce() -> ArrayRef + 'a>)>,
}

impl<'a> LazyColumns<'a> {
    pub(crate) fn new(rows: usize) -> Self {
        LazyColumns { rows, columns: Vec::new() }
    }

    pub(crate) fn column(mut self, name: &'static str, build: impl FnOnce() -> ArrayRef + 'a) -> Self {
        self.columns.push((name, Box::new(build)));
        self
    }

    /// The columns at `projection`, in its order (all for `None`); a batch with no
    /// columns still has the table's row count, which `count(*)` needs.
    pub(crate) fn build(self, projection: Option<&[usize]>) -> RecordBatch {
        let wanted: Vec<usize> = projection.map_or_else(|| (0..self.columns.len()).collect(), <[usize]>::to_vec);
        let mut slots: Vec<_> = self.columns.into_iter().map(Some).collect();
        let columns: Vec<(&str, ArrayRef)> =
            wanted.iter().filter_map(|&i| slots.get_mut(i).and_then(Option::take)).map(|(name, build)| (name, build())).collect();
        if columns.is_empty() {
            let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
            return RecordBatch::try_new_with_options(Arc::new(Schema::empty()), Vec::new(), &options)
                .unwrap_or_else(|e| unreachable!("an empty batch with a row count: {e}"));
        }
        super::batch(columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::ints;

    #[test]
    fn only_the_projected_columns_are_built() {
        let rows = [1_i64, 2, 3];
        let columns = || {
            LazyColumns::new(rows.len())
                .column("a", || ints(&rows, |r| Some(*r)))
                .column("never_read", || panic!("a column the projection leaves out was built"))
                .column("c", || ints(&rows, |r| Some(r * 10)))
        };
        let batch = columns().build(Some(&[2, 0]));
        let names: Vec<_> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["c", "a"], "in the projection's order");
        assert_eq!(batch.num_rows(), 3);
        let none = columns().build(Some(&[]));
        assert_eq!((none.num_columns(), none.num_rows()), (0, 3), "no columns, still the row count");
    }
}
