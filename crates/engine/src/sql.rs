//! SQL over the lake on Apache DataFusion: one catalog of every lake table, read-only.
//!
//! Every Delta table is registered through delta-rs' `TableProvider` (file skipping on partition
//! values and column statistics); a table not created yet is registered empty with its schema, so
//! queries and reports work on a fresh lake. Statements that write or change the catalog are refused.
//!
//! [`Catalog`] is a snapshot for one command. [`LiveCatalog`] is the long-lived one of a server (HTTP
//! queries, dashboard panels, the Postgres endpoint): it keeps each table's Delta state and, before a
//! statement, looks for the next commit (one existence check per table) and replays only the new
//! commits, so answers include what the live load committed a moment ago without re-reading the logs.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::execution::config::SessionConfig;
use datafusion::prelude::{SQLOptions, SessionContext};
use deltalake::DeltaTable;

use crate::error::{EngineError, Result};
use crate::lake::{Lake, Table};

/// A query session over a lake.
pub struct Catalog {
    ctx: SessionContext,
}

/// A query result.
#[derive(Debug)]
pub struct QueryResult {
    /// Result schema.
    pub schema: SchemaRef,
    /// Result rows.
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    /// Total rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The session settings every catalog uses.
fn session_config() -> Result<SessionConfig> {
    // DATAFUSION_* environment variables tune the engine as in every DataFusion program
    // (e.g. DATAFUSION_EXECUTION_TARGET_PARTITIONS=8).
    let mut config = SessionConfig::from_env()?
        .with_information_schema(true)
        .with_default_catalog_and_schema("shopstream", "public");
    // Filters evaluated while decoding Parquet skip most of the work of selective queries.
    if std::env::var_os("DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS").is_none() {
        config = config.set_bool("datafusion.execution.parquet.pushdown_filters", true);
    }
    Ok(config)
}

/// Registers `table` (or an empty table with the schema, when it does not exist yet) as `kind`'s name.
async fn register(ctx: &SessionContext, kind: &Table, table: Option<&DeltaTable>) -> Result<()> {
    match table {
        Some(table) => {
            table
                .update_datafusion_session(&ctx.state())
                .map_err(EngineError::delta(kind.name()))?;
            let provider = table.table_provider().await.map_err(EngineError::Sql)?;
            ctx.register_table(kind.name(), provider)?;
        }
        None => {
            let empty = MemTable::try_new(kind.schema(), vec![vec![]])?;
            ctx.register_table(kind.name(), Arc::new(empty))?;
        }
    }
    Ok(())
}

/// Runs `sql` on `ctx` if it only reads, and collects the result (for sessions of the caller's own, e.g.
/// over tables derived from the lake).
pub async fn run_read_only(ctx: &SessionContext, sql: &str) -> Result<QueryResult> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx.sql_with_options(sql, options).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    Ok(QueryResult { schema, batches })
}

impl Catalog {
    /// Opens a session with every lake table registered under its name.
    pub async fn open(lake: &Lake) -> Result<Catalog> {
        let ctx = SessionContext::new_with_config(session_config()?);
        crate::functions::register(&ctx);
        for kind in Table::builtins() {
            register(&ctx, &kind, lake.open(&kind).await?.as_ref()).await?;
        }
        for kind in lake.list().await? {
            if !Table::builtins().contains(&kind) {
                register(&ctx, &kind, lake.open(&kind).await?.as_ref()).await?;
            }
        }
        Ok(Catalog { ctx })
    }

    /// The DataFusion session (for callers that need more than [`query`](Self::query)).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs one read-only statement and collects its result.
    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        run_read_only(&self.ctx, sql).await
    }
}

/// A server's catalog: one session for its lifetime, brought up to date before each statement.
pub struct LiveCatalog {
    lake: Lake,
    ctx: SessionContext,
    /// Each table's Delta state (`None`: not created yet); the lock also serializes refreshes.
    tables: tokio::sync::Mutex<HashMap<String, (Table, Option<DeltaTable>)>>,
}

