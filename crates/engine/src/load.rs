//! Loading files into the lake, exactly once per file content.
//!
//! A load first fingerprints its files (blake3 of the content) and skips those already recorded in
//! `loads`. The rest are read by up to one thread per core, each taking the next file; their batches
//! flow through bounded channels into one streaming [`TableSink`] task per table of the dataset loaded
//! ([`row_tables`]: `raw_orders`, `dead_letters`, `orders` for orders; `dead_letters` and its own table
//! for any other), so parsing and Parquet encoding run in parallel and memory stays bounded by the
//! channels and the sinks' open files, not by the input. Nothing is visible until the commits at the end:
//! one per table in that order, then `loads`, each carrying a Delta application transaction (`txn`) per
//! file content fingerprint (and dataset: the same file may load into two datasets). The `loads` commit
//! is the load's record: a file whose fingerprint is in `loads` is skipped by later loads. A table
//! that already holds a fingerprint's transaction (a load killed between its commits) does not get
//! that file's rows again, so rerunning an interrupted load completes it without doubling anything.
//! Concurrent writers to one lake are excluded by a lock file; Delta's conflict checker rejects a
//! concurrent commit of the same transaction ids as a second line of defence.
//!
//! A file that cannot be read (not the format its name says, a hostile workbook, a corrupt Parquet page)
//! is *refused*: none of its rows are committed, the other files load, and the refusal is recorded as one
//! `dead_letters` row naming the file and the reason (once per content, Delta txn
//! `shopstream.refused.<fingerprint>`). A file that fails part way through, after some of its rows went to
//! the writers, makes the load start over without it: its rows are in the same Parquet files as the other
//! files' and cannot be taken out, so nothing of that attempt is committed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder};
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use shopstream_ingest::{Chunk, Counts, Dataset, FileReader, Format, Provenance, ReadOptions};
use tokio::sync::mpsc;

use crate::error::{EngineError, Result};
use crate::lake::{Lake, Table};
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
    /// Set when the file was refused: why (nothing of it was loaded).
    pub refused: Option<String>,
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

/// The Delta txn recording that a file content was loaded into `dataset` (orders keeps the id it had
/// before datasets, so lakes from then stay exactly-once).
fn txn_id(dataset: &Dataset, fingerprint: &str) -> String {
    if dataset.is_orders() {
        format!("shopstream.file.{fingerprint}")
    } else {
        format!("shopstream.file.{}.{fingerprint}", dataset.name)
    }
}

/// The Delta txn recording that a file content was refused (its `dead_letters` row is written once).
fn refused_txn_id(fingerprint: &str) -> String {
    format!("shopstream.refused.{fingerprint}")
}

/// An exclusive lock on a local lake, released on drop.
pub(crate) struct WriterLock(#[allow(dead_code)] std::fs::File);

/// Takes the lake's lock file `name` (`Busy` when another process or task holds it); `None` for a lake
/// that is not a local folder.
pub(crate) fn lock_lake(lake: &Lake, name: &str) -> Result<Option<WriterLock>> {
    lock_lake_as(lake, name, false)
}

/// Takes lock file `name` of a local lake, shared with other holders of it (`None` for remote lakes).
pub(crate) fn lock_lake_shared(lake: &Lake, name: &str) -> Result<Option<WriterLock>> {
    lock_lake_as(lake, name, true)
}

fn lock_lake_as(lake: &Lake, name: &str, shared: bool) -> Result<Option<WriterLock>> {
    let Some(dir) = lake.local_dir() else {
        return Ok(None);
    };
    let path = dir.join(name);
    let file = std::fs::create_dir_all(&dir)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        })
        .map_err(|e| EngineError::Location {
            location: path.display().to_string(),
            reason: e.to_string(),
        })?;
    let locked = if shared {
        file.try_lock_shared()
    } else {
        file.try_lock()
    };
    match locked {
        Ok(()) => Ok(Some(WriterLock(file))),
        Err(std::fs::TryLockError::WouldBlock) => Err(EngineError::Busy(dir.display().to_string())),
        Err(std::fs::TryLockError::Error(e)) => Err(EngineError::Location {
            location: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

async fn has_app_txn(table: &DeltaTable, kind: &Table, app_id: String) -> Result<bool> {
    let snapshot = table.snapshot().map_err(EngineError::delta(kind.name()))?;
    let v = snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(EngineError::delta(kind.name()))?;
    Ok(v.is_some())
}

/// The tables a load of `dataset` writes rows to, in commit order (`loads` is written after them): for
/// orders `raw_orders`, `dead_letters`, `orders`; for another dataset `dead_letters` and its table. The
/// dataset's own table is always last.
pub(crate) fn row_tables(dataset: &Arc<Dataset>) -> Vec<Table> {
    if dataset.is_orders() {
        vec![Table::raw_orders(), Table::dead_letters(), Table::orders()]
    } else {
        vec![Table::dead_letters(), Table::of_dataset(dataset)]
    }
}

/// The batch of `chunk` that goes to `table`.
pub(crate) fn batch_for<'a>(chunk: &'a Chunk, table: &Table) -> &'a RecordBatch {
    match table.name() {
        "raw_orders" => &chunk.raw,
        "dead_letters" => &chunk.dead_letters,
        _ => &chunk.rows,
    }
}

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
    /// The file cannot be read; `sent`: some of its rows already went to the writers.
    Refused {
        reader: usize,
        index: usize,
        reason: String,
        sent: bool,
    },
    Failed(EngineError),
}

