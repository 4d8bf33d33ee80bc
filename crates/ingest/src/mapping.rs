//! Schema mapping: how a source's columns and text become a dataset's fields.
//!
//! A [`MappingConfig`] comes from the `[[mappings]]` tables of the config file (for orders, or the dataset
//! it names): columns, types, constants, defaults, date formats and SQL expressions per field. Without one,
//! a column named like a field loads into it; for orders the Online Retail spellings (`InvoiceNo`,
//! `StockCode`, … in any case or spacing) are known too. Resolution happens once per file or record layout
//! ([`ResolvedMapping::resolve`]); the per-value parsers below are on the hot path and allocate nothing.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::error::IngestError;
use std::sync::Arc;

use crate::dataset::Dataset;
use crate::schema::{MONEY_SCALE, OrderField};

/// How the text of one field is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// The field's own default: text for names, integer for quantity and customer id, decimal for prices,
    /// timestamp (with `date_formats`) for the invoice date.
    #[default]
    Auto,
    /// Free text.
    Text,
    /// A whole number; `17850.0` is accepted as 17850.
    Integer,
    /// A number with a decimal point: `2.55`.
    Decimal,
    /// A number with a decimal comma and optional `.` thousands separators: `1.234,55`.
    DecimalComma,
    /// An integer count of cents: `255` is 2.55.
    Cents,
    /// An Excel date serial (days since 1899-12-30, fraction is the time of day).
    ExcelSerial,
    /// Seconds since the Unix epoch.
    UnixSeconds,
}

/// A mapping of one family of source files onto the orders schema (a `[[mappings]]` table).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// Name of the mapping, shown in load summaries and errors.
    pub name: String,
    /// File-name patterns (`*` and `?`) this mapping applies to, e.g. `"shop-export-*.csv"`.
    pub files: Vec<String>,
    /// The dataset these files load into (`orders` when not given).
    #[serde(default)]
    pub dataset: Option<String>,
    /// Canonical field -> source column name, e.g. `invoice_no = "Order ID"`.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Canonical field -> how its text is read.
    #[serde(default)]
    pub types: BTreeMap<String, FieldType>,
    /// chrono formats tried in order for `invoice_date`, e.g. `["%m/%d/%Y %H:%M", "%Y%m%d"]`;
    /// `"excel_serial"` and `"unix_seconds"` are accepted as formats too.
    #[serde(default)]
    pub date_formats: Vec<String>,
    /// Canonical field -> a value used for every row, e.g. `country = "Germany"`.
    #[serde(default)]
    pub constants: BTreeMap<String, String>,
    /// Canonical field -> a value used when the source value is empty or the column absent.
    #[serde(default)]
    pub defaults: BTreeMap<String, String>,
    /// Field -> a SQL expression over the source's columns (snake_case names, typed as inferred) and
    /// `_file`, `_line`, evaluated by the engine: `unit_price = "line_total / qty"`.
    #[serde(default)]
    pub expressions: BTreeMap<String, String>,
    /// Field delimiter for delimited text, when detection should not guess.
    pub delimiter: Option<char>,
    /// Whether delimited text has a header row, when detection should not guess.
    pub has_header: Option<bool>,
}

impl MappingConfig {
    /// Whether this mapping applies to `path` (its file name matches one of `files`).
    pub fn applies_to(&self, path: &Path) -> bool {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        self.files
            .iter()
            .any(|pattern| glob_match(pattern.as_bytes(), name.as_bytes()))
    }

    /// The field a source column is mapped to by `columns` (`customer_id` for `Kundennummer`).
    pub fn field_of(&self, source: &str) -> Option<&str> {
        let n = normalise(source);
        self.columns
            .iter()
            .find(|(_, s)| *s == source || normalise(s) == n)
            .map(|(field, _)| field.as_str())
    }

    /// The dataset this mapping loads into.
    pub fn dataset_name(&self) -> &str {
        self.dataset.as_deref().unwrap_or("orders")
    }

    /// Checks that every key names a column of `dataset` and every date format is usable.
    pub fn validate(&self, dataset: &Dataset) -> Result<(), IngestError> {
        let bad = |reason: String| IngestError::BadMapping {
            mapping: self.name.clone(),
            reason,
        };
        for (section, keys) in [
            ("columns", self.columns.keys().collect::<Vec<_>>()),
            ("types", self.types.keys().collect()),
            ("constants", self.constants.keys().collect()),
            ("defaults", self.defaults.keys().collect()),
            ("expressions", self.expressions.keys().collect()),
        ] {
            for key in keys {
                if dataset.index_of(key).is_none() {
                    return Err(bad(format!(
                        "unknown field `{key}` in `{section}` (fields of `{}` are: {})",
                        dataset.name,
                        dataset.column_names().join(", ")
                    )));
                }
            }
        }
        for format in &self.date_formats {
            DateFormat::parse(format).map_err(bad)?;
        }
        for key in self.expressions.keys() {
            if self.constants.contains_key(key) || self.columns.contains_key(key) {
                return Err(bad(format!(
                    "`{key}` has an expression and also a column or constant: give one"
                )));
            }
        }
        if self.files.is_empty() {
            return Err(bad(
                "`files` is empty: give at least one file-name pattern".into()
            ));
        }
        Ok(())
    }
}

