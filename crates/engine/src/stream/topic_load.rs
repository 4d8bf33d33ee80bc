//! The continuous load: a dataset's topic of the log into its table and `dead_letters` (for orders also
//! `raw_orders`), exactly once.
//!
//! For each partition the loader reads the records after the last loaded offset, turns them into rows
//! (mapping and dead-letter rules as for files), writes each table's files and commits them with a Delta
//! application transaction `shopstream.topic.<topic>.<partition>` whose version is the next offset to load.
//! Offsets live only there, inside the same commit as the rows, so after a crash at any point each table
//! resumes exactly where its last commit ended: no lost and no doubled rows. The tables commit one after
//! the other; a crash between them leaves some tables one micro-batch ahead, and the next step brings the
//! others up to them before anything new is read. A failed step is retried with everything read again from
//! the lake ([`TopicLoader::run`]), which is also how a dataset's table evolved by a load meanwhile is seen.
//! On Kafka each partition's dedupe window of request keys is kept with the lake's state ([`dedupe`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use shopstream_ingest::Dataset;
use shopstream_ingest::MappingConfig;
use shopstream_ingest::batch::BATCH_ROWS;
use shopstream_ingest::sources::EnvelopeBatcher;
use shopstream_log::TopicLog;

use crate::error::{EngineError, Result};
use crate::lake::{Lake, Table};
use crate::load::{batch_for, row_tables};
use crate::sink::{TableSink, WriteOptions, commit_adds};
use crate::stream::dedupe;

/// Settings of a continuous load.
#[derive(Debug, Clone)]
pub struct TopicLoadConfig {
    /// The topic of order records.
    pub topic: String,
    /// At most this many records per partition per commit.
    pub max_records: usize,
    /// At most about this many bytes of records per partition per commit (the memory a step holds).
    pub max_bytes: usize,
    /// Pause between steps that found nothing new.
    pub idle_wait: Duration,
    /// The dataset the topic's records load into.
    pub dataset: Arc<Dataset>,
    /// Mapping for records whose fields are not the dataset's own (Online Retail ones for orders).
    pub mapping: Option<MappingConfig>,
    /// The shop's time zone (`[ingest] timezone`).
    pub timezone: chrono_tz::Tz,
    /// Parquet settings.
    pub write: WriteOptions,
}

impl TopicLoadConfig {
    /// Defaults for `topic`.
    pub fn new(topic: &str) -> TopicLoadConfig {
        TopicLoadConfig {
            topic: topic.to_string(),
            max_records: 200_000,
            max_bytes: 256 << 20,
            idle_wait: Duration::from_millis(200),
            dataset: Dataset::orders(),
            mapping: None,
            timezone: chrono_tz::Tz::UTC,
            write: WriteOptions::default(),
        }
    }
}

/// The Delta application id holding a partition's loaded offset. It names the backbone, so offsets of one
/// (the embedded log's) are never read as another's (a Kafka cluster's); the embedded log keeps the id it had
/// before there were two, so existing lakes stay exactly-once.
pub fn txn_app_id(backbone: &str, topic: &str, partition: u32) -> String {
    if backbone == "embedded" {
        format!("shopstream.topic.{topic}.{partition}")
    } else {
        format!("shopstream.{backbone}.topic.{topic}.{partition}")
    }
}

/// Figures of a running load, shared with `status` and `/metrics`.
#[derive(Debug, Default)]
pub struct LoadProgress {
    /// Records loaded (rows or dead letters) since start.
    pub records: AtomicU64,
    /// Of which dead-lettered.
    pub dead_letters: AtomicU64,
    /// Micro-batches committed.
    pub commits: AtomicU64,
    /// Per partition, the next offset to load into `orders` (compare with the log's end for the lag).
    pub loaded_offsets: std::sync::Mutex<Vec<u64>>,
}

