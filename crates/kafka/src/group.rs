//! Group membership of one topic: the consumer group only says which partitions this worker loads.
//!
//! A consumer subscribes to the topic in `[kafka] group_id` and keeps its assigned partitions paused: it
//! never reads records (a worker reads from the lake's offsets, [`crate::topic`]). Its thread polls, which
//! keeps the membership alive and runs rebalances; when a worker stops or dies its partitions move to the
//! others within the group's session timeout. After the lake committed a partition up to an offset, that
//! offset is committed to the group too, so Kafka's lag tools show the load's lag.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use shopstream_log::LogError;

/// Partitions assigned, and rebalances seen.
#[derive(Default)]
struct Assignment {
    partitions: Mutex<BTreeSet<u32>>,
    rebalances: AtomicU64,
}

struct GroupContext {
    topic: String,
    assignment: Arc<Assignment>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut partitions = self
            .assignment
            .partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match rebalance {
            Rebalance::Assign(list) => {
                if let Err(e) = consumer.pause(list) {
                    tracing::warn!(topic = %self.topic, "pausing the group's partitions: {e}");
                }
                partitions.extend(ours(&self.topic, list));
            }
            Rebalance::Revoke(list) => {
                for p in ours(&self.topic, list) {
                    partitions.remove(&p);
                }
            }
            Rebalance::Error(e) => tracing::warn!(topic = %self.topic, "rebalance: {e}"),
        }
        self.assignment.rebalances.fetch_add(1, Ordering::Relaxed);
        tracing::info!(topic = %self.topic, assigned = ?*partitions, "consumer group rebalanced");
    }
}

fn ours(topic: &str, list: &TopicPartitionList) -> Vec<u32> {
    list.elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| e.partition() as u32)
        .collect()
}

/// This worker's membership of the group for one topic; leaves the group when dropped.
pub struct Membership {
    topic: String,
    consumer: Arc<BaseConsumer<GroupContext>>,
    assignment: Arc<Assignment>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Membership {
    /// Joins the group `config` names (`group.id` set) for `topic`.
    pub fn join(config: &ClientConfig, topic: &str) -> Result<Membership, String> {
        let assignment = Arc::new(Assignment::default());
        let context = GroupContext {
            topic: topic.to_string(),
            assignment: assignment.clone(),
        };
        let consumer: BaseConsumer<GroupContext> = config
            .clone()
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create_with_context(context)
            .map_err(|e| e.to_string())?;
        consumer.subscribe(&[topic]).map_err(|e| e.to_string())?;
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (consumer, stop) = (consumer.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("kafka-group-{topic}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        // Paused partitions hand out nothing; anything fetched before the pause is dropped.
                        let _ = consumer.poll(Duration::from_millis(100));
                    }
                })
                .map_err(|e| e.to_string())?
        };
        Ok(Membership {
            topic: topic.to_string(),
            consumer,
            assignment,
            stop,
            thread: Some(thread),
        })
    }

    /// The partitions assigned to this worker now.
    pub fn assigned(&self) -> Vec<u32> {
        self.assignment
            .partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// Rebalances seen since joining.
    pub fn rebalances(&self) -> u64 {
        self.assignment.rebalances.load(Ordering::Relaxed)
    }

    /// Commits `next` as the group's offset of partition `n` (for lag tools; loads resume from the lake).
    pub fn commit(&self, n: u32, next: u64) -> Result<(), LogError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, n as i32, Offset::Offset(next as i64))
            .map_err(|e| LogError::Invalid(e.to_string()))?;
        self.consumer
            .commit(&list, CommitMode::Async)
            .map_err(|e| LogError::Invalid(format!("committing the group's offset: {e}")))
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.consumer.unsubscribe();
    }
}
