//! shopstream's embedded durable log: Kafka's model (topics, partitions, offsets, consumer groups) in a
//! library with no server, no arrow and no tokio.
//!
//! Records are appended to partitions in checksummed batches ([`record`]) inside segment files with sparse
//! offset and time indexes ([`segment`]). An append is acknowledged only once its batch is on disk, with
//! concurrent appends sharing one `fdatasync` (group commit) or syncing on an interval ([`partition`]).
//! Readers see only durable records. On open a torn or corrupt tail is cut back to the last good batch,
//! logged and counted, never served. Consumer groups commit offsets durably ([`log`]).

pub mod error;
pub mod log;
pub mod partition;
pub mod record;
pub mod segment;
pub mod topic_log;

pub use error::{LogError, Result};
pub use log::{Log, LogMetrics, Recovery, Topic};
pub use partition::{Partition, PartitionConfig, SyncPolicy};
pub use record::{NewRecord, Record};
pub use segment::Truncation;
pub use topic_log::{Backbone, Embedded, Fetched, TopicLog};
