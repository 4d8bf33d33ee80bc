//! Loading files into the lake, exactly once per file content.
//!
//! A load reads its files one after the other on a blocking thread and streams the batches into
//! three Delta writers (`raw_orders`, `dead_letters`, `orders`); parquet files are written as they
//! fill (zstd, rolled at `target_file_size`), so memory stays bounded by the open row groups, not by
//! the input. Nothing is visible until the commits at the end: one per table, in the order
//! `raw_orders`, `dead_letters`, `orders`, `loads`, each carrying a Delta application transaction
//! (`txn`) per file content fingerprint. The `loads` commit is the load's record: a file whose
//! fingerprint is in `loads` is skipped by later loads. A table that already holds a fingerprint's
//! transaction (a load killed between its commits) does not get that file's rows again, so rerunning
//! an interrupted load completes it without doubling anything. Concurrent writers to one lake are
//! excluded by a lock file; Delta's conflict checker rejects a concurrent commit of the same
//! transaction ids as a second line of defence.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::{Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder};
use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use shopstream_ingest::{Counts, FileReader, Format, Provenance, ReadOptions};

use crate::error::{EngineError, Result};
use crate::lake::{Lake, TableKind};

/// Tuning of the parquet files a load writes.
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
            row_group_rows: 256 * 1024,
        }
    }
}

/// What happened to one file of a load.
#[derive(Debug, Clone)]
pub struct FileOutcome {
    /// The file.
    pub path: PathBuf,
    /// Its content fingerprint.
    pub fingerprint: String,
    /// Detected format (empty when skipped before reading).
    pub format: String,
    /// Rows read, loaded, rejected (zero when skipped).
    pub counts: Counts,
    /// Set when the file was not loaded because the same content was loaded before.
    pub already_loaded: bool,
}

/// Progress events, for progress bars.
#[derive(Debug, Clone)]
pub enum LoadEvent {
    /// Total bytes of all files of the load.
    Started {
        /// Bytes of all files.
        total_bytes: u64,
        /// Number of files.
        files: usize,
    },
    /// Bytes read so far across the load.
    Progress {
        /// Bytes done.
        bytes_done: u64,
        /// Records read so far.
        rows_read: u64,
    },
    /// A file finished (loaded or skipped).
    File(FileOutcome),
    /// Reading is done; the commits are being written.
    Committing,
}

/// The result of a load.
#[derive(Debug, Clone, Default)]
pub struct LoadSummary {
    /// Id of this load (also in every row it wrote).
    pub load_id: String,
    /// Per-file outcomes, in order.
    pub files: Vec<FileOutcome>,
    /// Totals over the loaded files.
    pub totals: Counts,
    /// Delta version of `orders` after the load (None when nothing was committed).
    pub orders_version: Option<u64>,
}

fn txn_id(fingerprint: &str) -> String {
    format!("shopstream.file.{fingerprint}")
}

fn writer_properties(o: &WriteOptions) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(o.zstd_level).unwrap_or_default(),
        ))
        .set_max_row_group_row_count(Some(o.row_group_rows))
        .build()
}

