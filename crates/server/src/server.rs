//! The running server, assembled in one place: [`Server::start`] opens the backbone (the embedded log,
//! recovered, or Kafka), builds the live sources ([`crate::sources`]), opens the continuous topic load and the background compaction, and
//! serves the HTTP app and the Postgres endpoint over one live catalog; [`Running::shutdown`] stops them.
//!
//! Order matters in two places. Every source is built (its topics created, its place read back) and the
//! topic load opened (the lake's tables created) before any source's work starts, so a landing file is
//! never loaded while the tables are still being created. Shutdown sets the stop flag, stops accepting
//! HTTP requests and Postgres connections, waits for the source threads, the HTTP server (its requests in
//! flight finish) and then the load's current micro-batch, the landing folder and the compaction, and
//! returns the first error of any part. The CLI parses arguments and prints; it assembles nothing.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shopstream_engine::EngineError;
use shopstream_engine::stream::topic_load::{TopicLoadConfig, TopicLoader};
use shopstream_log::{Backbone, Embedded, Log, LogError, Recovery};
use tokio::task::{JoinError, JoinHandle};

use crate::config::{BackboneKind, Config};
use crate::postgres::PostgresError;
use crate::sources::{LiveSource, SourceContext, SourceWork};
use crate::{AppState, app, bind};

