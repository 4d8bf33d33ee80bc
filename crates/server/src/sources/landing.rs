//! The landing folder: files dropped into it are loaded once through the batch path, then moved to
//! `processed/` or `failed/` ([`shopstream_engine::stream::landing`]). Building the source creates the
//! folder and its subfolders; its task polls every `[live] landing_poll_ms` until the server stops, and its
//! counters are reported by `/v1/status` and `/metrics`.

use std::path::PathBuf;
use std::time::Duration;

use shopstream_engine::stream::landing::LandingWatcher;

use crate::server::ServerError;
use crate::sources::{BuiltSource, SourceContext, SourceWork};

/// The landing folder.
#[derive(Debug, Clone)]
pub struct LandingFolder {
    /// `[live] landing_dir`, or `<data-dir>/landing`.
    pub dir: PathBuf,
    /// `[live] landing_poll_ms`.
    pub poll_ms: u64,
}

/// Creates the folders and the watcher.
pub(super) fn build(
    folder: &LandingFolder,
    cx: &SourceContext<'_>,
) -> Result<BuiltSource, ServerError> {
    let mut read = cx
        .ingest
        .read_options(None, shopstream_ingest::Dataset::orders());
    read.expressions = Some(shopstream_engine::derive::sql());
    let watcher = LandingWatcher::new(
        &folder.dir,
        cx.lake.clone(),
        read,
        cx.write.clone(),
        Duration::from_millis(folder.poll_ms),
    )?;
    Ok(BuiltSource {
        landing: Some(watcher.progress()),
        work: Some(SourceWork::Task(Box::pin(watcher.run(cx.stop.clone())))),
        ..BuiltSource::default()
    })
}
