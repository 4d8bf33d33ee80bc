//! Streaming writes into one lake table, memory-bounded, committed with application transactions.
//!
//! A [`TableSink`] takes record batches of one table and streams them into zstd Parquet files under
//! the table (files roll at the target size). For a partitioned table it keeps one delta-rs writer
//! per partition value, but only [`MAX_OPEN_PARTITIONS`] of them open at once: a Parquet writer holds
//! its open row group, dictionaries and compression contexts per column, so keeping every partition
//! a load ever touched open grows memory with the data's date range. The least recently written
//! partition is closed when another one opens; input that arrives roughly in date order (exports,
//! live feeds) therefore still yields one file per partition. Nothing is visible until
//! [`commit_adds`] writes the files' `add` actions in one Delta commit together with the caller's
//! application transactions (`txn`), which is what makes loads exactly-once.

use std::collections::HashMap;

use arrow::array::{AsArray, RecordBatch, UInt32Array};
use delta_kernel::expressions::Scalar;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use indexmap::IndexMap;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{EngineError, Result};
use crate::lake::Table;

/// A row group is closed at this encoded size at the latest (see [`writer_properties`]).
pub const MAX_ROW_GROUP_BYTES: usize = 16 * 1024 * 1024;

/// Partition writers kept open per sink; see the module documentation.
pub const MAX_OPEN_PARTITIONS: usize = 6;

/// Tuning of the parquet files a sink writes.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Roll to a new file when one reaches this many bytes.
    pub target_file_size: u64,
    /// zstd compression level.
    pub zstd_level: i32,
    /// Maximum rows per row group (smaller groups let SQL skip more, larger compress better).
    pub row_group_rows: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            target_file_size: 128 * 1024 * 1024,
            zstd_level: 3,
            row_group_rows: 128 * 1024,
        }
    }
}

/// Parquet settings for a table's files. Text columns whose min/max statistics would never skip a file
/// ([`Table::columns_without_statistics`]) are written without them: computing them costs two string
/// comparisons per value.
pub(crate) fn writer_properties(kind: &Table, o: &WriteOptions) -> WriterProperties {
    let mut builder = WriterProperties::builder();
    for c in kind.columns_without_statistics() {
        builder = builder
            .set_column_statistics_enabled(ColumnPath::from(c.as_str()), EnabledStatistics::None);
    }
    builder
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(o.zstd_level).unwrap_or_default(),
        ))
        .set_max_row_group_row_count(Some(o.row_group_rows))
        // Rows of huge values (a hostile file's megabyte descriptions) close a row group by size: the open
        // one is held in memory per open partition, which must stay bounded whatever the input.
        .set_max_row_group_bytes(Some(MAX_ROW_GROUP_BYTES))
        // Line numbers are unique and ascending: a dictionary never pays off, deltas pack them small.
        .set_column_dictionary_enabled(ColumnPath::from("source_line"), false)
        .set_column_encoding(
            ColumnPath::from("source_line"),
            Encoding::DELTA_BINARY_PACKED,
        )
        .build()
}

/// An open writer for one partition value (the empty string for an unpartitioned table).
struct OpenWriter {
    value: String,
    partition: IndexMap<String, Scalar>,
    writer: RecordBatchWriter,
    last_used: u64,
}

/// Streams batches of one table into parquet files; see the module documentation.
pub struct TableSink {
    kind: Table,
    table: DeltaTable,
    options: WriteOptions,
    /// Index of the partition column in the table's batches, for partitioned tables.
    partition_column: Option<usize>,
    open: Vec<OpenWriter>,
    closed: Vec<Add>,
    tick: u64,
    /// Write in the table kind's current schema rather than the table's (`migrate`).
    rewriting: bool,
}

impl TableSink {
    /// A sink writing into `table` (of kind `kind`).
    pub fn new(kind: Table, table: DeltaTable, options: &WriteOptions) -> TableSink {
        let partition_column = kind
            .partition_columns()
            .first()
            .and_then(|p| kind.schema().index_of(p).ok());
        TableSink {
            kind,
            table,
            options: options.clone(),
            partition_column,
            open: Vec::new(),
            closed: Vec::new(),
            tick: 0,
            rewriting: false,
        }
    }

