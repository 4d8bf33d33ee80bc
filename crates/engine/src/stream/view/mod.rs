//! Continuous views: SQL over a live dataset's rows, evaluated as they arrive, with event-time windows
//! and watermarks.
//!
//! A view is planned once by DataFusion ([`plan`]); its state is one accumulator per aggregate per key and
//! window ([`state`]), windows assigned by [`window`]. [`ViewRunner::push`] takes a micro-batch of the
//! source's rows from one source partition: each row is placed in its window(s); a row whose window is
//! already final goes to the late rows instead (never silently dropped), with the window it missed and by
//! how much; the others run through the part of the plan below the aggregate and into the accumulators.
//!
//! The watermark is the minimum over the source partitions of (their latest event time − the allowed
//! delay); a partition that sent nothing for the idle timeout (processing time) stops holding it back.
//! Event times are shop-local wall clock (`[ingest] timezone`); windows are aligned on it, but watermarks
//! and finality are computed on the instants, so a daylight-saving change does not make an hour of rows
//! late. A window is final, emitted and evicted once the watermark passes its end plus the allowed
//! lateness; an updating aggregate's key is evicted once the watermark passes its last event plus its
//! time to live. Emitted windows run through the part of the plan above the aggregate.

pub mod defs;
mod flink;
mod group_window;
pub mod job;
pub mod plan;
pub mod publish;
pub mod state;
pub mod table_source;
pub mod window;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::compute::{cast, concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::TimeZone;

use self::plan::{ViewPlan, window_type};
use self::state::KeyedState;
use self::window::WindowKind;
use crate::error::{EngineError, Result};

/// How a view treats time.
#[derive(Debug, Clone)]
pub struct ViewOptions {
    /// How far behind the latest event time of a partition its watermark stays (default 30 s).
    pub delay: Duration,
    /// How long after the watermark passed a window's end it still takes rows (default 0).
    pub lateness: Duration,
    /// A partition silent this long (processing time) stops holding the watermark back.
    pub idle_timeout: Duration,
    /// An updating aggregate's key is dropped this long (processing time, as Flink's state TTL) after its
    /// last row.
    pub ttl: Duration,
    /// The shop's time zone, in which event times are wall clock.
    pub timezone: chrono_tz::Tz,
}

impl Default for ViewOptions {
    fn default() -> Self {
        ViewOptions {
            delay: Duration::from_secs(30),
            lateness: Duration::ZERO,
            idle_timeout: Duration::from_secs(60),
            ttl: Duration::from_secs(24 * 3600),
            timezone: chrono_tz::Tz::UTC,
        }
    }
}

/// What a micro-batch (or the watermark moving) produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Rows of final windows (or of a view without an aggregate), in the view's output schema.
    pub rows: Vec<RecordBatch>,
    /// Rows that came after their window was final ([`late_rows_schema`]).
    pub late: Vec<RecordBatch>,
}

/// A source partition's clock.
struct Clock {
    /// Its latest event time, as an instant (µs since the epoch).
    latest: i64,
    /// When it last sent rows.
    seen: Instant,
}

/// Figures of a running view.
#[derive(Debug, Default, Clone)]
pub struct ViewCounters {
    /// Source rows taken in.
    pub rows_in: u64,
    /// Late rows recorded.
    pub late_rows: u64,
    /// Windows emitted as final.
    pub windows_emitted: u64,
}

/// A view evaluating micro-batches; see the module documentation.
pub struct ViewRunner {
    plan: ViewPlan,
    options: ViewOptions,
    state: Option<KeyedState>,
    clocks: BTreeMap<u32, Clock>,
    watermark: Option<i64>,
    /// The watermark windows were last emitted under (a sliced hopping window emits those final since).
    emitted_under: Option<i64>,
    time_index: Option<usize>,
    counters: ViewCounters,
}

