//! A topic of the shop's Kafka cluster (`[[kafka.topics]]`): records produced by anything (a Java service,
//! kafka-python, Kafka Connect) as JSON objects or CSV lines, loaded into a dataset through the named
//! mapping, as a file would be. The topic must exist: shopstream does not create the shop's topics. Its
//! load is a topic load like HTTP push's ([`crate::server`] opens one per loaded topic); a message that
//! cannot be read is a dead letter naming the topic, partition and offset.

use std::sync::Arc;

use shopstream_ingest::{Dataset, MappingConfig};

use crate::server::ServerError;
use crate::sources::{BuiltSource, SourceContext};

/// A shop's topic and where its records go.
#[derive(Debug, Clone)]
pub struct KafkaTopicSource {
    /// The Kafka topic.
    pub topic: String,
    /// The dataset its records load into.
    pub dataset: Arc<Dataset>,
    /// The mapping renaming its fields, if any.
    pub mapping: Option<MappingConfig>,
}

/// Checks that the topic exists on the cluster.
pub(super) fn build(
    source: &KafkaTopicSource,
    cx: &SourceContext<'_>,
) -> Result<BuiltSource, ServerError> {
    cx.backbone
        .topic(&source.topic)
        .map_err(|source_error| ServerError::Topic {
            topic: format!(
                "[[kafka.topics]] `{}`: the topic must exist on the cluster",
                source.topic
            ),
            source: source_error,
        })?;
    Ok(BuiltSource::default())
}