/// Why the server could not start, or a part of it stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The log could not be opened (or recovered).
    #[error("opening the log in {}", dir.display())]
    OpenLog {
        /// The log's folder.
        dir: PathBuf,
        /// What the log said.
        source: LogError,
    },
    /// Another server on the embedded log holds this lake (object storage has no lock files: a lease).
    #[error(
        "another server on the embedded log holds this lake ({holder}, lease valid for {seconds} s more): \
         one server per lake on the embedded log; several workers need [live] backbone = \"kafka\""
    )]
    LakeHeld {
        /// The lease's holder.
        holder: String,
        /// Seconds until it expires unless renewed.
        seconds: i64,
    },
    /// The lake's live loads read another backbone.
    #[error(
        "this lake's live loads read the `{recorded}` backbone, not `{configured}`: its offsets belong to \
         that one. To switch, let the old backbone's lag reach 0 (shopstream status), stop its servers, then \
         delete `_shopstream/backbone.json` in the lake; the new backbone's topics start from [kafka] start"
    )]
    BackboneSwitch {
        /// The backbone the lake records.
        recorded: String,
        /// The one configured.
        configured: String,
    },
    /// The Kafka cluster could not be reached.
    #[error("connecting to Kafka")]
    Kafka(#[source] LogError),
    /// A topic could not be created (for instance, it exists with another partition count).
    #[error("{topic}")]
    Topic {
        /// Which topic, and for which source.
        topic: String,
        /// What the log said.
        source: LogError,
    },
    /// A flow or poller writes a topic no dataset's load reads: its records would never reach the lake.
    #[error(
        "{writer} writes topic `{topic}`, which nothing loads into the lake: use `[live] topic` for orders \
         or the name of a dataset (declared in [[datasets]] or in the lake)"
    )]
    UnloadedTopic {
        /// The flow or poller.
        writer: String,
        /// Its topic.
        topic: String,
    },
    /// A source names a dataset neither the config nor the lake has.
    #[error(
        "{reader} loads into dataset `{dataset}`, which is neither declared in [[datasets]] nor in the lake"
    )]
    UnknownDataset {
        /// The source.
        reader: String,
        /// The dataset it names.
        dataset: String,
    },
    /// A topic's partition count is not the one the lake's loads of it were made with.
    #[error(
        "topic `{topic}` has {partitions} partitions, but the lake's loads of it were made with {recorded}: \
         keys would move to other partitions (a retried request loaded twice) and the lake's offsets would \
         name other partitions. Give the topic {recorded} partitions again, or load it into a new lake"
    )]
    PartitionsChanged {
        /// The topic.
        topic: String,
        /// The count recorded in the lake (`_shopstream/topics/<topic>.json`).
        recorded: u64,
        /// The count the backbone has now.
        partitions: u32,
    },
    /// An API poller could not start.
    #[error("poller `{poller}`: {reason}")]
    Poller {
        /// The poller's name.
        poller: String,
        /// Why.
        reason: String,
    },
    /// The lake, the topic load, the landing folder or the compaction failed.
    #[error(transparent)]
    Engine(Box<EngineError>),
    /// The Postgres endpoint (or the catalog it shares with the HTTP API) could not start.
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    /// The HTTP address could not be bound.
    #[error("listening on {listen}")]
    Listen {
        /// The configured address.
        listen: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A thread could not be started, or the HTTP server failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A part (the HTTP server, the topic load, the landing folder, the compaction) stopped while running.
    #[error("a live part stopped; see the error below")]
    PartStopped,
    /// The HTTP server's task panicked or was cancelled.
    #[error("HTTP server")]
    HttpTask(#[source] JoinError),
    /// A live task panicked or was cancelled.
    #[error("live task")]
    LiveTask(#[source] JoinError),
}

impl From<EngineError> for ServerError {
    fn from(e: EngineError) -> Self {
        ServerError::Engine(Box::new(e))
    }
}

/// Starts the server; see the module documentation.
pub struct Server;

impl Server {
    /// Starts everything `serve` runs, as configured; `data_dir` holds the log, the landing folder and
    /// (without `[lake] url`) the lake. Port 0 in `[server] listen` or `[postgres] listen` picks a free
    /// port: [`Running`] has the addresses bound.
    pub async fn start(config: &Config, data_dir: &Path) -> Result<Running, ServerError> {
        let lake = config.lake.open(&config.lake_dir(data_dir))?;
        check_backbone(config, &lake).await?;
        // Held until the server stops: `migrate` cannot run meanwhile, nor a second server on the embedded
        // log (its offsets are this process's); workers sharing Kafka share the lock.
        let lake_lock = match config.live.backbone {
            BackboneKind::Embedded => shopstream_engine::migrate::hold_for_server(&lake)?,
            BackboneKind::Kafka => shopstream_engine::migrate::hold_for_worker(&lake)?,
        };
        let write = config.lake.write_options();
        // One catalog for the HTTP queries, the dashboard and the Postgres endpoint.
        let catalog = crate::postgres::open_catalog(lake.clone(), &config.postgres.user).await?;
        let (backbone, log_recoveries) = open_backbone(config, data_dir)?;

        let stop = Arc::new(AtomicBool::new(false));
        let lake_lease = embedded_lease(config, &lake).await?;
        let jobs = Arc::new(crate::workers::HeldJobs::default());
        let cx = SourceContext {
            jobs: &jobs,
            backbone: &backbone,
            live: &config.live,
            ingest: &config.ingest,
            lake: &lake,
            write: &write,
            stop: &stop,
        };
        let mut flows = Vec::new();
        let mut landing = None;
        let mut work = Vec::new();
        let sources = LiveSource::from_config(config, data_dir, &datasets(config, &lake).await?)?;
        check_loaded(&sources)?;
        for source in &sources {
            let built = source.build(&cx)?;
            flows.extend(built.flow);
            landing = landing.or(built.landing);
            work.extend(built.work);
        }

        let live = &config.live;
        let loaders = open_loaders(config, &lake, &backbone, &sources).await?;
        let progress: HashMap<String, _> = loaders
            .iter()
            .map(|l| (l.topic().to_string(), l.progress()))
            .collect();
        let topics: Vec<String> = loaders.iter().map(|l| l.topic().to_string()).collect();

        // Every source is built and the tables exist: the work starts.
        let (threads, source_tasks) = start_work(work)?;
        let mut tasks: Vec<_> = loaders
            .into_iter()
            .map(|l| tokio::spawn(l.run(stop.clone())))
            .collect();
        tasks.extend(source_tasks);
        let views = crate::views::ViewHandles::default();
        tasks.extend(
            crate::views::start(config, &lake, &backbone, &catalog, &jobs, &stop, &views).await?,
        );
        if let Some(lease) = lake_lease {
            tasks.push(tokio::spawn(shopstream_engine::lease::keep(
                lease,
                stop.clone(),
            )));
        }
        let lake_for_status = lake.clone();
        if live.compact_every_s > 0 {
            tasks.push(tokio::spawn(shopstream_engine::compact::run_every(
                lake,
                write,
                Duration::from_secs(live.compact_every_s),
                Duration::from_secs(live.vacuum_after_s),
                stop.clone(),
            )));
        }

        let (listener, addr) =
            bind(&config.server.listen)
                .await
                .map_err(|source| ServerError::Listen {
                    listen: config.server.listen.clone(),
                    source,
                })?;
        let backbone_name = backbone.name().to_string();
        let state = AppState::new(backbone, config.server.clone(), progress, landing, flows);
        let _ = state.lake.set(lake_for_status.clone());
        let _ = state.jobs.set(jobs);
        let _ = state.views.set(views);
        let shared = lake_for_status.is_remote() || config.live.backbone == BackboneKind::Kafka;
        let heartbeat = crate::workers::Heartbeat {
            lake: lake_for_status,
            id: shopstream_engine::lease::worker_id().to_string(),
            http: advertised(&config.server, addr, shared),
            backbone: backbone_name,
        };
        tasks.push(tokio::spawn(heartbeat.run(state.clone(), stop.clone())));
        let (pg, postgres) = if config.postgres.enabled {
            let endpoint =
                crate::postgres::bind(&config.postgres, &config.server.token, catalog.clone())
                    .await?;
            let addr = endpoint.addr;
            (Some(tokio::spawn(endpoint.run())), Some(addr))
        } else {
            (None, None)
        };
        let (http_stop, rx) = tokio::sync::oneshot::channel::<()>();
        let http = tokio::spawn(crate::serve(listener, app(state, Some(catalog)), async {
            let _ = rx.await;
        }));
        Ok(Running {
            addr,
            topics,
            postgres,
            log_recoveries,
            pg,
            stop,
            threads,
            tasks,
            http,
            http_stop,
            _lake_lock: lake_lock,
        })
    }
}

/// The backbone `[live] backbone` names: the embedded log in the data folder (with what its recovery cut),
/// or the `[kafka]` cluster.
fn open_backbone(
    config: &Config,
    data_dir: &Path,
) -> Result<(Arc<dyn Backbone>, Vec<Recovery>), ServerError> {
    match (config.live.backbone, &config.kafka) {
        (BackboneKind::Kafka, Some(kafka)) => {
            let cluster = shopstream_kafka::Kafka::connect(kafka).map_err(ServerError::Kafka)?;
            Ok((cluster, Vec::new()))
        }
        _ => {
            let dir = config.log_dir(data_dir);
            let (log, recoveries) =
                Log::open(&dir).map_err(|source| ServerError::OpenLog { dir, source })?;
            Ok((
                Arc::new(Embedded::new(log, config.live.log.clone())),
                recoveries,
            ))
        }
    }
}

/// Refuses a backbone other than the one the lake's live loads read (recording it on first use).
async fn check_backbone(
    config: &Config,
    lake: &shopstream_engine::Lake,
) -> Result<(), ServerError> {
    let configured = match (&config.live.backbone, &config.kafka) {
        (BackboneKind::Kafka, Some(k)) => k.cluster.clone(),
        _ => "embedded".to_string(),
    };
    let recorded = shopstream_engine::lease::claim_backbone(lake, &configured).await?;
    if recorded == configured {
        Ok(())
    } else {
        Err(ServerError::BackboneSwitch {
            recorded,
            configured,
        })
    }
}

/// How long the embedded log's lease on a lake in object storage lasts unless renewed.
const EMBEDDED_LEASE: Duration = Duration::from_secs(30);

/// The address other workers reach this one at: `[server] advertise`, or where it listens (with the
/// host's name for an unspecified address such as `0.0.0.0`). A loopback address is warned of when other
/// hosts may share the lake (it is in object storage, or the backbone is Kafka): they cannot reach it.
fn advertised(server: &crate::ServerConfig, addr: SocketAddr, shared: bool) -> String {
    if !server.advertise.is_empty() {
        return server.advertise.clone();
    }
    let host = shopstream_engine::lease::host_name();
    if addr.ip().is_unspecified() && !host.is_empty() {
        return format!("{host}:{}", addr.port());
    }
    if (addr.ip().is_loopback() || addr.ip().is_unspecified()) && shared {
        tracing::warn!(
            "listening on {addr}: workers on other hosts cannot reach this one to relay the change \
             streams of the views it runs; set [server] advertise to an address they can reach"
        );
    }
    addr.to_string()
}

/// On the embedded log with a lake in object storage (no lock files there), the lease that makes this
/// server the lake's only one.
async fn embedded_lease(
    config: &Config,
    lake: &shopstream_engine::Lake,
) -> Result<Option<shopstream_engine::lease::Lease>, ServerError> {
    if config.live.backbone != BackboneKind::Embedded || !lake.is_remote() {
        return Ok(None);
    }
    let holder = shopstream_engine::lease::holder_name();
    match shopstream_engine::lease::Lease::acquire(lake, "embedded-server", &holder, EMBEDDED_LEASE)
        .await?
    {
        Ok(lease) => Ok(Some(lease)),
        Err(state) => Err(ServerError::LakeHeld {
            holder: state.holder,
            seconds: (state.expires_ms - chrono::Utc::now().timestamp_millis()) / 1000,
        }),
    }
}

/// Bytes of records all topic loads read per step together (each partition's step of each load reads at
/// most its share).
const LOAD_READ_BUDGET: usize = 256 << 20;

/// A topic a load reads, the dataset its records go to, and the mapping of their fields.
type Loaded<'a> = (
    &'a str,
    &'a Arc<shopstream_ingest::Dataset>,
    Option<&'a shopstream_ingest::MappingConfig>,
);

/// What a topic load reads: the topics of HTTP push (a dataset's own records) and the shop's Kafka
/// topics (its own records, through a mapping).
fn loaded_topics(sources: &[LiveSource]) -> Vec<Loaded<'_>> {
    sources
        .iter()
        .filter_map(|s| match s {
            LiveSource::HttpPush(p) => Some((p.topic.as_str(), &p.dataset, None)),
            LiveSource::KafkaTopic(k) => Some((k.topic.as_str(), &k.dataset, k.mapping.as_ref())),
            _ => None,
        })
        .collect()
}

