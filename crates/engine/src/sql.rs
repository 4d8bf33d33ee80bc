//! SQL over the lake on Apache DataFusion: one catalog of every lake table, read-only.
//!
//! Every Delta table is registered through delta-rs' `TableProvider` (file skipping on partition
//! values and column statistics); a table not created yet is registered empty with its schema, so
//! queries and reports work on a fresh lake. Statements that write or change the catalog are refused.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::execution::config::SessionConfig;
use datafusion::prelude::{SQLOptions, SessionContext};

use crate::error::{EngineError, Result};
use crate::lake::{Lake, TableKind};

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

impl Catalog {
    /// Opens a session with every lake table registered under its name.
    pub async fn open(lake: &Lake) -> Result<Catalog> {
        // DATAFUSION_* environment variables tune the engine as in every DataFusion program
        // (e.g. DATAFUSION_EXECUTION_TARGET_PARTITIONS=8).
        let mut config = SessionConfig::from_env()?
            .with_information_schema(true)
            .with_default_catalog_and_schema("shopstream", "public");
        // Filters evaluated while decoding Parquet skip most of the work of selective queries.
        if std::env::var_os("DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS").is_none() {
            config = config.set_bool("datafusion.execution.parquet.pushdown_filters", true);
        }
        let ctx = SessionContext::new_with_config(config);
        for kind in TableKind::ALL {
            match lake.open(kind).await? {
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
        }
        Ok(Catalog { ctx })
    }

    /// The DataFusion session (for callers that need more than [`query`](Self::query)).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs one read-only statement and collects its result.
    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = self.ctx.sql_with_options(sql, options).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        Ok(QueryResult { schema, batches })
    }
}
