//! One Kafka topic as a [`TopicLog`]: appends produce one message per request (acknowledged once every
//! in-sync replica has it: `acks=all`, idempotent producer), reads come from a consumer of this worker's
//! own per partition, positioned at the offset asked for (the lake's), reading committed records only.
//!
//! A request retried to another worker (or after a crash) is a second message with the same key in the
//! same partition (key → partition is stable). The reader keeps the keys of the partition's last
//! [`DEDUPE_WINDOW`] requests and skips a message whose key it has seen. The load keeps that window with
//! the lake's state ([`TopicLog::dedupe_window`]); a reader positioned anew starts from the window the lake
//! kept at or before its offset ([`TopicLog::restore_window`]) and reads on from there, so it decides as
//! the previous reader did. Without one (a lake loaded before windows were kept) it re-reads the
//! [`DEDUPE_WINDOW`] messages before its offset.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use shopstream_log::{Fetched, LogError, NewRecord, Record, Result, TopicLog};

use crate::config::{Format, Start};
use crate::group::Membership;
use crate::message::{ENVELOPES_V1, HEADER, foreign, pack, source_of, unpack};

/// Requests per partition whose keys a reader remembers to skip a retried request's second message.
pub const DEDUPE_WINDOW: usize = 10_000;

/// How long a read waits for a first message before answering that there is nothing new.
const READ_WAIT: Duration = Duration::from_millis(100);

/// How the shop's own messages in this topic are read, and where a new load starts.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// JSON objects or CSV lines.
    pub format: Format,
    /// CSV columns.
    pub columns: Vec<String>,
    /// Where a load starts without an offset in the lake.
    pub start: Start,
}

/// Clients and settings a topic shares with its backbone.
pub(crate) struct Clients {
    pub(crate) cluster: String,
    pub(crate) producer: FutureProducer,
    /// For watermarks.
    pub(crate) meta: BaseConsumer<crate::backbone::LastError>,
    /// Settings of a reading consumer (no group).
    pub(crate) reader: ClientConfig,
    /// Settings of a group member.
    pub(crate) group: ClientConfig,
    pub(crate) timeout: Duration,
    pub(crate) max_message_bytes: usize,
}

/// A Kafka topic; see the module documentation.
pub struct KafkaTopic {
    name: String,
    partitions: u32,
    reading: Reading,
    clients: Arc<Clients>,
    readers: Vec<Mutex<Option<Reader>>>,
    /// Per partition, the window the lake kept at an offset, for the next positioning.
    restored: Vec<Mutex<Option<(u64, Window)>>>,
    membership: OnceLock<Option<Membership>>,
}

/// Keys of the last requests read, oldest first.
#[derive(Default)]
struct Window {
    keys: HashSet<Vec<u8>>,
    order: VecDeque<Vec<u8>>,
}

impl Window {
    /// Remembers `key`; false when it was already there (a retried request).
    fn insert(&mut self, key: &[u8]) -> bool {
        if self.keys.contains(key) {
            return false;
        }
        self.keys.insert(key.to_vec());
        self.order.push_back(key.to_vec());
        if self.order.len() > DEDUPE_WINDOW
            && let Some(old) = self.order.pop_front()
        {
            self.keys.remove(&old);
        }
        true
    }

    fn from_keys(keys: Vec<Vec<u8>>) -> Window {
        let mut w = Window::default();
        for k in keys {
            w.insert(&k);
        }
        w
    }
}

/// A consumer reading one partition, and where it stands.
struct Reader {
    consumer: BaseConsumer,
    /// The offset the next message read will have (at least).
    position: u64,
    window: Window,
}

