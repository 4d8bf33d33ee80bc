//! shopstream's HTTP server: live records into the log, the figures of the running flow, and read-only
//! queries over the lake ([`query`]: SQL, reports, the dashboard's [`panels`], the OpenAPI description), the
//! embedded dashboard pages ([`dashboard`]), and beside it the Postgres wire endpoint ([`postgres`]) over the
//! same live catalog.
//!
//! `POST /v1/flows/{flow}/records` runs a flow's steps first (rejected records to its dead-letter topic).
//! `POST /v1/topics/{topic}/records` takes JSON, NDJSON or CSV ([`shopstream_ingest::sources::http`]) and
//! answers only once the records are durable in the log: all records of a request go into one checksummed
//! batch of one partition, so a request is stored whole or not at all. An `Idempotency-Key` header makes
//! retries safe: a key already stored answers with the original offsets instead of appending again, also after
//! a restart (the keys of the last [`IDEMPOTENCY_WINDOW`] records per partition are reloaded from the log).
//! When the lake load falls behind by more than the configured records or bytes, new requests get
//! `429 Too Many Requests` with `Retry-After` (or wait for room, if configured). With a token configured every
//! route but `/health` and the (data-free) pages needs `Authorization: Bearer <token>`. `/metrics` (Prometheus text) and `/v1/status`
//! (JSON) give log ends, loaded offsets, lag, request counts and dead letters.
//!
//! [`Server::start`] assembles all of it from a [`Config`] (the log, the live [`sources`], the topic load,
//! the compaction, the HTTP app and the Postgres endpoint) and returns the [`Running`] server with its
//! shutdown; the `shopstream` binary only parses arguments and prints.

mod body;
pub mod config;
pub use config::Config;
pub mod dashboard;
mod info_schema;
mod ingest;
mod metrics;
pub use metrics::{Counter, MetricKind, PartitionMetric, PartitionStatus, Status};
pub mod panels;
mod pg_compat;
pub mod postgres;
pub mod query;
mod server;
pub use server::{Running, Server, ServerError};
pub mod sources;
mod view_relay;
mod view_watch;
pub mod views;
pub mod workers;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use shopstream_engine::stream::landing::LandingProgress;
use shopstream_engine::stream::topic_load::LoadProgress;
use shopstream_ingest::sources::flow::FlowConfig;
use shopstream_log::{Backbone, TopicLog};

/// Records per partition whose idempotency keys are remembered across restarts.
pub const IDEMPOTENCY_WINDOW: usize = 100_000;

/// What to do with a request when the flow is over its back-pressure thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnBackpressure {
    /// Answer 429 with `Retry-After` at once.
    #[default]
    Reject,
    /// Hold the request until there is room (up to 30 s, then 429).
    Wait,
}

/// The server's settings (the `[server]` section of the config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (`127.0.0.1:8080`; port 0 picks a free one).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Bearer token required on every route but `/health` when not empty.
    #[serde(default)]
    pub token: String,
    /// Largest request body accepted, in MiB.
    #[serde(default = "default_body_mb")]
    pub max_body_mb: usize,
    /// Back-pressure: most records received but not yet loaded into the lake.
    #[serde(default = "default_bp_records")]
    pub backpressure_records: u64,
    /// Back-pressure: most bytes received but not yet loaded into the lake, in MiB.
    #[serde(default = "default_bp_mb")]
    pub backpressure_mb: u64,
    /// Reject (429) or wait when over the thresholds.
    #[serde(default)]
    pub on_backpressure: OnBackpressure,
    /// The `host:port` other workers reach this one at (its heartbeat; they relay a view's change
    /// stream from the worker that runs the view); empty: the address it listens on (the host's name
    /// for `0.0.0.0`).
    #[serde(default)]
    pub advertise: String,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_body_mb() -> usize {
    16
}
fn default_bp_records() -> u64 {
    1_000_000
}
fn default_bp_mb() -> u64 {
    1024
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            token: String::new(),
            max_body_mb: default_body_mb(),
            backpressure_records: default_bp_records(),
            backpressure_mb: default_bp_mb(),
            on_backpressure: OnBackpressure::default(),
            advertise: String::new(),
        }
    }
}