/// Loads one topic; see the module documentation.
pub struct TopicLoader {
    lake: Lake,
    config: TopicLoadConfig,
    topic: Arc<dyn TopicLog>,
    /// The tables written, in commit order (see [`row_tables`]), with the dataset's table last.
    tables: Vec<(Table, DeltaTable)>,
    /// Per partition, per table (in `tables` order): next offset to load.
    committed: Vec<Vec<u64>>,
    /// The partitions this worker loads, as of the last step.
    assigned: Vec<u32>,
    /// Per partition, when its dedupe window was last kept in the lake ([`dedupe`]).
    kept: Vec<Option<Instant>>,
    progress: Arc<LoadProgress>,
}

/// The version of application transaction `app_id` in `table` (a load's next offset, a view's checkpoint).
pub(crate) async fn loaded_offset(
    table: &DeltaTable,
    kind: &Table,
    app_id: &str,
) -> Result<Option<u64>> {
    let snapshot = table.snapshot().map_err(EngineError::delta(kind.name()))?;
    let v = snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(EngineError::delta(kind.name()))?;
    Ok(v.map(|v| v.max(0) as u64))
}

/// Per partition, per table: the next offset to load, as the lake recorded it; a table without one starts
/// where the backbone says a new load starts ([`TopicLog::initial_offset`]).
async fn read_offsets(
    topic: &Arc<dyn TopicLog>,
    name: &str,
    tables: &[(Table, DeltaTable)],
) -> Result<Vec<Vec<u64>>> {
    let mut committed = Vec::new();
    for p in 0..topic.partition_count() {
        let app = txn_app_id(topic.backbone(), name, p);
        let mut offsets = Vec::with_capacity(tables.len());
        for (kind, table) in tables {
            offsets.push(loaded_offset(table, kind, &app).await?);
        }
        let initial = if offsets.iter().any(Option::is_none) {
            let topic = topic.clone();
            tokio::task::spawn_blocking(move || topic.initial_offset(p))
                .await
                .map_err(|e| EngineError::Internal(format!("log reader: {e}")))?
                .map_err(|e| EngineError::Internal(format!("reading the log: {e}")))?
        } else {
            0
        };
        committed.push(offsets.into_iter().map(|o| o.unwrap_or(initial)).collect());
    }
    Ok(committed)
}

impl TopicLoader {
    /// Opens the tables and reads every partition's loaded offsets from them; `topic` is the backbone's
    /// topic `config.topic` names ([`TopicLog`]: the embedded log's, or another backbone's).
    pub async fn open(
        lake: &Lake,
        topic: Arc<dyn TopicLog>,
        config: TopicLoadConfig,
    ) -> Result<TopicLoader> {
        let mut tables = Vec::new();
        for kind in row_tables(&config.dataset) {
            let table = lake.open_or_create(&kind).await?;
            tables.push((kind, table));
        }
        let committed = read_offsets(&topic, &config.topic, &tables).await?;
        let mut loader = TopicLoader {
            lake: lake.clone(),
            config,
            kept: vec![None; topic.partition_count() as usize],
            topic,
            tables,
            committed,
            assigned: Vec::new(),
            progress: Arc::new(LoadProgress::default()),
        };
        loader.restore_windows().await;
        loader.publish_offsets();
        Ok(loader)
    }

    /// The topic loaded.
    pub fn topic(&self) -> &str {
        &self.config.topic
    }

    /// Shared figures of this load.
    pub fn progress(&self) -> Arc<LoadProgress> {
        self.progress.clone()
    }

    /// Next offset to load into the dataset's table, per partition.
    pub fn loaded_offsets(&self) -> Vec<u64> {
        self.committed
            .iter()
            .map(|c| *c.last().expect("the dataset's table"))
            .collect()
    }

    fn publish_offsets(&self) {
        *self
            .progress
            .loaded_offsets
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = self.loaded_offsets();
    }

