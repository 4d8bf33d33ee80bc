//! The one small topic interface the rest of shopstream reads and writes a backbone through.
//!
//! A backbone is where live records wait between their source and the lake: the embedded log of this crate
//! by default, Apache Kafka when configured. Both are topics of numbered partitions holding records at
//! offsets; [`TopicLog`] is what the continuous load needs of one topic, so a second backbone is one more
//! implementation of it. Offsets are the backbone's own: the lake keeps them per topic and partition in its
//! Delta transactions, under an application id that names the backbone. [`Backbone`] is the set of topics
//! the server creates and finds by name; [`Embedded`] is the embedded log's.

use std::ops::Range;
use std::sync::Arc;

use crate::error::Result;
use crate::log::{Log, Topic};
use crate::partition::PartitionConfig;
use crate::record::{NewRecord, Record};

/// What one read of a partition returned.
#[derive(Debug, Default)]
pub struct Fetched {
    /// The records read, in offset order (records stored together share their offset on some backbones).
    pub records: Vec<Record>,
    /// Where the next read starts: past the records, and past anything the backbone skipped (a Kafka
    /// transaction's markers, a request already stored). Equal to the offset read from when nothing was.
    pub next: u64,
}

/// One topic of a backbone.
pub trait TopicLog: Send + Sync {
    /// The topic's name.
    fn name(&self) -> &str;
    /// Its number of partitions.
    fn partition_count(&self) -> u32;
    /// The partition records with this key go to (stable for a given partition count).
    fn partition_for_key(&self, key: &[u8]) -> u32;
    /// Appends `records` to partition `n` as one batch; returns their offsets once they are durable.
    fn append(&self, n: u32, records: &[NewRecord]) -> Result<Range<u64>>;
    /// Up to `max_records` durable records of partition `n` from `offset` (about `max_bytes` at most).
    fn read(&self, n: u32, offset: u64, max_records: usize, max_bytes: usize) -> Result<Fetched>;
    /// The offset the next record of partition `n` will get.
    fn end_offset(&self, n: u32) -> Result<u64>;
    /// The first offset of partition `n` still held (older records were removed by retention).
    fn start_offset(&self, n: u32) -> Result<u64>;
    /// Where a load starts in partition `n` when the lake has no offset for it yet.
    fn initial_offset(&self, n: u32) -> Result<u64> {
        self.start_offset(n)
    }
    /// The backbone, as named in the lake's transaction ids (`embedded`, or a Kafka cluster).
    fn backbone(&self) -> &str;
    /// The partitions this process loads: all of them on the embedded log, those the consumer group
    /// assigned to this worker on Kafka.
    fn assigned(&self) -> Vec<u32> {
        (0..self.partition_count()).collect()
    }
    /// Consumer-group rebalances this worker saw (none on the embedded log).
    fn rebalances(&self) -> u64 {
        0
    }
    /// Told after the lake committed partition `n` up to `next` (Kafka commits the group's offset then, for
    /// lag tools; the lake's offset is the one a load resumes from).
    fn loaded(&self, _n: u32, _next: u64) {}
    /// The keys of the last requests the reader of partition `n` remembers to skip retried ones (Kafka),
    /// oldest first, once it has read up to `next`: the load keeps them with the lake's state there, so
    /// that a reader positioned there later starts from them ([`TopicLog::restore_window`]). `None` on a
    /// backbone that needs none, or when the reader is not at `next`.
    fn dedupe_window(&self, _n: u32, _next: u64) -> Option<Vec<Vec<u8>>> {
        None
    }
    /// The window the lake kept at offset `at` of partition `n`: the next time its reader is positioned
    /// at or after `at`, it starts from these keys at `at` instead of re-reading the messages before.
    fn restore_window(&self, _n: u32, _at: u64, _keys: Vec<Vec<u8>>) {}
}

