//! The continuous views `serve` keeps up to date ([`shopstream_engine::stream::view`]).
//!
//! `[[views]]` of the config are saved into the lake at start (a changed one is a new version); then every
//! view of the lake (followed as views are made, changed and dropped: [`crate::view_watch`]) runs on one
//! worker at a time: each worker claims the job `view-<name>` (a lock file on
//! a local lake, a lease on S3) and the holder runs the view's job, a step every [`STEP_EVERY`]. Each view's
//! open windows are the table `<name>_live` of the SQL catalog (HTTP, Postgres, dashboard), replaced after
//! every step that read records (and every 5 s); its figures are in `/v1/status` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::catalog::memory::MemTable;
use datafusion::datasource::memory::PartitionData;
use serde::{Deserialize, Serialize};
use shopstream_engine::lease::{JobClaim, claim_job};
use shopstream_engine::load::WriteOptions;
use shopstream_engine::stream::view::defs;
use shopstream_engine::stream::view::job::{ViewDef, ViewInput, ViewJob, ViewSource};
use shopstream_engine::{Lake, LiveCatalog};
use shopstream_log::Backbone;

use crate::config::Config;
use crate::metrics::MetricKind;
use crate::server::ServerError;
use crate::workers::HeldJobs;

/// How often a running view reads what is new.
pub const STEP_EVERY: Duration = Duration::from_millis(200);
/// How often an idle view's update is sent again (its watermark may move as partitions go idle).
const PUBLISH_IDLE_EVERY: Duration = Duration::from_secs(5);

/// One view's figures on the worker that runs it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ViewStatus {
    /// The view.
    pub name: String,
    /// Source rows taken in since the view started (its state counts across restarts).
    pub rows_in: u64,
    /// The watermark, wall clock (`None` before the first rows).
    pub watermark: Option<String>,
    /// Records of the source's log not yet read.
    pub lag: u64,
    /// Open windows (or keys of an updating aggregate).
    pub open_windows: u64,
    /// Bytes the state holds (about).
    pub state_bytes: u64,
    /// Rows that came after their window was final.
    pub late_rows: u64,
    /// Windows emitted.
    pub windows_emitted: u64,
    /// The watermark as an instant, seconds since the epoch (0 before the first rows).
    #[serde(default)]
    pub watermark_s: u64,
    /// The worker that runs it.
    #[serde(default)]
    pub owner: String,
}

/// A per-view metric family of `/metrics`.
pub type ViewMetric = crate::metrics::Family<ViewStatus>;

impl ViewStatus {
    /// The per-view metric families, in the order `/metrics` writes them.
    pub const METRICS: [ViewMetric; 7] = [
        ViewMetric {
            metric: "shopstream_view_rows_in_total",
            kind: MetricKind::Counter,
            help: "Source rows a view took in.",
            value: |v| v.rows_in,
        },
        ViewMetric {
            metric: "shopstream_view_late_rows_total",
            kind: MetricKind::Counter,
            help: "Rows that came after their window was final.",
            value: |v| v.late_rows,
        },
        ViewMetric {
            metric: "shopstream_view_windows_emitted_total",
            kind: MetricKind::Counter,
            help: "Final windows a view emitted.",
            value: |v| v.windows_emitted,
        },
        ViewMetric {
            metric: "shopstream_view_watermark_seconds",
            kind: MetricKind::Gauge,
            help: "A view's watermark, seconds since the epoch (0 before its first rows).",
            value: |v| v.watermark_s,
        },
        ViewMetric {
            metric: "shopstream_view_lag_records",
            kind: MetricKind::Gauge,
            help: "Records of a view's source not read yet.",
            value: |v| v.lag,
        },
        ViewMetric {
            metric: "shopstream_view_open_windows",
            kind: MetricKind::Gauge,
            help: "Open windows (or keys) in a view's state.",
            value: |v| v.open_windows,
        },
        ViewMetric {
            metric: "shopstream_view_state_bytes",
            kind: MetricKind::Gauge,
            help: "Bytes a view's state holds (about).",
            value: |v| v.state_bytes,
        },
    ];
}

/// Each view's change stream: the latest update as JSON (`{"view", "watermark", "live": [rows of the open
/// windows], "final": [rows made final by the last step]}`), for `GET /api/views/{name}/stream`.
pub type ViewStreams = Arc<Mutex<BTreeMap<String, tokio::sync::watch::Sender<Arc<String>>>>>;

