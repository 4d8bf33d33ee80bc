//! A view running over its source dataset's topic (or another view's table, [`TableFeed`]), exactly
//! once into the lake.
//!
//! A new view first backfills: it reads the dataset's rows already in the lake (one snapshot of its table,
//! in event-time order) and takes the topic offsets that snapshot's load transactions record, so it
//! continues from the log exactly where the lake's rows end. Then each step reads every source partition
//! from its offset, turns the records into the dataset's rows as the load does, and feeds them to the
//! [`ViewRunner`].
//!
//! A step with final or late rows checkpoints; a step that only read rows checkpoints when the last
//! checkpoint is a second old (or ten times as old as it took to write: it copies the whole state).
//! A checkpoint `n` is the runner's state, its source offsets and watermark, written as Arrow IPC to
//! `<lake>/<view>/_state/<version>/<n>.arrow` (a `_` folder that orphan cleanup leaves alone), with the
//! late rows of the step beside it (`<n>.late.arrow`). Then the final rows of the step are committed to
//! the view's table with the Delta transaction `shopstream.view.<name>.<version>` = `n`, and the late
//! rows (when there are any) to `late_rows` with the same transaction. On start the view resumes from the checkpoint its
//! table's transaction names: a crash before that commit redoes the step from the previous checkpoint
//! (nothing of it was committed), a crash between the two commits brings `late_rows` up from the file.
//! So no window is lost or doubled, whatever is killed when. Checkpoints older than the previous one are
//! removed. The state's version is a hash of the view's SQL and settings, its output columns and (over
//! another view) that view's: changing them starts a new state, and removes the older versions' states
//! (checkpoints, late and staged rows). A view with a `topic` also sends its
//! final rows there ([`super::publish`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use shopstream_ingest::sources::EnvelopeBatcher;
use shopstream_ingest::{Dataset, MappingConfig};
use shopstream_log::TopicLog;

use super::plan::ViewPlan;
use super::publish::Publisher;
use super::table_source::{FeedRead, TableFeed};
use super::{Output, RunnerMeta, ViewOptions, ViewRunner};
use crate::error::{EngineError, Result};
use crate::lake::{Lake, Table};
use crate::sink::{TableSink, WriteOptions, commit_files};
use crate::stream::dedupe::{hex, unhex};
use crate::stream::topic_load::{loaded_offset, txn_app_id};

/// Memory a backfill's sort may take before it spills to disk.
const BACKFILL_MEMORY: usize = 512 << 20;

/// The source partition number the backfill's rows are fed as.
const BACKFILL: u32 = u32::MAX;

/// A view as defined: its name, SQL and how it treats time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ViewDef {
    /// Its name: the table of its final rows, `<name>_live` for its open ones.
    pub name: String,
    /// Its SQL.
    pub sql: String,
    /// Allowed delay, seconds.
    #[serde(default = "default_delay")]
    pub delay_s: u64,
    /// Allowed lateness, seconds.
    #[serde(default)]
    pub lateness_s: u64,
    /// Idle timeout of a source partition, seconds.
    #[serde(default = "default_idle")]
    pub idle_timeout_s: u64,
    /// Time to live of an updating aggregate's key, seconds.
    #[serde(default = "default_ttl")]
    pub ttl_s: u64,
    /// A topic of the backbone that also gets the final rows ([`super::publish`]); not part of the
    /// version (setting it does not start the state over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

fn default_delay() -> u64 {
    30
}
fn default_idle() -> u64 {
    60
}
fn default_ttl() -> u64 {
    86_400
}

impl ViewDef {
    /// A view with the default settings.
    pub fn new(name: &str, sql: &str) -> ViewDef {
        ViewDef {
            name: name.into(),
            sql: sql.into(),
            delay_s: default_delay(),
            lateness_s: 0,
            idle_timeout_s: default_idle(),
            ttl_s: default_ttl(),
            topic: None,
        }
    }

    /// A short hash of the SQL and settings: a new one starts the view's state over.
    pub fn version(&self) -> String {
        let text = serde_json::to_string(&ViewDef {
            topic: None,
            ..self.clone()
        })
        .expect("a view serializes");
        format!("{:016x}", fnv(&text))
    }

