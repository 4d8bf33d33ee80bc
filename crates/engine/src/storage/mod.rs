//! Where the lake's bytes live: a local folder, or S3-compatible object storage (`s3://bucket/prefix`)
//! through delta-rs' S3 support.
//!
//! Settings come from `[lake.storage]` (delta-rs / object_store keys: `aws_endpoint`, `aws_region`,
//! `aws_access_key_id`, `aws_secret_access_key`, `aws_allow_http`, …) and the standard `AWS_*` environment
//! variables, which delta-rs reads itself. Delta commits on S3 are safe only if a second create of the same
//! commit file fails: delta-rs writes each version with a conditional put (`If-None-Match: *`), no DynamoDB.
//! So a store is probed before anything is written to it (two creates of one object: the second must fail),
//! and settings that make commits unsafe (`AWS_S3_ALLOW_UNSAFE_RENAME`, a locking provider delta-rs no
//! longer honours) are refused with the reason.

pub mod loopback;

use std::collections::{BTreeMap, HashMap};
use std::sync::Once;

use deltalake::logstore::ObjectStoreRef;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, path::Path as StorePath,
};
use url::Url;

use crate::error::{EngineError, Result};

/// An object store of the lake (local folder or S3).
pub type Store = ObjectStoreRef;

/// Settings delta-rs accepts that make commits unsafe on S3.
const UNSAFE: [&str; 2] = ["aws_s3_allow_unsafe_rename", "aws_s3_locking_provider"];

/// Registers delta-rs' handlers for `s3://` and `s3a://` (once per process).
fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| deltalake::aws::register_handlers(None));
}

/// The storage options of a lake at `root`: `[lake.storage]`, keys lower-cased. Refuses unsafe settings.
pub fn options(
    root: &Url,
    configured: &BTreeMap<String, String>,
) -> Result<HashMap<String, String>> {
    let refuse = |key: &str, from: &str| EngineError::Location {
        location: root.to_string(),
        reason: format!(
            "{key} ({from}) is refused: commits on S3 rely on conditional put, and this setting makes \
             concurrent writers able to overwrite each other's commits"
        ),
    };
    let mut out = HashMap::new();
    for (k, v) in configured {
        let key = k.to_ascii_lowercase();
        if UNSAFE.contains(&key.as_str()) && is_set(v) {
            return Err(refuse(&key, "[lake.storage]"));
        }
        out.insert(key, v.clone());
    }
    if is_remote(root) {
        for key in UNSAFE {
            if std::env::var(key.to_ascii_uppercase()).is_ok_and(|v| is_set(&v)) {
                return Err(refuse(&key.to_ascii_uppercase(), "environment"));
            }
        }
        register();
    }
    Ok(out)
}

fn is_set(v: &str) -> bool {
    !matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "" | "false" | "0" | "no"
    )
}

/// Whether the lake is in object storage (not a local folder).
pub fn is_remote(root: &Url) -> bool {
    root.scheme() != "file"
}

/// The object store holding `root`, and the path of `root` in it (a local lake: the folder itself).
pub(crate) fn store(
    root: &Url,
    options: &HashMap<String, String>,
) -> Result<(ObjectStoreRef, StorePath)> {
    let failed = |reason: String| EngineError::Location {
        location: root.to_string(),
        reason,
    };
    if !is_remote(root) {
        let dir = root
            .to_file_path()
            .map_err(|()| failed("not a local folder".into()))?;
        std::fs::create_dir_all(&dir).map_err(|e| failed(e.to_string()))?;
        let local = object_store::local::LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| failed(e.to_string()))?;
        return Ok((std::sync::Arc::new(local), StorePath::default()));
    }
    let store = deltalake::logstore::store_for(root, options.clone()).map_err(|e| {
        EngineError::Location {
            location: root.to_string(),
            reason: e.to_string(),
        }
    })?;
    let prefix = StorePath::from_url_path(root.path()).map_err(|e| EngineError::Location {
        location: root.to_string(),
        reason: e.to_string(),
    })?;
    Ok((store, prefix))
}

/// Fails unless the store refuses a second create of one object (what Delta commits rely on).
pub async fn probe_conditional_put(root: &Url, options: &HashMap<String, String>) -> Result<()> {
    let (store, prefix) = store(root, options)?;
    let path = prefix
        .join("_shopstream")
        .join(format!("probe-{}", uuid::Uuid::new_v4()).as_str());
    let create = || PutOptions::from(PutMode::Create);
    let failed = |reason: String| EngineError::Location {
        location: root.to_string(),
        reason,
    };
    store
        .put_opts(&path, PutPayload::from_static(b"1"), create())
        .await
        .map_err(|e| failed(format!("writing a probe object: {e}")))?;
    let second = store
        .put_opts(&path, PutPayload::from_static(b"2"), create())
        .await;
    let _ = store.delete(&path).await;
    match second {
        Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
        Ok(_) => Err(failed(
            "the store does not honour conditional put (a second create of one object succeeded): \
             two writers could both commit the same Delta version"
                .into(),
        )),
        Err(e) => Err(failed(format!(
            "the store does not support conditional put, which Delta commits need: {e}"
        ))),
    }
}

/// The names of the folders directly under `root` that hold a Delta table (`<name>/_delta_log/`).
pub async fn table_folders(root: &Url, options: &HashMap<String, String>) -> Result<Vec<String>> {
    let (store, prefix) = store(root, options)?;
    let failed = |e: object_store::Error| EngineError::Location {
        location: root.to_string(),
        reason: e.to_string(),
    };
    let listing = store
        .list_with_delimiter(Some(&prefix))
        .await
        .map_err(failed)?;
    let mut names = Vec::new();
    for folder in listing.common_prefixes {
        let Some(name) = folder.filename().map(str::to_string) else {
            continue;
        };
        let log = store
            .list_with_delimiter(Some(&folder.clone().join("_delta_log")))
            .await
            .map_err(failed)?;
        if !log.objects.is_empty() {
            names.push(name);
        }
    }
    Ok(names)
}