    /// A sink writing files of `kind`'s current schema into `table`, whose own schema is an older one: the
    /// files of a migration, committed together with the new schema.
    pub fn rewriting(kind: Table, table: DeltaTable, options: &WriteOptions) -> TableSink {
        TableSink {
            rewriting: true,
            ..TableSink::new(kind, table, options)
        }
    }

    /// The table this sink writes.
    pub fn kind(&self) -> &Table {
        &self.kind
    }

    /// Writes one batch (in the table's schema, partition column included).
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let Some(col) = self.partition_column else {
            let i = self.writer_for(String::new()).await?;
            let w = &mut self.open[i].writer;
            return w
                .write(batch.clone())
                .await
                .map_err(EngineError::delta(self.kind.name()));
        };
        for (value, part) in split_by_value(batch, col)? {
            self.write_to(value, part).await?;
        }
        Ok(())
    }

    /// Writes a batch whose rows all belong to partition `value`, telling delta-rs so: its own
    /// `write` would sort and copy every batch to find the partitions again.
    async fn write_to(&mut self, value: String, batch: RecordBatch) -> Result<()> {
        let i = self.writer_for(value).await?;
        let w = &mut self.open[i];
        w.writer
            .write_partition(batch, &w.partition, WriteMode::Default)
            .await
            .map(|_| ())
            .map_err(EngineError::delta(self.kind.name()))
    }

    /// The index in `open` of the writer for partition `value`, opening it (and closing the least
    /// recently used one when too many are open) if needed.
    async fn writer_for(&mut self, value: String) -> Result<usize> {
        self.tick += 1;
        let found = self.open.iter().position(|w| w.value == value);
        let i = match found {
            Some(i) => i,
            None => {
                if self.open.len() >= MAX_OPEN_PARTITIONS {
                    let lru = (0..self.open.len())
                        .min_by_key(|&i| self.open[i].last_used)
                        .expect("open is not empty");
                    let mut w = self.open.swap_remove(lru);
                    self.closed.extend(flush(&self.kind, &mut w.writer).await?);
                }
                let writer = if self.rewriting {
                    RecordBatchWriter::try_new(
                        self.table.table_url().as_str(),
                        self.kind.schema(),
                        Some(self.kind.partition_columns()),
                        None,
                    )
                } else {
                    RecordBatchWriter::for_table(&self.table)
                }
                .map_err(EngineError::delta(self.kind.name()))?
                .with_writer_properties(writer_properties(&self.kind, &self.options))
                .with_target_file_size(self.options.target_file_size);
                let partition = self
                    .kind
                    .partition_columns()
                    .into_iter()
                    .map(|c| (c, Scalar::String(value.clone())))
                    .collect();
                self.open.push(OpenWriter {
                    value,
                    partition,
                    writer,
                    last_used: 0,
                });
                self.open.len() - 1
            }
        };
        self.open[i].last_used = self.tick;
        Ok(i)
    }

    /// Closes every file and returns the table with the `add` actions of everything written.
    pub async fn finish(mut self) -> Result<(DeltaTable, Vec<Add>)> {
        let mut adds = std::mem::take(&mut self.closed);
        for mut w in std::mem::take(&mut self.open) {
            adds.extend(flush(&self.kind, &mut w.writer).await?);
        }
        Ok((self.table, adds))
    }
}

async fn flush(kind: &Table, writer: &mut RecordBatchWriter) -> Result<Vec<Add>> {
    writer
        .flush()
        .await
        .map_err(EngineError::delta(kind.name()))
}