    /// Loads what is new in every partition this worker is assigned (one commit per table and partition
    /// that had records); returns how many records were loaded. When the assignment changed (another
    /// worker joined or left), the offsets are read again from the lake first: a partition taken over
    /// resumes where its last owner's commit ended.
    ///
    /// Cancel safety: dropping the future part way leaves uncommitted files only; the offsets are unchanged.
    pub async fn step(&mut self) -> Result<u64> {
        let assigned = self.topic.assigned();
        if assigned != self.assigned {
            tracing::info!(topic = %self.config.topic, ?assigned, "loading these partitions");
            self.reopen().await?;
            self.assigned = assigned;
        }
        let mut total = 0;
        for p in self.assigned.clone() {
            total += self.step_partition(p as usize).await?;
        }
        self.publish_offsets();
        Ok(total)
    }

    async fn step_partition(&mut self, p: usize) -> Result<u64> {
        let c = self.committed[p].clone();
        let from = *c.iter().min().expect("tables");
        let ahead = *c.iter().max().expect("tables");
        // Tables ahead after a crash between commits: bring the others up to them first, and only them.
        let limit = if ahead > from {
            (ahead - from) as usize
        } else {
            self.config.max_records
        };
        let fetched = self.read(p, from, limit).await?;
        let (records, to) = (fetched.records, fetched.next);
        if to <= from {
            return Ok(0);
        }
        let topic = &self.config.topic;
        let load_id = format!("{topic}/{p}@{from}-{to}");
        let now = chrono::Utc::now().timestamp_micros();
        let mut batcher = EnvelopeBatcher::new(
            self.config.mapping.clone(),
            self.config.dataset.clone(),
            &load_id,
            now,
        );
        batcher.set_timezone(self.config.timezone);
        let behind: Vec<usize> = (0..c.len()).filter(|&i| c[i] == from).collect();
        let mut sinks: HashMap<usize, TableSink> = behind
            .iter()
            .map(|&i| {
                let (kind, table) = &self.tables[i];
                let sink = TableSink::new(kind.clone(), table.clone(), &self.config.write);
                (i, sink)
            })
            .collect();
        let mut buffered = 0;
        for (n, r) in records.iter().enumerate() {
            batcher.push(&r.value, r.timestamp_ms, &|| {
                format!("log:{topic}/{p}@{}", r.offset)
            });
            buffered += 1;
            if buffered == BATCH_ROWS || n + 1 == records.len() {
                buffered = 0;
                let chunk = batcher.take();
                for (&i, sink) in sinks.iter_mut() {
                    sink.write(batch_for(&chunk, &self.tables[i].0)).await?;
                }
            }
        }
        let kept = self.keep_window(p, to).await;
        // With nothing read but skipped offsets (a retried request, a transaction's markers) the commits
        // move the offsets only.
        self.commit(p, sinks, to, load_id).await?;
        if kept {
            self.kept[p] = Some(Instant::now());
            if let Err(e) = dedupe::prune(&self.lake, self.topic.as_ref(), p as u32, to).await {
                tracing::warn!(topic = %self.config.topic, partition = p, "{e}");
            }
        }
        let counts = batcher.counts();
        self.progress
            .records
            .fetch_add(counts.read, Ordering::Relaxed);
        self.progress
            .dead_letters
            .fetch_add(counts.rejected, Ordering::Relaxed);
        self.progress.commits.fetch_add(1, Ordering::Relaxed);
        Ok(records.len() as u64)
    }

