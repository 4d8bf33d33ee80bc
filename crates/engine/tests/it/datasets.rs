//! Datasets other than orders: every file format into a user dataset, inference on real-looking exports,
//! schema evolution across files, declared datasets with key and partition, exactly-once per dataset.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use shopstream_engine::datasets::prepare;
use shopstream_engine::{Lake, Table};
use shopstream_ingest::{ColumnType, Dataset, DatasetConfig, ReadOptions};

use crate::{load_with, query_csv};

/// Prepares `name` for `files` as `ingest --dataset` does, then loads them.
async fn ingest(
    lake: &Lake,
    name: &str,
    declared: Option<Arc<Dataset>>,
    files: &[PathBuf],
) -> (
    shopstream_engine::datasets::Prepared,
    shopstream_engine::load::LoadSummary,
) {
    let mut read = ReadOptions::default();
    let write = shopstream_engine::load::WriteOptions::default();
    let prepared = prepare(lake, name, declared, files, &read, &write, false)
        .await
        .expect("prepare");
    read.dataset = prepared.dataset.clone();
    let summary = load_with(lake, files, read).await;
    (prepared, summary)
}

fn types(lake_dataset: &Dataset) -> Vec<(String, ColumnType)> {
    lake_dataset
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.ty))
        .collect()
}

fn write_products_parquet(path: &Path) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("sku", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("price", DataType::Float64, false),
        Field::new("stock", DataType::Int64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["P61", "P62", "P63"])),
        Arc::new(StringArray::from(vec!["Mug", "Lamp", "Tray"])),
        Arc::new(Float64Array::from(vec![2.55, 10.0, 0.85])),
        Arc::new(Int64Array::from(vec![3, 4, 5])),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn write_products_xlsx(path: &Path) {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (c, h) in ["sku", "name", "price", "stock"].iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for (r, (sku, name, price, stock)) in [("P71", "Mug", 2.55, 3.0), ("P72", "Lamp", 10.0, 4.0)]
        .iter()
        .enumerate()
    {
        let r = r as u32 + 1;
        sheet.write_string(r, 0, *sku).unwrap();
        sheet.write_string(r, 1, *name).unwrap();
        sheet.write_number(r, 2, *price).unwrap();
        sheet.write_number(r, 3, *stock).unwrap();
    }
    book.save(path).unwrap();
}

