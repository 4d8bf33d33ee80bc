//! `shopstream migrate`: brings the tables of a lake written by an older release to the current schemas.
//!
//! A table whose Delta schema differs from its [`Table::schema`] is rewritten **in place, in one Delta
//! commit**: every data file is read, its columns cast to the current types (money from `double` to
//! `decimal(18,4)`, see [`money_from_float`]), columns the table lacks added (null, or a value declared in
//! [`COLUMN_RULES`]), derived columns computed again ([`COLUMN_RULES`]), and the rows written to new zstd
//! Parquet files with the sinks' writer properties, keeping each file's partition values. The commit holds
//! the new `metaData` (schema), a `remove` for every old file and an `add` for every new one. It is a new
//! version of the same table, so everything else of its state stays: above all the application
//! transactions (`txn`) that make loads exactly-once, so files loaded before the migration are still
//! skipped after it. (A copy into a new table would lose them, and reloading would double rows.)
//!
//! Guarantees: a value that cannot be cast is an error naming table, file, column and value, and nothing is
//! committed (rows are never dropped). A crash or error before a table's commit leaves that table as it
//! was (the new files are unreferenced; the background cleanup deletes them). Tables are committed one
//! after the other, so a failure may leave some tables migrated and others not; rerunning `migrate`
//! finishes the job, and a table already current is left alone (no commit). The old files stay on disk for
//! time travel until a vacuum removes them.
//!
//! It runs only while nothing else uses the lake: it takes the server lock ([`SERVER_LOCK`], which
//! `serve` holds for its whole life), the writer lock of loads and the compaction lock, and refuses when
//! any is held. Conversely loads and the live path refuse a table with an old schema
//! ([`EngineError::NeedsMigration`]), so files of two schemas never meet in one table.
//!
//! Not handled: dropping or renaming columns, and partitioning changes (both are refused with the reason).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, RecordBatch, StringArray, new_null_array,
};
use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef};
use arrow::util::display::array_value_to_string;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, MetadataExt, StructType};
use deltalake::protocol::{DeltaOperation, SaveMode};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use shopstream_ingest::mapping::ExactDecimal;

use crate::error::{EngineError, Result};
use crate::lake::{Lake, Table};
use crate::load::{WriterLock, lock_lake};
use crate::sink::{TableSink, WriteOptions};

/// The lock file a server holds in its lake for its whole life (`serve`, `demo`); `migrate` refuses to run
/// while it is held.
pub const SERVER_LOCK: &str = ".server.lock";

/// Rows per batch read from an old data file.
const READ_BATCH_ROWS: usize = 64 * 1024;

/// How `migrate` fills one column of one table beyond casting.
#[derive(Debug, Clone, Copy)]
pub enum ColumnRule {
    /// A column the old table lacks gets this text in every row (a nullable column without a rule is
    /// filled with nulls; a non-nullable one needs a rule).
    FillText(&'static str),
    /// The column is computed again from the migrated row (it is derived, and its old values were
    /// computed with inexact types).
    Derive(fn(&RecordBatch) -> std::result::Result<ArrayRef, String>),
}

/// The declared rules, per table name and column. A later schema change adds its line here.
pub const COLUMN_RULES: &[(&str, &str, ColumnRule)] = &[
    // `quantity × unit_price` once the price is exact, as a load computes it: the old double product of
    // a price with more than four fraction digits is not the product of the rounded price.
    ("orders", "line_revenue", ColumnRule::Derive(line_revenue)),
    // Dead letters of lakes from before datasets were all meant for orders.
    ("dead_letters", "dataset", ColumnRule::FillText("orders")),
];

fn rule(kind: &Table, column: &str) -> Option<ColumnRule> {
    COLUMN_RULES
        .iter()
        .find(|(k, c, _)| *k == kind.name() && *c == column)
        .map(|(_, _, r)| *r)
}

/// What `migrate` did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableMigration {
    /// The table.
    pub table: String,
    /// The differences from the current schema (`unit_price: double → decimal(18,4)`); empty when current.
    pub changes: Vec<String>,
    /// Data files rewritten (removed).
    pub files_removed: usize,
    /// Files written in their place.
    pub files_added: usize,
    /// Rows rewritten.
    pub rows: u64,
    /// The version committed; `None` when the table was current (or does not exist yet).
    pub version: Option<u64>,
}