/// What the HTTP app reads of the views this worker runs: their figures and change streams.
#[derive(Clone, Default)]
pub struct ViewHandles {
    /// Figures, by view.
    pub figures: ViewFigures,
    /// Change streams, by view.
    pub streams: ViewStreams,
}

/// The figures of the views this worker runs, by name.
pub type ViewFigures = Arc<Mutex<BTreeMap<String, ViewStatus>>>;

/// Where a view's source is: its dataset, and the topic records of it arrive on (`[live] topic` for orders).
struct SourceOf {
    dataset: String,
    topic: String,
    backbone: Arc<dyn Backbone>,
    declared: Vec<Arc<shopstream_ingest::Dataset>>,
    timezone: chrono_tz::Tz,
}

impl SourceOf {
    async fn open(&self, lake: &Lake) -> Result<ViewInput, String> {
        let name = &self.dataset;
        // A view over another view reads that view's table, commit by commit.
        if defs::is_view(lake, name).await.map_err(|e| e.to_string())? {
            return Ok(ViewInput::View {
                name: name.clone(),
                timezone: self.timezone,
            });
        }
        let dataset = lake
            .dataset(name)
            .await
            .map_err(|e| e.to_string())?
            .or_else(|| self.declared.iter().find(|d| &d.name == name).cloned())
            .ok_or_else(|| format!("no dataset `{name}`"))?;
        Ok(ViewInput::Log(Box::new(ViewSource {
            // A reader of its own: on Kafka the load keeps one per partition, which the view must not move.
            topic: self
                .backbone
                .topic_reader(&self.topic)
                .map_err(|e| e.to_string())?,
            dataset,
            mapping: None,
            timezone: self.timezone,
        })))
    }
}

/// What a view's task needs.
struct ViewTask {
    def: ViewDef,
    lake: Lake,
    source: SourceOf,
    write: WriteOptions,
    live: PartitionData,
    changes: tokio::sync::watch::Sender<Arc<String>>,
    figures: ViewFigures,
    jobs: Arc<HeldJobs>,
    stop: Arc<AtomicBool>,
}

/// Saves the config's views and returns the task that runs the lake's views until `stop`
/// ([`crate::view_watch`]: it starts them now, and follows views made, changed or dropped while it runs).
pub async fn start(
    config: &Config,
    lake: &Lake,
    backbone: &Arc<dyn Backbone>,
    catalog: &Arc<LiveCatalog>,
    jobs: &Arc<HeldJobs>,
    stop: &Arc<AtomicBool>,
    handles: &ViewHandles,
) -> Result<Vec<tokio::task::JoinHandle<shopstream_engine::Result<()>>>, ServerError> {
    for def in &config.views {
        if defs::get(lake, &def.name).await?.as_ref() != Some(def) {
            defs::save(lake, def, &config.declared_datasets()).await?;
        }
    }
    let launcher = Launcher {
        config: Arc::new(config.clone()),
        lake: lake.clone(),
        backbone: backbone.clone(),
        catalog: catalog.clone(),
        jobs: jobs.clone(),
        handles: handles.clone(),
    };
    let mut watch = crate::view_watch::Watch::new(launcher, stop.clone());
    watch.follow().await;
    Ok(vec![tokio::spawn(watch.run())])
}

/// What starting a view's task needs of the server, the same for every view.
pub(crate) struct Launcher {
    config: Arc<Config>,
    lake: Lake,
    backbone: Arc<dyn Backbone>,
    catalog: Arc<LiveCatalog>,
    jobs: Arc<HeldJobs>,
    handles: ViewHandles,
}

/// A view's task, started by [`Launcher::launch`].
pub(crate) struct Running {
    /// The definition it runs.
    pub def: ViewDef,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<shopstream_engine::Result<()>>,
}

impl Running {
    /// Tells the task to stop (it does after its step, releasing its claim) and returns it to await.
    pub fn stop(self) -> tokio::task::JoinHandle<shopstream_engine::Result<()>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task
    }
}

impl Launcher {
    /// The lake's views.
    pub async fn views(&self) -> shopstream_engine::Result<Vec<ViewDef>> {
        defs::list(&self.lake).await
    }

