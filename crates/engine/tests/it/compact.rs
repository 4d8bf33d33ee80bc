//! Compaction: many small commits become one file per partition, with the same rows, also while a load
//! commits at the same time; vacuum then deletes the replaced files.

use std::path::PathBuf;

use shopstream_engine::compact::{compact, vacuum, vacuum_orphans};
use shopstream_engine::load::WriteOptions;
use shopstream_engine::{Lake, Table};

use crate::{load, query_csv, testdata, walk};

/// The real day 2010-12-01 (3,108 lines) cut into `parts` CSV files of its own lines.
pub fn slices(dir: &std::path::Path, parts: usize) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(testdata("online-retail/2010-12-01.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    rows.chunks(rows.len().div_ceil(parts))
        .enumerate()
        .map(|(i, chunk)| {
            let path = dir.join(format!("part-{i}.csv"));
            std::fs::write(&path, format!("{header}\n{}\n", chunk.join("\n"))).unwrap();
            path
        })
        .collect()
}

async fn data_files(lake: &Lake) -> usize {
    let table = lake.open(&Table::orders()).await.unwrap().unwrap();
    table.get_file_uris().unwrap().count()
}

type Compaction = shopstream_engine::Result<shopstream_engine::compact::CompactSummary>;

/// Two compactions of `orders` started together: how many rewrote files, and what each returned.
pub async fn compact_twice_at_once(lake: &Lake) -> (usize, Compaction, Compaction) {
    let (write, orders) = (WriteOptions::default(), Table::orders());
    let (a, b) = tokio::join!(
        compact(lake, &orders, &write),
        compact(lake, &orders, &write)
    );
    let rewrites = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Ok(s) if s.files_removed > 0))
        .count();
    (rewrites, a, b)
}

pub const TOTALS: &str = "SELECT COUNT(*) AS n, ROUND(SUM(line_revenue), 2) AS revenue, \
    COUNT(DISTINCT invoice_no) AS invoices FROM orders";

#[tokio::test(flavor = "multi_thread")]
async fn small_commits_become_one_file_with_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    for part in slices(dir.path(), 6) {
        load(&lake, &[part], vec![]).await;
    }
    assert_eq!(data_files(&lake).await, 6, "one file per load");
    let before = query_csv(&lake, TOTALS).await;
    assert!(before.starts_with("n,revenue,invoices\n3108,"), "{before}");

    let summary = compact(&lake, &Table::orders(), &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(summary.files_before, 6);
    assert_eq!(summary.files_removed, 6);
    assert_eq!(summary.files_added, 1);
    assert_eq!(summary.partitions, 1);
    assert!(summary.version.is_some());
    assert_eq!(data_files(&lake).await, 1);
    assert_eq!(query_csv(&lake, TOTALS).await, before, "same rows after");
    // The replaced files stay on disk until vacuumed; then only the compacted one is left.
    let on_disk = || {
        walk(&dir.path().join("lake/orders"))
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .count()
    };
    assert_eq!(on_disk(), 7);
    let deleted = vacuum(&lake, &Table::orders(), std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(deleted, 6);
    assert_eq!(on_disk(), 1);
    assert_eq!(
        query_csv(&lake, TOTALS).await,
        before,
        "same rows after vacuum"
    );
    // Loads stay idempotent: the same files again add nothing.
    let again = load(&lake, &slices(dir.path(), 6), vec![]).await;
    assert!(again.files.iter().all(|f| f.already_loaded));
    assert_eq!(query_csv(&lake, TOTALS).await, before);

    // Nothing left to do: no commit.
    let again = compact(&lake, &Table::orders(), &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(again.version, None);
    assert_eq!(again.files_removed, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_load_committing_during_compaction_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let parts = slices(dir.path(), 7);
    for part in &parts[..6] {
        load(&lake, std::slice::from_ref(part), vec![]).await;
    }
    // Compaction and one more load at once (loads take turns; compaction does not wait for them):
    // an append does not conflict with a rewrite.
    let write = WriteOptions::default();
    let orders = Table::orders();
    let (compacted, _) = tokio::join!(
        compact(&lake, &orders, &write),
        load(&lake, std::slice::from_ref(&parts[6]), vec![]),
    );
    compacted.unwrap();
    let after = query_csv(&lake, "SELECT COUNT(*) AS n FROM orders").await;
    assert_eq!(after, "n\n3108\n", "every line once");
    let raw = query_csv(&lake, "SELECT COUNT(*) AS n FROM raw_orders").await;
    assert_eq!(raw, "n\n3108\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_compactions_at_once_do_not_double_rows() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    for part in slices(dir.path(), 6) {
        load(&lake, &[part], vec![]).await;
    }
    let (rewrites, a, b) = compact_twice_at_once(&lake).await;
    // One rewrites; the other finds the lake's compaction lock taken (or nothing left to do).
    assert_eq!(rewrites, 1, "{a:?} {b:?}");
    for r in [&a, &b] {
        assert!(
            matches!(
                r,
                Ok(_) | Err(shopstream_engine::EngineError::CompactionRunning(_))
            ),
            "{r:?}"
        );
    }
    assert_eq!(
        query_csv(&lake, "SELECT COUNT(*) AS n FROM orders").await,
        "n\n3108\n",
        "every line once"
    );
    assert_eq!(data_files(&lake).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn old_unreferenced_files_are_deleted_young_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    load(&lake, &slices(dir.path(), 1), vec![]).await;
    let partition = dir.path().join("lake/orders/invoice_month=2010-12");
    let committed = walk(&partition);
    // What a load killed before its commit leaves: Parquet files no commit references.
    let old = partition.join("part-killed-long-ago.parquet");
    let young = partition.join("part-being-written.parquet");
    for f in [&old, &young] {
        std::fs::copy(&committed[0], f).unwrap();
    }
    let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(48 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    let deleted = vacuum_orphans(
        &lake,
        &Table::orders(),
        std::time::Duration::from_secs(24 * 3600),
    )
    .await
    .unwrap();
    assert_eq!(deleted, 1);
    assert!(!old.exists() && young.exists());
    assert!(committed.iter().all(|f| f.exists()), "committed files stay");
    assert_eq!(
        query_csv(&lake, "SELECT COUNT(*) AS n FROM orders").await,
        "n\n3108\n"
    );
}
