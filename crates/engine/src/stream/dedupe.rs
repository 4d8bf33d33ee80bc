//! Dedupe windows kept with the lake's state. On Kafka a request retried to another worker is a second
//! message with the same key, which the topic's reader skips while the key is in its window of recent
//! request keys ([`TopicLog::dedupe_window`]). The load writes that window into the lake as it commits,
//! at most every [`KEEP_EVERY`] per partition, as `_shopstream/dedupe/<backbone>/<topic>/<partition>/<offset>.json`
//! (the window after reading up to `offset`), before the commit that loads up to it; once that commit is
//! in, older windows of the partition are removed. A load positioned anew (at start, or on taking a
//! partition over) gives the reader the newest window at or below the lake's offset
//! ([`TopicLog::restore_window`]), which reads on from there: its skips are the ones the previous reader
//! made, whatever the log still holds. A window written for a commit that then failed is never used below
//! its offset, and is removed with the others.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use shopstream_log::TopicLog;

use crate::error::{EngineError, Result};
use crate::lake::Lake;

/// How often a partition's window is written while it loads.
pub const KEEP_EVERY: Duration = Duration::from_secs(5);

/// A window as stored: the offset it was taken at and the keys, oldest first, in hex.
#[derive(Serialize, Deserialize)]
struct Stored {
    offset: u64,
    keys: Vec<String>,
}

fn folder(lake: &Lake, topic: &dyn TopicLog) -> Result<(crate::storage::Store, StorePath)> {
    let (store, root) = lake.object_store()?;
    let at = root
        .join("_shopstream")
        .join("dedupe")
        .join(topic.backbone())
        .join(topic.name());
    Ok((store, at))
}

fn failed(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("{what} a dedupe window: {e}"))
}

pub(crate) fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Writes the reader's window of partition `p` at `offset`, if the backbone keeps one; true when written.
pub async fn keep(lake: &Lake, topic: &dyn TopicLog, p: u32, offset: u64) -> Result<bool> {
    let Some(keys) = topic.dedupe_window(p, offset) else {
        return Ok(false);
    };
    let stored = Stored {
        offset,
        keys: keys.iter().map(|k| hex(k)).collect(),
    };
    let body = serde_json::to_vec(&stored).map_err(|e| failed("encoding", e))?;
    let (store, at) = folder(lake, topic)?;
    let path = at.join(p.to_string()).join(format!("{offset:020}.json"));
    store
        .put(&path, PutPayload::from(body))
        .await
        .map_err(|e| failed("writing", e))?;
    Ok(true)
}

/// The offsets of the windows stored for partition `p`, each with its object.
async fn stored(lake: &Lake, topic: &dyn TopicLog, p: u32) -> Result<BTreeMap<u64, StorePath>> {
    let (store, at) = folder(lake, topic)?;
    let listed: Vec<_> = store
        .list(Some(&at.join(p.to_string())))
        .try_collect()
        .await
        .map_err(|e| failed("listing", e))?;
    Ok(listed
        .into_iter()
        .filter_map(|m| {
            let offset = m.location.filename()?.strip_suffix(".json")?.parse().ok()?;
            Some((offset, m.location))
        })
        .collect())
}

/// Removes partition `p`'s windows below `offset` (the one a commit just made the lake's).
pub async fn prune(lake: &Lake, topic: &dyn TopicLog, p: u32, offset: u64) -> Result<()> {
    let (store, _) = folder(lake, topic)?;
    for (_, path) in stored(lake, topic, p).await?.range(..offset) {
        store
            .delete(path)
            .await
            .map_err(|e| failed("removing", e))?;
    }
    Ok(())
}

/// Gives the reader of partition `p` the newest window at or below `offset` (the lake's); false when
/// there is none.
pub async fn restore(lake: &Lake, topic: &dyn TopicLog, p: u32, offset: u64) -> Result<bool> {
    let windows = stored(lake, topic, p).await?;
    let Some((_, path)) = windows.range(..=offset).next_back() else {
        return Ok(false);
    };
    let (store, _) = folder(lake, topic)?;
    let bytes = match store.get(path).await {
        Ok(got) => got.bytes().await.map_err(|e| failed("reading", e))?,
        // Removed meanwhile by the load that owned the partition before: it committed a newer one.
        Err(object_store::Error::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(failed("reading", e)),
    };
    let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| failed("decoding", e))?;
    let keys = stored
        .keys
        .iter()
        .map(|k| unhex(k).ok_or_else(|| failed("decoding", format!("key {k}"))))
        .collect::<Result<Vec<_>>>()?;
    topic.restore_window(p, stored.offset, keys);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::{hex, unhex};

    #[test]
    fn keys_survive_hex() {
        for key in [&b""[..], b"k1", b"\x00\xff\x10 z"] {
            assert_eq!(unhex(&hex(key)).as_deref(), Some(key));
        }
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