    /// Starts view `def`'s task, with its `<name>_live` table and change stream (replacing an older
    /// version's); `Err` says why the view does not run.
    pub async fn launch(&self, def: ViewDef) -> Result<Running, String> {
        // A view made by another worker's `view create`, with another config.
        self.config
            .check_view_topic(&def)
            .map_err(|e| e.to_string())?;
        let plan = defs::check(&self.lake, &def, &self.config.declared_datasets())
            .await
            .map_err(|e| e.to_string())?;
        let live = MemTable::try_new(plan.output_schema.clone(), vec![vec![]])
            .map_err(|e| e.to_string())?;
        let partition = live.batches[0].clone();
        self.catalog
            .context()
            .register_table(format!("{}_live", def.name), Arc::new(live))
            .map_err(|e| e.to_string())?;
        let topic = if plan.source == "orders" {
            self.config.live.topic.clone()
        } else {
            plan.source.clone()
        };
        let source = SourceOf {
            dataset: plan.source.clone(),
            topic,
            backbone: self.backbone.clone(),
            declared: self.config.declared_datasets(),
            timezone: self.config.ingest.timezone(),
        };
        let (changes, _) = tokio::sync::watch::channel(Arc::new(String::from("{}")));
        self.handles
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(def.name.clone(), changes.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let task = ViewTask {
            changes,
            def: def.clone(),
            lake: self.lake.clone(),
            source,
            write: self.config.lake.write_options(),
            live: partition,
            figures: self.handles.figures.clone(),
            jobs: self.jobs.clone(),
            stop: stop.clone(),
        };
        Ok(Running {
            def,
            stop,
            task: tokio::spawn(task.run()),
        })
    }

    /// Removes what view `name` showed: its `<name>_live` table, its change stream (whose clients are
    /// told it ended) and its figures.
    pub fn forget(&self, name: &str) {
        let _ = self
            .catalog
            .context()
            .deregister_table(format!("{name}_live").as_str());
        let stream = self
            .handles
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if let Some(changes) = stream {
            changes.send_replace(Arc::new(String::new()));
        }
        self.handles
            .figures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

impl ViewTask {
    /// Claims the view and runs it while the claim holds, until the server stops.
    async fn run(self) -> shopstream_engine::Result<()> {
        let holder = shopstream_engine::lease::holder_name();
        let job = defs::job_name(&self.def.name);
        while !self.stop.load(Ordering::Relaxed) {
            match claim_job(&self.lake, &job, &holder, defs::VIEW_LEASE).await {
                Ok(Some(claim)) if self.is_current().await => self.hold(claim).await,
                // Dropped or changed since this task started: its watcher stops it next round.
                Ok(Some(claim)) => claim.release().await,
                Ok(None) => {}
                Err(e) => tracing::warn!(view = %self.def.name, "claiming the view: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(())
    }

    /// Whether the lake still has this task's definition of the view (read while holding its claim, so
    /// `view drop`, which waits for the claim, cannot remove the state under a task that is starting).
    async fn is_current(&self) -> bool {
        match defs::get(&self.lake, &self.def.name).await {
            Ok(def) => def.as_ref() == Some(&self.def) && !self.stop.load(Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(view = %self.def.name, "reading the view's definition: {e}");
                false
            }
        }
    }

    /// `work`'s result, while the claim is renewed; `None` when the view is stopped or the claim is lost
    /// first (`work` is then dropped).
    async fn while_held<T>(
        &self,
        claim: &mut JobClaim,
        work: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return Some(done),
                () = tokio::time::sleep(STEP_EVERY) => {
                    if self.stop.load(Ordering::Relaxed) || !claim.hold().await {
                        return None;
                    }
                }
            }
        }
    }

    async fn hold(&self, mut claim: JobClaim) {
        let label = format!("view {}", self.def.name);
        let opened = match (self.source.open(&self.lake).await, self.output_topic()) {
            (Ok(source), Ok(topic)) => {
                let (lake, def, write) = (&self.lake, self.def.clone(), self.write.clone());
                let open = ViewJob::open_with(lake, def, source, write, topic);
                match self.while_held(&mut claim, open).await {
                    Some(opened) => opened.map_err(|e| e.to_string()),
                    // Stopped, or the claim lost, while backfilling: left as a crash would leave it.
                    None => return claim.release().await,
                }
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        match opened {
            Ok(mut job) => {
                self.jobs.set(&label, true);
                let mut published: Option<(std::time::Instant, Duration)> = None;
                while !self.stop.load(Ordering::Relaxed) && claim.hold().await {
                    match job.step(100_000).await {
                        Ok(n) => {
                            // Reading the open windows copies every accumulator's state: only when
                            // something was read (and not more than a fifth of the time, for a large
                            // state), or every few seconds (an idle partition moving the watermark).
                            let due = published.is_none_or(|(at, took)| {
                                let since = at.elapsed();
                                (n > 0 && since >= took * 4) || since >= PUBLISH_IDLE_EVERY
                            });
                            if due {
                                let at = std::time::Instant::now();
                                self.publish(&mut job).await;
                                published = Some((at, at.elapsed()));
                            }
                            if n == 0 {
                                tokio::time::sleep(STEP_EVERY).await;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(view = %self.def.name, "{e}");
                            break;
                        }
                    }
                }
                self.jobs.set(&label, false);
                // Streams of it from this worker end; their clients reconnect to where it runs next.
                self.changes.send_replace(Arc::new(String::new()));
            }
            Err(e) => tracing::warn!(view = %self.def.name, "{e}"),
        }
        claim.release().await;
    }

    /// The view's output topic on the backbone (made with one partition when missing), if it has one.
    fn output_topic(&self) -> Result<Option<Arc<dyn shopstream_log::TopicLog>>, String> {
        let Some(name) = &self.def.topic else {
            return Ok(None);
        };
        let backbone = &self.source.backbone;
        backbone
            .topic(name)
            .or_else(|_| backbone.create_topic(name, 1))
            .map(Some)
            .map_err(|e| format!("the output topic `{name}`: {e}"))
    }

    /// Replaces `<name>_live` with the open windows and records the figures.
    async fn publish(&self, job: &mut ViewJob) {
        let lag = job.lag().await;
        let emitted = job.take_emitted();
        let runner = job.runner();
        let live = match runner.live().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(view = %self.def.name, "live rows: {e}");
                Vec::new()
            }
        };
        let update = serde_json::json!({
            "view": self.def.name,
            "watermark": runner.watermark_local().map(|w| w.to_string()),
            "live": json_rows(&live),
            "final": json_rows(&emitted),
        });
        self.changes.send_replace(Arc::new(update.to_string()));
        *self.live.write().await = live;
        let (open, bytes) = runner.state_size();
        let c = runner.counters().clone();
        let status = ViewStatus {
            name: self.def.name.clone(),
            rows_in: c.rows_in,
            watermark: runner.watermark_local().map(|w| w.to_string()),
            lag,
            open_windows: open as u64,
            state_bytes: bytes as u64,
            late_rows: c.late_rows,
            windows_emitted: c.windows_emitted,
            watermark_s: runner
                .watermark()
                .map_or(0, |w| (w / 1_000_000).max(0) as u64),
            owner: shopstream_engine::lease::worker_id().to_string(),
        };
        // A view being stopped (dropped, or replaced by a new version) shows no more figures: `stop` is
        // set before the watcher removes them under this lock.
        let mut figures = self.figures.lock().unwrap_or_else(|e| e.into_inner());
        if !self.stop.load(Ordering::Relaxed) {
            figures.insert(self.def.name.clone(), status);
        }
    }
}

/// `batches` as JSON objects, one per row.
fn json_rows(batches: &[arrow::array::RecordBatch]) -> serde_json::Value {
    let mut buf = Vec::new();
    let mut writer = arrow::json::ArrayWriter::new(&mut buf);
    let written = batches
        .iter()
        .try_for_each(|b| writer.write(b))
        .and_then(|()| writer.finish());
    if written.is_err() || buf.is_empty() {
        return serde_json::Value::Array(Vec::new());
    }
    serde_json::from_slice(&buf).unwrap_or_default()
}

/// `GET /api/views/{name}/stream`: the view's changes as Server-Sent Events (`update` events, the first
/// one the current state), with the API's token; 404 for a view this server does not know.
pub(crate) async fn stream(
    axum::extract::State(state): axum::extract::State<Arc<crate::AppState>>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use crate::view_relay::{Origin, origin, relay};
    use axum::response::IntoResponse;
    use axum::response::sse::{Event, KeepAlive, Sse};
    if let Origin::Worker { id, http } = origin(&state, &name, &headers).await {
        let auth = headers.get(axum::http::header::AUTHORIZATION);
        return relay(&name, &id, &http, auth).await;
    }
    let receiver = state.views.get().and_then(|h| {
        let streams = h.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.get(&name).map(|tx| tx.subscribe())
    });
    let Some(mut rx) = receiver else {
        return (
            axum::http::StatusCode::NOT_FOUND,
            format!("no view `{name}`\n"),
        )
            .into_response();
    };
    rx.mark_changed();
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let data = rx.borrow_and_update().clone();
        // Empty: the view stopped running here (it moved to another worker); the client reconnects.
        if data.is_empty() {
            return None;
        }
        let event = Event::default().event("update").data(data.as_str());
        Some((Ok::<_, std::convert::Infallible>(event), rx))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
