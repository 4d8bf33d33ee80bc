//! Loading files into the lake, exactly once per file content.
//!
//! A load first fingerprints its files (blake3 of the content) and skips those already recorded in
//! `loads`. The rest are read by up to one thread per core, each taking the next file; their batches
//! flow through bounded channels into one streaming [`TableSink`] task per table (`raw_orders`,
//! `dead_letters`, `orders`), so parsing and Parquet encoding run in parallel and memory stays bounded
//! by the channels and the sinks' open files, not by the input. Nothing is visible until the commits
//! at the end: one per table, in the order `raw_orders`, `dead_letters`, `orders`, `loads`, each
//! carrying a Delta application transaction (`txn`) per file content fingerprint. The `loads` commit
//! is the load's record: a file whose fingerprint is in `loads` is skipped by later loads. A table
//! that already holds a fingerprint's transaction (a load killed between its commits) does not get
//! that file's rows again, so rerunning an interrupted load completes it without doubling anything.
//! Concurrent writers to one lake are excluded by a lock file; Delta's conflict checker rejects a
//! concurrent commit of the same transaction ids as a second line of defence.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder};
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use shopstream_ingest::{Counts, FileReader, Format, Provenance, ReadOptions};
use tokio::sync::mpsc;

use crate::error::{EngineError, Result};
use crate::lake::{Lake, TableKind};
pub use crate::sink::WriteOptions;
use crate::sink::{TableSink, commit_adds};

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

