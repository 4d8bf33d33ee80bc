//! The cluster as a [`Backbone`]: clients built once from `[kafka]`, topics found or created by name.
//!
//! The producer acknowledges an append only once every in-sync replica has it (`acks=all`) and is
//! idempotent, so librdkafka's retries never store a message twice. Topics are created through the admin
//! API when missing (Kafka clusters, and tansu, often do not auto-create); an existing topic with another
//! partition count is refused, since keys would move to other partitions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use shopstream_log::{Backbone, LogError, Result, TopicLog};

use crate::config::KafkaConfig;
use crate::topic::{Clients, KafkaTopic, Reading};

/// Keeps the last error librdkafka reported for a client: a refused password or certificate is reported
/// there, while the request that failed only says the transport failed.
#[derive(Default)]
pub(crate) struct LastError(Mutex<Option<String>>);

impl LastError {
    /// `: <reason>` of the last error, or nothing.
    fn last(&self) -> String {
        let last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
    }
}

impl ClientContext for LastError {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        DefaultClientContext.log(level, fac, message);
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(message.to_string());
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        DefaultClientContext.error(error, reason);
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_string());
    }
}

impl ConsumerContext for LastError {}

/// A Kafka cluster; see the module documentation.
pub struct Kafka {
    config: KafkaConfig,
    clients: Arc<Clients>,
    admin: AdminClient<DefaultClientContext>,
    topics: Mutex<HashMap<String, Arc<KafkaTopic>>>,
}