/// The columns of the `late_rows` dataset: which view a row missed, which window, its event time, the
/// watermark then (both wall clock), how many ms after the window closed it came, and the row as JSON.
pub fn late_rows_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("view", DataType::Utf8, false),
        Field::new("window_start", window_type(), true),
        Field::new("window_end", window_type(), true),
        Field::new("event_time", window_type(), false),
        Field::new("watermark", window_type(), false),
        Field::new("late_by_ms", DataType::Int64, false),
        Field::new("record", DataType::Utf8, false),
    ]))
}

/// Late rows are recorded this many at a time (their JSON stays far from a string array's 2 GiB).
const LATE_CHUNK: usize = 8192;

fn internal(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("view: {e}"))
}

/// The instant (µs since the epoch) of wall-clock time `local` (µs) in `tz`: the earlier one when the clock
/// went back, the one after the gap when it jumped forward.
pub fn instant(tz: chrono_tz::Tz, local: i64) -> i64 {
    if tz == chrono_tz::Tz::UTC {
        return local;
    }
    let Some(naive) = chrono::DateTime::from_timestamp_micros(local).map(|d| d.naive_utc()) else {
        return local;
    };
    let mapped = tz.from_local_datetime(&naive).earliest().or_else(|| {
        tz.from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
    });
    mapped.map_or(local, |d| d.timestamp_micros())
}

/// Wall-clock time in `tz` (µs) of `instant`.
fn local(tz: chrono_tz::Tz, instant: i64) -> i64 {
    if tz == chrono_tz::Tz::UTC {
        return instant;
    }
    chrono::DateTime::from_timestamp_micros(instant).map_or(instant, |d| {
        d.with_timezone(&tz)
            .naive_local()
            .and_utc()
            .timestamp_micros()
    })
}

/// Whether a window ending at `end` (wall clock) is final under watermark `w` (an instant).
fn final_under(options: &ViewOptions, w: Option<i64>, end: i64) -> bool {
    w.is_some_and(|w| instant(options.timezone, end) + micros(options.lateness) <= w)
}

/// Now, in µs since the epoch.
fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn micros(d: Duration) -> i64 {
    d.as_micros() as i64
}

impl ViewRunner {
    /// A runner of `plan`, with empty state.
    pub fn new(plan: ViewPlan, options: ViewOptions) -> Result<ViewRunner> {
        let state = match (&plan.aggregate, plan.slices, plan.window) {
            (Some(a), Some(slide), WindowKind::Hop { size, .. }) => {
                Some(KeyedState::sliced(a, slide, size, &a.input)?)
            }
            (Some(a), _, _) => Some(KeyedState::new(a, plan.window, &a.input)?),
            (None, _, _) => None,
        };
        let time_index = match &plan.time_column {
            Some(t) => Some(plan.source_schema.index_of(t).map_err(internal)?),
            None => None,
        };
        Ok(ViewRunner {
            plan,
            options,
            state,
            clocks: BTreeMap::new(),
            watermark: None,
            emitted_under: None,
            time_index,
            counters: ViewCounters::default(),
        })
    }

    /// The plan.
    pub fn plan(&self) -> &ViewPlan {
        &self.plan
    }

    /// The watermark, as an instant (µs since the epoch), once there is one.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// The watermark as wall clock in the shop's time zone.
    pub fn watermark_local(&self) -> Option<chrono::NaiveDateTime> {
        let w = local(self.options.timezone, self.watermark?);
        chrono::DateTime::from_timestamp_micros(w).map(|d| d.naive_utc())
    }

    /// Figures since start.
    pub fn counters(&self) -> &ViewCounters {
        &self.counters
    }

    /// Open windows (or keys of an updating aggregate), and the bytes their state holds.
    pub fn state_size(&self) -> (usize, usize) {
        self.state
            .as_ref()
            .map_or((0, 0), |s| (s.open_windows(), s.size()))
    }

