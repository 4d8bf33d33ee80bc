//! The flow's figures: `/v1/status` as JSON, `/metrics` in the Prometheus text format.
//!
//! Each figure is declared once: the counters by [`Status::counters`], the per-partition families by
//! [`PartitionStatus::METRICS`]. Both routes and `shopstream status` read those lists, so a new figure is
//! one field and one entry.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use crate::AppState;

/// One partition's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionStatus {
    /// Topic.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// First offset still stored.
    pub start_offset: u64,
    /// One past the last durable offset.
    pub end_offset: u64,
    /// Next offset the lake load will read (None when no load runs on the topic).
    pub loaded_offset: Option<u64>,
    /// Records durable in the log but not yet in the lake.
    pub lag: u64,
    /// Records appended since start.
    pub appended_records: u64,
    /// fdatasync calls since start.
    pub syncs: u64,
}

/// Everything `shopstream status` shows: the server writes it at `/v1/status`, the CLI reads it back as
/// this struct.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// Per partition.
    pub partitions: Vec<PartitionStatus>,
    /// Requests stored.
    pub http_accepted_requests: u64,
    /// Records stored from requests.
    pub http_accepted_records: u64,
    /// Retries answered from the idempotency keys.
    pub http_duplicate_requests: u64,
    /// Requests refused (bad body, auth, unknown topic, errors).
    pub http_rejected_requests: u64,
    /// Requests refused by back-pressure.
    pub http_throttled_requests: u64,
    /// Records loaded into the lake since start (rows and dead letters).
    pub loaded_records: u64,
    /// Of which dead letters.
    pub dead_letters: u64,
    /// Micro-batches committed to the lake.
    pub lake_commits: u64,
    /// Torn tails cut when the log was opened.
    pub log_recovered_truncations: u64,
    /// Landing folder: files loaded and moved to `processed/`.
    pub landing_processed_files: u64,
    /// Landing folder: files moved to `failed/`.
    pub landing_failed_files: u64,
    /// Consumer-group rebalances this worker saw (Kafka).
    #[serde(default)]
    pub rebalances: u64,
    /// The jobs that run on one worker at a time which this worker runs (`poller <name>`).
    #[serde(default)]
    pub jobs: Vec<String>,
    /// The continuous views this worker runs.
    #[serde(default)]
    pub views: Vec<crate::views::ViewStatus>,
    /// Every worker on the lake, from their heartbeats.
    #[serde(default)]
    pub workers: Vec<crate::workers::WorkerStatus>,
    /// The lake's leases and their holders.
    #[serde(default)]
    pub leases: Vec<crate::workers::LeaseStatus>,
}

/// One counter of [`Status`]: its key in `/v1/status` and `shopstream status`, its Prometheus name and
/// help, and its value. [`Status::counters`] lists each once; every view reads that list.
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    /// The field name in `/v1/status`.
    pub key: &'static str,
    /// The Prometheus metric (a counter).
    pub metric: &'static str,
    /// The Prometheus help text.
    pub help: &'static str,
    /// The value.
    pub value: u64,
}

/// What a Prometheus metric is: a value that only grows, or one that goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only grows (since start).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl MetricKind {
    /// The name in `# TYPE` lines.
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// One labelled metric family of `/metrics` (per partition, per view): its Prometheus name, kind and
/// help, and the field of the status `T` it reads. [`PartitionStatus::METRICS`] and
/// [`crate::views::ViewStatus::METRICS`] declare each once.
#[derive(Debug)]
pub struct Family<T> {
    /// The Prometheus metric.
    pub metric: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// The Prometheus help text.
    pub help: &'static str,
    /// Reads the value from a status.
    pub value: fn(&T) -> u64,
}

impl<T> Clone for Family<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Family<T> {}

/// A per-partition metric family.
pub type PartitionMetric = Family<PartitionStatus>;

impl PartitionStatus {
    /// The per-partition metric families, in the order `/metrics` writes them.
    pub const METRICS: [PartitionMetric; 4] = [
        PartitionMetric {
            metric: "shopstream_log_end_offset",
            kind: MetricKind::Gauge,
            help: "One past the last durable offset.",
            value: |p| p.end_offset,
        },
        PartitionMetric {
            metric: "shopstream_log_appended_records_total",
            kind: MetricKind::Counter,
            help: "Records appended since start.",
            value: |p| p.appended_records,
        },
        PartitionMetric {
            metric: "shopstream_log_syncs_total",
            kind: MetricKind::Counter,
            help: "fdatasync calls since start.",
            value: |p| p.syncs,
        },
        PartitionMetric {
            metric: "shopstream_consumer_lag_records",
            kind: MetricKind::Gauge,
            help: "Records durable in the log but not yet loaded into the lake.",
            value: |p| p.lag,
        },
    ];
}