/// `*` and `?` glob matching on bytes (file names only, so no `/` handling).
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_match(&pattern[1..], name) || (!name.is_empty() && glob_match(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => glob_match(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p.eq_ignore_ascii_case(n) => glob_match(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// One way of reading an invoice date.
#[derive(Debug, Clone, PartialEq)]
pub enum DateFormat {
    /// A chrono format with date and time.
    DateTime(String),
    /// A chrono format with date, time and a UTC offset (`%z`, `%:z`): converted into the shop's time zone.
    Aware(String),
    /// A chrono format with a date only (midnight).
    Date(String),
    /// Excel date serial.
    ExcelSerial,
    /// Seconds since the Unix epoch.
    UnixSeconds,
}

impl DateFormat {
    /// Parses a chrono format (or `excel_serial`, `unix_seconds`), naming a bad one.
    pub fn parse(spec: &str) -> Result<DateFormat, String> {
        match spec {
            "excel_serial" => return Ok(DateFormat::ExcelSerial),
            "unix_seconds" => return Ok(DateFormat::UnixSeconds),
            _ => {}
        }
        let has_time = ["%H", "%I", "%M", "%S", "%T", "%R", "%s"]
            .iter()
            .any(|t| spec.contains(t));
        // chrono reports bad specifiers at parse time only; try one to catch them now.
        let probe = NaiveDateTime::parse_from_str("", spec);
        if let Err(e) = probe
            && e.kind() == chrono::format::ParseErrorKind::BadFormat
        {
            return Err(format!("bad date format `{spec}`"));
        }
        let has_offset = ["%z", "%:z", "%::z", "%#z"]
            .iter()
            .any(|t| spec.contains(t));
        Ok(if has_offset {
            DateFormat::Aware(spec.into())
        } else if has_time {
            DateFormat::DateTime(spec.into())
        } else {
            DateFormat::Date(spec.into())
        })
    }

    /// The time `text` reads as in this format, in the shop's time zone `tz`.
    pub fn apply(&self, text: &str, tz: Tz) -> Option<NaiveDateTime> {
        match self {
            DateFormat::DateTime(f) => NaiveDateTime::parse_from_str(text, f).ok(),
            DateFormat::Aware(f) => DateTime::parse_from_str(text, f)
                .ok()
                .map(|d| wall_clock(&d, tz)),
            DateFormat::Date(f) => NaiveDate::parse_from_str(text, f)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0)),
            DateFormat::ExcelSerial => text.parse::<f64>().ok().and_then(excel_serial_to_datetime),
            DateFormat::UnixSeconds => text
                .parse::<i64>()
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .map(|d| d.with_timezone(&tz).naive_local()),
        }
    }
}

/// An instant as the wall-clock time of the shop's time zone (what the lake keeps).
fn wall_clock(instant: &DateTime<FixedOffset>, tz: Tz) -> NaiveDateTime {
    instant.with_timezone(&tz).naive_local()
}

/// Text with a UTC offset or `Z` in the usual spellings (RFC 3339 with `T` or a space, RFC 2822, `%z`
/// without a colon), converted into the shop's time zone; `None` when it carries no offset.
fn parse_aware(text: &str, tz: Tz) -> Option<NaiveDateTime> {
    if let Ok(d) = DateTime::parse_from_rfc3339(text) {
        return Some(wall_clock(&d, tz));
    }
    let last = text.as_bytes().last()?;
    if !(last.is_ascii_digit() || *last == b'Z' || *last == b'C') {
        return None;
    }
    if let Some(naive) = text.strip_suffix('Z').or_else(|| text.strip_suffix(" UTC")) {
        let n = NaiveDateTime::parse_from_str(naive.trim_end(), "%Y-%m-%d %H:%M:%S%.f")
            .or_else(|_| NaiveDateTime::parse_from_str(naive.trim_end(), "%Y-%m-%dT%H:%M:%S%.f"))
            .ok()?;
        return Some(n.and_utc().with_timezone(&tz).naive_local());
    }
    AWARE_FORMATS
        .iter()
        .find_map(|f| DateTime::parse_from_str(text, f).ok())
        .or_else(|| DateTime::parse_from_rfc2822(text).ok())
        .map(|d| wall_clock(&d, tz))
}

/// Offset spellings tried after RFC 3339.
const AWARE_FORMATS: [&str; 4] = [
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f %#z",
    "%Y-%m-%d %H:%M%#z",
];

/// The formats tried when a mapping gives none, after the fast ISO path.
const DEFAULT_DATE_FORMATS: [&str; 6] = [
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d",
    "%m/%d/%Y",
];

/// Converts an Excel date serial (1900 date system) to a timestamp, to the nearest second.
pub fn excel_serial_to_datetime(serial: f64) -> Option<NaiveDateTime> {
    if !serial.is_finite() || !(1.0..2_958_466.0).contains(&serial) {
        return None;
    }
    let epoch = NaiveDate::from_ymd_opt(1899, 12, 30)?.and_hms_opt(0, 0, 0)?;
    let seconds = (serial * 86_400.0).round() as i64;
    epoch.checked_add_signed(chrono::Duration::seconds(seconds))
}

/// Where a canonical field's value comes from in one file.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldSource {
    /// Column number in the source's rows.
    Column(usize),
    /// The same value for every row.
    Constant(String),
    /// Nowhere: the default (if any) or null.
    Absent,
}

/// Mappings resolved per distinct column layout, for sources whose records each carry their own field
/// names (JSON records, live records): a key that first appears in the millionth record is mapped like
/// one in the first. At most [`LayoutCache::CAPACITY`] layouts are kept (a hostile source cannot grow it).
#[derive(Debug)]
pub struct LayoutCache {
    path: std::path::PathBuf,
    mapping: Option<MappingConfig>,
    resolved: std::collections::HashMap<Vec<String>, ResolvedMapping>,
    /// Bytes of the column names of the cached layouts.
    bytes: usize,
}

impl LayoutCache {
    /// Layouts kept before the cache starts over.
    pub const CAPACITY: usize = 1024;
    /// Bytes of column names kept before the cache starts over (a layout larger than this is not kept).
    pub const CAPACITY_BYTES: usize = 8 * 1024 * 1024;

    /// A cache for the records of `path` (or a live source's name) under `mapping`.
    pub fn new(path: &Path, mapping: Option<MappingConfig>) -> Self {
        LayoutCache {
            path: path.to_path_buf(),
            mapping,
            resolved: std::collections::HashMap::new(),
            bytes: 0,
        }
    }

    /// The mapping for records with these field names, in this order.
    pub fn resolve(
        &mut self,
        columns: &[String],
        dataset: &Arc<Dataset>,
    ) -> Result<ResolvedMapping, IngestError> {
        if let Some(m) = self.resolved.get(columns)
            && Arc::ptr_eq(&m.dataset, dataset)
        {
            return Ok(m.clone());
        }
        let m = ResolvedMapping::resolve(&self.path, columns, self.mapping.as_ref(), dataset)?;
        // Names are held twice: as the key and in the mapping.
        let size: usize = columns.iter().map(|c| 2 * (c.len() + 24)).sum();
        if size > Self::CAPACITY_BYTES {
            return Ok(m);
        }
        if self.resolved.len() >= Self::CAPACITY || self.bytes + size > Self::CAPACITY_BYTES {
            self.resolved.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        self.resolved.insert(columns.to_vec(), m.clone());
        Ok(m)
    }
}

/// A mapping resolved against one file's columns: ready to apply to each row.
#[derive(Debug, Clone)]
pub struct ResolvedMapping {
    /// Name of the mapping used (`online-retail` when none was configured for orders, else the dataset's).
    pub name: String,
    /// The dataset the rows are read into.
    pub dataset: Arc<Dataset>,
    /// Source per dataset column, in column order.
    pub sources: Vec<FieldSource>,
    /// Default per dataset column.
    pub defaults: Vec<Option<String>>,
    /// Type per dataset column.
    pub types: Vec<FieldType>,
    /// Explicit date formats (empty: the built-in list).
    pub date_formats: Vec<DateFormat>,
    /// Per dataset column, the date format inferred from the file (tried first; `None`: the usual ones).
    pub column_dates: Vec<Option<DateFormat>>,
    /// The shop's time zone: naive times are wall-clock times in it, times with an offset are converted into it.
    pub timezone: Tz,
    /// The source's column names, unique (a repeated or empty name gets a suffix), for dead-letter records;
    /// then one `<field> (derived)` per expression, whose values follow the source's in each row.
    pub columns: std::sync::Arc<[String]>,
    /// (field, SQL) of each derived field, in column order: field `f` reads row value
    /// `source columns + k` for the `k`-th expression.
    pub expressions: Vec<(String, String)>,
    /// Source columns no field reads (kept up to date by [`ResolvedMapping::set_source`]); empty with
    /// expressions, whose SQL reads columns the mapping does not see.
    pub unused: Vec<usize>,
}

/// Column names made unique and non-empty: `column_3` for a blank third name, `sku#2` for a second `sku`.
fn unique_names(columns: &[String]) -> Vec<String> {
    let mut seen: std::collections::HashSet<String> =
        std::collections::HashSet::with_capacity(columns.len());
    let mut out: Vec<String> = Vec::with_capacity(columns.len());
    for (i, c) in columns.iter().enumerate() {
        let base = if c.is_empty() {
            format!("column_{}", i + 1)
        } else {
            c.clone()
        };
        let mut name = base.clone();
        let mut n = 1;
        while seen.contains(&name) {
            n += 1;
            name = format!("{base}#{n}");
        }
        seen.insert(name.clone());
        out.push(name);
    }
    out
}

/// Column names for an error message: the first few, and how many there are.
fn list_columns(columns: &[String]) -> String {
    const SHOWN: usize = 40;
    let mut text: String = columns
        .iter()
        .take(SHOWN)
        .map(|c| c.chars().take(64).collect::<String>())
        .collect::<Vec<_>>()
        .join(", ");
    if columns.len() > SHOWN {
        text.push_str(&format!(", … ({} columns)", columns.len()));
    }
    text
}

/// Normalises a column name for matching: lowercase ASCII letters and digits only.
fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Source column names (normalised) recognised without a mapping for column `i` of `dataset`: its own name,
/// and for orders the Online Retail spellings.
fn aliases(dataset: &Dataset, i: usize) -> Vec<std::borrow::Cow<'static, str>> {
    if dataset.is_orders() {
        builtin_aliases(OrderField::ALL[i])
            .iter()
            .map(|a| std::borrow::Cow::Borrowed(*a))
            .collect()
    } else {
        vec![std::borrow::Cow::Owned(normalise(&dataset.columns[i].name))]
    }
}

/// Column names recognised without a mapping (normalised), per canonical field.
fn builtin_aliases(field: OrderField) -> &'static [&'static str] {
    match field {
        OrderField::InvoiceNo => &[
            "invoiceno",
            "invoice",
            "invoicenumber",
            "orderid",
            "orderno",
        ],
        OrderField::StockCode => &["stockcode", "sku", "productid", "productcode"],
        OrderField::Description => &["description", "productname", "product"],
        OrderField::Quantity => &["quantity", "qty"],
        OrderField::InvoiceDate => &["invoicedate", "orderdate", "date"],
        OrderField::UnitPrice => &["unitprice", "price"],
        OrderField::CustomerId => &["customerid", "customer"],
        OrderField::Country => &["country"],
    }
}