/// A topic load per loaded topic ([`loaded_topics`]): its records into the dataset's table.
async fn open_loaders(
    config: &Config,
    lake: &shopstream_engine::Lake,
    backbone: &Arc<dyn Backbone>,
    sources: &[LiveSource],
) -> Result<Vec<TopicLoader>, ServerError> {
    let topics = loaded_topics(sources);
    // The loads run side by side: they share one read budget, so memory does not grow with datasets.
    let max_bytes = (LOAD_READ_BUDGET / topics.len().max(1)).max(16 << 20);
    let mut loaders = Vec::new();
    for (name, dataset, mapping) in topics {
        let mut load = TopicLoadConfig::new(name);
        load.max_bytes = max_bytes;
        load.dataset = dataset.clone();
        load.mapping = mapping.cloned();
        load.max_records = config.live.load_max_records;
        load.write = config.lake.write_options();
        load.timezone = config.ingest.timezone();
        let topic = backbone.topic(name).map_err(|source| ServerError::Topic {
            topic: format!("topic `{name}`"),
            source,
        })?;
        check_partitions(lake, name, topic.partition_count()).await?;
        loaders.push(TopicLoader::open(lake, topic, load).await?);
    }
    Ok(loaders)
}

/// Refuses a topic whose partition count is not the one the lake's loads of it were made with (recording it
/// on first use): a record's partition follows from its key, so with another count a retried request would
/// land in another partition and be loaded twice, and the lake's offsets would name other partitions.
async fn check_partitions(
    lake: &shopstream_engine::Lake,
    topic: &str,
    partitions: u32,
) -> Result<(), ServerError> {
    let file = format!("{topic}.json");
    let recorded = shopstream_engine::lease::record_once(
        lake,
        &["topics", &file],
        &serde_json::json!({ "partitions": partitions }),
    )
    .await?;
    match recorded["partitions"].as_u64() {
        Some(n) if n != u64::from(partitions) => Err(ServerError::PartitionsChanged {
            topic: topic.to_string(),
            recorded: n,
            partitions,
        }),
        _ => Ok(()),
    }
}

