//! Errors of the ingest crate: each says which file (and where in it) failed and what to do next.
//!
//! Record-level problems are not errors: they become dead letters. These are the problems that stop
//! a whole file (unreadable, no usable columns) or a whole load (bad configuration).

use std::path::PathBuf;

/// A failure that stops reading one file or applying one configuration.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file's format is not one shopstream reads.
    #[error(
        "{path}: unsupported file type (expected .csv, .tsv, .txt, .xlsx, .xls, .ods, .json, .jsonl, .ndjson or .parquet)"
    )]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
    },
    /// The file is readable but its content cannot be decoded as the detected format.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line or sheet where known.
        reason: String,
    },
    /// The file's columns cannot be mapped onto the orders schema.
    #[error(
        "{path}: no column for required field `{field}` (columns found: {columns}); \
         add a [[mappings]] entry for this file in the config"
    )]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The dataset column that has no source.
        field: String,
        /// The columns the file has.
        columns: String,
    },
    /// A mapping in the configuration is invalid.
    #[error("mapping `{mapping}`: {reason}")]
    BadMapping {
        /// The mapping's name.
        mapping: String,
        /// What is wrong.
        reason: String,
    },
    /// A dataset in the configuration is invalid, or a dataset name is unknown.
    #[error("dataset `{dataset}`: {reason}")]
    BadDataset {
        /// The dataset's name.
        dataset: String,
        /// What is wrong.
        reason: String,
    },
    /// `[ingest] timezone` names no time zone.
    #[error(
        "[ingest] timezone `{timezone}` is not a time zone (use an IANA name such as `Europe/London`, \
         or `UTC`)"
    )]
    BadTimezone {
        /// The configured name.
        timezone: String,
    },
    /// Writing generated data failed.
    #[error("writing {path}: {reason}")]
    Write {
        /// The output.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

impl IngestError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IngestError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        IngestError::Malformed {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
