//! The lake: Delta Lake tables (delta-rs) under one object-store URL.
//!
//! A [`Lake`] is addressed by a URL (`file:///…` for the data dir by default, `s3://bucket/prefix` on
//! S3-compatible storage with its options, [`crate::storage`]). Its tables are data ([`Table`]): the
//! built-in `raw_orders` (text as ingested), `orders` (clean, partitioned by `invoice_month`),
//! `dead_letters` (every dataset's) and `loads`, and one table per dataset, found by listing the lake
//! (a dataset's columns, partition and key are read back from its Delta schema and properties). Tables
//! are created on first use with their schema and partitioning; files are zstd Parquet written by
//! [`crate::load`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::SchemaRef;
use deltalake::kernel::StructField;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::{DeltaTable, DeltaTableError};
use shopstream_ingest::Dataset;
use shopstream_ingest::schema::{DEAD_LETTERS_SCHEMA, LOADS_SCHEMA, RAW_SCHEMA};
use url::Url;

use crate::error::{EngineError, Result};

/// One of the lake's tables: its name, schema and layout, as data. The four built-in tables are
/// [`Table::raw_orders`], [`Table::orders`], [`Table::dead_letters`] and [`Table::loads`]; every other
/// table is a dataset's ([`Table::of_dataset`]), found in the lake or declared in the config.
#[derive(Debug, Clone)]
pub struct Table(Arc<TableDef>);

#[derive(Debug)]
struct TableDef {
    name: String,
    schema: SchemaRef,
    partition: Vec<String>,
    /// Text columns whose statistics never skip a file (see `sink::writer_properties`).
    no_statistics: Vec<String>,
    dataset: Option<Arc<Dataset>>,
    /// What a table derived by a continuous view holds (`view <name>`, `late rows`): not a dataset.
    derived: Option<String>,
}

impl PartialEq for Table {
    fn eq(&self, other: &Table) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Table {}

impl std::hash::Hash for Table {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.name.hash(state)
    }
}

fn text_columns(schema: &SchemaRef) -> Vec<String> {
    schema
        .fields()
        .iter()
        .filter(|f| f.data_type() == &arrow::datatypes::DataType::Utf8)
        .map(|f| f.name().clone())
        .collect()
}

static BUILTIN: LazyLock<[Table; 4]> = LazyLock::new(|| {
    let def = |name: &str, schema: &SchemaRef, no_statistics: Vec<String>| {
        Table(Arc::new(TableDef {
            name: name.into(),
            schema: schema.clone(),
            partition: Vec::new(),
            no_statistics,
            dataset: None,
            derived: None,
        }))
    };
    let mut orders = Table::of_dataset(&Dataset::orders());
    Arc::get_mut(&mut orders.0).expect("fresh").no_statistics =
        ["description", "source_file", "source_sheet", "load_id"]
            .map(String::from)
            .to_vec();
    [
        // The raw table is read whole (audit, trace by file and line); its text is never a filter.
        def("raw_orders", &RAW_SCHEMA, text_columns(&RAW_SCHEMA)),
        def(
            "dead_letters",
            &DEAD_LETTERS_SCHEMA,
            text_columns(&DEAD_LETTERS_SCHEMA),
        ),
        orders,
        def("loads", &LOADS_SCHEMA, Vec::new()),
    ]
});

impl Table {
    /// The built-in tables, in the order a load commits them (`loads` last: it is the load's record).
    pub fn builtins() -> [Table; 4] {
        BUILTIN.clone()
    }

    /// Every accepted order record as the text that arrived, with provenance.
    pub fn raw_orders() -> Table {
        BUILTIN[0].clone()
    }

    /// Rejected records of every dataset, with the reason.
    pub fn dead_letters() -> Table {
        BUILTIN[1].clone()
    }

    /// Clean, typed order lines.
    pub fn orders() -> Table {
        BUILTIN[2].clone()
    }

    /// One row per loaded file.
    pub fn loads() -> Table {
        BUILTIN[3].clone()
    }

    /// The table of a dataset.
    pub fn of_dataset(dataset: &Arc<Dataset>) -> Table {
        let schema = dataset.table_schema();
        let no_statistics = ["source_file", "source_sheet", "load_id"]
            .map(String::from)
            .to_vec();
        Table(Arc::new(TableDef {
            name: dataset.name.clone(),
            partition: dataset.partition_column().into_iter().collect(),
            schema,
            no_statistics,
            dataset: Some(dataset.clone()),
            derived: None,
        }))
    }

    /// The table a continuous view appends its final rows to.
    pub fn of_view(name: &str, schema: SchemaRef) -> Table {
        Table::derived(name, schema, format!("view {name}"))
    }