/// What an accepted request got, remembered under its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ack {
    pub(crate) partition: u32,
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// Records stored (one Kafka message holds a whole request: `end - start` is 1 there).
    pub(crate) records: u64,
}

#[derive(Debug, Clone)]
pub(crate) enum KeyState {
    InFlight,
    Done(Ack),
}

/// What [`Idempotency::begin`] found for a key.
pub(crate) enum Begin {
    /// The key is new: it is now marked in flight, with this generation.
    New(u64),
    /// A request with this key is being stored.
    InFlight,
    /// A request with this key was stored with this answer.
    Done(Ack),
}

/// Idempotency keys of recent requests, in flight or done; beyond the capacity the oldest done key is
/// evicted (a key in flight never is: its retry would be stored twice; they are as many as requests).
#[derive(Default)]
pub(crate) struct Idempotency {
    /// Key → state and the generation it was inserted with.
    keys: HashMap<String, (KeyState, u64)>,
    /// Keys in insertion order with their generation (a released and re-used key has a newer one).
    order: VecDeque<(String, u64)>,
    generation: u64,
}

impl Idempotency {
    /// Looks `key` up; a new key is marked in flight (and counts toward the capacity at once).
    pub(crate) fn begin(&mut self, key: &str, capacity: usize) -> Begin {
        match self.keys.get(key) {
            Some((KeyState::Done(ack), _)) => Begin::Done(ack.clone()),
            Some((KeyState::InFlight, _)) => Begin::InFlight,
            None => Begin::New(self.insert(key.to_string(), KeyState::InFlight, capacity)),
        }
    }

    /// Records the answer of a stored request.
    pub(crate) fn remember(&mut self, key: String, ack: Ack, capacity: usize) {
        self.insert(key, KeyState::Done(ack), capacity);
    }

    /// Clears the in-flight mark of generation `generation`: its request ended without storing anything.
    pub(crate) fn release(&mut self, key: &str, generation: u64) {
        if matches!(self.keys.get(key), Some((KeyState::InFlight, g)) if *g == generation) {
            self.keys.remove(key);
        }
    }

    /// Sets `key`'s state; returns the generation of its entry.
    fn insert(&mut self, key: String, state: KeyState, capacity: usize) -> u64 {
        let generation = match self.keys.get_mut(&key) {
            Some(entry) => {
                entry.0 = state;
                entry.1
            }
            None => {
                self.generation += 1;
                self.keys.insert(key.clone(), (state, self.generation));
                self.order.push_back((key, self.generation));
                self.generation
            }
        };
        // Released keys leave stale entries in the order: drop them once they are as many as the keys.
        if self.order.len() > capacity.saturating_mul(2).max(16) {
            let keys = &self.keys;
            self.order
                .retain(|(k, g)| keys.get(k).is_some_and(|(_, kg)| kg == g));
        }
        let mut in_flight = Vec::new();
        while self.keys.len() > capacity {
            let Some((old, generation)) = self.order.pop_front() else {
                break;
            };
            match self.keys.get(&old) {
                Some((KeyState::InFlight, g)) if *g == generation => {
                    in_flight.push((old, generation))
                }
                Some((KeyState::Done(_), g)) if *g == generation => {
                    self.keys.remove(&old);
                }
                _ => {}
            }
        }
        // Keys in flight go back to the front, oldest first, to be evicted once done.
        for entry in in_flight.into_iter().rev() {
            self.order.push_front(entry);
        }
        generation
    }

    /// Keys held (in flight or done).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    #[cfg(test)]
    pub(crate) fn state(&self, key: &str) -> Option<&KeyState> {
        self.keys.get(key).map(|(s, _)| s)
    }
}

/// HTTP counters.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    pub(crate) accepted_requests: AtomicU64,
    pub(crate) accepted_records: AtomicU64,
    pub(crate) duplicate_requests: AtomicU64,
    pub(crate) rejected_requests: AtomicU64,
    pub(crate) throttled_requests: AtomicU64,
}

