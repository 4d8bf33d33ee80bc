//! One partition: its segments, appends acknowledged only once durable, reads up to the durable end.
//!
//! Appends are serialized by one lock: each encodes its records as a batch, writes it to the active segment
//! and learns its offsets. Durability is a separate step shared by everyone waiting (group commit): the
//! first appender to find no sync running becomes the syncer, notes how far the log is written, runs one
//! `fdatasync`, and then releases every appender whose records lie below that mark, however many arrived
//! meanwhile. With [`SyncPolicy::IntervalMs`] a background thread is the only syncer, every N ms, and appenders
//! wait for it: fewer syncs, longer acknowledgements. Either way an append returns only when its records are on
//! disk, and readers never see past the synced end (the high watermark), so nothing a consumer read can be
//! lost by a crash and its offsets reused. A failed sync poisons the partition: the page cache may have
//! dropped the unsynced pages, so retrying the sync could "succeed" on lost data.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::error::{LogError, Result};
use crate::record::{NewRecord, Record};
use crate::segment::{self, ReadLimits, Segment, SegmentSpan, Truncation};

/// When appends are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncPolicy {
    /// Every append waits for an fdatasync; concurrent appends share one (group commit). Lowest latency.
    EveryBatch,
    /// A background sync every N milliseconds; appends wait for the next one. Fewer syncs under load.
    IntervalMs(u64),
}

/// Settings of a topic's partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionConfig {
    /// Roll to a new segment file past this many bytes.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// Delete whole segments whose newest record is older than this (None: keep).
    #[serde(default)]
    pub retention_ms: Option<u64>,
    /// Delete the oldest segments while the partition is larger than this (None: no limit).
    #[serde(default)]
    pub retention_bytes: Option<u64>,
    /// When appends become durable.
    #[serde(default = "default_sync")]
    pub sync: SyncPolicy,
}

fn default_segment_bytes() -> u64 {
    64 * 1024 * 1024
}

fn default_sync() -> SyncPolicy {
    SyncPolicy::EveryBatch
}

impl Default for PartitionConfig {
    fn default() -> Self {
        PartitionConfig {
            segment_bytes: default_segment_bytes(),
            retention_ms: None,
            retention_bytes: None,
            sync: default_sync(),
        }
    }
}

/// Counters of one partition (monotonic since open).
#[derive(Debug, Default)]
pub struct PartitionStats {
    /// Records appended.
    pub records: AtomicU64,
    /// Batch bytes appended.
    pub bytes: AtomicU64,
    /// fdatasync calls made.
    pub syncs: AtomicU64,
    /// Segments removed by retention.
    pub segments_deleted: AtomicU64,
}

struct Writer {
    sealed: BTreeMap<u64, Segment>,
    active: Segment,
    buf: Vec<u8>,
}

struct SyncState {
    /// One past the last offset known durable: the high watermark.
    durable_end: u64,
    syncing: bool,
    poisoned: bool,
}

