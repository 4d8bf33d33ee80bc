//! The one small topic interface the rest of shopstream reads and writes a backbone through.
//!
//! A backbone is where live records wait between their source and the lake: the embedded log of this crate
//! by default, Apache Kafka when configured. Both are topics of numbered partitions holding records at
//! offsets; [`TopicLog`] is what the continuous load needs of one topic, so a second backbone is one more
//! implementation of it. Offsets are the backbone's own: the lake keeps them per topic and partition in its
//! Delta transactions, under an application id that names the backbone.

use std::ops::Range;

use crate::error::Result;
use crate::log::Topic;
use crate::record::{NewRecord, Record};

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
    fn read(
        &self,
        n: u32,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>>;
    /// The offset the next record of partition `n` will get.
    fn end_offset(&self, n: u32) -> Result<u64>;
    /// The backbone, as named in the lake's transaction ids (`embedded`, or a Kafka cluster).
    fn backbone(&self) -> &str;
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

    fn read(
        &self,
        n: u32,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>> {
        self.partition(n)?.read(offset, max_records, max_bytes)
    }

    fn end_offset(&self, n: u32) -> Result<u64> {
        Ok(self.partition(n)?.end_offset())
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
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].value, b"b");
        assert!(
            topic
                .read(topic.partition_count(), 0, 10, usize::MAX)
                .is_err()
        );
        assert_eq!(topic.backbone(), "embedded");
    }
}
