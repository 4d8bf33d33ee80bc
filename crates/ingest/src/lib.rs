//! shopstream's sources: read files of orders in any common layout and map them onto the canonical
//! orders schema, with every record either loaded or dead-lettered with its reason.
//!
//! This crate knows nothing of the lake or of SQL (it builds without DataFusion and tokio): it turns files
//! into Arrow batches for the `raw`, `orders` and `dead_letters` tables ([`schema`]), turns live records
//! (HTTP bodies, polled API pages, flows) into envelopes in the log and back into batches ([`sources`]), and
//! generates realistic test data ([`generate`]). The engine crate decides where those batches are written.

pub mod batch;
pub mod config;
pub mod dataset;
pub mod derive;
pub mod error;
pub mod generate;
pub mod mapping;
pub mod read;
pub mod schema;
pub mod sources;

pub use batch::{Chunk, Counts, Provenance};
pub use config::IngestConfig;
pub use dataset::{ColumnType, Dataset, DatasetConfig};
pub use error::IngestError;
pub use mapping::MappingConfig;
pub use read::{FileReader, Format, ReadOptions, expand_paths, expand_paths_skipping, fingerprint};
