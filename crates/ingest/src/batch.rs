//! Turning source rows into Arrow batches for the lake tables.
//!
//! A reader hands each row (its fields as text, with its line or sheet row) to a [`RowBatcher`].
//! The batcher applies the resolved mapping: for orders, a row whose every field parses becomes one row
//! of the raw table (text as it arrived) and one of the orders table (typed, with `is_cancellation`,
//! `line_revenue` and `invoice_month` derived); for any other dataset, one row of its table
//! ([`crate::dataset::rows`]). A row that does not parse becomes one dead letter naming the first field
//! that failed and why. Every row read lands in exactly one of the two, so `read = loaded + rejected`
//! holds by construction. Rows of a mapping with expressions wait in a stage until their derived fields
//! are evaluated ([`crate::derive`]); rows read for inference are only sampled.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, BooleanBuilder, Decimal128Builder, Int64Builder,
    PrimitiveBuilder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use chrono::{Datelike, NaiveDateTime};
use chrono_tz::Tz;

use crate::dataset::rows::DatasetRows;
use crate::mapping::{MAX_MONEY_UNITS, ResolvedMapping, format_scaled};
use crate::schema::{
    DEAD_LETTERS_SCHEMA, MONEY_SCALE, ORDERS_SCHEMA, OrderField, RAW_SCHEMA, money,
};

/// Rows per emitted batch.
pub const BATCH_ROWS: usize = 65_536;

/// Text bytes per emitted batch: a batch is also full at this size, so rows with huge values (a 1 MB
/// description on every line) keep batches, and the memory of a load, bounded.
pub const BATCH_BYTES: usize = 16 * 1024 * 1024;

/// A dead letter's `record` keeps at most this many bytes of text (the source file keeps the rest).
pub const MAX_DEAD_LETTER_RECORD: usize = 1024 * 1024;

/// Largest magnitude accepted for `unit_price` and the derived `line_revenue` (a `decimal(18,4)` holds
/// it exactly): a price of `1.7e308` or a revenue beyond it is a dead letter. In units of the decimal:
/// [`MAX_MONEY_UNITS`].
pub const MAX_MONEY: f64 = 1e14;

/// Where a row came from.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// The source file, as given on the command line or found in a folder.
    pub source_file: Arc<str>,
    /// Excel sheet name, for workbooks.
    pub sheet: Option<Arc<str>>,
    /// Id of the load this row belongs to.
    pub load_id: Arc<str>,
    /// Load time, microseconds since the epoch.
    pub load_time_us: i64,
}

/// A set of batches ready to be written, one per lake table (any may be empty).
#[derive(Debug)]
pub struct Chunk {
    /// Rows for `raw_orders` (always empty for datasets other than orders).
    pub raw: RecordBatch,
    /// Rows for the dataset's table (`orders`, or a user dataset).
    pub rows: RecordBatch,
    /// Rows for the dead-letter table.
    pub dead_letters: RecordBatch,
}

/// Counts for one source file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Records read from the source.
    pub read: u64,
    /// Records loaded into the dataset's table.
    pub loaded: u64,
    /// Records sent to the dead-letter table.
    pub rejected: u64,
}

/// The provenance columns of a table being built.
pub(crate) struct ProvenanceColumns {
    file: StringBuilder,
    line: Int64Builder,
    sheet: StringBuilder,
    load_id: StringBuilder,
}

impl ProvenanceColumns {
    pub(crate) fn new(cap: usize) -> Self {
        ProvenanceColumns {
            file: StringBuilder::with_capacity(cap, cap * 16),
            line: Int64Builder::with_capacity(cap),
            sheet: StringBuilder::new(),
            load_id: StringBuilder::with_capacity(cap, cap * 36),
        }
    }
    pub(crate) fn push(&mut self, p: &Provenance, line: u64) {
        self.file.append_value(&*p.source_file);
        self.line.append_value(line as i64);
        self.sheet.append_option(p.sheet.as_deref());
        self.load_id.append_value(&*p.load_id);
    }
    pub(crate) fn finish(&mut self) -> [ArrayRef; 4] {
        [
            finish_text(&mut self.file),
            finish_primitive(&mut self.line),
            finish_text(&mut self.sheet),
            finish_text(&mut self.load_id),
        ]
    }
}