/// An exclusive hold on a local lake by a server, released on drop.
pub struct ServerLock(#[allow(dead_code)] WriterLock);

/// Takes the lake's [`SERVER_LOCK`] for a server's lifetime: `migrate` cannot run meanwhile, nor can a second
/// server. `None` for a lake that is not a local folder.
pub fn hold_for_server(lake: &Lake) -> Result<Option<ServerLock>> {
    Ok(take_server_lock(lake)?.map(ServerLock))
}

/// Takes the lake's [`SERVER_LOCK`] shared, for one of several workers on a shared backbone (Kafka): other
/// workers may hold it too; `migrate`, and a server on the embedded log, cannot run meanwhile.
pub fn hold_for_worker(lake: &Lake) -> Result<Option<ServerLock>> {
    let lock = crate::load::lock_lake_shared(lake, SERVER_LOCK).map_err(server_running)?;
    Ok(lock.map(ServerLock))
}

fn server_running(e: EngineError) -> EngineError {
    match e {
        EngineError::Busy(dir) => EngineError::ServerRunning(
            std::path::Path::new(&dir)
                .join(SERVER_LOCK)
                .display()
                .to_string(),
        ),
        e => e,
    }
}

fn take_server_lock(lake: &Lake) -> Result<Option<WriterLock>> {
    lock_lake(lake, SERVER_LOCK).map_err(server_running)
}

/// A Delta type as users read it (`double`, `decimal(18,4)`).
fn type_name(t: &deltalake::kernel::DataType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| format!("{t:?}"))
}

fn current_struct(kind: &Table) -> Result<StructType> {
    let schema = kind.schema();
    let fields = crate::lake::kernel_fields(kind, schema.fields().iter().map(|f| f.as_ref()))?;
    StructType::try_new(fields).map_err(|e| EngineError::Delta {
        table: kind.name().into(),
        source: deltalake::DeltaTableError::from(e),
    })
}

/// How `table`'s schema differs from `kind`'s current one, one line per column (empty: current).
pub fn schema_changes(kind: &Table, table: &DeltaTable) -> Result<Vec<String>> {
    let snapshot = table.snapshot().map_err(EngineError::delta(kind.name()))?;
    let old = snapshot.schema();
    let new = current_struct(kind)?;
    let mut changes = Vec::new();
    for field in new.fields() {
        match old.field(field.name()) {
            None => changes.push(format!("{}: new column", field.name())),
            Some(o) if o.data_type() != field.data_type() => changes.push(format!(
                "{}: {} → {}",
                field.name(),
                type_name(o.data_type()),
                type_name(field.data_type())
            )),
            Some(o) if o.is_nullable() != field.is_nullable() => changes.push(format!(
                "{}: {} → {}",
                field.name(),
                if o.is_nullable() {
                    "nullable"
                } else {
                    "not null"
                },
                if field.is_nullable() {
                    "nullable"
                } else {
                    "not null"
                }
            )),
            Some(_) => {}
        }
    }
    for o in old.fields() {
        if new.field(o.name()).is_none() {
            changes.push(format!("{}: no longer a column", o.name()));
        }
    }
    Ok(changes)
}

/// Fails with [`EngineError::NeedsMigration`] when `table` does not have `kind`'s current schema: nothing
/// may be written into it before `shopstream migrate`.
pub(crate) fn ensure_current(kind: &Table, table: &DeltaTable) -> Result<()> {
    let changes = schema_changes(kind, table)?;
    if changes.is_empty() {
        return Ok(());
    }
    Err(EngineError::NeedsMigration {
        table: kind.name().to_string(),
        changes: changes.join(", "),
    })
}

/// Migrates every table of the lake whose schema is not current; see the module documentation. Refused
/// while a server, a load or a compaction holds the lake.
pub async fn migrate(lake: &Lake, write: &WriteOptions) -> Result<Vec<TableMigration>> {
    let _server = take_server_lock(lake)?;
    let _writer = lock_lake(lake, ".writer.lock")?;
    let _compact = lock_lake(lake, ".compact.lock").map_err(|e| match e {
        EngineError::Busy(dir) => EngineError::CompactionRunning(dir),
        e => e,
    })?;
    let mut out = Vec::new();
    for kind in Table::builtins() {
        let mut m = TableMigration {
            table: kind.name().to_string(),
            ..TableMigration::default()
        };
        if let Some(table) = lake.open(&kind).await? {
            m.changes = schema_changes(&kind, &table)?;
            if !m.changes.is_empty() {
                rewrite(&kind, table, write, &mut m).await?;
            }
        }
        out.push(m);
    }
    Ok(out)
}