impl Status {
    /// The counters, in the order `shopstream status` prints them.
    pub fn counters(&self) -> [Counter; 12] {
        let c = |key, metric, help, value| Counter {
            key,
            metric,
            help,
            value,
        };
        [
            c(
                "http_accepted_requests",
                "shopstream_http_accepted_requests_total",
                "Requests stored.",
                self.http_accepted_requests,
            ),
            c(
                "http_accepted_records",
                "shopstream_http_accepted_records_total",
                "Records stored from requests.",
                self.http_accepted_records,
            ),
            c(
                "http_duplicate_requests",
                "shopstream_http_duplicate_requests_total",
                "Retries answered from idempotency keys.",
                self.http_duplicate_requests,
            ),
            c(
                "http_rejected_requests",
                "shopstream_http_rejected_requests_total",
                "Requests refused.",
                self.http_rejected_requests,
            ),
            c(
                "http_throttled_requests",
                "shopstream_http_throttled_requests_total",
                "Requests refused by back-pressure.",
                self.http_throttled_requests,
            ),
            c(
                "loaded_records",
                "shopstream_lake_loaded_records_total",
                "Records loaded into the lake.",
                self.loaded_records,
            ),
            c(
                "dead_letters",
                "shopstream_lake_dead_letters_total",
                "Records dead-lettered by the load.",
                self.dead_letters,
            ),
            c(
                "lake_commits",
                "shopstream_lake_commits_total",
                "Micro-batches committed.",
                self.lake_commits,
            ),
            c(
                "landing_processed_files",
                "shopstream_landing_processed_files_total",
                "Landing-folder files loaded and moved to processed/.",
                self.landing_processed_files,
            ),
            c(
                "landing_failed_files",
                "shopstream_landing_failed_files_total",
                "Landing-folder files refused and moved to failed/.",
                self.landing_failed_files,
            ),
            c(
                "log_recovered_truncations",
                "shopstream_log_recovered_truncations_total",
                "Torn tails cut at open.",
                self.log_recovered_truncations,
            ),
            c(
                "rebalances",
                "shopstream_consumer_group_rebalances_total",
                "Consumer-group rebalances this worker saw (Kafka).",
                self.rebalances,
            ),
        ]
    }
}

pub(crate) fn collect(state: &AppState) -> Status {
    let mut partitions = Vec::new();
    let embedded = state.backbone.embedded();
    for topic in embedded.map(|l| l.topics()).unwrap_or_default() {
        let loaded = state.loads.get(topic.name()).map(|p| {
            p.loaded_offsets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        });
        for (n, part) in topic.partitions().iter().enumerate() {
            let end = part.end_offset();
            let loaded_offset = loaded.as_ref().map(|l| l.get(n).copied().unwrap_or(0));
            partitions.push(PartitionStatus {
                topic: topic.name().to_string(),
                partition: n as u32,
                start_offset: part.start_offset(),
                end_offset: end,
                loaded_offset,
                lag: loaded_offset.map_or(0, |l| end.saturating_sub(l)),
                appended_records: part.stats().records.load(Ordering::Relaxed),
                syncs: part.stats().syncs.load(Ordering::Relaxed),
            });
        }
    }
    if embedded.is_none() {
        partitions = backbone_partitions(state);
    }
    let sum = |f: fn(&shopstream_engine::stream::topic_load::LoadProgress) -> u64| {
        state.loads.values().map(|p| f(p)).sum()
    };
    let h = &state.http;
    Status {
        partitions,
        http_accepted_requests: h.accepted_requests.load(Ordering::Relaxed),
        http_accepted_records: h.accepted_records.load(Ordering::Relaxed),
        http_duplicate_requests: h.duplicate_requests.load(Ordering::Relaxed),
        http_rejected_requests: h.rejected_requests.load(Ordering::Relaxed),
        http_throttled_requests: h.throttled_requests.load(Ordering::Relaxed),
        loaded_records: sum(|p| p.records.load(Ordering::Relaxed)),
        dead_letters: sum(|p| p.dead_letters.load(Ordering::Relaxed)),
        lake_commits: sum(|p| p.commits.load(Ordering::Relaxed)),
        log_recovered_truncations: embedded.map_or(0, |l| {
            l.metrics().recovered_truncations.load(Ordering::Relaxed)
        }),
        landing_processed_files: state
            .landing
            .as_ref()
            .map_or(0, |l| l.processed.load(Ordering::Relaxed)),
        landing_failed_files: state
            .landing
            .as_ref()
            .map_or(0, |l| l.failed.load(Ordering::Relaxed)),
        rebalances: state
            .loads
            .keys()
            .filter_map(|t| state.backbone.topic(t).ok())
            .map(|t| t.rebalances())
            .sum(),
        jobs: state.jobs.get().map(|j| j.list()).unwrap_or_default(),
        views: state
            .views
            .get()
            .map(|h| {
                let v = h.figures.lock().unwrap_or_else(|e| e.into_inner());
                v.values().cloned().collect()
            })
            .unwrap_or_default(),
        workers: Vec::new(),
        leases: Vec::new(),
    }
}

