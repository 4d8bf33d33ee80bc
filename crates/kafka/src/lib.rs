//! Apache Kafka as shopstream's backbone, through rdkafka (librdkafka): the [`shopstream_log::Backbone`]
//! and [`shopstream_log::TopicLog`] interfaces the embedded log also implements, so HTTP push, flows,
//! pollers and the continuous load run unchanged on a shop's Kafka cluster.
//!
//! What is stored where: shopstream's own records go one message per request ([`message`]: the request's
//! envelopes, a header marking them as shopstream's, the idempotency key as the message key), so a request
//! is stored entirely or not at all without Kafka transactions; messages produced by anything else are read
//! as JSON objects or CSV lines ([`config::Format`]). Offsets that count are the lake's: the consumer group
//! only assigns partitions to workers ([`group`]); a worker reads an assigned partition from the offset the
//! lake recorded with a consumer of its own ([`topic`]) and commits the group's offset after the lake's
//! commit, for lag tools. A request retried to another worker is stored twice on Kafka and loaded once: the
//! reader skips a request key already seen among the partition's recent messages.

pub mod backbone;
pub mod config;
pub mod group;
pub mod loopback;
pub mod message;
pub mod topic;

pub use backbone::Kafka;
pub use config::{ExternalTopic, Format, KafkaConfig, Start};
pub use topic::KafkaTopic;
