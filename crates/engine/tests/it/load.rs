//! Loads: every row accounted for, idempotent by content, every format to the same rows.

use shopstream_engine::Lake;
use shopstream_ingest::generate::{GenFormat, Generator, write};

use crate::{load, query_csv, testdata};

#[tokio::test(flavor = "multi_thread")]
async fn reloading_the_same_content_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let files = vec![testdata("online-retail/2010-12-01.csv")];
    let first = load(&lake, &files, vec![]).await;
    assert_eq!(first.totals.loaded, 3108);
    // The same bytes under another name are the same content.
    let copy = dir.path().join("copy.csv");
    std::fs::copy(&files[0], &copy).unwrap();
    let second = load(&lake, &[files[0].clone(), copy], vec![]).await;
    assert!(second.files.iter().all(|f| f.already_loaded));
    assert_eq!(
        query_csv(&lake, "SELECT COUNT(*) AS n FROM orders").await,
        "n\n3108\n"
    );
    assert_eq!(
        query_csv(&lake, "SELECT COUNT(*) AS n FROM raw_orders").await,
        "n\n3108\n"
    );
    assert_eq!(
        query_csv(&lake, "SELECT COUNT(*) AS n FROM loads").await,
        "n\n1\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_rows_land_in_dead_letters_with_line_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let s = load(&lake, &[testdata("bad/broken-rows.csv")], vec![]).await;
    assert_eq!(
        (s.totals.read, s.totals.loaded, s.totals.rejected),
        (8, 2, 6)
    );
    let dl = query_csv(
        &lake,
        "SELECT source_line, field, reason FROM dead_letters ORDER BY source_line",
    )
    .await;
    assert_eq!(
        dl,
        "source_line,field,reason\n\
         3,quantity,`six` is not a whole number\n\
         4,invoice_date,`2010-02-30 08:34:00` is not a date in a known format\n\
         5,unit_price,`N/A` is not a number\n\
         6,stock_code,missing value\n\
         7,customer_id,`12583.5` is not a whole number\n\
         8,,\"expected 8 fields separated by `,`, found 9\"\n"
    );
    // The quoted two-line description starting on line 9 is one record, kept whole.
    let multi = query_csv(
        &lake,
        "SELECT source_line, description FROM orders WHERE invoice_no = '536372'",
    )
    .await;
    assert_eq!(
        multi,
        "source_line,description\n9,\"HAND WARMER RED POLKA DOT\n(two-line description)\"\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_jsonl_xlsx_and_parquet_of_the_same_orders_load_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (format, ext) in [
        (GenFormat::Csv, "csv"),
        (GenFormat::Jsonl, "jsonl"),
        (GenFormat::Xlsx, "xlsx"),
    ] {
        let path = dir.path().join(format!("gen.{ext}"));
        write(&path, format, Generator::new(3000, 11, 0.0), &mut |_| {}).unwrap();
        files.push(path);
    }
    let signature = "SELECT COUNT(*) AS n, SUM(quantity) AS q, ROUND(SUM(line_revenue), 2) AS r, \
                     COUNT(DISTINCT customer_id) AS c, MIN(invoice_date) AS d0, MAX(invoice_date) AS d1, \
                     SUM(CASE WHEN is_cancellation THEN 1 ELSE 0 END) AS x FROM orders";
    let mut seen = Vec::new();
    for f in &files {
        let lake = Lake::local(
            &dir.path()
                .join(format!("lake-{}", f.extension().unwrap().to_str().unwrap())),
        )
        .unwrap();
        let s = load(&lake, std::slice::from_ref(f), vec![]).await;
        assert_eq!(
            (s.totals.loaded, s.totals.rejected),
            (3000, 0),
            "{}",
            f.display()
        );
        seen.push(query_csv(&lake, signature).await);
        if f.extension().unwrap() == "csv" {
            // Export the clean table to Parquet and load that too.
            let pq = dir.path().join("gen.parquet");
            let catalog = shopstream_engine::Catalog::open(&lake).await.unwrap();
            let r = catalog
                .query("SELECT invoice_no AS \"InvoiceNo\", stock_code, description, quantity, invoice_date, unit_price, customer_id, country FROM orders")
                .await
                .unwrap();
            shopstream_engine::output::write_parquet(&r, &pq).unwrap();
            let lake2 = Lake::local(&dir.path().join("lake-parquet")).unwrap();
            load(&lake2, &[pq], vec![]).await;
            seen.push(query_csv(&lake2, signature).await);
        }
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapping_loads_another_shops_export() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let config: toml::Table = toml::from_str(
        &std::fs::read_to_string(testdata("../config/examples/mappings.toml")).unwrap(),
    )
    .unwrap();
    let mappings: Vec<shopstream_ingest::MappingConfig> = config["ingest"]["mappings"]
        .clone()
        .try_into()
        .expect("example mappings parse");
    let s = load(&lake, &[testdata("mapped/webshop-2024-03.csv")], mappings).await;
    assert_eq!((s.totals.loaded, s.totals.rejected), (3, 1));
    let rows = query_csv(
        &lake,
        "SELECT invoice_no, stock_code, description, quantity, invoice_date, unit_price, customer_id, country \
         FROM orders ORDER BY source_line",
    )
    .await;
    assert_eq!(
        rows,
        "invoice_no,stock_code,description,quantity,invoice_date,unit_price,customer_id,country\n\
         W-1001,SKU-1,Kaffeebecher,2,2024-03-01T09:15:00,4.5000,501,Germany\n\
         W-1001,SKU-2,(no description),1,2024-03-01T09:15:00,1234.0000,501,Germany\n\
         W-1002,SKU-1,Kaffeebecher,1,2024-03-02T00:00:00,4.5000,,Germany\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn aligned_text_loads_with_spaces_inside_columns() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let s = load(&lake, &[testdata("aligned/orders.txt")], vec![]).await;
    assert_eq!((s.totals.loaded, s.totals.rejected), (4, 0));
    let rows = query_csv(&lake, "SELECT description, quantity, customer_id, country, is_cancellation FROM orders ORDER BY source_line").await;
    assert_eq!(
        rows,
        "description,quantity,customer_id,country,is_cancellation\n\
         WHITE HANGING HEART T-LIGHT HOLDER,6,17850,United Kingdom,false\n\
         WHITE METAL LANTERN,6,17850,United Kingdom,false\n\
         Discount,-1,14527,United Kingdom,true\n\
         \"AIRLINE LOUNGE,METAL SIGN\",2,,EIRE,false\n"
    );
}

/// The real Excel sample loads to the same rows as the matching lines of the real by-day CSVs.
#[tokio::test(flavor = "multi_thread")]
async fn real_excel_sample_matches_the_csv_lines() {
    let xlsx = testdata("../../shared/data/online-retail/online-retail-sample.xlsx");
    let by_day = testdata("../../shared/data/online-retail/by-day");
    assert!(
        xlsx.exists() && by_day.exists(),
        "../shared/data is beside the project in dev and CI"
    );
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let s = load(&lake, &[xlsx], vec![]).await;
    assert_eq!(s.totals.rejected, 0);
    // Every sheet row (as a multiset) is a line of the CSVs, equal on all eight fields.
    let csv_lake = Lake::local(&dir.path().join("csv")).unwrap();
    load(&csv_lake, &[by_day], vec![]).await;
    let fields = "invoice_no, stock_code, description, quantity, invoice_date, unit_price, customer_id, country";
    let keyed = format!(
        "SELECT {fields}, ROW_NUMBER() OVER (PARTITION BY {fields} ORDER BY source_line) AS k FROM orders"
    );
    let sheet = query_csv(&lake, &keyed).await;
    let csv_lines: std::collections::HashSet<String> = query_csv(&csv_lake, &keyed)
        .await
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    let sheet_rows: Vec<&str> = sheet.lines().skip(1).collect();
    assert_eq!(sheet_rows.len() as u64, s.totals.loaded);
    let missing: Vec<&&str> = sheet_rows
        .iter()
        .filter(|r| !csv_lines.contains(**r))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "sheet rows with no matching CSV line: {missing:#?}"
    );
}

/// A load killed while it created the lake's tables can leave a table folder whose `_delta_log` has no
/// commit yet (found by the CLI's SIGKILL test): the next load creates the table there and loads.
#[tokio::test(flavor = "multi_thread")]
async fn a_table_whose_creation_was_killed_before_its_first_commit_is_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    for table in ["loads", "orders"] {
        std::fs::create_dir_all(dir.path().join(table).join("_delta_log")).unwrap();
    }
    let files = vec![testdata("online-retail/2010-12-01.csv")];
    let summary = load(&lake, &files, vec![]).await;
    assert_eq!(summary.totals.loaded, 3108);
    assert_eq!(
        query_csv(&lake, "SELECT COUNT(*) AS n FROM loads").await,
        "n\n1\n"
    );
}