/// Shared state of the routes.
pub struct AppState {
    pub(crate) backbone: Arc<dyn Backbone>,
    pub(crate) config: ServerConfig,
    pub(crate) idempotency: Mutex<Idempotency>,
    pub(crate) idempotency_capacity: usize,
    pub(crate) http: HttpMetrics,
    pub(crate) loads: HashMap<String, Arc<LoadProgress>>,
    pub(crate) landing: Option<Arc<LandingProgress>>,
    pub(crate) flows: Vec<FlowConfig>,
    /// The lake, for the workers' heartbeats and leases in the status (set by the server).
    pub(crate) lake: std::sync::OnceLock<shopstream_engine::Lake>,
    /// The jobs that run on one worker at a time which this worker runs (set by the server).
    pub(crate) jobs: std::sync::OnceLock<Arc<crate::workers::HeldJobs>>,
    /// The figures and change streams of the views this worker runs (set by the server).
    pub(crate) views: std::sync::OnceLock<crate::views::ViewHandles>,
}

impl AppState {
    /// State over `backbone`; `loads` maps each loaded topic to its load's progress (for lag and
    /// back-pressure); `landing` is the landing folder's, when one is watched; `flows` are served at
    /// `/v1/flows/{name}` (their topics must exist).
    ///
    /// On the embedded log the idempotency keys of recent requests are read back from it, so a retry after
    /// a restart is answered as a duplicate. On Kafka a retry to any worker is stored again and loaded
    /// once (the load skips a request key it has seen, [`shopstream_kafka::topic`]).
    pub fn new(
        backbone: Arc<dyn Backbone>,
        config: ServerConfig,
        loads: HashMap<String, Arc<LoadProgress>>,
        landing: Option<Arc<LandingProgress>>,
        flows: Vec<FlowConfig>,
    ) -> Arc<AppState> {
        let mut idempotency = Idempotency::default();
        let capacity = IDEMPOTENCY_WINDOW * 8;
        let dead_letter_topics: Vec<String> =
            flows.iter().map(FlowConfig::dead_letter_topic).collect();
        // Keys come from where requests' records are stored, not from dead-letter topics (written first).
        for topic in backbone.embedded().map(|l| l.topics()).unwrap_or_default() {
            if !dead_letter_topics.iter().any(|d| d == topic.name()) {
                ingest::reload_keys(&topic, &mut idempotency, capacity);
            }
        }
        Arc::new(AppState {
            backbone,
            config,
            idempotency: Mutex::new(idempotency),
            idempotency_capacity: capacity,
            http: HttpMetrics::default(),
            loads,
            landing,
            flows,
            lake: std::sync::OnceLock::new(),
            jobs: std::sync::OnceLock::new(),
            views: std::sync::OnceLock::new(),
        })
    }

    /// Records and bytes received into `topic` but not yet loaded into the lake (by any worker: on Kafka
    /// this worker's loads know only their own partitions, so others' count as loaded).
    pub(crate) fn lag(&self, topic: &dyn TopicLog) -> (u64, u64) {
        let Some(progress) = self.loads.get(topic.name()) else {
            return (0, 0);
        };
        let loaded = progress
            .loaded_offsets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let embedded = self
            .backbone
            .embedded()
            .and_then(|l| l.topic(topic.name()).ok());
        let mut records = 0;
        let mut bytes = 0;
        for p in topic.assigned() {
            let end = topic.end_offset(p).unwrap_or(0);
            let behind = end.saturating_sub(loaded.get(p as usize).copied().unwrap_or(0));
            records += behind;
            // Bytes per record as appended since start (a fair estimate of what waits).
            let per_record =
                embedded
                    .as_ref()
                    .and_then(|t| t.partition(p).ok())
                    .map_or(1024, |part| {
                        let stats = part.stats();
                        let (r, b) = (
                            stats.records.load(std::sync::atomic::Ordering::Relaxed),
                            stats.bytes.load(std::sync::atomic::Ordering::Relaxed),
                        );
                        b.checked_div(r).unwrap_or(1024)
                    });
            bytes += behind * per_record;
        }
        (records, bytes)
    }
}