    /// The rows that came after the window they belonged to was final, for every view.
    pub fn late_rows() -> Table {
        Table::derived(
            "late_rows",
            crate::stream::view::late_rows_schema(),
            "late rows".into(),
        )
    }

    fn derived(name: &str, schema: SchemaRef, what: String) -> Table {
        Table(Arc::new(TableDef {
            name: name.into(),
            no_statistics: text_columns(&schema),
            schema,
            partition: Vec::new(),
            dataset: None,
            derived: Some(what),
        }))
    }

    /// The table's name in SQL and on disk.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The Arrow schema of the table.
    pub fn schema(&self) -> SchemaRef {
        self.0.schema.clone()
    }

    /// Partition columns.
    pub fn partition_columns(&self) -> Vec<String> {
        self.0.partition.clone()
    }

    /// Text columns written without min/max statistics.
    pub fn columns_without_statistics(&self) -> &[String] {
        &self.0.no_statistics
    }

    /// The dataset whose rows the table holds (`None` for `raw_orders`, `dead_letters`, `loads`).
    pub fn dataset(&self) -> Option<&Arc<Dataset>> {
        self.0.dataset.as_ref()
    }
}

/// `fields` of `kind`'s table as Delta (kernel) fields.
pub(crate) fn kernel_fields<'a>(
    kind: &Table,
    fields: impl Iterator<Item = &'a arrow::datatypes::Field>,
) -> Result<Vec<StructField>> {
    fields
        .map(|f| f.try_into_kernel())
        .collect::<Result<_, _>>()
        .map_err(|e| EngineError::Delta {
            table: kind.name().into(),
            source: DeltaTableError::from(e),
        })
}

/// The Delta table property holding a dataset's key columns (comma-separated).
const KEY_PROPERTY: &str = "shopstream.key";

/// The Delta table property holding a dataset's `not null` columns (comma-separated; key columns too).
const REQUIRED_PROPERTY: &str = "shopstream.required";

/// The Delta table property naming what a table derived by a view holds ([`Table::of_view`]).
const DERIVED_PROPERTY: &str = "shopstream.derived";

