//! A view's output topic (`topic` in its definition): its final rows, also sent to a topic of the
//! backbone (the embedded log, or Kafka) for other systems to consume.
//!
//! Delivery is **at-least-once with a dedupe key**. Before checkpoint `n` is committed, its final rows
//! are written beside it as `<n>.out.arrow`; once the commit is in, they are appended to the topic, one
//! JSON object per row, keyed `<view>:<version>:<n>:<i>` (the checkpoint and the row's place in it), and
//! `published.json` records `n`. Appends hold up to 1,000 rows and 256 KiB: on the embedded log each row
//! is a record with its own key; on Kafka an append is one message, the rows as NDJSON, keyed by its
//! first row's key (the same message each time it is sent again). A failed send is retried at the next
//! checkpoint. On start the view sends every staged checkpoint after the recorded one
//! up to the one its table names, then deletes their files. A crash after the append and before the
//! record sends those rows again with the same keys: a consumer that keeps the keys it has seen (or a
//! compacted topic) sees each window once. Transactions with the checkpoint (exactly-once into Kafka)
//! are not offered: the loopback broker the tests run on has none.

use std::sync::Arc;

use arrow::array::RecordBatch;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use shopstream_log::{NewRecord, TopicLog};

use crate::error::{EngineError, Result};

/// Most rows in one append.
const APPEND_ROWS: usize = 1000;
/// Most bytes in one append (under Kafka's default message size of 1 MB).
const APPEND_BYTES: usize = 256 << 10;

/// The suffix of a checkpoint's staged final rows.
pub(super) const STAGED: &str = ".out.arrow";

/// What `published.json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Published {
    /// The last checkpoint whose rows are all in the topic.
    checkpoint: u64,
}

/// Sends a view's final rows to its topic; see the module documentation.
pub struct Publisher {
    topic: Arc<dyn TopicLog>,
    store: crate::storage::Store,
    /// The view's state folder of its version.
    dir: StorePath,
    /// `<view>:<version>`, the start of every key.
    prefix: String,
}

fn failed(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("a view's output topic: {what}: {e}"))
}

impl Publisher {
    /// A publisher of the view `name` at `version`, whose checkpoints are in `dir`.
    pub fn new(
        topic: Arc<dyn TopicLog>,
        store: crate::storage::Store,
        dir: StorePath,
        name: &str,
        version: &str,
    ) -> Publisher {
        Publisher {
            topic,
            store,
            dir,
            prefix: format!("{name}:{version}"),
        }
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        self.topic.name()
    }

    fn staged(&self, n: u64) -> StorePath {
        self.dir.clone().join(format!("{n:020}{STAGED}").as_str())
    }

    fn marker(&self) -> StorePath {
        self.dir.clone().join("published.json")
    }

    /// Writes checkpoint `n`'s final rows beside it, before its commit; with none, removes what an
    /// earlier attempt at checkpoint `n` (killed before its commit) staged, so it is never sent.
    pub async fn stage(&self, n: u64, rows: &[RecordBatch]) -> Result<()> {
        if rows.iter().all(|b| b.num_rows() == 0) {
            return match self.store.delete(&self.staged(n)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(failed("removing stale rows", e)),
            };
        }
        let body = super::job::write_batches(rows)?;
        self.store
            .put(&self.staged(n), PutPayload::from(body))
            .await
            .map_err(|e| failed("staging rows", e))?;
        Ok(())
    }

    /// Sends the staged rows of every checkpoint after the last one sent, up to `committed`.
    pub async fn publish(&self, committed: u64) -> Result<u64> {
        let done = match self.store.get(&self.marker()).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(|e| failed("reading", e))?;
                serde_json::from_slice::<Published>(&bytes)
                    .map_err(|e| failed("published.json", e))?
                    .checkpoint
            }
            Err(object_store::Error::NotFound { .. }) => 0,
            Err(e) => return Err(failed("reading published.json", e)),
        };
        let mut pending: Vec<(u64, StorePath)> = self
            .list_staged()
            .await?
            .into_iter()
            .filter(|(n, _)| *n > done && *n <= committed)
            .collect();
        pending.sort();
        let mut sent = 0;
        for (n, path) in &pending {
            let bytes = self
                .store
                .get(path)
                .await
                .map_err(|e| failed("reading", e))?;
            let bytes = bytes.bytes().await.map_err(|e| failed("reading", e))?;
            sent += self.send(*n, &super::job::read_batches(&bytes)?).await?;
        }
        if let Some((last, _)) = pending.last() {
            let body = serde_json::to_vec(&Published { checkpoint: *last }).expect("serializes");
            self.store
                .put(&self.marker(), PutPayload::from(body))
                .await
                .map_err(|e| failed("writing published.json", e))?;
        }
        for (_, path) in pending {
            let _ = self.store.delete(&path).await;
        }
        Ok(sent)
    }

    /// The staged files: `(checkpoint, path)`.
    async fn list_staged(&self) -> Result<Vec<(u64, StorePath)>> {
        use futures::StreamExt;
        let listed = self
            .store
            .list(Some(&self.dir))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| failed("listing", e))?;
        Ok(listed
            .into_iter()
            .filter_map(|m| {
                let n = m.location.filename()?.strip_suffix(STAGED)?.parse().ok()?;
                Some((n, m.location))
            })
            .collect())
    }

    /// Appends checkpoint `n`'s rows to the topic, each keyed by its place, in appends of at most
    /// [`APPEND_ROWS`] rows and [`APPEND_BYTES`] bytes (on Kafka an append is one message: NDJSON, keyed
    /// by its first row's key).
    async fn send(&self, n: u64, rows: &[RecordBatch]) -> Result<u64> {
        let mut records = Vec::new();
        for object in json_objects(rows)? {
            let key = format!("{}:{n}:{}", self.prefix, records.len());
            records.push(NewRecord {
                timestamp_ms: chrono::Utc::now().timestamp_millis(),
                key: Some(key.into_bytes()),
                value: object.into_bytes(),
            });
        }
        let count = records.len() as u64;
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut chunk: Vec<NewRecord> = Vec::new();
            let mut bytes = 0;
            let mut records = records.into_iter().peekable();
            while let Some(r) = records.next() {
                bytes += r.value.len() + 1;
                chunk.push(r);
                let full = chunk.len() >= APPEND_ROWS
                    || records
                        .peek()
                        .is_some_and(|next| bytes + next.value.len() > APPEND_BYTES);
                if full || records.peek().is_none() {
                    let p = topic.partition_for_key(chunk[0].key.as_deref().unwrap_or_default());
                    topic
                        .append(p, &chunk)
                        .map_err(|e| failed(&format!("appending to `{}`", topic.name()), e))?;
                    chunk.clear();
                    bytes = 0;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| failed("appending", e))??;
        Ok(count)
    }
}

/// Each row of `batches` as a JSON object (timestamps as ISO text).
fn json_objects(batches: &[RecordBatch]) -> Result<Vec<String>> {
    let mut buf = Vec::new();
    let mut writer = arrow::json::LineDelimitedWriter::new(&mut buf);
    for b in batches {
        writer.write(b)?;
    }
    writer.finish()?;
    drop(writer);
    let text = String::from_utf8(buf).map_err(|e| failed("JSON", e))?;
    Ok(text.lines().map(str::to_owned).collect())
}
