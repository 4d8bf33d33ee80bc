//! A view over another view: its source is the other view's table, read as a stream of Delta commits.
//!
//! Its offset is the next table version to read. Each step reads the commit files
//! (`_delta_log/<version>.json`) from there on and the Parquet files their `add` actions with `dataChange`
//! name (the source view's final windows, committed once each with its checkpoint), as Delta's own
//! streaming source does; rewrites without a data change (compaction) are skipped. A commit that
//! removes rows with a data change means the source view was replaced (a new version recomputes its
//! rows), and a data file gone means the reader fell behind a compaction and its cleanup: either way
//! the read says [`FeedRead::Restart`], and the view reading it starts over from the source's rows
//! as they are then, replacing its own rows in the commit of its next checkpoint.

use arrow::array::RecordBatch;
use object_store::ObjectStoreExt;
use object_store::path::Path as StorePath;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{EngineError, Result};
use crate::lake::{Lake, Table};

/// What a read of the commits found.
pub enum FeedRead {
    /// The rows the commits added, and the version after them.
    Rows(Vec<RecordBatch>, u64),
    /// The reader cannot go on from where it is (why): it starts over.
    Restart(String),
}

/// The commits of a view's table; see the module documentation.
pub struct TableFeed {
    lake: Lake,
    kind: Table,
    store: crate::storage::Store,
    /// The table's folder in `store`.
    dir: StorePath,
}

fn failed(table: &str, what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::View {
        view: table.into(),
        reason: format!("{what}: {e}"),
    }
}

impl TableFeed {
    /// The table of view `name`, if it has been made.
    pub async fn open(lake: &Lake, name: &str) -> Result<Option<TableFeed>> {
        let Some(kind) = lake.derived(name).await? else {
            return Ok(None);
        };
        let (store, root) = lake.object_store()?;
        Ok(Some(TableFeed {
            lake: lake.clone(),
            dir: root.join(name),
            kind,
            store,
        }))
    }

    /// The table's kind (its name and schema).
    pub fn kind(&self) -> &Table {
        &self.kind
    }

    /// The table at its latest version.
    pub async fn table(&self) -> Result<deltalake::DeltaTable> {
        self.lake.open(&self.kind).await?.ok_or_else(|| {
            failed(
                self.kind.name(),
                "reading the source view",
                "its table is gone",
            )
        })
    }

    /// The table's latest version.
    pub async fn latest(&self) -> Result<u64> {
        Ok(self.table().await?.version().unwrap_or(0))
    }

    /// What the commits from version `from` add: at most `max_commits` commits, and no commit more once
    /// `max_rows` rows are read (a commit's files are read whole: a view's final rows are small); `None`
    /// when there is no newer commit.
    pub async fn read(
        &self,
        from: u64,
        max_commits: u64,
        max_rows: usize,
    ) -> Result<Option<FeedRead>> {
        let latest = self.latest().await?;
        if from > latest {
            return Ok(None);
        }
        let last = latest.min(from + max_commits.max(1) - 1);
        let (mut rows, mut count) = (Vec::new(), 0);
        let mut version = from;
        while version <= last && count < max_rows {
            let Some(files) = self.added(version).await? else {
                let why = format!("commit {version} of `{}` removes rows", self.kind.name());
                return Ok(Some(FeedRead::Restart(why)));
            };
            for path in files {
                let Some(batches) = self.parquet(&path).await? else {
                    let why = format!("{path} is gone (compacted and cleaned up)");
                    return Ok(Some(FeedRead::Restart(why)));
                };
                count += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
                rows.extend(batches);
            }
            version += 1;
        }
        Ok(Some(FeedRead::Rows(rows, version)))
    }

    /// The data files commit `version` adds with a data change; `None` when it removes rows with one.
    async fn added(&self, version: u64) -> Result<Option<Vec<StorePath>>> {
        let name = self.kind.name();
        let at = self
            .dir
            .clone()
            .join("_delta_log")
            .join(format!("{version:020}.json").as_str());
        let bytes = self.get(&at).await?;
        let mut files = Vec::new();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let action: serde_json::Value = serde_json::from_slice(line)
                .map_err(|e| failed(name, &format!("commit {version}"), e))?;
            let changes = |a: &serde_json::Value| a["dataChange"].as_bool().unwrap_or(true);
            if action.get("remove").is_some_and(changes) {
                return Ok(None);
            }
            if let Some(add) = action.get("add").filter(|a| changes(a))
                && let Some(path) = add["path"].as_str()
            {
                let file = StorePath::from_url_path(format!("{}/{path}", self.dir))
                    .map_err(|e| failed(name, "a data file's path", e))?;
                files.push(file);
            }
        }
        Ok(Some(files))
    }

    async fn get(&self, at: &StorePath) -> Result<bytes::Bytes> {
        let name = self.kind.name();
        self.store
            .get(at)
            .await
            .map_err(|e| failed(name, &format!("reading {at}"), e))?
            .bytes()
            .await
            .map_err(|e| failed(name, &format!("reading {at}"), e))
    }

    /// The rows of one data file, in the table's schema; `None` when the file is gone.
    async fn parquet(&self, at: &StorePath) -> Result<Option<Vec<RecordBatch>>> {
        let bytes = match self.store.get(at).await {
            Ok(got) => got
                .bytes()
                .await
                .map_err(|e| failed(self.kind.name(), &format!("reading {at}"), e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(failed(self.kind.name(), &format!("reading {at}"), e)),
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| failed(self.kind.name(), &format!("reading {at}"), e))?;
        let schema = self.kind.schema();
        reader
            .map(|b| super::job::conform(&b?, &schema))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}