/// One partition of a topic.
pub struct Partition {
    name: String,
    dir: PathBuf,
    config: PartitionConfig,
    writer: Mutex<Writer>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    stats: PartitionStats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves the data consistent (no partial updates escape), so keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Partition {
    /// Opens (or creates) the partition in `dir`, recovering the active segment's tail.
    pub fn open(
        name: String,
        dir: &Path,
        config: PartitionConfig,
    ) -> Result<(Partition, Option<Truncation>)> {
        std::fs::create_dir_all(dir).map_err(LogError::io(dir))?;
        let mut bases: Vec<u64> = std::fs::read_dir(dir)
            .map_err(LogError::io(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().into_string().ok()?;
                n.strip_suffix(".log")?.parse::<u64>().ok()
            })
            .collect();
        bases.sort_unstable();
        let mut sealed = BTreeMap::new();
        let mut truncation = None;
        let active = match bases.split_last() {
            None => Segment::create(dir, 0)?,
            Some((&last, older)) => {
                for &b in older {
                    let (seg, t) = Segment::open(dir, b, true)?;
                    if let Some(t) = t {
                        // A sealed segment was synced before the next one began: damage there is not a crash.
                        return Err(LogError::Corrupt {
                            path: t.path,
                            position: t.at,
                            reason: t.reason,
                        });
                    }
                    sealed.insert(b, seg);
                }
                let (seg, t) = Segment::open(dir, last, false)?;
                if let Some(t) = &t {
                    tracing::warn!(
                        partition = %name,
                        file = %t.path.display(),
                        truncated_bytes = t.bytes,
                        at = t.at,
                        reason = %t.reason,
                        "log recovery: cut a torn or corrupt tail back to the last good batch"
                    );
                }
                truncation = t;
                seg
            }
        };
        let durable_end = active.end_offset;
        let p = Partition {
            name,
            dir: dir.to_path_buf(),
            config,
            writer: Mutex::new(Writer {
                sealed,
                active,
                buf: Vec::new(),
            }),
            sync: Mutex::new(SyncState {
                durable_end,
                syncing: false,
                poisoned: false,
            }),
            synced: Condvar::new(),
            stats: PartitionStats::default(),
        };
        Ok((p, truncation))
    }

    /// The partition's name (`topic/number`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counters.
    pub fn stats(&self) -> &PartitionStats {
        &self.stats
    }

    /// The settings.
    pub fn config(&self) -> &PartitionConfig {
        &self.config
    }

    /// Appends `records` as one batch and returns their offsets once they are durable.
    pub fn append(&self, records: &[NewRecord]) -> Result<std::ops::Range<u64>> {
        let range = self.write(records)?;
        self.wait_durable(range.end)?;
        Ok(range)
    }

    /// Writes a batch without waiting for durability; pair with [`wait_durable`](Self::wait_durable).
    pub fn write(&self, records: &[NewRecord]) -> Result<std::ops::Range<u64>> {
        if lock(&self.sync).poisoned {
            return Err(LogError::Poisoned(self.name.clone()));
        }
        let mut w = lock(&self.writer);
        let w = &mut *w;
        if records.is_empty() {
            return Ok(w.active.end_offset..w.active.end_offset);
        }
        if w.active.size > 0 && w.active.size >= self.config.segment_bytes {
            self.roll(w)?;
        }
        let base = w.active.end_offset;
        let header = segment::encode(base, records, &mut w.buf);
        w.active.append(&header, &w.buf)?;
        self.stats
            .records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(u64::from(header.length), Ordering::Relaxed);
        Ok(base..header.end_offset())
    }

    /// Seals the active segment (synced, indexes written) and starts the next one.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        w.active.seal(&self.dir)?;
        let next = Segment::create(&self.dir, w.active.end_offset)?;
        let old = std::mem::replace(&mut w.active, next);
        {
            // Everything in the sealed segment is synced now.
            let mut s = lock(&self.sync);
            s.durable_end = s.durable_end.max(old.end_offset);
        }
        self.synced.notify_all();
        w.sealed.insert(old.base_offset, old);
        self.enforce_retention(w, now_ms());
        Ok(())
    }

