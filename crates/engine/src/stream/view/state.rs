//! A view's keyed state: per key (the non-window group columns, as arrow rows) the open windows, each
//! with one DataFusion accumulator per aggregate of the view ([`super::plan::Aggregate`]). A micro-batch's
//! rows are grouped by key and window and fed to the accumulators of their window (`update_batch`);
//! session windows of a key that come to overlap are merged (one accumulator's `state` merged into the
//! other's). A window is emitted (evaluated and removed) once final; an updating aggregate's key is
//! evaluated while live and removed after its time to live. A sliced hopping window ([`KeyedState::sliced`])
//! keeps slide-long slices instead, each window merged from copies of its slices' accumulators.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, TimestampMicrosecondArray, UInt32Array,
};
use arrow::compute::{cast, filter, take};
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::logical_expr::Accumulator;
use datafusion::scalar::ScalarValue;

use super::plan::Aggregate;
use super::window::WindowKind;
use crate::error::{EngineError, Result};

/// One open window of a key.
struct Slot {
    start: i64,
    end: i64,
    accumulators: Vec<Box<dyn Accumulator>>,
    /// The latest event time (µs, local) fed to it: an updating aggregate's time to live counts from it.
    fed: i64,
}

/// The open windows of every key; see the module documentation.
pub struct KeyedState {
    window: WindowKind,
    converter: RowConverter,
    /// No key columns (a window's total): every row has the same constant key.
    keyless: bool,
    keys: HashMap<OwnedRow, Vec<Slot>>,
    /// Open windows, over all keys.
    open: usize,
    /// A sliced hopping window `(slide, size)`: the slots are slices, each window merged from them.
    hop: Option<(i64, i64)>,
}

/// The rows of one micro-batch, evaluated for the aggregate.
struct Evaluated {
    keys: arrow::row::Rows,
    starts: Vec<i64>,
    ends: Vec<i64>,
    /// Per aggregate, its argument columns (rows its `FILTER` drops are left out at update).
    arguments: Vec<Vec<ArrayRef>>,
    filters: Vec<Option<BooleanArray>>,
}

fn internal(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("view state: {e}"))
}

fn times(a: &ArrayRef) -> Result<Vec<i64>> {
    let a = a
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| internal("window bounds are not timestamps"))?;
    Ok(a.values().to_vec())
}

impl KeyedState {
    /// Empty state for `aggregate` over `window`.
    pub fn new(
        aggregate: &Aggregate,
        window: WindowKind,
        input: &arrow::datatypes::Schema,
    ) -> Result<KeyedState> {
        let mut fields = key_indices(aggregate)
            .map(|i| aggregate.group[i].0.data_type(input).map(SortField::new))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let keyless = fields.is_empty();
        if keyless {
            fields.push(SortField::new(arrow::datatypes::DataType::Boolean));
        }
        Ok(KeyedState {
            window,
            converter: RowConverter::new(fields)?,
            keyless,
            keys: HashMap::new(),
            open: 0,
            hop: None,
        })
    }

    /// Empty state for a hopping window of `size` kept in slices of `slide` (see
    /// [`super::plan::ViewPlan::slices`]): rows are fed with their slice as their window.
    pub fn sliced(
        aggregate: &Aggregate,
        slide: i64,
        size: i64,
        input: &arrow::datatypes::Schema,
    ) -> Result<KeyedState> {
        let mut state = KeyedState::new(aggregate, WindowKind::Tumble { size: slide }, input)?;
        state.hop = Some((slide, size));
        Ok(state)
    }

    /// Open windows over all keys.
    pub fn open_windows(&self) -> usize {
        self.open
    }

    /// Bytes the accumulators hold (about).
    pub fn size(&self) -> usize {
        self.keys
            .values()
            .flatten()
            .map(|s| s.accumulators.iter().map(|a| a.size()).sum::<usize>())
            .sum()
    }