impl ResolvedMapping {
    /// Resolves `mapping` (or, without one, the dataset's column names and, for orders, the built-in Online
    /// Retail names) against a file's column names.
    pub fn resolve(
        path: &Path,
        columns: &[String],
        mapping: Option<&MappingConfig>,
        dataset: &Arc<Dataset>,
    ) -> Result<ResolvedMapping, IngestError> {
        let n = dataset.columns.len();
        let default_name = if dataset.is_orders() {
            "online-retail".to_string()
        } else {
            dataset.name.clone()
        };
        let mut resolved = ResolvedMapping {
            name: mapping.map_or(default_name, |m| m.name.clone()),
            dataset: dataset.clone(),
            sources: vec![FieldSource::Absent; n],
            defaults: vec![None; n],
            types: vec![FieldType::Auto; n],
            date_formats: Vec::new(),
            column_dates: vec![None; n],
            timezone: Tz::UTC,
            columns: unique_names(columns).into(),
            expressions: Vec::new(),
            unused: Vec::new(),
        };
        for (i, column) in dataset.columns.iter().enumerate() {
            resolved.column_dates[i] = column
                .format
                .as_deref()
                .and_then(|f| DateFormat::parse(f).ok());
        }
        let normalised: Vec<String> = columns.iter().map(|c| normalise(c)).collect();
        for i in 0..n {
            resolved.sources[i] = resolved.source_of(i, path, columns, &normalised, mapping)?;
            if let Some(m) = mapping {
                let field = dataset.columns[i].name.as_str();
                resolved.defaults[i] = m.defaults.get(field).cloned();
                resolved.types[i] = m.types.get(field).copied().unwrap_or_default();
            }
        }
        if !resolved.expressions.is_empty() {
            let mut names = resolved.columns.to_vec();
            names.extend(
                resolved
                    .expressions
                    .iter()
                    .map(|(f, _)| format!("{f} (derived)")),
            );
            resolved.columns = names.into();
        }
        if let Some(m) = mapping {
            resolved.date_formats = m
                .date_formats
                .iter()
                .map(|f| DateFormat::parse(f))
                .collect::<Result<_, _>>()
                .map_err(|reason| IngestError::BadMapping {
                    mapping: m.name.clone(),
                    reason,
                })?;
        }
        resolved.check_required(path, columns)?;
        resolved.refresh_unused();
        Ok(resolved)
    }