    /// Writes partition `p`'s dedupe window at `to` when it is due; true when written. A failure is logged:
    /// without a newer window a reader positioned anew re-reads the messages before its offset.
    async fn keep_window(&self, p: usize, to: u64) -> bool {
        if self.kept[p].is_some_and(|t| t.elapsed() < dedupe::KEEP_EVERY) {
            return false;
        }
        dedupe::keep(&self.lake, self.topic.as_ref(), p as u32, to)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(topic = %self.config.topic, partition = p, "{e}");
                false
            })
    }

    /// Gives each partition's reader the dedupe window the lake kept at or below its loaded offset (a
    /// failure is logged: the reader then re-reads the messages before its offset).
    async fn restore_windows(&mut self) {
        for (p, offsets) in self.committed.iter().enumerate() {
            let from = *offsets.iter().min().expect("tables");
            if let Err(e) = dedupe::restore(&self.lake, self.topic.as_ref(), p as u32, from).await {
                tracing::warn!(topic = %self.config.topic, partition = p, "{e}");
            }
        }
        self.kept.fill(None);
    }

    /// Up to `limit` records of partition `p` from `from`, read on a blocking thread.
    async fn read(&self, p: usize, from: u64, limit: usize) -> Result<shopstream_log::Fetched> {
        let topic = self.topic.clone();
        let max_bytes = self.config.max_bytes;
        tokio::task::spawn_blocking(move || topic.read(p as u32, from, limit, max_bytes))
            .await
            .map_err(|e| EngineError::Internal(format!("log reader: {e}")))?
            .map_err(|e| EngineError::Internal(format!("reading the log: {e}")))
    }

    /// Commits each table's files (in table order) with the partition's next offset `to` as its txn.
    async fn commit(
        &mut self,
        p: usize,
        mut sinks: HashMap<usize, TableSink>,
        to: u64,
        load_id: String,
    ) -> Result<()> {
        let app = txn_app_id(self.topic.backbone(), &self.config.topic, p as u32);
        let meta = HashMap::from([(
            "shopstream.load_id".to_string(),
            serde_json::Value::String(load_id),
        )]);
        let mut behind: Vec<usize> = sinks.keys().copied().collect();
        behind.sort_unstable();
        for i in behind {
            let sink = sinks.remove(&i).expect("a sink per table behind");
            let kind = self.tables[i].0.clone();
            let (mut table, adds) = sink.finish().await?;
            let txn = Transaction::new(app.clone(), to as i64);
            commit_adds(&kind, &table, adds, vec![txn], meta.clone()).await?;
            table
                .update_state()
                .await
                .map_err(EngineError::delta(kind.name()))?;
            self.tables[i].1 = table;
            self.committed[p][i] = to;
        }
        let topic = self.topic.clone();
        // Kafka's group offset follows the lake's, for lag tools; nothing resumes from it.
        tokio::task::spawn_blocking(move || topic.loaded(p as u32, to));
        Ok(())
    }

    /// Runs until `stop` is set, pausing when there is nothing new.
    ///
    /// A step that fails (the lake unreachable a moment, a commit that lost to another writer, the dataset's
    /// table evolved by a load meanwhile) is logged and retried after a pause that grows to 30 s, with the
    /// tables, the dataset and the loaded offsets read again from the lake: the records wait in the log.
    pub async fn run(mut self, stop: Arc<AtomicBool>) -> Result<()> {
        let mut failures = 0u32;
        while !stop.load(Ordering::Relaxed) {
            match self.step().await {
                Ok(0) => {
                    failures = 0;
                    tokio::time::sleep(self.config.idle_wait).await;
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(topic = %self.config.topic, "loading into the lake failed, retrying: {e}");
                    let pause = self.config.idle_wait * 2u32.saturating_pow(failures.min(8));
                    tokio::time::sleep(pause.min(Duration::from_secs(30))).await;
                    if let Err(e) = self.reopen().await {
                        tracing::warn!(topic = %self.config.topic, "reopening the tables: {e}");
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads the dataset, its tables and every partition's loaded offsets again from the lake.
    async fn reopen(&mut self) -> Result<()> {
        if !self.config.dataset.is_orders()
            && let Some(dataset) = self.lake.dataset(&self.config.dataset.name).await?
        {
            self.config.dataset = dataset;
        }
        let mut tables = Vec::new();
        for kind in row_tables(&self.config.dataset) {
            let table = self.lake.open_or_create(&kind).await?;
            tables.push((kind, table));
        }
        self.committed = read_offsets(&self.topic, &self.config.topic, &tables).await?;
        self.tables = tables;
        self.restore_windows().await;
        self.publish_offsets();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::txn_app_id;

    #[test]
    fn app_ids_name_the_backbone_and_keep_the_embedded_logs() {
        assert_eq!(
            txn_app_id("embedded", "orders", 1),
            "shopstream.topic.orders.1"
        );
        assert_eq!(
            txn_app_id("kafka-prod", "orders", 1),
            "shopstream.kafka-prod.topic.orders.1"
        );
    }
}
