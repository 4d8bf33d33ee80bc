//! Derived fields: a mapping may set a field to a SQL expression over the source's columns and the
//! pseudo-columns `_file` and `_line` (`[ingest.mappings.expressions]`).
//!
//! This crate has no SQL engine: it stages a batch of source rows, types them as inference found them in the
//! file (numbers as numbers, dates as dates: [`crate::dataset::infer`]; columns named in snake_case, so
//! `Line Total` is `line_total`), and hands that Arrow batch to an [`Expressions`] implementation (the
//! engine's, on DataFusion), which evaluates every expression vectorized. Each derived value comes back as
//! text and goes through the field's usual parsing, so a derived field is checked like any other. A row
//! whose source value does not have the column's inferred type, or whose expression fails, is one dead
//! letter naming the column or field and the reason; the rest of the batch loads.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};

use crate::batch::Provenance;
use crate::dataset::infer::Inferred;
use crate::dataset::rows::DatasetRows;
use crate::dataset::{Column, Dataset};

/// What an expression produced for a batch: a text value per row (`None`: NULL), and the rows it failed
/// on, with the reason.
#[derive(Debug)]
pub struct Derived {
    /// The values as text, one per row of the batch.
    pub values: ArrayRef,
    /// Rows (indices into the batch) the expression failed on, with the error.
    pub errors: Vec<(usize, String)>,
}

/// An expression that does not compile against a file's columns (bad SQL, an unknown column or function).
#[derive(Debug, thiserror::Error)]
#[error("expression for `{field}` (`{sql}`): {reason} (columns: {columns})")]
pub struct ExpressionError {
    /// The field it computes.
    pub field: String,
    /// The SQL.
    pub sql: String,
    /// What the SQL engine said.
    pub reason: String,
    /// The columns it can use.
    pub columns: String,
}

/// Compiles expressions against a file's typed source columns ([`Expressions::prepare`]).
pub trait Expressions: Send + Sync + std::fmt::Debug {
    /// Compiles `expressions` (target field, SQL) for batches of `schema` (the source columns, `_file`,
    /// `_line`); an error (bad SQL, an unknown column) says which expression and why.
    fn prepare(
        &self,
        expressions: &[(String, String)],
        schema: arrow::datatypes::SchemaRef,
    ) -> Result<Box<dyn Evaluate>, ExpressionError>;
}

/// Expressions compiled for one file.
pub trait Evaluate: Send {
    /// Evaluates every expression over `batch`, in the order they were given.
    fn evaluate(&mut self, batch: &RecordBatch) -> Vec<Derived>;
}

/// The typed source dataset of a file: its inferred columns, named in snake_case.
pub fn source_dataset(inferred: &[Inferred]) -> Arc<Dataset> {
    Arc::new(Dataset {
        name: "_source".into(),
        columns: inferred
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                ty: c.ty,
                required: false,
                format: c.date_format.clone(),
            })
            .collect(),
        key: Vec::new(),
        partition: None,
        evolved: 0,
    })
}

/// Rows held back until their derived fields are evaluated, with what evaluating them needs.
pub(crate) struct Stage {
    evaluate: Box<dyn Evaluate>,
    /// The source columns' mapping (types and formats as inferred), for typing staged rows.
    source: crate::mapping::ResolvedMapping,
    /// The file's column names in the order of [`source`](Self::source)'s dataset.
    source_names: Vec<String>,
    pub(crate) rows: Vec<(u64, Vec<String>)>,
}

/// One staged row after evaluation: its line, its values (with the derived ones appended when it did not
/// fail), and why it failed (column or field, reason).
pub(crate) type Evaluated = (u64, Vec<String>, Option<(String, String)>);

impl Stage {
    pub(crate) fn new(
        evaluate: Box<dyn Evaluate>,
        source: crate::mapping::ResolvedMapping,
        source_names: Vec<String>,
    ) -> Stage {
        Stage {
            evaluate,
            source,
            source_names,
            rows: Vec::new(),
        }
    }

    /// Evaluates the staged rows, read under a mapping whose columns are `columns`, and empties the stage.
    pub(crate) fn flush(
        &mut self,
        columns: &[String],
        targets: &[String],
        provenance: &Provenance,
    ) -> Vec<Evaluated> {
        let rows = std::mem::take(&mut self.rows);
        let position: Vec<Option<usize>> = self
            .source_names
            .iter()
            .map(|n| columns.iter().position(|c| c == n))
            .collect();
        let mut typed = DatasetRows::new(self.source.dataset.clone());
        let mut out: Vec<Evaluated> = Vec::with_capacity(rows.len());
        let mut kept = Vec::new();
        for (line, row) in rows {
            let ordered: Vec<&str> = position
                .iter()
                .map(|p| p.and_then(|i| row.get(i)).map_or("", String::as_str))
                .collect();
            let failed = typed
                .push(&self.source, &ordered, provenance, line)
                .err()
                .map(|(column, reason)| {
                    let why = format!("{reason} (the expressions read this column as inferred)");
                    (column, why)
                });
            if failed.is_none() {
                kept.push(out.len());
            }
            out.push((line, row, failed));
        }
        if kept.is_empty() {
            return out;
        }
        let batch = with_pseudo_columns(typed.take());
        let derived = self.evaluate.evaluate(&batch);
        for (k, d) in derived.iter().enumerate() {
            for (row, error) in &d.errors {
                let (_, _, failed) = &mut out[kept[*row]];
                if failed.is_none() {
                    *failed = Some((targets[k].clone(), format!("expression failed: {error}")));
                }
            }
        }
        for (r, &i) in kept.iter().enumerate() {
            if let (_, values, None) = &mut out[i] {
                for d in &derived {
                    let text = d.values.as_string_opt::<i32>();
                    let v = text
                        .filter(|t| !t.is_null(r))
                        .map_or(String::new(), |t| t.value(r).to_string());
                    values.push(v);
                }
            }
        }
        out
    }
}

/// The typed source batch with its provenance columns as `_file` and `_line` (the rest dropped).
fn with_pseudo_columns(batch: RecordBatch) -> RecordBatch {
    let schema = batch.schema();
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        let name = match f.name().as_str() {
            "source_file" => "_file",
            "source_line" => "_line",
            "source_sheet" | "load_id" => continue,
            other => other,
        };
        fields.push(f.as_ref().clone().with_name(name));
        columns.push(c.clone());
    }
    RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns)
        .expect("same columns, renamed")
}

/// The schema [`Stage`] batches have for a source dataset: what [`Expressions::prepare`] compiles against.
pub fn stage_schema(source: &Arc<Dataset>) -> arrow::datatypes::SchemaRef {
    let empty = DatasetRows::new(source.clone()).take();
    with_pseudo_columns(empty).schema()
}