    /// Takes `batch` (the source's rows) from source `partition`; returns what became final.
    pub async fn push(&mut self, partition: u32, batch: &RecordBatch) -> Result<Output> {
        self.counters.rows_in += batch.num_rows() as u64;
        let mut out = Output::default();
        let times = self.event_times(batch)?;
        let (input, latest) = match (&times, self.plan.window) {
            (Some(times), WindowKind::Hop { slide, size }) if self.plan.slices.is_some() => {
                let on_time = self.sliced(batch, times, slide, size, &mut out).await?;
                (on_time, times.iter().flatten().max())
            }
            (Some(times), window) if window != WindowKind::None => {
                let expanded = window::expand(window, batch, times, &self.plan.input_schema)?;
                let on_time = self.split_late(expanded, &mut out).await?;
                (on_time, times.iter().flatten().max())
            }
            (times, _) => (
                batch.clone(),
                times.as_ref().and_then(|t| t.iter().flatten().max()),
            ),
        };
        let now = now_micros();
        for below in self.plan.run_below(input).await? {
            match (&mut self.state, &self.plan.aggregate) {
                (Some(state), Some(aggregate)) => state.update(aggregate, &below, now)?,
                _ => out.rows.push(below),
            }
        }
        if let Some(latest) = latest {
            let latest = instant(self.options.timezone, latest);
            let clock = self.clocks.entry(partition).or_insert(Clock {
                latest,
                seen: Instant::now(),
            });
            clock.latest = clock.latest.max(latest);
            clock.seen = Instant::now();
        }
        let advanced = self.advance().await?;
        out.rows.extend(advanced.rows);
        Ok(out)
    }

    /// The event times of `batch` in µs (wall clock), for a view with an event-time column.
    fn event_times(&self, batch: &RecordBatch) -> Result<Option<TimestampMicrosecondArray>> {
        let Some(i) = self.time_index else {
            return Ok(None);
        };
        let column = cast(batch.column(i), &window_type())?;
        Ok(column
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .cloned())
    }

    /// Whether a window ending at `end` (wall clock) is final under the watermark.
    fn is_final(&self, end: i64) -> bool {
        final_under(&self.options, self.watermark, end)
    }

    /// A sliced hopping window's input: each row with its slice as its window, but the rows whose every
    /// window is final; a row late for some of its windows is recorded for those as a late row.
    async fn sliced(
        &mut self,
        batch: &RecordBatch,
        times: &TimestampMicrosecondArray,
        slide: i64,
        size: i64,
        out: &mut Output,
    ) -> Result<RecordBatch> {
        let schema = &self.plan.input_schema;
        let slices = window::expand(WindowKind::Tumble { size: slide }, batch, times, schema)?;
        // A row's first window ends with its slice: rows whose first window is final are late for some.
        let some_late: BooleanArray = times
            .iter()
            .map(|t| Some(t.is_some_and(|t| self.is_final(t.div_euclid(slide) * slide + slide))))
            .collect();
        if some_late.true_count() == 0 {
            return Ok(slices);
        }
        let late = filter_record_batch(batch, &some_late)?;
        let late_times = arrow::compute::filter(times, &some_late)?;
        let late_times = late_times
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("timestamps");
        let hop = WindowKind::Hop { slide, size };
        let expanded = window::expand(hop, &late, late_times, schema)?;
        self.split_late(expanded, out).await?;
        let some_open = self.windows_final(&slices, 2, size);
        let some_open = arrow::compute::not(&some_open)?;
        Ok(filter_record_batch(&slices, &some_open)?)
    }

    /// Per row of `rows`, whether the window ending `plus` µs after its window bound column `from_last`
    /// places from the end (1: `window_end`, 2: `window_start`) is final.
    fn windows_final(&self, rows: &RecordBatch, from_last: usize, plus: i64) -> BooleanArray {
        let bounds = rows
            .column(rows.num_columns() - from_last)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("window bounds");
        bounds
            .iter()
            .map(|b| Some(b.is_some_and(|b| self.is_final(b + plus))))
            .collect()
    }