/// Rewrites a dataset's table in place to its schema now (a column widened from `date` to `timestamp`, new
/// columns), in one commit that keeps its `txn` entries. Refused while a compaction runs; a commit by
/// anyone else meanwhile (a server's live load of the dataset) makes it fail without committing, to be
/// run again. The caller holds the lake's writer lock (loads).
pub(crate) async fn rewrite_in_place(
    lake: &Lake,
    kind: &Table,
    write: &WriteOptions,
) -> Result<TableMigration> {
    let _compact = lock_lake(lake, ".compact.lock").map_err(|e| match e {
        EngineError::Busy(dir) => EngineError::CompactionRunning(dir),
        e => e,
    })?;
    let mut m = TableMigration {
        table: kind.name().to_string(),
        ..TableMigration::default()
    };
    if let Some(table) = lake.open(kind).await? {
        m.changes = schema_changes(kind, &table)?;
        if !m.changes.is_empty() {
            rewrite(kind, table, write, &mut m).await?;
        }
    }
    Ok(m)
}

/// Rewrites every data file of `table` in the current schema and commits the swap in one commit.
async fn rewrite(
    kind: &Table,
    table: DeltaTable,
    write: &WriteOptions,
    m: &mut TableMigration,
) -> Result<()> {
    let snapshot = table.snapshot().map_err(EngineError::delta(kind.name()))?;
    let old_partitions: Vec<String> = snapshot.metadata().partition_columns().to_vec();
    if old_partitions != kind.partition_columns() {
        return Err(EngineError::Migrate {
            table: kind.name().into(),
            file: String::new(),
            reason: format!(
                "partitioned by {old_partitions:?}, now by {:?}: a partitioning change is not migrated",
                kind.partition_columns()
            ),
        });
    }
    if let Some(gone) = m.changes.iter().find(|c| c.ends_with("no longer a column")) {
        return Err(EngineError::Migrate {
            table: kind.name().into(),
            file: String::new(),
            reason: format!("{gone}: migrate does not drop columns"),
        });
    }
    let files: Vec<_> = snapshot.log_data().iter().collect();
    let store = table.object_store();
    let target = kind.schema();
    let mut sink = TableSink::rewriting(kind.clone(), table.clone(), write);
    let mut removes = Vec::with_capacity(files.len());
    for file in &files {
        let path = file.path().to_string();
        let fail = |reason: String| EngineError::Migrate {
            table: kind.name().into(),
            file: path.clone(),
            reason,
        };
        let reader = data_file(&store, &path).await.map_err(fail)?;
        let partition_values = file.partition_values_map();
        for batch in reader {
            let batch = batch.map_err(|e| fail(e.to_string()))?;
            let batch = conform(kind, &target, &batch, &partition_values).map_err(fail)?;
            m.rows += batch.num_rows() as u64;
            sink.write(&batch).await?;
        }
        removes.push(file.remove_action(true));
    }
    let (table, adds) = sink.finish().await?;
    m.files_removed = removes.len();
    m.files_added = adds.len();
    let metadata = current_metadata(kind, snapshot)?;
    let mut actions = vec![Action::Metadata(metadata)];
    actions.extend(removes.into_iter().map(Action::Remove));
    actions.extend(adds.into_iter().map(Action::Add));
    // Any commit since the snapshot (a compaction, a live append) aborts the rewrite instead of being
    // rebased over: its files would be read by nothing and kept, or removed unread.
    let properties = CommitProperties::default()
        .with_max_retries(0)
        .with_metadata(HashMap::from([(
            "shopstream.migrate".to_string(),
            serde_json::Value::String(m.changes.join(", ")),
        )]));
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: Some(kind.partition_columns()).filter(|p| !p.is_empty()),
        predicate: None,
    };
    let snapshot = table.snapshot().map_err(EngineError::delta(kind.name()))?;
    let finalized = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await
        .map_err(EngineError::delta(kind.name()))?;
    m.version = Some(finalized.version());
    Ok(())
}