impl KafkaTopic {
    pub(crate) fn new(
        name: &str,
        partitions: u32,
        reading: Reading,
        clients: Arc<Clients>,
    ) -> KafkaTopic {
        KafkaTopic {
            name: name.to_string(),
            partitions,
            reading,
            clients,
            readers: (0..partitions).map(|_| Mutex::new(None)).collect(),
            restored: (0..partitions).map(|_| Mutex::new(None)).collect(),
            membership: OnceLock::new(),
        }
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> LogError {
        LogError::Backbone {
            backbone: self.clients.cluster.clone(),
            reason: format!("topic `{}`: {what}: {e}", self.name),
        }
    }

    fn check(&self, n: u32) -> Result<()> {
        if n < self.partitions {
            Ok(())
        } else {
            Err(LogError::UnknownPartition {
                topic: self.name.clone(),
                partition: n,
                partitions: self.partitions,
            })
        }
    }

    fn watermarks(&self, n: u32) -> Result<(u64, u64)> {
        self.check(n)?;
        let (low, high) = self
            .clients
            .meta
            .fetch_watermarks(&self.name, n as i32, self.clients.timeout)
            .map_err(|e| self.error(&format!("partition {n} offsets"), e))?;
        Ok((low.max(0) as u64, high.max(0) as u64))
    }

    /// Rebalances of this topic's consumer group seen by this worker.
    pub fn rebalances(&self) -> u64 {
        self.group().map_or(0, Membership::rebalances)
    }

    fn group(&self) -> Option<&Membership> {
        self.membership
            .get_or_init(|| match Membership::join(&self.clients.group, &self.name) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::error!(topic = %self.name, "joining the consumer group: {e}");
                    None
                }
            })
            .as_ref()
    }

    /// A reader of partition `n` that will return records from `offset` on. It starts where the window the
    /// lake kept was taken, or else up to [`DEDUPE_WINDOW`] messages before; the messages before `offset`
    /// only fill the window.
    fn position(&self, n: u32, offset: u64) -> Result<Reader> {
        let consumer: BaseConsumer = self
            .clients
            .reader
            .create()
            .map_err(|e| self.error("creating a consumer", e))?;
        let restored = self.restored[n as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .filter(|(at, _)| *at <= offset && offset - at <= DEDUPE_WINDOW as u64);
        let (from, window) = match restored {
            Some((at, window)) => (at, window),
            None => {
                let (low, _) = self.watermarks(n)?;
                let from = offset
                    .saturating_sub(DEDUPE_WINDOW as u64)
                    .max(low)
                    .min(offset);
                (from, Window::default())
            }
        };
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.name, n as i32, Offset::Offset(from as i64))
            .map_err(|e| self.error("positioning", e))?;
        consumer
            .assign(&list)
            .map_err(|e| self.error("positioning", e))?;
        Ok(Reader {
            consumer,
            position: from,
            window,
        })
    }

    /// Reads up to `max` messages (about `max_bytes`) into `out`; messages below `returned_from` only fill the
    /// dedupe window. Returns how many messages were read, and whether the partition's end was reached.
    fn fetch(
        &self,
        n: u32,
        reader: &mut Reader,
        returned_from: u64,
        max: usize,
        max_bytes: usize,
        out: &mut Vec<Record>,
    ) -> Result<(usize, bool)> {
        let deadline = Instant::now() + READ_WAIT;
        let (mut count, mut bytes) = (0usize, 0usize);
        while count < max && bytes < max_bytes {
            let wait = if count == 0 {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            let message = match reader.consumer.poll(wait) {
                None => break,
                Some(Err(KafkaError::PartitionEOF(_))) => return Ok((count, true)),
                Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::OffsetOutOfRange))) => {
                    let (low, high) = self.watermarks(n)?;
                    return Err(LogError::OffsetOutOfRange {
                        requested: reader.position,
                        start: low,
                        end: high,
                    });
                }
                Some(Err(e)) => return Err(self.error(&format!("reading partition {n}"), e)),
                Some(Ok(m)) => m,
            };
            let offset = message.offset().max(0) as u64;
            count += 1;
            reader.position = offset + 1;
            let payload = message.payload().unwrap_or_default();
            bytes += payload.len();
            let ours = message.headers().is_some_and(|h| {
                h.iter()
                    .any(|h| h.key == HEADER && h.value == Some(ENVELOPES_V1))
            });
            if ours
                && let Some(key) = message.key()
                && !reader.window.insert(key)
            {
                continue;
            }
            if offset < returned_from {
                continue;
            }
            let timestamp_ms = message.timestamp().to_millis().unwrap_or(0);
            let key = message.key().map(<[u8]>::to_vec);
            if ours {
                out.extend(unpack(payload).map(|line| Record {
                    offset,
                    timestamp_ms,
                    key: key.clone(),
                    value: line.to_vec(),
                }));
            } else {
                let source = source_of(&self.name, n, offset);
                let reading = &self.reading;
                out.push(Record {
                    offset,
                    timestamp_ms,
                    key,
                    value: foreign(source, reading.format, &reading.columns, payload),
                });
            }
        }
        Ok((count, false))
    }

    /// Reads from `offset` with `reader`, first through the messages before it (the window) if need be.
    fn read_from(
        &self,
        n: u32,
        reader: &mut Reader,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>> {
        let mut records = Vec::new();
        let started = Instant::now();
        loop {
            let (_, at_end) =
                self.fetch(n, reader, offset, max_records, max_bytes, &mut records)?;
            if reader.position >= offset || at_end {
                return Ok(records);
            }
            if started.elapsed() > self.clients.timeout {
                return Err(self.error(
                    &format!("partition {n}"),
                    format!(
                        "offsets {}..{offset} could not be read back",
                        reader.position
                    ),
                ));
            }
        }
    }
}