/// Finishes a builder and replaces it with one sized like what it held: Arrow builders restart
/// empty, and growing them again by doubling on every batch costs copies and fresh pages.
fn finish_text(b: &mut StringBuilder) -> ArrayRef {
    let a = b.finish();
    *b = StringBuilder::with_capacity(a.len().max(1024), a.value_data().len().max(1024));
    Arc::new(a)
}

fn finish_primitive<T: ArrowPrimitiveType>(b: &mut PrimitiveBuilder<T>) -> ArrayRef {
    let a = b.finish();
    *b = PrimitiveBuilder::<T>::with_capacity(a.len().max(1024));
    Arc::new(a)
}

fn money_builder(cap: usize) -> Decimal128Builder {
    Decimal128Builder::with_capacity(cap).with_data_type(money())
}

/// As [`finish_primitive`], keeping the decimal's precision and scale.
fn finish_money(b: &mut Decimal128Builder) -> ArrayRef {
    let a = b.finish();
    *b = money_builder(a.len().max(1024));
    Arc::new(a)
}

fn finish_bool(b: &mut BooleanBuilder) -> ArrayRef {
    let a = b.finish();
    *b = BooleanBuilder::with_capacity(a.len().max(1024));
    Arc::new(a)
}

/// Builds a dataset's batches (for orders also the raw table's) and dead letters from text rows under one
/// resolved mapping.
pub struct RowBatcher {
    mapping: ResolvedMapping,
    provenance: Provenance,
    last_date_format: usize,
    /// The last invoice month and its text (rows come mostly in date order).
    last_month: ((i32, u32), String),
    counts: Counts,
    rows: usize,
    /// Text bytes buffered since the last take (see [`BATCH_BYTES`]).
    bytes: usize,
    // raw
    raw_text: [StringBuilder; 8],
    raw_prov: ProvenanceColumns,
    raw_load_time: TimestampMicrosecondBuilder,
    raw_received: TimestampMicrosecondBuilder,
    /// When the rows being pushed were received (live records), µs since the epoch.
    received_us: Option<i64>,
    /// The rows of a dataset other than orders (the order builders below stay empty then).
    dataset_rows: Option<DatasetRows>,
    /// Sampling for inference: rows are kept as text, nothing is built.
    sample: Option<Sampler>,
    /// Rows waiting for their derived fields (a mapping with expressions).
    stage: Option<crate::derive::Stage>,
    // orders
    invoice_no: StringBuilder,
    stock_code: StringBuilder,
    description: StringBuilder,
    quantity: Int64Builder,
    invoice_date: TimestampMicrosecondBuilder,
    unit_price: Decimal128Builder,
    customer_id: Int64Builder,
    country: StringBuilder,
    is_cancellation: BooleanBuilder,
    line_revenue: Decimal128Builder,
    orders_prov: ProvenanceColumns,
    invoice_month: StringBuilder,
    // dead letters
    dl_prov: ProvenanceColumns,
    dl_field: StringBuilder,
    dl_reason: StringBuilder,
    dl_record: StringBuilder,
    dl_load_time: TimestampMicrosecondBuilder,
    dl_rows: usize,
}

/// Why a record with its own field names cannot be mapped: the field it lacks (when that is why) and the
/// reason, for its dead letter.
#[derive(Debug, Clone)]
pub struct Unmappable {
    /// The required field the record has no value for.
    pub field: Option<String>,
    /// Why.
    pub reason: String,
}

impl From<crate::IngestError> for Unmappable {
    fn from(e: crate::IngestError) -> Unmappable {
        match e {
            crate::IngestError::MissingColumn { field, columns, .. } => Unmappable {
                field: Some(field),
                reason: format!("missing value (the record's fields are: {columns})"),
            },
            other => Unmappable {
                field: None,
                reason: other.to_string(),
            },
        }
    }
}

/// A sample for inference stops at this many bytes of text even before its row count (rows of huge
/// values keep it bounded).
pub const SAMPLE_BYTES: usize = 16 * 1024 * 1024;

/// Rows kept as text for inference; records with other keys (JSON) add their columns.
struct Sampler {
    max: usize,
    bytes: usize,
    columns: Vec<String>,
    /// Position of each column name in `columns`.
    index: std::collections::HashMap<String, usize>,
    rows: Vec<Vec<String>>,
}