/// Why reading a file stopped.
enum ReadFailure {
    /// The file is unreadable (`sent`: after some of its rows went to the writers).
    File { reason: String, sent: bool },
    /// The load itself failed (a writer stopped).
    Load(Box<EngineError>),
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
/// [`EngineError::Interrupted`]. Refused files are in the summary (`refused`), not an error.
pub async fn load_files(
    lake: &Lake,
    files: &[PathBuf],
    read: &ReadOptions,
    write: &WriteOptions,
    cancel: Arc<AtomicBool>,
    on_event: &(dyn Fn(LoadEvent) + Send + Sync),
) -> Result<LoadSummary> {
    let _lock = lock_lake(lake, ".writer.lock")?;
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .collect();
    on_event(LoadEvent::Started {
        total_bytes: sizes.iter().sum(),
        files: files.len(),
    });
    let fingerprints = fingerprint_all(files, reader_threads(files.len())).await?;
    let input = Input {
        files,
        sizes: &sizes,
        fingerprints: &fingerprints,
        read,
        write,
        cancel,
    };
    // Files refused part way through make the load start over without them (module documentation).
    let mut refused: HashMap<usize, String> = HashMap::new();
    let reported = Mutex::new(HashSet::new());
    let on_file = |index: usize, outcome: &FileOutcome| {
        if reported.lock().is_ok_and(|mut r| r.insert(index)) {
            on_event(LoadEvent::File(outcome.clone()));
        }
    };
    loop {
        match attempt(lake, &input, &refused, on_event, &on_file).await? {
            Attempt::Done(summary) => return Ok(summary),
            Attempt::Restart(more) => refused.extend(more),
        }
    }
}

/// What a load reads and how.
struct Input<'a> {
    files: &'a [PathBuf],
    sizes: &'a [u64],
    fingerprints: &'a [String],
    read: &'a ReadOptions,
    write: &'a WriteOptions,
    cancel: Arc<AtomicBool>,
}

impl Input<'_> {
    fn outcome(&self, index: usize) -> FileOutcome {
        FileOutcome {
            path: self.files[index].clone(),
            fingerprint: self.fingerprints[index].clone(),
            format: String::new(),
            counts: Counts::default(),
            already_loaded: false,
            refused: None,
        }
    }
}

/// How one attempt at a load ended.
enum Attempt {
    Done(LoadSummary),
    /// Files refused after some of their rows were written: start over without them.
    Restart(Vec<(usize, String)>),
}

/// What an attempt does with each file, decided before reading.
struct Plan {
    /// Outcomes known before reading: refused earlier, or loaded by an earlier load.
    outcomes: Vec<Option<FileOutcome>>,
    /// The files to read.
    jobs: VecDeque<Job>,
    /// (file, earlier file with the same content in this load): they share its outcome.
    duplicates: Vec<(usize, usize)>,
    /// Per row table, the fingerprints it already holds (a load killed between its commits).
    done: Vec<HashSet<Arc<str>>>,
    /// Per row table, the fingerprints it is to receive.
    pending: Vec<Vec<String>>,
    /// Bytes of the files not read.
    bytes_done: u64,
}

