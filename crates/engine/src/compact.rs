//! Compaction (a Delta `OPTIMIZE` commit): the live load commits small files, one per partition it touches
//! per commit, and a table of many small files is slow to open and scan. [`compact`] rewrites the small
//! files of each partition into files of the target size, in one Delta commit that removes the old files
//! and adds the new ones as a rearrangement (`dataChange = false`): every version still holds the same
//! rows, loads committing meanwhile (appends) do not conflict with it, and a crash before the commit
//! leaves the table as it was (the files it wrote are not in the log). The old files stay on disk for
//! time travel until [`vacuum`] deletes them, after a retention period.
//!
//! The rewrite is ours, not delta-rs' `optimize`: delta-rs 1.1 drops a commit's application transactions
//! in `optimize`, and the transaction is what keeps two compactions apart (below).
//!
//! Two compactions at once must not happen: Delta does not see two rewrites of the same files as a
//! conflict, so both would commit and the rows would be there twice. Every compaction commit therefore
//! carries a Delta application transaction of its own (`shopstream.compact.<table>`): of two compactions
//! that read the same version, Delta's conflict checker refuses the second commit, whichever worker or
//! paused process makes it; one that read a later version no longer sees the files the first rewrote. A
//! lock file (`lake/.compact.lock`) also keeps one compaction per local lake, saving the wasted rewrite.

use std::collections::{BTreeMap, HashMap};

use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Transaction};
use deltalake::operations::vacuum::VacuumMode;
use deltalake::protocol::DeltaOperation;

use crate::error::{EngineError, Result};
use crate::lake::{Lake, Table};
use crate::migrate::{conform, data_file};
use crate::sink::{TableSink, WriteOptions};

/// What one compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactSummary {
    /// The table's name.
    pub table: String,
    /// Data files before.
    pub files_before: usize,
    /// Small files rewritten (removed from the table).
    pub files_removed: u64,
    /// Files written in their place.
    pub files_added: u64,
    /// Partitions that had files rewritten.
    pub partitions: u64,
    /// The version committed; `None` when there was nothing to do.
    pub version: Option<u64>,
}

/// The application id every compaction commit of `kind` carries: two compactions of one version conflict.
pub fn compaction_app_id(kind: &Table) -> String {
    format!("shopstream.compact.{}", kind.name())
}

/// Compacts `kind`'s table with the lake's write options (target file size, zstd, statistics).
/// [`EngineError::CompactionRunning`] when another compaction of the local lake runs; a Delta conflict
/// when another compaction committed a rewrite of the version this one read.
pub async fn compact(lake: &Lake, kind: &Table, write: &WriteOptions) -> Result<CompactSummary> {
    let _lock = crate::load::lock_lake(lake, ".compact.lock").map_err(|e| match e {
        EngineError::Busy(dir) => EngineError::CompactionRunning(dir),
        e => e,
    })?;
    let mut summary = CompactSummary {
        table: kind.name().to_string(),
        ..CompactSummary::default()
    };
    let Some(table) = lake.open(kind).await? else {
        return Ok(summary);
    };
    let snapshot = table.snapshot().map_err(EngineError::delta(kind.name()))?;
    summary.files_before = snapshot.log_data().iter().count();
    let read_version = snapshot.version();
    let bins = small_files(&table, kind, write)?;
    if bins.is_empty() {
        return Ok(summary);
    }
    let mut sink = TableSink::new(kind.clone(), table.clone(), write);
    let mut removes = Vec::new();
    for bin in &bins {
        for file in bin {
            rewrite_file(kind, &table, file, &mut sink).await?;
            removes.push(file.remove.clone());
        }
    }
    let (table, mut adds) = sink.finish().await?;
    for add in &mut adds {
        add.data_change = false;
    }
    summary.files_removed = removes.len() as u64;
    summary.files_added = adds.len() as u64;
    summary.partitions = bins.len() as u64;
    let mut actions: Vec<Action> = removes.into_iter().map(Action::Remove).collect();
    actions.extend(adds.into_iter().map(Action::Add));
    let guard = Transaction::new(compaction_app_id(kind), read_version as i64);
    let operation = DeltaOperation::Optimize {
        predicate: None,
        target_size: write.target_file_size as i64,
    };
    let snapshot = table.snapshot().map_err(EngineError::delta(kind.name()))?;
    let finalized =
        CommitBuilder::from(CommitProperties::default().with_application_transaction(guard))
            .with_actions(actions)
            .build(Some(snapshot), table.log_store(), operation)
            .await
            .map_err(EngineError::delta(kind.name()))?;
    summary.version = Some(finalized.version());
    Ok(summary)
}

/// A data file to rewrite: where it is, its partition values, and the action removing it.
struct SmallFile {
    path: String,
    partition: HashMap<String, Option<String>>,
    remove: deltalake::kernel::Remove,
}

/// Per partition with at least two of them, the files smaller than the target size.
fn small_files(
    table: &DeltaTable,
    kind: &Table,
    write: &WriteOptions,
) -> Result<Vec<Vec<SmallFile>>> {
    let snapshot = table.snapshot().map_err(EngineError::delta(kind.name()))?;
    let target = write.target_file_size as i64;
    let mut bins: BTreeMap<String, Vec<SmallFile>> = BTreeMap::new();
    for file in snapshot.log_data().iter() {
        if file.size() >= target {
            continue;
        }
        let partition = file.partition_values_map();
        let key = format!("{:?}", partition.iter().collect::<BTreeMap<_, _>>());
        bins.entry(key).or_default().push(SmallFile {
            path: file.path().to_string(),
            partition,
            remove: file.remove_action(false),
        });
    }
    Ok(bins.into_values().filter(|b| b.len() > 1).collect())
}

