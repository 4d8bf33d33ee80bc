//! The live path end to end: `shopstream serve` SIGKILLed again and again while a producer keeps posting;
//! afterwards the lake holds exactly what the server acknowledged, once.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{run, shopstream, stdout};

/// Starts `serve` on a free port (with `config`, if given); returns the child and its base URL.
pub fn start(dir: &std::path::Path, config: Option<&std::path::Path>) -> (Child, String) {
    start_with_env(dir, config, &[])
}

/// [`start`] with these environment variables set for the server.
pub fn start_with_env(
    dir: &std::path::Path,
    config: Option<&std::path::Path>,
    env: &[(&str, &str)],
) -> (Child, String) {
    let mut command = shopstream(dir);
    if let Some(c) = config {
        command.env("SHOPSTREAM_CONFIG", c);
    }
    command.envs(env.iter().copied());
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0", "--pg-listen", "off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    // Keep reading what `serve` prints after its first line, so its stdout never breaks.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches(':')
        .to_string();
    (child, url)
}

/// A server's `/v1/status`.
pub fn status(base: &str) -> serde_json::Value {
    serde_json::from_str(
        &ureq::get(format!("{base}/v1/status"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap()
}

/// `n` order lines as NDJSON, invoices `<key>-0` …
pub fn batch(key: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"InvoiceNo\":\"{key}-{i}\",\"StockCode\":\"85123A\",\"Description\":\"HEART\",\"Quantity\":{q},\
                 \"InvoiceDate\":\"2011-11-14 10:00:00\",\"UnitPrice\":\"2.55\",\"CustomerID\":\"17850.0\",\
                 \"Country\":\"United Kingdom\"}}\n",
                q = i + 1
            )
        })
        .collect()
}

/// Posts until the request is acknowledged (retrying the same key through kills and 429s).
fn post_until_acked(url: &Mutex<String>, key: &str, body: &str, stop: &AtomicBool) -> Option<u64> {
    while !stop.load(Ordering::Relaxed) {
        let base = url.lock().unwrap().clone();
        let r = ureq::post(format!("{base}/v1/topics/orders/records"))
            .header("Content-Type", "application/x-ndjson")
            .header("Idempotency-Key", key)
            .config()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .send(body);
        match r {
            Ok(mut resp) => {
                let v: serde_json::Value =
                    serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
                return v["accepted"].as_u64();
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    None
}

#[test]
fn lake_holds_every_acknowledged_record_once_after_repeated_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // Background compaction every second, so kills also land while it rewrites files.
    let config = dir.path().join("compact-often.toml");
    let defaults = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/default.toml"),
    )
    .unwrap();
    assert!(defaults.contains("compact_every_s = 600"));
    std::fs::write(
        &config,
        defaults.replace("compact_every_s = 600", "compact_every_s = 1"),
    )
    .unwrap();
    let (mut child, first) = start(dir.path(), Some(&config));
    let url = Arc::new(Mutex::new(first));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (url, stop) = (url.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut acked = 0u64;
            for n in 0.. {
                let key = format!("k{n}");
                match post_until_acked(&url, &key, &batch(&key, 40), &stop) {
                    Some(a) => acked += a,
                    None => break,
                }
            }
            acked
        })
    };
    let mut seed = 17u64;
    for _ in 0..8 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Some kills after the first compaction started (1 s in), some before.
        std::thread::sleep(Duration::from_millis(300 + (seed >> 33) % 1700));
        child.kill().unwrap(); // SIGKILL: mid-append, mid-load, mid-commit
        child.wait().unwrap();
        let (c, u) = start(dir.path(), Some(&config));
        child = c;
        *url.lock().unwrap() = u;
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let acked = producer.join().unwrap();
    assert!(acked > 0, "the producer got acknowledgements");
    // Let the load catch up, then stop the server.
    let base = url.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = status(&base);
        let lag: u64 = status["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["lag"].as_u64().unwrap())
            .sum();
        if lag == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the load did not catch up: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The server compacts the live load's small files while it runs.
    let log_dir = dir.path().join("lake/orders/_delta_log");
    let compacted = || {
        std::fs::read_dir(&log_dir).unwrap().any(|e| {
            let path = e.unwrap().path();
            path.extension().is_some_and(|x| x == "json")
                && std::fs::read_to_string(&path)
                    .unwrap_or_default()
                    .contains("\"operation\":\"OPTIMIZE\"")
        })
    };
    while !compacted() {
        assert!(Instant::now() < deadline, "no compaction of orders");
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let o = run(
        dir.path(),
        &[
            "sql",
            "--format",
            "csv",
            "SELECT COUNT(*) AS n, COUNT(DISTINCT invoice_no) AS d FROM orders",
        ],
    );
    let out = stdout(&o);
    let mut lines = out.lines().skip(1);
    let counts: Vec<u64> = lines
        .next()
        .unwrap_or_else(|| panic!("{out}"))
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    // Acknowledged = stored; anything stored without an ack was retried with its key and not doubled.
    assert_eq!(counts[1], counts[0], "no record is in the lake twice");
    assert!(
        counts[0] == acked || counts[0] == acked + 40,
        "lake {} vs acknowledged {acked} (the last request may be stored without its ack)",
        counts[0]
    );
    let raw = stdout(&run(
        dir.path(),
        &[
            "sql",
            "--format",
            "csv",
            "SELECT COUNT(*), COUNT(received_at), MIN(received_at <= load_time) FROM raw_orders",
        ],
    ));
    assert_eq!(
        raw.lines().nth(1).unwrap(),
        format!("{n},{n},true", n = counts[0]),
        "raw = orders, each with when it was received, before it was loaded"
    );
}

#[test]
fn landed_files_load_once_and_move_to_processed_or_failed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = start(dir.path(), None);
    let landing = dir.path().join("landing");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/online-retail/2010-12-01.csv");
    // Copied in under a temporary name, then renamed: never read half-written.
    let part = landing.join("day.csv.part");
    std::fs::copy(&fixture, &part).unwrap();
    std::fs::rename(&part, landing.join("day.csv")).unwrap();
    std::fs::write(landing.join("broken.xlsx"), b"not a workbook").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(landing.join("processed/day.csv").exists()
        && landing.join("failed/broken.xlsx").exists())
    {
        assert!(Instant::now() < deadline, "landing files were not handled");
        std::thread::sleep(Duration::from_millis(100));
    }
    let reason = std::fs::read_to_string(landing.join("failed/broken.xlsx.reason.txt")).unwrap();
    assert!(reason.contains("broken.xlsx"), "{reason}");
    // The same content dropped again is moved without loading it twice.
    std::fs::copy(&fixture, landing.join("again.csv")).unwrap();
    while !landing.join("processed/again.csv").exists() {
        assert!(Instant::now() < deadline, "the second copy was not handled");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = stdout(&run(dir.path(), &["status", "--url", &url]));
    assert!(
        status.contains("orders/0") && status.contains("records/s"),
        "{status}"
    );
    let processed = status
        .lines()
        .find(|l| l.starts_with("landing_processed_files"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(processed.ends_with(" 2"), "{status}");
    child.kill().unwrap();
    child.wait().unwrap();
    let out = stdout(&run(
        dir.path(),
        &["sql", "--format", "csv", "SELECT COUNT(*) FROM orders"],
    ));
    assert_eq!(out.lines().nth(1), Some("3108"), "{out}");
}