    fn evaluate(&self, aggregate: &Aggregate, batch: &RecordBatch) -> Result<Evaluated> {
        let group: Vec<ArrayRef> = aggregate
            .group
            .iter()
            .map(|(e, _)| e.evaluate(batch)?.into_array(batch.num_rows()))
            .collect::<datafusion::error::Result<_>>()?;
        let key_columns: Vec<ArrayRef> = if self.keyless {
            vec![Arc::new(BooleanArray::from(vec![true; batch.num_rows()]))]
        } else {
            key_indices(aggregate).map(|i| group[i].clone()).collect()
        };
        let keys = self.converter.convert_columns(&key_columns)?;
        let (starts, ends) = match aggregate.window_columns {
            Some((s, e)) => (times(&group[s])?, times(&group[e])?),
            None => (vec![0; batch.num_rows()], vec![0; batch.num_rows()]),
        };
        let mut arguments = Vec::new();
        for a in &aggregate.aggregates {
            let args = a
                .expressions()
                .iter()
                .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
                .collect::<datafusion::error::Result<Vec<_>>>()?;
            arguments.push(args);
        }
        let filters = aggregate
            .filters
            .iter()
            .map(|f| {
                f.as_ref()
                    .map(|f| {
                        let a = f.evaluate(batch)?.into_array(batch.num_rows())?;
                        Ok::<_, EngineError>(
                            a.as_any()
                                .downcast_ref::<BooleanArray>()
                                .ok_or_else(|| internal("a FILTER is not boolean"))?
                                .clone(),
                        )
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Evaluated {
            keys,
            starts,
            ends,
            arguments,
            filters,
        })
    }

    /// Feeds the aggregate's input rows `batch` to their windows; `event` is when (µs) the windows were
    /// last fed: an updating aggregate's time to live counts from it.
    pub fn update(&mut self, aggregate: &Aggregate, batch: &RecordBatch, event: i64) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rows = self.evaluate(aggregate, batch)?;
        let session = self.window.is_session();
        for (key, start, end, indices) in group(&rows, session) {
            let key = self.converter.parser().parse(key).owned();
            let indices = UInt32Array::from(indices);
            // A window that is open already is fed directly; a new one (or a session, which may merge
            // with others) starts as a slot of its own.
            let open = (!session)
                .then(|| self.keys.get_mut(&key))
                .flatten()
                .and_then(|slots| slots.iter_mut().find(|s| s.start == start && s.end == end));
            if let Some(slot) = open {
                feed(slot, &rows, &indices)?;
                slot.fed = slot.fed.max(event);
                continue;
            }
            let mut slot = new_slot(aggregate, start, end, event)?;
            feed(&mut slot, &rows, &indices)?;
            self.insert(key, slot)?;
        }
        Ok(())
    }

    /// Adds `slot` to `key`'s windows: into the same window, or (sessions) merged with those it overlaps.
    fn insert(&mut self, key: OwnedRow, mut slot: Slot) -> Result<()> {
        let slots = self.keys.entry(key).or_default();
        let session = self.window.is_session();
        loop {
            let found = slots.iter().position(|s| {
                if session {
                    // Windows that touch are one session (as in Flink and Spark): a new one starts only
                    // after a gap longer than the gap.
                    s.start <= slot.end && slot.start <= s.end
                } else {
                    s.start == slot.start && s.end == slot.end
                }
            });
            let Some(i) = found else { break };
            let mut other = slots.swap_remove(i);
            self.open -= 1;
            merge(&mut other, &mut slot)?;
            slot = other;
            if !session {
                break;
            }
        }
        slots.push(slot);
        self.open += 1;
        Ok(())
    }

    /// Evaluates and removes the windows `is_final` holds for (given its end and last event); returns their
    /// rows in the aggregate's schema.
    pub fn emit(
        &mut self,
        aggregate: &Aggregate,
        is_final: impl Fn(i64, i64) -> bool,
    ) -> Result<Option<RecordBatch>> {
        if self.hop.is_some() {
            return Err(internal("a sliced window is emitted with emit_hop"));
        }
        let mut taken = Vec::new();
        for (key, slots) in self.keys.iter_mut() {
            let mut i = 0;
            while i < slots.len() {
                if is_final(slots[i].end, slots[i].fed) {
                    taken.push((key.clone(), slots.swap_remove(i)));
                } else {
                    i += 1;
                }
            }
        }
        self.keys.retain(|_, s| !s.is_empty());
        self.open -= taken.len();
        rows_of(
            &self.converter,
            aggregate,
            taken.iter_mut().map(|(k, s)| (k.row(), s)),
            false,
        )
    }

    /// A sliced hopping window's windows ending at the ends `emit` holds for, each merged from its
    /// slices, in the aggregate's schema; then removes the slices whose every window has been emitted
    /// (`gone` holds for the end of their last window).
    pub fn emit_hop(
        &mut self,
        aggregate: &Aggregate,
        emit: impl Fn(i64) -> bool,
        gone: impl Fn(i64) -> bool,
    ) -> Result<Option<RecordBatch>> {
        let (_, size) = self.hop.ok_or_else(|| internal("not a sliced window"))?;
        let rows = self.merged_windows(aggregate, &emit)?;
        for slots in self.keys.values_mut() {
            let before = slots.len();
            slots.retain(|s| !gone(s.start + size));
            self.open -= before - slots.len();
        }
        self.keys.retain(|_, s| !s.is_empty());
        Ok(rows)
    }

    /// Per window end `e` of a sliced hopping window that `wanted` holds for, per key with slices in
    /// `[e - size, e)`: the row of the window, its accumulators merged from copies of the slices'.
    fn merged_windows(
        &mut self,
        aggregate: &Aggregate,
        wanted: &dyn Fn(i64) -> bool,
    ) -> Result<Option<RecordBatch>> {
        let (slide, size) = self.hop.ok_or_else(|| internal("not a sliced window"))?;
        let mut ends = std::collections::BTreeSet::new();
        for s in self.keys.values().flatten() {
            let mut e = s.end;
            while e <= s.start + size {
                if wanted(e) {
                    ends.insert(e);
                }
                e += slide;
            }
        }
        let mut windows: Vec<(arrow::row::Row<'_>, Slot)> = Vec::new();
        for (key, slots) in self.keys.iter_mut() {
            for &e in &ends {
                let mut merged: Option<Slot> = None;
                for s in slots
                    .iter_mut()
                    .filter(|s| s.start >= e - size && s.end <= e)
                {
                    let window = merged.get_or_insert(new_slot(aggregate, e - size, e, s.fed)?);
                    for (n, acc) in s.accumulators.iter_mut().enumerate() {
                        let state = kept_state(acc, &aggregate.aggregates[n])?;
                        window.accumulators[n].merge_batch(&arrays(&state)?)?;
                    }
                }
                if let Some(w) = merged {
                    windows.push((key.row(), w));
                }
            }
        }
        rows_of(
            &self.converter,
            aggregate,
            windows.iter_mut().map(|(k, s)| (*k, s)),
            false,
        )
    }

    /// Of a sliced hopping window, the newest window (ending with the newest slice: the last `size` of
    /// events), per key with slices in it, evaluated and kept, in the aggregate's schema. Its older open
    /// windows are parts of it and are not read live (each would merge its slices again).
    pub fn snapshot_hop(&mut self, aggregate: &Aggregate) -> Result<Option<RecordBatch>> {
        let newest = self.keys.values().flatten().map(|s| s.end).max();
        match newest {
            Some(end) => self.merged_windows(aggregate, &|e| e == end),
            None => Ok(None),
        }
    }

    /// Whether the slots are slices of a hopping window.
    pub fn is_sliced(&self) -> bool {
        self.hop.is_some()
    }

    /// The rows of every open window (evaluated, kept), in the aggregate's schema.
    pub fn snapshot(&mut self, aggregate: &Aggregate) -> Result<Option<RecordBatch>> {
        let mut all: Vec<(arrow::row::Row<'_>, &mut Slot)> = Vec::new();
        for (key, slots) in self.keys.iter_mut() {
            for s in slots.iter_mut() {
                all.push((key.row(), s));
            }
        }
        rows_of(&self.converter, aggregate, all.into_iter(), true)
    }
}

/// Each value as a one-row array.
fn arrays(values: &[ScalarValue]) -> Result<Vec<ArrayRef>> {
    Ok(values
        .iter()
        .map(|s| s.to_array())
        .collect::<datafusion::error::Result<_>>()?)
}

/// `acc`'s state, leaving `acc` as it was: `state` may take the accumulator's contents, so they are
/// merged back into a fresh accumulator of `aggregate` that replaces it.
fn kept_state(
    acc: &mut Box<dyn Accumulator>,
    aggregate: &datafusion::physical_expr::aggregate::AggregateFunctionExpr,
) -> Result<Vec<ScalarValue>> {
    let state = acc.state()?;
    let mut fresh = aggregate.create_accumulator()?;
    fresh.merge_batch(&arrays(&state)?)?;
    *acc = fresh;
    Ok(state)
}

/// The rows grouped by key and window: `(key, start, end, rows)`. For sessions, a key's rows whose own
/// windows overlap are one group already (a run in event order), so each run becomes one window to merge.
fn group(rows: &Evaluated, session: bool) -> Vec<(&[u8], i64, i64, Vec<u32>)> {
    if !session {
        let mut groups: HashMap<(&[u8], i64, i64), Vec<u32>> = HashMap::new();
        for i in 0..rows.starts.len() {
            let key = (rows.keys.row(i).data(), rows.starts[i], rows.ends[i]);
            groups.entry(key).or_default().push(i as u32);
        }
        return groups
            .into_iter()
            .map(|((k, s, e), v)| (k, s, e, v))
            .collect();
    }
    let mut by_key: HashMap<&[u8], Vec<u32>> = HashMap::new();
    for i in 0..rows.starts.len() {
        by_key
            .entry(rows.keys.row(i).data())
            .or_default()
            .push(i as u32);
    }
    let mut out = Vec::new();
    for (key, mut indices) in by_key {
        indices.sort_by_key(|&i| rows.starts[i as usize]);
        let mut run: Option<(i64, i64, Vec<u32>)> = None;
        for i in indices {
            let (s, e) = (rows.starts[i as usize], rows.ends[i as usize]);
            match &mut run {
                Some((_, end, members)) if s <= *end => {
                    *end = (*end).max(e);
                    members.push(i);
                }
                _ => {
                    if let Some((rs, re, members)) = run.take() {
                        out.push((key, rs, re, members));
                    }
                    run = Some((s, e, vec![i]));
                }
            }
        }
        if let Some((rs, re, members)) = run {
            out.push((key, rs, re, members));
        }
    }
    out
}

/// The indices of the group expressions that are keys (not window bounds).
fn key_indices(aggregate: &Aggregate) -> impl Iterator<Item = usize> + '_ {
    (0..aggregate.group.len()).filter(move |i| match aggregate.window_columns {
        Some((s, e)) => *i != s && *i != e,
        None => true,
    })
}

fn new_slot(aggregate: &Aggregate, start: i64, end: i64, fed: i64) -> Result<Slot> {
    let accumulators = aggregate
        .aggregates
        .iter()
        .map(|a| a.create_accumulator())
        .collect::<datafusion::error::Result<_>>()?;
    Ok(Slot {
        start,
        end,
        accumulators,
        fed,
    })
}

/// Feeds rows `indices` of `rows` to `slot`'s accumulators.
fn feed(slot: &mut Slot, rows: &Evaluated, indices: &UInt32Array) -> Result<()> {
    for (n, acc) in slot.accumulators.iter_mut().enumerate() {
        let mut args: Vec<ArrayRef> = rows.arguments[n]
            .iter()
            .map(|a| take(a.as_ref(), indices, None))
            .collect::<std::result::Result<_, _>>()?;
        if let Some(keep) = &rows.filters[n] {
            let keep = take(keep, indices, None)?;
            let keep = keep
                .as_any()
                .downcast_ref::<BooleanArray>()
                .expect("boolean");
            args = args
                .iter()
                .map(|a| filter(a.as_ref(), keep))
                .collect::<std::result::Result<_, _>>()?;
        }
        acc.update_batch(&args)?;
    }
    Ok(())
}

/// Merges `from` into `into`: the union of their windows and of their accumulators' states.
fn merge(into: &mut Slot, from: &mut Slot) -> Result<()> {
    into.start = into.start.min(from.start);
    into.end = into.end.max(from.end);
    into.fed = into.fed.max(from.fed);
    for (a, b) in into
        .accumulators
        .iter_mut()
        .zip(from.accumulators.iter_mut())
    {
        let states: Vec<ArrayRef> = b
            .state()?
            .iter()
            .map(|s| s.to_array())
            .collect::<datafusion::error::Result<_>>()?;
        a.merge_batch(&states)?;
    }
    Ok(())
}

/// One row per slot: its key columns and window bounds at their group positions, then each aggregate's value.
/// `keep`: the windows stay open, so each value is evaluated from a copy of the accumulator's state
/// (DataFusion's `evaluate` and `state` may take an accumulator's contents).
fn rows_of<'a>(
    converter: &RowConverter,
    aggregate: &Aggregate,
    slots: impl Iterator<Item = (arrow::row::Row<'a>, &'a mut Slot)>,
    keep: bool,
) -> Result<Option<RecordBatch>> {
    let (mut keys, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
    let mut values: Vec<Vec<ScalarValue>> = vec![Vec::new(); aggregate.aggregates.len()];
    for (key, slot) in slots {
        keys.push(key);
        starts.push(slot.start);
        ends.push(slot.end);
        for (n, acc) in slot.accumulators.iter_mut().enumerate() {
            let value = if keep {
                let state = kept_state(acc, &aggregate.aggregates[n])?;
                let mut copy = aggregate.aggregates[n].create_accumulator()?;
                copy.merge_batch(&arrays(&state)?)?;
                copy.evaluate()?
            } else {
                acc.evaluate()?
            };
            values[n].push(value);
        }
    }
    if keys.is_empty() {
        return Ok(None);
    }
    let mut key_columns = converter.convert_rows(keys)?.into_iter();
    if key_indices(aggregate).next().is_none() {
        key_columns.next(); // the constant key of a keyless state
    }
    let schema = aggregate.schema.clone();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for i in 0..aggregate.group.len() {
        let column: ArrayRef = match aggregate.window_columns {
            Some((s, _)) if i == s => Arc::new(TimestampMicrosecondArray::from(starts.clone())),
            Some((_, e)) if i == e => Arc::new(TimestampMicrosecondArray::from(ends.clone())),
            _ => key_columns.next().expect("a key column"),
        };
        columns.push(column);
    }
    for v in values {
        columns.push(ScalarValue::iter_to_array(v)?);
    }
    let columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c)
            } else {
                cast(&c, f.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Some(
        RecordBatch::try_new(schema, columns).map_err(internal)?,
    ))
}

/// The columns of a checkpoint besides the keys': window bounds and when each window was last fed.
const SLOT_COLUMNS: [&str; 3] = ["__window_start", "__window_end", "__fed"];

impl KeyedState {
    /// The state as rows, for a checkpoint: the key columns, the window bounds, when last fed, and each
    /// aggregate's state fields (`a<n>_<field>`); `None` when no window is open.
    pub fn to_batch(&mut self, aggregate: &Aggregate) -> Result<Option<RecordBatch>> {
        let (mut keys, mut bounds) = (Vec::new(), [Vec::new(), Vec::new(), Vec::new()]);
        let mut states: Vec<Vec<Vec<ScalarValue>>> = Vec::new();
        for (key, slots) in self.keys.iter_mut() {
            for slot in slots.iter_mut() {
                keys.push(key.row());
                bounds[0].push(slot.start);
                bounds[1].push(slot.end);
                bounds[2].push(slot.fed);
                for (n, acc) in slot.accumulators.iter_mut().enumerate() {
                    let state = kept_state(acc, &aggregate.aggregates[n])?;
                    if states.len() <= n {
                        states.push(vec![Vec::new(); state.len()]);
                    }
                    for (f, v) in state.into_iter().enumerate() {
                        states[n][f].push(v);
                    }
                }
            }
        }
        if keys.is_empty() {
            return Ok(None);
        }
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (i, c) in self.converter.convert_rows(keys)?.into_iter().enumerate() {
            fields.push(arrow::datatypes::Field::new(
                format!("__key{i}"),
                c.data_type().clone(),
                true,
            ));
            columns.push(c);
        }
        for (name, values) in SLOT_COLUMNS.iter().zip(bounds) {
            fields.push(arrow::datatypes::Field::new(
                *name,
                arrow::datatypes::DataType::Int64,
                false,
            ));
            columns.push(Arc::new(arrow::array::Int64Array::from(values)));
        }
        for (n, fields_of) in states.into_iter().enumerate() {
            for (f, values) in fields_of.into_iter().enumerate() {
                let array = ScalarValue::iter_to_array(values)?;
                fields.push(arrow::datatypes::Field::new(
                    format!("a{n}_{f}"),
                    array.data_type().clone(),
                    true,
                ));
                columns.push(array);
            }
        }
        let schema = Arc::new(arrow::datatypes::Schema::new(fields));
        Ok(Some(
            RecordBatch::try_new(schema, columns).map_err(internal)?,
        ))
    }

    /// Restores the windows of a checkpoint written by [`KeyedState::to_batch`].
    pub fn restore(&mut self, aggregate: &Aggregate, batch: &RecordBatch) -> Result<()> {
        let key_count = count_keys(batch);
        let keys = self
            .converter
            .convert_columns(&batch.columns()[..key_count])?;
        let int = |name: &str| -> Result<Vec<i64>> {
            let c = batch
                .column_by_name(name)
                .ok_or_else(|| internal(format!("no {name}")))?;
            Ok(c.as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .ok_or_else(|| internal(format!("{name} is not Int64")))?
                .values()
                .to_vec())
        };
        let (starts, ends, fed) = (
            int(SLOT_COLUMNS[0])?,
            int(SLOT_COLUMNS[1])?,
            int(SLOT_COLUMNS[2])?,
        );
        let mut at = key_count + SLOT_COLUMNS.len();
        let mut state_columns = Vec::new();
        for a in &aggregate.aggregates {
            let n = a.state_fields()?.len();
            state_columns.push(batch.columns()[at..at + n].to_vec());
            at += n;
        }
        for i in 0..batch.num_rows() {
            let mut slot = new_slot(aggregate, starts[i], ends[i], fed[i])?;
            for (acc, columns) in slot.accumulators.iter_mut().zip(&state_columns) {
                let row: Vec<ArrayRef> = columns.iter().map(|c| c.slice(i, 1)).collect();
                acc.merge_batch(&row)?;
            }
            self.keys.entry(keys.row(i).owned()).or_default().push(slot);
            self.open += 1;
        }
        Ok(())
    }
}

/// How many key columns a checkpoint batch has.
fn count_keys(batch: &RecordBatch) -> usize {
    batch
        .schema()
        .fields()
        .iter()
        .take_while(|f| f.name().starts_with("__key"))
        .count()
}
