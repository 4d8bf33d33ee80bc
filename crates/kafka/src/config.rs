//! `[kafka]`: the cluster, the consumer group, librdkafka properties passed through, and the shop's own
//! topics to load (`[[kafka.topics]]`).

use std::collections::BTreeMap;

use serde::Deserialize;

/// Where a load starts in a partition the lake has no offset for yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// The oldest record Kafka still holds.
    #[default]
    Earliest,
    /// Only records produced from now on.
    Latest,
}

/// How a message produced by something other than shopstream is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per message: its fields.
    #[default]
    Json,
    /// One CSV line per message, its fields named by `columns`.
    Csv,
}

/// A topic of the shop's, produced by anything, loaded into a dataset (`[[kafka.topics]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalTopic {
    /// The Kafka topic.
    pub name: String,
    /// The dataset its records load into (`orders` by default).
    #[serde(default = "default_dataset")]
    pub dataset: String,
    /// JSON objects or CSV lines.
    #[serde(default)]
    pub format: Format,
    /// For CSV: the names of the fields, in order.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Where to start when the lake has no offset for a partition (default: `[kafka] start`).
    #[serde(default)]
    pub start: Option<Start>,
    /// The `[[ingest.mappings]]` entry (by name) renaming its fields, as for files.
    #[serde(default)]
    pub mapping: Option<String>,
}

fn default_dataset() -> String {
    "orders".into()
}

/// The `[kafka]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: `host:port[,host:port…]`.
    pub brokers: String,
    /// The consumer group the workers share (it assigns partitions; offsets that count are the lake's).
    #[serde(default = "default_group")]
    pub group_id: String,
    /// The cluster's name in the lake's transaction ids: one lake never reads another cluster's offsets.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// Partitions of a topic shopstream creates, by topic (default: `[live] partitions`).
    #[serde(default)]
    pub partitions: BTreeMap<String, u32>,
    /// Replication factor of the topics it creates (`-1`: the broker's default).
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// Where loads start in a partition the lake has no offset for.
    #[serde(default)]
    pub start: Start,
    /// Largest message shopstream produces: one request's records (the broker's `message.max.bytes`).
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// How long an operation (produce, metadata, topic creation) may take before it fails.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// librdkafka properties passed through to every client (`security.protocol`, `sasl.mechanism`,
    /// `sasl.username`, `ssl.ca.location`, `session.timeout.ms`, …).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// The shop's own topics to load.
    #[serde(default)]
    pub topics: Vec<ExternalTopic>,
}

fn default_group() -> String {
    "shopstream".into()
}
fn default_cluster() -> String {
    "kafka".into()
}
fn default_replication() -> i32 {
    -1
}
fn default_max_message() -> usize {
    1_000_000
}
fn default_timeout() -> u64 {
    30_000
}

impl KafkaConfig {
    /// Settings for `brokers` with every default.
    pub fn new(brokers: &str) -> KafkaConfig {
        toml::from_str(&format!("brokers = {brokers:?}")).expect("defaults")
    }

    /// Checks names and values; the message says which setting is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("[kafka] brokers: give host:port of at least one broker".into());
        }
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 100
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !name_ok(&self.cluster) {
            return Err(format!(
                "[kafka] cluster `{}`: letters, digits, `-` and `_` only",
                self.cluster
            ));
        }
        if self.group_id.trim().is_empty() {
            return Err("[kafka] group_id is empty".into());
        }
        if self.max_message_bytes < 1024 {
            return Err("[kafka] max_message_bytes: at least 1024".into());
        }
        for key in self.properties.keys() {
            if key == "bootstrap.servers" || key == "group.id" {
                return Err(format!(
                    "[kafka.properties] {key}: set it as [kafka] brokers / group_id"
                ));
            }
        }
        for t in &self.topics {
            if t.format == Format::Csv && t.columns.is_empty() {
                return Err(format!(
                    "[[kafka.topics]] `{}`: a CSV topic needs `columns`",
                    t.name
                ));
            }
        }
        Ok(())
    }
}
