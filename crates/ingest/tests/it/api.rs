//! The API poller against a real (small) HTTP server started by the test: every pagination style, failures
//! retried, a growing last page, and restarts that resume from the checkpoint stored in the log.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use shopstream_ingest::sources::Envelope;
use shopstream_ingest::sources::api::{PageStyle, Poller, PollerConfig};
use shopstream_log::{Embedded, Log, PartitionConfig};

/// A paginated JSON API over a list that the test can grow; every fourth request fails with 503, and one in
/// seven answers too late for the poller's timeout.
struct Api {
    base: String,
    items: Arc<Mutex<usize>>,
}

fn query(path: &str, key: &str) -> Option<usize> {
    path.split_once('?')?
        .1
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim_start_matches('c').parse().unwrap())
}

fn start_api() -> Api {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let items = Arc::new(Mutex::new(0usize));
    let requests = Arc::new(AtomicUsize::new(0));
    let (it, b) = (items.clone(), base.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            reader.read_line(&mut line).unwrap();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let n = requests.fetch_add(1, Ordering::SeqCst);
            if n % 7 == 5 {
                // Slower than the poller's timeout: it gives up and retries.
                std::thread::sleep(std::time::Duration::from_millis(400));
            }
            let (status, body) = if n % 4 == 3 {
                (
                    "503 Service Unavailable",
                    "{\"error\":\"busy\"}".to_string(),
                )
            } else {
                let total = *it.lock().unwrap();
                let size = query(&path, "per_page").unwrap_or(40);
                let start = if let Some(p) = query(&path, "page") {
                    (p - 1) * size
                } else if let Some(o) = query(&path, "offset") {
                    o
                } else if let Some(c) = query(&path, "cursor") {
                    c
                } else {
                    query(&path, "link").unwrap_or(0)
                };
                let end = (start + size).min(total);
                let data: Vec<String> = (start.min(end)..end)
                    .map(|i| format!("{{\"InvoiceNo\":\"{i}\"}}"))
                    .collect();
                let more = end < total || (end - start.min(end)) == size;
                let next_cursor = if end < total {
                    format!("\"c{end}\"")
                } else {
                    "null".into()
                };
                let next_link = if more && end < total {
                    format!("\"{b}/items?per_page={size}&link={end}\"")
                } else {
                    "null".into()
                };
                let body = format!(
                    "{{\"data\":[{}],\"next_cursor\":{next_cursor},\"next\":{next_link}}}",
                    data.join(",")
                );
                ("200 OK", body)
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Api { base, items }
}

fn poll_until_caught_up(poller: &mut Poller) {
    let mut quiet = 0;
    for _ in 0..500 {
        match poller.poll_once() {
            Ok(0) => {
                quiet += 1;
                if quiet == 2 {
                    return;
                }
            }
            Ok(_) => quiet = 0,
            Err(e) => assert!(
                e.contains("503") || e.to_lowercase().contains("timeout"),
                "only the injected failures and timeouts: {e}"
            ),
        }
    }
    panic!("the poller never caught up");
}

fn stored_ids(log: &Log) -> Vec<usize> {
    let topic = log.topic("orders").unwrap();
    let mut ids = Vec::new();
    for p in topic.partitions() {
        for r in p.read(p.start_offset(), usize::MAX, usize::MAX).unwrap() {
            let env: Envelope = serde_json::from_slice(&r.value).unwrap();
            assert!(env.source.starts_with("api:shop#"), "{}", env.source);
            ids.push(env.fields["InvoiceNo"].as_str().unwrap().parse().unwrap());
        }
    }
    ids
}

#[test]
fn every_page_style_takes_each_record_once_across_restarts() {
    for style in [
        PageStyle::Page,
        PageStyle::Offset,
        PageStyle::Cursor,
        PageStyle::NextLink,
    ] {
        let api = start_api();
        *api.items.lock().unwrap() = 250;
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path()).unwrap();
        log.create_topic("orders", 2, PartitionConfig::default())
            .unwrap();
        let config = PollerConfig {
            name: "shop".into(),
            url: format!("{}/items", api.base),
            style,
            topic: "orders".into(),
            records_field: "data".into(),
            page_size: 40,
            page_param: "page".into(),
            size_param: "per_page".into(),
            offset_param: "offset".into(),
            cursor_param: "cursor".into(),
            next_field: if style == PageStyle::Cursor {
                "next_cursor".into()
            } else {
                "next".into()
            },
            interval_ms: 10,
            timeout_ms: 200,
            authorization: String::new(),
            flow: String::new(),
        };
        let mut poller = Poller::new(
            &Embedded::new(log.clone(), PartitionConfig::default()),
            config.clone(),
            None,
        )
        .unwrap();
        poll_until_caught_up(&mut poller);
        assert_eq!(
            stored_ids(&log),
            (0..250).collect::<Vec<_>>(),
            "{style:?}: first pass"
        );

        // The last page grows; a restarted poller resumes from the checkpoint in the log.
        *api.items.lock().unwrap() = 333;
        drop(poller);
        let mut poller = Poller::new(
            &Embedded::new(log.clone(), PartitionConfig::default()),
            config.clone(),
            None,
        )
        .unwrap();
        poll_until_caught_up(&mut poller);
        drop(poller);
        drop(log);
        let (log, _) = Log::open(dir.path()).unwrap();
        let mut poller = Poller::new(
            &Embedded::new(log.clone(), PartitionConfig::default()),
            config,
            None,
        )
        .unwrap();
        poll_until_caught_up(&mut poller);
        assert_eq!(
            stored_ids(&log),
            (0..333).collect::<Vec<_>>(),
            "{style:?}: nothing skipped or repeated after restarts"
        );
        assert!(poller.progress().pages.load(Ordering::Relaxed) > 0);
    }
}

#[test]
fn a_poller_can_pass_its_records_through_a_flow() {
    let api = start_api();
    *api.items.lock().unwrap() = 60;
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path()).unwrap();
    log.create_topic("orders", 1, PartitionConfig::default())
        .unwrap();
    log.create_topic("shop.dead", 1, PartitionConfig::default())
        .unwrap();
    let flow: shopstream_ingest::sources::flow::FlowConfig = toml::from_str(
        r#"
        name = "shop"
        steps = [
          { filter = { field = "InvoiceNo", not_in = ["5"] } },
          { cast = { field = "InvoiceNo", to = "integer" } },
          { rename = { InvoiceNo = "id" } },
        ]"#,
    )
    .unwrap();
    let config: PollerConfig = toml::from_str(&format!(
        "name = \"shop\"\nurl = \"{}/items\"\nstyle = \"page\"\npage_size = 25\nflow = \"shop\"",
        api.base
    ))
    .unwrap();
    let mut poller = Poller::new(
        &Embedded::new(log.clone(), PartitionConfig::default()),
        config,
        Some(flow),
    )
    .unwrap();
    poll_until_caught_up(&mut poller);
    let records = log.topic("orders").unwrap().read(0, 0, usize::MAX).unwrap();
    let ids: Vec<i64> = records
        .iter()
        .map(|r| {
            let env: Envelope = serde_json::from_slice(&r.value).unwrap();
            env.fields["id"].as_i64().unwrap()
        })
        .collect();
    let want: Vec<i64> = (0..60).filter(|&i| i != 5).collect();
    assert_eq!(ids, want, "filtered, cast and renamed by the flow");
}