impl Sampler {
    fn push(&mut self, columns: &[String], row: &[&str]) {
        self.bytes += row.iter().map(|v| v.len()).sum::<usize>();
        if self.columns.len() > crate::dataset::MAX_COLUMNS {
            return;
        }
        let mut out = vec![String::new(); self.columns.len()];
        for (name, value) in columns.iter().zip(row) {
            let i = match self.index.get(name) {
                Some(&i) => i,
                None => {
                    self.index.insert(name.clone(), self.columns.len());
                    self.columns.push(name.clone());
                    out.push(String::new());
                    self.columns.len() - 1
                }
            };
            out[i] = value.to_string();
        }
        self.rows.push(out);
    }
}

/// A parsed, typed order line.
struct Typed<'a> {
    invoice_no: &'a str,
    stock_code: &'a str,
    description: Option<&'a str>,
    quantity: i64,
    invoice_date: NaiveDateTime,
    /// In 10^-4 units (`decimal(18, 4)`), as are the other money values here.
    unit_price: i128,
    line_revenue: i128,
    customer_id: Option<i64>,
    country: Option<&'a str>,
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

impl RowBatcher {
    /// A batcher for rows of one source (file or sheet).
    pub fn new(mapping: ResolvedMapping, provenance: Provenance) -> Self {
        let cap = 1024;
        let dataset_rows =
            (!mapping.dataset.is_orders()).then(|| DatasetRows::new(mapping.dataset.clone()));
        RowBatcher {
            mapping,
            provenance,
            last_date_format: 0,
            last_month: ((0, 0), String::new()),
            counts: Counts::default(),
            rows: 0,
            bytes: 0,
            raw_text: std::array::from_fn(|_| StringBuilder::with_capacity(cap, cap * 8)),
            raw_prov: ProvenanceColumns::new(cap),
            raw_load_time: TimestampMicrosecondBuilder::with_capacity(cap),
            raw_received: TimestampMicrosecondBuilder::with_capacity(cap),
            received_us: None,
            dataset_rows,
            sample: None,
            stage: None,
            invoice_no: StringBuilder::with_capacity(cap, cap * 6),
            stock_code: StringBuilder::with_capacity(cap, cap * 6),
            description: StringBuilder::with_capacity(cap, cap * 32),
            quantity: Int64Builder::with_capacity(cap),
            invoice_date: TimestampMicrosecondBuilder::with_capacity(cap),
            unit_price: money_builder(cap),
            customer_id: Int64Builder::with_capacity(cap),
            country: StringBuilder::with_capacity(cap, cap * 14),
            is_cancellation: BooleanBuilder::with_capacity(cap),
            line_revenue: money_builder(cap),
            orders_prov: ProvenanceColumns::new(cap),
            invoice_month: StringBuilder::with_capacity(cap, cap * 7),
            dl_prov: ProvenanceColumns::new(0),
            dl_field: StringBuilder::new(),
            dl_reason: StringBuilder::new(),
            dl_record: StringBuilder::new(),
            dl_load_time: TimestampMicrosecondBuilder::new(),
            dl_rows: 0,
        }
    }

    /// Switches the source recorded in provenance for the rows that follow (live records: the request or
    /// page they came in) and the mapping that reads them, keeping counts.
    pub fn set_source(&mut self, source: Arc<str>, mapping: ResolvedMapping) {
        self.flush_stage();
        self.provenance.source_file = source;
        self.set_mapping(mapping);
    }

    /// Sets the shop's time zone, which every mapping of this batcher reads times in.
    pub fn set_timezone(&mut self, timezone: Tz) {
        self.mapping.timezone = timezone;
    }

    /// Switches the mapping for the rows that follow (records with another layout), keeping the time zone.
    pub fn set_mapping(&mut self, mut mapping: ResolvedMapping) {
        // Staged rows are evaluated under the mapping they were read with.
        self.flush_stage();
        mapping.timezone = self.mapping.timezone;
        self.mapping = mapping;
    }

    /// Sets when the rows that follow were received (live records; `None` for files).
    pub fn set_received(&mut self, received_us: Option<i64>) {
        self.received_us = received_us;
    }

