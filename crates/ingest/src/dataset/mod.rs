//! Datasets: the tables a shop loads, described as data.
//!
//! A [`Dataset`] is a name, typed input columns, an optional key and an optional partition column. `orders`
//! is built in: its eight input fields are read with the Online Retail cleaning rules and it gets derived
//! columns (`is_cancellation`, `line_revenue`, `invoice_month`) and a `raw_orders` twin. Any other dataset
//! (customers, products, order events, …) is declared in the config (`[[datasets]]`, see
//! [`DatasetConfig`]), read back from the lake, or inferred from a file ([`infer`]); its lake table is its
//! columns plus the provenance columns every table has (`source_file`, `source_line`, `source_sheet`,
//! `load_id`) and, when it is partitioned by a date or timestamp column, a `<column>_month` partition.
//! Readers, mappings and batchers work from a dataset's column list, never from a fixed field enum.

pub mod infer;
pub mod rows;

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

use crate::error::IngestError;
use crate::schema::{ORDER_FIELDS, ORDERS_PARTITION, ORDERS_SCHEMA, provenance_fields};

/// Names no dataset may take: shopstream's own tables (and `orders`'s), and the landing folder's
/// `processed/` and `failed/`, which sit beside the datasets' landing subfolders.
pub const RESERVED_NAMES: [&str; 6] = [
    "raw_orders",
    "dead_letters",
    "loads",
    "orders",
    "processed",
    "failed",
];

/// Most columns a dataset has: PostgreSQL's limit for a table, which the BI tools reading the lake over the
/// Postgres endpoint live with. A file with more is refused for a dataset (orders reads its eight fields
/// from files of any width).
pub const MAX_COLUMNS: usize = 1600;

/// Precision and scale of money and other exact decimals: 14 digits before the point, 4 after.
pub const DECIMAL_PRECISION: u8 = 18;
/// See [`DECIMAL_PRECISION`].
pub const DECIMAL_SCALE: i8 = 4;

/// The type of a dataset column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// Free text (`text`, `varchar`, `string`).
    Text,
    /// A 64-bit whole number (`integer`, `bigint`, `int`); `17850.0` reads as 17850.
    Integer,
    /// An exact decimal, `decimal(18,4)` (`decimal`, `numeric`, `money`).
    Decimal,
    /// A binary floating-point number (`double`, `float`, `real`).
    Double,
    /// `true`/`false`, `yes`/`no`, `t`/`f`, `y`/`n`, `1`/`0` (`boolean`, `bool`).
    Boolean,
    /// A calendar date (`date`).
    Date,
    /// A date and time of day, wall-clock time in the shop's time zone (`timestamp`).
    Timestamp,
}

impl ColumnType {
    /// Parses a type name as written in the config (SQL spellings, any case).
    pub fn parse(name: &str) -> Option<ColumnType> {
        let lower = name.trim().to_ascii_lowercase();
        Some(match lower.as_str() {
            "text" | "varchar" | "string" | "utf8" => ColumnType::Text,
            "integer" | "int" | "bigint" | "long" | "int64" => ColumnType::Integer,
            "decimal" | "numeric" | "money" | "decimal(18,4)" => ColumnType::Decimal,
            "double" | "float" | "real" | "float64" => ColumnType::Double,
            "boolean" | "bool" => ColumnType::Boolean,
            "date" => ColumnType::Date,
            "timestamp" | "datetime" => ColumnType::Timestamp,
            _ => return None,
        })
    }

    /// The SQL name shown by `describe` and inference.
    pub fn sql_name(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Integer => "bigint",
            ColumnType::Decimal => "decimal(18,4)",
            ColumnType::Double => "double",
            ColumnType::Boolean => "boolean",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
        }
    }

    /// The Arrow type of the column in the lake.
    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::Text => DataType::Utf8,
            ColumnType::Integer => DataType::Int64,
            ColumnType::Decimal => DataType::Decimal128(DECIMAL_PRECISION, DECIMAL_SCALE),
            ColumnType::Double => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }

    /// The column type of an Arrow type found in the lake (`None` for types shopstream does not write).
    pub fn from_arrow(t: &DataType) -> Option<ColumnType> {
        Some(match t {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnType::Text,
            DataType::Int64 | DataType::Int32 | DataType::Int16 | DataType::Int8 => {
                ColumnType::Integer
            }
            DataType::Decimal128(_, _) => ColumnType::Decimal,
            DataType::Float64 | DataType::Float32 => ColumnType::Double,
            DataType::Boolean => ColumnType::Boolean,
            DataType::Date32 => ColumnType::Date,
            DataType::Timestamp(_, _) => ColumnType::Timestamp,
            _ => return None,
        })
    }
}