/// Tasks of the engine's jobs and of the sources.
type Tasks = Vec<JoinHandle<shopstream_engine::Result<()>>>;

/// Starts the sources' work: their threads, and their tasks on the runtime.
fn start_work(
    work: Vec<SourceWork>,
) -> Result<(Vec<std::thread::JoinHandle<()>>, Tasks), ServerError> {
    let mut threads = Vec::new();
    let mut tasks = Vec::new();
    for w in work {
        match w {
            SourceWork::Thread { name, run } => {
                threads.push(std::thread::Builder::new().name(name).spawn(run)?)
            }
            SourceWork::Task(task) => tasks.push(tokio::spawn(task)),
        }
    }
    Ok((threads, tasks))
}

/// Fails when a flow, or a poller without a flow, writes a topic that no dataset's topic load reads.
fn check_loaded(sources: &[LiveSource]) -> Result<(), ServerError> {
    let loaded: Vec<&str> = loaded_topics(sources).iter().map(|t| t.0).collect();
    for s in sources {
        let (writer, topic) = match s {
            LiveSource::Flow(f) => (format!("flow `{}`", f.name), &f.topic),
            LiveSource::ApiPoller(p) if p.flow.is_empty() => {
                (format!("poller `{}`", p.name), &p.topic)
            }
            _ => continue,
        };
        if !loaded.contains(&topic.as_str()) {
            return Err(ServerError::UnloadedTopic {
                writer,
                topic: topic.clone(),
            });
        }
    }
    Ok(())
}

