//! Live sources: where records enter while the server runs. [`LiveSource`] is the one closed list of kinds;
//! each variant's build step is in its own file (`http_push.rs`, `flow.rs`, `api_poller.rs`, `landing.rs`),
//! so adding a kind (Kafka) is one file and one variant here.
//!
//! The sources are built from the config's existing sections (`[live] topic`, `[[live.flows]]`,
//! `[[live.pollers]]`, `[live] landing_dir`): the TOML keeps its shape. Building a source creates what it
//! needs (topics, folders) and reads back its place, but starts nothing: it returns its work
//! (`SourceWork`), which [`crate::Server::start`] starts once every source is built and the topic load is
//! open. The work of every source stops when the server's stop flag is set.

mod api_poller;
mod flow;
mod http_push;
mod kafka_topic;
mod landing;

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use shopstream_engine::Lake;
use shopstream_engine::load::WriteOptions;
use shopstream_engine::stream::landing::LandingProgress;
use shopstream_ingest::sources::api::PollerConfig;
use shopstream_ingest::sources::flow::FlowConfig;
use shopstream_ingest::{Dataset, IngestConfig};
use shopstream_log::Backbone;

pub use self::http_push::HttpPush;
pub use self::kafka_topic::KafkaTopicSource;
pub use self::landing::LandingFolder;
use crate::config::{Config, LiveConfig};
use crate::server::ServerError;

/// One live source, as configured.
#[derive(Debug, Clone)]
pub enum LiveSource {
    /// `POST /v1/topics/{topic}/records` into a dataset's topic (`[live] topic` for orders).
    HttpPush(HttpPush),
    /// `POST /v1/flows/{name}/records` through the flow's steps (`[[live.flows]]`).
    Flow(FlowConfig),
    /// A paginated JSON API polled into a topic (`[[live.pollers]]`).
    ApiPoller(PollerConfig),
    /// Files dropped into the landing folder (`[live] landing_dir`).
    Landing(LandingFolder),
    /// A topic of the shop's Kafka cluster (`[[kafka.topics]]`).
    KafkaTopic(KafkaTopicSource),
}

impl LiveSource {
    /// Every source `config` describes for `datasets` (besides orders), in the order they are built: HTTP
    /// push (which creates each dataset's topic) and the flows (their topics) first, as the pollers append
    /// to those topics.
    pub fn from_config(
        config: &Config,
        data_dir: &Path,
        datasets: &[Arc<Dataset>],
    ) -> Result<Vec<LiveSource>, ServerError> {
        let live = &config.live;
        let mut sources = vec![LiveSource::HttpPush(HttpPush {
            topic: live.topic.clone(),
            dataset: Dataset::orders(),
        })];
        sources.extend(
            datasets
                .iter()
                .filter(|d| !d.is_orders() && d.name != live.topic)
                .map(|d| {
                    LiveSource::HttpPush(HttpPush {
                        topic: d.name.clone(),
                        dataset: d.clone(),
                    })
                }),
        );
        sources.extend(live.flows.iter().cloned().map(LiveSource::Flow));
        sources.push(LiveSource::Landing(LandingFolder {
            dir: config.landing_dir(data_dir),
            poll_ms: live.landing_poll_ms,
            datasets: datasets.to_vec(),
        }));
        sources.extend(live.pollers.iter().cloned().map(LiveSource::ApiPoller));
        for t in config.kafka.iter().flat_map(|k| &k.topics) {
            let dataset = if t.dataset == "orders" {
                Dataset::orders()
            } else {
                datasets
                    .iter()
                    .find(|d| d.name == t.dataset)
                    .cloned()
                    .ok_or_else(|| ServerError::UnknownDataset {
                        reader: format!("[[kafka.topics]] `{}`", t.name),
                        dataset: t.dataset.clone(),
                    })?
            };
            let mapping = t.mapping.as_ref().and_then(|m| {
                config
                    .ingest
                    .mappings
                    .iter()
                    .find(|x| &x.name == m)
                    .cloned()
            });
            sources.push(LiveSource::KafkaTopic(KafkaTopicSource {
                topic: t.name.clone(),
                dataset,
                mapping,
            }));
        }
        Ok(sources)
    }

    /// Builds the source: creates what it needs and returns its work, not yet started.
    pub(crate) fn build(&self, cx: &SourceContext<'_>) -> Result<BuiltSource, ServerError> {
        match self {
            LiveSource::HttpPush(s) => http_push::build(s, cx),
            LiveSource::Flow(s) => flow::build(s, cx),
            LiveSource::ApiPoller(s) => api_poller::build(s, cx),
            LiveSource::Landing(s) => landing::build(s, cx),
            LiveSource::KafkaTopic(s) => kafka_topic::build(s, cx),
        }
    }
}

/// What building a source can use.
pub(crate) struct SourceContext<'a> {
    /// The backbone: the embedded log (opened and recovered) or Kafka.
    pub(crate) backbone: &'a Arc<dyn Backbone>,
    /// `[live]`: partitions of the topics sources create.
    pub(crate) live: &'a LiveConfig,
    /// `[ingest]`: mappings and time zone for files read.
    pub(crate) ingest: &'a IngestConfig,
    /// The lake files are loaded into.
    pub(crate) lake: &'a Lake,
    /// How Parquet files are written.
    pub(crate) write: &'a WriteOptions,
    /// Set when the server stops: every source's work ends then.
    pub(crate) stop: &'a Arc<AtomicBool>,
    /// The jobs that run on one worker at a time which this worker runs (its pollers), for its status.
    pub(crate) jobs: &'a Arc<crate::workers::HeldJobs>,
}

/// A built source: its work, and what the HTTP app serves or reports for it.
#[derive(Default)]
pub(crate) struct BuiltSource {
    /// Its work, started by the server (none for sources served by the HTTP app's routes).
    pub(crate) work: Option<SourceWork>,
    /// A flow to serve at `/v1/flows/{name}/records`.
    pub(crate) flow: Option<FlowConfig>,
    /// The landing folder's counters, for `/v1/status` and `/metrics`.
    pub(crate) landing: Option<Arc<LandingProgress>>,
}

/// A source's work, not yet started.
pub(crate) enum SourceWork {
    /// A blocking loop, on a thread of this name.
    Thread {
        name: String,
        run: Box<dyn FnOnce() + Send + 'static>,
    },
    /// An async task.
    Task(Pin<Box<dyn Future<Output = shopstream_engine::Result<()>> + Send + 'static>>),
}
