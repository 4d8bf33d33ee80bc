//! Typed rows of a user dataset: one Arrow builder per column, filled from text under a resolved mapping.
//!
//! Each value is parsed by its column's type (and the mapping's field type: decimal comma, cents, Excel
//! serials, date formats); a row is appended only when every value parses, otherwise the batcher turns it
//! into one dead letter naming the column and the reason. Decimals are read exactly (scaled integers,
//! never through a float); a date or timestamp partition column yields its `YYYY-MM` month.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder,
    RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use chrono::{Datelike, NaiveDate, NaiveDateTime};

use super::{ColumnType, DECIMAL_PRECISION, DECIMAL_SCALE, Dataset};
use crate::batch::{Provenance, ProvenanceColumns};
use crate::mapping::ResolvedMapping;

/// One parsed value of a row.
enum Value<'a> {
    Null,
    Text(&'a str),
    Integer(i64),
    Decimal(i128),
    Double(f64),
    Boolean(bool),
    Date(i32),
    Timestamp(i64),
}

/// A builder per column type.
enum Builder {
    Text(StringBuilder),
    Integer(Int64Builder),
    Decimal(Decimal128Builder),
    Double(Float64Builder),
    Boolean(BooleanBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Builder {
    fn new(ty: ColumnType) -> Builder {
        match ty {
            ColumnType::Text => Builder::Text(StringBuilder::new()),
            ColumnType::Integer => Builder::Integer(Int64Builder::new()),
            ColumnType::Decimal => Builder::Decimal(
                Decimal128Builder::new()
                    .with_precision_and_scale(DECIMAL_PRECISION, DECIMAL_SCALE)
                    .expect("decimal(18,4) is valid"),
            ),
            ColumnType::Double => Builder::Double(Float64Builder::new()),
            ColumnType::Boolean => Builder::Boolean(BooleanBuilder::new()),
            ColumnType::Date => Builder::Date(Date32Builder::new()),
            ColumnType::Timestamp => Builder::Timestamp(TimestampMicrosecondBuilder::new()),
        }
    }

    fn append(&mut self, v: &Value) {
        match (self, v) {
            (Builder::Text(b), Value::Text(t)) => b.append_value(t),
            (Builder::Integer(b), Value::Integer(i)) => b.append_value(*i),
            (Builder::Decimal(b), Value::Decimal(d)) => b.append_value(*d),
            (Builder::Double(b), Value::Double(f)) => b.append_value(*f),
            (Builder::Boolean(b), Value::Boolean(x)) => b.append_value(*x),
            (Builder::Date(b), Value::Date(d)) => b.append_value(*d),
            (Builder::Timestamp(b), Value::Timestamp(t)) => b.append_value(*t),
            (b, _) => b.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Text(b) => b.append_null(),
            Builder::Integer(b) => b.append_null(),
            Builder::Decimal(b) => b.append_null(),
            Builder::Double(b) => b.append_null(),
            Builder::Boolean(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Integer(b) => Arc::new(b.finish()),
            Builder::Decimal(b) => Arc::new(b.finish()),
            Builder::Double(b) => Arc::new(b.finish()),
            Builder::Boolean(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

/// The rows of one dataset table being built; see the module documentation.
pub struct DatasetRows {
    dataset: Arc<Dataset>,
    builders: Vec<Builder>,
    provenance: ProvenanceColumns,
    /// The partition column's index among the dataset columns and the builder of its derived month.
    month: Option<(usize, StringBuilder)>,
    last_date_format: usize,
    rows: usize,
}

impl DatasetRows {
    /// Empty rows of `dataset`.
    pub fn new(dataset: Arc<Dataset>) -> DatasetRows {
        let builders = dataset.columns.iter().map(|c| Builder::new(c.ty)).collect();
        let month = dataset.partition.as_ref().and_then(|p| {
            let i = dataset.index_of(p)?;
            matches!(
                dataset.columns[i].ty,
                ColumnType::Date | ColumnType::Timestamp
            )
            .then(|| (i, StringBuilder::new()))
        });
        DatasetRows {
            dataset,
            builders,
            provenance: ProvenanceColumns::new(0),
            month,
            last_date_format: 0,
            rows: 0,
        }
    }

    /// Rows buffered.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row is buffered.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Parses and appends one row; on failure nothing is appended and the column and reason are returned.
    pub fn push(
        &mut self,
        m: &ResolvedMapping,
        row: &[&str],
        provenance: &Provenance,
        line: u64,
    ) -> Result<(), (String, String)> {
        self.check_unused(m, row)?;
        let mut values = Vec::with_capacity(self.builders.len());
        for (i, column) in self.dataset.columns.iter().enumerate() {
            let text = m.text(i, row).map(str::trim).filter(|t| !t.is_empty());
            let value = match text {
                None if column.required => Err("missing value".to_string()),
                None => Ok(Value::Null),
                Some(t) => parse(m, i, column.ty, t, &mut self.last_date_format),
            };
            values.push(value.map_err(|e| (column.name.clone(), e))?);
        }
        for (b, v) in self.builders.iter_mut().zip(&values) {
            b.append(v);
        }
        self.provenance.push(provenance, line);
        if let Some((i, b)) = &mut self.month {
            match values[*i] {
                Value::Date(d) => {
                    let date = NaiveDate::from_num_days_from_ce_opt(d + UNIX_EPOCH_DAYS_FROM_CE);
                    b.append_option(date.map(|d| format!("{:04}-{:02}", d.year(), d.month())));
                }
                Value::Timestamp(t) => {
                    let d = chrono::DateTime::from_timestamp_micros(t).map(|d| d.naive_utc());
                    b.append_option(d.map(|d| format!("{:04}-{:02}", d.year(), d.month())));
                }
                _ => b.append_null(),
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// A value in a source column the dataset has no column for (a JSON key or live field first seen after
    /// the columns were inferred) makes the row a dead letter: nothing is dropped silently.
    fn check_unused(&self, m: &ResolvedMapping, row: &[&str]) -> Result<(), (String, String)> {
        let found = m.unused.iter().find_map(|&i| {
            let v = row.get(i).map_or("", |v| v.trim());
            (!v.is_empty()).then_some((i, v))
        });
        match found {
            None => Ok(()),
            Some((i, v)) => Err((
                m.columns[i].clone(),
                format!(
                    "`{v}` is in a field dataset `{}` has no column for (it is not among the columns the \
                     table was created or evolved with); the record is kept here",
                    self.dataset.name
                ),
            )),
        }
    }

    /// Takes the buffered rows as a batch of the dataset's table.
    pub fn take(&mut self) -> RecordBatch {
        self.rows = 0;
        let mut columns: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        let evolved = columns.split_off(columns.len() - self.dataset.evolved);
        columns.extend(self.provenance.finish());
        if let Some((_, b)) = &mut self.month {
            columns.push(Arc::new(b.finish()));
        }
        columns.extend(evolved);
        RecordBatch::try_new(self.dataset.table_schema(), columns)
            .expect("builders match the dataset's table schema")
    }
}

/// Days from 0001-01-01 (chrono's CE day 1) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// Parses the text of column `i` as its type.
fn parse<'a>(
    m: &ResolvedMapping,
    i: usize,
    ty: ColumnType,
    t: &'a str,
    last_date: &mut usize,
) -> Result<Value<'a>, String> {
    Ok(match ty {
        ColumnType::Text => Value::Text(t),
        ColumnType::Integer => Value::Integer(m.parse_integer(i, t)?),
        ColumnType::Decimal => {
            let comma = m.types[i] == crate::mapping::FieldType::DecimalComma;
            if fraction_digits(t, comma) > DECIMAL_SCALE as usize {
                return Err(format!(
                    "`{t}` has more than {DECIMAL_SCALE} decimals: the column is decimal(18,4), which \
                     would round it"
                ));
            }
            Value::Decimal(m.parse_decimal(i, t)?)
        }
        ColumnType::Double => Value::Double(m.parse_double(i, t)?),
        ColumnType::Boolean => Value::Boolean(parse_boolean(t)?),
        ColumnType::Date => {
            let d: NaiveDateTime = m.parse_date_of(i, t, last_date)?;
            if d.time() != chrono::NaiveTime::MIN {
                return Err(format!(
                    "`{t}` has a time of day: the column is a date, which would drop it"
                ));
            }
            Value::Date(d.date().num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE)
        }
        ColumnType::Timestamp => Value::Timestamp(
            m.parse_date_of(i, t, last_date)?
                .and_utc()
                .timestamp_micros(),
        ),
    })
}

/// Significant digits after the decimal separator (`1.23450` has 4; `1.5e3` counts the digits before `e`).
fn fraction_digits(t: &str, comma: bool) -> usize {
    let separator = if comma { ',' } else { '.' };
    let Some((_, fraction)) = t.split_once(separator) else {
        return 0;
    };
    let digits: &str = fraction
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or("");
    digits.trim_end_matches('0').len()
}

/// `true`/`false` and the usual spellings of them.
pub fn parse_boolean(t: &str) -> Result<bool, String> {
    match t.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Ok(true),
        "false" | "f" | "no" | "n" | "0" => Ok(false),
        _ => Err(format!("`{t}` is not a boolean (true/false, yes/no, 1/0)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_digits_ignore_trailing_zeros() {
        assert_eq!(fraction_digits("1.23450", false), 4);
        assert_eq!(fraction_digits("1.23456", false), 5);
        assert_eq!(fraction_digits("1.234,5", true), 1);
        assert_eq!(fraction_digits("12", false), 0);
    }

    #[test]
    fn booleans_in_common_spellings() {
        assert_eq!(parse_boolean("Yes"), Ok(true));
        assert_eq!(parse_boolean("0"), Ok(false));
        assert!(parse_boolean("maybe").is_err());
    }
}