/// The datasets besides orders the server takes records for: those in the lake (with the columns they
/// have there) and those the config declares.
async fn datasets(
    config: &Config,
    lake: &shopstream_engine::Lake,
) -> Result<Vec<Arc<shopstream_ingest::Dataset>>, ServerError> {
    let mut out = Vec::new();
    for name in lake.dataset_names().await? {
        if let Some(d) = lake.dataset(&name).await? {
            out.push(d);
        }
    }
    for d in config.declared_datasets() {
        if !out.iter().any(|o| o.name == d.name) {
            out.push(d);
        }
    }
    Ok(out)
}

/// The parts of a started server; stop them with [`Running::shutdown`].
pub struct Running {
    /// The HTTP address bound.
    pub addr: SocketAddr,
    /// The dataset topics HTTP clients post into (`[live] topic` first).
    pub topics: Vec<String>,
    /// The Postgres endpoint's address, when it runs.
    pub postgres: Option<SocketAddr>,
    /// Torn or corrupt log tails cut when the log was opened (also counted in `/metrics`).
    pub log_recoveries: Vec<Recovery>,
    pg: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    tasks: Vec<JoinHandle<shopstream_engine::Result<()>>>,
    http: JoinHandle<std::io::Result<()>>,
    http_stop: tokio::sync::oneshot::Sender<()>,
    /// The lake's server lock, released when the server stops.
    _lake_lock: Option<shopstream_engine::migrate::ServerLock>,
}

impl Running {
    /// The HTTP base URL (`http://` + [`Running::addr`]).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Runs until `shutdown` completes (Ok), or fails when a part stops by itself. Call
    /// [`Running::shutdown`] after it either way.
    ///
    /// Cancel safe: it only watches.
    pub async fn run_until(
        &mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let failed = async {
            loop {
                if self.tasks.iter().any(JoinHandle::is_finished) || self.http.is_finished() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            _ = shutdown => Ok(()),
            _ = failed => Err(ServerError::PartStopped),
        }
    }

    /// Stops everything, waiting for the current micro-batch; returns the first error of any part.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.http_stop.send(());
        if let Some(pg) = self.pg {
            pg.abort();
        }
        for t in self.threads {
            let _ = t.join();
        }
        self.http.await.map_err(ServerError::HttpTask)??;
        for t in self.tasks {
            t.await.map_err(ServerError::LiveTask)??;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::advertised;

    #[test]
    fn a_worker_advertises_an_address_others_can_reach() {
        let mut server = crate::ServerConfig::default();
        let at = |a: &str| a.parse().unwrap();
        assert_eq!(
            advertised(&server, at("10.0.0.7:8080"), true),
            "10.0.0.7:8080"
        );
        assert_eq!(
            advertised(&server, at("127.0.0.1:8080"), false),
            "127.0.0.1:8080"
        );
        let host = shopstream_engine::lease::host_name();
        if !host.is_empty() {
            let want = format!("{host}:8080");
            assert_eq!(advertised(&server, at("0.0.0.0:8080"), true), want);
            assert_eq!(advertised(&server, at("[::]:8080"), true), want);
        }
        server.advertise = "shop-worker-1:8080".into();
        assert_eq!(
            advertised(&server, at("0.0.0.0:8080"), true),
            "shop-worker-1:8080"
        );
    }
}