/// Kafka's default partitioner: murmur2 of the key, as Java producers place keyed records.
pub fn murmur2_partition(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(key: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ key.len() as u32;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

impl TopicLog for KafkaTopic {
    fn name(&self) -> &str {
        &self.name
    }

    fn partition_count(&self) -> u32 {
        self.partitions
    }

    fn partition_for_key(&self, key: &[u8]) -> u32 {
        murmur2_partition(key, self.partitions)
    }

    fn append(&self, n: u32, records: &[NewRecord]) -> Result<std::ops::Range<u64>> {
        self.check(n)?;
        let value = pack(records)?;
        let limit = self.clients.max_message_bytes;
        if value.len() > limit {
            return Err(LogError::TooLarge {
                backbone: self.clients.cluster.clone(),
                bytes: value.len(),
                limit,
            });
        }
        let timestamp = records.first().map_or(0, |r| r.timestamp_ms);
        let key = records.first().and_then(|r| r.key.as_deref());
        let headers = OwnedHeaders::new().insert(Header {
            key: HEADER,
            value: Some(ENVELOPES_V1),
        });
        let started = Instant::now();
        let delivery = loop {
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.name)
                .partition(n as i32)
                .payload(&value)
                .timestamp(timestamp)
                .headers(headers.clone());
            if let Some(k) = key {
                record = record.key(k);
            }
            match self.clients.producer.send_result(record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if started.elapsed() < self.clients.timeout =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(self.error("producing", e)),
            }
        };
        match futures::executor::block_on(delivery) {
            Ok(Ok(d)) => {
                let offset = d.offset.max(0) as u64;
                Ok(offset..offset + 1)
            }
            Ok(Err((e, _))) => Err(self.error("producing", e)),
            Err(_) => Err(self.error("producing", "the producer went away")),
        }
    }

    fn read(&self, n: u32, offset: u64, max_records: usize, max_bytes: usize) -> Result<Fetched> {
        self.check(n)?;
        let mut slot = self.readers[n as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_none_or(|r| r.position != offset) {
            *slot = None;
            *slot = Some(self.position(n, offset)?);
        }
        let reader = slot.as_mut().expect("positioned");
        match self.read_from(n, reader, offset, max_records, max_bytes) {
            Ok(records) => {
                let next = reader.position.max(offset);
                reader.position = next;
                Ok(Fetched { records, next })
            }
            Err(e) => {
                *slot = None;
                Err(e)
            }
        }
    }

    fn end_offset(&self, n: u32) -> Result<u64> {
        Ok(self.watermarks(n)?.1)
    }

    fn start_offset(&self, n: u32) -> Result<u64> {
        Ok(self.watermarks(n)?.0)
    }

    fn initial_offset(&self, n: u32) -> Result<u64> {
        let (low, high) = self.watermarks(n)?;
        Ok(match self.reading.start {
            Start::Earliest => low,
            Start::Latest => high,
        })
    }

    fn backbone(&self) -> &str {
        &self.clients.cluster
    }

    fn assigned(&self) -> Vec<u32> {
        self.group().map_or_else(Vec::new, Membership::assigned)
    }

    fn rebalances(&self) -> u64 {
        KafkaTopic::rebalances(self)
    }

    fn dedupe_window(&self, n: u32, next: u64) -> Option<Vec<Vec<u8>>> {
        let slot = self.readers.get(n as usize)?;
        let reader = slot.lock().unwrap_or_else(|e| e.into_inner());
        let reader = reader.as_ref().filter(|r| r.position == next)?;
        Some(reader.window.order.iter().cloned().collect())
    }

    fn restore_window(&self, n: u32, at: u64, keys: Vec<Vec<u8>>) {
        if let Some(slot) = self.restored.get(n as usize) {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((at, Window::from_keys(keys)));
        }
    }

    fn loaded(&self, n: u32, next: u64) {
        if let Some(group) = self.group()
            && let Err(e) = group.commit(n, next)
        {
            tracing::warn!(topic = %self.name, partition = n, "{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_where_java_producers_put_them() {
        // The cases of Kafka's own UtilsTest.testMurmur2.
        for (key, java) in [
            (&b"21"[..], -973932308i32),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ] {
            assert_eq!(
                murmur2(key) as i32,
                java,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
        assert_eq!(murmur2_partition(b"abcd", 7), murmur2_partition(b"abcd", 7));
        for key in [&b"a"[..], b"ab", b"abc", b"abcde", b"order-17850"] {
            assert!(murmur2_partition(key, 3) < 3);
        }
    }

    #[test]
    fn the_window_skips_a_key_seen_and_forgets_the_oldest() {
        let mut w = Window::default();
        assert!(w.insert(b"k1"));
        assert!(!w.insert(b"k1"));
        for i in 0..DEDUPE_WINDOW {
            assert!(w.insert(format!("x{i}").as_bytes()));
        }
        assert!(w.insert(b"k1"), "k1 left the window");
    }
}
