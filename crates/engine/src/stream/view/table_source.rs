//! A view over another view: its source is the other view's table, read as a stream of Delta commits.
//!
//! Its offset is the next table version to read. Each step reads the commit files
//! (`_delta_log/<version>.json`) from there on and the Parquet files their `add` actions with `dataChange`
//! name (the source view's final windows, committed once each with its checkpoint), as Delta's own
//! streaming source does; rewrites without a data change (compaction) are skipped. A commit that
//! removes rows with a data change means the source view was replaced (a new version recomputes its
//! rows): the reader stops with [`EngineError::View`] and the view that reads it starts over with a new
//! version of its own ([`super::job::ViewJob`] puts the source view's version in its own).

use arrow::array::RecordBatch;
use object_store::ObjectStoreExt;
use object_store::path::Path as StorePath;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{EngineError, Result};
use crate::lake::{Lake, Table};

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

    /// The rows the commits from version `from` add (at most `max_commits` commits), and the version
    /// after them; `None` when there is no newer commit.
    pub async fn read(
        &self,
        from: u64,
        max_commits: u64,
    ) -> Result<Option<(Vec<RecordBatch>, u64)>> {
        let latest = self.latest().await?;
        if from > latest {
            return Ok(None);
        }
        let to = latest.min(from + max_commits.max(1) - 1);
        let mut rows = Vec::new();
        for version in from..=to {
            for path in self.added(version).await? {
                rows.extend(self.parquet(&path).await?);
            }
        }
        Ok(Some((rows, to + 1)))
    }

    /// The data files commit `version` adds with a data change.
    async fn added(&self, version: u64) -> Result<Vec<StorePath>> {
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
                return Err(failed(
                    name,
                    "the source view was replaced",
                    format!(
                        "commit {version} removes rows; a view over it starts over with a new version"
                    ),
                ));
            }
            if let Some(add) = action.get("add").filter(|a| changes(a))
                && let Some(path) = add["path"].as_str()
            {
                let file = StorePath::from_url_path(format!("{}/{path}", self.dir))
                    .map_err(|e| failed(name, "a data file's path", e))?;
                files.push(file);
            }
        }
        Ok(files)
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

    /// The rows of one data file, in the table's schema.
    async fn parquet(&self, at: &StorePath) -> Result<Vec<RecordBatch>> {
        let bytes = self.get(at).await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| failed(self.kind.name(), &format!("reading {at}"), e))?;
        let schema = self.kind.schema();
        reader.map(|b| super::job::conform(&b?, &schema)).collect()
    }
}
