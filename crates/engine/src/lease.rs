//! Leases in the lake's object store: which worker runs a job that must run once at a time (the
//! compaction of a lake on S3), and which server owns a lake on the embedded log.
//!
//! A lease is a small JSON object `_shopstream/leases/<name>.json` (holder, expiry). It is taken with a
//! conditional create, or, once expired, by a conditional replace of the version read (`If-Match` on its
//! ETag); the holder renews it the same way before it expires. Of two workers racing, the store lets one
//! write win. A lease only saves work and refuses unsafe setups: what keeps data right when a paused holder
//! outlives its lease is the Delta log (a compaction's commit carries its own `txn`, [`crate::compact`]).
//! Local lakes use lock files instead ([`crate::load`]), so leases are for object storage; [`claim_job`]
//! takes whichever the lake has, for a job that runs on one worker at a time (each API poller).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::lake::Lake;

/// What a lease object holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseState {
    /// Who holds it (`host:pid:uuid`).
    pub holder: String,
    /// Until when, in ms since the epoch.
    pub expires_ms: i64,
}

/// A lease this process holds; see the module documentation.
pub struct Lease {
    store: deltalake::logstore::ObjectStoreRef,
    path: StorePath,
    holder: String,
    ttl: Duration,
    version: UpdateVersion,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// This machine's name (empty when it has none to read).
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .or_else(|_| std::fs::read_to_string("/proc/sys/kernel/hostname"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// This process's worker id: what its heartbeat carries and `status` shows as a view's owner
/// (a [`holder_name`], the same for the process's life).
pub fn worker_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(holder_name)
}

/// A new name as a lease holder (`host:pid:random`): each claim its own, so two tasks of one process
/// never both hold one lease.
pub fn holder_name() -> String {
    format!(
        "{}:{}:{}",
        host_name(),
        std::process::id(),
        &uuid::Uuid::new_v4().to_string()[..8]
    )
}

fn failed(lake: &Lake, e: impl std::fmt::Display) -> EngineError {
    EngineError::Location {
        location: lake.root().to_string(),
        reason: format!("lease: {e}"),
    }
}

impl Lease {
    /// Takes lease `name` for `ttl` unless another holder's is still valid: `Err` is that holder's state
    /// (`Ok(Err(state))`); store failures are errors.
    pub async fn acquire(
        lake: &Lake,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<std::result::Result<Lease, LeaseState>> {
        let (store, root) = lake.object_store()?;
        let path = root
            .join("_shopstream")
            .join("leases")
            .join(format!("{name}.json").as_str());
        let mut lease = Lease {
            store,
            path,
            holder: holder.to_string(),
            ttl,
            version: UpdateVersion {
                e_tag: None,
                version: None,
            },
        };
        match lease.write(PutMode::Create).await {
            Ok(()) => return Ok(Ok(lease)),
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(failed(lake, e)),
        }
        let current = lease
            .store
            .get(&lease.path)
            .await
            .map_err(|e| failed(lake, e))?;
        let version = UpdateVersion {
            e_tag: current.meta.e_tag.clone(),
            version: current.meta.version.clone(),
        };
        let bytes = current.bytes().await.map_err(|e| failed(lake, e))?;
        let state: LeaseState = serde_json::from_slice(&bytes).map_err(|e| failed(lake, e))?;
        if state.holder != holder && state.expires_ms > now_ms() {
            return Ok(Err(state));
        }
        match lease.write(PutMode::Update(version)).await {
            Ok(()) => Ok(Ok(lease)),
            Err(object_store::Error::Precondition { .. }) => {
                // Another worker took it over first.
                Ok(Err(state))
            }
            Err(e) => Err(failed(lake, e)),
        }
    }

    async fn write(&mut self, mode: PutMode) -> std::result::Result<(), object_store::Error> {
        let state = LeaseState {
            holder: self.holder.clone(),
            expires_ms: now_ms() + self.ttl.as_millis() as i64,
        };
        let body = serde_json::to_vec(&state).expect("a lease serializes");
        let put = self
            .store
            .put_opts(&self.path, PutPayload::from(body), PutOptions::from(mode))
            .await?;
        self.version = UpdateVersion {
            e_tag: put.e_tag,
            version: put.version,
        };
        Ok(())
    }

    /// Extends the lease by its time to live; false when another holder has taken it meanwhile.
    pub async fn renew(&mut self) -> Result<bool> {
        match self.write(PutMode::Update(self.version.clone())).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(EngineError::Location {
                location: self.path.to_string(),
                reason: format!("renewing the lease: {e}"),
            }),
        }
    }

    /// Gives the lease up (deletes it), so another worker need not wait for its expiry.
    pub async fn release(self) {
        let _ = self.store.delete(&self.path).await;
    }
}

/// Holds lease `name` until `stop` is set, renewing it every third of `ttl`; fails (ending the caller's
/// part) when another holder took it over, which only happens if this process stalled past its lease.
pub async fn keep(
    mut lease: Lease,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<()> {
    use std::sync::atomic::Ordering;
    let every = lease.ttl / 3;
    let mut waited = Duration::ZERO;
    let tick = Duration::from_millis(200);
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(tick).await;
        waited += tick;
        if waited < every {
            continue;
        }
        waited = Duration::ZERO;
        if !lease.renew().await? {
            return Err(EngineError::Location {
                location: lease.path.to_string(),
                reason: "the lease was taken over by another holder".into(),
            });
        }
    }
    lease.release().await;
    Ok(())
}

/// A job that runs on one worker at a time (an API poller; see the module documentation): a lock file in a
/// local lake's folder, which the kernel frees when its process dies; a lease in object storage, taken over
/// once it expires. Dropping the claim frees a lock file; [`JobClaim::release`] also frees a lease at once.
pub struct JobClaim {
    held: Held,
}

enum Held {
    Local(#[allow(dead_code)] crate::load::WriterLock),
    Leased { lease: Lease, renewed: Instant },
}

/// Claims job `job` for `holder`: `None` while another worker holds it. `ttl` is the lease's time to live
/// on object storage.
pub async fn claim_job(
    lake: &Lake,
    job: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Option<JobClaim>> {
    let name: String = job
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if lake.local_dir().is_some() {
        return match crate::load::lock_lake(lake, &format!(".job-{name}.lock")) {
            Ok(lock) => Ok(lock.map(|l| JobClaim {
                held: Held::Local(l),
            })),
            Err(EngineError::Busy(_)) => Ok(None),
            Err(e) => Err(e),
        };
    }
    let lease = Lease::acquire(lake, &format!("job-{name}"), holder, ttl).await?;
    Ok(lease.ok().map(|lease| JobClaim {
        held: Held::Leased {
            lease,
            renewed: Instant::now(),
        },
    }))
}

impl JobClaim {
    /// Whether the job is still this worker's; call before each piece of work. A lease is renewed once a
    /// third of its time to live has passed; it is given up when another holder took it over, or when it
    /// could not be renewed and half its time has passed (leaving the rest for the work under way).
    pub async fn hold(&mut self) -> bool {
        let Held::Leased { lease, renewed } = &mut self.held else {
            return true;
        };
        if renewed.elapsed() < lease.ttl / 3 {
            return true;
        }
        match lease.renew().await {
            Ok(renewed_now) => {
                if renewed_now {
                    *renewed = Instant::now();
                }
                renewed_now
            }
            Err(e) => {
                tracing::warn!("{e}");
                renewed.elapsed() < lease.ttl / 2
            }
        }
    }

    /// Frees the job for another worker.
    pub async fn release(self) {
        if let Held::Leased { lease, .. } = self.held {
            lease.release().await;
        }
    }
}

/// The backbone a lake's live loads read, as recorded in `_shopstream/backbone.json` by the first server:
/// a lake's offsets belong to one backbone, so a server on another is refused until the record is
/// removed on purpose. Records `backbone` when there is none; returns the recorded one.
pub async fn claim_backbone(lake: &Lake, backbone: &str) -> Result<String> {
    let recorded = record_once(
        lake,
        &["backbone.json"],
        &serde_json::json!({ "backbone": backbone }),
    )
    .await?;
    Ok(recorded["backbone"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Writes `value` to `_shopstream/<path>` unless it exists (a conditional create: of two writers, one
/// wins); returns what the object holds, this value or the one recorded first.
pub async fn record_once(
    lake: &Lake,
    path: &[&str],
    value: &serde_json::Value,
) -> Result<serde_json::Value> {
    let (store, mut at) = lake.object_store()?;
    at = at.join("_shopstream");
    for part in path {
        at = at.join(*part);
    }
    let body = serde_json::to_vec(value).expect("json");
    match store
        .put_opts(
            &at,
            PutPayload::from(body),
            PutOptions::from(PutMode::Create),
        )
        .await
    {
        Ok(_) => return Ok(value.clone()),
        Err(object_store::Error::AlreadyExists { .. }) => {}
        Err(e) => return Err(failed(lake, e)),
    }
    let bytes = store
        .get(&at)
        .await
        .map_err(|e| failed(lake, e))?
        .bytes()
        .await
        .map_err(|e| failed(lake, e))?;
    serde_json::from_slice(&bytes).map_err(|e| failed(lake, e))
}