    /// Of `expanded` rows (one per window), records those whose window is final as late rows (when the
    /// view's `WHERE` keeps them) and returns the others.
    async fn split_late(&mut self, expanded: RecordBatch, out: &mut Output) -> Result<RecordBatch> {
        let late = self.windows_final(&expanded, 1, 0);
        if late.true_count() == 0 {
            return Ok(expanded);
        }
        let on_time: BooleanArray = late.iter().map(|l| l.map(|l| !l)).collect();
        let late_rows = filter_record_batch(&expanded, &late)?;
        for kept in self.plan.late_rows_kept(late_rows).await? {
            self.counters.late_rows += kept.num_rows() as u64;
            // In slices: each late row's record is its whole row as JSON.
            for at in (0..kept.num_rows()).step_by(LATE_CHUNK) {
                let chunk = kept.slice(at, LATE_CHUNK.min(kept.num_rows() - at));
                out.late.push(self.late_record(&chunk)?);
            }
        }
        Ok(filter_record_batch(&expanded, &on_time)?)
    }

    /// `late_rows` rows for `rows` (input columns, window bounds last).
    fn late_record(&self, rows: &RecordBatch) -> Result<RecordBatch> {
        let n = rows.num_rows();
        let column = |name: &str| -> Result<TimestampMicrosecondArray> {
            let i = rows.schema().index_of(name).map_err(internal)?;
            let c = cast(rows.column(i), &window_type())?;
            Ok(c.as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("timestamps")
                .clone())
        };
        let (starts, ends) = (column("window_start")?, column("window_end")?);
        let time = self.plan.time_column.as_deref().expect("a windowed view");
        let events = column(&plan::input_name(time))?;
        let tz = self.options.timezone;
        let w = self.watermark.unwrap_or(i64::MIN);
        let late_by: Int64Array = ends
            .iter()
            .map(|e| e.map(|e| (w - instant(tz, e) - micros(self.options.lateness)) / 1000))
            .collect();
        let source_columns = rows.num_columns() - 2;
        let source = rows.project(&(0..source_columns).collect::<Vec<_>>())?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![self.plan.name.as_str(); n])),
            Arc::new(starts),
            Arc::new(ends),
            Arc::new(events),
            Arc::new(TimestampMicrosecondArray::from(vec![local(tz, w); n])),
            Arc::new(late_by),
            Arc::new(StringArray::from(json_lines(&source)?)),
        ];
        RecordBatch::try_new(late_rows_schema(), columns).map_err(internal)
    }

    /// Moves the watermark (the sources' clocks, idle ones left out) and emits what became final.
    pub async fn advance(&mut self) -> Result<Output> {
        let delay = micros(self.options.delay);
        let active: Vec<i64> = self
            .clocks
            .values()
            .filter(|c| c.seen.elapsed() < self.options.idle_timeout)
            .map(|c| c.latest)
            .collect();
        let candidate = if active.is_empty() {
            self.clocks.values().map(|c| c.latest).max()
        } else {
            active.into_iter().min()
        };
        if let Some(c) = candidate.filter(|c| *c > i64::MIN) {
            let w = c.saturating_sub(delay);
            self.watermark = Some(self.watermark.map_or(w, |old| old.max(w)));
        }
        self.emit().await
    }

    /// Emits the windows final under the watermark (evicts expired keys of an updating aggregate).
    async fn emit(&mut self) -> Result<Output> {
        let mut out = Output::default();
        let (Some(state), Some(aggregate)) = (&mut self.state, &self.plan.aggregate) else {
            return Ok(out);
        };
        if self.plan.window == WindowKind::None {
            // An updating aggregate's rows are live only: an expired key is dropped, not emitted.
            let expired = now_micros() - micros(self.options.ttl);
            state.emit(aggregate, |_, fed| fed <= expired)?;
            return Ok(out);
        }
        let Some(w) = self.watermark else {
            return Ok(out);
        };
        if state.is_sliced() && self.emitted_under == Some(w) {
            return Ok(out); // the watermark did not move: no window became final
        }
        let (before, options) = (self.emitted_under, &self.options);
        self.emitted_under = Some(w);
        let now = |end| final_under(options, Some(w), end);
        let emitted = if state.is_sliced() {
            state.emit_hop(
                aggregate,
                |end| now(end) && !final_under(options, before, end),
                now,
            )?
        } else {
            state.emit(aggregate, |end, _| now(end))?
        };
        if let Some(rows) = emitted {
            self.counters.windows_emitted += rows.num_rows() as u64;
            out.rows = self.plan.run_above(rows).await?;
        }
        Ok(out)
    }

    /// Ends the input: the watermark moves past every window, so all are emitted (a bounded replay's end,
    /// as a bounded source ends a Flink or Spark job).
    pub async fn close(&mut self) -> Result<Output> {
        self.watermark = Some(i64::MAX / 2);
        self.emit().await
    }

    /// The view's open windows (or an updating aggregate's keys) as they stand, in its output schema; of
    /// a sliced hopping window, the newest ([`KeyedState::snapshot_hop`]).
    pub async fn live(&mut self) -> Result<Vec<RecordBatch>> {
        let (Some(state), Some(aggregate)) = (&mut self.state, &self.plan.aggregate) else {
            return Ok(Vec::new());
        };
        let rows = if state.is_sliced() {
            state.snapshot_hop(aggregate)?
        } else {
            state.snapshot(aggregate)?
        };
        match rows {
            Some(rows) => self.plan.run_above(rows).await,
            None => Ok(Vec::new()),
        }
    }
}