/// Plans an attempt: which files to read, and per table which fingerprints it holds or will get.
async fn plan(
    input: &Input<'_>,
    refused: &HashMap<usize, String>,
    loads: &DeltaTable,
    tables: &[(Table, DeltaTable)],
    on_file: &(dyn Fn(usize, &FileOutcome) + Send + Sync),
) -> Result<Plan> {
    let dataset = &input.read.dataset;
    let mut plan = Plan {
        outcomes: vec![None; input.files.len()],
        jobs: VecDeque::new(),
        duplicates: Vec::new(),
        done: vec![HashSet::new(); tables.len()],
        pending: vec![Vec::new(); tables.len()],
        bytes_done: 0,
    };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, fp) in input.fingerprints.iter().enumerate() {
        let known = if let Some(reason) = refused.get(&index) {
            let mut outcome = input.outcome(index);
            outcome.refused = Some(reason.clone());
            Some(outcome)
        } else if let Some(&first) = seen.get(fp.as_str()) {
            // A second file with the same content shares the first one's fate (reported last).
            plan.duplicates.push((index, first));
            plan.bytes_done += input.sizes[index];
            continue;
        } else if has_app_txn(loads, &Table::loads(), txn_id(dataset, fp)).await? {
            seen.insert(fp, index);
            let mut outcome = input.outcome(index);
            outcome.already_loaded = true;
            Some(outcome)
        } else {
            seen.insert(fp, index);
            None
        };
        if let Some(outcome) = known {
            on_file(index, &outcome);
            plan.outcomes[index] = Some(outcome);
            plan.bytes_done += input.sizes[index];
            continue;
        }
        let fingerprint: Arc<str> = Arc::from(fp.as_str());
        for (t, (kind, table)) in tables.iter().enumerate() {
            if has_app_txn(table, kind, txn_id(dataset, fp)).await? {
                plan.done[t].insert(fingerprint.clone());
            } else {
                plan.pending[t].push(fp.clone());
            }
        }
        plan.jobs.push_back(Job {
            index,
            path: input.files[index].clone(),
            fingerprint,
        });
    }
    Ok(plan)
}

