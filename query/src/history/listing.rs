//! The history tables as DataFusion sees them: a `ListingTable` over each table's
//! Parquet files with the hive partition column `hour`, and the live table's
//! columns as its schema (given, not inferred, so an empty directory is a valid
//! empty table and a query never opens files just to plan).

use super::{HISTORY_TABLES, PARTITION_COLUMN};
use crate::tables;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use egret_pipeline::LiveState;
use std::path::Path;
use std::sync::Arc;

/// A history table and its full schema (file columns then `hour`).
pub(crate) type HistoryTable = (Arc<dyn TableProvider>, SchemaRef);

/// The table `name` (`history_*`) over the archive in `dir`; `None` for a name
/// that is not a history table.
pub(crate) fn history_table(name: &str, dir: &Path, live: &LiveState) -> Option<Result<HistoryTable, DataFusionError>> {
    let (_, sub) = HISTORY_TABLES.iter().find(|(table, _)| *table == name)?;
    let live_name = name.trim_start_matches("history_");
    let file_schema = tables::build(live_name, live, true)?.schema();
    Some(provider(&dir.join(sub), file_schema))
}

fn provider(path: &Path, file_schema: SchemaRef) -> Result<HistoryTable, DataFusionError> {
    let partition = (PARTITION_COLUMN.to_owned(), DataType::Utf8);
    let mut fields: Vec<Field> = file_schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(&partition.0, partition.1.clone(), true));
    let table_schema = Arc::new(Schema::new(fields));
    if !path.is_dir() {
        // Nothing archived here yet (or no archive at all): an empty table, same columns.
        let empty = MemTable::try_new(table_schema.clone(), vec![vec![]])?;
        return Ok((Arc::new(empty), table_schema));
    }
    // The trailing slash makes it a directory even if it vanishes before the scan.
    let url = ListingTableUrl::parse(format!("{}/", path.display()))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![partition]);
    let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(file_schema);
    Ok((Arc::new(ListingTable::try_new(config)?), table_schema))
}