/// One input column of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The column name in SQL (lowercase snake_case).
    pub name: String,
    /// Its type.
    pub ty: ColumnType,
    /// Whether a row without a value is a dead letter (key columns, `not null`).
    pub required: bool,
    /// For dates and timestamps: the format the first file wrote them in (kept in the table's field
    /// metadata), preferred when a later file's values fit several (`05/04/2011`).
    pub format: Option<String>,
}

impl Column {
    /// The column's field in the lake table (nullable; its date format in the field metadata).
    pub fn field(&self) -> Field {
        let f = Field::new(&self.name, self.ty.arrow(), true);
        match &self.format {
            Some(format) => f.with_metadata(
                [(FORMAT_METADATA.to_string(), format.clone())]
                    .into_iter()
                    .collect(),
            ),
            None => f,
        }
    }
}

/// The field-metadata key holding a column's date format.
pub const FORMAT_METADATA: &str = "shopstream.format";

/// A dataset: see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Table name in SQL and on disk; also the name of its HTTP topic.
    pub name: String,
    /// Input columns in table order.
    pub columns: Vec<Column>,
    /// Key columns (required in every row).
    pub key: Vec<String>,
    /// The column the table is partitioned by (a date or timestamp column partitions by month).
    pub partition: Option<String>,
    /// How many of the last `columns` were added by schema evolution: Delta appends added columns, so
    /// in the table they come after the provenance columns.
    pub evolved: usize,
}

static ORDERS: LazyLock<Arc<Dataset>> = LazyLock::new(|| {
    let types = [
        ColumnType::Text,
        ColumnType::Text,
        ColumnType::Text,
        ColumnType::Integer,
        ColumnType::Timestamp,
        ColumnType::Decimal,
        ColumnType::Integer,
        ColumnType::Text,
    ];
    let required = [true, true, false, true, true, true, false, false];
    Arc::new(Dataset {
        name: "orders".into(),
        columns: ORDER_FIELDS
            .iter()
            .zip(types)
            .zip(required)
            .map(|((name, ty), required)| Column {
                name: name.to_string(),
                ty,
                required,
                format: None,
            })
            .collect(),
        key: Vec::new(),
        partition: Some("invoice_date".into()),
        evolved: 0,
    })
});

impl Dataset {
    /// The built-in order-lines dataset.
    pub fn orders() -> Arc<Dataset> {
        ORDERS.clone()
    }

    /// Whether this is the built-in `orders` (cleaning rules, derived columns, `raw_orders`).
    pub fn is_orders(&self) -> bool {
        self.name == "orders"
    }

    /// The column names, in order.
    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// Index of a column by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The table's partition column (derived `<column>_month` for a date or timestamp column).
    pub fn partition_column(&self) -> Option<String> {
        if self.is_orders() {
            return Some(ORDERS_PARTITION.into());
        }
        let p = self.partition.as_ref()?;
        let column = &self.columns[self.index_of(p)?];
        Some(match column.ty {
            ColumnType::Date | ColumnType::Timestamp => format!("{p}_month"),
            _ => p.clone(),
        })
    }

    /// The Arrow schema of the dataset's lake table.
    pub fn table_schema(&self) -> SchemaRef {
        if self.is_orders() {
            return ORDERS_SCHEMA.clone();
        }
        let field = Column::field;
        let (own, evolved) = self.columns.split_at(self.columns.len() - self.evolved);
        let mut fields: Vec<Field> = own.iter().map(field).collect();
        fields.extend(provenance_fields());
        if let Some(p) = self.partition_column()
            && !self.columns.iter().any(|c| c.name == p)
        {
            fields.push(Field::new(p, DataType::Utf8, true));
        }
        fields.extend(evolved.iter().map(field));
        Arc::new(Schema::new(fields))
    }

    /// The dataset of a lake table (columns before the provenance columns), given its partition columns.
    pub fn from_table(name: &str, schema: &Schema, partition: &[String]) -> Dataset {
        if name == "orders" {
            return (*Dataset::orders()).clone();
        }
        let provenance: Vec<String> = provenance_fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let derived = |name: &str| {
            name.strip_suffix("_month").is_some_and(|base| {
                schema.field_with_name(base).is_ok_and(|f| {
                    matches!(
                        ColumnType::from_arrow(f.data_type()),
                        Some(ColumnType::Date | ColumnType::Timestamp)
                    )
                })
            })
        };
        let partition = partition.first().map(|p| match p.strip_suffix("_month") {
            Some(base) if derived(p) => base.to_string(),
            _ => p.clone(),
        });
        let first_provenance = schema
            .fields()
            .iter()
            .position(|f| provenance.contains(f.name()))
            .unwrap_or(schema.fields().len());
        let mut columns = Vec::new();
        let mut evolved = 0;
        for (i, f) in schema.fields().iter().enumerate() {
            if provenance.contains(f.name()) || (partition.is_some() && derived(f.name())) {
                continue;
            }
            let Some(ty) = ColumnType::from_arrow(f.data_type()) else {
                continue;
            };
            evolved += usize::from(i > first_provenance);
            columns.push(Column {
                name: f.name().clone(),
                ty,
                required: partition.as_deref() == Some(f.name().as_str()),
                format: f.metadata().get(FORMAT_METADATA).cloned(),
            });
        }
        Dataset {
            name: name.into(),
            columns,
            key: Vec::new(),
            partition,
            evolved,
        }
    }
}

