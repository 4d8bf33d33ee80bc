//! The landing folder: files dropped into it are loaded once through the batch path, then moved to
//! `processed/` or `failed/` ([`shopstream_engine::stream::landing`]). Files in the folder itself load into
//! orders; files in a subfolder named for a dataset (`landing/customers/`) load into that dataset (each
//! dataset in the lake or the config when the server starts gets its subfolder). Building the source
//! creates the folders; its task polls every `[live] landing_poll_ms` until the server stops, and its
//! counters (shared by every folder) are reported by `/v1/status` and `/metrics`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shopstream_engine::stream::landing::{LandingProgress, LandingWatcher};
use shopstream_ingest::Dataset;

use crate::server::ServerError;
use crate::sources::{BuiltSource, SourceContext, SourceWork};

/// The landing folder.
#[derive(Debug, Clone)]
pub struct LandingFolder {
    /// `[live] landing_dir`, or `<data-dir>/landing`.
    pub dir: PathBuf,
    /// `[live] landing_poll_ms`.
    pub poll_ms: u64,
    /// The datasets besides orders, each watched in its subfolder.
    pub datasets: Vec<Arc<Dataset>>,
}

/// Creates the folders and their watchers.
pub(super) fn build(
    folder: &LandingFolder,
    cx: &SourceContext<'_>,
) -> Result<BuiltSource, ServerError> {
    let mut targets = vec![(folder.dir.clone(), Dataset::orders())];
    targets.extend(
        folder
            .datasets
            .iter()
            .map(|d| (folder.dir.join(&d.name), d.clone())),
    );
    let progress = Arc::new(LandingProgress::default());
    let mut watchers = Vec::new();
    for (dir, dataset) in targets {
        let mut read = cx.ingest.read_options(None, dataset);
        read.expressions = Some(shopstream_engine::derive::sql());
        let poll = Duration::from_millis(folder.poll_ms);
        let watcher = LandingWatcher::new(&dir, cx.lake.clone(), read, cx.write.clone(), poll)?
            .with_progress(progress.clone());
        watchers.push(watcher);
    }
    let stop = cx.stop.clone();
    let work = async move {
        let runs = watchers.into_iter().map(|w| w.run(stop.clone()));
        futures::future::try_join_all(runs).await.map(|_| ())
    };
    Ok(BuiltSource {
        landing: Some(progress),
        work: Some(SourceWork::Task(Box::pin(work))),
        ..BuiltSource::default()
    })
}
