//! Continuous views against batch SQL: the real Online Retail lines of the first days (from
//! `../shared/data/online-retail/by-day`) loaded into a lake, then replayed through a view in micro-batches
//! of 50 lines from two source partitions, arrival shuffled within the allowed delay: every final window
//! equals the same GROUP BY over `orders` in batch SQL, to the cent. With rows held back beyond the delay, the final
//! windows plus the late rows reconcile exactly with the batch answer. Hopping and session windows and an
//! updating aggregate on hand-checked rows; what a view cannot run is refused with the reason.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::array_value_to_string;
use shopstream_engine::load::WriteOptions;
use shopstream_engine::stream::view::job::{ViewDef, ViewInput, ViewJob, ViewSource};
use shopstream_engine::stream::view::plan::ViewPlan;
use shopstream_engine::stream::view::{ViewOptions, ViewRunner};
use shopstream_engine::{Catalog, Lake};

use crate::{load, testdata, walk};

const REVENUE_PER_MINUTE: &str = "SELECT window_start, window_end, country, sum(line_revenue) AS revenue, \
     count(DISTINCT invoice_no) AS orders, count(*) AS lines \
     FROM TUMBLE(orders, invoice_date, INTERVAL '1 minute') GROUP BY window_start, window_end, country";

/// The same answer in batch SQL over the lake's `orders`.
const BATCH: &str = "SELECT date_bin(INTERVAL '1 minute', invoice_date, TIMESTAMP '1970-01-01') AS window_start, \
     country, sum(line_revenue) AS revenue, count(DISTINCT invoice_no) AS orders, count(*) AS lines \
     FROM orders GROUP BY 1, 2";

/// A lake with the real lines of the first three days, and its `orders` rows in event-time order.
async fn real_orders() -> (tempfile::TempDir, Lake, Vec<RecordBatch>, SchemaRef) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let days: Vec<_> = ["2010-12-01", "2010-12-02", "2010-12-03"]
        .iter()
        .map(|d| testdata(&format!("../../shared/data/online-retail/by-day/{d}.csv")))
        .collect();
    load(&lake, &days, Vec::new()).await;
    let catalog = Catalog::open(&lake).await.unwrap();
    let rows = catalog
        .query("SELECT * FROM orders ORDER BY invoice_date, invoice_no, stock_code")
        .await
        .unwrap();
    (dir, lake, rows.batches, rows.schema)
}

/// Rows as text, one string per row.
fn lines(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| array_value_to_string(c, r).unwrap())
                    .collect(),
            );
        }
    }
    out
}

/// The rows of `batches` one by one, each with the time it arrives at (its event time plus a jitter below
/// `jitter_s`, deterministic), sorted by arrival.
fn shuffled(
    batches: &[RecordBatch],
    jitter_s: i64,
    held_back: &dyn Fn(usize) -> bool,
) -> Vec<RecordBatch> {
    let mut seed: u64 = 0x5eed;
    let mut rows = Vec::new();
    let mut n = 0usize;
    for b in batches {
        let times = b
            .column_by_name("invoice_date")
            .unwrap()
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        for r in 0..b.num_rows() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let jitter = (seed >> 33) as i64 % (jitter_s * 1_000_000);
            // A held-back row arrives an hour late: beyond the delay, and beyond how far the slower of the
            // two source partitions holds the watermark back (a micro-batch of 50 lines spans minutes).
            let extra = if held_back(n) { 3_600_000_000 } else { 0 };
            rows.push((times.value(r) + jitter + extra, b.slice(r, 1)));
            n += 1;
        }
    }
    rows.sort_by_key(|(at, _)| *at);
    rows.into_iter().map(|(_, row)| row).collect()
}

/// Replays `rows` through `runner` in micro-batches of 50 from two source partitions; returns the final
/// rows and the late rows.
async fn replay(
    runner: &mut ViewRunner,
    rows: &[RecordBatch],
) -> (Vec<RecordBatch>, Vec<RecordBatch>) {
    let (mut out, mut late) = (Vec::new(), Vec::new());
    for (i, chunk) in rows.chunks(50).enumerate() {
        let batch = arrow::compute::concat_batches(&chunk[0].schema(), chunk).unwrap();
        let o = runner.push((i % 2) as u32, &batch).await.unwrap();
        out.extend(o.rows);
        late.extend(o.late);
    }
    (out, late)
}

fn options() -> ViewOptions {
    ViewOptions {
        // High: no partition counts as idle in a replay.
        idle_timeout: Duration::from_secs(3600),
        ..ViewOptions::default()
    }
}

async fn runner(sql: &str, schema: &SchemaRef) -> ViewRunner {
    let s = schema.clone();
    let plan = ViewPlan::new("revenue_per_minute", sql, move |n| {
        (n == "orders").then(|| s.clone())
    })
    .await
    .unwrap();
    ViewRunner::new(plan, options()).unwrap()
}

/// The batch answer's rows for windows ending at or before `watermark` (µs), as text without window_end.
async fn batch_answer(lake: &Lake, watermark: i64) -> Vec<Vec<String>> {
    let catalog = Catalog::open(lake).await.unwrap();
    let sql = format!(
        "SELECT * FROM ({BATCH}) WHERE window_start + INTERVAL '1 minute' <= to_timestamp_micros({watermark}) \
         ORDER BY window_start, country"
    );
    let mut rows = lines(&catalog.query(&sql).await.unwrap().batches);
    rows.sort();
    rows
}

