//! Errors of the engine: lake, load and SQL failures, each saying what failed and on which input.

/// A failure of a lake, load or query operation.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A source file could not be read (the load stops before committing anything).
    #[error(transparent)]
    Ingest(#[from] shopstream_ingest::IngestError),
    /// A Delta Lake operation failed.
    #[error("lake table `{table}`: {source}")]
    Delta {
        /// The table.
        table: String,
        /// delta-rs' error.
        source: deltalake::DeltaTableError,
    },
    /// An Arrow operation on rows failed.
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// A SQL statement failed to plan or run.
    #[error(transparent)]
    Sql(#[from] datafusion::error::DataFusionError),
    /// A dataset cannot be loaded (bad name, nothing to infer its columns from).
    #[error("dataset `{dataset}`: {reason}")]
    Dataset {
        /// The dataset.
        dataset: String,
        /// What is wrong.
        reason: String,
    },
    /// The lake location is not usable.
    #[error("lake location `{location}`: {reason}")]
    Location {
        /// The configured location.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// Another shopstream process is writing to this lake.
    #[error(
        "the lake at {0} is being written by another shopstream process; wait for it to finish"
    )]
    Busy(String),
    /// Another compaction of the lake runs (two at once would keep both rewrites: rows twice).
    #[error("another compaction of the lake at {0} is running; try again when it is done")]
    CompactionRunning(String),
    /// A table was written by an older release and must be migrated before anything is written to it.
    #[error(
        "lake table `{table}` has the schema of an older shopstream ({changes}); run `shopstream migrate` \
         (with no server running) to rewrite it in the current schema, then try again"
    )]
    NeedsMigration {
        /// The table.
        table: String,
        /// How its schema differs.
        changes: String,
    },
    /// `migrate` could not rewrite a table (nothing of that table was committed).
    #[error("migrating table `{table}`{}: {reason}", if file.is_empty() { String::new() } else { format!(", file {file}") })]
    Migrate {
        /// The table.
        table: String,
        /// The data file (empty when the table as a whole cannot be migrated).
        file: String,
        /// What failed, with the value.
        reason: String,
    },
    /// A `shopstream serve` holds the lake (its lock file).
    #[error(
        "a running `shopstream serve` holds this lake (lock file {0}); stop the server first \
         (one server per lake, and `migrate` runs only while none does)"
    )]
    ServerRunning(String),
    /// The load was interrupted (Ctrl-C) before its commit; nothing of it is visible.
    #[error("interrupted: nothing of this load was committed; rerun the same command to load it")]
    Interrupted,
    /// A file was refused (the landing folder moves it to `failed/` with this reason).
    #[error("{0}")]
    Refused(String),
    /// A continuous view cannot be created or run as written (what is not supported says why).
    #[error("view `{view}`: {reason}")]
    View {
        /// The view.
        view: String,
        /// What is wrong.
        reason: String,
    },
    /// A report name or parameter is wrong.
    #[error("{0}")]
    Report(String),
    /// A worker thread or task of the engine failed (a bug, not bad input).
    #[error("internal: {0}")]
    Internal(String),
    /// Writing query output failed.
    #[error("writing output: {0}")]
    Output(String),
}

impl EngineError {
    pub(crate) fn delta(
        table: &str,
    ) -> impl FnOnce(deltalake::DeltaTableError) -> EngineError + '_ {
        move |source| EngineError::Delta {
            table: table.to_string(),
            source,
        }
    }
}

/// Result of engine operations.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
