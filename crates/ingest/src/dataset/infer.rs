//! Type inference: the columns of a file, typed from a sample of its rows, as DuckDB's `read_csv`
//! auto-detection does.
//!
//! Each column starts with every candidate type and loses those a sampled value does not fit, in the order
//! boolean, integer, decimal, double, date, timestamp, text; the first left wins, and a column with no
//! value in the sample is text. Numbers with a leading zero (`007`, zip codes, ids) stay text, so nothing
//! is lost. Decimals are recognised with a point or a comma (`1.234,55`, the comma family also needs the
//! point never to be a decimal point), and become `decimal(18,4)` when every value has at most four
//! decimals and fits, `double` otherwise. Dates and timestamps are tried in the common formats, each
//! format a candidate of its own (day/month order is settled by the values: `13/01/2024` rules out
//! month-first). Column names become SQL names ([`super::snake_case`]).

use super::{ColumnType, snake_case};
use crate::mapping::{DateFormat, FieldType};

/// One inferred column.
#[derive(Debug, Clone, PartialEq)]
pub struct Inferred {
    /// The name in the file.
    pub source: String,
    /// The SQL name.
    pub name: String,
    /// The type.
    pub ty: ColumnType,
    /// How the file writes its values (`DecimalComma` for `1.234,55`; `Auto` otherwise).
    pub field_type: FieldType,
    /// The date or timestamp format found, for date and timestamp columns.
    pub date_format: Option<String>,
    /// Every format the sampled values fit (`05/04/2011` fits day- and month-first).
    pub date_formats: Vec<String>,
}

/// Date formats tried, in order of preference when several fit.
const DATE_FORMATS: [&str; 7] = [
    "%Y-%m-%d", "%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d-%m-%Y", "%Y%m%d",
];

/// Timestamp formats tried, in order of preference when several fit.
const TIMESTAMP_FORMATS: [&str; 12] = [
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
];

/// What a column may still be.
struct Candidates {
    boolean: bool,
    integer: bool,
    decimal_point: bool,
    decimal_comma: bool,
    /// At most four decimals and below 10^14 (fits `decimal(18,4)`).
    exact: bool,
    double: bool,
    dates: Vec<&'static str>,
    timestamps: Vec<&'static str>,
    /// RFC 3339 and other spellings with a UTC offset.
    aware: bool,
    values: usize,
}

impl Candidates {
    fn new() -> Candidates {
        Candidates {
            boolean: true,
            integer: true,
            decimal_point: true,
            decimal_comma: true,
            exact: true,
            double: true,
            dates: DATE_FORMATS.to_vec(),
            timestamps: TIMESTAMP_FORMATS.to_vec(),
            aware: true,
            values: 0,
        }
    }

    fn see(&mut self, value: &str) {
        let v = value.trim();
        if v.is_empty() {
            return;
        }
        self.values += 1;
        if self.boolean {
            self.boolean = matches!(
                v.to_ascii_lowercase().as_str(),
                "true" | "false" | "t" | "f" | "yes" | "no"
            );
        }
        // Thousands separators only with a decimal comma (`1.234,55`): like DuckDB, `1,234.55` is text.
        let (point, comma) = (number_shape(v, '.', None), number_shape(v, ',', Some('.')));
        let whole = point == Some(0);
        let fits_bigint = v.parse::<i64>().is_ok();
        // A whole number beyond bigint (a 20-digit code) would lose digits as a decimal or a double: text.
        let too_long = whole && !fits_bigint;
        self.integer &= whole && !leading_zero(v) && fits_bigint;
        self.decimal_point &= point.is_some() && !leading_zero(v) && !too_long;
        self.decimal_comma &= comma.is_some() && !leading_zero(v);
        let (decimals, sep) = if self.decimal_point {
            (point, '.')
        } else {
            (comma, ',')
        };
        self.exact &= decimals.is_some_and(|d| d <= 4) && digits_before_point(v, sep) <= 14;
        self.double &= v.parse::<f64>().is_ok_and(f64::is_finite) && !leading_zero(v) && !too_long;
        if !self.dates.is_empty() {
            self.dates
                .retain(|f| chrono::NaiveDate::parse_from_str(v, f).is_ok());
        }
        if !self.timestamps.is_empty() {
            self.timestamps
                .retain(|f| chrono::NaiveDateTime::parse_from_str(v, f).is_ok());
        }
        self.aware &= chrono::DateTime::parse_from_rfc3339(v).is_ok();
    }

    fn decide(&self) -> (ColumnType, FieldType, Option<String>) {
        let auto = FieldType::Auto;
        if self.values == 0 {
            return (ColumnType::Text, auto, None);
        }
        if self.boolean {
            return (ColumnType::Boolean, auto, None);
        }
        if self.integer {
            return (ColumnType::Integer, auto, None);
        }
        if self.decimal_point && self.exact {
            return (ColumnType::Decimal, auto, None);
        }
        if self.decimal_comma && self.exact {
            return (ColumnType::Decimal, FieldType::DecimalComma, None);
        }
        if self.double || self.decimal_point {
            return (ColumnType::Double, auto, None);
        }
        if let Some(f) = self.dates.first() {
            return (ColumnType::Date, auto, Some(f.to_string()));
        }
        if let Some(f) = self.timestamps.first() {
            return (ColumnType::Timestamp, auto, Some(f.to_string()));
        }
        if self.aware {
            return (ColumnType::Timestamp, auto, None);
        }
        (ColumnType::Text, auto, None)
    }
}

