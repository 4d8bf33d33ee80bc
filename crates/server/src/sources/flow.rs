//! Flows: `POST /v1/flows/{name}/records` runs the flow's steps (rename, cast, filter, parse;
//! [`shopstream_ingest::sources::flow`]) and appends the kept records to its topic, the rejected ones to its
//! dead-letter topic. The route is part of the HTTP app; building the source creates both topics (the main
//! one only if missing, with `[live] partitions`; the dead-letter one with a single partition) and registers
//! the flow with the app. Pollers may send their records through a flow too.

use shopstream_ingest::sources::flow::FlowConfig;

use crate::server::ServerError;
use crate::sources::{BuiltSource, SourceContext};

/// Creates the flow's topics; the flow is served by the HTTP app.
pub(super) fn build(flow: &FlowConfig, cx: &SourceContext<'_>) -> Result<BuiltSource, ServerError> {
    let (backbone, live) = (cx.backbone, cx.live);
    if backbone.topic(&flow.topic).is_err() {
        backbone
            .create_topic(&flow.topic, live.partitions)
            .map_err(|source| ServerError::Topic {
                topic: format!("topic `{}` of flow `{}`", flow.topic, flow.name),
                source,
            })?;
    }
    backbone
        .create_topic(&flow.dead_letter_topic(), 1)
        .map_err(|source| ServerError::Topic {
            topic: format!("dead-letter topic of flow `{}`", flow.name),
            source,
        })?;
    Ok(BuiltSource {
        flow: Some(flow.clone()),
        ..BuiltSource::default()
    })
}