    /// Its settings for the runner, in `timezone`.
    pub fn options(&self, timezone: chrono_tz::Tz) -> ViewOptions {
        ViewOptions {
            delay: Duration::from_secs(self.delay_s),
            lateness: Duration::from_secs(self.lateness_s),
            idle_timeout: Duration::from_secs(self.idle_timeout_s),
            ttl: Duration::from_secs(self.ttl_s),
            timezone,
        }
    }
}

/// What a view reads: the source dataset's topic and how its records become rows.
#[derive(Clone)]
pub struct ViewSource {
    /// The topic.
    pub topic: Arc<dyn TopicLog>,
    /// The dataset whose rows the view reads.
    pub dataset: Arc<Dataset>,
    /// The mapping of the topic's records, as the load uses it.
    pub mapping: Option<MappingConfig>,
    /// The shop's time zone.
    pub timezone: chrono_tz::Tz,
}

/// Where a view's rows come from: a dataset's topic, or another view's table ([`TableFeed`]).
pub enum ViewInput {
    /// The topic of the dataset the view reads.
    Log(Box<ViewSource>),
    /// The view of this name, in the shop's time zone.
    View {
        /// The source view.
        name: String,
        /// The shop's time zone.
        timezone: chrono_tz::Tz,
    },
}

/// A view's input, opened.
enum Input {
    Log(ViewSource),
    View(TableFeed),
}

/// What a checkpoint file's metadata holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CheckpointMeta {
    runner: RunnerMeta,
    /// Next offset per source partition.
    offsets: Vec<u64>,
    /// Per source partition, the reader's dedupe window at that offset (Kafka: keys of recent requests,
    /// hex), so a resumed view skips the same retried requests as the lake's load.
    #[serde(default)]
    windows: Vec<Option<Vec<String>>>,
}

const META_KEY: &str = "shopstream.view.checkpoint";

/// A running view; see the module documentation.
pub struct ViewJob {
    lake: Lake,
    def: ViewDef,
    input: Input,
    /// The version of its state: the definition's, and the source view's when it reads one.
    version: String,
    runner: ViewRunner,
    output: (Table, DeltaTable),
    late: (Table, DeltaTable),
    offsets: Vec<u64>,
    /// The last checkpoint committed.
    sequence: u64,
    pending: Output,
    /// The final rows the last checkpoint committed (for a change stream).
    emitted: Vec<RecordBatch>,
    write: WriteOptions,
    app: String,
    /// Reads already started for the next step, from these offsets (while catching up).
    prefetch: Option<(Vec<u64>, Vec<Reading>)>,
    /// The output topic's, when the view has one.
    publisher: Option<Publisher>,
    /// Per source partition, the reader's dedupe window after its last read, with the offset it is at.
    windows: Vec<Option<(u64, Vec<Vec<u8>>)>>,
    /// When the last checkpoint was written, and how long it took.
    checkpointed: std::time::Instant,
    checkpoint_took: Duration,
    /// The shop's time zone.
    timezone: chrono_tz::Tz,
    /// The next checkpoint replaces the view's rows (it started over).
    replace_rows: bool,
}

/// A view that only read rows checkpoints this often (at least).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// A partition's read: how many records, the offset after them, their rows and the reader's dedupe
/// window there (`None`: nothing new).
type Fetched = Option<(u64, u64, RecordBatch, Option<Vec<Vec<u8>>>)>;

/// A partition's read under way.
type Reading = tokio::task::JoinHandle<Result<Fetched>>;

fn failed(view: &str, what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::View {
        view: view.into(),
        reason: format!("{what}: {e}"),
    }
}

impl ViewJob {
    /// Plans `def` over `source`, opens its tables and resumes from its last checkpoint, or backfills a new
    /// view from the dataset's rows in the lake.
    pub async fn open(
        lake: &Lake,
        def: ViewDef,
        source: ViewSource,
        write: WriteOptions,
    ) -> Result<ViewJob> {
        Self::open_with(lake, def, ViewInput::Log(Box::new(source)), write, None).await
    }