    /// Switches the sheet recorded in provenance (Excel workbooks), keeping counts.
    pub fn set_sheet(&mut self, sheet: Option<&str>, mapping: ResolvedMapping) {
        // Staged rows are the previous sheet's.
        self.flush_stage();
        self.provenance.sheet = sheet.map(Arc::from);
        self.set_mapping(mapping);
    }

    /// Keeps the next `max` rows as text instead of building batches (see [`crate::read::sample`]).
    pub fn start_sample(&mut self, max: usize) {
        self.sample = Some(Sampler {
            max,
            bytes: 0,
            columns: Vec::new(),
            index: std::collections::HashMap::new(),
            rows: Vec::new(),
        });
    }

    /// The rows kept since [`start_sample`](Self::start_sample), values in the order of the columns.
    pub fn take_sample(&mut self) -> crate::read::Sample {
        let s = self.sample.take().unwrap_or(Sampler {
            max: 0,
            bytes: 0,
            columns: Vec::new(),
            index: std::collections::HashMap::new(),
            rows: Vec::new(),
        });
        crate::read::Sample {
            columns: s.columns,
            rows: s.rows,
        }
    }

    /// The dataset the rows are read into.
    pub fn dataset(&self) -> &Arc<crate::dataset::Dataset> {
        &self.mapping.dataset
    }

    /// Counts so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Rows buffered (loaded and rejected) since the last [`take`](Self::take).
    pub fn buffered(&self) -> usize {
        self.rows + self.dl_rows + self.stage.as_ref().map_or(0, |s| s.rows.len())
    }

    /// Holds rows back until their derived fields are evaluated (see [`crate::derive`]).
    pub(crate) fn set_stage(&mut self, stage: crate::derive::Stage) {
        self.stage = Some(stage);
    }

    /// Evaluates the staged rows' derived fields and adds them as rows or dead letters.
    fn flush_stage(&mut self) {
        let Some(stage) = &mut self.stage else {
            return;
        };
        if stage.rows.is_empty() {
            return;
        }
        let targets: Vec<String> = self
            .mapping
            .expressions
            .iter()
            .map(|(f, _)| f.clone())
            .collect();
        let evaluated = stage.flush(&self.mapping.columns, &targets, &self.provenance);
        for (line, values, failed) in evaluated {
            let row: Vec<&str> = values.iter().map(String::as_str).collect();
            match failed {
                None => self.push_parsed(line, &row),
                Some((field, reason)) => {
                    let record = record_json(&self.mapping.columns, &row);
                    self.reject(line, Some(&field), &reason, record)
                }
            }
        }
    }

    /// Whether a batch is full and should be taken.
    pub fn is_full(&self) -> bool {
        if let Some(s) = &self.sample {
            // Past the column limit the file is refused for a dataset: no need to read on.
            let too_wide = s.columns.len() > crate::dataset::MAX_COLUMNS;
            return s.rows.len() >= s.max || s.bytes >= SAMPLE_BYTES || too_wide;
        }
        self.buffered() >= BATCH_ROWS || self.bytes >= BATCH_BYTES
    }

