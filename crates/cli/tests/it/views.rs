//! Continuous views through the binary: `view create` (and a view refused with its reason), `serve`
//! backfilling the view from the lines already loaded, then the real lines of two more days posted over
//! HTTP while `serve` is SIGKILLed and restarted: every final window in the view's table once, equal to
//! batch SQL over `orders`; the open windows in `<name>_live`; the figures in `/v1/status` and `/metrics`.
//! A view over that view (hours of its minutes) run by `serve` equals batch SQL over the minute view's table,
//! and the minute view's output topic holds each of its final rows under one key. A view made, changed and
//! dropped while `serve` runs is started, restarted as its new version and stopped.

use std::path::Path;
use std::time::Duration;

use crate::live::{start, status};
use crate::{run, stderr, stdout, wait_until};

const VIEW: &str = "SELECT window_start, window_end, country, sum(line_revenue) AS revenue, \
     count(DISTINCT invoice_no) AS orders, count(*) AS lines \
     FROM TUMBLE(orders, invoice_date, INTERVAL '1 minute') GROUP BY window_start, window_end, country";

fn day(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../../../shared/data/online-retail/by-day/{name}.csv"
    ))
}

/// The CSV of `days` as requests of 100 lines, each with its header row.
fn requests(days: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for d in days {
        let text = std::fs::read_to_string(day(d)).unwrap();
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        let body: Vec<&str> = lines.collect();
        for chunk in body.chunks(100) {
            out.push(format!("{header}\n{}\n", chunk.join("\n")));
        }
    }
    out
}

/// Posts `body` with `key` until a server at `url` acknowledges it.
fn post(url: &str, key: &str, body: &str) -> bool {
    ureq::post(format!("{url}/v1/topics/orders/records"))
        .header("Content-Type", "text/csv")
        .header("Idempotency-Key", key)
        .config()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .send(body)
        .is_ok()
}

fn sql_csv(dir: &Path, query: &str) -> String {
    let o = run(dir, &["sql", "--format", "csv", query]);
    assert!(o.status.success(), "{query}: {}", stderr(&o));
    stdout(&o)
}

/// The view's figures in a server's status.
fn figures(url: &str) -> Option<serde_json::Value> {
    figures_of(url, "revenue_per_minute")
}

