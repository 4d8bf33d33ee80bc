//! Compaction (Delta `OPTIMIZE`): the live load commits small files, one per partition it touches per
//! commit, and a table of many small files is slow to open and scan. [`compact`] rewrites the small
//! files of each partition into files of the target size, in one Delta commit that removes the old files
//! and adds the new ones as a rearrangement (`dataChange = false`): every version still holds the same
//! rows, loads committing meanwhile (appends) do not conflict with it, and a crash before the commit
//! leaves the table as it was (the files it wrote are not in the log). The old files stay on disk for
//! time travel until [`vacuum`] deletes them, after a retention period.
//!
//! Two compactions at once must not happen: Delta does not see two rewrites of the same files as a
//! conflict, so both would commit and the rows would be there twice. A lock file
//! (`lake/.compact.lock`) keeps one compaction per local lake; a lake on object storage must have a
//! single compactor (one `serve`, or `compact_every_s = 0` and one scheduled `shopstream compact`).

use std::num::NonZeroU64;

use deltalake::operations::vacuum::VacuumMode;

use crate::error::{EngineError, Result};
use crate::lake::{Lake, Table};
use crate::sink::{WriteOptions, writer_properties};

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

/// Compacts `kind`'s table with the lake's write options (target file size, zstd, statistics), using up
/// to `tasks` threads. [`EngineError::CompactionRunning`] when another compaction of the lake runs.
pub async fn compact(
    lake: &Lake,
    kind: &Table,
    write: &WriteOptions,
    tasks: usize,
) -> Result<CompactSummary> {
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
    let before = table.version();
    summary.files_before = table
        .get_file_uris()
        .map_err(EngineError::delta(kind.name()))?
        .count();
    let target = NonZeroU64::new(write.target_file_size.max(1)).expect("at least 1");
    let (table, metrics) = table
        .optimize()
        .with_target_size(target)
        .with_writer_properties(writer_properties(kind, write))
        .with_max_concurrent_tasks(tasks.max(1))
        .await
        .map_err(EngineError::delta(kind.name()))?;
    summary.files_removed = metrics.num_files_removed;
    summary.files_added = metrics.num_files_added;
    summary.partitions = metrics.partitions_optimized;
    // Only a rewrite counts: the table may also have moved on by a load's commit meanwhile.
    summary.version = table
        .version()
        .filter(|v| Some(*v) != before && metrics.num_files_removed > 0);
    Ok(summary)
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
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(tick).await;
        waited += tick;
        if waited < wait {
            continue;
        }
        waited = std::time::Duration::ZERO;
        wait = every;
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
            match compact(&lake, kind, &write, 1).await {
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
    }
    Ok(())
}