    /// Makes field `i` read source column `column` (a column found by the name inference recorded).
    pub fn set_source(&mut self, i: usize, column: usize) {
        self.sources[i] = FieldSource::Column(column);
        self.refresh_unused();
    }

    fn refresh_unused(&mut self) {
        self.unused = if self.expressions.is_empty() {
            let used = |i: usize| self.sources.contains(&FieldSource::Column(i));
            (0..self.columns.len()).filter(|&i| !used(i)).collect()
        } else {
            Vec::new()
        };
    }

    /// Where dataset column `i` comes from: an expression (its value follows the source's columns), a
    /// constant, the configured column, or a column named like it.
    fn source_of(
        &mut self,
        i: usize,
        path: &Path,
        columns: &[String],
        normalised: &[String],
        mapping: Option<&MappingConfig>,
    ) -> Result<FieldSource, IngestError> {
        let field = self.dataset.columns[i].name.clone();
        if let Some(sql) = mapping.and_then(|m| m.expressions.get(&field)) {
            self.expressions.push((field, sql.clone()));
            return Ok(FieldSource::Column(
                columns.len() + self.expressions.len() - 1,
            ));
        }
        if let Some(constant) = mapping.and_then(|m| m.constants.get(&field)) {
            return Ok(FieldSource::Constant(constant.clone()));
        }
        let Some(name) = mapping.and_then(|m| m.columns.get(&field)) else {
            return Ok(aliases(&self.dataset, i)
                .iter()
                .find_map(|alias| normalised.iter().position(|c| c == alias))
                .map_or(FieldSource::Absent, FieldSource::Column));
        };
        let n = normalise(name);
        match columns
            .iter()
            .position(|c| c == name)
            .or_else(|| normalised.iter().position(|c| *c == n))
        {
            Some(idx) => Ok(FieldSource::Column(idx)),
            None => Err(IngestError::BadMapping {
                mapping: self.name.clone(),
                reason: format!(
                    "{}: column `{name}` (for `{field}`) not found; columns are: {}",
                    path.display(),
                    list_columns(columns)
                ),
            }),
        }
    }

