//! The canonical tables every source is mapped onto.
//!
//! The built-in Arrow schemas are the contract between the sources and the lake: `raw` keeps every accepted
//! order record as text exactly as it arrived (plus where it came from), `orders` is the typed, cleaned
//! table analysts query, `dead_letters` holds every record of any dataset that did not fit, with the reason
//! and the dataset, and `loads` records each file loaded. Other datasets' schemas come from
//! [`crate::dataset::Dataset::table_schema`].
//! Column names here are the names users see in SQL; change them only with a migration.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The canonical order-line fields, in table order. Sources are mapped onto these names.
pub const ORDER_FIELDS: [&str; 8] = [
    "invoice_no",
    "stock_code",
    "description",
    "quantity",
    "invoice_date",
    "unit_price",
    "customer_id",
    "country",
];

impl From<OrderField> for usize {
    fn from(f: OrderField) -> usize {
        f as usize
    }
}

/// Index of each canonical field in [`ORDER_FIELDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderField {
    InvoiceNo = 0,
    StockCode = 1,
    Description = 2,
    Quantity = 3,
    InvoiceDate = 4,
    UnitPrice = 5,
    CustomerId = 6,
    Country = 7,
}

impl OrderField {
    /// All fields in table order.
    pub const ALL: [OrderField; 8] = [
        OrderField::InvoiceNo,
        OrderField::StockCode,
        OrderField::Description,
        OrderField::Quantity,
        OrderField::InvoiceDate,
        OrderField::UnitPrice,
        OrderField::CustomerId,
        OrderField::Country,
    ];

    /// The column name in the lake.
    pub fn name(self) -> &'static str {
        ORDER_FIELDS[self as usize]
    }

    /// Parses a canonical column name.
    pub fn from_name(name: &str) -> Option<OrderField> {
        ORDER_FIELDS
            .iter()
            .position(|f| *f == name)
            .map(|i| OrderField::ALL[i])
    }
}

/// Digits of a money column (`unit_price`, `line_revenue`): `decimal(18, 4)`. Eighteen digits hold every
/// magnitude below 10^14 (the accepted bound, `batch::MAX_MONEY`) with four fraction digits, and fit the
/// 64-bit integers Parquet stores such decimals as; four fraction digits keep a price per unit of a
/// hundredth of a cent exact, and sums (DataFusion widens a `SUM` to `decimal(28, 4)`) cannot overflow.
pub const MONEY_PRECISION: u8 = 18;

/// Fraction digits of a money column (see [`MONEY_PRECISION`]).
pub const MONEY_SCALE: i8 = 4;

/// The Arrow type of money columns: `Decimal128(18, 4)`.
pub fn money() -> DataType {
    DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE)
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

/// The provenance columns every row table has: where each row came from.
pub fn provenance_fields() -> Vec<Field> {
    vec![
        Field::new("source_file", DataType::Utf8, false),
        Field::new("source_line", DataType::Int64, false),
        Field::new("source_sheet", DataType::Utf8, true),
        Field::new("load_id", DataType::Utf8, false),
    ]
}

/// The clean orders table: typed, cancellations flagged, revenue per line, partitioned by `invoice_month`.
pub static ORDERS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("invoice_no", DataType::Utf8, false),
        Field::new("stock_code", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, true),
        Field::new("quantity", DataType::Int64, false),
        Field::new("invoice_date", timestamp(), false),
        Field::new("unit_price", money(), false),
        Field::new("customer_id", DataType::Int64, true),
        Field::new("country", DataType::Utf8, true),
        Field::new("is_cancellation", DataType::Boolean, false),
        Field::new("line_revenue", money(), false),
    ];
    fields.extend(provenance_fields());
    fields.push(Field::new("invoice_month", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
});

/// The partition column of the orders table.
pub const ORDERS_PARTITION: &str = "invoice_month";

/// The raw table: every accepted record's fields as the text that arrived, plus provenance.
pub static RAW_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields: Vec<Field> = ORDER_FIELDS
        .iter()
        .map(|n| Field::new(*n, DataType::Utf8, true))
        .collect();
    fields.extend(provenance_fields());
    fields.push(Field::new("load_time", timestamp(), false));
    // Live records: when the server acknowledged them (stored in the log); empty for files.
    fields.push(Field::new("received_at", timestamp(), true));
    Arc::new(Schema::new(fields))
});

/// The dead-letter table: one row per rejected record.
pub static DEAD_LETTERS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = provenance_fields();
    fields.extend([
        Field::new("field", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("record", DataType::Utf8, false),
        Field::new("load_time", timestamp(), false),
        // The dataset the record was meant for (`orders` for rows of lakes from before datasets).
        Field::new("dataset", DataType::Utf8, true),
    ]);
    Arc::new(Schema::new(fields))
});

/// The loads table: one row per source file loaded, with its counts.
pub static LOADS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("load_id", DataType::Utf8, false),
        Field::new("source_file", DataType::Utf8, false),
        Field::new("fingerprint", DataType::Utf8, false),
        Field::new("format", DataType::Utf8, false),
        Field::new("rows_read", DataType::Int64, false),
        Field::new("rows_loaded", DataType::Int64, false),
        Field::new("rows_rejected", DataType::Int64, false),
        Field::new("load_time", timestamp(), false),
    ]))
});
