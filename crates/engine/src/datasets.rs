//! Datasets in the lake: what a load of files into a dataset needs before it starts.
//!
//! [`prepare`] settles the dataset a load writes: the lake's table when it exists (it holds the columns
//! added since the config was written), else the `[[datasets]]` declaration, else the columns inferred
//! from the first file (sampled as in `shopstream_ingest::dataset::infer`). Each file is then sampled for
//! columns the dataset lacks: they are added to the table as nullable columns in one Delta commit (schema
//! evolution), before any row is written. A `date` column whose values in a later file have times is
//! widened to `timestamp`, the one widening Delta's type widening allows among shopstream's types: delta-rs
//! 1.1 has no type-widening operation, so the table is rewritten in place in one commit that keeps its
//! `txn` entries ([`crate::migrate`]), and earlier rows read as midnight. Any other column whose values do
//! not fit is reported, and its rows become dead letters naming the column. Inference takes the widest type
//! of each family (bigint, decimal(18,4), double, timestamp), so values that Delta would widen a column for
//! (int → long, float → double) fit from the start. Nothing is ever cast to text and no column is dropped.

use std::path::PathBuf;
use std::sync::Arc;

use shopstream_ingest::dataset::infer::{Inferred, infer_columns};
use shopstream_ingest::dataset::{Column, ColumnType, RESERVED_NAMES, is_identifier};
use shopstream_ingest::read::{SAMPLE_ROWS, sample};
use shopstream_ingest::{Dataset, ReadOptions};

use crate::error::{EngineError, Result};
use crate::lake::{Lake, Table};
use crate::sink::WriteOptions;

/// What [`prepare`] found and did.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The dataset to load into (with any columns just added).
    pub dataset: Arc<Dataset>,
    /// The columns inferred from the first file, when the dataset is new.
    pub inferred: Option<Vec<Inferred>>,
    /// Columns added by schema evolution (or to be added, on a dry run).
    pub added: Vec<Column>,
    /// Columns widened from `date` to `timestamp` (or to be, on a dry run).
    pub widened: Vec<Column>,
    /// Columns whose values in a file do not fit the table's type.
    pub mismatches: Vec<Mismatch>,
}

/// A file's values of a column are of a type the table's column cannot hold.
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// The file.
    pub file: PathBuf,
    /// The column.
    pub column: String,
    /// The table's type.
    pub table: ColumnType,
    /// The type the file's values have.
    pub file_type: ColumnType,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (t, v) = (self.table.sql_name(), self.file_type.sql_name());
        let why = format!("Delta's type widening does not allow {t} → {v}");
        write!(
            f,
            "{}: column `{}` is {t} in the table but {v} in the file; rows whose value is not a {t} \
             go to dead_letters ({why})",
            self.file.display(),
            self.column
        )
    }
}

/// Whether values inferred as `file` load into a column of type `table` without loss.
fn fits(file: ColumnType, table: ColumnType) -> bool {
    use ColumnType::*;
    file == table
        || table == Text
        || matches!(
            (file, table),
            (Integer, Decimal | Double) | (Decimal, Double) | (Date, Timestamp)
        )
}

