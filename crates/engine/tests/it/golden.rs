//! Every built-in report on the committed real-data fixture, against its golden output.

use std::collections::BTreeMap;

use shopstream_engine::{Lake, reports};

use crate::{load, query_csv, testdata};

#[tokio::test(flavor = "multi_thread")]
async fn reports_match_their_golden_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let summary = load(&lake, &[testdata("online-retail")], vec![]).await;
    assert_eq!(
        summary.totals.read,
        3108 + 3597,
        "both fixture days are read"
    );
    let bless = std::env::var_os("SHOPSTREAM_BLESS").is_some();
    let mut failures = Vec::new();
    for report in reports::all() {
        let sql = report.render(&BTreeMap::new()).unwrap();
        let actual = query_csv(&lake, &sql).await;
        let path = testdata(&format!("golden/{}.csv", report.name));
        if bless {
            std::fs::write(&path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "{} missing: run with SHOPSTREAM_BLESS=1 and review",
                path.display()
            )
        });
        if expected != actual {
            failures.push(format!(
                "report {} differs from {}:\n{actual}",
                report.name,
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
