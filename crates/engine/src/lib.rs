//! shopstream's processing: the Delta Lake tables, loading files into them exactly once, SQL on
//! Apache DataFusion over all of them, and the built-in reports.
//!
//! The ingest crate turns files into Arrow batches; this crate owns where they go ([`lake`],
//! [`load`]) and how they are queried ([`sql`], [`reports`], [`output`]). Streaming jobs (windows,
//! watermarks, checkpoints) will live here too, on the same tables and catalog.

pub mod error;
pub mod lake;
pub mod load;
pub mod output;
pub mod reports;
pub mod sink;
pub mod sql;
pub mod stream;

pub use error::{EngineError, Result};
pub use lake::{Lake, TableKind};
pub use sql::Catalog;
