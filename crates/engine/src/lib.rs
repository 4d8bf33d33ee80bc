//! shopstream's processing: the Delta Lake tables, loading files and log topics into them exactly once,
//! SQL on Apache DataFusion over all of them, and the built-in reports.
//!
//! The ingest crate turns files and live records into Arrow batches; this crate owns where they go
//! ([`lake`], [`datasets`], [`derive`], [`sink`], [`load`], [`compact`], [`migrate`], and the continuous jobs in
//! [`stream`]: topic load, landing
//! folder) and how
//! they are queried ([`sql`], [`reports`], [`output`]). Windows, watermarks and checkpointed state will join
//! [`stream`], on the same tables and catalog.

pub mod compact;
pub mod config;
pub mod datasets;
pub mod derive;
pub mod error;
pub mod functions;
pub mod lake;
pub mod lease;
pub mod load;
pub mod migrate;
pub mod output;
pub mod reports;
pub mod sink;
pub mod sql;
pub mod storage;
pub mod stream;

pub use config::LakeConfig;
pub use error::{EngineError, Result};
pub use lake::{Lake, Table};
pub use sql::{Catalog, Changes, FileChange, LiveCatalog, QueryResult, TableFiles, run_read_only};