/// The partitions this worker loads on a backbone other than the embedded log (Kafka), with their offsets.
fn backbone_partitions(state: &AppState) -> Vec<PartitionStatus> {
    let mut out = Vec::new();
    let mut topics: Vec<&String> = state.loads.keys().collect();
    topics.sort();
    for name in topics {
        let Ok(topic) = state.backbone.topic(name) else {
            continue;
        };
        let loaded = state.loads[name]
            .loaded_offsets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for p in topic.assigned() {
            let end = topic.end_offset(p).unwrap_or(0);
            let loaded_offset = loaded.get(p as usize).copied();
            out.push(PartitionStatus {
                topic: name.clone(),
                partition: p,
                start_offset: topic.start_offset(p).unwrap_or(0),
                end_offset: end,
                loaded_offset,
                lag: loaded_offset.map_or(0, |l| end.saturating_sub(l)),
                appended_records: 0,
                syncs: 0,
            });
        }
    }
    out
}

/// This worker's figures, gathered on a blocking thread (Kafka's offsets are asked of the cluster).
pub(crate) async fn gather_local(state: Arc<AppState>) -> Status {
    tokio::task::spawn_blocking(move || collect(&state))
        .await
        .expect("collecting the status does not panic")
}

/// This worker's figures, and every worker's and lease from the lake.
async fn gather(state: Arc<AppState>) -> Status {
    let lake = state.lake.get().cloned();
    let mut status = gather_local(state).await;
    if let Some(lake) = lake {
        (status.workers, status.leases) = crate::workers::read(&lake).await;
    }
    status
}

/// `GET /v1/status`.
pub(crate) async fn status(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    axum::Json(gather(state).await)
}

/// `GET /metrics`.
pub(crate) async fn prometheus(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let s = gather(state).await;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    for m in PartitionStatus::METRICS {
        let rows = s
            .partitions
            .iter()
            .map(|p| {
                (
                    format!("{{topic=\"{}\",partition=\"{}\"}}", p.topic, p.partition),
                    (m.value)(p),
                )
            })
            .collect();
        family(m.metric, m.kind.name(), m.help, rows);
    }
    for c in s.counters() {
        family(
            c.metric,
            MetricKind::Counter.name(),
            c.help,
            vec![(String::new(), c.value)],
        );
    }
    let alive = s.workers.iter().filter(|w| w.alive).count() as u64;
    family(
        "shopstream_workers_alive",
        MetricKind::Gauge.name(),
        "Workers on the lake with a recent heartbeat.",
        vec![(String::new(), alive)],
    );
    family(
        "shopstream_worker_partitions",
        MetricKind::Gauge.name(),
        "Partitions each worker loads, from its heartbeat.",
        s.workers
            .iter()
            .filter(|w| w.alive)
            .map(|w| {
                (
                    format!("{{worker=\"{}\"}}", w.id),
                    w.partitions.len() as u64,
                )
            })
            .collect(),
    );
    for m in crate::views::ViewStatus::METRICS {
        let rows = s
            .views
            .iter()
            .map(|v| {
                let labels = format!("{{view=\"{}\",worker=\"{}\"}}", v.name, v.owner);
                (labels, (m.value)(v))
            })
            .collect();
        family(m.metric, m.kind.name(), m.help, rows);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