    fn parse<'a>(
        m: &'a ResolvedMapping,
        row: &[&'a str],
        last_date: &mut usize,
    ) -> Result<Typed<'a>, (&'static str, String)> {
        let text = |f: OrderField| -> Option<&'a str> { m.text(f, row) };
        let required = |f: OrderField| -> Result<&'a str, (&'static str, String)> {
            non_empty(text(f)).ok_or((f.name(), "missing value".to_string()))
        };
        let failed = |f: OrderField| move |e: String| (f.name(), e);
        let invoice_no = required(OrderField::InvoiceNo)?;
        let stock_code = required(OrderField::StockCode)?;
        let quantity = m
            .parse_integer(OrderField::Quantity, required(OrderField::Quantity)?)
            .map_err(failed(OrderField::Quantity))?;
        let invoice_date = m
            .parse_date(required(OrderField::InvoiceDate)?, last_date)
            .map_err(failed(OrderField::InvoiceDate))?;
        let unit_price = m
            .parse_decimal(OrderField::UnitPrice, required(OrderField::UnitPrice)?)
            .map_err(failed(OrderField::UnitPrice))?;
        let line_revenue = checked_revenue(quantity, unit_price)?;
        let customer_id = match non_empty(text(OrderField::CustomerId)) {
            None => None,
            Some(t) => Some(
                m.parse_integer(OrderField::CustomerId, t)
                    .map_err(failed(OrderField::CustomerId))?,
            ),
        };
        Ok(Typed {
            invoice_no,
            stock_code,
            description: non_empty(text(OrderField::Description)),
            quantity,
            invoice_date,
            unit_price,
            line_revenue,
            customer_id,
            country: non_empty(text(OrderField::Country)),
        })
    }

    /// Adds one source row (its fields as text) found at `line`.
    pub fn push_row(&mut self, line: u64, row: &[&str]) {
        self.counts.read += 1;
        self.bytes += row.iter().map(|f| f.len()).sum::<usize>();
        if let Some(sample) = &mut self.sample {
            sample.push(&self.mapping.columns, row);
            return;
        }
        if let Some(stage) = &mut self.stage {
            stage
                .rows
                .push((line, row.iter().map(|v| v.to_string()).collect()));
            return;
        }
        self.push_parsed(line, row);
    }

    /// Parses one row (derived fields included) into the dataset's rows, or a dead letter.
    fn push_parsed(&mut self, line: u64, row: &[&str]) {
        if let Some(rows) = &mut self.dataset_rows {
            match rows.push(&self.mapping, row, &self.provenance, line) {
                Ok(()) => {
                    self.counts.loaded += 1;
                    self.rows += 1;
                }
                Err((field, reason)) => {
                    let record = record_json(&self.mapping.columns, row);
                    self.reject(line, Some(&field), &reason, record)
                }
            }
            return;
        }
        match Self::parse(&self.mapping, row, &mut self.last_date_format) {
            Ok(t) => {
                // Inline, not a `&mut self` method: `t` borrows the mapping (constants, defaults).
                self.counts.loaded += 1;
                self.rows += 1;
                for (i, b) in self.raw_text.iter_mut().enumerate() {
                    b.append_option(self.mapping.raw(OrderField::ALL[i], row));
                }
                self.raw_prov.push(&self.provenance, line);
                self.raw_received.append_option(self.received_us);
                self.raw_load_time
                    .append_value(self.provenance.load_time_us);
                self.invoice_no.append_value(t.invoice_no);
                self.stock_code.append_value(t.stock_code);
                self.description.append_option(t.description);
                self.quantity.append_value(t.quantity);
                self.invoice_date
                    .append_value(t.invoice_date.and_utc().timestamp_micros());
                self.unit_price.append_value(t.unit_price);
                self.customer_id.append_option(t.customer_id);
                self.country.append_option(t.country);
                // Cancellations: the source marks them with a `C` invoice prefix (their quantities are negative).
                self.is_cancellation
                    .append_value(t.invoice_no.starts_with(['C', 'c']));
                self.line_revenue.append_value(t.line_revenue);
                self.orders_prov.push(&self.provenance, line);
                self.push_month(t.invoice_date);
            }
            Err((field, reason)) => {
                let record = record_json(&self.mapping.columns, row);
                self.reject(line, Some(field), &reason, record)
            }
        }
    }

    fn push_month(&mut self, date: NaiveDateTime) {
        let ym = (date.year(), date.month());
        if self.last_month.0 != ym {
            self.last_month = (ym, format!("{:04}-{:02}", ym.0, ym.1));
        }
        self.invoice_month.append_value(&self.last_month.1);
    }

    /// Adds a record that could not even be split into fields (bad JSON, text across a column gap, …):
    /// its text is kept as `{"_raw": text}`.
    pub fn push_unreadable(&mut self, line: u64, reason: &str, text: &str) {
        self.counts.read += 1;
        self.bytes += text.len().min(MAX_DEAD_LETTER_RECORD);
        let mut record = String::from("{\"_raw\":");
        push_json_string(&mut record, text);
        record.push('}');
        self.reject(line, None, reason, record);
    }

    /// Adds a record split into fields that do not fit the source's columns (a CSV row with the wrong
    /// number of fields): kept as a JSON object of column → text, extra fields as `_extra_1`, ….
    pub fn push_misshapen(&mut self, line: u64, reason: &str, row: &[&str]) {
        self.counts.read += 1;
        self.bytes += row.iter().map(|f| f.len()).sum::<usize>();
        let record = record_json(&self.mapping.columns, row);
        self.reject(line, None, reason, record);
    }

    /// Adds a record already held as a JSON object (a live record whose fields cannot be mapped).
    pub fn push_rejected_object(
        &mut self,
        line: u64,
        failure: &Unmappable,
        object: &serde_json::Map<String, serde_json::Value>,
    ) {
        let (field, reason) = (failure.field.as_deref(), failure.reason.as_str());
        self.counts.read += 1;
        let mut record = serde_json::to_string(object).unwrap_or_else(|_| "{}".into());
        if record.len() > MAX_DEAD_LETTER_RECORD {
            let mut raw = String::from("{\"_raw\":");
            push_json_string(&mut raw, &record);
            raw.push('}');
            record = raw;
        }
        self.bytes += record.len() + reason.len();
        self.reject(line, field, reason, record);
    }

    fn reject(&mut self, line: u64, field: Option<&str>, reason: &str, record: String) {
        self.counts.rejected += 1;
        self.dl_rows += 1;
        self.dl_prov.push(&self.provenance, line);
        self.dl_field.append_option(field);
        self.dl_reason.append_value(reason);
        self.dl_record.append_value(record);
        self.dl_load_time.append_value(self.provenance.load_time_us);
    }

    /// Takes the buffered rows as batches.
    pub fn take(&mut self) -> Chunk {
        self.flush_stage();
        self.rows = 0;
        self.bytes = 0;
        self.dl_rows = 0;
        let mut raw: Vec<ArrayRef> = self.raw_text.iter_mut().map(finish_text).collect();
        raw.extend(self.raw_prov.finish());
        raw.push(finish_primitive(&mut self.raw_load_time));
        raw.push(finish_primitive(&mut self.raw_received));

        let mut orders: Vec<ArrayRef> = vec![
            finish_text(&mut self.invoice_no),
            finish_text(&mut self.stock_code),
            finish_text(&mut self.description),
            finish_primitive(&mut self.quantity),
            finish_primitive(&mut self.invoice_date),
            finish_money(&mut self.unit_price),
            finish_primitive(&mut self.customer_id),
            finish_text(&mut self.country),
            finish_bool(&mut self.is_cancellation),
            finish_money(&mut self.line_revenue),
        ];
        orders.extend(self.orders_prov.finish());
        orders.push(finish_text(&mut self.invoice_month));

        let mut dead: Vec<ArrayRef> = self.dl_prov.finish().to_vec();
        dead.push(finish_text(&mut self.dl_field));
        dead.push(finish_text(&mut self.dl_reason));
        dead.push(finish_text(&mut self.dl_record));
        dead.push(finish_primitive(&mut self.dl_load_time));
        dead.push(Arc::new(arrow::array::StringArray::from(vec![
            Some(
                self.mapping.dataset.name.as_str()
            );
            dead[0].len()
        ])));

        let batch = |schema: &arrow::datatypes::SchemaRef, cols: Vec<ArrayRef>| {
            RecordBatch::try_new(schema.clone(), cols).expect("builders match the table schemas")
        };
        let rows = match &mut self.dataset_rows {
            Some(rows) => rows.take(),
            None => batch(&ORDERS_SCHEMA, orders),
        };
        Chunk {
            raw: batch(&RAW_SCHEMA, raw),
            rows,
            dead_letters: batch(&DEAD_LETTERS_SCHEMA, dead),
        }
    }
}