/// What a checkpoint keeps of a runner besides its state rows.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RunnerMeta {
    /// The watermark (an instant, µs).
    pub watermark: Option<i64>,
    /// Per source partition, its latest event time (an instant, µs).
    pub clocks: BTreeMap<u32, i64>,
    /// Counters.
    pub rows_in: u64,
    pub late_rows: u64,
    pub windows_emitted: u64,
}

impl ViewRunner {
    /// The state rows ([`KeyedState::to_batch`]) and the rest, for a checkpoint.
    pub fn checkpoint(&mut self) -> Result<(Option<RecordBatch>, RunnerMeta)> {
        let rows = match (&mut self.state, &self.plan.aggregate) {
            (Some(state), Some(aggregate)) => state.to_batch(aggregate)?,
            _ => None,
        };
        let meta = RunnerMeta {
            watermark: self.watermark,
            clocks: self.clocks.iter().map(|(p, c)| (*p, c.latest)).collect(),
            rows_in: self.counters.rows_in,
            late_rows: self.counters.late_rows,
            windows_emitted: self.counters.windows_emitted,
        };
        Ok((rows, meta))
    }

    /// Resumes from a checkpoint: its state rows and the rest.
    pub fn restore(&mut self, rows: Option<&RecordBatch>, meta: RunnerMeta) -> Result<()> {
        if let (Some(state), Some(aggregate), Some(rows)) =
            (&mut self.state, &self.plan.aggregate, rows)
        {
            state.restore(aggregate, rows)?;
        }
        self.watermark = meta.watermark;
        self.emitted_under = meta.watermark;
        self.clocks = meta
            .clocks
            .into_iter()
            .map(|(p, latest)| {
                (
                    p,
                    Clock {
                        latest,
                        seen: Instant::now(),
                    },
                )
            })
            .collect();
        self.counters = ViewCounters {
            rows_in: meta.rows_in,
            late_rows: meta.late_rows,
            windows_emitted: meta.windows_emitted,
        };
        Ok(())
    }

    /// Declares the source partitions: one that has sent nothing yet holds the watermark back (as Flink's
    /// sources do) until it has been silent for the idle timeout.
    pub fn expect_partitions(&mut self, partitions: impl IntoIterator<Item = u32>) {
        for p in partitions {
            self.clocks.entry(p).or_insert(Clock {
                latest: i64::MIN,
                seen: Instant::now(),
            });
        }
    }

    /// Stops counting source `partition` in the watermark (the lake's rows, once a backfill is done).
    pub fn forget_partition(&mut self, partition: u32) {
        self.clocks.remove(&partition);
    }
}

/// Each row of `batch` as a JSON object.
fn json_lines(batch: &RecordBatch) -> Result<Vec<String>> {
    let mut buf = Vec::new();
    {
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut buf);
        writer.write(batch)?;
        writer.finish()?;
    }
    let text = String::from_utf8(buf).map_err(internal)?;
    Ok(text.lines().map(str::to_string).collect())
}

/// All of `batches` as one batch of `schema`.
pub fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    Ok(concat_batches(schema, batches)?)
}
