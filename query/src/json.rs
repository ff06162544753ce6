//! Query results as JSON for the HTTP layer:
//! `{"columns":[{"name","type"}],"rows":[{column: value}],"row_count","truncated"}`.
//!
//! DataFusion's arrow is built without its JSON writer, so values are converted
//! here: integers, floats and booleans become JSON numbers and booleans, text stays
//! text, and any other type (timestamps, lists, decimals…) becomes the text arrow
//! renders for it. Non-finite floats become null, as JSON has no NaN.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{can_cast_types, cast};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef, UInt64Type};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value, json};

/// The result document; `columns` keeps the query's column order (row objects do
/// not). Repeated column names get `_2`, `_3`… so no value is lost in a row object.
pub fn to_json(schema: &SchemaRef, batches: &[RecordBatch], truncated: bool) -> Result<Value, ArrowError> {
    let mut names: Vec<String> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let mut name = field.name().clone();
        let mut n = 1;
        while names.contains(&name) {
            n += 1;
            name = format!("{}_{n}", field.name());
        }
        names.push(name);
    }
    let columns: Vec<Value> = names.iter().zip(schema.fields()).map(|(name, f)| json!({"name": name, "type": f.data_type().to_string()})).collect();
    let mut rows = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in batches {
        let cols = batch.columns().iter().map(Column::new).collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let mut object = Map::new();
            for (name, col) in names.iter().zip(&cols) {
                object.insert(name.clone(), col.value(row));
            }
            rows.push(Value::Object(object));
        }
    }
    Ok(json!({"columns": columns, "row_count": rows.len(), "rows": rows, "truncated": truncated}))
}

/// A column cast once to the JSON kind it maps to.
enum Column {
    Bool(ArrayRef),
    Int(ArrayRef),
    UInt(ArrayRef),
    Float(ArrayRef),
    Text(ArrayRef),
    Other(ArrayRef),
}

impl Column {
    fn new(array: &ArrayRef) -> Result<Self, ArrowError> {
        use DataType::*;
        Ok(match array.data_type() {
            Boolean => Column::Bool(array.clone()),
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 => Column::Int(cast(array, &Int64)?),
            UInt64 => Column::UInt(array.clone()),
            Float16 | Float32 | Float64 => Column::Float(cast(array, &Float64)?),
            Utf8 | LargeUtf8 | Utf8View => Column::Text(cast(array, &Utf8)?),
            Dictionary(_, v) if matches!(v.as_ref(), Utf8 | LargeUtf8 | Utf8View) => Column::Text(cast(array, &Utf8)?),
            // Timestamps, dates, decimals…: arrow's own text for them.
            other if can_cast_types(other, &Utf8) => Column::Text(cast(array, &Utf8)?),
            _ => Column::Other(array.clone()),
        })
    }

    fn value(&self, row: usize) -> Value {
        let array = match self {
            Column::Bool(a) | Column::Int(a) | Column::UInt(a) | Column::Float(a) | Column::Text(a) | Column::Other(a) => a,
        };
        if array.is_null(row) {
            return Value::Null;
        }
        match self {
            Column::Bool(a) => Value::Bool(a.as_boolean().value(row)),
            Column::Int(a) => Value::from(a.as_primitive::<Int64Type>().value(row)),
            Column::UInt(a) => Value::from(a.as_primitive::<UInt64Type>().value(row)),
            Column::Float(a) => serde_json::Number::from_f64(a.as_primitive::<Float64Type>().value(row)).map_or(Value::Null, Value::Number),
            Column::Text(a) => Value::from(a.as_string::<i32>().value(row)),
            // Types arrow cannot cast to text (structs, maps…): its display, per value.
            Column::Other(a) => ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default())
                .map_or(Value::Null, |f| Value::from(f.value(row).to_string())),
        }
    }
}