/// `quantity × unit_price` exactly (both in 10^-4 units), or the dead-letter reason when a magnitude is
/// beyond [`MAX_MONEY`].
fn checked_revenue(quantity: i64, unit_price: i128) -> Result<i128, (&'static str, String)> {
    let scale = MONEY_SCALE as u32;
    if unit_price.unsigned_abs() >= MAX_MONEY_UNITS {
        return Err((
            OrderField::UnitPrice.name(),
            format!(
                "{} is beyond the accepted magnitude (below 1e14)",
                format_scaled(unit_price, scale)
            ),
        ));
    }
    // At most 2^63 × 10^18: an i128 holds it.
    let revenue = i128::from(quantity) * unit_price;
    if revenue.unsigned_abs() >= MAX_MONEY_UNITS {
        return Err((
            "line_revenue",
            format!(
                "{quantity} × {} = {} is beyond the accepted magnitude (below 1e14)",
                format_scaled(unit_price, scale),
                format_scaled(revenue, scale)
            ),
        ));
    }
    Ok(revenue)
}

/// A row as a JSON object of column → text in the source's column order; fields beyond the columns are
/// `_extra_1`, …; the whole is cut at [`MAX_DEAD_LETTER_RECORD`] bytes (the last values dropped).
fn record_json(columns: &[String], row: &[&str]) -> String {
    let size: usize = row.iter().map(|f| f.len() + 16).sum();
    let mut out = String::with_capacity(64 + size.min(MAX_DEAD_LETTER_RECORD));
    out.push('{');
    for (i, value) in row.iter().enumerate() {
        if out.len() > MAX_DEAD_LETTER_RECORD {
            break;
        }
        if i > 0 {
            out.push(',');
        }
        match columns.get(i) {
            Some(c) => push_json_string(&mut out, c),
            None => push_json_string(&mut out, &format!("_extra_{}", i + 1 - columns.len())),
        }
        out.push(':');
        push_json_string(&mut out, value);
    }
    out.push('}');
    out
}