impl Kafka {
    /// Connects to the cluster `config` names; fails when no broker answers within `timeout_ms`.
    pub fn connect(config: &KafkaConfig) -> Result<Arc<Kafka>> {
        config.validate().map_err(LogError::Invalid)?;
        let failed = |what: &str, e: &dyn std::fmt::Display| LogError::Backbone {
            backbone: config.cluster.clone(),
            reason: format!("{what} ({}): {e}", config.brokers),
        };
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", &config.brokers);
        for (k, v) in &config.properties {
            base.set(k, v);
        }
        let producer: FutureProducer = base
            .clone()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .set(
                "message.max.bytes",
                (config.max_message_bytes + 64 * 1024).to_string(),
            )
            .create()
            .map_err(|e| failed("creating the producer", &e))?;
        // Readers are assigned partitions, never subscribed: this group id is never joined or committed to.
        let mut reader = base.clone();
        reader
            .set("group.id", format!("{}.reader", config.group_id))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "error")
            .set("enable.partition.eof", "true");
        let meta: BaseConsumer<LastError> = base
            .clone()
            .set("group.id", format!("{}.reader", config.group_id))
            .set_log_level(RDKafkaLogLevel::Warning)
            .create_with_context(LastError::default())
            .map_err(|e| failed("creating a consumer", &e))?;
        let timeout = Duration::from_millis(config.timeout_ms);
        // A refused password or certificate fails the request at once and is logged at a later attempt:
        // try again within the timeout, to say why.
        let started = Instant::now();
        while let Err(e) = meta.fetch_metadata(None, timeout.min(Duration::from_secs(1))) {
            if let Some(Err(event)) = meta.poll(Duration::from_millis(100)) {
                let reason = event.to_string();
                meta.context().error(event, &reason);
            }
            let why = meta.context().last();
            if !why.is_empty() || started.elapsed() >= timeout {
                return Err(failed("reaching the cluster", &format!("{e}{why}")));
            }
        }
        // The group's member never reads (its partitions stay paused).
        let mut group = base.clone();
        group
            .set("group.id", &config.group_id)
            .set("auto.offset.reset", "latest");
        let admin = base
            .create()
            .map_err(|e| failed("creating the admin client", &e))?;
        let clients = Arc::new(Clients {
            cluster: config.cluster.clone(),
            producer,
            meta,
            reader,
            group,
            timeout,
            max_message_bytes: config.max_message_bytes,
        });
        Ok(Arc::new(Kafka {
            config: config.clone(),
            clients,
            admin,
            topics: Mutex::new(HashMap::new()),
        }))
    }

    fn error(&self, what: String, e: impl std::fmt::Display) -> LogError {
        LogError::Backbone {
            backbone: self.config.cluster.clone(),
            reason: format!("{what}: {e}"),
        }
    }

    /// The topic's partition count, or `None` when it does not exist.
    fn partitions(&self, name: &str) -> Result<Option<u32>> {
        let metadata = self
            .clients
            .meta
            .fetch_metadata(Some(name), self.clients.timeout)
            .map_err(|e| self.error(format!("metadata of topic `{name}`"), e))?;
        let Some(t) = metadata.topics().iter().find(|t| t.name() == name) else {
            return Ok(None);
        };
        match t.error() {
            None if !t.partitions().is_empty() => Ok(Some(t.partitions().len() as u32)),
            None => Ok(None),
            Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
                Ok(None)
            }
            Some(e) => Err(self.error(
                format!("metadata of topic `{name}`"),
                RDKafkaErrorCode::from(e),
            )),
        }
    }

    /// How the shop's messages in `name` are read (`[[kafka.topics]]`, or JSON from the configured start).
    fn reading(&self, name: &str) -> Reading {
        match self.config.topics.iter().find(|t| t.name == name) {
            Some(t) => Reading {
                format: t.format,
                columns: t.columns.clone(),
                start: t.start.unwrap_or(self.config.start),
            },
            None => Reading {
                start: self.config.start,
                ..Reading::default()
            },
        }
    }

    fn cached(&self, name: &str, partitions: u32) -> Arc<KafkaTopic> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(KafkaTopic::new(
                    name,
                    partitions,
                    self.reading(name),
                    self.clients.clone(),
                ))
            })
            .clone()
    }

    /// Creates `name` with `partitions` partitions and waits until the cluster serves it.
    fn create(&self, name: &str, partitions: u32) -> Result<()> {
        let topic = NewTopic::new(
            name,
            partitions as i32,
            TopicReplication::Fixed(self.config.replication_factor),
        );
        let options = AdminOptions::new().operation_timeout(Some(self.clients.timeout));
        let results = futures::executor::block_on(self.admin.create_topics([&topic], &options))
            .map_err(|e| self.error(format!("creating topic `{name}`"), e))?;
        for r in results {
            if let Err((_, code)) = r
                && code != RDKafkaErrorCode::TopicAlreadyExists
            {
                return Err(self.error(format!("creating topic `{name}`"), code));
            }
        }
        let started = Instant::now();
        while self.partitions(name)?.is_none() {
            if started.elapsed() > self.clients.timeout {
                return Err(self.error(format!("topic `{name}`"), "created, but not served"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The topic as a Kafka topic (its group's rebalances, for status).
    pub fn kafka_topic(&self, name: &str) -> Option<Arc<KafkaTopic>> {
        self.topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The settings it was connected with.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }
}

impl Backbone for Kafka {
    fn name(&self) -> &str {
        &self.config.cluster
    }

    fn topic(&self, name: &str) -> Result<Arc<dyn TopicLog>> {
        if let Some(t) = self.kafka_topic(name) {
            return Ok(t);
        }
        match self.partitions(name)? {
            Some(n) => Ok(self.cached(name, n)),
            None => Err(LogError::UnknownTopic(name.to_string())),
        }
    }

    fn topic_reader(&self, name: &str) -> Result<Arc<dyn TopicLog>> {
        match self.partitions(name)? {
            Some(n) => Ok(Arc::new(KafkaTopic::new(
                name,
                n,
                self.reading(name),
                self.clients.clone(),
            ))),
            None => Err(LogError::UnknownTopic(name.to_string())),
        }
    }

    fn create_topic(&self, name: &str, partitions: u32) -> Result<Arc<dyn TopicLog>> {
        let wanted = self
            .config
            .partitions
            .get(name)
            .copied()
            .unwrap_or(partitions);
        match self.partitions(name)? {
            Some(n) if n != wanted && self.config.partitions.contains_key(name) => {
                Err(LogError::TopicExists {
                    topic: name.to_string(),
                    existing: n,
                })
            }
            Some(n) => Ok(self.cached(name, n)),
            None => {
                self.create(name, wanted)?;
                Ok(self.cached(name, wanted))
            }
        }
    }
}