    /// As [`ViewJob::open`], with the view's output topic (`def.topic`, opened on the backbone).
    pub async fn open_with(
        lake: &Lake,
        def: ViewDef,
        input: ViewInput,
        write: WriteOptions,
        topic: Option<Arc<dyn TopicLog>>,
    ) -> Result<ViewJob> {
        let (input, timezone, version) = open_input(lake, &def, input).await?;
        let (source_name, table_schema) = match &input {
            Input::Log(source) => (
                source.dataset.name.clone(),
                Table::of_dataset(&source.dataset).schema(),
            ),
            Input::View(feed) => (feed.kind().name().to_string(), feed.kind().schema()),
        };
        let plan = ViewPlan::new(&def.name, &def.sql, move |n| {
            (n == source_name).then(|| table_schema.clone())
        })
        .await?;
        let output_kind = Table::of_view(&def.name, plan.output_schema.clone());
        let output = (
            output_kind.clone(),
            lake.open_or_replace(&output_kind).await?,
        );
        let late_kind = Table::late_rows();
        let late = (late_kind.clone(), lake.open_or_create(&late_kind).await?);
        // The columns it writes are part of its version: the same SQL over a source whose columns
        // changed (`SELECT *`, a wider type) starts over into a table of its new columns.
        let version = format!(
            "{version}.{:08x}",
            fnv(&format!("{:?}", plan.output_schema.fields())) as u32
        );
        let runner = ViewRunner::new(plan, def.options(timezone))?;
        let app = format!("shopstream.view.{}.{}", def.name, version);
        let mut job = ViewJob {
            lake: lake.clone(),
            offsets: Vec::new(),
            sequence: 0,
            pending: Output::default(),
            emitted: Vec::new(),
            write,
            app,
            prefetch: None,
            publisher: None,
            windows: Vec::new(),
            checkpointed: std::time::Instant::now(),
            checkpoint_took: Duration::ZERO,
            timezone,
            replace_rows: false,
            def,
            input,
            version,
            runner,
            output,
            late,
        };
        if let Some(topic) = topic {
            let (store, dir) = job.state_dir()?;
            let version = job.version.clone();
            job.publisher = Some(Publisher::new(topic, store, dir, &job.def.name, &version));
        }
        match loaded_offset(&job.output.1, &job.output.0, &job.app).await? {
            Some(n) if job.has_checkpoint(n).await? => job.resume(n).await?,
            Some(n) => {
                // Dropped (state removed, table kept) and made again: its rows are rebuilt, numbered on.
                tracing::info!(view = %job.def.name, "checkpoint {n} is gone (the view was dropped): it starts over");
                job.sequence = n;
                job.backfill().await?
            }
            None => job.backfill().await?,
        }
        Ok(job)
    }

