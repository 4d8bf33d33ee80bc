//! Derived fields on DataFusion: the engine's [`Expressions`] for mappings' `[ingest.mappings.expressions]`.
//!
//! Each expression is parsed once per file against the typed source columns (plus `_file` and `_line`),
//! with DataFusion's type coercion and function library (`CASE`, `||`, `to_timestamp`, `round`, …), and
//! evaluated vectorized over each batch. DataFusion fails a whole batch on one bad value (a division by
//! zero, a date `to_timestamp` cannot read); only then is that expression evaluated row by row, to find the
//! rows that fail: they become dead letters naming the field and DataFusion's error, the others load.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use shopstream_ingest::derive::{Derived, Evaluate, ExpressionError, Expressions};

/// Expressions evaluated by DataFusion.
#[derive(Debug, Default)]
pub struct SqlExpressions;

/// The engine's expression evaluator, for [`shopstream_ingest::ReadOptions::expressions`].
pub fn sql() -> Arc<dyn Expressions> {
    Arc::new(SqlExpressions)
}

impl Expressions for SqlExpressions {
    fn prepare(
        &self,
        expressions: &[(String, String)],
        schema: SchemaRef,
    ) -> Result<Box<dyn Evaluate>, ExpressionError> {
        let ctx = SessionContext::new();
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let mut compiled = Vec::with_capacity(expressions.len());
        for (field, sql) in expressions {
            let failed = |e: datafusion::error::DataFusionError| ExpressionError {
                field: field.clone(),
                sql: sql.clone(),
                reason: e.to_string(),
                columns: columns.join(", "),
            };
            let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(failed)?;
            let expr = ctx.parse_sql_expr(sql, &df_schema).map_err(failed)?;
            compiled.push(ctx.create_physical_expr(expr, &df_schema).map_err(failed)?);
        }
        Ok(Box::new(Compiled { exprs: compiled }))
    }
}

/// A file's compiled expressions.
struct Compiled {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
}

impl Evaluate for Compiled {
    fn evaluate(&mut self, batch: &RecordBatch) -> Vec<Derived> {
        self.exprs.iter().map(|e| evaluate(e, batch)).collect()
    }
}

/// One expression over a batch; row by row only when the batch fails.
fn evaluate(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Derived {
    if let Ok(values) = as_text(expr, batch) {
        return Derived {
            values,
            errors: Vec::new(),
        };
    }
    let mut parts = Vec::with_capacity(batch.num_rows());
    let mut errors = Vec::new();
    for row in 0..batch.num_rows() {
        match as_text(expr, &batch.slice(row, 1)) {
            Ok(v) => parts.push(v),
            Err(e) => {
                errors.push((row, e));
                parts.push(new_null_array(&DataType::Utf8, 1));
            }
        }
    }
    let refs: Vec<&dyn arrow::array::Array> = parts.iter().map(|a| a.as_ref()).collect();
    let values = arrow::compute::concat(&refs)
        .unwrap_or_else(|_| new_null_array(&DataType::Utf8, batch.num_rows()));
    Derived { values, errors }
}

/// The expression's values over `batch`, as text.
fn as_text(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<ArrayRef, String> {
    let value = expr.evaluate(batch).map_err(|e| e.to_string())?;
    let array = value
        .into_array(batch.num_rows())
        .map_err(|e| e.to_string())?;
    arrow::compute::cast(&array, &DataType::Utf8).map_err(|e| e.to_string())
}
