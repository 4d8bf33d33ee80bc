//! Odd and hostile files (issue 10): JSON arrays and export wrappers, invalid UTF-8, late keys,
//! whitespace-separated text, zone-aware Parquet, and files refused whole while the others load.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use shopstream_engine::Lake;
use shopstream_ingest::{MappingConfig, ReadOptions};

use crate::{load, load_with, query_csv, testdata};

fn order_json(i: usize) -> String {
    format!(
        r#"{{"InvoiceNo": "5{i:05}", "StockCode": "85123A", "Description": "HEART", "Quantity": 2, "InvoiceDate": "2010-12-01 08:26:00", "UnitPrice": 2.55, "Country": "France"}}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_array_and_an_export_wrapper_load_every_element() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let items: Vec<String> = (0..300).map(order_json).collect();
    let array = dir.path().join("array.json");
    std::fs::write(&array, format!("[\n  {}\n]\n", items[..150].join(",\n  "))).unwrap();
    let wrapped = dir.path().join("export.json");
    std::fs::write(
        &wrapped,
        format!(
            r#"{{"count": 150, "orders": [{}], "next": null}}"#,
            items[150..].join(",")
        ),
    )
    .unwrap();
    let s = load(&lake, &[array, wrapped], vec![]).await;
    assert_eq!(
        (s.totals.read, s.totals.loaded, s.totals.rejected),
        (300, 300, 0)
    );
    assert_eq!(
        query_csv(
            &lake,
            "SELECT COUNT(DISTINCT invoice_no) AS n, MAX(source_line) AS last FROM orders"
        )
        .await,
        "n,last\n300,150\n",
        "a record's line is its position in the array"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_lines_one_bad_utf8_line_is_one_dead_letter_and_a_late_key_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let mut bytes = Vec::new();
    for i in 0..150 {
        bytes.extend_from_slice(order_json(i).as_bytes());
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(b"{\"InvoiceNo\": \"9\xff\", \"Quantity\": 1}\n");
    // CustomerID first appears after the first hundred records.
    let late = order_json(151).replace(r#""Country""#, r#""CustomerID": 17850, "Country""#);
    bytes.extend_from_slice(late.as_bytes());
    bytes.push(b'\n');
    let file = dir.path().join("orders.jsonl");
    std::fs::write(&file, bytes).unwrap();
    let s = load(&lake, &[file], vec![]).await;
    assert_eq!(
        (s.totals.read, s.totals.loaded, s.totals.rejected),
        (152, 151, 1)
    );
    assert_eq!(
        query_csv(
            &lake,
            "SELECT customer_id FROM orders WHERE customer_id IS NOT NULL"
        )
        .await,
        "customer_id\n17850\n"
    );
    let dl = query_csv(
        &lake,
        "SELECT source_line, reason, record FROM dead_letters",
    )
    .await;
    assert!(
        dl.contains("151,invalid JSON") && dl.contains('\u{fffd}'),
        "{dl}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn whitespace_separated_text_with_a_header_not_aligned_loads() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let file = dir.path().join("shop.txt");
    let mut text = String::from(" invoice  sku qty  day price\n");
    for i in 0..10 {
        text.push_str(&format!(
            " 5363{i:02} 85123A  6 201012{:02}   2.55\n",
            i + 1
        ));
    }
    text.push_str(" 536367 22752\n");
    std::fs::write(&file, text).unwrap();
    let mapping = MappingConfig {
        name: "days".into(),
        files: vec!["*.txt".into()],
        columns: BTreeMap::from([("invoice_date".to_string(), "day".to_string())]),
        date_formats: vec!["%Y%m%d".into()],
        ..Default::default()
    };
    let s = load(&lake, &[file], vec![mapping]).await;
    assert_eq!(
        (s.totals.read, s.totals.loaded, s.totals.rejected),
        (11, 10, 1)
    );
    assert_eq!(
        query_csv(&lake, "SELECT invoice_no, stock_code, quantity, invoice_date, unit_price FROM orders ORDER BY 1 LIMIT 2").await,
        "invoice_no,stock_code,quantity,invoice_date,unit_price\n\
         536300,85123A,6,2010-12-01T00:00:00,2.5500\n536301,85123A,6,2010-12-02T00:00:00,2.5500\n"
    );
    let dl = query_csv(
        &lake,
        "SELECT source_line, reason, record FROM dead_letters",
    )
    .await;
    assert!(
        dl.contains("12,\"expected 5 fields separated by whitespace, found 2\"")
            && dl.contains(r#"{""invoice"":""536367"",""sku"":""22752""}"#),
        "{dl}"
    );
}

/// Online Retail columns with a zone-aware `InvoiceDate`, as Spark and pandas write it.
fn write_parquet(path: &Path, rows: usize, tz: Option<&str>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("InvoiceNo", DataType::Utf8, false),
        Field::new("StockCode", DataType::Utf8, false),
        Field::new("Quantity", DataType::Int64, false),
        Field::new(
            "InvoiceDate",
            DataType::Timestamp(TimeUnit::Microsecond, tz.map(Into::into)),
            false,
        ),
        Field::new("UnitPrice", DataType::Float64, false),
    ]));
    // 2011-06-01 12:00:00 UTC, one second apart.
    let base = 1_306_929_600_000_000i64;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            (0..rows).map(|i| format!("{i}")),
        )),
        Arc::new(StringArray::from_iter_values((0..rows).map(|_| "85123A"))),
        Arc::new(Int64Array::from_iter_values((0..rows).map(|_| 1))),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                (0..rows).map(|i| base + i as i64 * 1_000_000),
            )
            .with_timezone_opt(tz),
        ),
        Arc::new(Float64Array::from_iter_values((0..rows).map(|_| 2.5))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(70_000))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        schema,
        Some(props),
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn parquet_with_utc_timestamps_loads_in_the_shop_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let file = dir.path().join("spark.parquet");
    write_parquet(&file, 3, Some("UTC"));
    let read = ReadOptions {
        timezone: chrono_tz::Tz::Europe__London,
        ..Default::default()
    };
    let s = load_with(&lake, &[file], read).await;
    assert_eq!((s.totals.loaded, s.totals.rejected), (3, 0));
    assert_eq!(
        query_csv(&lake, "SELECT MIN(invoice_date) AS d FROM orders").await,
        "d\n2011-06-01T13:00:00\n",
        "12:00 UTC is 13:00 in London in summer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_file_does_not_stop_the_others_and_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let folder = dir.path().join("in");
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(
        testdata("online-retail/2010-12-01.csv"),
        folder.join("a.csv"),
    )
    .unwrap();
    std::fs::write(folder.join("b.xlsx"), "this is not a workbook").unwrap();
    std::fs::write(folder.join("c.csv"), "").unwrap();
    let files = shopstream_ingest::expand_paths(&[folder]).unwrap();
    for round in 0..2 {
        let s = load(&lake, &files, vec![]).await;
        let refused: Vec<_> = s.files.iter().filter(|f| f.refused.is_some()).collect();
        assert_eq!(refused.len(), 2, "round {round}: {:?}", s.files);
        assert!(
            refused[0].refused.as_deref().unwrap().contains("b.xlsx"),
            "{refused:?}"
        );
    }
    assert_eq!(
        query_csv(&lake, "SELECT COUNT(*) AS n FROM orders").await,
        "n\n3108\n"
    );
    let dl = query_csv(
        &lake,
        "SELECT source_file, field IS NULL AS no_field, reason FROM dead_letters ORDER BY 1",
    )
    .await;
    let lines: Vec<&str> = dl.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "one row per refused file, not per attempt: {dl}"
    );
    assert!(lines[1].contains("b.xlsx,true,file refused: "), "{dl}");
    assert!(
        lines[2].contains("c.csv,true,file refused: ") && lines[2].contains("empty"),
        "{dl}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_failing_part_way_is_refused_whole_and_the_others_load() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    // Two row groups: the first (70,000 rows, more than a batch) reads, the second's page is corrupt.
    let broken = dir.path().join("broken.parquet");
    write_parquet(&broken, 70_010, None);
    let meta = {
        let f = std::fs::File::open(&broken).unwrap();
        parquet::file::serialized_reader::SerializedFileReader::new(f)
            .map(|r| parquet::file::reader::FileReader::metadata(&r).clone())
            .unwrap()
    };
    assert_eq!(meta.num_row_groups(), 2);
    let offset = meta.row_group(1).column(0).data_page_offset() as usize;
    let mut bytes = std::fs::read(&broken).unwrap();
    bytes[offset..offset + 16].fill(0xff);
    std::fs::write(&broken, bytes).unwrap();
    let good = testdata("online-retail/2010-12-01.csv");
    let s = load(&lake, &[broken.clone(), good], vec![]).await;
    let refused: Vec<_> = s.files.iter().filter(|f| f.refused.is_some()).collect();
    assert_eq!(refused.len(), 1, "{:?}", s.files);
    assert_eq!(refused[0].path, broken);
    assert_eq!(
        query_csv(&lake, "SELECT COUNT(*) AS n FROM orders").await,
        "n\n3108\n",
        "none of the broken file's first 70,000 rows were committed"
    );
    assert_eq!(
        query_csv(&lake, "SELECT COUNT(*) AS n FROM raw_orders").await,
        "n\n3108\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_file_loads_in_full_once_fixed_by_a_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let file = dir.path().join("export.csv");
    std::fs::write(
        &file,
        "Order Ref,StockCode,Quantity,InvoiceDate,UnitPrice\n\
         A1,85123A,6,2010-12-01 08:26:00,2.55\nA2,71053,6,2010-12-01 08:26:00,3.39\n",
    )
    .unwrap();
    let s = load(&lake, std::slice::from_ref(&file), vec![]).await;
    assert!(
        s.files[0]
            .refused
            .as_deref()
            .unwrap()
            .contains("invoice_no"),
        "{s:?}"
    );
    let mapping = MappingConfig {
        name: "refs".into(),
        files: vec!["export.csv".into()],
        columns: BTreeMap::from([("invoice_no".to_string(), "Order Ref".to_string())]),
        ..Default::default()
    };
    let s = load(&lake, &[file], vec![mapping]).await;
    assert_eq!((s.totals.loaded, s.files[0].refused.clone()), (2, None));
    assert_eq!(
        query_csv(&lake, "SELECT COUNT(*) AS n FROM orders").await,
        "n\n2\n"
    );
    assert_eq!(
        query_csv(&lake, "SELECT COUNT(*) AS n FROM raw_orders").await,
        "n\n2\n"
    );
}
