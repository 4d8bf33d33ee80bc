//! HTTP push: clients `POST /v1/topics/{topic}/records` (JSON, NDJSON, CSV) into the live topic, answered
//! once the records are durable ([`crate::ingest`] parses, appends and keeps the idempotency keys). The route
//! is part of the HTTP app; building the source creates the topic it writes (`[live] topic`, with `[live]
//! partitions` and `[live.log]`), which the topic load then reads. Nothing runs of its own.

use crate::server::ServerError;
use crate::sources::{BuiltSource, SourceContext};

/// The live topic HTTP clients post into.
#[derive(Debug, Clone)]
pub struct HttpPush {
    /// `[live] topic`.
    pub topic: String,
}

/// Creates the topic (or opens it, with the same partition count).
pub(super) fn build(push: &HttpPush, cx: &SourceContext<'_>) -> Result<BuiltSource, ServerError> {
    cx.log
        .create_topic(&push.topic, cx.live.partitions, cx.live.log.clone())
        .map_err(|source| ServerError::Topic {
            topic: format!("topic `{}`", push.topic),
            source,
        })?;
    Ok(BuiltSource::default())
}
