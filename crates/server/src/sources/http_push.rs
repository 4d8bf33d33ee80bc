//! HTTP push: clients `POST /v1/topics/{topic}/records` (JSON, NDJSON, CSV) into a dataset's topic, answered
//! once the records are durable ([`crate::ingest`] parses, appends and keeps the idempotency keys). There is
//! a topic per dataset: `[live] topic` for orders, and the dataset's name for every other dataset (declared
//! in `[[datasets]]` or in the lake when the server starts). The route is part of the HTTP app; building the
//! source creates the topic (with `[live] partitions`), which the server's topic load of
//! that dataset then reads (on Kafka: created through the admin API when missing). Nothing runs of its own.

use std::sync::Arc;

use shopstream_ingest::Dataset;

use crate::server::ServerError;
use crate::sources::{BuiltSource, SourceContext};

/// A dataset's topic HTTP clients post into.
#[derive(Debug, Clone)]
pub struct HttpPush {
    /// `[live] topic` for orders, else the dataset's name.
    pub topic: String,
    /// The dataset its records load into.
    pub dataset: Arc<Dataset>,
}

/// Creates the topic (or opens it, with the same partition count).
pub(super) fn build(push: &HttpPush, cx: &SourceContext<'_>) -> Result<BuiltSource, ServerError> {
    cx.backbone
        .create_topic(&push.topic, cx.live.partitions)
        .map_err(|source| ServerError::Topic {
            topic: format!("topic `{}`", push.topic),
            source,
        })?;
    Ok(BuiltSource::default())
}