/// Whether `name` is usable as a table or column name: lowercase letters, digits and `_`, not starting
/// with a digit, at most 63 bytes (Postgres' identifier limit).
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= 63
}

/// A source column name as a SQL column name: `Customer ID` → `customer_id`, `Unit Price (€)` →
/// `unit_price`, `2nd line` → `_2nd_line`; empty → `column_N`.
pub fn snake_case(name: &str, position: usize) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && prev_lower && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            out.push(c.to_ascii_lowercase());
        } else {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = false;
        }
    }
    let trimmed = out.trim_end_matches('_');
    let mut name = if trimmed.is_empty() {
        format!("column_{}", position + 1)
    } else {
        trimmed.to_string()
    };
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name.truncate(63);
    name
}

/// A `[[datasets]]` table of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// The table name.
    pub name: String,
    /// Columns as `"name type"`, optionally `"name type not null"`, in table order.
    pub columns: Vec<String>,
    /// Key columns (each required).
    #[serde(default)]
    pub key: Vec<String>,
    /// Partition column (a date or timestamp column partitions by month).
    #[serde(default)]
    pub partition: Option<String>,
}

impl DatasetConfig {
    /// The dataset this config declares, or what is wrong with it.
    pub fn to_dataset(&self) -> Result<Dataset, IngestError> {
        let bad = |reason: String| IngestError::BadDataset {
            dataset: self.name.clone(),
            reason,
        };
        if !is_identifier(&self.name) {
            return Err(bad(
                "a dataset name is lowercase letters, digits and `_`, starting with a letter"
                    .into(),
            ));
        }
        if RESERVED_NAMES.contains(&self.name.as_str()) {
            return Err(bad(format!(
                "`{}` is a built-in table's or folder's name; choose another name",
                self.name
            )));
        }
        let mut columns: Vec<Column> = Vec::new();
        for spec in &self.columns {
            let column = parse_column(spec).map_err(bad)?;
            if columns.iter().any(|c| c.name == column.name) {
                return Err(bad(format!("column `{}` is declared twice", column.name)));
            }
            columns.push(column);
        }
        if columns.is_empty() {
            return Err(bad("`columns` is empty".into()));
        }
        for k in self.key.iter().chain(&self.partition) {
            let c = columns
                .iter_mut()
                .find(|c| c.name == *k)
                .ok_or_else(|| bad(format!("key or partition column `{k}` is not a column")))?;
            c.required = true;
        }
        if let Some(p) = &self.partition {
            let c = columns
                .iter()
                .find(|c| c.name == *p)
                .ok_or_else(|| bad(format!("partition column `{p}` is not a column")))?;
            if !matches!(
                c.ty,
                ColumnType::Text | ColumnType::Date | ColumnType::Timestamp
            ) {
                return Err(bad(format!(
                    "partition column `{p}` is a {}: partition by a text, date or timestamp column",
                    c.ty.sql_name()
                )));
            }
        }
        Ok(Dataset {
            name: self.name.clone(),
            columns,
            key: self.key.clone(),
            partition: self.partition.clone(),
            evolved: 0,
        })
    }
}

/// Parses `"name type [not null]"`.
fn parse_column(spec: &str) -> Result<Column, String> {
    let words: Vec<&str> = spec.split_whitespace().collect();
    let (name, ty, rest) = match words.as_slice() {
        [name, ty, rest @ ..] => (*name, *ty, rest),
        _ => return Err(format!("column `{spec}`: write it as \"name type\"")),
    };
    if !is_identifier(name) {
        return Err(format!(
            "column `{name}`: a column name is lowercase letters, digits and `_`"
        ));
    }
    let ty = ColumnType::parse(ty).ok_or_else(|| {
        format!(
            "column `{name}`: unknown type `{ty}` (types: text, integer, decimal, double, boolean, date, timestamp)"
        )
    })?;
    let required = match rest
        .iter()
        .map(|w| w.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => false,
        [not, null] if not == "not" && null == "null" => true,
        _ => {
            return Err(format!(
                "column `{spec}`: only `not null` may follow the type"
            ));
        }
    };
    Ok(Column {
        name: name.into(),
        ty,
        required,
        format: None,
    })
}
