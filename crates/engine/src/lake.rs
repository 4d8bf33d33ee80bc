//! The lake: Delta Lake tables (delta-rs) under one object-store URL.
//!
//! A [`Lake`] is addressed by a URL (`file:///…` for the data dir by default; the same code path
//! serves `s3://…` once object-store credentials are configured). It owns the four tables of the
//! batch path: `raw_orders` (text as ingested), `orders` (clean, partitioned by `invoice_month`),
//! `dead_letters` and `loads`. Tables are created on first use with their schema and partitioning;
//! files are zstd Parquet written by [`crate::load`].

use std::collections::HashMap;
use std::path::Path;

use arrow::datatypes::SchemaRef;
use deltalake::kernel::StructField;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::{DeltaTable, DeltaTableError};
use shopstream_ingest::schema::{
    DEAD_LETTERS_SCHEMA, LOADS_SCHEMA, ORDERS_PARTITION, ORDERS_SCHEMA, RAW_SCHEMA,
};
use url::Url;

use crate::error::{EngineError, Result};

/// One of the lake's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    /// Every accepted record as the text that arrived, with provenance.
    Raw,
    /// Clean, typed order lines.
    Orders,
    /// Rejected records with the reason.
    DeadLetters,
    /// One row per loaded file.
    Loads,
}

impl TableKind {
    /// All tables, in the order a load commits them (`loads` last: it is the load's record).
    pub const ALL: [TableKind; 4] = [
        TableKind::Raw,
        TableKind::DeadLetters,
        TableKind::Orders,
        TableKind::Loads,
    ];

    /// The table's name in SQL and on disk.
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Raw => "raw_orders",
            TableKind::Orders => "orders",
            TableKind::DeadLetters => "dead_letters",
            TableKind::Loads => "loads",
        }
    }

    /// The Arrow schema of the table.
    pub fn schema(self) -> SchemaRef {
        match self {
            TableKind::Raw => RAW_SCHEMA.clone(),
            TableKind::Orders => ORDERS_SCHEMA.clone(),
            TableKind::DeadLetters => DEAD_LETTERS_SCHEMA.clone(),
            TableKind::Loads => LOADS_SCHEMA.clone(),
        }
    }

    /// Partition columns.
    pub fn partition_columns(self) -> Vec<String> {
        match self {
            TableKind::Orders => vec![ORDERS_PARTITION.to_string()],
            _ => Vec::new(),
        }
    }
}

/// Summary of one table for `shopstream tables`.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// Table name.
    pub name: String,
    /// Delta version.
    pub version: u64,
    /// Rows (from the files' statistics).
    pub rows: i64,
    /// Data files.
    pub files: usize,
    /// Bytes of data files.
    pub bytes: i64,
}

/// A set of Delta tables under one root URL.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
}

impl Lake {
    /// The lake in a local folder (created if missing).
    pub fn local(dir: &Path) -> Result<Lake> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::Location {
            location: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let abs = std::fs::canonicalize(dir).map_err(|e| EngineError::Location {
            location: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let root = Url::from_directory_path(&abs).map_err(|_| EngineError::Location {
            location: abs.display().to_string(),
            reason: "not an absolute path".into(),
        })?;
        Ok(Lake { root })
    }

    /// The lake at a URL (`file:///…`, or an object store URL once registered).
    pub fn at_url(url: &str) -> Result<Lake> {
        let mut root = Url::parse(url).map_err(|e| EngineError::Location {
            location: url.into(),
            reason: e.to_string(),
        })?;
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        Ok(Lake { root })
    }

    /// The root URL.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The local folder of the lake, when it is on the local file system.
    pub fn local_dir(&self) -> Option<std::path::PathBuf> {
        (self.root.scheme() == "file")
            .then(|| self.root.to_file_path().ok())
            .flatten()
    }

    fn table_url(&self, kind: TableKind) -> Result<Url> {
        self.root
            .join(&format!("{}/", kind.name()))
            .map_err(|e| EngineError::Location {
                location: self.root.to_string(),
                reason: e.to_string(),
            })
    }

    /// Opens a table if it exists (`None` otherwise).
    pub async fn open(&self, kind: TableKind) -> Result<Option<DeltaTable>> {
        if let Some(dir) = self.local_dir()
            && !dir.join(kind.name()).join("_delta_log").is_dir()
        {
            return Ok(None);
        }
        let table = DeltaTable::try_from_url(self.table_url(kind)?)
            .await
            .map_err(EngineError::delta(kind.name()))?;
        Ok(table.version().is_some().then_some(table))
    }

    /// Opens a table to write to, creating it (empty, with its schema and partitioning) if it does not
    /// exist. A table with the schema of an older release is [`EngineError::NeedsMigration`]: nothing is
    /// written into it before `shopstream migrate`.
    pub async fn open_or_create(&self, kind: TableKind) -> Result<DeltaTable> {
        if let Some(t) = self.open(kind).await? {
            crate::migrate::ensure_current(kind, &t)?;
            return Ok(t);
        }
        if let Some(dir) = self.local_dir() {
            let path = dir.join(kind.name());
            std::fs::create_dir_all(&path).map_err(|e| EngineError::Location {
                location: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        let table = DeltaTable::try_from_url(self.table_url(kind)?)
            .await
            .map_err(EngineError::delta(kind.name()))?;
        let schema = kind.schema();
        let fields: Vec<StructField> = schema
            .fields()
            .iter()
            .map(|f| f.as_ref().try_into_kernel())
            .collect::<Result<_, _>>()
            .map_err(|e| EngineError::Delta {
                table: kind.name().into(),
                source: DeltaTableError::from(e),
            })?;
        let created = table
            .create()
            .with_table_name(kind.name())
            .with_columns(fields)
            .with_partition_columns(kind.partition_columns())
            .with_configuration_property(
                deltalake::TableProperty::DataSkippingNumIndexedCols,
                Some("32"),
            )
            .await;
        match created {
            Ok(t) => Ok(t),
            // Another process created it first: use theirs.
            Err(_) if self.open(kind).await?.is_some() => {
                Ok(self.open(kind).await?.expect("table exists"))
            }
            Err(e) => Err(EngineError::delta(kind.name())(e)),
        }
    }

    /// Row counts, sizes and versions of every existing table.
    pub async fn tables(&self) -> Result<Vec<TableInfo>> {
        let mut out = Vec::new();
        for kind in TableKind::ALL {
            let Some(table) = self.open(kind).await? else {
                continue;
            };
            let snapshot = table.snapshot().map_err(EngineError::delta(kind.name()))?;
            let (mut rows, mut files, mut bytes) = (0i64, 0usize, 0i64);
            for f in snapshot.log_data().iter() {
                files += 1;
                bytes += f.size();
                rows += f.num_records().unwrap_or(0) as i64;
            }
            out.push(TableInfo {
                name: kind.name().into(),
                version: snapshot.version(),
                rows,
                files,
                bytes,
            });
        }
        Ok(out)
    }

    /// Storage options for delta-rs (empty for local folders).
    pub fn storage_options(&self) -> HashMap<String, String> {
        HashMap::new()
    }
}
