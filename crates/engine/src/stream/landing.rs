//! The landing folder: files dropped into a folder are loaded once, then moved out of the way.
//!
//! The watcher polls the folder (not its subfolders). A file is picked up only once its size and
//! modification time have not changed between two polls and its name does not mark it as in progress (a
//! leading `.`, or `.tmp`, `.part`, `.partial`, `.crdownload` at the end), so a file still being copied in is
//! not read early. It is loaded with [`load_files`] (exactly once per content, as `shopstream ingest`), then
//! moved to `processed/`, or to `failed/` beside a `<name>.reason.txt` saying why. A crash between the load's
//! commit and the move is harmless: the next poll finds the file's content already loaded and moves it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use shopstream_ingest::{Format, ReadOptions};

use crate::error::{EngineError, Result};
use crate::lake::Lake;
use crate::load::{WriteOptions, load_files};

/// Counters of a landing folder.
#[derive(Debug, Default)]
pub struct LandingProgress {
    /// Files loaded (or found already loaded) and moved to `processed/`.
    pub processed: AtomicU64,
    /// Files moved to `failed/`.
    pub failed: AtomicU64,
    /// Rows loaded from landed files.
    pub rows_loaded: AtomicU64,
    /// Rows dead-lettered from landed files.
    pub rows_rejected: AtomicU64,
}

/// Watches one landing folder.
pub struct LandingWatcher {
    dir: PathBuf,
    lake: Lake,
    read: ReadOptions,
    write: WriteOptions,
    poll: Duration,
    seen: HashMap<PathBuf, (u64, Option<SystemTime>)>,
    progress: Arc<LandingProgress>,
}

fn in_progress_name(name: &str) -> bool {
    name.starts_with('.')
        || [".tmp", ".part", ".partial", ".crdownload"]
            .iter()
            .any(|s| name.ends_with(s))
}

impl LandingWatcher {
    /// A watcher of `dir` (created with its `processed/` and `failed/` subfolders).
    pub fn new(
        dir: &Path,
        lake: Lake,
        read: ReadOptions,
        write: WriteOptions,
        poll: Duration,
    ) -> Result<LandingWatcher> {
        for d in [dir.to_path_buf(), dir.join("processed"), dir.join("failed")] {
            std::fs::create_dir_all(&d).map_err(|e| EngineError::Location {
                location: d.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        Ok(LandingWatcher {
            dir: dir.to_path_buf(),
            lake,
            read,
            write,
            poll,
            seen: HashMap::new(),
            progress: Arc::new(LandingProgress::default()),
        })
    }

    /// Counts into `progress` (shared by several watchers) instead of counters of its own.
    pub fn with_progress(mut self, progress: Arc<LandingProgress>) -> LandingWatcher {
        self.progress = progress;
        self
    }

    /// Shared counters.
    pub fn progress(&self) -> Arc<LandingProgress> {
        self.progress.clone()
    }

    /// Files whose size and time held still since the last poll.
    fn stable_files(&mut self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut now: HashMap<PathBuf, (u64, Option<SystemTime>)> = HashMap::new();
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = e.metadata() else { continue };
            let name = e.file_name().to_string_lossy().into_owned();
            if !meta.is_file() || in_progress_name(&name) {
                continue;
            }
            now.insert(path, (meta.len(), meta.modified().ok()));
        }
        let mut stable: Vec<PathBuf> = now
            .iter()
            .filter(|(p, v)| self.seen.get(*p) == Some(v))
            .map(|(p, _)| p.clone())
            .collect();
        stable.sort();
        self.seen = now;
        stable
    }

    fn move_to(&self, file: &Path, sub: &str) -> std::io::Result<PathBuf> {
        let name = file.file_name().unwrap_or_default();
        let mut target = self.dir.join(sub).join(name);
        let mut n = 1;
        while target.exists() {
            target = self
                .dir
                .join(sub)
                .join(format!("{}.{n}", name.to_string_lossy()));
            n += 1;
        }
        std::fs::rename(file, &target)?;
        Ok(target)
    }

    /// Loads one file; for a dataset other than orders, first creates or evolves its table as `ingest`
    /// does ([`crate::datasets::prepare`]).
    async fn load(&self, file: &Path) -> Result<crate::load::LoadSummary> {
        let files = std::slice::from_ref(&file.to_path_buf()).to_vec();
        let mut read = self.read.clone();
        if !read.dataset.is_orders() {
            let name = read.dataset.name.clone();
            let declared = Some(read.dataset.clone());
            let prepared = crate::datasets::prepare(
                &self.lake,
                &name,
                declared,
                &files,
                &read,
                &self.write,
                false,
            )
            .await?;
            read.dataset = prepared.dataset;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        load_files(&self.lake, &files, &read, &self.write, cancel, &|_| {}).await
    }

    /// Loads and moves every stable file once; returns how many were handled.
    pub async fn poll_once(&mut self) -> Result<usize> {
        let files = self.stable_files();
        let mut handled = 0;
        for file in files {
            let outcome = if Format::is_supported(&file) {
                self.load(&file).await.and_then(|s| {
                    match s.files.iter().find_map(|f| f.refused.clone()) {
                        Some(reason) => Err(EngineError::Refused(reason)),
                        None => Ok(s.totals),
                    }
                })
            } else {
                Err(EngineError::Output(
                    "not a supported file type (csv, tsv, txt, xlsx, xls, ods, json, jsonl, parquet)".into(),
                ))
            };
            match outcome {
                Ok(totals) => {
                    self.progress
                        .rows_loaded
                        .fetch_add(totals.loaded, Ordering::Relaxed);
                    self.progress
                        .rows_rejected
                        .fetch_add(totals.rejected, Ordering::Relaxed);
                    self.progress.processed.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = self.move_to(&file, "processed") {
                        tracing::warn!(file = %file.display(), "landing: loaded but not moved: {e}");
                    }
                }
                // Another writer holds the lake: try again at the next poll.
                Err(EngineError::Busy(_)) => {
                    self.seen.remove(&file);
                    continue;
                }
                Err(e) => {
                    self.progress.failed.fetch_add(1, Ordering::Relaxed);
                    let reason = format!("{e}\n");
                    match self.move_to(&file, "failed") {
                        Ok(target) => {
                            let mut r = target.into_os_string();
                            r.push(".reason.txt");
                            let _ = std::fs::write(PathBuf::from(r), reason);
                        }
                        Err(m) => {
                            tracing::warn!(file = %file.display(), "landing: failed ({e}) and not moved: {m}")
                        }
                    }
                }
            }
            handled += 1;
        }
        Ok(handled)
    }

    /// Polls until `stop` is set.
    pub async fn run(mut self, stop: Arc<AtomicBool>) -> Result<()> {
        while !stop.load(Ordering::Relaxed) {
            self.poll_once().await?;
            tokio::time::sleep(self.poll).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_files_being_written_are_skipped() {
        for n in [".orders.csv", "orders.csv.part", "x.tmp", "y.crdownload"] {
            assert!(in_progress_name(n), "{n}");
        }
        assert!(!in_progress_name("orders.csv"));
    }
}
