//! Every worker's heartbeat in the lake, so any worker's `/v1/status`, `/metrics` and `shopstream status`
//! show all of them: a small JSON object `_shopstream/workers/<id>.json` rewritten every few seconds with
//! the worker's address, backbone, the partitions it loads (loaded offset, end offset, lag) and the
//! rebalances it saw; removed when the worker stops. A worker whose heartbeat is older than
//! [`STALE_AFTER`] is shown as not alive (it was killed, or cannot reach the lake). The lake's leases are
//! listed with their holders.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use shopstream_engine::Lake;
use shopstream_engine::lease::LeaseState;

use crate::AppState;

/// How often a worker writes its heartbeat.
pub const BEAT_EVERY: Duration = Duration::from_secs(5);
/// A heartbeat older than this is a worker that is gone.
pub const STALE_AFTER: Duration = Duration::from_secs(15);

/// One partition a worker loads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OwnedPartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Next offset the lake holds for it.
    pub loaded_offset: Option<u64>,
    /// The backbone's end offset.
    pub end_offset: u64,
    /// Records not yet in the lake.
    pub lag: u64,
}

/// A worker as its last heartbeat described it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Its id (host, process, random suffix).
    pub id: String,
    /// Its HTTP address.
    pub http: String,
    /// `embedded`, or the Kafka cluster's name.
    pub backbone: String,
    /// When it started, ms since the epoch.
    pub started_ms: i64,
    /// When it last wrote its heartbeat.
    pub heartbeat_ms: i64,
    /// Whether that is recent (filled in when read).
    #[serde(default)]
    pub alive: bool,
    /// The partitions it loads.
    pub partitions: Vec<OwnedPartition>,
    /// Consumer-group rebalances it saw since start.
    pub rebalances: u64,
    /// The jobs that run on one worker at a time which it runs (`poller <name>`).
    #[serde(default)]
    pub jobs: Vec<String>,
}

/// The jobs that run on one worker at a time (each API poller) this worker runs now, for its status.
#[derive(Debug, Default)]
pub struct HeldJobs(std::sync::Mutex<std::collections::BTreeSet<String>>);

impl HeldJobs {
    /// Records that this worker runs `job` (`held`) or no longer does.
    pub fn set(&self, job: &str, held: bool) {
        let mut jobs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if held {
            jobs.insert(job.to_string());
        } else {
            jobs.remove(job);
        }
    }

    /// The jobs held, by name.
    pub fn list(&self) -> Vec<String> {
        let jobs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        jobs.iter().cloned().collect()
    }
}

/// A lease of the lake and its holder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseStatus {
    /// The job (`compaction`, `embedded-server`).
    pub name: String,
    /// Who holds it.
    pub holder: String,
    /// Until when (ms since the epoch).
    pub expires_ms: i64,
}

/// What this worker writes about itself.
pub struct Heartbeat {
    /// The lake written to.
    pub lake: Lake,
    /// This worker's id.
    pub id: String,
    /// Its HTTP address.
    pub http: String,
    /// Its backbone's name.
    pub backbone: String,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

type Located = (shopstream_engine::storage::Store, object_store::path::Path);

fn path(lake: &Lake, rest: &[&str]) -> Result<Located, String> {
    let (store, mut at) = lake.object_store().map_err(|e| e.to_string())?;
    for part in rest {
        at = at.join(*part);
    }
    Ok((store, at))
}

impl Heartbeat {
    /// Writes the heartbeat every [`BEAT_EVERY`] until `stop`, then removes it. A failed write is logged
    /// and tried again: the lake may be unreachable a moment.
    pub async fn run(
        self,
        state: Arc<AppState>,
        stop: Arc<AtomicBool>,
    ) -> shopstream_engine::Result<()> {
        let started_ms = now_ms();
        let file = format!("{}.json", self.id);
        let (store, at) = path(&self.lake, &["_shopstream", "workers", &file])
            .map_err(shopstream_engine::EngineError::Internal)?;
        let mut next = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if std::time::Instant::now() >= next {
                next += BEAT_EVERY;
                let status = self.status(&state, started_ms).await;
                let body = serde_json::to_vec(&status).expect("a heartbeat serializes");
                if let Err(e) = store.put(&at, PutPayload::from(body)).await {
                    tracing::warn!("writing this worker's heartbeat: {e}");
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = store.delete(&at).await;
        Ok(())
    }

    async fn status(&self, state: &Arc<AppState>, started_ms: i64) -> WorkerStatus {
        let status = crate::metrics::gather_local(state.clone()).await;
        WorkerStatus {
            id: self.id.clone(),
            http: self.http.clone(),
            backbone: self.backbone.clone(),
            started_ms,
            heartbeat_ms: now_ms(),
            alive: true,
            partitions: status
                .partitions
                .iter()
                .filter(|p| p.loaded_offset.is_some())
                .map(|p| OwnedPartition {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    loaded_offset: p.loaded_offset,
                    end_offset: p.end_offset,
                    lag: p.lag,
                })
                .collect(),
            rebalances: status.rebalances,
            jobs: status.jobs,
        }
    }
}

/// Every worker's last heartbeat, and the lake's leases (empty when the lake cannot be listed).
pub async fn read(lake: &Lake) -> (Vec<WorkerStatus>, Vec<LeaseStatus>) {
    let mut workers: Vec<WorkerStatus> = objects(lake, "workers").await;
    let now = now_ms();
    for w in &mut workers {
        w.alive = now - w.heartbeat_ms <= STALE_AFTER.as_millis() as i64;
    }
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    let leases = objects::<(String, LeaseState)>(lake, "leases")
        .await
        .into_iter()
        .map(|(name, s)| LeaseStatus {
            name,
            holder: s.holder,
            expires_ms: s.expires_ms,
        })
        .collect();
    (workers, leases)
}

/// The JSON objects in `_shopstream/<folder>/`, parsed (with their name, for leases); unreadable ones
/// are skipped.
async fn objects<T: FromNamed>(lake: &Lake, folder: &str) -> Vec<T> {
    let Ok((store, at)) = path(lake, &["_shopstream", folder]) else {
        return Vec::new();
    };
    let Ok(listed) = store.list(Some(&at)).try_collect::<Vec<_>>().await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for meta in listed {
        let Ok(got) = store.get(&meta.location).await else {
            continue;
        };
        let Ok(bytes) = got.bytes().await else {
            continue;
        };
        let name = meta
            .location
            .filename()
            .unwrap_or_default()
            .trim_end_matches(".json")
            .to_string();
        if let Some(v) = T::from_named(name, &bytes) {
            out.push(v);
        }
    }
    out
}

/// A value read from a named JSON object.
trait FromNamed: Sized {
    fn from_named(name: String, bytes: &[u8]) -> Option<Self>;
}

impl FromNamed for WorkerStatus {
    fn from_named(_: String, bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

impl FromNamed for (String, LeaseState) {
    fn from_named(name: String, bytes: &[u8]) -> Option<Self> {
        Some((name, serde_json::from_slice(bytes).ok()?))
    }
}