impl LiveCatalog {
    /// Opens every table of `lake` in the session `ctx`, which must use the `shopstream` catalog and
    /// `public` schema as defaults (start from [`session_config`](Self::session_config)); what else the
    /// session holds (e.g. a `pg_catalog` schema) is the caller's.
    pub async fn open_with(lake: Lake, ctx: SessionContext) -> Result<Arc<LiveCatalog>> {
        // A schema whose tables are replaced in one step when a new commit is found, so a statement
        // planned meanwhile sees the old or the new version, never no table.
        if let Some(catalog) = ctx.catalog("shopstream") {
            catalog.register_schema("public", Arc::new(SwappableSchema::default()))?;
        }
        crate::functions::register(&ctx);
        let mut tables = HashMap::new();
        for kind in Table::builtins() {
            let table = lake.open(&kind).await?;
            register(&ctx, &kind, table.as_ref()).await?;
            tables.insert(kind.name().to_string(), (kind, table));
        }
        let catalog = Arc::new(LiveCatalog {
            lake,
            ctx,
            tables: tokio::sync::Mutex::new(tables),
        });
        catalog.refresh().await?;
        Ok(catalog)
    }

    /// The settings a session for [`open_with`](Self::open_with) should start from.
    pub fn session_config() -> Result<SessionConfig> {
        session_config()
    }

    /// The session (shared: register nothing per request on it).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Brings every table to its latest commit; returns whether any changed. A table with no next commit
    /// costs one existence check of its next log file.
    pub async fn refresh(&self) -> Result<bool> {
        let mut tables = self.tables.lock().await;
        let mut changed = false;
        // Datasets created since (a new table is one more folder in the lake).
        for name in self.lake.dataset_names().await? {
            if tables.contains_key(&name) {
                continue;
            }
            match self.lake.dataset(&name).await {
                Ok(Some(dataset)) => {
                    tables.insert(name, (Table::of_dataset(&dataset), None));
                }
                Ok(None) => {
                    if let Some(kind) = self.lake.derived(&name).await? {
                        tables.insert(name, (kind, None));
                    }
                }
                Err(e) => tracing::warn!("lake folder `{name}` left out: {e}"),
            }
        }
        for (kind, slot) in tables.values_mut() {
            match slot {
                None => {
                    if let Some(table) = self.lake.open(kind).await? {
                        register(&self.ctx, kind, Some(&table)).await?;
                        *slot = Some(table);
                        changed = true;
                    }
                }
                Some(table) => {
                    if has_next_commit(table).await? {
                        table
                            .update_incremental(None)
                            .await
                            .map_err(EngineError::delta(kind.name()))?;
                        register(&self.ctx, kind, Some(table)).await?;
                        changed = true;
                    }
                }
            }
        }
        Ok(changed)
    }

    /// The version of `kind`'s table as of the last [`refresh`](Self::refresh) (`None`: not created yet).
    pub async fn version(&self, kind: &Table) -> Option<u64> {
        let tables = self.tables.lock().await;
        tables.get(kind.name())?.1.as_ref()?.version()
    }

    /// The data files of `kind`'s table as of the last [`refresh`](Self::refresh), with its version, and
    /// (given `since`) what the commits after version `since` added and removed — all of one version.
    pub async fn files(&self, kind: &Table, since: Option<u64>) -> Result<TableFiles> {
        let tables = self.tables.lock().await;
        let Some((_, Some(table))) = tables.get(kind.name()) else {
            return Ok(TableFiles::default());
        };
        let delta = || EngineError::delta(kind.name());
        let files = table.get_file_uris().map_err(delta())?.collect();
        let version = table.version();
        let changes = match (since, version) {
            (Some(since), Some(now)) if since <= now => {
                let store = table.log_store();
                let mut changes = Changes::default();
                let mut complete = true;
                for v in since + 1..=now {
                    let Some(bytes) = store.read_commit_entry(v).await.map_err(delta())? else {
                        // No longer in the log (cleaned up): the caller starts over.
                        complete = false;
                        break;
                    };
                    let uri = |path: &str| {
                        let path = deltalake::Path::parse(path)
                            .unwrap_or_else(|_| deltalake::Path::from(path));
                        store.to_uri(&path)
                    };
                    for action in deltalake::logstore::get_actions(v, &bytes).map_err(delta())? {
                        match action {
                            deltalake::kernel::Action::Add(a) => changes.added.push(FileChange {
                                uri: uri(&a.path),
                                data_change: a.data_change,
                            }),
                            deltalake::kernel::Action::Remove(r) => {
                                changes.removed.push(FileChange {
                                    uri: uri(&r.path),
                                    data_change: r.data_change,
                                })
                            }
                            _ => {}
                        }
                    }
                }
                complete.then_some(changes)
            }
            _ => None,
        };
        Ok(TableFiles {
            version,
            files,
            changes,
        })
    }