    async fn has_checkpoint(&self, n: u64) -> Result<bool> {
        let (store, dir) = self.state_dir()?;
        match store
            .head(&dir.join(format!("{n:020}.arrow").as_str()))
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(failed(&self.def.name, &format!("checkpoint {n}"), e)),
        }
    }

    /// The runner (its watermark, counters, state size, live rows).
    pub fn runner(&mut self) -> &mut ViewRunner {
        &mut self.runner
    }

    /// Ends a bounded replay: every window is emitted and committed.
    pub async fn finish(&mut self) -> Result<()> {
        let out = self.runner.close().await?;
        self.take(out);
        self.checkpoint().await
    }

    /// The final rows committed since the last call (taken at least every few seconds by `serve`).
    pub fn take_emitted(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.emitted)
    }

    /// Records of the source's log not read yet.
    pub async fn lag(&self) -> u64 {
        let topic = match &self.input {
            Input::Log(source) => source.topic.clone(),
            Input::View(feed) => {
                let next = feed.latest().await.map_or(0, |v| v + 1);
                return next.saturating_sub(self.offsets.first().copied().unwrap_or(0));
            }
        };
        // Asked of the backbone on a blocking thread (on Kafka it is a request to the cluster).
        let offsets = self.offsets.clone();
        tokio::task::spawn_blocking(move || {
            (0..offsets.len() as u32)
                .map(|p| {
                    topic
                        .end_offset(p)
                        .unwrap_or(0)
                        .saturating_sub(offsets[p as usize])
                })
                .sum()
        })
        .await
        .unwrap_or(0)
    }

    /// The definition.
    pub fn def(&self) -> &ViewDef {
        &self.def
    }

    fn state_dir(&self) -> Result<(crate::storage::Store, StorePath)> {
        let (store, root) = self.lake.object_store()?;
        Ok((
            store,
            root.join(self.def.name.as_str())
                .join("_state")
                .join(self.version.as_str()),
        ))
    }

    /// Resumes from checkpoint `n` (the one the view's table names), bringing `late_rows` up to it.
    async fn resume(&mut self, n: u64) -> Result<()> {
        let (store, dir) = self.state_dir()?;
        let bytes = store
            .get(&dir.clone().join(format!("{n:020}.arrow").as_str()))
            .await
            .map_err(|e| failed(&self.def.name, &format!("reading checkpoint {n}"), e))?
            .bytes()
            .await
            .map_err(|e| failed(&self.def.name, "reading a checkpoint", e))?;
        let (meta, state) =
            read_checkpoint(&bytes).map_err(|e| failed(&self.def.name, "a checkpoint", e))?;
        self.runner.restore(state.as_ref(), meta.runner)?;
        self.runner.expect_partitions(0..meta.offsets.len() as u32);
        if let Input::Log(source) = &self.input {
            self.windows = vec![None; meta.offsets.len()];
            for (p, keys) in meta.windows.into_iter().enumerate() {
                if let Some(keys) =
                    keys.and_then(|k| k.iter().map(|k| unhex(k)).collect::<Option<Vec<_>>>())
                {
                    source
                        .topic
                        .restore_window(p as u32, meta.offsets[p], keys.clone());
                    // Kept for the next checkpoint too, should the partition stay silent until then.
                    self.windows[p] = Some((meta.offsets[p], keys));
                }
            }
        }
        self.offsets = meta.offsets;
        self.sequence = n;
        let late_n = loaded_offset(&self.late.1, &self.late.0, &self.app).await?;
        if late_n.is_none_or(|l| l < n) {
            let late = match store
                .get(&dir.clone().join(format!("{n:020}.late.arrow").as_str()))
                .await
            {
                Ok(got) => read_batches(
                    &got.bytes()
                        .await
                        .map_err(|e| failed(&self.def.name, "late rows", e))?,
                )?,
                Err(object_store::Error::NotFound { .. }) => Vec::new(),
                Err(e) => return Err(failed(&self.def.name, "late rows", e)),
            };
            let kind = self.late.0.clone();
            self.late.1 = self.commit(&kind, self.late.1.clone(), &late, n).await?;
        }
        self.publish().await
    }

    /// Sends the final rows of the committed checkpoints not sent yet to the output topic; a failure is
    /// logged, and what was not sent is sent at the next checkpoint (the view goes on meanwhile).
    async fn publish(&self) -> Result<()> {
        if let Some(p) = &self.publisher
            && let Err(e) = p.publish(self.sequence).await
        {
            let topic = p.topic();
            tracing::warn!(view = %self.def.name, "sending to topic `{topic}` (retried at the next checkpoint): {e}");
        }
        Ok(())
    }

    /// Removes what other versions of the view left under `_state` (checkpoints, late and staged rows): their
    /// rows are gone from the table, so none of it is resumed or sent any more.
    async fn remove_other_versions(&self) -> Result<()> {
        let (store, root) = self.lake.object_store()?;
        let states = root.join(self.def.name.as_str()).join("_state");
        let name = &self.def.name;
        let listed: Vec<_> = store
            .list(Some(&states))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| failed(name, "listing old states", e))?;
        for meta in listed {
            let version = meta
                .location
                .prefix_match(&states)
                .and_then(|mut parts| parts.next());
            if version.is_none_or(|v| v.as_ref() == self.version) {
                continue;
            }
            match store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(failed(name, "removing an old state", e)),
            }
        }
        Ok(())
    }

    /// A new view (or a new version of one): the rows an older version left in its table are deleted, then
    /// the dataset's rows in the lake are fed, then the log from where they end.
    async fn backfill(&mut self) -> Result<()> {
        let kind = self.output.0.clone();
        let (table, _) = self
            .output
            .1
            .clone()
            .delete()
            .await
            .map_err(EngineError::delta(kind.name()))?;
        self.output.1 = table;
        self.remove_other_versions().await?;
        let source = match &self.input {
            Input::Log(source) => source.clone(),
            Input::View(_) => return self.backfill_view().await,
        };
        let kind = Table::of_dataset(&source.dataset);
        let topic = source.topic.clone();
        let mut offsets = Vec::new();
        let table = self.lake.open(&kind).await?;
        for p in 0..topic.partition_count() {
            let app = txn_app_id(topic.backbone(), topic.name(), p);
            let recorded = match &table {
                Some(t) => loaded_offset(t, &kind, &app).await?,
                None => None,
            };
            offsets.push(match recorded {
                Some(o) => o,
                None => topic
                    .initial_offset(p)
                    .map_err(|e| failed(&self.def.name, "the log", e))?,
            });
        }
        // The reader skips the retried requests the load skipped: the lake's window at its offset.
        for (p, offset) in offsets.iter().enumerate() {
            crate::stream::dedupe::restore(&self.lake, topic.as_ref(), p as u32, *offset).await?;
        }
        self.offsets = offsets;
        if let Some(table) = table {
            self.feed_snapshot(&kind, &table).await?;
        }
        self.runner.forget_partition(BACKFILL);
        self.runner.expect_partitions(0..topic.partition_count());
        self.checkpoint().await
    }

    /// Feeds a snapshot of the dataset's table, in event-time order when the view has an event time.
    async fn feed_snapshot(&mut self, kind: &Table, table: &DeltaTable) -> Result<()> {
        // Sorting a large table in event-time order spills to disk beyond this memory.
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_limit(BACKFILL_MEMORY, 1.0)
            .build_arc()?;
        let ctx = datafusion::prelude::SessionContext::new_with_config_rt(
            datafusion::prelude::SessionConfig::new(),
            runtime,
        );
        table
            .update_datafusion_session(&ctx.state())
            .map_err(EngineError::delta(kind.name()))?;
        ctx.register_table(
            "backfill",
            table.table_provider().await.map_err(EngineError::Sql)?,
        )?;
        let order = match &self.runner.plan().time_column {
            Some(t) => format!(" ORDER BY \"{t}\""),
            None => String::new(),
        };
        let mut stream = ctx
            .sql(&format!("SELECT * FROM backfill{order}"))
            .await?
            .execute_stream()
            .await?;
        let schema = kind.schema();
        while let Some(batch) = stream.next().await {
            let batch = conform(&batch?, &schema)?;
            let out = self.runner.push(BACKFILL, &batch).await?;
            self.take(out);
        }
        Ok(())
    }

    fn take(&mut self, out: Output) {
        self.pending.rows.extend(out.rows);
        self.pending.late.extend(out.late);
    }

    /// Reads what is new in every source partition and feeds it; checkpoints when anything was read or
    /// became final. Returns the records read.
    pub async fn step(&mut self, max_records: usize) -> Result<u64> {
        // A hopping window fed window by window takes each row once per window: fewer rows per step.
        let plan = self.runner.plan();
        let per_event = match plan.slices {
            Some(_) => 1,
            None => plan.window.windows_per_event(),
        };
        let max_records = (max_records / per_event).max(1);
        // Each partition is read and its records made rows on a thread of its own (most of a step's
        // work). While a partition returns full reads (catching up), the next step's reads start before
        // this step's rows are fed to the runner and checkpointed.
        let fetched = match &self.input {
            Input::Log(_) => self.read_log(max_records).await?,
            Input::View(feed) => match feed.read(self.offsets[0], 100, max_records).await? {
                Some(FeedRead::Rows(rows, next)) => {
                    let rows = arrow::compute::concat_batches(&feed.kind().schema(), &rows)?;
                    vec![Some((rows.num_rows() as u64, next, rows, None))]
                }
                Some(FeedRead::Restart(why)) => {
                    self.start_over(&why).await?;
                    return Ok(1);
                }
                None => vec![None],
            },
        };
        self.windows.resize(self.offsets.len(), None);
        let mut read = 0;
        for (p, f) in fetched.into_iter().enumerate() {
            let Some((records, next, rows, window)) = f else {
                continue;
            };
            self.windows[p] = window.map(|keys| (next, keys));
            read += records.max(1);
            let out = self.runner.push(p as u32, &rows).await?;
            self.take(out);
            self.offsets[p] = next;
        }
        let out = self.runner.advance().await?;
        self.take(out);
        // Final and late rows are committed at once; what was only read is checkpointed every second,
        // or less often when a checkpoint takes long (it copies the whole state): a crash re-reads it.
        let every = CHECKPOINT_EVERY.max(self.checkpoint_took * 10);
        let due = read > 0 && self.checkpointed.elapsed() >= every;
        if due || !self.pending.rows.is_empty() || !self.pending.late.is_empty() {
            self.checkpoint().await?;
        }
        Ok(read)
    }

    /// A view over a view that cannot read on (its source was replaced, or it fell behind a cleanup):
    /// its state starts over from the source's rows now, and the next checkpoint's commit replaces the
    /// view's rows with the new ones (a crash before it resumes from the last checkpoint, as before).
    async fn start_over(&mut self, why: &str) -> Result<()> {
        tracing::warn!(view = %self.def.name, "{why}: starting over from its source's rows now");
        let Input::View(feed) = &self.input else {
            return Err(failed(
                &self.def.name,
                "starting over",
                "not a view over a view",
            ));
        };
        let source = feed.kind().name().to_string();
        let feed = TableFeed::open(&self.lake, &source).await?.ok_or_else(|| {
            failed(
                &self.def.name,
                "its source",
                format!("view `{source}` has no table"),
            )
        })?;
        let schema = feed.kind().schema();
        let plan = ViewPlan::new(&self.def.name, &self.def.sql, move |n| {
            (n == source).then(|| schema.clone())
        })
        .await?;
        if plan.output_schema.fields() != self.runner.plan().output_schema.fields() {
            return Err(failed(
                &self.def.name,
                "its source's columns changed",
                "create the view again (shopstream view create) to give it its new columns",
            ));
        }
        self.runner = ViewRunner::new(plan, self.def.options(self.timezone))?;
        self.input = Input::View(feed);
        self.pending = Output::default();
        self.emitted.clear();
        self.replace_rows = true;
        self.backfill_view().await
    }

    /// Feeds the source view's rows at its latest version, then goes on from its commits after it.
    async fn backfill_view(&mut self) -> Result<()> {
        let Input::View(feed) = &self.input else {
            return Ok(());
        };
        let (kind, table) = (feed.kind().clone(), feed.table().await?);
        self.offsets = vec![table.version().unwrap_or(0) + 1];
        self.feed_snapshot(&kind, &table).await?;
        self.runner.forget_partition(BACKFILL);
        self.runner.expect_partitions(0..1);
        self.checkpoint().await
    }

    /// Reads every partition of the source's log; see [`ViewJob::step`].
    async fn read_log(&mut self, max_records: usize) -> Result<Vec<Fetched>> {
        let reads = match self.prefetch.take() {
            Some((from, reads)) if from == self.offsets => reads,
            _ => self.start_reads(&self.offsets.clone(), max_records),
        };
        let mut fetched = Vec::with_capacity(reads.len());
        for r in reads {
            fetched.push(
                r.await
                    .map_err(|e| EngineError::Internal(format!("log reader: {e}")))??,
            );
        }
        let next: Vec<u64> = fetched
            .iter()
            .zip(&self.offsets)
            .map(|(f, &at)| f.as_ref().map_or(at, |f| f.1))
            .collect();
        if fetched
            .iter()
            .any(|f| f.as_ref().is_some_and(|f| f.0 >= max_records as u64))
        {
            self.prefetch = Some((next.clone(), self.start_reads(&next, max_records)));
        }
        Ok(fetched)
    }

    /// Starts reading up to `max` records of every source partition from `from`.
    fn start_reads(&self, from: &[u64], max: usize) -> Vec<Reading> {
        let Input::Log(source) = &self.input else {
            return Vec::new();
        };
        (0..from.len() as u32)
            .map(|p| {
                let (source, at) = (source.clone(), from[p as usize]);
                let name = self.def.name.clone();
                tokio::task::spawn_blocking(move || read_rows(&source, &name, p, at, max))
            })
            .collect()
    }

    /// Writes the next checkpoint, timed; see the module documentation.
    async fn checkpoint(&mut self) -> Result<()> {
        let started = std::time::Instant::now();
        self.write_checkpoint().await?;
        self.checkpointed = std::time::Instant::now();
        self.checkpoint_took = started.elapsed();
        Ok(())
    }

    /// Writes checkpoint `sequence + 1` and commits the step's rows with it.
    async fn write_checkpoint(&mut self) -> Result<()> {
        let n = self.sequence + 1;
        let (state, runner) = self.runner.checkpoint()?;
        let windows = (0..self.offsets.len())
            .map(|p| match self.windows.get(p) {
                Some(Some((at, keys))) if *at == self.offsets[p] => {
                    Some(keys.iter().map(|k| hex(k)).collect())
                }
                _ => None,
            })
            .collect();
        let meta = CheckpointMeta {
            runner,
            offsets: self.offsets.clone(),
            windows,
        };
        let (store, dir) = self.state_dir()?;
        let name = self.def.name.clone();
        let put = |path: StorePath, body: Vec<u8>| {
            let store = store.clone();
            let name = name.clone();
            async move {
                store
                    .put(&path, PutPayload::from(body))
                    .await
                    .map_err(|e| failed(&name, "writing a checkpoint", e))
            }
        };
        put(
            dir.clone().join(format!("{n:020}.arrow").as_str()),
            write_checkpoint(&meta, state.as_ref())?,
        )
        .await?;
        let pending = std::mem::take(&mut self.pending);
        let late_file = dir.clone().join(format!("{n:020}.late.arrow").as_str());
        if pending.late.is_empty() {
            // What an earlier attempt at checkpoint `n` (killed before its commit) left is not this one's.
            match store.delete(&late_file).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(failed(&name, "removing stale late rows", e)),
            }
        } else {
            put(late_file, write_batches(&pending.late)?).await?;
        }
        if let Some(p) = &self.publisher {
            p.stage(n, &pending.rows).await?;
        }
        let kind = self.output.0.clone();
        self.output.1 = self
            .commit(&kind, self.output.1.clone(), &pending.rows, n)
            .await?;
        self.replace_rows = false;
        // `late_rows` is shared by every view: committed to only with late rows (a resume brings it up
        // to the checkpoint it resumes from, from that checkpoint's file).
        if !pending.late.is_empty() {
            let kind = self.late.0.clone();
            self.late.1 = self
                .commit(&kind, self.late.1.clone(), &pending.late, n)
                .await?;
        }
        self.sequence = n;
        self.emitted.extend(pending.rows);
        self.prune(&store, &dir, n).await;
        self.publish().await
    }

    /// Commits `rows` to `table` with this view's transaction at `n`.
    async fn commit(
        &self,
        kind: &Table,
        table: DeltaTable,
        rows: &[RecordBatch],
        n: u64,
    ) -> Result<DeltaTable> {
        let mut sink = TableSink::new(kind.clone(), table, &self.write);
        for b in rows {
            sink.write(&conform(b, &kind.schema())?).await?;
        }
        let (mut table, adds) = sink.finish().await?;
        let meta = HashMap::from([(
            "shopstream.view".to_string(),
            serde_json::Value::String(self.def.name.clone()),
        )]);
        let txns = vec![Transaction::new(self.app.clone(), n as i64)];
        let replace = self.replace_rows && kind.name() == self.output.0.name();
        commit_files(kind, &table, adds, txns, meta, replace).await?;
        table
            .update_state()
            .await
            .map_err(EngineError::delta(kind.name()))?;
        Ok(table)
    }

    /// Removes checkpoints older than the one before `n`.
    async fn prune(&self, store: &crate::storage::Store, dir: &StorePath, n: u64) {
        let Ok(listed) = store
            .list(Some(dir))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<std::result::Result<Vec<_>, _>>()
        else {
            return;
        };
        for meta in listed {
            // Staged output rows are the publisher's to remove, once sent.
            let number = meta
                .location
                .filename()
                .filter(|f| !f.ends_with(super::publish::STAGED))
                .and_then(|f| f.split('.').next())
                .and_then(|s| s.parse::<u64>().ok());
            if number.is_some_and(|k| k + 1 < n) {
                let _ = store.delete(&meta.location).await;
            }
        }
    }
}