    /// Fails when a required column has neither a source nor a default.
    fn check_required(&self, path: &Path, columns: &[String]) -> Result<(), IngestError> {
        for (i, column) in self.dataset.columns.iter().enumerate() {
            if column.required
                && self.sources[i] == FieldSource::Absent
                && self.defaults[i].is_none()
            {
                return Err(IngestError::MissingColumn {
                    path: path.to_path_buf(),
                    field: column.name.clone(),
                    columns: list_columns(columns),
                });
            }
        }
        Ok(())
    }

    /// The text of `field` for one row: the constant, the column's text, or the default when empty.
    #[inline]
    pub fn text<'a>(&'a self, field: impl Into<usize>, row: &[&'a str]) -> Option<&'a str> {
        let i = field.into();
        let value = match &self.sources[i] {
            FieldSource::Column(c) => row.get(*c).copied().filter(|v| !v.trim().is_empty()),
            FieldSource::Constant(v) => Some(v.as_str()),
            FieldSource::Absent => None,
        };
        value.or(self.defaults[i].as_deref())
    }

    /// The raw text of `field` for one row, as it arrived (no default applied).
    #[inline]
    pub fn raw<'a>(&'a self, field: impl Into<usize>, row: &[&'a str]) -> Option<&'a str> {
        match &self.sources[field.into()] {
            FieldSource::Column(c) => row.get(*c).copied(),
            FieldSource::Constant(v) => Some(v.as_str()),
            FieldSource::Absent => None,
        }
    }

    /// Parses an integer field (`quantity`, `customer_id`): `17850.0` and `1e2` are whole numbers,
    /// `12583.5` is not.
    pub fn parse_integer(&self, field: impl Into<usize>, text: &str) -> Result<i64, String> {
        let t = text.trim();
        if let Ok(v) = t.parse::<i64>() {
            return Ok(v);
        }
        self.parse_number(field.into(), t)
            .and_then(ExactDecimal::to_integer)
            .filter(|v| v.unsigned_abs() < 9_000_000_000_000_000)
            .ok_or_else(|| format!("`{t}` is not a whole number"))
    }

    /// Parses a decimal field (`unit_price`) into an integer count of 10^-[`MONEY_SCALE`] units (the
    /// `decimal(18, 4)` of the lake), exactly: the text's digits are read as digits, never through a
    /// binary float. More fraction digits than four are rounded half away from zero, as a DuckDB or
    /// PostgreSQL cast to `DECIMAL(18, 4)` does (`1.23455` is 1.2346, `-0.00005` is -0.0001). Accepted:
    /// an optional sign, digits with an optional point (`7.`, `.5`), an optional exponent (`1.5e3`,
    /// `125E-2`); a `decimal_comma` field reads `1.234,55`, a `cents` field an integer count of cents.
    /// A magnitude of 10^14 or more is refused here (see `batch::MAX_MONEY`).
    pub fn parse_decimal(&self, field: impl Into<usize>, text: &str) -> Result<i128, String> {
        let t = text.trim();
        let number = self
            .parse_number(field.into(), t)
            .ok_or_else(|| format!("`{t}` is not a number"))?;
        number
            .to_scaled(MONEY_SCALE as u32)
            .filter(|v| v.unsigned_abs() < MAX_MONEY_UNITS)
            .ok_or_else(|| format!("`{t}` is beyond the accepted magnitude (below 1e14)"))
    }

    /// Parses a binary floating-point field (a `double` column of a dataset), read as the field's type says.
    pub fn parse_double(&self, field: impl Into<usize>, text: &str) -> Result<f64, String> {
        let t = text.trim();
        let value = match self.types[field.into()] {
            FieldType::DecimalComma => t.replace('.', "").replace(',', ".").parse::<f64>().ok(),
            FieldType::Cents => t.parse::<i64>().ok().map(|c| c as f64 / 100.0),
            _ => t.parse::<f64>().ok(),
        };
        value
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("`{t}` is not a number"))
    }

    /// The exact number a field's text spells, read as the field's type says.
    fn parse_number(&self, field: usize, t: &str) -> Option<ExactDecimal> {
        match self.types[field] {
            FieldType::DecimalComma => ExactDecimal::parse(&t.replace('.', "").replace(',', ".")),
            FieldType::Cents => t.parse::<i64>().ok().map(|c| ExactDecimal {
                negative: c < 0,
                mantissa: u128::from(c.unsigned_abs()),
                exponent: -2,
                dropped_nonzero: false,
            }),
            _ => ExactDecimal::parse(t),
        }
    }

    /// Parses the invoice date; `last_format` remembers which format worked last, to try it first.
    pub fn parse_date(&self, text: &str, last_format: &mut usize) -> Result<NaiveDateTime, String> {
        self.parse_date_of(OrderField::InvoiceDate, text, last_format)
    }

    /// Parses a date or timestamp field; `last_format` remembers which format worked last.
    pub fn parse_date_of(
        &self,
        field: impl Into<usize>,
        text: &str,
        last_format: &mut usize,
    ) -> Result<NaiveDateTime, String> {
        let t = text.trim();
        let field = field.into();
        if let Some(format) = &self.column_dates[field] {
            // ISO text reads the same in every format that fits it: without chrono's format interpreter.
            if let Some(v) = parse_iso_fast(t).or_else(|| format.apply(t, self.timezone)) {
                return Ok(v);
            }
        }
        match self.types[field] {
            FieldType::ExcelSerial => {
                return DateFormat::ExcelSerial
                    .apply(t, self.timezone)
                    .ok_or_else(|| format!("`{t}` is not an Excel date serial"));
            }
            FieldType::UnixSeconds => {
                return DateFormat::UnixSeconds
                    .apply(t, self.timezone)
                    .ok_or_else(|| format!("`{t}` is not a Unix time"));
            }
            _ => {}
        }
        if self.date_formats.is_empty() {
            if let Some(v) = parse_iso_fast(t) {
                return Ok(v);
            }
            if let Some(v) = try_formats(&DEFAULT_FORMATS, t, last_format, self.timezone) {
                return Ok(v);
            }
            if let Some(v) = parse_aware(t, self.timezone) {
                return Ok(v);
            }
        } else if let Some(v) = try_formats(&self.date_formats, t, last_format, self.timezone) {
            return Ok(v);
        }
        Err(format!("`{t}` is not a date in a known format"))
    }
}

static DEFAULT_FORMATS: std::sync::LazyLock<Vec<DateFormat>> = std::sync::LazyLock::new(|| {
    DEFAULT_DATE_FORMATS
        .iter()
        .map(|f| DateFormat::parse(f).expect("built-in date formats are valid"))
        .collect()
});

fn try_formats(
    formats: &[DateFormat],
    text: &str,
    last: &mut usize,
    tz: Tz,
) -> Option<NaiveDateTime> {
    if let Some(v) = formats.get(*last).and_then(|f| f.apply(text, tz)) {
        return Some(v);
    }
    for (i, f) in formats.iter().enumerate() {
        if let Some(v) = f.apply(text, tz) {
            *last = i;
            return Some(v);
        }
    }
    None
}

/// `YYYY-MM-DD HH:MM[:SS]` (or with `T`), or `YYYY-MM-DD` (midnight), the common cases, without chrono's
/// format interpreter.
fn parse_iso_fast(t: &str) -> Option<NaiveDateTime> {
    let b = t.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(
        digits(&b[0..4])? as i32,
        digits(&b[5..7])?,
        digits(&b[8..10])?,
    )?;
    match b.len() {
        10 => date.and_hms_opt(0, 0, 0),
        16 | 19 if (b[10] == b' ' || b[10] == b'T') && b[13] == b':' => {
            let seconds = match b.len() {
                19 if b[16] == b':' => digits(&b[17..19])?,
                19 => return None,
                _ => 0,
            };
            date.and_hms_opt(digits(&b[11..13])?, digits(&b[14..16])?, seconds)
        }
        _ => None,
    }
}

/// The number ASCII digits spell (`None` for anything else).
fn digits(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0u32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// Magnitudes accepted for money, in 10^-[`MONEY_SCALE`] units: below 10^14 (`batch::MAX_MONEY`).
pub const MAX_MONEY_UNITS: u128 = 100_000_000_000_000 * 10u128.pow(MONEY_SCALE as u32);

/// A number read from text exactly: `±mantissa × 10^exponent`. The first 38 significant digits are kept
/// (more than any accepted value has); later ones only count for whether the number is whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExactDecimal {
    negative: bool,
    mantissa: u128,
    exponent: i64,
    /// A non-zero digit was beyond the 38 kept.
    dropped_nonzero: bool,
}

impl ExactDecimal {
    /// Reads `[+-] digits [. digits] [(e|E) [+-] digits]` (at least one digit before the exponent), as
    /// Rust's float parser does for finite numbers; `None` for anything else (`NaN`, `inf`, `1,5`, `0x10`).
    pub fn parse(text: &str) -> Option<ExactDecimal> {
        let b = text.as_bytes();
        let mut i = 0;
        let negative = match b.first() {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let mut n = ExactDecimal {
            negative,
            mantissa: 0,
            exponent: 0,
            dropped_nonzero: false,
        };
        let mut digits = 0usize;
        let mut kept = 0u32;
        let mut point = false;
        while i < b.len() {
            match b[i] {
                c @ b'0'..=b'9' => {
                    digits += 1;
                    let d = u128::from(c - b'0');
                    if n.mantissa == 0 && d == 0 {
                        // Leading zeros are not significant.
                    } else if kept < 38 {
                        n.mantissa = n.mantissa * 10 + d;
                        kept += 1;
                    } else {
                        n.dropped_nonzero |= d != 0;
                        if !point {
                            n.exponent += 1;
                        }
                        i += 1;
                        continue;
                    }
                    if point {
                        n.exponent -= 1;
                    }
                }
                b'.' if !point => point = true,
                _ => break,
            }
            i += 1;
        }
        if digits == 0 {
            return None;
        }
        if i < b.len() {
            if !matches!(b[i], b'e' | b'E') {
                return None;
            }
            i += 1;
            let (sign, rest) = match b.get(i) {
                Some(b'-') => (-1i64, &b[i + 1..]),
                Some(b'+') => (1, &b[i + 1..]),
                _ => (1, &b[i..]),
            };
            if rest.is_empty() || !rest.iter().all(u8::is_ascii_digit) {
                return None;
            }
            // Saturates: `1e99999999999999999999` is a number, just far beyond any accepted magnitude.
            let e = rest.iter().fold(0i64, |acc, c| {
                acc.saturating_mul(10).saturating_add(i64::from(c - b'0'))
            });
            n.exponent = n.exponent.saturating_add(sign * e.min(i64::MAX / 2));
        }
        Some(n)
    }

    /// The number as a count of 10^-`scale` units, rounded half away from zero; `None` when it does not
    /// fit an `i128` with room to spare (far beyond any accepted magnitude).
    pub fn to_scaled(self, scale: u32) -> Option<i128> {
        if self.mantissa == 0 {
            return Some(0);
        }
        let shift = self.exponent.saturating_add(i64::from(scale));
        let units: u128 = if shift >= 0 {
            let factor = 10u128.checked_pow(u32::try_from(shift).ok()?)?;
            self.mantissa.checked_mul(factor)?
        } else if shift < -38 {
            // The mantissa is below 10^38: less than half of one unit.
            0
        } else {
            let divisor = 10u128.pow(u32::try_from(-shift).ok()?);
            let (q, r) = (self.mantissa / divisor, self.mantissa % divisor);
            // Half away from zero: the magnitude rounds up when the rest is at least half a unit.
            if r >= divisor / 2 { q + 1 } else { q }
        };
        let units = i128::try_from(units).ok().filter(|u| *u < i128::MAX / 2)?;
        Some(if self.negative { -units } else { units })
    }

    /// The number when it is whole and fits an `i64` (`17850.0`, `1e2`); `None` otherwise.
    pub fn to_integer(self) -> Option<i64> {
        if self.dropped_nonzero || !self.fraction_is_zero() {
            return None;
        }
        i64::try_from(self.to_scaled(0)?).ok()
    }

    fn fraction_is_zero(self) -> bool {
        if self.exponent >= 0 || self.mantissa == 0 {
            return true;
        }
        match u32::try_from(-self.exponent)
            .ok()
            .and_then(|e| 10u128.checked_pow(e))
        {
            Some(divisor) => self.mantissa.is_multiple_of(divisor),
            None => false,
        }
    }
}

/// A count of 10^-`scale` units as decimal text with `scale` fraction digits (`25500, 4` is `2.5500`).
pub fn format_scaled(units: i128, scale: u32) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let magnitude = units.unsigned_abs();
    if scale == 0 {
        return format!("{sign}{magnitude}");
    }
    let divisor = 10u128.pow(scale);
    format!(
        "{sign}{}.{:0width$}",
        magnitude / divisor,
        magnitude % divisor,
        width = scale as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> Arc<Dataset> {
        Dataset::orders()
    }

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn online_retail_header_resolves_without_mapping() {
        let c = cols(&crate::generate::ONLINE_RETAIL_HEADER);
        let m = ResolvedMapping::resolve(Path::new("x.csv"), &c, None, &orders()).unwrap();
        assert_eq!(m.sources[6], FieldSource::Column(6));
    }

    #[test]
    fn missing_required_column_names_field_and_columns() {
        let err = ResolvedMapping::resolve(
            Path::new("x.csv"),
            &cols(&["InvoiceNo", "Foo"]),
            None,
            &orders(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("stock_code") && text.contains("Foo"),
            "{text}"
        );
    }

    #[test]
    fn customer_ids_like_17850_0_are_integers() {
        let m = ResolvedMapping::resolve(
            Path::new("x.csv"),
            &cols(&[
                "InvoiceNo",
                "StockCode",
                "Quantity",
                "InvoiceDate",
                "UnitPrice",
            ]),
            None,
            &orders(),
        )
        .unwrap();
        assert_eq!(
            m.parse_integer(OrderField::CustomerId, "17850.0"),
            Ok(17850)
        );
        assert!(m.parse_integer(OrderField::CustomerId, "17850.5").is_err());
        assert!(m.parse_integer(OrderField::Quantity, "six").is_err());
    }

    #[test]
    fn dates_in_builtin_and_configured_formats() {
        let c = cols(&[
            "InvoiceNo",
            "StockCode",
            "Quantity",
            "InvoiceDate",
            "UnitPrice",
        ]);
        let m = ResolvedMapping::resolve(Path::new("x.csv"), &c, None, &orders()).unwrap();
        let mut last = 0;
        let expected = NaiveDate::from_ymd_opt(2010, 12, 1)
            .unwrap()
            .and_hms_opt(8, 26, 0)
            .unwrap();
        assert_eq!(m.parse_date("2010-12-01 08:26:00", &mut last), Ok(expected));
        assert_eq!(m.parse_date("12/1/2010 8:26", &mut last), Ok(expected));
        assert!(m.parse_date("2010-13-01 08:26:00", &mut last).is_err());

        let mapping = MappingConfig {
            name: "compact".into(),
            files: vec!["*.csv".into()],
            date_formats: vec!["%Y%m%d".into(), "excel_serial".into()],
            ..Default::default()
        };
        mapping.validate(&orders()).unwrap();
        let m =
            ResolvedMapping::resolve(Path::new("x.csv"), &c, Some(&mapping), &orders()).unwrap();
        assert_eq!(
            m.parse_date("20101201", &mut last).unwrap().date(),
            expected.date()
        );
        assert_eq!(m.parse_date("40513.35139", &mut last).unwrap(), expected);
    }

    #[test]
    fn unknown_field_in_mapping_is_named() {
        let mut columns = BTreeMap::new();
        columns.insert("invoice".to_string(), "Order".to_string());
        let m = MappingConfig {
            name: "m".into(),
            files: vec!["*".into()],
            columns,
            ..Default::default()
        };
        assert!(
            m.validate(&orders())
                .unwrap_err()
                .to_string()
                .contains("unknown field `invoice`")
        );
    }

    #[test]
    fn prices_are_read_exactly_and_rounded_half_away_from_zero() {
        let c = cols(&[
            "InvoiceNo",
            "StockCode",
            "Quantity",
            "InvoiceDate",
            "UnitPrice",
        ]);
        let m = ResolvedMapping::resolve(Path::new("x.csv"), &c, None, &orders()).unwrap();
        let price = |t: &str| m.parse_decimal(OrderField::UnitPrice, t);
        for (text, units) in [
            ("2.55", 25_500),
            (" 2.55 ", 25_500),
            ("1.5e3", 15_000_000),
            ("125E-2", 12_500),
            ("+4.2", 42_000),
            (".5", 5_000),
            ("7.", 70_000),
            ("-11062.06", -110_620_600),
            ("1.23455", 12_346),
            ("-1.23455", -12_346),
            ("0.12344999", 1_234),
            ("0.00005", 1),
            ("0.00004999", 0),
            ("2.5499999999999998", 25_500),
            ("0.000000000000000000000000000000000000000000000000009", 0),
            ("99999999999999.9999", 999_999_999_999_999_999),
        ] {
            assert_eq!(price(text), Ok(units), "{text}");
        }
        for text in [
            "NaN",
            "inf",
            "-infinity",
            "1,234.50",
            "0x10",
            "",
            ".",
            "1e",
            "e5",
            "1.2.3",
            "--1",
        ] {
            assert!(price(text).unwrap_err().contains("not a number"), "{text}");
        }
        for text in [
            "1e14",
            "1.7e308",
            "1e309",
            "99999999999999.99995",
            "-1e99999999999999999999",
        ] {
            assert!(price(text).unwrap_err().contains("1e14"), "{text}");
        }

        let mut typed = m.clone();
        typed.types[OrderField::UnitPrice as usize] = FieldType::DecimalComma;
        assert_eq!(
            typed.parse_decimal(OrderField::UnitPrice, "1.234,55"),
            Ok(12_345_500)
        );
        typed.types[OrderField::UnitPrice as usize] = FieldType::Cents;
        assert_eq!(
            typed.parse_decimal(OrderField::UnitPrice, "255"),
            Ok(25_500)
        );
        assert!(typed.parse_decimal(OrderField::UnitPrice, "2.55").is_err());
    }

    #[test]
    fn whole_numbers_in_decimal_spellings() {
        let c = cols(&[
            "InvoiceNo",
            "StockCode",
            "Quantity",
            "InvoiceDate",
            "UnitPrice",
        ]);
        let m = ResolvedMapping::resolve(Path::new("x.csv"), &c, None, &orders()).unwrap();
        let q = |t: &str| m.parse_integer(OrderField::Quantity, t);
        assert_eq!(q("1e2"), Ok(100));
        assert_eq!(q("3.0"), Ok(3));
        assert_eq!(q("-0"), Ok(0));
        assert_eq!(q("+3"), Ok(3));
        assert!(q("1.00001").is_err(), "not rounded to a whole number");
        assert!(q("1.000000000000000000000000000000000000000001").is_err());
        assert!(q("9223372036854775808").is_err());
        assert!(q("NaN").is_err());
        assert_eq!(format_scaled(-25_500, 4), "-2.5500");
        assert_eq!(format_scaled(5, 4), "0.0005");
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_match(b"shop-*.csv", b"shop-2024-01.csv"));
        assert!(glob_match(b"*.CSV", b"a.csv"));
        assert!(!glob_match(b"shop-?.csv", b"shop-10.csv"));
    }
}