/// Settles the dataset `name` for a load of `files`; see the module documentation. With `dry_run`
/// nothing is created or changed in the lake.
pub async fn prepare(
    lake: &Lake,
    name: &str,
    declared: Option<Arc<Dataset>>,
    files: &[PathBuf],
    read: &ReadOptions,
    write: &WriteOptions,
    dry_run: bool,
) -> Result<Prepared> {
    let existing = lake.dataset(name).await?;
    let exists = existing.is_some();
    let mut prepared = Prepared {
        dataset: existing.or(declared).unwrap_or_else(|| empty(name)),
        inferred: None,
        added: Vec::new(),
        widened: Vec::new(),
        mismatches: Vec::new(),
    };
    if prepared.dataset.is_orders() {
        return Ok(prepared);
    }
    check_name(name)?;
    let mut options = read.clone();
    options.dataset = prepared.dataset.clone();
    for file in files {
        // A file that cannot be sampled is refused by the load itself, with its reason.
        let Ok(s) = sample(file, &options, SAMPLE_ROWS) else {
            continue;
        };
        let mut inferred = infer_columns(&s.columns, &s.rows);
        // A source column a mapping maps is the field it is mapped to, not a column of its own.
        if let Some(m) = options.mapping_for(file) {
            for c in &mut inferred {
                if let Some(field) = m.field_of(&c.source) {
                    c.name = field.to_string();
                }
            }
        }
        if prepared.dataset.columns.is_empty() {
            prepared.inferred = Some(inferred.clone());
        }
        evolve(&mut prepared, file, &inferred);
    }
    if prepared.dataset.columns.is_empty() {
        return Err(EngineError::Dataset {
            dataset: name.into(),
            reason: "no readable file to infer its columns from".into(),
        });
    }
    if !dry_run {
        // One writer at a time changes a table's schema (released before the load takes it again).
        let _lock = crate::load::lock_lake(lake, ".writer.lock")?;
        let table = Table::of_dataset(&prepared.dataset);
        if exists && !prepared.widened.is_empty() {
            lake.allow_timestamps(&table).await?;
            crate::migrate::rewrite_in_place(lake, &table, write).await?;
        } else if exists && !prepared.added.is_empty() {
            lake.allow_timestamps(&table).await?;
            add_columns(lake, &table, &prepared.added).await?;
        } else if !exists {
            lake.open_or_create(&table).await?;
        }
    }
    Ok(prepared)
}

fn empty(name: &str) -> Arc<Dataset> {
    Arc::new(Dataset {
        name: name.into(),
        columns: Vec::new(),
        key: Vec::new(),
        partition: None,
        evolved: 0,
    })
}

fn check_name(name: &str) -> Result<()> {
    let reason = if !is_identifier(name) {
        "a dataset name is lowercase letters, digits and `_`, starting with a letter"
    } else if RESERVED_NAMES.contains(&name) {
        "a built-in table's name; choose another"
    } else {
        return Ok(());
    };
    Err(EngineError::Dataset {
        dataset: name.into(),
        reason: reason.into(),
    })
}

/// Adds the file's columns the dataset lacks and records the ones whose type does not fit.
fn evolve(prepared: &mut Prepared, file: &std::path::Path, inferred: &[Inferred]) {
    let fresh = prepared.dataset.columns.is_empty();
    let mut dataset = (*prepared.dataset).clone();
    for c in inferred {
        let existing = dataset.columns.iter_mut().find(|d| d.name == c.name);
        match existing {
            Some(d) if d.ty == ColumnType::Date && c.ty == ColumnType::Timestamp => {
                d.ty = ColumnType::Timestamp;
                d.format = widened_format(d.format.as_deref(), c);
                prepared.widened.push(d.clone());
            }
            Some(d) if !fits(c.ty, d.ty) => prepared.mismatches.push(Mismatch {
                file: file.to_path_buf(),
                column: c.name.clone(),
                table: d.ty,
                file_type: c.ty,
            }),
            Some(_) => {}
            None => {
                let column = Column {
                    name: c.name.clone(),
                    ty: c.ty,
                    required: false,
                    format: c.date_format.clone(),
                };
                if !fresh {
                    prepared.added.push(column.clone());
                    dataset.evolved += 1;
                }
                dataset.columns.push(column);
            }
        }
    }
    prepared.dataset = Arc::new(dataset);
}

/// The timestamp format of a date column widened by `file`'s values: the one among those the values fit
/// whose date part is the column's date format (`%d/%m/%Y %H:%M` for `%d/%m/%Y`), so day-first stays
/// day-first; else the first that fits.
fn widened_format(date_format: Option<&str>, file: &Inferred) -> Option<String> {
    date_format
        .and_then(|d| file.date_formats.iter().find(|f| f.starts_with(d)))
        .or(file.date_format.as_ref())
        .cloned()
}

/// Adds `columns` (nullable) to the table in one Delta commit.
async fn add_columns(lake: &Lake, table: &Table, columns: &[Column]) -> Result<()> {
    let Some(delta) = lake.open(table).await? else {
        return Ok(());
    };
    let arrow: Vec<arrow::datatypes::Field> = columns.iter().map(Column::field).collect();
    let fields = crate::lake::kernel_fields(table, arrow.iter())?;
    delta
        .add_columns()
        .with_fields(fields)
        .await
        .map_err(EngineError::delta(table.name()))?;
    Ok(())
}