/// The same product rows in every format `ingest` reads.
fn product_files(dir: &Path) -> Vec<PathBuf> {
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let mut files = vec![
        write(
            "products.csv",
            "sku,name,price,stock\nP11,Mug,2.55,3\nP12,Lamp,10.00,4\n",
        ),
        write(
            "products.tsv",
            "sku\tname\tprice\tstock\nP21\tMug\t2.55\t3\nP22\tLamp\t10.00\t4\n",
        ),
        write(
            "products.txt",
            "sku   name   price   stock\nP31   Mug     2.55       3\nP32   Lamp   10.00       4\n",
        ),
        write(
            "products.json",
            r#"[{"sku":"P41","name":"Mug","price":2.55,"stock":3},{"sku":"P42","name":"Lamp","price":10.0,"stock":4}]"#,
        ),
        write(
            "products.jsonl",
            "{\"sku\":\"P51\",\"name\":\"Mug\",\"price\":2.55,\"stock\":3}\n{\"sku\":\"P52\",\"name\":\"Lamp\",\"price\":10,\"stock\":4}\n",
        ),
    ];
    let parquet = dir.join("products.parquet");
    write_products_parquet(&parquet);
    files.push(parquet);
    let xlsx = dir.join("products.xlsx");
    write_products_xlsx(&xlsx);
    files.push(xlsx);
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn every_file_format_loads_into_a_user_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let files = product_files(dir.path());
    let (prepared, summary) = ingest(&lake, "products", None, &files).await;
    assert_eq!(
        types(&prepared.dataset),
        [
            ("sku".into(), ColumnType::Text),
            ("name".into(), ColumnType::Text),
            ("price".into(), ColumnType::Decimal),
            ("stock".into(), ColumnType::Integer),
        ]
    );
    for f in &summary.files {
        assert!(f.refused.is_none(), "{f:?}");
        assert_eq!(f.counts.rejected, 0, "{f:?}");
    }
    assert_eq!(summary.totals.loaded, 15);
    let csv = query_csv(
        &lake,
        "SELECT count(*) AS n, sum(price) AS price, sum(stock) AS stock, \
         count(DISTINCT source_file) AS files FROM products",
    )
    .await;
    assert_eq!(csv, "n,price,stock,files\n15,88.7000,54,7\n", "{csv}");
    // The lake lists it like any table, and a second load of the same files adds nothing.
    let names = crate::table_names(&lake).await;
    assert!(names.contains(&"products".to_string()), "{names:?}");
    let (_, again) = ingest(&lake, "products", None, &files).await;
    assert!(again.files.iter().all(|f| f.already_loaded), "{again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn inference_reads_a_european_export_as_its_author_meant() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    // A semicolon export with day-first dates, zip codes with leading zeros, decimal commas and
    // thousands points, yes/no flags and timestamps.
    let file = dir.path().join("kunden.csv");
    std::fs::write(
        &file,
        "Kunden-Nr;PLZ;Angelegt am;Umsatz;Aktiv;Letzter Login\n\
         10001;01067;31.01.2011;1.234,50;ja;2011-02-01 10:00:00\n\
         10002;80331;13.02.2011;12,00;nein;2011-03-01 11:30:00\n\
         10003;04109;01.03.2011;0,5;ja;\n",
    )
    .unwrap();
    let (prepared, summary) = ingest(&lake, "kunden", None, std::slice::from_ref(&file)).await;
    assert_eq!(summary.totals.loaded, 3, "{summary:?}");
    let dataset = lake.dataset("kunden").await.unwrap().unwrap();
    assert_eq!(
        types(&dataset),
        [
            ("kunden_nr".into(), ColumnType::Integer),
            ("plz".into(), ColumnType::Text),
            ("angelegt_am".into(), ColumnType::Date),
            ("umsatz".into(), ColumnType::Decimal),
            // `ja`/`nein` are not among the spellings of a boolean: text, never lost.
            ("aktiv".into(), ColumnType::Text),
            ("letzter_login".into(), ColumnType::Timestamp),
        ]
    );
    assert_eq!(
        prepared.dataset.columns[2].format.as_deref(),
        Some("%d.%m.%Y")
    );
    let csv = query_csv(
        &lake,
        "SELECT kunden_nr, plz, angelegt_am, umsatz, letzter_login FROM kunden ORDER BY kunden_nr",
    )
    .await;
    assert_eq!(
        csv,
        "kunden_nr,plz,angelegt_am,umsatz,letzter_login\n\
         10001,01067,2011-01-31,1234.5000,2011-02-01T10:00:00\n\
         10002,80331,2011-02-13,12.0000,2011-03-01T11:30:00\n\
         10003,04109,2011-03-01,0.5000,\n",
        "{csv}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn evolution_adds_columns_widens_dates_to_timestamps_and_dead_letters_what_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let first = write(
        "events-1.csv",
        "event_id,units,day\n1,5,05/04/2011\n2,7,13/04/2011\n",
    );
    // A new column, and units beyond 32 bits: a Spark `int` column would need widening to `long`;
    // inference made it bigint, so they load.
    let second = write(
        "events-2.csv",
        "event_id,units,day,channel\n3,3000000000,05/04/2011,web\n4,9,06/04/2011,shop\n",
    );
    // Units with decimals do not fit bigint (Delta's type widening allows no long → decimal):
    // those rows are dead letters naming the column; the others load.
    let third = write(
        "events-3.csv",
        "event_id,units,day,channel\n5,2.5,07/04/2011,web\n6,4,08/04/2011,web\n",
    );
    let (p1, s1) = ingest(&lake, "events", None, std::slice::from_ref(&first)).await;
    assert!(p1.inferred.is_some() && p1.added.is_empty());
    assert_eq!(s1.totals.loaded, 2);
    let (p2, s2) = ingest(&lake, "events", None, std::slice::from_ref(&second)).await;
    assert_eq!(
        p2.added.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["channel"]
    );
    assert!(p2.mismatches.is_empty(), "{:?}", p2.mismatches);
    assert_eq!(s2.totals.loaded, 2);
    let (p3, s3) = ingest(&lake, "events", None, std::slice::from_ref(&third)).await;
    assert_eq!(p3.mismatches.len(), 1, "{:?}", p3.mismatches);
    assert_eq!(p3.mismatches[0].column, "units");
    assert_eq!((s3.totals.loaded, s3.totals.rejected), (1, 1));

    let csv = query_csv(
        &lake,
        "SELECT event_id, units, day, channel FROM events ORDER BY event_id",
    )
    .await;
    assert_eq!(
        csv,
        "event_id,units,day,channel\n1,5,2011-04-05,\n2,7,2011-04-13,\n\
         3,3000000000,2011-04-05,web\n4,9,2011-04-06,shop\n6,4,2011-04-08,web\n",
        "day-first dates stay day-first in later files whose values fit both: {csv}"
    );
    let dl = query_csv(
        &lake,
        "SELECT dataset, source_line, field, reason FROM dead_letters",
    )
    .await;
    assert!(
        dl.starts_with(
            "dataset,source_line,field,reason\nevents,2,units,`2.5` is not a whole number"
        ),
        "{dl}"
    );
    let dataset = lake.dataset("events").await.unwrap().unwrap();
    assert_eq!(dataset.columns.last().unwrap().name, "channel");
    assert_eq!(dataset.evolved, 1);

    // Times in a date column: widened to timestamp (Delta allows date → timestamp), by rewriting the
    // table in one commit that keeps its exactly-once record.
    let fourth = write(
        "events-4.csv",
        "event_id,units,day,channel\n7,1,2011-04-09 10:30:00,web\n",
    );
    let (p4, s4) = ingest(&lake, "events", None, std::slice::from_ref(&fourth)).await;
    assert_eq!(
        p4.widened
            .iter()
            .map(|c| (c.name.as_str(), c.ty))
            .collect::<Vec<_>>(),
        [("day", ColumnType::Timestamp)]
    );
    assert_eq!(s4.totals.loaded, 1);
    let csv = query_csv(&lake, "SELECT event_id, day FROM events ORDER BY event_id").await;
    assert_eq!(
        csv,
        "event_id,day\n1,2011-04-05T00:00:00\n2,2011-04-13T00:00:00\n3,2011-04-05T00:00:00\n\
         4,2011-04-06T00:00:00\n6,2011-04-08T00:00:00\n7,2011-04-09T10:30:00\n",
        "{csv}"
    );
    let (_, again) = ingest(&lake, "events", None, &[first, second, third, fourth]).await;
    assert!(
        again.files.iter().all(|f| f.already_loaded),
        "the rewrite kept the loads' txns: {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declared_dataset_keeps_its_types_key_and_partition() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let config: DatasetConfig = toml::from_str(
        r#"
        name = "customers"
        columns = ["customer_id text not null", "signup date", "country text", "credit decimal"]
        key = ["customer_id"]
        partition = "signup"
        "#,
    )
    .unwrap();
    let declared = Arc::new(config.to_dataset().unwrap());
    let file = dir.path().join("customers.csv");
    std::fs::write(
        &file,
        "Customer ID,Signup,Country,Credit\n017850,2010-12-01,United Kingdom,10.5\n,2011-01-02,France,1\n12583,2011-01-03,France,\n",
    )
    .unwrap();
    let (_, summary) = ingest(
        &lake,
        "customers",
        Some(declared),
        std::slice::from_ref(&file),
    )
    .await;
    assert_eq!((summary.totals.loaded, summary.totals.rejected), (2, 1));
    let dataset = lake.dataset("customers").await.unwrap().unwrap();
    assert_eq!(dataset.key, ["customer_id"]);
    assert_eq!(
        dataset.columns[0].ty,
        ColumnType::Text,
        "declared text, not inferred"
    );
    assert_eq!(
        Table::of_dataset(&dataset).partition_columns(),
        ["signup_month"]
    );
    assert!(
        dir.path()
            .join("lake/customers/signup_month=2010-12")
            .is_dir()
    );
    let csv = query_csv(
        &lake,
        "SELECT customer_id, signup_month, credit FROM customers ORDER BY customer_id",
    )
    .await;
    assert_eq!(
        csv,
        "customer_id,signup_month,credit\n017850,2010-12,10.5000\n12583,2011-01,\n"
    );
    let dl = query_csv(&lake, "SELECT field, reason FROM dead_letters").await;
    assert_eq!(dl, "field,reason\ncustomer_id,missing value\n");
    // The same file into orders is another dataset's load, not "already loaded".
    let orders = ReadOptions::default();
    let s = load_with(&lake, std::slice::from_ref(&file), orders).await;
    assert!(!s.files[0].already_loaded);
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_without_a_sql_name_keep_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    // Cyrillic names, an empty name and a repeated name all get names of their own (column_N, sku_2).
    let file = write(
        dir.path(),
        "clients.csv",
        "Имя,Город,,sku,sku\nАнна,Москва,x,A1,B1\nОлег,Казань,y,A2,B2\n",
    );
    let (prepared, summary) = ingest(&lake, "clients", None, std::slice::from_ref(&file)).await;
    assert_eq!(summary.totals.loaded, 2);
    let names = prepared.dataset.column_names();
    assert_eq!(names, ["column_1", "column_2", "column_3", "sku", "sku_2"]);
    let csv = query_csv(
        &lake,
        "SELECT column_1, column_2, column_3, sku, sku_2 FROM clients ORDER BY sku",
    )
    .await;
    assert_eq!(
        csv,
        "column_1,column_2,column_3,sku,sku_2\nАнна,Москва,x,A1,B1\nОлег,Казань,y,A2,B2\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dates_keep_their_order_and_their_day_through_widening() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let files = [
        write(dir.path(), "v1.csv", "id,day\n1,13/04/2011\n"),
        // A time in a date column: the column is widened, day-first stays day-first.
        write(dir.path(), "v2.csv", "id,day\n2,05/04/2011 10:30\n"),
        // Dates that fit both orders, into the widened column: still day-first.
        write(dir.path(), "v3.csv", "id,day\n3,07/04/2011\n"),
    ];
    for f in &files {
        let (_, s) = ingest(&lake, "visits", None, std::slice::from_ref(f)).await;
        assert_eq!((s.totals.loaded, s.totals.rejected), (1, 0), "{f:?}");
    }
    let csv = query_csv(&lake, "SELECT id, day FROM visits ORDER BY id").await;
    assert_eq!(
        csv,
        "id,day\n1,2011-04-13T00:00:00\n2,2011-04-05T10:30:00\n3,2011-04-07T00:00:00\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn values_that_would_lose_digits_or_times_are_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let first = write(dir.path(), "p1.csv", "id,price,day\n1,2.55,2011-04-01\n");
    let (_, s1) = ingest(&lake, "prices", None, std::slice::from_ref(&first)).await;
    assert_eq!(s1.totals.loaded, 1);
    // A fifth decimal would be rounded away, a time of day dropped: both are dead letters. A 20-digit
    // code is not a bigint: text, so nothing is rejected for it.
    let second = write(
        dir.path(),
        "p2.csv",
        "id,price,day,ean\n2,1.23456,2011-04-02,12345678901234567890\n3,1.5,2011-04-03,1\n",
    );
    let (p2, s2) = ingest(&lake, "prices", None, std::slice::from_ref(&second)).await;
    assert_eq!(p2.added[0].ty, ColumnType::Text, "ean beyond i64 is text");
    assert_eq!((s2.totals.loaded, s2.totals.rejected), (1, 1));
    let file3 = write(dir.path(), "p3.csv", "id,price,day\n4,1,2011-04-04\n");
    let mut big = String::from("id,price,day\n");
    for i in 0..1100 {
        big.push_str(&format!("{},1,2011-05-01\n", 10 + i));
    }
    big.push_str("9999,1,2011-05-02 14:30:00\n");
    let file4 = write(dir.path(), "p4.csv", &big);
    let (_, s) = ingest(&lake, "prices", None, &[file3, file4]).await;
    assert_eq!((s.totals.loaded, s.totals.rejected), (1101, 1), "{s:?}");
    let dl = query_csv(
        &lake,
        "SELECT source_line, field FROM dead_letters ORDER BY 1",
    )
    .await;
    assert_eq!(dl, "source_line,field\n2,price\n1102,day\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn not_null_survives_the_table_being_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let config: DatasetConfig = toml::from_str(
        r#"
        name = "contacts"
        columns = ["id text", "email text not null"]
        "#,
    )
    .unwrap();
    let declared = Arc::new(config.to_dataset().unwrap());
    for (i, name) in ["c1.csv", "c2.csv"].iter().enumerate() {
        let f = write(dir.path(), name, &format!("id,email\n{i}a,x@y\n{i}b,\n"));
        let (_, s) = ingest(&lake, "contacts", Some(declared.clone()), &[f]).await;
        assert_eq!((s.totals.loaded, s.totals.rejected), (1, 1), "{name}");
    }
    let dataset = lake.dataset("contacts").await.unwrap().unwrap();
    assert!(dataset.columns[1].required);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapped_column_loads_into_its_field_and_is_not_added() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let config: DatasetConfig = toml::from_str(
        r#"
        name = "customers"
        columns = ["customer_id text not null", "name text"]
        "#,
    )
    .unwrap();
    let mapping: shopstream_ingest::MappingConfig = toml::from_str(
        r#"
        name = "crm-export"
        files = ["crm-*.csv"]
        dataset = "customers"
        [columns]
        customer_id = "Kundennummer"
        "#,
    )
    .unwrap();
    let file = write(
        dir.path(),
        "crm-1.csv",
        "Kundennummer,Name,Stadt\n17850,Ann,Berlin\n",
    );
    let mut read = ReadOptions {
        mappings: vec![mapping],
        ..Default::default()
    };
    let declared = Arc::new(config.to_dataset().unwrap());
    let write_options = shopstream_engine::load::WriteOptions::default();
    let prepared = prepare(
        &lake,
        "customers",
        Some(declared),
        std::slice::from_ref(&file),
        &read,
        &write_options,
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        prepared
            .added
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["stadt"],
        "the mapped column is customer_id, not a new column"
    );
    read.dataset = prepared.dataset.clone();
    let s = load_with(&lake, std::slice::from_ref(&file), read).await;
    assert_eq!(s.totals.loaded, 1);
    let csv = query_csv(&lake, "SELECT customer_id, name, stadt FROM customers").await;
    assert_eq!(csv, "customer_id,name,stadt\n17850,Ann,Berlin\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_key_first_seen_after_the_sample_is_a_dead_letter_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let mut text = String::new();
    for i in 0..1100 {
        if i == 1050 {
            text.push_str(&format!("{{\"id\":{i},\"qty\":1,\"coupon\":\"XMAS\"}}\n"));
        } else {
            text.push_str(&format!("{{\"id\":{i},\"qty\":1}}\n"));
        }
    }
    let file = write(dir.path(), "events.jsonl", &text);
    let (_, s) = ingest(&lake, "events", None, std::slice::from_ref(&file)).await;
    assert_eq!((s.totals.loaded, s.totals.rejected), (1099, 1));
    let dl = query_csv(&lake, "SELECT source_line, field, record FROM dead_letters").await;
    assert!(
        dl.contains("1051,coupon,") && dl.contains("XMAS"),
        "the whole record is kept: {dl}"
    );
}