/// Appends `text` as a JSON string, cut at a char boundary within [`MAX_DEAD_LETTER_RECORD`] bytes.
fn push_json_string(out: &mut String, text: &str) {
    let mut end = text.len().min(MAX_DEAD_LETTER_RECORD);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.push_str(&serde_json::to_string(&text[..end]).expect("a string serializes"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Int64Array};
    use std::path::Path;

    fn batcher() -> RowBatcher {
        let columns: Vec<String> = crate::generate::ONLINE_RETAIL_HEADER
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mapping = ResolvedMapping::resolve(
            Path::new("t.csv"),
            &columns,
            None,
            &crate::dataset::Dataset::orders(),
        )
        .unwrap();
        RowBatcher::new(
            mapping,
            Provenance {
                source_file: "t.csv".into(),
                sheet: None,
                load_id: "L".into(),
                load_time_us: 0,
            },
        )
    }

    #[test]
    fn every_row_is_loaded_or_rejected_with_field_and_reason() {
        let mut b = batcher();
        b.push_row(
            2,
            &[
                "536365",
                "85123A",
                "WHITE HANGING HEART ",
                "6",
                "2010-12-01 08:26:00",
                "2.55",
                "17850.0",
                "United Kingdom",
            ],
        );
        b.push_row(
            3,
            &[
                "C536379",
                "D",
                "Discount",
                "-1",
                "2010-12-01 09:41:00",
                "27.5",
                "",
                "United Kingdom",
            ],
        );
        b.push_row(
            4,
            &[
                "536380",
                "22961",
                "JAM",
                "lots",
                "2010-12-01 09:41:00",
                "1.45",
                "",
                "France",
            ],
        );
        assert_eq!(
            b.counts(),
            Counts {
                read: 3,
                loaded: 2,
                rejected: 1
            }
        );
        let chunk = b.take();
        assert_eq!(chunk.rows.num_rows(), 2);
        assert_eq!(chunk.raw.num_rows(), 2);
        let cust = chunk
            .rows
            .column(6)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(cust.value(0), 17850);
        assert!(cust.is_null(1));
        assert!(
            chunk.rows.column(8).as_boolean().value(1),
            "C invoice is a cancellation"
        );
        assert_eq!(
            chunk.rows.column(2).as_string::<i32>().value(0),
            "WHITE HANGING HEART"
        );
        let dl = &chunk.dead_letters;
        assert_eq!(dl.num_rows(), 1);
        assert_eq!(
            dl.column(1)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            4
        );
        assert_eq!(dl.column(4).as_string::<i32>().value(0), "quantity");
        assert!(dl.column(5).as_string::<i32>().value(0).contains("lots"));
    }

    fn dead_letter(b: &mut RowBatcher) -> (String, String, String) {
        let dl = b.take().dead_letters;
        assert_eq!(dl.num_rows(), 1);
        let text = |i: usize| {
            let c = dl.column(i).as_string::<i32>();
            if c.is_null(0) {
                String::new()
            } else {
                c.value(0).to_string()
            }
        };
        (text(4), text(5), text(6))
    }

    #[test]
    fn dead_letter_records_are_json_objects_in_source_column_order() {
        let mut b = batcher();
        let row = [
            "536380",
            "22961",
            "JAM \"x\"",
            "lots",
            "2010-12-01 09:41:00",
            "1.45",
            "",
            "France",
        ];
        b.push_row(4, &row);
        let (_, _, record) = dead_letter(&mut b);
        assert!(
            record.starts_with(r#"{"InvoiceNo":"536380","StockCode":"22961""#),
            "{record}"
        );
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&record).unwrap();
        let keys: Vec<&String> = parsed.keys().collect();
        assert_eq!(
            keys,
            crate::generate::ONLINE_RETAIL_HEADER
                .iter()
                .collect::<Vec<_>>()
        );
        assert_eq!(parsed["Description"], "JAM \"x\"");

        b.push_misshapen(
            5,
            "expected 8 fields",
            &["1", "2", "3", "4", "5", "6", "7", "8", "9"],
        );
        let (_, _, record) = dead_letter(&mut b);
        assert!(
            record.ends_with(r#""Country":"8","_extra_1":"9"}"#),
            "{record}"
        );

        b.push_unreadable(6, "invalid JSON", "{not json");
        let (field, _, record) = dead_letter(&mut b);
        assert_eq!(field, "");
        assert_eq!(record, r#"{"_raw":"{not json"}"#);
    }

    #[test]
    fn overflowing_or_huge_money_is_a_dead_letter() {
        let mut b = batcher();
        let row = |qty: &'static str, price: &'static str| {
            ["1", "A", "", qty, "2010-12-01 09:41:00", price, "", ""]
        };
        b.push_row(2, &row("6", "1.7e308"));
        let (field, reason, _) = dead_letter(&mut b);
        assert_eq!(field, "unit_price");
        assert!(reason.contains("1e14"), "{reason}");
        b.push_row(3, &row("9000000000000000", "99999"));
        let (field, reason, _) = dead_letter(&mut b);
        assert_eq!(field, "line_revenue", "{reason}");
        b.push_row(4, &row("80995", "2.08"));
        assert_eq!(b.counts().loaded, 1, "the real data's largest line loads");
    }

    #[test]
    fn a_batch_is_full_at_its_byte_size_too() {
        let mut b = batcher();
        let big = "x".repeat(1024 * 1024);
        let mut n = 0;
        while !b.is_full() {
            b.push_row(
                n,
                &["1", "A", &big, "1", "2010-12-01 09:41:00", "1", "", ""],
            );
            n += 1;
        }
        assert!(
            n <= (BATCH_BYTES / big.len()) as u64 + 1,
            "{n} rows of 1 MiB"
        );
    }

    #[test]
    fn times_with_an_offset_are_converted_into_the_shop_time_zone() {
        let mut b = batcher();
        b.set_timezone(chrono_tz::Tz::Europe__London);
        let date = |text: &'static str| ["1", "A", "", "1", text, "1", "", ""];
        b.push_row(2, &date("2011-06-01T12:00:00Z")); // BST: 13:00 in London
        b.push_row(3, &date("2011-06-01 14:00:00+02:00"));
        b.push_row(4, &date("2011-06-01 13:00:00")); // naive: London wall-clock as is
        b.push_row(5, &date("2011-12-01T12:00:00.5Z")); // GMT
        let orders = b.take().rows;
        assert_eq!(orders.num_rows(), 4);
        let ts = orders
            .column(4)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        let wall = |i: usize| {
            chrono::DateTime::from_timestamp_micros(ts.value(i))
                .unwrap()
                .naive_utc()
                .to_string()
        };
        assert_eq!(wall(0), "2011-06-01 13:00:00");
        assert_eq!(wall(1), "2011-06-01 13:00:00");
        assert_eq!(wall(2), "2011-06-01 13:00:00");
        assert_eq!(wall(3), "2011-12-01 12:00:00.500");
    }
}