async fn require_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let token = &state.config.token;
    if token.is_empty() || is_open(request.uri().path()) {
        return next.run(request).await;
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        next.run(request).await
    } else {
        let limit = state.config.max_body_mb as u64 * 1024 * 1024;
        if !body::refuse_unread(&headers, limit) {
            body::drain(request.into_body()).await;
        }
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required (Authorization: Bearer <token>)\n",
        )
            .into_response()
    }
}

/// Whether `path` is served without the token: the health check and the dashboard's pages.
pub(crate) fn is_open(path: &str) -> bool {
    path == "/health" || dashboard::is_page(path)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The routes: ingest, status and metrics.
pub fn router(state: Arc<AppState>) -> Router {
    app(state, None)
}

/// All routes: [`router`]'s, plus the query API over `lake` when given; the token and body limit apply to all.
pub fn app(state: Arc<AppState>, lake: Option<Arc<shopstream_engine::LiveCatalog>>) -> Router {
    let limit = state.config.max_body_mb * 1024 * 1024;
    let mut routes = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/v1/topics/{topic}/records", post(ingest::post_records))
        .route("/v1/flows/{flow}/records", post(ingest::post_flow_records))
        .route("/v1/status", get(metrics::status))
        .route("/metrics", get(metrics::prometheus))
        .route("/api/views/{name}/stream", get(views::stream))
        .with_state(state.clone());
    if let Some(lake) = lake {
        routes = routes.merge(query::routes(lake)).merge(dashboard::routes());
    }
    routes
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            body::read_whole,
        ))
        .layer(axum::middleware::from_fn_with_state(state, require_token))
}

/// Binds `listen`, returning the listener and the address actually bound (port 0 picks one).
pub async fn bind(listen: &str) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// How long a waiting request may be held under back-pressure.
pub(crate) const MAX_HOLD: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(n: u64) -> Ack {
        Ack {
            partition: 0,
            start: n,
            end: n + 1,
            records: 1,
        }
    }

    #[test]
    fn idempotency_keys_are_evicted_beyond_the_capacity() {
        let mut idem = Idempotency::default();
        for i in 0..100u64 {
            let key = format!("k{i}");
            assert!(matches!(idem.begin(&key, 10), Begin::New(_)));
            idem.remember(key, ack(i), 10);
        }
        assert_eq!(
            idem.len(),
            10,
            "a key marked in flight, then done, is one entry"
        );
        assert!(idem.state("k0").is_none(), "the oldest keys are gone");
        assert!(matches!(idem.state("k99"), Some(KeyState::Done(a)) if a.start == 99));
        // Keys released and reused do not make the queue of insertion order grow without bound.
        for _ in 0..1000 {
            let Begin::New(generation) = idem.begin("again", 10) else {
                panic!("a released key is new again");
            };
            idem.release("again", generation);
        }
        assert!(idem.order.len() <= 20, "{}", idem.order.len());
        assert!(matches!(idem.state("k99"), Some(KeyState::Done(_))));
    }

    #[test]
    fn a_key_in_flight_is_never_evicted_and_only_its_own_request_releases_it() {
        let mut idem = Idempotency::default();
        let Begin::New(_) = idem.begin("slow", 3) else {
            panic!("new key");
        };
        for i in 0..10u64 {
            let key = format!("k{i}");
            idem.begin(&key, 3);
            idem.remember(key, ack(i), 3);
        }
        assert!(
            matches!(idem.begin("slow", 3), Begin::InFlight),
            "a retry of a request still being stored waits: it is not stored twice"
        );
        idem.remember("slow".into(), ack(99), 3);
        assert!(matches!(idem.begin("slow", 3), Begin::Done(_)));
        // A stale release (an older request with the same key) does not clear a newer mark.
        let mut idem = Idempotency::default();
        let Begin::New(first) = idem.begin("k", 3) else {
            panic!("new key");
        };
        idem.release("k", first);
        let Begin::New(second) = idem.begin("k", 3) else {
            panic!("new again");
        };
        idem.release("k", first);
        assert!(matches!(idem.begin("k", 3), Begin::InFlight));
        idem.release("k", second);
        assert!(idem.state("k").is_none());
    }
}