/// The view's final rows, as text without window_end, sorted.
fn view_answer(out: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = lines(out)
        .into_iter()
        .map(|mut r| {
            r.remove(1);
            r
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn every_final_window_equals_batch_sql_over_the_real_lines_replayed_out_of_order() {
    let (_dir, lake, batches, schema) = real_orders().await;
    let mut runner = runner(REVENUE_PER_MINUTE, &schema).await;
    let rows = shuffled(&batches, 25, &|_| false);
    let (out, late) = replay(&mut runner, &rows).await;
    assert!(late.is_empty(), "nothing arrived beyond the delay");
    let watermark = runner.watermark().unwrap();
    let view = view_answer(&out);
    assert!(view.len() > 300, "{} windows", view.len());
    assert_eq!(view, batch_answer(&lake, watermark).await);
    // What is still open is visible live.
    let live = lines(&runner.live().await.unwrap());
    assert!(!live.is_empty());
}

/// Lines per country, as `country -> (lines, revenue in ten-thousandths)`.
fn totals(rows: impl Iterator<Item = (String, i64, i128)>) -> BTreeMap<String, (i64, i128)> {
    let mut t = BTreeMap::new();
    for (country, lines, revenue) in rows {
        let e = t.entry(country).or_insert((0, 0));
        e.0 += lines;
        e.1 += revenue;
    }
    t
}

fn decimal(s: &str) -> i128 {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let negative = whole.starts_with('-');
    let frac: String = format!("{frac:0<4}").chars().take(4).collect();
    let v = whole.trim_start_matches('-').parse::<i128>().unwrap() * 10_000
        + frac.parse::<i128>().unwrap();
    if negative { -v } else { v }
}

#[tokio::test(flavor = "multi_thread")]
async fn final_windows_and_late_rows_reconcile_exactly_with_batch_sql() {
    let (_dir, lake, batches, schema) = real_orders().await;
    let mut runner = runner(REVENUE_PER_MINUTE, &schema).await;
    // Every 40th line is held back an hour: far beyond the 30 s delay.
    let rows = shuffled(&batches, 25, &|n| n % 40 == 7);
    let (out, late) = replay(&mut runner, &rows).await;
    let late_count: usize = late.iter().map(RecordBatch::num_rows).sum();
    assert!(late_count > 50, "{late_count} late rows");
    assert_eq!(runner.counters().late_rows as usize, late_count);
    let watermark = runner.watermark().unwrap();
    // The view's final windows: lines and revenue per country.
    let view = lines(&out)
        .into_iter()
        .map(|r| (r[2].clone(), r[5].parse::<i64>().unwrap(), decimal(&r[3])));
    let mut got = totals(view);
    // Plus the late rows that missed a final window (their records).
    for b in &late {
        let records = b
            .column_by_name("record")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let late_by = b
            .column_by_name("late_by_ms")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            assert!(late_by.value(i) >= 0);
            let r: serde_json::Value = serde_json::from_str(records.value(i)).unwrap();
            let country = r["country"].as_str().unwrap_or_default().to_string();
            let revenue = match &r["line_revenue"] {
                serde_json::Value::String(s) => decimal(s),
                v => decimal(&v.to_string()),
            };
            let e = got.entry(country).or_insert((0, 0));
            e.0 += 1;
            e.1 += revenue;
        }
    }
    // Batch SQL over the windows that are final.
    let batch = batch_answer(&lake, watermark).await;
    let want = totals(
        batch
            .into_iter()
            .map(|r| (r[1].clone(), r[4].parse::<i64>().unwrap(), decimal(&r[2]))),
    );
    assert_eq!(got, want);
}

/// A small table of hand-made events: customer, event time (minutes), amount.
fn events(rows: &[(&str, i64, i64)]) -> (SchemaRef, RecordBatch) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer", DataType::Utf8, false),
        Field::new(
            "at",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("amount", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(arrow::array::TimestampMicrosecondArray::from(
                rows.iter().map(|r| r.1 * 60_000_000).collect::<Vec<_>>(),
            )),
            Arc::new(arrow::array::Int64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    (schema, batch)
}

async fn run_events(
    sql: &str,
    delay_min: u64,
    batches: &[Vec<(&str, i64, i64)>],
) -> (Vec<Vec<String>>, ViewRunner) {
    let (schema, _) = events(&[]);
    let s = schema.clone();
    let plan = ViewPlan::new("v", sql, move |n| (n == "events").then(|| s.clone()))
        .await
        .unwrap();
    let delay = Duration::from_secs(60 * delay_min);
    let mut runner = ViewRunner::new(plan, ViewOptions { delay, ..options() }).unwrap();
    let mut out = Vec::new();
    for rows in batches {
        let (_, batch) = events(rows);
        out.extend(runner.push(0, &batch).await.unwrap().rows);
    }
    let mut rows = lines(&out);
    rows.sort();
    (rows, runner)
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn hopping_windows_count_each_event_in_every_window_holding_it() {
    let sql = "SELECT window_start, window_end, sum(amount) AS total, count(*) AS n \
               FROM HOP(events, at, INTERVAL '1 minute', INTERVAL '3 minutes') GROUP BY window_start, window_end";
    // Events at minutes 0, 1 and 2 (amounts 1, 10, 100); then minute 10 moves the watermark past them all.
    let (rows, _) = run_events(
        sql,
        0,
        &[
            vec![("a", 0, 1), ("a", 1, 10), ("b", 2, 100)],
            vec![("a", 10, 0)],
        ],
    )
    .await;
    assert_eq!(
        rows,
        vec![
            row(&["1969-12-31T23:58:00", "1970-01-01T00:01:00", "1", "1"]),
            row(&["1969-12-31T23:59:00", "1970-01-01T00:02:00", "11", "2"]),
            row(&["1970-01-01T00:00:00", "1970-01-01T00:03:00", "111", "3"]),
            row(&["1970-01-01T00:01:00", "1970-01-01T00:04:00", "110", "2"]),
            row(&["1970-01-01T00:02:00", "1970-01-01T00:05:00", "100", "1"]),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_date_column_is_an_event_time_at_midnight() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("plan", DataType::Utf8, false),
        Field::new("signup", DataType::Date32, false),
    ]));
    let s = schema.clone();
    let sql = "SELECT window_start, window_end, plan, count(*) AS n \
               FROM TUMBLE(signups, signup, INTERVAL '1 day') GROUP BY window_start, window_end, plan";
    let plan = ViewPlan::new("v", sql, move |n| (n == "signups").then(|| s.clone()))
        .await
        .unwrap();
    let mut runner = ViewRunner::new(
        plan,
        ViewOptions {
            delay: Duration::ZERO,
            ..options()
        },
    )
    .unwrap();
    // Days 0, 0 and 1; then day 3 makes days 0 and 1 final.
    let mut out = Vec::new();
    for days in [vec![("pro", 0), ("free", 0), ("pro", 1)], vec![("pro", 3)]] {
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(
                    days.iter().map(|d| d.0).collect::<Vec<_>>(),
                )),
                Arc::new(arrow::array::Date32Array::from(
                    days.iter().map(|d| d.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        out.extend(runner.push(0, &batch).await.unwrap().rows);
    }
    let mut rows = lines(&out);
    rows.sort();
    assert_eq!(
        rows,
        vec![
            row(&["1970-01-01T00:00:00", "1970-01-02T00:00:00", "free", "1"]),
            row(&["1970-01-01T00:00:00", "1970-01-02T00:00:00", "pro", "1"]),
            row(&["1970-01-02T00:00:00", "1970-01-03T00:00:00", "pro", "1"]),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_per_key_merge_events_closer_than_the_gap() {
    let sql = "SELECT customer, window_start, window_end, sum(amount) AS total, count(*) AS n \
               FROM SESSION(events, at, INTERVAL '30 minutes') GROUP BY window_start, window_end, customer";
    // a: 0, 20, 45 (one session: each gap < 30) and 100 (another); b: 10 alone. Arrival out of order
    // (within the hour of delay): 20 arrives after 45 and bridges a's first two sessions into one.
    let (rows, runner) = run_events(
        sql,
        60,
        &[
            vec![("a", 0, 1), ("b", 10, 5), ("a", 45, 100)],
            vec![("a", 20, 10)],
            vec![("a", 100, 1000)],
            // d: 300 and exactly 30 minutes later, 330: windows that touch are one session.
            vec![("c", 200, 0), ("d", 300, 1), ("d", 330, 2)],
            vec![("e", 500, 0)],
        ],
    )
    .await;
    assert_eq!(
        rows,
        vec![
            row(&[
                "a",
                "1970-01-01T00:00:00",
                "1970-01-01T01:15:00",
                "111",
                "3"
            ]),
            row(&[
                "a",
                "1970-01-01T01:40:00",
                "1970-01-01T02:10:00",
                "1000",
                "1"
            ]),
            row(&["b", "1970-01-01T00:10:00", "1970-01-01T00:40:00", "5", "1"]),
            row(&["c", "1970-01-01T03:20:00", "1970-01-01T03:50:00", "0", "1"]),
            row(&["d", "1970-01-01T05:00:00", "1970-01-01T06:00:00", "3", "2"]),
        ]
    );
    assert_eq!(runner.state_size().0, 1, "only e's session is open");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_updating_aggregate_is_live_per_key_until_its_time_to_live() {
    let sql = "SELECT customer, sum(amount) AS total, count(*) AS n FROM events GROUP BY customer";
    let (schema, _) = events(&[]);
    let s = schema.clone();
    let plan = ViewPlan::new("totals", sql, move |n| (n == "events").then(|| s.clone()))
        .await
        .unwrap();
    // The time to live is processing time (as Flink's state TTL): a key not updated for 1 s is dropped.
    let ttl = Duration::from_secs(1);
    let mut runner = ViewRunner::new(plan, ViewOptions { ttl, ..options() }).unwrap();
    for rows in [vec![("a", 0, 1), ("b", 1, 5)], vec![("a", 2, 10)]] {
        let (_, batch) = events(&rows);
        let out = runner.push(0, &batch).await.unwrap();
        assert!(out.rows.is_empty(), "updating rows are live only");
    }
    let mut live = lines(&runner.live().await.unwrap());
    live.sort();
    assert_eq!(live, vec![row(&["a", "11", "2"]), row(&["b", "5", "1"])]);
    std::thread::sleep(Duration::from_millis(1200));
    let (_, batch) = events(&[("c", 125, 7)]);
    runner.push(0, &batch).await.unwrap();
    assert_eq!(
        lines(&runner.live().await.unwrap()),
        vec![row(&["c", "7", "1"])]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_per_customer_over_the_real_lines_count_every_line_once() {
    let (_dir, _lake, batches, schema) = real_orders().await;
    let sql = "SELECT customer_id, window_start, window_end, count(*) AS lines \
               FROM SESSION(orders, invoice_date, INTERVAL '30 minutes') GROUP BY window_start, window_end, customer_id";
    let mut runner = runner(sql, &schema).await;
    let rows = shuffled(&batches, 25, &|_| false);
    let (mut out, late) = replay(&mut runner, &rows).await;
    assert!(late.is_empty());
    out.extend(runner.close().await.unwrap().rows);
    let total: i64 = lines(&out)
        .iter()
        .map(|r| r[3].parse::<i64>().unwrap())
        .sum();
    let all: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(total as usize, all, "every line in one session");
    // No two sessions of a customer overlap or touch.
    let mut by_customer: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for r in lines(&out) {
        by_customer
            .entry(r[0].clone())
            .or_default()
            .push((r[1].clone(), r[2].clone()));
    }
    for (customer, mut sessions) in by_customer {
        sessions.sort();
        for pair in sessions.windows(2) {
            assert!(pair[0].1 < pair[1].0, "{customer}: {pair:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn flinks_and_sparks_window_syntaxes_plan_as_ours() {
    let (schema, _) = events(&[]);
    let plan = |sql: &'static str| {
        let s = schema.clone();
        async move {
            ViewPlan::new("v", sql, move |n| {
                ["events", "returns"].contains(&n).then(|| s.clone())
            })
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    };
    for (flink, ours) in [
        (
            "SELECT window_start, window_end, count(*) AS n FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(at), INTERVAL '1' MINUTES)) GROUP BY window_start, window_end",
            "SELECT window_start, window_end, count(*) AS n FROM TUMBLE(events, at, INTERVAL '1 minute') GROUP BY window_start, window_end",
        ),
        (
            "SELECT window_start, window_end, count(*) AS n FROM TABLE(HOP(TABLE events, DESCRIPTOR(at), INTERVAL '5' MINUTES, INTERVAL '1' HOUR)) GROUP BY window_start, window_end",
            "SELECT window_start, window_end, count(*) AS n FROM HOP(events, at, INTERVAL '5 minutes', INTERVAL '1 hour') GROUP BY window_start, window_end",
        ),
        (
            "SELECT window_start, window_end, customer, count(*) AS n FROM TABLE(SESSION(TABLE events PARTITION BY customer, DESCRIPTOR(at), INTERVAL '30' MINUTES)) GROUP BY window_start, window_end, customer",
            "SELECT window_start, window_end, customer, count(*) AS n FROM SESSION(events, at, INTERVAL '30 minutes') GROUP BY window_start, window_end, customer",
        ),
        // Spark Structured Streaming's: `window` is a struct there.
        (
            "SELECT window.start AS window_start, window.end AS window_end, count(*) AS n FROM events GROUP BY window(at, '1 minute')",
            "SELECT window_start, window_end, count(*) AS n FROM TUMBLE(events, at, INTERVAL '1 minute') GROUP BY window_start, window_end",
        ),
        (
            "SELECT window, count(*) AS n FROM events GROUP BY window(at, '1 hour', '5 minutes')",
            "SELECT window_start, window_end, count(*) AS n FROM HOP(events, at, INTERVAL '5 minutes', INTERVAL '1 hour') GROUP BY window_start, window_end",
        ),
        // Flink's group windows.
        (
            "SELECT TUMBLE_START(at, INTERVAL '1' MINUTE) AS window_start, TUMBLE_END(at, INTERVAL '1' MINUTE) AS window_end, count(*) AS n FROM events GROUP BY TUMBLE(at, INTERVAL '1' MINUTE)",
            "SELECT window_start, window_end, count(*) AS n FROM TUMBLE(events, at, INTERVAL '1 minute') GROUP BY window_start, window_end",
        ),
        (
            "SELECT HOP_START(at, INTERVAL '5' MINUTE, INTERVAL '1' HOUR) AS window_start, HOP_END(at, INTERVAL '5' MINUTE, INTERVAL '1' HOUR) AS window_end, count(*) AS n FROM events GROUP BY HOP(at, INTERVAL '5' MINUTE, INTERVAL '1' HOUR)",
            "SELECT window_start, window_end, count(*) AS n FROM HOP(events, at, INTERVAL '5 minutes', INTERVAL '1 hour') GROUP BY window_start, window_end",
        ),
        // An aliased source; a dataset named by a SQL keyword.
        (
            "SELECT window.start AS window_start, window.end AS window_end, e.customer, count(*) AS n FROM events AS e GROUP BY window(e.at, '1 minute'), e.customer",
            "SELECT window_start, window_end, customer, count(*) AS n FROM TUMBLE(events, at, INTERVAL '1 minute') GROUP BY window_start, window_end, customer",
        ),
        (
            "SELECT window_start, window_end, count(*) AS n FROM TABLE(TUMBLE(TABLE returns, DESCRIPTOR(at), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end",
            "SELECT window_start, window_end, count(*) AS n FROM TUMBLE(returns, at, INTERVAL '1 minute') GROUP BY window_start, window_end",
        ),
        (
            "SELECT window, customer, count(*) AS n FROM events GROUP BY customer, session_window(at, '30 minutes')",
            "SELECT window_start, window_end, customer, count(*) AS n FROM SESSION(events, at, INTERVAL '30 minutes') GROUP BY customer, window_start, window_end",
        ),
    ] {
        let (f, o) = (plan(flink).await, plan(ours).await);
        assert_eq!(
            format!("{:?}", f.window),
            format!("{:?}", o.window),
            "{flink}"
        );
        assert_eq!(
            (f.source, f.output_schema),
            (o.source, o.output_schema),
            "{flink}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_view_cannot_run_is_refused_with_the_reason() {
    let (schema, _) = events(&[]);
    for (sql, reason) in [
        (
            "SELECT * FROM events a JOIN events b ON a.customer = b.customer",
            "joins of two streams",
        ),
        (
            "SELECT customer FROM events ORDER BY customer",
            "ORDER BY and LIMIT",
        ),
        (
            "SELECT count(*) FROM TUMBLE(events, at, INTERVAL '1 minute')",
            "groups by window_start and window_end",
        ),
        (
            "SELECT customer FROM events UNION SELECT customer FROM events",
            "UNION",
        ),
        (
            "SELECT count(*) FROM TUMBLE(events, amount, INTERVAL '1 minute') GROUP BY window_start, window_end",
            "not a timestamp",
        ),
        (
            "SELECT count(*) FROM TUMBLE(nothing, at, INTERVAL '1 minute') GROUP BY window_start, window_end",
            "no dataset or view `nothing`",
        ),
        (
            "SELECT count(*) FROM HOP(events, at, INTERVAL '5 minutes', INTERVAL '1 minute') GROUP BY window_start, window_end",
            "slide is longer",
        ),
        (
            "SELECT customer, count(*) FROM events GROUP BY ROLLUP(customer)",
            "ROLLUP",
        ),
        (
            "SELECT window, count(*) FROM events GROUP BY window(at, '1 minute', '1 minute', '10 seconds')",
            "takes window(time, size)",
        ),
        (
            "SELECT window AS w, count(*) FROM events GROUP BY window(at, '1 minute')",
            "select window.start and window.end",
        ),
        (
            "SELECT count(*) FROM events GROUP BY window(at, '1 minute'), session_window(at, '1 minute')",
            "groups by one window",
        ),
        (
            "SELECT TUMBLE_ROWTIME(at, INTERVAL '1' MINUTE), count(*) FROM events GROUP BY TUMBLE(at, INTERVAL '1' MINUTE)",
            "no other bound",
        ),
    ] {
        let s = schema.clone();
        let err = ViewPlan::new("v", sql, move |n| (n == "events").then(|| s.clone()))
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} was accepted"));
        assert!(err.to_string().contains(reason), "{sql}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_view_may_not_take_a_datasets_name_nor_drop_its_table() {
    use shopstream_engine::stream::view::defs;
    let (dir, lake, _, _) = lake_and_log(1);
    let day1 = testdata("../../shared/data/online-retail/by-day/2010-12-01.csv");
    load(&lake, &[day1], Vec::new()).await;
    for name in ["orders", "dead_letters", "late_rows", "_shopstream"] {
        let def = ViewDef::new(name, "SELECT count(*) AS n FROM orders");
        let err = defs::save(&lake, &def, &[]).await.unwrap_err().to_string();
        assert!(
            err.contains("a view needs a name of its own"),
            "{name}: {err}"
        );
        let err = defs::drop(&lake, name, true).await.unwrap_err().to_string();
        assert!(err.contains("not a view"), "{name}: {err}");
    }
    assert!(dir.path().join("lake/orders/_delta_log").exists());
    let catalog = Catalog::open(&lake).await.unwrap();
    assert!(
        !lines(
            &catalog
                .query("SELECT 1 FROM orders LIMIT 1")
                .await
                .unwrap()
                .batches
        )
        .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_view_may_read_a_dataset_the_config_declares_before_it_has_a_table() {
    use shopstream_engine::stream::view::defs;
    let (_dir, lake, _, _) = lake_and_log(1);
    let events = shopstream_ingest::DatasetConfig {
        name: "events".into(),
        columns: vec!["user_id text not null".into(), "at timestamp".into()],
        key: Vec::new(),
        partition: None,
    };
    let declared = [Arc::new(events.to_dataset().unwrap())];
    let def = ViewDef::new(
        "per_user",
        "SELECT window_start, window_end, user_id, count(*) AS n \
         FROM TUMBLE(events, at, INTERVAL '1 minute') GROUP BY window_start, window_end, user_id",
    );
    let err = defs::save(&lake, &def, &[]).await.unwrap_err().to_string();
    assert!(err.contains("no dataset or view `events`"), "{err}");
    defs::save(&lake, &def, &declared).await.unwrap();
    assert_eq!(defs::get(&lake, "per_user").await.unwrap(), Some(def));
    let clash = ViewDef::new(
        "events",
        "SELECT user_id, count(*) AS n FROM orders GROUP BY user_id",
    );
    let err = defs::save(&lake, &clash, &declared)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("a view needs a name of its own"), "{err}");
}

/// A scratch folder with a lake (`lake/`) and an embedded log (`log/`) whose `orders` topic has
/// `partitions`; and the backbone, for other topics.
fn lake_and_log(
    partitions: u32,
) -> (
    tempfile::TempDir,
    Lake,
    Arc<dyn shopstream_log::Backbone>,
    Arc<dyn shopstream_log::TopicLog>,
) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let (log, _) = shopstream_log::Log::open(&dir.path().join("log")).unwrap();
    let backbone = shopstream_log::Embedded::shared(log);
    let topic = backbone.create_topic("orders", partitions).unwrap();
    (dir, lake, backbone, topic)
}

/// The view source of the `orders` records on `topic`, in UTC.
fn orders_on(topic: Arc<dyn shopstream_log::TopicLog>) -> ViewSource {
    ViewSource {
        topic,
        dataset: shopstream_ingest::Dataset::orders(),
        mapping: None,
        timezone: chrono_tz::Tz::UTC,
    }
}

/// View `def` over the `orders` records on `topic`, opened (resumed, or backfilled from the lake).
async fn open_view(lake: &Lake, def: ViewDef, topic: Arc<dyn shopstream_log::TopicLog>) -> ViewJob {
    ViewJob::open(lake, def, orders_on(topic), WriteOptions::default())
        .await
        .unwrap()
}

/// Appends the lines of the Online Retail day files `days` to `topic` as requests of 50 envelopes,
/// partitions taking turns, in file order; returns how many.
fn append_days(topic: &dyn shopstream_log::TopicLog, days: &[&str]) -> usize {
    use shopstream_ingest::sources::Envelope;
    let mut n = 0;
    let mut request = Vec::new();
    let flush = |request: &mut Vec<shopstream_log::NewRecord>, n: usize| {
        if !request.is_empty() {
            topic.append((n / 50 % 2) as u32, request).unwrap();
            request.clear();
        }
    };
    for day in days {
        let path = testdata(&format!("../../shared/data/online-retail/by-day/{day}.csv"));
        let mut reader = csv::Reader::from_path(path).unwrap();
        let headers = reader.headers().unwrap().clone();
        for record in reader.records() {
            let record = record.unwrap();
            let fields = headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_string(), serde_json::Value::String(v.to_string())))
                .collect();
            let envelope = Envelope {
                source: format!("http:test-{}", n / 50),
                index: (n % 50 + 1) as u64,
                fields,
                checkpoint: None,
                reason: None,
            };
            request.push(shopstream_log::NewRecord::new(0, envelope.to_bytes()));
            n += 1;
            if n % 50 == 0 {
                flush(&mut request, n - 1);
            }
        }
    }
    flush(&mut request, n);
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn a_view_backfills_from_the_lake_continues_from_the_log_and_resumes_after_a_crash_exactly_once()
 {
    use shopstream_engine::stream::topic_load::{TopicLoadConfig, TopicLoader};

    let (_dir, lake, _, topic) = lake_and_log(2);
    // Day 1 was loaded from its file before the view existed: the view backfills it from the lake.
    let day1 = testdata("../../shared/data/online-retail/by-day/2010-12-01.csv");
    load(&lake, &[day1], Vec::new()).await;
    let def = ViewDef::new("revenue_per_minute", REVENUE_PER_MINUTE);
    let mut job = open_view(&lake, def.clone(), topic.clone()).await;
    // Days 2 and 3 arrive live, through the log.
    let live = append_days(topic.as_ref(), &["2010-12-02", "2010-12-03"]);
    assert!(live > 3000);
    // A few small steps, then the view's process dies (the job is dropped between steps: a checkpoint
    // was written and committed last, maybe more of the log was read since the last one).
    for _ in 0..5 {
        job.step(300).await.unwrap();
    }
    drop(job);
    // Restarted: it resumes from its last checkpoint and reads the rest.
    let mut job = open_view(&lake, def.clone(), topic.clone()).await;
    while job.step(1000).await.unwrap() > 0 {}
    let watermark = job.runner().watermark().unwrap();
    assert!(job.runner().counters().late_rows == 0);
    drop(job);
    // The lake's load of the same log, for the batch answer over all three days.
    let mut loader = TopicLoader::open(&lake, topic.clone(), TopicLoadConfig::new("orders"))
        .await
        .unwrap();
    while loader.step().await.unwrap() > 0 {}
    let catalog = Catalog::open(&lake).await.unwrap();
    let got = catalog
        .query("SELECT window_start, country, revenue, orders, lines FROM revenue_per_minute")
        .await
        .unwrap();
    let mut got = lines(&got.batches);
    got.sort();
    let want = batch_answer(&lake, watermark).await;
    assert!(want.len() > 300, "{} windows", want.len());
    assert_eq!(got, want, "each final window once, equal to batch SQL");
    // The view's table is not a dataset: no topic or load is made for it.
    assert!(lake.dataset("revenue_per_minute").await.unwrap().is_none());
    // A changed view is a new version: its state starts over, and the old version's rows are replaced.
    let mut changed = def.clone();
    changed.lateness_s = 1;
    let mut job = open_view(&lake, changed, topic.clone()).await;
    while job.step(1000).await.unwrap() > 0 {}
    let watermark = job.runner().watermark().unwrap();
    drop(job);
    let catalog = Catalog::open(&lake).await.unwrap();
    let got = catalog
        .query("SELECT window_start, country, revenue, orders, lines FROM revenue_per_minute")
        .await
        .unwrap();
    let mut got = lines(&got.batches);
    got.sort();
    let want = batch_answer(&lake, watermark - 1_000_000).await;
    assert_eq!(got, want, "the new version's windows, each once");
}

/// A real topic of the embedded log, with what the tests need of a remote backbone: its `fail_at`-th
/// append stores the records and then reports an error (what a producer sees when the broker kept a
/// request whose answer was lost, or the process died right after sending it); with `windows`, its
/// reader reports a dedupe window at each offset (as a Kafka reader keeps the keys of recent requests)
/// and records the windows it is given back.
struct TestTopic {
    topic: Arc<dyn shopstream_log::TopicLog>,
    appends: std::sync::atomic::AtomicUsize,
    fail_at: usize,
    windows: bool,
    restored: std::sync::Mutex<Vec<Restored>>,
}

/// A window given back to a reader: partition, offset, keys.
type Restored = (u32, u64, Vec<Vec<u8>>);

impl TestTopic {
    fn new(topic: Arc<dyn shopstream_log::TopicLog>, fail_at: usize, windows: bool) -> Arc<Self> {
        Arc::new(TestTopic {
            topic,
            appends: Default::default(),
            fail_at,
            windows,
            restored: Default::default(),
        })
    }
}

impl shopstream_log::TopicLog for TestTopic {
    fn name(&self) -> &str {
        self.topic.name()
    }
    fn partition_count(&self) -> u32 {
        self.topic.partition_count()
    }
    fn partition_for_key(&self, key: &[u8]) -> u32 {
        self.topic.partition_for_key(key)
    }
    fn append(
        &self,
        n: u32,
        records: &[shopstream_log::NewRecord],
    ) -> shopstream_log::Result<std::ops::Range<u64>> {
        let stored = self.topic.append(n, records)?;
        let k = self
            .appends
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        if k == self.fail_at {
            return Err(shopstream_log::LogError::Invalid(
                "the answer was lost".into(),
            ));
        }
        Ok(stored)
    }
    fn read(
        &self,
        n: u32,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> shopstream_log::Result<shopstream_log::Fetched> {
        self.topic.read(n, offset, max_records, max_bytes)
    }
    fn end_offset(&self, n: u32) -> shopstream_log::Result<u64> {
        self.topic.end_offset(n)
    }
    fn start_offset(&self, n: u32) -> shopstream_log::Result<u64> {
        self.topic.start_offset(n)
    }
    fn backbone(&self) -> &str {
        self.topic.backbone()
    }
    fn dedupe_window(&self, n: u32, next: u64) -> Option<Vec<Vec<u8>>> {
        self.windows
            .then(|| vec![format!("w{n}@{next}").into_bytes()])
    }
    fn restore_window(&self, n: u32, at: u64, keys: Vec<Vec<u8>>) {
        self.restored.lock().unwrap().push((n, at, keys));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_views_final_rows_reach_its_topic_at_least_once_each_keyed_for_dedupe() {
    let (_dir, lake, backbone, topic) = lake_and_log(2);
    let out = backbone.create_topic("rpm", 2).unwrap();
    let source = orders_on(topic.clone());
    let mut def = ViewDef::new("revenue_per_minute", REVENUE_PER_MINUTE);
    def.topic = Some("rpm".into());
    assert_eq!(
        def.version(),
        ViewDef::new("revenue_per_minute", REVENUE_PER_MINUTE).version(),
        "the topic is not part of the version"
    );
    append_days(topic.as_ref(), &["2010-12-01", "2010-12-02"]);
    // The third append's answer is lost after its rows are in the topic: the view sends that checkpoint's
    // rows again at its next one (what it cannot know was sent), and after a restart what was not sent.
    let flaky: Arc<dyn shopstream_log::TopicLog> = TestTopic::new(out.clone(), 3, false);
    let open = |t: Arc<dyn shopstream_log::TopicLog>| {
        let (lake, def, source) = (lake.clone(), def.clone(), source.clone());
        async move {
            let input = ViewInput::Log(Box::new(source));
            ViewJob::open_with(&lake, def, input, WriteOptions::default(), Some(t))
                .await
                .unwrap()
        }
    };
    // The lost answer does not stop the view: the checkpoint's rows are sent again at the next one.
    let mut job = open(flaky).await;
    for _ in 0..10 {
        job.step(300).await.unwrap();
    }
    // Then its process dies, and a new one resumes from the last checkpoint.
    drop(job);
    let mut job = open(out.clone()).await;
    while job.step(1000).await.unwrap() > 0 {}
    job.finish().await.unwrap();
    drop(job);

    // Every row of the view's table is in the topic under one key; repeats carry the same row.
    let mut by_key: BTreeMap<String, String> = BTreeMap::new();
    let mut records = 0;
    for p in 0..out.partition_count() {
        let fetched = out.read(p, 0, usize::MAX, usize::MAX).unwrap();
        for r in fetched.records {
            records += 1;
            let key = String::from_utf8(r.key.unwrap()).unwrap();
            assert!(key.starts_with("revenue_per_minute:"), "{key}");
            let value = String::from_utf8(r.value).unwrap();
            if let Some(seen) = by_key.insert(key.clone(), value.clone()) {
                assert_eq!(seen, value, "a repeat of {key} is the same row");
            }
        }
    }
    assert!(
        records > by_key.len(),
        "the lost answer's rows were sent again"
    );
    let catalog = Catalog::open(&lake).await.unwrap();
    let table = catalog
        .query("SELECT window_start, country, lines FROM revenue_per_minute")
        .await
        .unwrap();
    let mut want = lines(&table.batches);
    want.sort();
    let mut got: Vec<Vec<String>> = by_key
        .values()
        .map(|v| {
            let row: serde_json::Value = serde_json::from_str(v).unwrap();
            let start = row["window_start"].as_str().unwrap().to_string();
            vec![
                start,
                row["country"].as_str().unwrap().to_string(),
                row["lines"].to_string(),
            ]
        })
        .collect();
    got.sort();
    assert!(want.len() > 200, "{} windows", want.len());
    assert_eq!(
        got, want,
        "deduplicated by key, the topic holds the table's rows"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_view_over_a_view_reads_its_commits_once_and_starts_over_when_its_source_is_replaced() {
    use shopstream_engine::stream::view::defs;

    let (_dir, lake, _, topic) = lake_and_log(2);
    append_days(topic.as_ref(), &["2010-12-01", "2010-12-02"]);
    let minute = ViewDef::new("revenue_per_minute", REVENUE_PER_MINUTE);
    let hour = ViewDef::new(
        "revenue_per_hour",
        "SELECT window_start, window_end, sum(revenue) AS revenue, sum(lines) AS lines \
         FROM TUMBLE(revenue_per_minute, window_start, INTERVAL '1 hour') \
         GROUP BY window_start, window_end",
    );
    defs::save(&lake, &minute, &[]).await.unwrap();
    defs::save(&lake, &hour, &[])
        .await
        .expect("a view over a view is planned");
    let upstream = |def: ViewDef| open_view(&lake, def, topic.clone());
    let downstream = || {
        let (lake, def) = (lake.clone(), hour.clone());
        let input = ViewInput::View {
            name: "revenue_per_minute".into(),
            timezone: chrono_tz::Tz::UTC,
        };
        async move { ViewJob::open_with(&lake, def, input, WriteOptions::default(), None).await }
    };
    // The minute view runs a while before the hour view exists: the hour view backfills from its table.
    let mut minutes = upstream(minute.clone()).await;
    for _ in 0..4 {
        minutes.step(300).await.unwrap();
    }
    let mut hours = downstream().await.unwrap();
    // Both run; the hour view's process dies once and resumes from its checkpoint.
    for i in 0..40 {
        minutes.step(300).await.unwrap();
        hours.step(1000).await.unwrap();
        if i == 10 {
            drop(hours);
            hours = downstream().await.unwrap();
        }
    }
    minutes.finish().await.unwrap();
    while hours.step(1000).await.unwrap() > 0 {}
    hours.finish().await.unwrap();

    // Each minute window counted once: the hour view equals batch SQL over the minute view's table.
    let answer = |lake: Lake| async move {
        let catalog = Catalog::open(&lake).await.unwrap();
        let got = catalog
            .query("SELECT window_start, revenue, lines FROM revenue_per_hour")
            .await
            .unwrap();
        let want = catalog
            .query(
                "SELECT date_bin(INTERVAL '1 hour', window_start, TIMESTAMP '1970-01-01') AS h, \
                 sum(revenue), sum(lines) FROM revenue_per_minute GROUP BY 1",
            )
            .await
            .unwrap();
        let (mut got, mut want) = (lines(&got.batches), lines(&want.batches));
        got.sort();
        want.sort();
        (got, want)
    };
    let (got, want) = answer(lake.clone()).await;
    assert!(want.len() >= 15, "{} hours", want.len());
    assert_eq!(got, want);

    // The minute view is replaced (a new version recomputes its rows): the running hour view notices
    // the rows removed, starts over from the new rows and replaces its own in one commit.
    let mut changed = minute.clone();
    changed.lateness_s = 1;
    defs::save(&lake, &changed, &[]).await.unwrap();
    let mut minutes = upstream(changed).await;
    for _ in 0..5 {
        minutes.step(300).await.unwrap();
        hours.step(1000).await.unwrap();
    }
    let (got, want) = answer(lake.clone()).await;
    assert!(
        got.iter().all(|h| want.contains(h)),
        "only hours of the new minute rows: {got:?}"
    );
    // Its process dies; restarted, it is a new version (its source's definition changed) and backfills.
    drop(hours);
    let mut hours = downstream().await.unwrap();
    while minutes.step(300).await.unwrap() > 0 {
        hours.step(1000).await.unwrap();
    }
    minutes.finish().await.unwrap();
    while hours.step(1000).await.unwrap() > 0 {}
    hours.finish().await.unwrap();
    let (got, want) = answer(lake.clone()).await;
    assert!(want.len() >= 15, "{} hours", want.len());
    assert_eq!(
        got, want,
        "the new hour view is the new minute view's hours, each once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_version_with_other_columns_replaces_the_views_table() {
    let (dir, lake, _, topic) = lake_and_log(1);
    let day1 = testdata("../../shared/data/online-retail/by-day/2010-12-01.csv");
    load(&lake, &[day1], Vec::new()).await;
    let run = |sql: &'static str| {
        let (lake, topic) = (lake.clone(), topic.clone());
        async move {
            let mut job = open_view(&lake, ViewDef::new("per_minute", sql), topic).await;
            job.finish().await.unwrap();
        }
    };
    // First an updating aggregate (no timestamp columns, no final rows), then windows by minute.
    run("SELECT country, count(*) AS lines FROM orders GROUP BY country").await;
    run("SELECT window_start, window_end, country, count(*) AS lines \
         FROM TUMBLE(orders, invoice_date, INTERVAL '1 minute') GROUP BY window_start, window_end, country")
    .await;
    // The same view now also sums the revenue: a new version, whose table has the new column.
    run(REVENUE_PER_MINUTE).await;
    assert_per_minute_is_batch(&lake, "only the new version's rows, with its columns").await;
    // Only the newest version keeps a state.
    let states = dir.path().join("lake/per_minute/_state");
    let kept: Vec<_> = walk(&states)
        .into_iter()
        .filter_map(|f| Some(f.strip_prefix(&states).ok()?.iter().next()?.to_owned()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let version = ViewDef::new("per_minute", REVENUE_PER_MINUTE).version();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        kept[0].to_string_lossy().starts_with(&version),
        "{kept:?} {version}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_view_gives_its_reader_back_the_dedupe_window_of_its_checkpoint() {
    let (_dir, lake, _, topic) = lake_and_log(2);
    append_days(topic.as_ref(), &["2010-12-01"]);
    let def = ViewDef::new("revenue_per_minute", REVENUE_PER_MINUTE);
    let open = |reader: Arc<TestTopic>| open_view(&lake, def.clone(), reader);
    let mut job = open(TestTopic::new(topic.clone(), 0, true)).await;
    for _ in 0..3 {
        job.step(300).await.unwrap();
    }
    drop(job);
    // Resumed: each partition's reader gets the window it had at the checkpoint's offset, at that offset.
    let reader = TestTopic::new(topic.clone(), 0, true);
    let mut job = open(reader.clone()).await;
    // A checkpoint that read nothing new keeps the windows it resumed with.
    job.finish().await.unwrap();
    drop(job);
    let again = TestTopic::new(topic.clone(), 0, true);
    drop(open(again.clone()).await);
    for reader in [reader, again] {
        let mut restored = reader.restored.lock().unwrap().clone();
        restored.sort();
        assert_eq!(restored.len(), 2, "{restored:?}");
        for (p, (n, at, keys)) in restored.into_iter().enumerate() {
            assert_eq!(n, p as u32);
            assert!(at > 0, "partition {p} read");
            assert_eq!(keys, vec![format!("w{p}@{at}").into_bytes()]);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_view_dropped_but_not_purged_and_made_again_starts_over() {
    use shopstream_engine::stream::view::defs;
    let (dir, lake, _, topic) = lake_and_log(1);
    let day1 = testdata("../../shared/data/online-retail/by-day/2010-12-01.csv");
    load(&lake, &[day1], Vec::new()).await;
    let def = ViewDef::new("per_minute", REVENUE_PER_MINUTE);
    let states = dir.path().join("lake/per_minute/_state");
    for round in 0..2 {
        defs::save(&lake, &def, &[]).await.unwrap();
        let mut job = open_view(&lake, def.clone(), topic.clone()).await;
        job.finish().await.unwrap();
        drop(job);
        if round == 0 {
            // Its table keeps the number of its last checkpoint, which is gone.
            assert!(defs::drop(&lake, "per_minute", false).await.unwrap());
            assert!(walk(&states).is_empty(), "{:?}", walk(&states));
            assert!(defs::get(&lake, "per_minute").await.unwrap().is_none());
        }
    }
    assert_per_minute_is_batch(&lake, "each window once").await;
}

/// The view `per_minute`'s table holds every window of the batch answer, once.
async fn assert_per_minute_is_batch(lake: &Lake, what: &str) {
    let catalog = Catalog::open(lake).await.unwrap();
    let got = catalog
        .query("SELECT window_start, country, revenue, orders, lines FROM per_minute")
        .await
        .unwrap();
    let mut got = lines(&got.batches);
    got.sort();
    let want = batch_answer(lake, 4_000_000_000_000_000).await;
    assert!(want.len() > 100, "{} windows", want.len());
    assert_eq!(got, want, "{what}");
}

/// A view's final rows and late rows, each sorted, as text.
fn outcome(out: &[RecordBatch], late: &[RecordBatch]) -> [Vec<Vec<String>>; 2] {
    let mut rows = lines(out);
    rows.sort();
    let mut late = lines(late);
    // The watermark and how late differ with when a row came; the window and the row do not.
    for r in &mut late {
        r.remove(5);
        r.remove(4);
    }
    late.sort();
    [rows, late]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sliced_hopping_window_equals_every_window_fed_on_its_own_late_rows_and_restarts_included()
 {
    let (_dir, _lake, batches, schema) = real_orders().await;
    let hop = "SELECT window_start, window_end, country, sum(line_revenue) AS revenue, \
               count(DISTINCT invoice_no) AS orders, count(*) AS lines \
               FROM HOP(orders, invoice_date, INTERVAL '10 minutes', INTERVAL '1 hour') ";
    let group = "GROUP BY window_start, window_end, country";
    let mut sliced = runner(&format!("{hop}{group}"), &schema).await;
    assert_eq!(sliced.plan().slices, Some(600_000_000));
    // A WHERE that reads the window's bounds keeps every window apart (no slices).
    let apart_sql = format!("{hop}WHERE window_end > TIMESTAMP '2000-01-01 00:00:00' {group}");
    let mut apart = runner(&apart_sql, &schema).await;
    assert_eq!(apart.plan().slices, None);
    let rows = shuffled(&batches, 25, &|n| n % 40 == 7);
    let half = rows.len() / 2;
    let (mut out_s, mut late_s) = replay(&mut sliced, &rows[..half]).await;
    let (mut out_a, mut late_a) = replay(&mut apart, &rows[..half]).await;
    // The sliced view restarts from a checkpoint at half way.
    let (state, meta) = sliced.checkpoint().unwrap();
    let mut sliced = runner(&format!("{hop}{group}"), &schema).await;
    sliced.restore(state.as_ref(), meta).unwrap();
    for (runner, out, late) in [
        (&mut sliced, &mut out_s, &mut late_s),
        (&mut apart, &mut out_a, &mut late_a),
    ] {
        let (o, l) = replay(runner, &rows[half..]).await;
        out.extend(o);
        late.extend(l);
    }
    let (s, a) = (outcome(&out_s, &late_s), outcome(&out_a, &late_a));
    assert!(s[0].len() > 200, "{} final windows", s[0].len());
    assert!(s[1].len() > 50, "{} late rows", s[1].len());
    assert_eq!(s, a, "final rows and late rows");
    assert_eq!(sliced.counters().late_rows, apart.counters().late_rows);
    // Live, the sliced view shows its newest window (the last hour of events) per key.
    let mut live = lines(&sliced.live().await.unwrap());
    live.sort();
    assert!(!live.is_empty());
    // The end of input closes every window alike; the newest window then is as it was live.
    let (end_s, end_a) = (sliced.close().await.unwrap(), apart.close().await.unwrap());
    let (mut end_s, mut end_a) = (lines(&end_s.rows), lines(&end_a.rows));
    end_s.sort();
    end_a.sort();
    assert!(!end_s.is_empty());
    assert_eq!(end_s, end_a);
    let newest: Vec<Vec<String>> = end_a.into_iter().filter(|r| r[1] == live[0][1]).collect();
    assert_eq!(live, newest);
}