/// Splits a batch by the text value of column `col`: zero-copy slices when equal values come in
/// runs (date-ordered input), one `take` per value otherwise.
fn split_by_value(batch: &RecordBatch, col: usize) -> Result<Vec<(String, RecordBatch)>> {
    let values = batch.column(col).as_string_opt::<i32>().ok_or_else(|| {
        EngineError::Internal(format!(
            "partition column {} is not text",
            batch.schema().field(col).name()
        ))
    })?;
    let n = batch.num_rows();
    let mut runs: Vec<(usize, usize)> = Vec::new(); // (start, len)
    let mut start = 0;
    for i in 1..=n {
        if i == n || values.value(i) != values.value(start) {
            runs.push((start, i - start));
            start = i;
        }
    }
    let mut by_value: HashMap<&str, Vec<u32>> = HashMap::new();
    for &(s, _) in &runs {
        by_value.entry(values.value(s)).or_default();
    }
    if runs.len() <= 2 * by_value.len() {
        return Ok(runs
            .into_iter()
            .map(|(s, len)| (values.value(s).to_string(), batch.slice(s, len)))
            .collect());
    }
    for (s, len) in runs {
        let v = by_value
            .get_mut(values.value(s))
            .expect("every run's value");
        v.extend((s..s + len).map(|i| i as u32));
    }
    let mut out = Vec::with_capacity(by_value.len());
    for (value, idx) in by_value {
        let idx = UInt32Array::from(idx);
        let part = arrow::compute::take_record_batch(batch, &idx)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        out.push((value.to_string(), part));
    }
    Ok(out)
}

/// Commits `adds` to `table` in one Delta commit carrying `txns` and `metadata`; returns the new
/// version. With no adds and no transactions nothing is committed and `None` is returned.
pub async fn commit_adds(
    kind: &Table,
    table: &DeltaTable,
    adds: Vec<Add>,
    txns: Vec<Transaction>,
    metadata: HashMap<String, serde_json::Value>,
) -> Result<Option<u64>> {
    commit_files(kind, table, adds, txns, metadata, false).await
}

/// As [`commit_adds`]; with `replace`, the commit also removes every file the table had: its rows are
/// replaced by the new ones at once (a view starting over within its version).
pub async fn commit_files(
    kind: &Table,
    table: &DeltaTable,
    adds: Vec<Add>,
    txns: Vec<Transaction>,
    metadata: HashMap<String, serde_json::Value>,
    replace: bool,
) -> Result<Option<u64>> {
    if adds.is_empty() && txns.is_empty() && !replace {
        return Ok(None);
    }
    let properties = CommitProperties::default()
        .with_application_transactions(txns)
        .with_metadata(metadata);
    let partition_by = Some(kind.partition_columns()).filter(|p| !p.is_empty());
    let operation = DeltaOperation::Write {
        mode: if replace {
            SaveMode::Overwrite
        } else {
            SaveMode::Append
        },
        partition_by,
        predicate: None,
    };
    let snapshot = table.snapshot().map_err(EngineError::delta(kind.name()))?;
    let mut actions: Vec<Action> = Vec::new();
    if replace {
        actions.extend(
            snapshot
                .log_data()
                .iter()
                .map(|f| Action::Remove(f.remove_action(true))),
        );
    }
    actions.extend(adds.into_iter().map(Action::Add));
    let finalized = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await
        .map_err(EngineError::delta(kind.name()))?;
    Ok(Some(finalized.version()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(months: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("m", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..months.len() as i64)),
                Arc::new(StringArray::from(months.to_vec())),
            ],
        )
        .unwrap()
    }

    fn rows_of(parts: &[(String, RecordBatch)], value: &str) -> Vec<i64> {
        parts
            .iter()
            .filter(|(v, _)| v == value)
            .flat_map(|(_, b)| {
                b.column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn splits_runs_and_scattered_values_without_losing_rows() {
        let sorted = split_by_value(&batch(&["a", "a", "b", "b", "b", "c"]), 1).unwrap();
        assert_eq!(sorted.len(), 3);
        assert_eq!(rows_of(&sorted, "b"), vec![2, 3, 4]);
        let scattered = split_by_value(&batch(&["a", "b", "a", "b", "a", "b", "a"]), 1).unwrap();
        assert_eq!(scattered.len(), 2, "one part per value when runs are short");
        assert_eq!(rows_of(&scattered, "a"), vec![0, 2, 4, 6]);
        assert_eq!(rows_of(&scattered, "b"), vec![1, 3, 5]);
    }
}
