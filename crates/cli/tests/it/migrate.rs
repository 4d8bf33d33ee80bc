//! `shopstream migrate` on the lake of the previous release (`testdata/lake-v0.1`, money as doubles): every
//! row is kept once with exact money, the Delta `txn`s survive (loading the same files again adds nothing),
//! a second run changes nothing, and it is refused while a server holds the lake.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::{shopstream, stderr, stdout};

/// The repository root: the fixture's rows name their source files relative to it.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The files the fixture was loaded from, as its README lists them.
const SOURCES: [&str; 5] = [
    "testdata/online-retail/2010-12-01.csv",
    "testdata/bad/broken-rows.csv",
    "testdata/bad/not-parquet.parquet",
    "testdata/online-retail/2011-11-14.csv",
    "testdata/lake-v0.1/sources/money-edges.csv",
];

fn run_in_root(data_dir: &Path, args: &[&str]) -> Output {
    shopstream(data_dir)
        .current_dir(root())
        .args(args)
        .output()
        .expect("shopstream runs")
}

fn sql(data_dir: &Path, query: &str) -> String {
    let o = run_in_root(data_dir, &["sql", "--format", "csv", query]);
    assert!(o.status.success(), "{query}: {}", stderr(&o));
    stdout(&o)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A data dir holding a copy of the previous release's lake.
fn old_lake() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &root().join("testdata/lake-v0.1/lake"),
        &dir.path().join("lake"),
    );
    dir
}

/// Rows, versions and files of every table (`shopstream tables`).
fn tables(data_dir: &Path) -> String {
    let o = run_in_root(data_dir, &["tables"]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

/// Every orders row (but the load id) in a fixed order: equal lakes give equal text.
const ORDER_ROWS: &str = "SELECT invoice_no, stock_code, description, quantity, invoice_date, unit_price, \
    customer_id, country, is_cancellation, line_revenue, source_file, source_line, invoice_month \
    FROM orders ORDER BY source_file, source_line";

#[test]
fn migrate_keeps_every_row_once_with_exact_money_and_a_reload_of_the_same_files_is_a_no_op() {
    let dir = old_lake();
    let data = dir.path();
    let counts = "SELECT (SELECT COUNT(*) FROM orders) AS orders, \
        (SELECT COUNT(DISTINCT source_file || ':' || source_line) FROM orders) AS distinct_lines, \
        (SELECT COUNT(*) FROM raw_orders) AS raw, (SELECT COUNT(*) FROM dead_letters) AS dead, \
        (SELECT COUNT(*) FROM loads) AS loads, (SELECT ROUND(SUM(line_revenue), 2) FROM orders) AS revenue";
    let before = sql(data, counts);
    assert_eq!(
        before,
        "orders,distinct_lines,raw,dead,loads,revenue\n6719,6719,6719,12,4,331273.83\n"
    );

    // Nothing is written into a table of the old schema: loads say to migrate.
    let o = run_in_root(
        data,
        &[
            "ingest",
            "--no-progress",
            "testdata/online-retail/2010-12-01.csv",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("run `shopstream migrate`"),
        "{}",
        stderr(&o)
    );
    let versions = tables(data);

    let o = run_in_root(data, &["migrate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = stdout(&o);
    assert!(
        report.contains("orders: unit_price: double → decimal(18,4), line_revenue: double → decimal(18,4); 6719 rows"),
        "{report}"
    );
    assert!(report.contains("loads: up to date"), "{report}");

    // Every row once; the float total to the cent is the exact one rounded.
    let after = sql(data, counts);
    assert_eq!(after, before);
    assert_eq!(
        sql(
            data,
            "SELECT SUM(line_revenue) AS exact, arrow_typeof(SUM(line_revenue)) AS t FROM orders"
        ),
        "exact,t\n331273.8277,\"Decimal128(28, 4)\"\n"
    );
    // Money exact: the prices as a load reads their text (rounded half away from zero beyond four digits)
    // and line_revenue = quantity × that price, as in a lake loaded from scratch by this release.
    assert_eq!(
        sql(
            data,
            "SELECT stock_code, unit_price, line_revenue FROM orders \
             WHERE stock_code IN ('HALF1', 'HALF2', 'TINY', 'PLUS', 'BIG') ORDER BY stock_code"
        ),
        "stock_code,unit_price,line_revenue\nBIG,2.0800,168469.6000\nHALF1,1.2346,3.7038\nHALF2,0.1234,0.8638\n\
         PLUS,4.2000,12.6000\nTINY,0.0001,0.0001\n"
    );
    let fresh = tempfile::tempdir().unwrap();
    for files in [&SOURCES[..3], &SOURCES[3..]] {
        let mut args = vec!["ingest", "--no-progress"];
        args.extend_from_slice(files);
        run_in_root(fresh.path(), &args);
    }
    assert_eq!(sql(data, ORDER_ROWS), sql(fresh.path(), ORDER_ROWS));

    // The txns survived: the same files again are all skipped (the refused one is not recorded twice).
    let migrated = tables(data);
    assert_ne!(migrated, versions, "orders has a new version");
    let mut args = vec!["ingest", "--no-progress"];
    args.extend_from_slice(&SOURCES);
    let o = run_in_root(data, &args);
    assert!(
        stdout(&o).contains("5 files (4 already loaded, 1 refused), read 0, loaded 0, rejected 0"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(tables(data), migrated, "nothing committed");

    // A second migrate changes nothing.
    let o = run_in_root(data, &["migrate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "the lake is up to date: nothing to migrate\n");
    assert_eq!(tables(data), migrated);
}

#[test]
fn migrate_is_refused_while_a_server_holds_the_lake() {
    let dir = old_lake();
    let data = dir.path();
    // A server does not start on tables of the old schema.
    let o = run_in_root(
        data,
        &["serve", "--listen", "127.0.0.1:0", "--pg-listen", "off"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("run `shopstream migrate`"),
        "{}",
        stderr(&o)
    );

    let o = run_in_root(data, &["migrate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let migrated = tables(data);

    let (mut server, _url) = crate::live::start(data, None);
    let o = run_in_root(data, &["migrate"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("running `shopstream serve` holds this lake") && err.contains(".server.lock"),
        "{err}"
    );
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(
        tables(data),
        migrated,
        "the refused migrate changed nothing"
    );
    let o = run_in_root(data, &["migrate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "the lake is up to date: nothing to migrate\n");
}
