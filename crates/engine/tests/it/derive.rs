//! Derived fields: a mapping's SQL expressions over an export with line totals and no invoice numbers.

use std::fmt::Write;

use shopstream_engine::Lake;
use shopstream_ingest::{MappingConfig, ReadOptions};

use crate::{load_with, query_csv};

fn mapping() -> MappingConfig {
    toml::from_str(
        r#"
        name = "webshop-lines"
        files = ["lines-*.csv"]
        [columns]
        stock_code = "SKU"
        quantity = "Qty"
        customer_id = "Customer"
        [expressions]
        unit_price = "CASE WHEN qty > 0 THEN line_total / qty ELSE line_total END"
        invoice_no = "'W' || _line"
        invoice_date = "to_timestamp(order_day || ' ' || order_time, '%Y-%m-%d %H:%M')"
        "#,
    )
    .unwrap()
}

fn options(mapping: MappingConfig) -> ReadOptions {
    ReadOptions {
        mappings: vec![mapping],
        expressions: Some(shopstream_engine::derive::sql()),
        ..Default::default()
    }
}

/// 1,200 lines (more than inference samples): qty 1..=4, line total = qty × 2.50; line 7 has a time
/// `to_timestamp` cannot read, line 1,150 a line total that is not a number.
fn export() -> String {
    let mut text = String::from("Order Day,Order Time,SKU,Qty,Line Total,Customer\n");
    for i in 0..1200u32 {
        let line = i + 2;
        let qty = i % 4 + 1;
        let time = if line == 7 { "25:99" } else { "10:15" };
        let total = if line == 1150 {
            "n/a".to_string()
        } else {
            format!("{:.2}", f64::from(qty) * 2.5)
        };
        writeln!(text, "2011-12-01,{time},SKU{i},{qty},{total},17850").unwrap();
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn expressions_derive_price_invoice_and_date_and_dead_letter_the_rows_that_fail() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let file = dir.path().join("lines-1.csv");
    std::fs::write(&file, export()).unwrap();
    let summary = load_with(&lake, std::slice::from_ref(&file), options(mapping())).await;
    assert_eq!(
        (summary.totals.loaded, summary.totals.rejected),
        (1198, 2),
        "{summary:?}"
    );
    // Every loaded line: price 2.50, revenue = qty × 2.50; invoice numbers from the line number.
    let csv = query_csv(
        &lake,
        "SELECT count(*) AS n, min(unit_price) AS lo, max(unit_price) AS hi, sum(line_revenue) AS revenue, \
         min(invoice_date) AS first FROM orders",
    )
    .await;
    // qty cycles 1..4 (sum 10 per 4 lines, 300 cycles = 3000 units) less lines 7 (qty 2) and 1150 (qty 1).
    assert_eq!(
        csv, "n,lo,hi,revenue,first\n1198,2.5000,2.5000,7492.5000,2011-12-01T10:15:00\n",
        "{csv}"
    );
    let invoices = query_csv(
        &lake,
        "SELECT invoice_no FROM orders WHERE source_line IN (2, 1201) ORDER BY source_line",
    )
    .await;
    assert_eq!(invoices, "invoice_no\nW2\nW1201\n");
    let dl = query_csv(
        &lake,
        "SELECT source_line, field, reason FROM dead_letters ORDER BY source_line",
    )
    .await;
    let lines: Vec<&str> = dl.lines().collect();
    assert_eq!(lines.len(), 3, "{dl}");
    assert!(
        lines[1].starts_with("7,invoice_date,expression failed:") && lines[1].contains("25:99"),
        "{dl}"
    );
    assert!(
        lines[2].starts_with("1150,line_total,") && lines[2].contains("n/a"),
        "a value that is not of its column's inferred type names the column: {dl}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_division_by_zero_fails_only_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let mut m = mapping();
    m.expressions
        .insert("unit_price".into(), "line_total / qty".into());
    let file = dir.path().join("lines-2.csv");
    std::fs::write(
        &file,
        "Order Day,Order Time,SKU,Qty,Line Total,Customer\n\
         2011-12-01,10:00,A,2,5.00,1\n2011-12-01,10:00,B,0,5.00,1\n2011-12-01,10:00,C,4,5.00,1\n",
    )
    .unwrap();
    let summary = load_with(&lake, std::slice::from_ref(&file), options(m)).await;
    assert_eq!((summary.totals.loaded, summary.totals.rejected), (2, 1));
    let dl = query_csv(&lake, "SELECT source_line, field FROM dead_letters").await;
    assert_eq!(dl, "source_line,field\n3,unit_price\n");
    let prices = query_csv(&lake, "SELECT unit_price FROM orders ORDER BY stock_code").await;
    assert_eq!(prices, "unit_price\n2.5000\n1.2500\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expression_naming_no_column_refuses_the_file_with_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let mut m = mapping();
    m.expressions
        .insert("unit_price".into(), "line_totl / qty".into());
    let file = dir.path().join("lines-3.csv");
    std::fs::write(
        &file,
        "Order Day,Order Time,SKU,Qty,Line Total,Customer\n2011-12-01,10:00,A,2,5.00,1\n",
    )
    .unwrap();
    let summary = load_with(&lake, std::slice::from_ref(&file), options(m)).await;
    let reason = summary.files[0].refused.clone().expect("refused");
    assert!(
        reason.contains("unit_price")
            && reason.contains("line_totl")
            && reason.contains("line_total"),
        "{reason}"
    );
}