/// An exclusive lock on a local lake, released on drop.
pub(crate) struct WriterLock(#[allow(dead_code)] std::fs::File);

/// Takes the lake's lock file `name` (`Busy` when another process or task holds it); `None` for a lake
/// that is not a local folder.
pub(crate) fn lock_lake(lake: &Lake, name: &str) -> Result<Option<WriterLock>> {
    let Some(dir) = lake.local_dir() else {
        return Ok(None);
    };
    let path = dir.join(name);
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

/// The tables a load writes rows to, in commit order (`loads` is written after them).
const ROW_TABLES: [TableKind; 3] = [TableKind::Raw, TableKind::DeadLetters, TableKind::Orders];

/// A batch for one table, tagged with the fingerprint of the file it came from.
type Tagged = (Arc<str>, RecordBatch);

/// What reader threads report to the load's task.
enum ReaderEvent {
    Progress {
        reader: usize,
        bytes: u64,
        rows: u64,
    },
    Done {
        reader: usize,
        index: usize,
        format: Format,
        counts: Counts,
    },
    Failed(EngineError),
}

/// One file to read.
struct Job {
    index: usize,
    path: PathBuf,
    fingerprint: Arc<str>,
}

/// Fingerprints `files` on blocking threads, at most `parallelism` at a time, in input order.
async fn fingerprint_all(files: &[PathBuf], parallelism: usize) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(files.len());
    for group in files.chunks(parallelism.max(1)) {
        let handles: Vec<_> = group
            .iter()
            .map(|p| {
                let p = p.clone();
                tokio::task::spawn_blocking(move || shopstream_ingest::fingerprint(&p))
            })
            .collect();
        for h in handles {
            out.push(
                h.await
                    .map_err(|e| EngineError::Internal(format!("fingerprint thread: {e}")))??,
            );
        }
    }
    Ok(out)
}

/// Threads reading files: one per core, never more than files.
fn reader_threads(files: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(files)
        .max(1)
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
    let _lock = lock_lake(lake, ".writer.lock")?;
    let load_id = uuid::Uuid::new_v4().to_string();
    let load_time_us = chrono::Utc::now().timestamp_micros();
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .collect();
    on_event(LoadEvent::Started {
        total_bytes: sizes.iter().sum(),
        files: files.len(),
    });

    let parallelism = reader_threads(files.len());
    let fingerprints = fingerprint_all(files, parallelism).await?;
    let loads = lake.open_or_create(TableKind::Loads).await?;
    let mut tables = Vec::new();
    for kind in ROW_TABLES {
        tables.push((kind, lake.open_or_create(kind).await?));
    }

    // Plan: which files to read, and per table which fingerprints it already holds or will get.
    let mut outcomes: Vec<Option<FileOutcome>> = vec![None; files.len()];
    let mut jobs = VecDeque::new();
    let mut seen = HashSet::new();
    let mut done: Vec<HashSet<Arc<str>>> = vec![HashSet::new(); ROW_TABLES.len()];
    let mut pending: Vec<Vec<String>> = vec![Vec::new(); ROW_TABLES.len()];
    let mut bytes_done = 0u64;
    for (index, (path, fp)) in files.iter().zip(&fingerprints).enumerate() {
        if !seen.insert(fp.clone()) || has_txn(&loads, TableKind::Loads, fp).await? {
            let outcome = FileOutcome {
                path: path.clone(),
                fingerprint: fp.clone(),
                format: String::new(),
                counts: Counts::default(),
                already_loaded: true,
            };
            on_event(LoadEvent::File(outcome.clone()));
            outcomes[index] = Some(outcome);
            bytes_done += sizes[index];
            continue;
        }
        let fingerprint: Arc<str> = Arc::from(fp.as_str());
        for (t, (kind, table)) in tables.iter().enumerate() {
            if has_txn(table, *kind, fp).await? {
                done[t].insert(fingerprint.clone());
            } else {
                pending[t].push(fp.clone());
            }
        }
        jobs.push_back(Job {
            index,
            path: path.clone(),
            fingerprint,
        });
    }

    // One sink task per table.
    let mut senders = Vec::new();
    let mut sink_tasks = Vec::new();
    for ((kind, table), done) in tables.into_iter().zip(done) {
        let (tx, rx) = mpsc::channel::<Tagged>(2);
        senders.push(tx);
        sink_tasks.push(tokio::spawn(run_sink(
            TableSink::new(kind, table, write),
            rx,
            done,
        )));
    }

    // Reader threads.
    let readers = parallelism.min(jobs.len()).max(1);
    let jobs = Arc::new(Mutex::new(jobs));
    let stop = Arc::new(AtomicBool::new(false));
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let mut reader_threads = Vec::new();
    for reader in 0..readers {
        let ctx = ReaderCtx {
            reader,
            jobs: jobs.clone(),
            senders: senders.clone(),
            events: ev_tx.clone(),
            stop: stop.clone(),
            cancel: cancel.clone(),
            options: read.clone(),
            load_id: Arc::from(load_id.as_str()),
            load_time_us,
        };
        reader_threads.push(tokio::task::spawn_blocking(move || ctx.run()));
    }
    drop(ev_tx);
    drop(senders);

    let mut summary = LoadSummary {
        load_id: load_id.clone(),
        ..Default::default()
    };
    let mut in_flight = vec![(0u64, 0u64); readers];
    let mut rows_done = 0u64;
    let mut failure: Option<EngineError> = None;
    while let Some(event) = ev_rx.recv().await {
        match event {
            ReaderEvent::Progress {
                reader,
                bytes,
                rows,
            } => {
                in_flight[reader] = (bytes, rows);
                let (b, r) = in_flight
                    .iter()
                    .fold((0, 0), |(b, r), (fb, fr)| (b + fb, r + fr));
                on_event(LoadEvent::Progress {
                    bytes_done: bytes_done + b,
                    rows_read: rows_done + r,
                });
            }
            ReaderEvent::Done {
                reader,
                index,
                format,
                counts,
            } => {
                in_flight[reader] = (0, 0);
                bytes_done += sizes[index];
                rows_done += counts.read;
                summary.totals.read += counts.read;
                summary.totals.loaded += counts.loaded;
                summary.totals.rejected += counts.rejected;
                let outcome = FileOutcome {
                    path: files[index].clone(),
                    fingerprint: fingerprints[index].clone(),
                    format: format.name().into(),
                    counts,
                    already_loaded: false,
                };
                on_event(LoadEvent::File(outcome.clone()));
                outcomes[index] = Some(outcome);
            }
            ReaderEvent::Failed(e) => {
                stop.store(true, Ordering::SeqCst);
                failure.get_or_insert(e);
            }
        }
    }
    for t in reader_threads {
        t.await
            .map_err(|e| EngineError::Internal(format!("reader thread: {e}")))?;
    }
    let mut written = Vec::new();
    for task in sink_tasks {
        match task.await {
            Ok(Ok(result)) => written.push(result),
            // A sink's own error explains a reader's "sink stopped" failure: it comes first.
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(EngineError::Internal(format!("writer task: {e}"))),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if cancel.load(Ordering::SeqCst) {
        return Err(EngineError::Interrupted);
    }

    on_event(LoadEvent::Committing);
    let meta = HashMap::from([(
        "shopstream.load_id".to_string(),
        serde_json::Value::String(load_id.clone()),
    )]);
    for (((kind, table, adds), pending), _) in written.into_iter().zip(pending).zip(ROW_TABLES) {
        if pending.is_empty() {
            continue;
        }
        let txns = pending
            .iter()
            .map(|fp| Transaction::new(txn_id(fp), 1))
            .collect();
        let version = commit_adds(kind, &table, adds, txns, meta.clone()).await?;
        if kind == TableKind::Orders {
            summary.orders_version = version;
        }
    }
    summary.files = outcomes.into_iter().flatten().collect();
    let loaded: Vec<&FileOutcome> = summary.files.iter().filter(|o| !o.already_loaded).collect();
    if !loaded.is_empty() {
        let mut sink = TableSink::new(TableKind::Loads, loads, write);
        sink.write(&loads_batch(&load_id, load_time_us, &loaded))
            .await?;
        let (loads, adds) = sink.finish().await?;
        let txns = loaded
            .iter()
            .map(|o| Transaction::new(txn_id(&o.fingerprint), 1))
            .collect();
        commit_adds(TableKind::Loads, &loads, adds, txns, meta).await?;
    }
    Ok(summary)
}

/// A sink task: writes every batch whose file the table does not already hold.
async fn run_sink(
    mut sink: TableSink,
    mut rx: mpsc::Receiver<Tagged>,
    done: HashSet<Arc<str>>,
) -> Result<(TableKind, DeltaTable, Vec<deltalake::kernel::Add>)> {
    while let Some((fingerprint, batch)) = rx.recv().await {
        if !done.contains(&fingerprint) {
            sink.write(&batch).await?;
        }
    }
    let kind = sink.kind();
    let (table, adds) = sink.finish().await?;
    Ok((kind, table, adds))
}

/// What a reader thread needs.
struct ReaderCtx {
    reader: usize,
    jobs: Arc<Mutex<VecDeque<Job>>>,
    senders: Vec<mpsc::Sender<Tagged>>,
    events: mpsc::UnboundedSender<ReaderEvent>,
    stop: Arc<AtomicBool>,
    cancel: Arc<AtomicBool>,
    options: ReadOptions,
    load_id: Arc<str>,
    load_time_us: i64,
}

impl ReaderCtx {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.cancel.load(Ordering::SeqCst)
    }

    /// Takes files from the queue until it is empty, a file fails or the load is stopped.
    fn run(self) {
        while !self.stopped() {
            let Some(job) = self.jobs.lock().map(|mut q| q.pop_front()).ok().flatten() else {
                return;
            };
            let event = match self.read(&job) {
                Ok(Some((format, counts))) => ReaderEvent::Done {
                    reader: self.reader,
                    index: job.index,
                    format,
                    counts,
                },
                Ok(None) => return,
                Err(e) => ReaderEvent::Failed(e),
            };
            let failed = matches!(event, ReaderEvent::Failed(_));
            if self.events.send(event).is_err() || failed {
                return;
            }
        }
    }

    /// Reads one file into the sinks; `None` when stopped part way.
    fn read(&self, job: &Job) -> Result<Option<(Format, Counts)>> {
        let provenance = Provenance {
            source_file: Arc::from(job.path.display().to_string()),
            sheet: None,
            load_id: self.load_id.clone(),
            load_time_us: self.load_time_us,
        };
        let mut reader = FileReader::open(&job.path, &self.options, provenance)?;
        let format = reader.format();
        while let Some(chunk) = reader.next() {
            if self.stopped() {
                return Ok(None);
            }
            let chunk = chunk?;
            let batches = [chunk.raw, chunk.dead_letters, chunk.orders];
            for (tx, batch) in self.senders.iter().zip(batches) {
                if batch.num_rows() > 0
                    && tx.blocking_send((job.fingerprint.clone(), batch)).is_err()
                {
                    return Err(EngineError::Internal("a table writer stopped".into()));
                }
            }
            let _ = self.events.send(ReaderEvent::Progress {
                reader: self.reader,
                bytes: reader.bytes_read(),
                rows: reader.counts().read,
            });
        }
        Ok(Some((format, reader.counts())))
    }
}

fn loads_batch(load_id: &str, load_time_us: i64, rows: &[&FileOutcome]) -> RecordBatch {
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
    for o in rows {
        id.append_value(load_id);
        file.append_value(o.path.display().to_string());
        fp.append_value(&o.fingerprint);
        format.append_value(&o.format);
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