/// Reads one data file and writes its rows into `sink`.
async fn rewrite_file(
    kind: &Table,
    table: &DeltaTable,
    file: &SmallFile,
    sink: &mut TableSink,
) -> Result<()> {
    let fail = |reason: String| EngineError::Location {
        location: format!("{}/{}", kind.name(), file.path),
        reason,
    };
    let reader = data_file(&table.object_store(), &file.path)
        .await
        .map_err(fail)?;
    let target = kind.schema();
    for batch in reader {
        let batch = batch.map_err(|e| fail(e.to_string()))?;
        let batch = conform(kind, &target, &batch, &file.partition).map_err(fail)?;
        sink.write(&batch).await?;
    }
    Ok(())
}

/// Deletes the data files `kind`'s table stopped using (compacted away) more than `retention` ago
/// (Delta `VACUUM`); returns how many. Readers of a version older than that could no longer read it.
pub async fn vacuum(lake: &Lake, kind: &Table, retention: std::time::Duration) -> Result<usize> {
    run_vacuum(lake, kind, retention, VacuumMode::Lite).await
}

/// Deletes the Parquet files in `kind`'s table folder that no Delta commit references and that are older
/// than `older_than` (Delta `VACUUM` in full mode): what a load or compaction killed before its commit
/// left behind. Younger files are kept, as a writer may be about to commit them. Returns how many.
pub async fn vacuum_orphans(
    lake: &Lake,
    kind: &Table,
    older_than: std::time::Duration,
) -> Result<usize> {
    run_vacuum(lake, kind, older_than, VacuumMode::Full).await
}

async fn run_vacuum(
    lake: &Lake,
    kind: &Table,
    retention: std::time::Duration,
    mode: VacuumMode,
) -> Result<usize> {
    let Some(table) = lake.open(kind).await? else {
        return Ok(0);
    };
    let retention = chrono::Duration::from_std(retention)
        .map_err(|e| EngineError::Internal(format!("retention: {e}")))?;
    let (_, metrics) = table
        .vacuum()
        .with_mode(mode)
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .await
        .map_err(EngineError::delta(kind.name()))?;
    Ok(metrics.files_deleted.len())
}

/// How long a worker may compact a lake in object storage before another may take over.
const COMPACTION_LEASE: std::time::Duration = std::time::Duration::from_secs(600);

/// For a lake in object storage, the compaction lease for one round: `Ok(Some(None))` on a local lake
/// (its lock file does the job), `Ok(None)` when another worker holds it.
async fn round_lease(lake: &Lake, holder: &str) -> Result<Option<Option<crate::lease::Lease>>> {
    if !lake.is_remote() {
        return Ok(Some(None));
    }
    match crate::lease::Lease::acquire(lake, "compaction", holder, COMPACTION_LEASE).await? {
        Ok(lease) => Ok(Some(Some(lease))),
        Err(state) => {
            tracing::info!(
                "compaction skipped: {} holds the lake's compaction lease",
                state.holder
            );
            Ok(None)
        }
    }
}

/// Unreferenced files younger than this are kept by the background cleanup (a writer may be about to
/// commit them).
const ORPHAN_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Compacts every table each `every` until `stop` is set (the live path's background compaction), then
/// deletes the files compactions replaced more than `retention` ago. A failure is logged and tried
/// again next time: the tables are as they were. Once a day (and on the first round) it also deletes
/// unreferenced files a day old ([`vacuum_orphans`]).
pub async fn run_every(
    lake: Lake,
    write: WriteOptions,
    every: std::time::Duration,
    retention: std::time::Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<()> {
    use std::sync::atomic::Ordering;
    let tick = std::time::Duration::from_millis(200);
    // The first round soon after start, so a server restarted often still compacts.
    let mut wait = every.min(std::time::Duration::from_secs(30));
    let mut waited = std::time::Duration::ZERO;
    let mut orphans_checked: Option<std::time::Instant> = None;
    let holder = crate::lease::holder_name();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(tick).await;
        waited += tick;
        if waited < wait {
            continue;
        }
        waited = std::time::Duration::ZERO;
        wait = every;
        // On object storage one worker compacts at a time: the lease saves the others' wasted rewrites
        // (their commits would be refused anyway).
        let lease = match round_lease(&lake, &holder).await {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("taking the compaction lease: {e}");
                continue;
            }
        };
        let tables = match lake.list().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("listing the lake's tables: {e}");
                continue;
            }
        };
        for kind in &tables {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            // One thread: the server keeps answering meanwhile.
            match compact(&lake, kind, &write).await {
                Ok(s) if s.version.is_some() => tracing::info!(
                    "compacted {}: {} files into {} in {} partitions (version {:?})",
                    s.table,
                    s.files_removed,
                    s.files_added,
                    s.partitions,
                    s.version
                ),
                Ok(_) => {}
                Err(EngineError::CompactionRunning(_)) => {
                    tracing::info!("compaction skipped: another compaction of the lake runs");
                    break;
                }
                Err(e) => tracing::warn!("compacting {}: {e}", kind.name()),
            }
            match vacuum(&lake, kind, retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!("vacuumed {}: {n} replaced files deleted", kind.name()),
                Err(e) => tracing::warn!("vacuuming {}: {e}", kind.name()),
            }
        }
        if orphans_checked.is_none_or(|t| t.elapsed() >= ORPHAN_AGE) {
            orphans_checked = Some(std::time::Instant::now());
            for kind in &tables {
                match vacuum_orphans(&lake, kind, ORPHAN_AGE.max(retention)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("{}: {n} unreferenced files deleted", kind.name()),
                    Err(e) => tracing::warn!("cleaning {}: {e}", kind.name()),
                }
            }
        }
        if let Some(lease) = lease {
            lease.release().await;
        }
    }
    Ok(())
}
