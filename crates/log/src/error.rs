//! Errors of the log, each naming the file, topic, partition or offset concerned.

use std::path::{Path, PathBuf};

/// A failure of a log operation.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Stored bytes fail their checksum or layout where no crash can explain it (not the active tail).
    #[error("{} at byte {position}: {reason}", path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte position of the bad batch.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// No such topic.
    #[error("no topic `{0}`")]
    UnknownTopic(String),
    /// The topic exists with other settings.
    #[error("topic `{topic}` already exists with {existing} partitions")]
    TopicExists {
        /// The topic.
        topic: String,
        /// Its partition count.
        existing: u32,
    },
    /// No such partition.
    #[error("topic `{topic}` has no partition {partition} (it has {partitions})")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many it has.
        partitions: u32,
    },
    /// A read asked for an offset that is not (or no longer) in the partition.
    #[error("offset {requested} is out of range: the partition holds {start}..{end}")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: u64,
        /// First offset still stored (older ones were removed by retention).
        start: u64,
        /// One past the last durable offset.
        end: u64,
    },
    /// The backbone (a Kafka cluster) failed or refused an operation.
    #[error("{backbone}: {reason}")]
    Backbone {
        /// The backbone, as configured (`kafka`, or the cluster's name).
        backbone: String,
        /// What it said.
        reason: String,
    },
    /// Records too large to store together (a Kafka message is limited in size).
    #[error(
        "{bytes} bytes of records exceed the limit of {limit} bytes for one request on {backbone}"
    )]
    TooLarge {
        /// The backbone.
        backbone: String,
        /// Their size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A name or setting is not valid.
    #[error("{0}")]
    Invalid(String),
    /// An earlier sync failed: the partition refuses writes until reopened, as the state of the
    /// unsynced bytes is unknown (the lesson of PostgreSQL's fsync bug).
    #[error("partition {0} failed to sync earlier and is read-only until the log is reopened")]
    Poisoned(String),
}

impl LogError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
        move |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Result of log operations.
pub type Result<T, E = LogError> = std::result::Result<T, E>;