/// View `name`'s figures in a server's status.
fn figures_of(url: &str, name: &str) -> Option<serde_json::Value> {
    status(url)["views"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
        .cloned()
}

/// A data folder with the lines of 2010-12-01 loaded from their file.
fn with_day_one() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let day1 = day("2010-12-01");
    let o = run(
        dir.path(),
        &["ingest", "--no-progress", day1.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    dir
}

#[test]
fn a_view_backfills_keeps_up_over_http_and_survives_sigkill_with_each_window_once() {
    let dir = with_day_one();
    let o = run(dir.path(), &["view", "create", "revenue_per_minute", VIEW]);
    assert!(
        stdout(&o).contains("view `revenue_per_minute` created"),
        "{}",
        stderr(&o)
    );
    let refused = run(
        dir.path(),
        &[
            "view",
            "create",
            "joined",
            "SELECT * FROM orders a JOIN orders b ON a.invoice_no = b.invoice_no",
        ],
    );
    assert!(
        stderr(&refused).contains("joins of two streams are not supported yet"),
        "{}",
        stderr(&refused)
    );
    let looped = run(
        dir.path(),
        &["view", "create", "looped", VIEW, "--topic", "orders"],
    );
    assert!(
        stderr(&looped).contains("topic `orders` is the orders topic"),
        "{}",
        stderr(&looped)
    );
    let listed = stdout(&run(dir.path(), &["view", "list"]));
    assert!(listed.starts_with("revenue_per_minute"), "{listed}");
    assert!(!listed.contains("looped"), "{listed}");
    // The SQL may come from a file (`@FILE`), its trailing `;` dropped.
    let file = dir.path().join("view.sql");
    std::fs::write(&file, format!("{VIEW};\n")).unwrap();
    let at_file = format!("@{}", file.display());
    let o = run(dir.path(), &["view", "create", "from_file", &at_file]);
    assert!(o.status.success(), "{}", stderr(&o));
    let described = stdout(&run(dir.path(), &["view", "describe", "from_file"]));
    assert!(
        described.contains("GROUP BY window_start, window_end, country\n"),
        "{described}"
    );
    assert!(
        run(dir.path(), &["view", "drop", "from_file"])
            .status
            .success()
    );
    // Before `serve` ran it, a query of it says so.
    for (table, hint) in [
        ("revenue_per_minute", "has no final rows yet"),
        ("revenue_per_minute_live", "in a running `serve`"),
    ] {
        let o = run(dir.path(), &["sql", &format!("SELECT * FROM {table}")]);
        assert!(
            !o.status.success() && stderr(&o).contains(hint),
            "{}",
            stderr(&o)
        );
    }

    let day1 = sql_csv(dir.path(), "SELECT count(*) FROM orders");
    let day1: usize = day1.lines().nth(1).unwrap().parse().unwrap();
    let (mut server, url) = start(dir.path(), None);
    // The backfill: day 1's windows are final at once (but the last), from the lines already loaded.
    wait_until("the view backfilled day 1", || {
        figures(&url).is_some_and(|v| v["windows_emitted"].as_u64() > Some(100))
    });
    let requests = requests(&["2010-12-02", "2010-12-03"]);
    let half = requests.len() / 2;
    for (i, body) in requests[..half].iter().enumerate() {
        assert!(post(&url, &format!("r{i}"), body));
    }
    // SIGKILL mid-load, mid-view-step; the next request is retried on the restarted server.
    server.kill().unwrap();
    server.wait().unwrap();
    let (mut server, url) = start(dir.path(), None);
    for (i, body) in requests.iter().enumerate().skip(half - 1) {
        assert!(post(&url, &format!("r{i}"), body));
    }
    let lines: usize = requests.iter().map(|r| r.lines().count() - 1).sum();
    let want_rows = format!("count(*)\n{}\n", day1 + lines);
    wait_until("the lake holds every line once", || {
        sql_csv(dir.path(), "SELECT count(*) FROM orders") == want_rows
    });
    wait_until("the view read everything", || {
        figures(&url)
            .is_some_and(|v| v["lag"] == 0 && v["rows_in"].as_u64() >= Some((day1 + lines) as u64))
    });
    let watermark = figures(&url).unwrap()["watermark"]
        .as_str()
        .unwrap()
        .to_string();
    let open = ureq::get(format!("{url}/api/sql"))
        .query("q", "SELECT count(*) AS n FROM revenue_per_minute_live")
        .query("format", "csv")
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert_ne!(
        open, "n\n0\n",
        "the last windows are open, and visible live"
    );
    let metrics = ureq::get(format!("{url}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    for metric in ["rows_in_total", "watermark_seconds", "late_rows_total"] {
        let line = format!("shopstream_view_{metric}{{view=\"revenue_per_minute\",worker=\"");
        assert!(metrics.contains(&line), "{line}: {metrics}");
    }
    let status = stdout(&run(dir.path(), &["status", "--url", &url]));
    let view_line = status
        .lines()
        .find(|l| l.starts_with("view revenue_per_minute on "))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(
        view_line.contains(&format!("watermark {watermark}")) && view_line.contains(", lag 0,"),
        "{view_line}"
    );
    server.kill().unwrap();
    server.wait().unwrap();

    let got = sql_csv(
        dir.path(),
        &format!(
            "SELECT window_start, country, revenue, orders, lines FROM revenue_per_minute \
             WHERE window_end <= TIMESTAMP '{watermark}' ORDER BY 1, 2"
        ),
    );
    let want = sql_csv(
        dir.path(),
        &format!(
            "SELECT date_bin(INTERVAL '1 minute', invoice_date, TIMESTAMP '1970-01-01') AS window_start, country, \
             sum(line_revenue) AS revenue, count(DISTINCT invoice_no) AS orders, count(*) AS lines FROM orders \
             GROUP BY 1, 2 HAVING date_bin(INTERVAL '1 minute', invoice_date, TIMESTAMP '1970-01-01') + INTERVAL '1 minute' \
             <= TIMESTAMP '{watermark}' ORDER BY 1, 2"
        ),
    );
    assert!(want.lines().count() > 300, "{want}");
    assert_eq!(got, want, "every final window once, equal to batch SQL");
    let total = sql_csv(dir.path(), "SELECT count(*) FROM revenue_per_minute");
    let final_count = got.lines().count() - 1;
    assert_eq!(
        total,
        format!("count(*)\n{final_count}\n"),
        "no window written twice"
    );
}

/// `q` over HTTP as CSV: (status, body).
fn http_sql(url: &str, q: &str) -> (u16, String) {
    let mut resp = ureq::get(format!("{url}/api/sql"))
        .query("q", q)
        .query("format", "csv")
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

#[test]
fn views_made_changed_and_dropped_while_serve_runs_are_followed() {
    let dir = with_day_one();
    let (mut server, url) = start(dir.path(), None);
    // Made while it runs: it starts, backfills day 1, and its open windows are live.
    let o = run(dir.path(), &["view", "create", "revenue_per_minute", VIEW]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the new view backfilled", || {
        figures(&url).is_some_and(|v| v["windows_emitted"].as_u64() > Some(100))
    });
    let (code, open) = http_sql(&url, "SELECT count(*) AS n FROM revenue_per_minute_live");
    assert_eq!(code, 200, "{open}");
    // Changed: its new version runs, with the new columns, in place of the old.
    let lines_only = "SELECT window_start, window_end, country, count(*) AS lines \
         FROM TUMBLE(orders, invoice_date, INTERVAL '1 minute') GROUP BY window_start, window_end, country";
    let o = run(
        dir.path(),
        &["view", "create", "revenue_per_minute", lines_only],
    );
    assert!(stdout(&o).contains("replaced"), "{}", stderr(&o));
    let new_columns = "window_start,window_end,country,lines\n";
    // Its table has the new columns once the new version opened it (the old one's figures were gone
    // before), so these figures are the new version's.
    wait_until("the new version backfilled", || {
        sql_csv(dir.path(), "SELECT * FROM revenue_per_minute LIMIT 1").starts_with(new_columns)
            && figures(&url).is_some_and(|v| v["windows_emitted"].as_u64() > Some(100))
    });
    let (code, live) = http_sql(&url, "SELECT * FROM revenue_per_minute_live");
    assert!(code == 200 && live.starts_with(new_columns), "{live}");
    assert!(
        live.lines().count() > 1,
        "the new version's open windows: {live}"
    );
    // Dropped: `drop` waits for the server to stop it, then nothing of it is left or written again.
    let o = run(
        dir.path(),
        &["view", "drop", "revenue_per_minute", "--purge"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(figures(&url).is_none(), "{:?}", figures(&url));
    let (code, _) = http_sql(&url, "SELECT count(*) FROM revenue_per_minute_live");
    assert_ne!(code, 200, "its live table is gone");
    let folder = dir.path().join("lake/revenue_per_minute");
    for (i, body) in requests(&["2010-12-02"]).iter().take(20).enumerate() {
        assert!(post(&url, &format!("r{i}"), body));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(!folder.exists(), "nothing written after the drop");
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn a_view_over_a_view_and_a_views_output_topic_run_under_serve() {
    let dir = with_day_one();
    let o = run(
        dir.path(),
        &[
            "view",
            "create",
            "revenue_per_minute",
            VIEW,
            "--topic",
            "rpm_out",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let hours = "SELECT window_start, window_end, sum(revenue) AS revenue, sum(lines) AS lines \
                 FROM TUMBLE(revenue_per_minute, window_start, INTERVAL '1 hour') \
                 GROUP BY window_start, window_end";
    let o = run(dir.path(), &["view", "create", "revenue_per_hour", hours]);
    assert!(
        stdout(&o).contains("view `revenue_per_hour` created"),
        "{}",
        stderr(&o)
    );
    let (mut server, url) = start(dir.path(), None);
    for (i, body) in requests(&["2010-12-02"]).iter().enumerate() {
        assert!(post(&url, &format!("r{i}"), body));
    }
    let total: usize = sql_csv(dir.path(), "SELECT count(*) FROM orders")
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    wait_until("both views read everything", || {
        figures(&url).is_some_and(|v| v["lag"] == 0 && v["rows_in"].as_u64() >= Some(total as u64))
            && figures_of(&url, "revenue_per_hour")
                .is_some_and(|v| v["lag"] == 0 && v["windows_emitted"].as_u64() >= Some(15))
    });
    let hour_watermark = figures_of(&url, "revenue_per_hour").unwrap()["watermark"]
        .as_str()
        .unwrap()
        .to_string();
    server.kill().unwrap();
    server.wait().unwrap();

    // Every hour final under the hour view's watermark is the sum of its minutes in the minute view's
    // table, once.
    let got = sql_csv(
        dir.path(),
        "SELECT window_start, revenue, lines FROM revenue_per_hour ORDER BY 1",
    );
    let want = sql_csv(
        dir.path(),
        &format!(
            "SELECT h AS window_start, revenue, lines FROM (SELECT date_bin(INTERVAL '1 hour', window_start, \
             TIMESTAMP '1970-01-01') AS h, sum(revenue) AS revenue, sum(lines) AS lines FROM revenue_per_minute \
             GROUP BY 1) WHERE h + INTERVAL '1 hour' <= TIMESTAMP '{hour_watermark}' ORDER BY 1"
        ),
    );
    assert!(got.lines().count() > 15, "{got}");
    assert_eq!(got, want);

    // The minute view's topic: each of its table's rows under one key.
    let (log, _) = shopstream_log::Log::open(&dir.path().join("log")).unwrap();
    let topic = log.topic("rpm_out").unwrap();
    let mut keys = std::collections::BTreeSet::new();
    for p in 0..shopstream_log::TopicLog::partition_count(topic.as_ref()) {
        let fetched =
            shopstream_log::TopicLog::read(topic.as_ref(), p, 0, usize::MAX, usize::MAX).unwrap();
        for r in fetched.records {
            keys.insert(String::from_utf8(r.key.unwrap()).unwrap());
        }
    }
    let rows = sql_csv(dir.path(), "SELECT count(*) FROM revenue_per_minute");
    assert_eq!(rows, format!("count(*)\n{}\n", keys.len()));
}