/// Digits before the decimal separator `point`, for the `decimal(18,4)` bound.
fn digits_before_point(v: &str, point: char) -> usize {
    v.split(point)
        .next()
        .unwrap_or("")
        .bytes()
        .filter(u8::is_ascii_digit)
        .count()
}

/// `007`, `0123`: digits with a leading zero (not `0`, `0.5`, `-0.5`): ids and codes, kept as text.
fn leading_zero(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    digits.len() > 1 && digits.starts_with('0') && digits.as_bytes()[1].is_ascii_digit()
}

/// The number of decimals when `v` is a number with decimal separator `point` and optional thousands
/// separator `group` (groups of three): `Some(0)` for a whole number, `None` when it is not a number so.
fn number_shape(v: &str, point: char, group: Option<char>) -> Option<usize> {
    let body = v.strip_prefix(['-', '+']).unwrap_or(v);
    let (int, frac) = match body.split_once(point) {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let groups: Vec<&str> = match group {
        Some(g) => int.split(g).collect(),
        None => vec![int],
    };
    let grouped = groups.len() == 1
        || (!groups[0].is_empty()
            && groups[0].len() <= 3
            && groups[1..].iter().all(|g| g.len() == 3));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !grouped || !groups.iter().all(|g| digits(g)) || (int.is_empty() && frac.is_none()) {
        return None;
    }
    match frac {
        None => Some(0),
        Some(f) if !f.is_empty() && digits(f) => Some(f.len()),
        Some(_) => None,
    }
}

/// Infers the columns of a file from its column names and sampled rows (values in column order; a row
/// shorter than the header has empty values for the rest).
pub fn infer_columns(columns: &[String], rows: &[Vec<String>]) -> Vec<Inferred> {
    let mut seen: Vec<String> = Vec::new();
    columns
        .iter()
        .enumerate()
        .map(|(i, source)| {
            let mut c = Candidates::new();
            for row in rows {
                if let Some(v) = row.get(i) {
                    c.see(v);
                }
            }
            let (ty, field_type, date_format) = c.decide();
            let date_formats = match ty {
                ColumnType::Date => c.dates.iter().map(|f| f.to_string()).collect(),
                ColumnType::Timestamp => c.timestamps.iter().map(|f| f.to_string()).collect(),
                _ => Vec::new(),
            };
            let mut name = snake_case(source, i);
            let base = name.clone();
            let mut n = 1;
            while seen.contains(&name) {
                n += 1;
                name = format!("{base}_{n}");
            }
            seen.push(name.clone());
            Inferred {
                source: source.clone(),
                name,
                ty,
                field_type,
                date_format,
                date_formats,
            }
        })
        .collect()
}

/// The date format to read an inferred column with: among those the file's values fit, the table's own
/// (`preferred`), or one with the same date part (dates in a column widened to timestamps, `%d/%m/%Y` for
/// `%d/%m/%Y %H:%M`, and the reverse), so day-first stays day-first; else the first that fits.
pub fn date_format(inferred: &Inferred, preferred: Option<&str>) -> Option<DateFormat> {
    let same_date = |f: &&String| {
        preferred.is_some_and(|p| *f == p || p.starts_with(f.as_str()) || f.starts_with(p))
    };
    let format = inferred
        .date_formats
        .iter()
        .find(same_date)
        .or(inferred.date_format.as_ref())?;
    DateFormat::parse(format).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(rows: &[&[&str]]) -> Vec<(ColumnType, FieldType, Option<String>)> {
        let n = rows[0].len();
        let columns: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect();
        infer_columns(&columns, &rows)
            .into_iter()
            .map(|c| (c.ty, c.field_type, c.date_format))
            .collect()
    }

    #[test]
    fn types_like_duckdb_auto_detection() {
        let got = infer(&[
            &[
                "1",
                "2.55",
                "true",
                "2024-01-31",
                "007",
                "a",
                "1.234,55",
                "2024-01-31 10:00:00",
                "13/01/2024",
                "1e3",
                "",
            ],
            &[
                "-20",
                "3",
                "no",
                "2024-02-01",
                "012",
                "b",
                "12,5",
                "2024-02-01 11:30:00",
                "01/02/2024",
                "2.5",
                "",
            ],
            &["", "", "", "", "", "", "", "", "", "0.123456", ""],
        ]);
        assert_eq!(got[0].0, ColumnType::Integer);
        assert_eq!(got[1].0, ColumnType::Decimal);
        assert_eq!(got[2].0, ColumnType::Boolean);
        assert_eq!(
            got[3],
            (ColumnType::Date, FieldType::Auto, Some("%Y-%m-%d".into()))
        );
        assert_eq!(got[4].0, ColumnType::Text, "leading zeros stay text");
        assert_eq!(got[5].0, ColumnType::Text);
        assert_eq!(got[6], (ColumnType::Decimal, FieldType::DecimalComma, None));
        assert_eq!(got[7].0, ColumnType::Timestamp);
        assert_eq!(
            got[8],
            (ColumnType::Date, FieldType::Auto, Some("%d/%m/%Y".into()))
        );
        assert_eq!(got[9].0, ColumnType::Double);
        assert_eq!(got[10].0, ColumnType::Text, "no values: text");
    }

    #[test]
    fn names_become_unique_sql_names() {
        let columns: Vec<String> = ["Customer ID", "customer_id", "Unit Price (€)", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let names: Vec<String> = infer_columns(&columns, &[])
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            ["customer_id", "customer_id_2", "unit_price", "column_4"]
        );
    }
}