/// `snapshot`'s table metadata with `kind`'s schema now.
fn current_metadata(
    kind: &Table,
    snapshot: &deltalake::table::state::DeltaTableState,
) -> Result<deltalake::kernel::Metadata> {
    snapshot
        .metadata()
        .clone()
        .with_schema(&current_struct(kind)?)
        .map_err(|e| EngineError::delta(kind.name())(e.into()))
}

/// Empties a derived table (a view's) and gives it `kind`'s schema, in one commit: a view whose new
/// version has other columns replaces its table. Its readers (views over it) see rows removed.
pub(crate) async fn replace(kind: &Table, table: DeltaTable) -> Result<DeltaTable> {
    let snapshot = table.snapshot().map_err(EngineError::delta(kind.name()))?;
    let metadata = current_metadata(kind, snapshot)?;
    let mut actions = vec![Action::Metadata(metadata)];
    actions.extend(
        snapshot
            .log_data()
            .iter()
            .map(|f| Action::Remove(f.remove_action(true))),
    );
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: None,
        predicate: None,
    };
    let properties = CommitProperties::default().with_metadata(HashMap::from([(
        "shopstream.replace".to_string(),
        serde_json::Value::String(kind.name().to_string()),
    )]));
    CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await
        .map_err(EngineError::delta(kind.name()))?;
    let mut table = table;
    table
        .update_state()
        .await
        .map_err(EngineError::delta(kind.name()))?;
    Ok(table)
}

/// The batches of a table's data file `path` (read whole: the files rewritten are small or few at a time).
pub(crate) async fn data_file(
    store: &deltalake::logstore::ObjectStoreRef,
    path: &str,
) -> std::result::Result<ParquetRecordBatchReader, String> {
    let bytes = store
        .get(&object_store::path::Path::from(path))
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.with_batch_size(READ_BATCH_ROWS).build())
        .map_err(|e| e.to_string())
}