    /// Blocks until every offset below `end` is durable.
    pub fn wait_durable(&self, end: u64) -> Result<()> {
        let mut s = lock(&self.sync);
        loop {
            if s.durable_end >= end {
                return Ok(());
            }
            if s.poisoned {
                return Err(LogError::Poisoned(self.name.clone()));
            }
            if s.syncing || matches!(self.config.sync, SyncPolicy::IntervalMs(_)) {
                s = self.synced.wait(s).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            drop(s);
            self.sync_now()?;
            s = lock(&self.sync);
        }
    }

    /// Syncs what is written so far (one fdatasync) and advances the durable end. Concurrent callers wait
    /// for the sync in progress instead of starting another.
    pub fn sync_now(&self) -> Result<()> {
        {
            let mut s = lock(&self.sync);
            while s.syncing {
                s = self.synced.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            if s.poisoned {
                return Err(LogError::Poisoned(self.name.clone()));
            }
            s.syncing = true;
        }
        let (target, file, path): (u64, Arc<File>, PathBuf) = {
            let w = lock(&self.writer);
            (
                w.active.end_offset,
                w.active.file.clone(),
                w.active.path.clone(),
            )
        };
        let result = if target > lock(&self.sync).durable_end {
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            file.sync_data()
        } else {
            Ok(())
        };
        let mut s = lock(&self.sync);
        s.syncing = false;
        match &result {
            Ok(()) => s.durable_end = s.durable_end.max(target),
            Err(_) => s.poisoned = true,
        }
        drop(s);
        self.synced.notify_all();
        result.map_err(LogError::io(&path))
    }

    /// First offset still stored.
    pub fn start_offset(&self) -> u64 {
        let w = lock(&self.writer);
        w.sealed
            .keys()
            .next()
            .copied()
            .unwrap_or(w.active.base_offset)
    }

    /// One past the last durable offset (the high watermark).
    pub fn end_offset(&self) -> u64 {
        lock(&self.sync).durable_end
    }

    /// Reads up to `max_records` durable records from `offset` (at least one batch, then up to about
    /// `max_bytes`). Reading at the end returns nothing; before the start or past the end is an error.
    pub fn read(&self, offset: u64, max_records: usize, max_bytes: usize) -> Result<Vec<Record>> {
        let hw = self.end_offset();
        // Snapshot the segments to read: their bytes below the recorded size never change.
        let spans: Vec<SegmentSpan> = {
            let w = lock(&self.writer);
            let start = w
                .sealed
                .keys()
                .next()
                .copied()
                .unwrap_or(w.active.base_offset);
            if offset < start || offset > hw {
                return Err(LogError::OffsetOutOfRange {
                    requested: offset,
                    start,
                    end: hw,
                });
            }
            w.sealed
                .values()
                .chain(std::iter::once(&w.active))
                .filter(|s| s.end_offset > offset)
                .map(|s| SegmentSpan {
                    file: s.file.clone(),
                    path: s.path.clone(),
                    pos: s.position_for(offset),
                    limit_pos: s.size,
                })
                .collect()
        };
        let limits = ReadLimits {
            offset,
            high_watermark: hw,
            max_records,
            max_bytes,
        };
        let mut out = Vec::new();
        for span in spans {
            if out.len() >= max_records || out.last().is_some_and(|r: &Record| r.offset + 1 >= hw) {
                break;
            }
            span.read_into(&limits, &mut out)?;
        }
        Ok(out)
    }

    /// The first offset whose record has a timestamp ≥ `ts` (the end offset when none has).
    pub fn offset_for_time(&self, ts: i64) -> Result<u64> {
        let candidate = {
            let w = lock(&self.writer);
            w.sealed
                .values()
                .chain(std::iter::once(&w.active))
                .find_map(|s| s.offset_for_time(ts))
        };
        let Some(from) = candidate else {
            return Ok(self.end_offset());
        };
        // The index points at the batch that first reached `ts`; earlier records of it may be older.
        let mut at = from;
        loop {
            let batch = self.read(at, 1024, 1 << 20)?;
            if batch.is_empty() {
                return Ok(self.end_offset());
            }
            if let Some(r) = batch.iter().find(|r| r.timestamp_ms >= ts) {
                return Ok(r.offset);
            }
            at = batch.last().expect("not empty").offset + 1;
        }
    }

    /// Applies retention (age and size) now; returns how many segments were deleted.
    pub fn apply_retention(&self) -> usize {
        let mut w = lock(&self.writer);
        self.enforce_retention(&mut w, now_ms())
    }

    fn enforce_retention(&self, w: &mut Writer, now: i64) -> usize {
        let mut deleted = 0;
        loop {
            let total: u64 = w.sealed.values().map(|s| s.size).sum::<u64>() + w.active.size;
            let Some((&base, oldest)) = w.sealed.iter().next() else {
                break;
            };
            let too_old = self
                .config
                .retention_ms
                .is_some_and(|ms| oldest.max_timestamp < now.saturating_sub(ms as i64));
            let too_big = self.config.retention_bytes.is_some_and(|b| total > b);
            if !(too_old || too_big) {
                break;
            }
            if let Err(e) = oldest.delete(&self.dir) {
                tracing::warn!(partition = %self.name, "retention could not delete a segment: {e}");
                break;
            }
            w.sealed.remove(&base);
            deleted += 1;
        }
        if deleted > 0 {
            let _ = segment::sync_dir(&self.dir);
            self.stats
                .segments_deleted
                .fetch_add(deleted as u64, Ordering::Relaxed);
        }
        deleted
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