/// The topics of a backbone.
pub trait Backbone: Send + Sync {
    /// Its name, as in the lake's transaction ids.
    fn name(&self) -> &str;
    /// An existing topic.
    fn topic(&self, name: &str) -> Result<Arc<dyn TopicLog>>;
    /// An existing topic for a second reader (a continuous view beside the load): on a backbone whose
    /// topics keep a reader per partition (Kafka), one of its own, so the two never move each other's.
    fn topic_reader(&self, name: &str) -> Result<Arc<dyn TopicLog>> {
        self.topic(name)
    }
    /// The topic, created with `partitions` partitions when missing; an existing topic with another count is
    /// refused (keys would move to other partitions).
    fn create_topic(&self, name: &str, partitions: u32) -> Result<Arc<dyn TopicLog>>;
    /// The embedded log, when that is the backbone (its own metrics and recovery).
    fn embedded(&self) -> Option<&Arc<Log>> {
        None
    }
}

/// The embedded log as a backbone; topics it creates get `config`.
pub struct Embedded {
    log: Arc<Log>,
    config: PartitionConfig,
}

impl Embedded {
    /// `log` as a backbone.
    pub fn new(log: Arc<Log>, config: PartitionConfig) -> Embedded {
        Embedded { log, config }
    }

    /// `log` as a shared backbone creating topics with the default settings.
    pub fn shared(log: Arc<Log>) -> Arc<dyn Backbone> {
        Arc::new(Embedded::new(log, PartitionConfig::default()))
    }
}

impl Backbone for Embedded {
    fn name(&self) -> &str {
        "embedded"
    }

    fn topic(&self, name: &str) -> Result<Arc<dyn TopicLog>> {
        Ok(self.log.topic(name)?)
    }

    fn create_topic(&self, name: &str, partitions: u32) -> Result<Arc<dyn TopicLog>> {
        Ok(self
            .log
            .create_topic(name, partitions, self.config.clone())?)
    }

    fn embedded(&self) -> Option<&Arc<Log>> {
        Some(&self.log)
    }
}

impl TopicLog for Topic {
    fn name(&self) -> &str {
        Topic::name(self)
    }

    fn partition_count(&self) -> u32 {
        Topic::partition_count(self)
    }

    fn partition_for_key(&self, key: &[u8]) -> u32 {
        Topic::partition_for_key(self, key)
    }

    fn append(&self, n: u32, records: &[NewRecord]) -> Result<Range<u64>> {
        Topic::append(self, n, records)
    }

    fn read(&self, n: u32, offset: u64, max_records: usize, max_bytes: usize) -> Result<Fetched> {
        let records = self.partition(n)?.read(offset, max_records, max_bytes)?;
        let next = records.last().map_or(offset, |r| r.offset + 1);
        Ok(Fetched { records, next })
    }

    fn end_offset(&self, n: u32) -> Result<u64> {
        Ok(self.partition(n)?.end_offset())
    }

    fn start_offset(&self, n: u32) -> Result<u64> {
        Ok(self.partition(n)?.start_offset())
    }

    fn backbone(&self) -> &str {
        "embedded"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::log::Log;
    use crate::partition::PartitionConfig;

    #[test]
    fn the_embedded_log_is_a_topic_log() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path()).unwrap();
        let topic: Arc<dyn TopicLog> = log
            .create_topic("orders", 2, PartitionConfig::default())
            .unwrap();
        let p = topic.partition_for_key(b"key-1");
        assert!(p < topic.partition_count());
        let offsets = topic
            .append(p, &[NewRecord::new(1, "a"), NewRecord::new(2, "b")])
            .unwrap();
        assert_eq!(offsets, 0..2);
        assert_eq!(topic.end_offset(p).unwrap(), 2);
        let read = topic.read(p, 1, 10, usize::MAX).unwrap();
        assert_eq!(read.records.len(), 1);
        assert_eq!(read.records[0].value, b"b");
        assert_eq!(read.next, 2);
        assert_eq!(topic.read(p, 2, 10, usize::MAX).unwrap().next, 2);
        assert_eq!(topic.assigned(), vec![0, 1]);
        assert!(
            topic
                .read(topic.partition_count(), 0, 10, usize::MAX)
                .is_err()
        );
        assert_eq!(topic.backbone(), "embedded");
    }
}