/// One batch of an old data file in the current schema: columns cast, missing ones filled, derived ones
/// computed, partition columns from the file's partition values. The error names column and value.
pub(crate) fn conform(
    kind: &Table,
    target: &SchemaRef,
    batch: &RecordBatch,
    partition_values: &HashMap<String, Option<String>>,
) -> std::result::Result<RecordBatch, String> {
    let rows = batch.num_rows();
    let partitions = kind.partition_columns();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    let mut derived = Vec::new();
    for (i, field) in target.fields().iter().enumerate() {
        let name = field.name().as_str();
        if let Some(ColumnRule::Derive(f)) = rule(kind, name) {
            derived.push((i, f));
            // A placeholder of the right type until the other columns are in place.
            columns.push(new_null_array(field.data_type(), rows));
            continue;
        }
        let column = if partitions.iter().any(|p| p == name) {
            let value = partition_values.get(name).cloned().flatten();
            let text: ArrayRef = Arc::new(StringArray::from(vec![value; rows]));
            cast_column(name, &text, field.data_type())?
        } else if let Some(old) = batch.column_by_name(name) {
            cast_column(name, old, field.data_type())?
        } else {
            match rule(kind, name) {
                Some(ColumnRule::FillText(text)) => {
                    let text: ArrayRef = Arc::new(StringArray::from(vec![text; rows]));
                    cast_column(name, &text, field.data_type())?
                }
                _ if field.is_nullable() => new_null_array(field.data_type(), rows),
                _ => {
                    return Err(format!(
                        "column `{name}` is new and may not be null, and no fill value is declared for it \
                         (migrate::COLUMN_RULES)"
                    ));
                }
            }
        };
        columns.push(column);
    }
    if !derived.is_empty() {
        // Derived columns read the other columns, already migrated; their placeholders are null.
        let loose = Arc::new(arrow::datatypes::Schema::new(
            target
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let partial = RecordBatch::try_new(loose, columns.clone()).map_err(|e| e.to_string())?;
        for (i, f) in derived {
            columns[i] = f(&partial)?;
        }
    }
    RecordBatch::try_new(target.clone(), columns).map_err(|e| e.to_string())
}

/// Casts one column to its current type; a value that does not fit is an error naming it.
fn cast_column(name: &str, old: &ArrayRef, to: &DataType) -> std::result::Result<ArrayRef, String> {
    if old.data_type() == to {
        return Ok(old.clone());
    }
    if let (DataType::Float64, DataType::Decimal128(precision, scale)) = (old.data_type(), to) {
        let floats = old.as_primitive::<Float64Type>();
        let mut units = Vec::with_capacity(floats.len());
        for v in floats.iter() {
            units.push(match v {
                None => None,
                Some(v) => Some(money_from_float(v, *precision, *scale).ok_or_else(|| {
                    format!("column `{name}`: {v} does not fit decimal({precision},{scale})")
                })?),
            });
        }
        let array = Decimal128Array::from(units)
            .with_precision_and_scale(*precision, *scale)
            .map_err(|e| e.to_string())?;
        return Ok(Arc::new(array));
    }
    let cast = arrow::compute::cast_with_options(old, to, &CastOptions::default())
        .map_err(|e| format!("column `{name}`: {e}"))?;
    // A safe cast turns values it cannot convert into nulls: name the first one.
    if let Some(row) = (0..old.len()).find(|&r| old.is_valid(r) && cast.is_null(r)) {
        let value = array_value_to_string(old, row).unwrap_or_default();
        return Err(format!(
            "column `{name}`: `{value}` (row {row}) cannot be converted to {to}"
        ));
    }
    Ok(cast)
}

/// A `double` as a decimal of `scale` fraction digits, as its text would load: the shortest decimal text
/// that reads back as the same double (what was loaded, when it had at most 17 significant digits: `2.55`,
/// not 2.54999…), rounded half away from zero like a load. `None` for NaN, infinities and values beyond
/// `precision`.
pub fn money_from_float(value: f64, precision: u8, scale: i8) -> Option<i128> {
    if !value.is_finite() {
        return None;
    }
    let units = ExactDecimal::parse(&value.to_string())?.to_scaled(u32::try_from(scale).ok()?)?;
    (units.unsigned_abs() < 10u128.pow(u32::from(precision))).then_some(units)
}

/// `orders.line_revenue = quantity × unit_price` (the price in units of its scale), checked against the
/// column's precision.
fn line_revenue(batch: &RecordBatch) -> std::result::Result<ArrayRef, String> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("no column `{name}`"))
    };
    let quantity = column("quantity")?.as_primitive::<Int64Type>();
    let price = column("unit_price")?.as_primitive::<arrow::datatypes::Decimal128Type>();
    let (precision, scale) = (price.precision(), price.scale());
    let limit = 10i128.pow(u32::from(precision));
    let mut out = Vec::with_capacity(batch.num_rows());
    for (q, p) in quantity.iter().zip(price.iter()) {
        out.push(match (q, p) {
            (Some(q), Some(p)) => {
                let revenue = i128::from(q) * p;
                if revenue.abs() >= limit {
                    return Err(format!(
                        "column `line_revenue`: {q} × {} is beyond decimal({precision},{scale})",
                        shopstream_ingest::mapping::format_scaled(p, scale as u32)
                    ));
                }
                Some(revenue)
            }
            _ => None,
        });
    }
    let array = Decimal128Array::from(out)
        .with_precision_and_scale(precision, scale)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(array))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_become_the_decimal_their_text_would_load_as() {
        assert_eq!(money_from_float(2.55, 18, 4), Some(25_500));
        assert_eq!(money_from_float(1.23455, 18, 4), Some(12_346));
        assert_eq!(money_from_float(-1.23455, 18, 4), Some(-12_346));
        assert_eq!(money_from_float(0.00005, 18, 4), Some(1));
        assert_eq!(money_from_float(12.600000000000001, 18, 4), Some(126_000));
        assert_eq!(money_from_float(168469.6, 18, 4), Some(1_684_696_000));
        assert_eq!(money_from_float(1e-300, 18, 4), Some(0));
        assert_eq!(money_from_float(1e14, 18, 4), None);
        assert_eq!(money_from_float(f64::NAN, 18, 4), None);
        assert_eq!(money_from_float(f64::INFINITY, 18, 4), None);
    }
}