    /// Runs one read-only statement over a table `name` made of just `files` (data files, e.g. those a
    /// commit added: see [`files`](Self::files)), read as plain Parquet: partition columns are not in
    /// them. For work on what new commits added without reading the rest.
    pub async fn query_files(
        &self,
        files: &[String],
        name: &str,
        sql: &str,
    ) -> Result<QueryResult> {
        use datafusion::datasource::file_format::parquet::ParquetFormat;
        use datafusion::datasource::listing::{
            ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
        };
        // The same object stores as the catalog's (the lake may be on S3).
        let ctx = SessionContext::new_with_config_rt(session_config()?, self.ctx.runtime_env());
        let urls = files
            .iter()
            .map(ListingTableUrl::parse)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .infer_schema(&ctx.state())
            .await?;
        ctx.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
        run_read_only(&ctx, sql).await
    }

    /// Refreshes, then runs one read-only statement and collects its result.
    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        self.refresh().await?;
        run_read_only(&self.ctx, sql).await
    }
}

/// A table's data files at one version: see [`LiveCatalog::files`].
#[derive(Debug, Default)]
pub struct TableFiles {
    /// The table's version (`None`: not created yet).
    pub version: Option<u64>,
    /// The URIs of its data files.
    pub files: Vec<String>,
    /// What the commits after the asked-for version added and removed; `None` when not asked, or when a
    /// commit is no longer in the log.
    pub changes: Option<Changes>,
}

/// Files commits added and removed.
#[derive(Debug, Default)]
pub struct Changes {
    /// Added files.
    pub added: Vec<FileChange>,
    /// Removed files.
    pub removed: Vec<FileChange>,
}

/// A file a commit added or removed.
#[derive(Debug, Clone)]
pub struct FileChange {
    /// Its URI.
    pub uri: String,
    /// Whether the commit changed data; `false` for a rewrite of the same rows (a compaction).
    pub data_change: bool,
}

/// A schema whose `register_table` replaces an existing table atomically.
#[derive(Debug, Default)]
struct SwappableSchema {
    tables: std::sync::RwLock<HashMap<String, Arc<dyn datafusion::catalog::TableProvider>>>,
}

#[async_trait::async_trait]
impl datafusion::catalog::SchemaProvider for SwappableSchema {
    fn table_names(&self) -> Vec<String> {
        let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
        tables.keys().cloned().collect()
    }

    async fn table(
        &self,
        name: &str,
    ) -> datafusion::error::Result<Option<Arc<dyn datafusion::catalog::TableProvider>>> {
        let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
        Ok(tables.get(name).cloned())
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn datafusion::catalog::TableProvider>,
    ) -> datafusion::error::Result<Option<Arc<dyn datafusion::catalog::TableProvider>>> {
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        Ok(tables.insert(name, table))
    }

    fn deregister_table(
        &self,
        name: &str,
    ) -> datafusion::error::Result<Option<Arc<dyn datafusion::catalog::TableProvider>>> {
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        Ok(tables.remove(name))
    }

    fn table_exist(&self, name: &str) -> bool {
        let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
        tables.contains_key(name)
    }
}

/// Whether the commit after the loaded version exists.
async fn has_next_commit(table: &DeltaTable) -> Result<bool> {
    let Some(version) = table.version() else {
        return Ok(true);
    };
    let next = deltalake::Path::from(format!("_delta_log/{:020}.json", version + 1));
    use object_store::ObjectStoreExt;
    match table.log_store().object_store(None).head(&next).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(EngineError::Delta {
            table: table.log_store().root_url().to_string(),
            source: e.into(),
        }),
    }
}