/// `batch` with the columns of `schema` (same names and order; types cast where they differ).
pub(super) fn conform(
    batch: &RecordBatch,
    schema: &arrow::datatypes::SchemaRef,
) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let c = batch
                .column_by_name(f.name())
                .ok_or_else(|| EngineError::Internal(format!("no column {}", f.name())))?;
            Ok(arrow::compute::cast(c, f.data_type())?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn write_checkpoint(meta: &CheckpointMeta, state: Option<&RecordBatch>) -> Result<Vec<u8>> {
    let json = serde_json::to_string(meta).map_err(|e| EngineError::Internal(e.to_string()))?;
    let empty = RecordBatch::new_empty(Arc::new(Schema::empty()));
    let batch = state.unwrap_or(&empty);
    let schema = Arc::new(
        batch
            .schema()
            .as_ref()
            .clone()
            .with_metadata(HashMap::from([(META_KEY.to_string(), json)])),
    );
    let batch = batch.clone().with_schema(schema.clone())?;
    let mut buf = Vec::new();
    let mut writer = arrow::ipc::writer::FileWriter::try_new(&mut buf, &schema)?;
    if state.is_some() {
        writer.write(&batch)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(buf)
}

fn read_checkpoint(bytes: &[u8]) -> Result<(CheckpointMeta, Option<RecordBatch>)> {
    let reader = arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)?;
    let meta: CheckpointMeta = reader
        .schema()
        .metadata()
        .get(META_KEY)
        .map(|j| serde_json::from_str(j))
        .transpose()
        .map_err(|e| EngineError::Internal(e.to_string()))?
        .unwrap_or_default();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    let state = match batches.len() {
        0 => None,
        _ => Some(arrow::compute::concat_batches(
            &batches[0].schema(),
            &batches,
        )?),
    };
    Ok((meta, state))
}

pub(super) fn write_batches(batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let schema = batches[0].schema();
    let mut buf = Vec::new();
    let mut writer = arrow::ipc::writer::FileWriter::try_new(&mut buf, &schema)?;
    for b in batches {
        writer.write(b)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(buf)
}

pub(super) fn read_batches(bytes: &[u8]) -> Result<Vec<RecordBatch>> {
    let reader = arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

/// Up to `max` records of partition `p` of the view's source from offset `from`: how many, the offset
/// after them, their dataset rows (made as the load makes them) and the reader's dedupe window there;
/// `None` when there are none.
fn read_rows(source: &ViewSource, view: &str, p: u32, from: u64, max: usize) -> Result<Fetched> {
    let fetched = source
        .topic
        .read(p, from, max, 64 << 20)
        .map_err(|e| failed(view, "reading the log", e))?;
    if fetched.next <= from {
        return Ok(None);
    }
    let topic = source.topic.name();
    let mut batcher = EnvelopeBatcher::new(
        source.mapping.clone(),
        source.dataset.clone(),
        &format!("view:{view}"),
        chrono::Utc::now().timestamp_micros(),
    );
    batcher.set_timezone(source.timezone);
    for r in &fetched.records {
        batcher.push(&r.value, r.timestamp_ms, &|| {
            format!("log:{topic}/{p}@{}", r.offset)
        });
    }
    let rows = batcher.take().rows;
    let window = source.topic.dedupe_window(p, fetched.next);
    Ok(Some((
        fetched.records.len() as u64,
        fetched.next,
        rows,
        window,
    )))
}

/// Opens `input`: the input, the shop's time zone and the version of the view's state (its definition's,
/// with the source view's when it reads one: a replaced source view starts it over).
async fn open_input(
    lake: &Lake,
    def: &ViewDef,
    input: ViewInput,
) -> Result<(Input, chrono_tz::Tz, String)> {
    match input {
        ViewInput::Log(source) => {
            let timezone = source.timezone;
            Ok((Input::Log(*source), timezone, def.version()))
        }
        ViewInput::View { name, timezone } => {
            let feed = TableFeed::open(lake, &name).await?.ok_or_else(|| {
                failed(
                    &def.name,
                    "its source",
                    format!("view `{name}` has no table yet"),
                )
            })?;
            let version = match super::defs::get(lake, &name).await? {
                Some(source) => format!("{}.{}", def.version(), source.version()),
                None => def.version(),
            };
            Ok((Input::View(feed), timezone, version))
        }
    }
}

/// FNV-1a of `text`: stable across releases and platforms (unlike std's hasher).
fn fnv(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