fn key_property(table: &Table) -> HashMap<String, Option<String>> {
    let mut out = HashMap::new();
    if let Some(what) = &table.0.derived {
        out.insert(DERIVED_PROPERTY.to_string(), Some(what.clone()));
    }
    let Some(d) = table.dataset().filter(|d| !d.is_orders()) else {
        return out;
    };
    if !d.key.is_empty() {
        out.insert(KEY_PROPERTY.to_string(), Some(d.key.join(",")));
    }
    let required: Vec<&str> = d
        .columns
        .iter()
        .filter(|c| c.required)
        .map(|c| c.name.as_str())
        .collect();
    if !required.is_empty() {
        out.insert(REQUIRED_PROPERTY.to_string(), Some(required.join(",")));
    }
    out
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
    /// delta-rs storage options (`[lake.storage]`; empty for a local folder).
    options: Arc<HashMap<String, String>>,
    /// Set once the store has been found to honour conditional put (checked before the first write).
    probed: Arc<tokio::sync::OnceCell<()>>,
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
        Ok(Lake::with_root(root, HashMap::new()))
    }

    fn with_root(root: Url, options: HashMap<String, String>) -> Lake {
        Lake {
            root,
            options: Arc::new(options),
            probed: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// The lake at a URL (`file:///…`, `s3://bucket/prefix`), with no storage options.
    pub fn at_url(url: &str) -> Result<Lake> {
        Lake::at_url_with(url, &std::collections::BTreeMap::new())
    }

    /// The lake at a URL with storage options (`[lake.storage]`); unsafe settings are refused.
    pub fn at_url_with(
        url: &str,
        storage: &std::collections::BTreeMap<String, String>,
    ) -> Result<Lake> {
        let mut root = Url::parse(url).map_err(|e| EngineError::Location {
            location: url.into(),
            reason: e.to_string(),
        })?;
        if !matches!(root.scheme(), "file" | "s3" | "s3a") {
            return Err(EngineError::Location {
                location: url.into(),
                reason: "use a file:// or s3:// URL".into(),
            });
        }
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        let options = crate::storage::options(&root, storage)?;
        Ok(Lake::with_root(root, options))
    }

    /// A table of this lake to read or write through delta-rs (not loaded).
    fn builder(&self, kind: &Table) -> Result<deltalake::DeltaTableBuilder> {
        let builder = deltalake::DeltaTableBuilder::from_url(self.table_url(kind)?)
            .map_err(EngineError::delta(kind.name()))?;
        Ok(builder.with_storage_options((*self.options).clone()))
    }

    /// Whether the lake is in object storage (no lock files there: leases instead).
    pub fn is_remote(&self) -> bool {
        crate::storage::is_remote(&self.root)
    }

    /// The object store holding the lake, and the lake's path in it.
    pub fn object_store(
        &self,
    ) -> Result<(
        deltalake::logstore::ObjectStoreRef,
        object_store::path::Path,
    )> {
        crate::storage::store(&self.root, &self.options)
    }

    /// Before the first write to object storage: checks that it refuses a second create of one object.
    async fn ready_to_write(&self) -> Result<()> {
        if !crate::storage::is_remote(&self.root) {
            return Ok(());
        }
        self.probed
            .get_or_try_init(|| crate::storage::probe_conditional_put(&self.root, &self.options))
            .await
            .map(|_| ())
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

    fn table_url(&self, kind: &Table) -> Result<Url> {
        self.root
            .join(&format!("{}/", kind.name()))
            .map_err(|e| EngineError::Location {
                location: self.root.to_string(),
                reason: e.to_string(),
            })
    }

    /// Opens a table if it exists (`None` otherwise).
    pub async fn open(&self, kind: &Table) -> Result<Option<DeltaTable>> {
        if let Some(dir) = self.local_dir()
            && !dir.join(kind.name()).join("_delta_log").is_dir()
        {
            return Ok(None);
        }
        let table = match self.builder(kind)?.load().await {
            Ok(t) => t,
            // No commit yet: a process killed while it created the table left `_delta_log` empty
            // (its first commit is atomic, so there is nothing else half made).
            Err(DeltaTableError::NotATable(_)) => return Ok(None),
            Err(e) => return Err(EngineError::delta(kind.name())(e)),
        };
        Ok(table.version().is_some().then_some(table))
    }

    /// A view's table to write to: created if missing, and emptied with the view's columns when it has
    /// other ones (a new version of the view whose SQL changed its columns).
    pub async fn open_or_replace(&self, kind: &Table) -> Result<DeltaTable> {
        if let Some(t) = self.open(kind).await?
            && !crate::migrate::schema_changes(kind, &t)?.is_empty()
        {
            if !gains_timestamps(kind, &t)? {
                return crate::migrate::replace(kind, t).await;
            }
            // Made without timestamp columns, its protocol lacks the feature they need: made anew.
            self.remove_table(kind).await?;
        }
        self.open_or_create(kind).await
    }

    /// Deletes a table's folder: its log and files.
    async fn remove_table(&self, kind: &Table) -> Result<()> {
        use futures::TryStreamExt;
        use object_store::ObjectStoreExt;
        let (store, root) = self.object_store()?;
        let folder = root.join(kind.name());
        let inside: Vec<_> = store
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(|e| EngineError::Internal(format!("listing `{}`: {e}", kind.name())))?;
        for meta in inside {
            store
                .delete(&meta.location)
                .await
                .map_err(|e| EngineError::Internal(format!("removing `{}`: {e}", kind.name())))?;
        }
        if let Some(dir) = self.local_dir() {
            let _ = std::fs::remove_dir_all(dir.join(kind.name()));
        }
        Ok(())
    }

    /// Opens a table to write to, creating it (empty, with its schema and partitioning) if it does not
    /// exist. A table with the schema of an older release is [`EngineError::NeedsMigration`]: nothing is
    /// written into it before `shopstream migrate`.
    pub async fn open_or_create(&self, kind: &Table) -> Result<DeltaTable> {
        self.ready_to_write().await?;
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
        let table = self
            .builder(kind)?
            .build()
            .map_err(EngineError::delta(kind.name()))?;
        let fields = kernel_fields(kind, kind.schema().fields().iter().map(|f| f.as_ref()))?;
        let created = table
            .create()
            .with_table_name(kind.name())
            .with_columns(fields)
            .with_partition_columns(kind.partition_columns())
            .with_configuration_property(
                deltalake::TableProperty::DataSkippingNumIndexedCols,
                Some("32"),
            )
            .with_configuration(key_property(kind))
            // `shopstream.key` is ours, not a Delta property.
            .with_raise_if_key_not_exists(false)
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

    /// Enables Delta's `timestampNtz` feature on `kind`'s table when its schema now has a timestamp column
    /// (a column added or widened by schema evolution; tables created with one have it already).
    pub(crate) async fn allow_timestamps(&self, kind: &Table) -> Result<()> {
        let has_timestamp = kind.schema().fields().iter().any(|f| {
            matches!(
                f.data_type(),
                arrow::datatypes::DataType::Timestamp(_, None)
            )
        });
        let Some(table) = self.open(kind).await? else {
            return Ok(());
        };
        if !has_timestamp {
            return Ok(());
        }
        table
            .add_feature()
            .with_feature(deltalake::kernel::TableFeatures::TimestampWithoutTimezone)
            .with_allow_protocol_versions_increase(true)
            .await
            .map_err(EngineError::delta(kind.name()))?;
        Ok(())
    }

    /// Every table in the lake: the built-in ones that exist, then the datasets' tables by name.
    pub async fn list(&self) -> Result<Vec<Table>> {
        let mut out = Vec::new();
        for t in Table::builtins() {
            if self.open(&t).await?.is_some() {
                out.push(t);
            }
        }
        for name in self.dataset_names().await? {
            // A folder that is not a readable Delta table is left out (and said), not fatal to every query.
            match self.dataset(&name).await {
                Ok(Some(dataset)) => out.push(Table::of_dataset(&dataset)),
                Ok(None) => out.extend(self.derived(&name).await?),
                Err(e) => tracing::warn!("lake folder `{name}` left out: {e}"),
            }
        }
        Ok(out)
    }

    /// The names of the datasets' tables in the lake (not the built-in ones), sorted: one listing of the
    /// lake folder.
    pub async fn dataset_names(&self) -> Result<Vec<String>> {
        let Some(dir) = self.local_dir() else {
            let mut names: Vec<String> = crate::storage::table_folders(&self.root, &self.options)
                .await?
                .into_iter()
                .filter(|n| shopstream_ingest::dataset::is_identifier(n))
                .filter(|n| !Table::builtins().iter().any(|t| t.name() == n))
                .collect();
            names.sort();
            return Ok(names);
        };
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| EngineError::Location {
                location: dir.display().to_string(),
                reason: e.to_string(),
            })?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| shopstream_ingest::dataset::is_identifier(n))
            .filter(|n| !Table::builtins().iter().any(|t| t.name() == n))
            .filter(|n| dir.join(n).join("_delta_log").is_dir())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The table of a view's rows (or the late rows) named `name`, if the lake has one.
    pub async fn derived(&self, name: &str) -> Result<Option<Table>> {
        let probe = Table::derived(
            name,
            Arc::new(arrow::datatypes::Schema::empty()),
            String::new(),
        );
        let Some(table) = self.open(&probe).await? else {
            return Ok(None);
        };
        let snapshot = table.snapshot().map_err(EngineError::delta(name))?;
        let what = snapshot
            .metadata()
            .configuration()
            .get(DERIVED_PROPERTY)
            .cloned();
        Ok(what.map(|w| Table::derived(name, snapshot.snapshot().arrow_schema(), w)))
    }

    /// The dataset of an existing table (`None` when the lake has no table of that name, or when it is a
    /// view's).
    pub async fn dataset(&self, name: &str) -> Result<Option<Arc<Dataset>>> {
        if name == "orders" {
            return Ok(Some(Dataset::orders()));
        }
        let probe = Table::of_dataset(&Arc::new(Dataset {
            name: name.into(),
            columns: Vec::new(),
            key: Vec::new(),
            partition: None,
            evolved: 0,
        }));
        let Some(table) = self.open(&probe).await? else {
            return Ok(None);
        };
        let snapshot = table.snapshot().map_err(EngineError::delta(name))?;
        let schema = snapshot.snapshot().arrow_schema();
        let metadata = snapshot.metadata();
        let configuration = metadata.configuration();
        if configuration.contains_key(DERIVED_PROPERTY) {
            return Ok(None);
        }
        let mut dataset = Dataset::from_table(name, &schema, metadata.partition_columns());
        if let Some(key) = configuration.get(KEY_PROPERTY) {
            dataset.key = key.split(',').map(String::from).collect();
        }
        let required: Vec<&str> = configuration
            .get(REQUIRED_PROPERTY)
            .map_or(Vec::new(), |r| r.split(',').collect());
        for c in &mut dataset.columns {
            c.required |= dataset.key.contains(&c.name) || required.contains(&c.name.as_str());
        }
        Ok(Some(Arc::new(dataset)))
    }

    /// Row counts, sizes and versions of every existing table.
    pub async fn tables(&self) -> Result<Vec<TableInfo>> {
        let mut out = Vec::new();
        for kind in self.list().await? {
            let Some(table) = self.open(&kind).await? else {
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
        (*self.options).clone()
    }
}

/// Whether `kind` has timestamp (without time zone) columns and `table` has none.
fn gains_timestamps(kind: &Table, table: &DeltaTable) -> Result<bool> {
    let wants = kind.schema().fields().iter().any(|f| {
        matches!(
            f.data_type(),
            arrow::datatypes::DataType::Timestamp(_, None)
        )
    });
    let snapshot = table.snapshot().map_err(EngineError::delta(kind.name()))?;
    let has = snapshot
        .schema()
        .fields()
        .any(|f| *f.data_type() == deltalake::kernel::DataType::TIMESTAMP_NTZ);
    Ok(wants && !has)
}