/// One attempt at loading the files not in `refused`; nothing is committed unless it is `Done`.
async fn attempt(
    lake: &Lake,
    input: &Input<'_>,
    refused: &HashMap<usize, String>,
    on_event: &(dyn Fn(LoadEvent) + Send + Sync),
    on_file: &(dyn Fn(usize, &FileOutcome) + Send + Sync),
) -> Result<Attempt> {
    let load_id = uuid::Uuid::new_v4().to_string();
    let load_time_us = chrono::Utc::now().timestamp_micros();
    let files = input.files;
    let sizes = input.sizes;
    let parallelism = reader_threads(files.len());
    let loads = lake.open_or_create(&Table::loads()).await?;
    let mut tables = Vec::new();
    for kind in row_tables(&input.read.dataset) {
        let table = lake.open_or_create(&kind).await?;
        tables.push((kind, table));
    }
    let kinds: Vec<Table> = tables.iter().map(|(k, _)| k.clone()).collect();

    let Plan {
        mut outcomes,
        jobs,
        duplicates,
        done,
        mut pending,
        mut bytes_done,
    } = plan(input, refused, &loads, &tables, on_file).await?;

    // One sink task per table.
    let mut senders = Vec::new();
    let mut sink_tasks = Vec::new();
    for ((kind, table), done) in tables.into_iter().zip(done) {
        let (tx, rx) = mpsc::channel::<Tagged>(2);
        senders.push(tx);
        sink_tasks.push(tokio::spawn(run_sink(
            TableSink::new(kind, table, input.write),
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
            tables: kinds.clone(),
            events: ev_tx.clone(),
            stop: stop.clone(),
            cancel: input.cancel.clone(),
            options: input.read.clone(),
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
    let mut restart: Vec<(usize, String)> = Vec::new();
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
                let mut outcome = input.outcome(index);
                outcome.format = format.name().into();
                outcome.counts = counts;
                on_file(index, &outcome);
                outcomes[index] = Some(outcome);
            }
            ReaderEvent::Refused {
                reader,
                index,
                reason,
                sent,
            } => {
                in_flight[reader] = (0, 0);
                bytes_done += sizes[index];
                if sent {
                    // Reading goes on: every file failing part way is found in this attempt, so the
                    // load starts over once, not once per such file.
                    restart.push((index, reason));
                } else {
                    let mut outcome = input.outcome(index);
                    outcome.refused = Some(reason);
                    on_file(index, &outcome);
                    outcomes[index] = Some(outcome);
                }
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
    if input.cancel.load(Ordering::SeqCst) {
        return Err(EngineError::Interrupted);
    }
    if !restart.is_empty() {
        // The files written meanwhile are unreferenced; the background cleanup removes them. Every
        // refusal is carried over, so the next attempt does not read those files again.
        restart.extend(outcomes.iter().enumerate().filter_map(|(i, o)| {
            let reason = o.as_ref()?.refused.clone()?;
            Some((i, reason))
        }));
        return Ok(Attempt::Restart(restart));
    }
    for (index, first) in duplicates {
        let mut outcome = input.outcome(index);
        match outcomes[first].as_ref().and_then(|o| o.refused.clone()) {
            Some(reason) => outcome.refused = Some(reason),
            None => outcome.already_loaded = true,
        }
        on_file(index, &outcome);
        outcomes[index] = Some(outcome);
    }
    // Only the files read to the end get their txn in the row tables: a refused file must load
    // in full when it is given again once fixed (a mapping added, the right `--sheet`).
    let read: HashSet<&str> = outcomes
        .iter()
        .flatten()
        .filter(|o| !o.already_loaded && o.refused.is_none())
        .map(|o| o.fingerprint.as_str())
        .collect();
    for p in &mut pending {
        p.retain(|fp| read.contains(fp.as_str()));
    }
    let refusals: Vec<FileOutcome> = outcomes
        .iter()
        .flatten()
        .filter(|o| o.refused.is_some())
        .cloned()
        .collect();
    summary.files = outcomes.into_iter().flatten().collect();
    on_event(LoadEvent::Committing);
    commit_load(written, pending, loads, &mut summary, load_time_us, input).await?;
    record_refusals(lake, &refusals, &load_id, load_time_us, input).await?;
    Ok(Attempt::Done(summary))
}

/// Commits the row tables (one commit each, the files' txns) and then `loads`.
async fn commit_load(
    written: Vec<(Table, DeltaTable, Vec<deltalake::kernel::Add>)>,
    pending: Vec<Vec<String>>,
    loads: DeltaTable,
    summary: &mut LoadSummary,
    load_time_us: i64,
    input: &Input<'_>,
) -> Result<()> {
    let dataset = &input.read.dataset;
    let load_id = summary.load_id.clone();
    let meta = HashMap::from([(
        "shopstream.load_id".to_string(),
        serde_json::Value::String(load_id.clone()),
    )]);
    for ((kind, table, adds), pending) in written.into_iter().zip(pending) {
        if pending.is_empty() {
            continue;
        }
        let txns = pending
            .iter()
            .map(|fp| Transaction::new(txn_id(dataset, fp), 1))
            .collect();
        let version = commit_adds(&kind, &table, adds, txns, meta.clone()).await?;
        if kind.dataset().is_some() {
            summary.orders_version = version;
        }
    }
    let loaded: Vec<&FileOutcome> = summary
        .files
        .iter()
        .filter(|o| !o.already_loaded && o.refused.is_none())
        .collect();
    if !loaded.is_empty() {
        let mut sink = TableSink::new(Table::loads(), loads, input.write);
        sink.write(&loads_batch(&load_id, load_time_us, &loaded))
            .await?;
        let (loads, adds) = sink.finish().await?;
        let txns = loaded
            .iter()
            .map(|o| Transaction::new(txn_id(dataset, &o.fingerprint), 1))
            .collect();
        commit_adds(&Table::loads(), &loads, adds, txns, meta).await?;
    }
    Ok(())
}

/// Records each refused file content once in `dead_letters`: the file, `field` NULL, the reason.
async fn record_refusals(
    lake: &Lake,
    refused: &[FileOutcome],
    load_id: &str,
    load_time_us: i64,
    input: &Input<'_>,
) -> Result<()> {
    if refused.is_empty() {
        return Ok(());
    }
    let dead_letters = Table::dead_letters();
    let table = lake.open_or_create(&dead_letters).await?;
    // One row per refused path; a content already recorded (an earlier load) is not recorded again.
    let mut new = Vec::new();
    let mut contents: Vec<&str> = Vec::new();
    for o in refused {
        let app_id = refused_txn_id(&o.fingerprint);
        if contents.contains(&o.fingerprint.as_str())
            || !has_app_txn(&table, &dead_letters, app_id).await?
        {
            new.push(o);
            if !contents.contains(&o.fingerprint.as_str()) {
                contents.push(&o.fingerprint);
            }
        }
    }
    if new.is_empty() {
        return Ok(());
    }
    let mut sink = TableSink::new(dead_letters.clone(), table, input.write);
    let dataset = &input.read.dataset.name;
    sink.write(&refusals_batch(load_id, load_time_us, dataset, &new))
        .await?;
    let (table, adds) = sink.finish().await?;
    let txns = contents
        .iter()
        .map(|fp| Transaction::new(refused_txn_id(fp), 1))
        .collect();
    let meta = HashMap::from([(
        "shopstream.load_id".to_string(),
        serde_json::Value::String(load_id.to_string()),
    )]);
    commit_adds(&dead_letters, &table, adds, txns, meta).await?;
    Ok(())
}

/// A sink task: writes every batch whose file the table does not already hold.
async fn run_sink(
    mut sink: TableSink,
    mut rx: mpsc::Receiver<Tagged>,
    done: HashSet<Arc<str>>,
) -> Result<(Table, DeltaTable, Vec<deltalake::kernel::Add>)> {
    while let Some((fingerprint, batch)) = rx.recv().await {
        if !done.contains(&fingerprint) {
            sink.write(&batch).await?;
        }
    }
    let kind = sink.kind().clone();
    let (table, adds) = sink.finish().await?;
    Ok((kind, table, adds))
}

/// What a reader thread needs.
struct ReaderCtx {
    reader: usize,
    jobs: Arc<Mutex<VecDeque<Job>>>,
    senders: Vec<mpsc::Sender<Tagged>>,
    /// The table of each sender.
    tables: Vec<Table>,
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

    /// Takes files from the queue until it is empty, the load fails or is stopped.
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
                Err(ReadFailure::File { reason, sent }) => ReaderEvent::Refused {
                    reader: self.reader,
                    index: job.index,
                    reason,
                    sent,
                },
                Err(ReadFailure::Load(e)) => ReaderEvent::Failed(*e),
            };
            let failed = matches!(event, ReaderEvent::Failed(_));
            if self.events.send(event).is_err() || failed {
                return;
            }
        }
    }

    /// Reads one file into the sinks; `None` when stopped part way.
    fn read(&self, job: &Job) -> Result<Option<(Format, Counts)>, ReadFailure> {
        let provenance = Provenance {
            source_file: Arc::from(job.path.display().to_string()),
            sheet: None,
            load_id: self.load_id.clone(),
            load_time_us: self.load_time_us,
        };
        let refuse = |e: shopstream_ingest::IngestError, sent: bool| ReadFailure::File {
            reason: e.to_string(),
            sent,
        };
        let mut reader =
            FileReader::open(&job.path, &self.options, provenance).map_err(|e| refuse(e, false))?;
        let format = reader.format();
        let mut sent = false;
        while let Some(chunk) = reader.next() {
            if self.stopped() {
                return Ok(None);
            }
            let chunk = chunk.map_err(|e| refuse(e, sent))?;
            for (tx, table) in self.senders.iter().zip(&self.tables) {
                let batch = batch_for(&chunk, table).clone();
                if batch.num_rows() > 0 {
                    sent = true;
                    if tx.blocking_send((job.fingerprint.clone(), batch)).is_err() {
                        return Err(ReadFailure::Load(Box::new(EngineError::Internal(
                            "a table writer stopped".into(),
                        ))));
                    }
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

/// One `dead_letters` row per refused file: no line, no field, the reason.
fn refusals_batch(
    load_id: &str,
    load_time_us: i64,
    dataset: &str,
    rows: &[&FileOutcome],
) -> RecordBatch {
    use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
    let n = rows.len();
    let file: StringArray = rows
        .iter()
        .map(|o| Some(o.path.display().to_string()))
        .collect();
    let reason: StringArray = rows
        .iter()
        .map(|o| {
            Some(format!(
                "file refused: {}",
                o.refused.as_deref().unwrap_or_default()
            ))
        })
        .collect();
    let text = |v: Option<&str>| -> ArrayRef { Arc::new(StringArray::from(vec![v; n])) };
    RecordBatch::try_new(
        Table::dead_letters().schema(),
        vec![
            Arc::new(file),
            Arc::new(Int64Array::from(vec![0i64; n])),
            text(None),
            text(Some(load_id)),
            text(None),
            Arc::new(reason),
            text(Some("{}")),
            Arc::new(TimestampMicrosecondArray::from(vec![load_time_us; n])),
            text(Some(dataset)),
        ],
    )
    .expect("refusals batch matches the dead-letter schema")
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
        Table::loads().schema(),
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
