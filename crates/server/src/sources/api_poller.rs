//! API pollers: a paginated JSON API polled into a topic ([`shopstream_ingest::sources::api`]), each on its
//! own thread (`poll-<name>`). Building one reads its last checkpoint back from its topic, so it resumes
//! where its stored records end; its records pass through a flow's steps when it names one (`flow`, checked
//! by the config). Its topic (or its flow's) must exist: the HTTP push and flow sources are built first.

use shopstream_ingest::sources::api::{Poller, PollerConfig};

use crate::server::ServerError;
use crate::sources::{BuiltSource, SourceContext, SourceWork};

/// Builds the poller; its thread polls until the server stops.
pub(super) fn build(
    config: &PollerConfig,
    cx: &SourceContext<'_>,
) -> Result<BuiltSource, ServerError> {
    let failed = |reason: String| ServerError::Poller {
        poller: config.name.clone(),
        reason,
    };
    let flow = if config.flow.is_empty() {
        None
    } else {
        Some(
            cx.live
                .flows
                .iter()
                .find(|f| f.name == config.flow)
                .cloned()
                .ok_or_else(|| failed(format!("no flow `{}`", config.flow)))?,
        )
    };
    let poller = Poller::new(cx.backbone.as_ref(), config.clone(), flow).map_err(failed)?;
    let stop = cx.stop.clone();
    Ok(BuiltSource {
        work: Some(SourceWork::Thread {
            name: format!("poll-{}", config.name),
            run: Box::new(move || poller.run(stop)),
        }),
        ..BuiltSource::default()
    })
}
