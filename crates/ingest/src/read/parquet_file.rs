//! Parquet files, read batch by batch.
//!
//! Every column is cast to text with Arrow's cast kernel (timestamps become ISO 8601, with their offset
//! when the column has a time zone, so they are converted into the shop's), so Parquet goes through the
//! same mapping and typing as every other source. A record's "line" is its row number in the file
//! (from 1). Batches are sized from the row groups' declared bytes per row so that a batch holds about
//! [`BATCH_BYTES`]; a file whose rows are larger than [`MAX_RECORD_BYTES`] is refused before reading.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::batch::{BATCH_BYTES, RowBatcher};
use crate::error::IngestError;

use super::Fill;
use super::text::MAX_RECORD_BYTES;

/// Rows per batch read when rows are small.
const MAX_BATCH_ROWS: usize = 8192;
/// A row group declaring more bytes than this is read [`SMALL_BATCH_ROWS`] rows at a time.
const LARGE_ROW_GROUP_BYTES: i64 = 256 * 1024 * 1024;
const SMALL_BATCH_ROWS: usize = 64;

/// Rows per batch for the file's largest rows (declared uncompressed bytes per row of its row groups),
/// or why the file is refused.
fn batch_rows(meta: &parquet::file::metadata::ParquetMetaData) -> Result<usize, String> {
    let mut widest = 0u64;
    let mut small_batches = false;
    for (i, rg) in meta.row_groups().iter().enumerate() {
        let rows = rg.num_rows().max(1) as u64;
        let per_row = rg.total_byte_size().max(0) as u64 / rows;
        if per_row > MAX_RECORD_BYTES as u64 {
            return Err(format!(
                "row group {} holds rows of {} MiB each, beyond the record limit of {} MiB",
                i + 1,
                per_row / (1024 * 1024),
                MAX_RECORD_BYTES / (1024 * 1024)
            ));
        }
        widest = widest.max(per_row);
        // The average can hide a few huge values among many small ones: in a large row group, read
        // few rows at a time.
        if rg.total_byte_size() > LARGE_ROW_GROUP_BYTES {
            small_batches = true;
        }
    }
    let rows = (BATCH_BYTES as u64 / widest.max(1)).clamp(1, MAX_BATCH_ROWS as u64) as usize;
    Ok(if small_batches {
        rows.min(SMALL_BATCH_ROWS)
    } else {
        rows
    })
}

pub(super) struct ParquetFill {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
    row_no: u64,
    rows_total: u64,
    bytes_total: u64,
}

impl ParquetFill {
    pub(super) fn open(path: &Path) -> Result<(Self, Vec<String>), IngestError> {
        let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
        let bytes_total = file.metadata().map_err(|e| IngestError::io(path, e))?.len();
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
            IngestError::malformed(path, format!("not a readable Parquet file: {e}"))
        })?;
        let columns = builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let rows_total = builder.metadata().file_metadata().num_rows().max(1) as u64;
        let batch = batch_rows(builder.metadata()).map_err(|r| IngestError::malformed(path, r))?;
        let reader = builder
            .with_batch_size(batch)
            .build()
            .map_err(|e| IngestError::malformed(path, e.to_string()))?;
        Ok((
            ParquetFill {
                path: path.to_path_buf(),
                reader,
                row_no: 0,
                rows_total,
                bytes_total,
            },
            columns,
        ))
    }
}

impl Fill for ParquetFill {
    fn fill(&mut self, batcher: &mut RowBatcher) -> Result<bool, IngestError> {
        while !batcher.is_full() {
            let Some(batch) = self.reader.next() else {
                return Ok(false);
            };
            let batch = batch.map_err(|e| {
                IngestError::malformed(&self.path, format!("after row {}: {e}", self.row_no))
            })?;
            let texts = batch
                .columns()
                .iter()
                .map(|c| arrow::compute::cast(c, &DataType::Utf8))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    IngestError::malformed(
                        &self.path,
                        format!("a column cannot be read as text: {e}"),
                    )
                })?;
            let strings: Vec<_> = texts.iter().map(|a| a.as_string::<i32>()).collect();
            let mut row: Vec<&str> = Vec::with_capacity(strings.len());
            for i in 0..batch.num_rows() {
                row.clear();
                row.extend(
                    strings
                        .iter()
                        .map(|s| if s.is_null(i) { "" } else { s.value(i) }),
                );
                self.row_no += 1;
                batcher.push_row(self.row_no, &row);
            }
        }
        Ok(true)
    }

    fn bytes_read(&self) -> u64 {
        self.bytes_total * self.row_no / self.rows_total
    }
}