/// An exclusive lock on a local lake, released on drop.
struct WriterLock(#[allow(dead_code)] std::fs::File);

fn lock_lake(lake: &Lake) -> Result<Option<WriterLock>> {
    let Some(dir) = lake.local_dir() else {
        return Ok(None);
    };
    let path = dir.join(".writer.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| EngineError::Location {
            location: path.display().to_string(),
            reason: e.to_string(),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(WriterLock(file))),
        Err(std::fs::TryLockError::WouldBlock) => Err(EngineError::Busy(dir.display().to_string())),
        Err(std::fs::TryLockError::Error(e)) => Err(EngineError::Location {
            location: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

async fn has_txn(table: &DeltaTable, kind: TableKind, fingerprint: &str) -> Result<bool> {
    let snapshot = table.snapshot().map_err(EngineError::delta(kind.name()))?;
    let v = snapshot
        .transaction_version(table.log_store().as_ref(), txn_id(fingerprint))
        .await
        .map_err(EngineError::delta(kind.name()))?;
    Ok(v.is_some())
}

struct TableWriter {
    kind: TableKind,
    table: DeltaTable,
    writer: RecordBatchWriter,
    /// Fingerprints this table already holds: their rows are not written to it again.
    done: HashSet<String>,
    /// Fingerprints whose rows this load writes to this table.
    pending: Vec<String>,
}

impl TableWriter {
    async fn new(lake: &Lake, kind: TableKind, options: &WriteOptions) -> Result<TableWriter> {
        let table = lake.open_or_create(kind).await?;
        let writer = RecordBatchWriter::for_table(&table)
            .map_err(EngineError::delta(kind.name()))?
            .with_writer_properties(writer_properties(options))
            .with_target_file_size(options.target_file_size);
        Ok(TableWriter {
            kind,
            table,
            writer,
            done: HashSet::new(),
            pending: Vec::new(),
        })
    }

    async fn write(&mut self, fingerprint: &str, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 || self.done.contains(fingerprint) {
            return Ok(());
        }
        self.writer
            .write(batch)
            .await
            .map_err(EngineError::delta(self.kind.name()))
    }

    /// Commits the written files with one `txn` per pending fingerprint.
    async fn commit(mut self, load_id: &str) -> Result<Option<u64>> {
        let adds = self
            .writer
            .flush()
            .await
            .map_err(EngineError::delta(self.kind.name()))?;
        if self.pending.is_empty() {
            return Ok(None);
        }
        let txns: Vec<Transaction> = self
            .pending
            .iter()
            .map(|fp| Transaction::new(txn_id(fp), 1))
            .collect();
        let mut meta = HashMap::new();
        meta.insert(
            "shopstream.load_id".to_string(),
            serde_json::Value::String(load_id.to_string()),
        );
        let properties = CommitProperties::default()
            .with_application_transactions(txns)
            .with_metadata(meta);
        let partition_by = Some(self.kind.partition_columns()).filter(|p| !p.is_empty());
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by,
            predicate: None,
        };
        let snapshot = self
            .table
            .snapshot()
            .map_err(EngineError::delta(self.kind.name()))?;
        let finalized = CommitBuilder::from(properties)
            .with_actions(adds.into_iter().map(Action::Add).collect())
            .build(Some(snapshot), self.table.log_store(), operation)
            .await
            .map_err(EngineError::delta(self.kind.name()))?;
        Ok(Some(finalized.version()))
    }
}

/// Loads `files` into the lake; see the module documentation for the guarantees.
///
/// `cancel` is polled between batches: when set, the load stops without committing and returns
/// [`EngineError::Interrupted`].
pub async fn load_files(
    lake: &Lake,
    files: &[PathBuf],
    read: &ReadOptions,
    write: &WriteOptions,
    cancel: Arc<AtomicBool>,
    on_event: &(dyn Fn(LoadEvent) + Send + Sync),
) -> Result<LoadSummary> {
    let _lock = lock_lake(lake)?;
    let load_id = uuid::Uuid::new_v4().to_string();
    let load_time_us = chrono::Utc::now().timestamp_micros();
    let total_bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    on_event(LoadEvent::Started {
        total_bytes,
        files: files.len(),
    });

    let loads = lake.open_or_create(TableKind::Loads).await?;
    let mut writers = Vec::new();
    for kind in [TableKind::Raw, TableKind::DeadLetters, TableKind::Orders] {
        writers.push(TableWriter::new(lake, kind, write).await?);
    }

    let mut summary = LoadSummary {
        load_id: load_id.clone(),
        ..Default::default()
    };
    let mut loads_rows: Vec<(FileOutcome, String)> = Vec::new();
    let mut seen_in_this_load = HashSet::new();
    let mut bytes_before = 0u64;
    let mut rows_before = 0u64;

    for path in files {
        let fingerprint = {
            let p = path.clone();
            tokio::task::spawn_blocking(move || shopstream_ingest::fingerprint(&p))
                .await
                .map_err(|e| EngineError::Output(e.to_string()))??
        };
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if !seen_in_this_load.insert(fingerprint.clone())
            || has_txn(&loads, TableKind::Loads, &fingerprint).await?
        {
            let outcome = FileOutcome {
                path: path.clone(),
                fingerprint,
                format: String::new(),
                counts: Counts::default(),
                already_loaded: true,
            };
            on_event(LoadEvent::File(outcome.clone()));
            summary.files.push(outcome);
            bytes_before += size;
            continue;
        }
        for w in &mut writers {
            if has_txn(&w.table, w.kind, &fingerprint).await? {
                w.done.insert(fingerprint.clone());
            } else {
                w.pending.push(fingerprint.clone());
            }
        }
        let provenance = Provenance {
            source_file: Arc::from(path.display().to_string()),
            sheet: None,
            load_id: Arc::from(load_id.as_str()),
            load_time_us,
        };
        let (format, counts) = read_one(
            path,
            read,
            provenance,
            &fingerprint,
            &mut writers,
            &cancel,
            &|bytes, rows| {
                on_event(LoadEvent::Progress {
                    bytes_done: bytes_before + bytes,
                    rows_read: rows_before + rows,
                })
            },
        )
        .await?;
        bytes_before += size;
        rows_before += counts.read;
        summary.totals.read += counts.read;
        summary.totals.loaded += counts.loaded;
        summary.totals.rejected += counts.rejected;
        let outcome = FileOutcome {
            path: path.clone(),
            fingerprint: fingerprint.clone(),
            format: format.name().into(),
            counts,
            already_loaded: false,
        };
        on_event(LoadEvent::File(outcome.clone()));
        summary.files.push(outcome.clone());
        loads_rows.push((outcome, format.name().into()));
    }
    if cancel.load(Ordering::SeqCst) {
        return Err(EngineError::Interrupted);
    }
    on_event(LoadEvent::Committing);
    for w in writers {
        let kind = w.kind;
        let version = w.commit(&load_id).await?;
        if kind == TableKind::Orders {
            summary.orders_version = version;
        }
    }
    if !loads_rows.is_empty() {
        let mut loads_writer = TableWriter::new(lake, TableKind::Loads, write).await?;
        let batch = loads_batch(&load_id, load_time_us, &loads_rows);
        loads_writer.pending = loads_rows
            .iter()
            .map(|(o, _)| o.fingerprint.clone())
            .collect();
        loads_writer
            .writer
            .write(batch)
            .await
            .map_err(EngineError::delta(TableKind::Loads.name()))?;
        loads_writer.commit(&load_id).await?;
    }
    Ok(summary)
}

/// Reads one file on a blocking thread, streaming its chunks into the writers.
async fn read_one(
    path: &Path,
    read: &ReadOptions,
    provenance: Provenance,
    fingerprint: &str,
    writers: &mut [TableWriter],
    cancel: &Arc<AtomicBool>,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<(Format, Counts)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let p = path.to_path_buf();
    let options = read.clone();
    let cancel_reader = cancel.clone();
    let reader_task = tokio::task::spawn_blocking(move || -> Result<(Format, Counts)> {
        let mut reader = FileReader::open(&p, &options, provenance)?;
        let format = reader.format();
        while let Some(chunk) = reader.next() {
            if cancel_reader.load(Ordering::SeqCst) {
                break;
            }
            let chunk = chunk?;
            let progress = (reader.bytes_read(), reader.counts().read);
            if tx.blocking_send((chunk, progress)).is_err() {
                break;
            }
        }
        Ok((format, reader.counts()))
    });
    while let Some((chunk, (bytes, rows))) = rx.recv().await {
        let shopstream_ingest::Chunk {
            raw,
            orders,
            dead_letters,
        } = chunk;
        for w in writers.iter_mut() {
            let batch = match w.kind {
                TableKind::Raw => &raw,
                TableKind::DeadLetters => &dead_letters,
                TableKind::Orders => &orders,
                TableKind::Loads => continue,
            };
            w.write(fingerprint, batch.clone()).await?;
        }
        progress(bytes, rows);
    }
    let result = reader_task
        .await
        .map_err(|e| EngineError::Output(format!("reader thread: {e}")))?;
    if cancel.load(Ordering::SeqCst) {
        return Err(EngineError::Interrupted);
    }
    result
}

fn loads_batch(load_id: &str, load_time_us: i64, rows: &[(FileOutcome, String)]) -> RecordBatch {
    let mut id = StringBuilder::new();
    let mut file = StringBuilder::new();
    let mut fp = StringBuilder::new();
    let mut format = StringBuilder::new();
    let (mut read, mut loaded, mut rejected) = (
        Int64Builder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
    );
    let mut time = TimestampMicrosecondBuilder::new();
    for (o, f) in rows {
        id.append_value(load_id);
        file.append_value(o.path.display().to_string());
        fp.append_value(&o.fingerprint);
        format.append_value(f);
        read.append_value(o.counts.read as i64);
        loaded.append_value(o.counts.loaded as i64);
        rejected.append_value(o.counts.rejected as i64);
        time.append_value(load_time_us);
    }
    RecordBatch::try_new(
        TableKind::Loads.schema(),
        vec![
            Arc::new(id.finish()),
            Arc::new(file.finish()),
            Arc::new(fp.finish()),
            Arc::new(format.finish()),
            Arc::new(read.finish()),
            Arc::new(loaded.finish()),
            Arc::new(rejected.finish()),
            Arc::new(time.finish()),
        ],
    )
    .expect("loads batch matches its schema")
}
