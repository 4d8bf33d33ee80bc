//! `serve` on Kafka. Against a real Kafka-protocol broker on loopback (tansu): two workers on one lake share
//! the topic's partitions and a request retried to the other worker lands once; the shop's own topic (JSON
//! from librdkafka with zstd and from kafka-python with gzip) loads through a mapping, with unreadable messages dead-lettered by topic,
//! partition and offset. Against librdkafka's mock cluster (hosted by this test process, on loopback): a
//! worker SIGKILLed while a producer posts hands its partitions over within the session timeout, and its API
//! poller (configured on both workers, run by one) to the other; every acknowledged record and every line of
//! the API is in the lake exactly once. (tansu 0.6.0 answers the rebalance after a member's
//! session expired with the previous generation's assignment, so the dead worker's partitions would stay
//! unowned there; the mock cluster runs the group protocol as Kafka does.)

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use shopstream_kafka::loopback::{Broker, SecureBroker};

use crate::live::{batch, start, start_with_env, status};
use crate::{stdout, wait_until};

/// A config for workers sharing `lake` over the brokers at `brokers`.
fn config(dir: &Path, lake: &Path, brokers: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("kafka.toml");
    std::fs::write(
        &path,
        format!(
            "[lake]\nurl = \"file://{}\"\n\n[live]\nbackbone = \"kafka\"\npartitions = 4\ncompact_every_s = 0\n\n\
             [kafka]\nbrokers = \"{}\"\nreplication_factor = 1\ntimeout_ms = 10000\n\n\
             [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n{extra}",
            lake.display(),
            brokers
        ),
    )
    .unwrap();
    path
}

/// A config for a server on the embedded log over `lake`.
fn config_embedded(dir: &Path, lake: &Path) -> std::path::PathBuf {
    let path = dir.join("embedded.toml");
    std::fs::write(
        &path,
        format!("[lake]\nurl = \"file://{}\"\n", lake.display()),
    )
    .unwrap();
    path
}

/// Posts once; the number of records acknowledged, or `None` when the worker did not answer 200.
fn post(base: &str, key: &str, body: &str) -> Option<u64> {
    let mut resp = ureq::post(format!("{base}/v1/topics/orders/records"))
        .header("Content-Type", "application/x-ndjson")
        .header("Idempotency-Key", key)
        .config()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .send(body)
        .ok()?;
    let v: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().ok()?).ok()?;
    v["accepted"].as_u64()
}

fn sql(dir: &Path, config: &Path, query: &str) -> String {
    let o = crate::shopstream(dir)
        .env("SHOPSTREAM_CONFIG", config)
        // Every command reads the whole config: the secured cluster's reads `${KAFKA_PASSWORD}`.
        .env("KAFKA_PASSWORD", "s3cret")
        .args(["sql", "--format", "csv", query])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    stdout(&o).lines().nth(1).unwrap_or_default().to_string()
}

/// Waits until the lake holds `acked` order lines, each once.
fn wait_for_each_once(dir: &Path, config: &Path, acked: u64) {
    let want = format!("{acked},{acked}");
    wait_for_lake(
        dir,
        config,
        "SELECT COUNT(*), COUNT(DISTINCT invoice_no) FROM orders",
        &want,
    );
}

/// Waits until `query` over the lake answers `want`.
fn wait_for_lake(dir: &Path, config: &Path, query: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = sql(dir, config, query);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{query}: {got}, not {want}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Posts requests of 20 lines round robin to `urls` until `stop`; a request that fails is retried with
/// its key on the next worker. Returns the records acknowledged.
fn produce(urls: Arc<Mutex<Vec<String>>>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut acked = 0u64;
        let mut n = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("k{n}");
            let mut turn = n;
            let got = loop {
                let url = {
                    let u = urls.lock().unwrap();
                    u[turn % u.len()].clone()
                };
                if let Some(a) = post(&url, &key, &batch(&key, 20)) {
                    break a;
                }
                turn += 1;
                std::thread::sleep(Duration::from_millis(50));
            };
            acked += got;
            n += 1;
        }
        acked
    })
}

/// The partitions a worker loads, from its `/v1/status`.
fn owned(url: &str) -> Vec<u64> {
    status(url)["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["partition"].as_u64().unwrap())
        .collect()
}

#[test]
fn two_workers_share_kafka_and_a_request_retried_to_the_other_lands_once() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let config = config(dir.path(), &lake, &broker.address, "");
    let (mut a, a_url) = start(&dir.path().join("a"), Some(&config));
    let (mut b, b_url) = start(&dir.path().join("b"), Some(&config));
    wait_until("the workers split the partitions", || {
        let (x, y) = (owned(&a_url), owned(&b_url));
        let mut all: Vec<u64> = x.iter().chain(&y).copied().collect();
        all.sort_unstable();
        !x.is_empty() && !y.is_empty() && all == vec![0, 1, 2, 3]
    });
    // Each worker's status shows both workers (their heartbeats in the lake) and what each loads.
    wait_until("both workers' heartbeats are in the lake", || {
        let workers = status(&a_url)["workers"].as_array().unwrap().clone();
        let mut loaded: Vec<u64> = workers
            .iter()
            .filter(|w| w["alive"] == true)
            .flat_map(|w| w["partitions"].as_array().unwrap().clone())
            .map(|p| p["partition"].as_u64().unwrap())
            .collect();
        loaded.sort_unstable();
        workers.len() == 2 && loaded == vec![0, 1, 2, 3]
    });
    // A request is one Kafka message: beyond [kafka] max_message_bytes it is refused whole.
    let big = ureq::post(format!("{a_url}/v1/topics/orders/records"))
        .header("Content-Type", "application/x-ndjson")
        .config()
        .http_status_as_error(false)
        .build()
        .send(batch("big", 6000))
        .unwrap();
    assert_eq!(big.status(), 413);
    // The lake is now the Kafka cluster's: a server on the embedded log is refused.
    let other = crate::shopstream(&dir.path().join("embedded"))
        .env("SHOPSTREAM_CONFIG", config_embedded(dir.path(), &lake))
        .args(["serve", "--listen", "127.0.0.1:0", "--pg-listen", "off"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&other.stderr)
            .contains("read the `kafka` backbone, not `embedded`"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    // Acknowledged by one worker, retried to the other (which cannot know): stored twice, loaded once.
    assert_eq!(post(&a_url, "retried", &batch("retried", 5)), Some(5));
    assert_eq!(post(&b_url, "retried", &batch("retried", 5)), Some(5));
    let urls = Arc::new(Mutex::new(vec![a_url, b_url]));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce(urls, stop.clone());
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let acked = producer.join().unwrap() + 5;
    wait_for_each_once(dir.path(), &config, acked);
    let retried = sql(
        dir.path(),
        &config,
        "SELECT COUNT(*) FROM orders WHERE invoice_no LIKE 'retried-%'",
    );
    // The lake's own records sit in its `_shopstream` folder, beside the tables.
    assert!(lake.join("_shopstream/backbone.json").is_file());
    assert!(lake.join("_shopstream/workers").is_dir());
    // Each partition's dedupe window of request keys is kept with the lake's state.
    let windows = lake.join("_shopstream/dedupe/kafka/orders");
    let kept = (0..4)
        .filter_map(|p| std::fs::read_dir(windows.join(p.to_string())).ok())
        .map(|d| d.count())
        .sum::<usize>();
    assert!(kept >= 1, "no dedupe window kept in {}", windows.display());
    assert_eq!(
        retried, "5",
        "the request sent to both workers is in the lake once"
    );
    for w in [&mut a, &mut b] {
        w.kill().unwrap();
        w.wait().unwrap();
    }
}

/// A paginated orders API (`?offset=N&per_page=M`) serving `items` (JSON order lines) as they grow.
fn orders_api(items: Arc<Mutex<Vec<String>>>) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = String::new();
            let _ = BufReader::new(&stream).read_line(&mut request);
            let param = |name: &str| -> usize {
                request
                    .split(['?', '&', ' '])
                    .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            let (offset, size) = (param("offset"), param("per_page"));
            let page: Vec<String> = {
                let items = items.lock().unwrap();
                items.iter().skip(offset).take(size).cloned().collect()
            };
            let body = format!("{{\"data\":[{}]}}", page.join(","));
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// The jobs a worker runs once for all workers (its pollers), from its `/v1/status`.
fn jobs(url: &str) -> Vec<String> {
    serde_json::from_value(status(url)["jobs"].clone()).unwrap_or_default()
}

#[test]
fn a_sigkilled_worker_hands_its_partitions_and_its_poller_over_and_nothing_is_lost_or_doubled() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 4, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // Both workers are configured with the same API poller: one polls at a time.
    let items = Arc::new(Mutex::new(Vec::new()));
    let add_items = |n: usize| {
        let mut items = items.lock().unwrap();
        for _ in 0..n {
            let line = batch(&format!("api{}", items.len()), 1);
            items.push(line.trim_end().to_string());
        }
    };
    add_items(25);
    let poller = format!(
        "\n[[live.pollers]]\nname = \"shop-api\"\nurl = \"http://127.0.0.1:{}/orders\"\n\
         style = \"offset\"\npage_size = 10\ninterval_ms = 100\n",
        orders_api(items.clone())
    );
    let config = config(dir.path(), &lake, &cluster.bootstrap_servers(), &poller);
    let mut workers = vec![
        start(&dir.path().join("a"), Some(&config)),
        start(&dir.path().join("b"), Some(&config)),
    ];
    wait_until("both workers load partitions", || {
        workers.iter().all(|(_, url)| !owned(url).is_empty())
    });
    let polling = |url: &str| jobs(url) == vec!["poller shop-api".to_string()];
    wait_until("one worker runs the poller", || {
        workers.iter().filter(|(_, url)| polling(url)).count() == 1
    });
    let urls = Arc::new(Mutex::new(workers.iter().map(|(_, u)| u.clone()).collect()));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce(urls.clone(), stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    add_items(10);
    std::thread::sleep(Duration::from_secs(1));
    // SIGKILL the poller's worker: mid-request, mid-load, mid-commit, maybe mid-page.
    let holder = workers.iter().position(|(_, url)| polling(url)).unwrap();
    let (mut killed, killed_url) = workers.remove(holder);
    killed.kill().unwrap();
    killed.wait().unwrap();
    urls.lock().unwrap().retain(|u| *u != killed_url);
    let (mut survivor, survivor_url) = workers.remove(0);
    wait_until("the survivor loads every partition", || {
        owned(&survivor_url) == vec![0, 1, 2, 3]
    });
    wait_until("the survivor runs the poller", || polling(&survivor_url));
    add_items(15);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let acked = producer.join().unwrap();
    assert!(acked > 0);
    // Every acknowledged record once, and each of the API's 50 lines once; a request stored but not
    // acknowledged before the kill was retried on the survivor with its key and loaded once.
    wait_for_lake(
        dir.path(),
        &config,
        "SELECT COUNT(*), COUNT(DISTINCT invoice_no) FROM orders WHERE invoice_no LIKE 'api%'",
        "50,50",
    );
    wait_for_each_once(dir.path(), &config, acked + 50);
    survivor.kill().unwrap();
    survivor.wait().unwrap();
}

#[test]
fn a_topic_with_another_partition_count_than_the_lake_recorded_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let first = MockCluster::new(1).unwrap();
    first.create_topic("orders", 4, 1).unwrap();
    let config = config(dir.path(), &lake, &first.bootstrap_servers(), "");
    let (mut worker, url) = start(&dir.path().join("a"), Some(&config));
    assert_eq!(post(&url, "k", &batch("k", 3)), Some(3));
    wait_for_each_once(dir.path(), &config, 3);
    worker.kill().unwrap();
    worker.wait().unwrap();
    // The topic recreated with 2 partitions: keys would land elsewhere, offsets would name other partitions.
    let recreated = MockCluster::new(1).unwrap();
    recreated.create_topic("orders", 2, 1).unwrap();
    let config = self::config(dir.path(), &lake, &recreated.bootstrap_servers(), "");
    let refused = crate::shopstream(&dir.path().join("b"))
        .env("SHOPSTREAM_CONFIG", &config)
        .args(["serve", "--listen", "127.0.0.1:0", "--pg-listen", "off"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains(
            "topic `orders` has 2 partitions, but the lake's loads of it were made with 4"
        ),
        "{stderr}"
    );
}

#[test]
fn a_worker_reaches_a_cluster_over_tls_with_a_scram_password_from_the_environment() {
    let broker = SecureBroker::start("shop", "s3cret");
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let secured = format!(
        "\"security.protocol\" = \"sasl_ssl\"\n\"ssl.ca.location\" = \"{}\"\n\
         \"sasl.mechanisms\" = \"SCRAM-SHA-256\"\n\"sasl.username\" = \"shop\"\n\
         \"sasl.password\" = \"${{KAFKA_PASSWORD}}\"\n",
        broker.ca.display()
    );
    let config = config(dir.path(), &lake, &broker.address, &secured);
    // A wrong password: the worker does not start, and says why.
    let refused = crate::shopstream(&dir.path().join("a"))
        .env("SHOPSTREAM_CONFIG", &config)
        .env("KAFKA_PASSWORD", "guess")
        .args(["serve", "--listen", "127.0.0.1:0", "--pg-listen", "off"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("Authentication failure"), "{stderr}");
    let (mut worker, url) = start_with_env(
        &dir.path().join("a"),
        Some(&config),
        &[("KAFKA_PASSWORD", "s3cret")],
    );
    assert_eq!(post(&url, "tls-1", &batch("tls-1", 4)), Some(4));
    wait_for_each_once(dir.path(), &config, 4);
    worker.kill().unwrap();
    worker.wait().unwrap();
}

/// `n` order lines at minute `minute` past 10:00, invoices `<key>-0` …
fn minute_batch(key: &str, minute: u32, n: usize) -> String {
    batch(key, n).replace(
        "2011-11-14 10:00:00",
        &format!("2011-11-14 10:{minute:02}:00"),
    )
}

#[test]
fn a_view_moves_to_the_other_worker_when_its_owner_is_sigkilled_and_each_window_lands_once() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 4, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let view = "\n[[views]]\nname = \"per_minute\"\n\
        sql = \"SELECT window_start, window_end, count(*) AS lines, sum(quantity) AS qty \
        FROM TUMBLE(orders, invoice_date, INTERVAL '1 minute') GROUP BY window_start, window_end\"\n\
        delay_s = 0\nidle_timeout_s = 5\n";
    let config = config(dir.path(), &lake, &cluster.bootstrap_servers(), view);
    let mut workers = vec![
        start(&dir.path().join("a"), Some(&config)),
        start(&dir.path().join("b"), Some(&config)),
    ];
    let running = |url: &str| jobs(url).contains(&"view per_minute".to_string());
    wait_until("one worker runs the view", || {
        workers.iter().filter(|(_, url)| running(url)).count() == 1
    });
    let urls: Vec<String> = workers.iter().map(|(_, u)| u.clone()).collect();
    let mut posted = 0;
    for minute in 0..15 {
        for r in 0..4 {
            let key = format!("m{minute}-{r}");
            assert!(post(&urls[r % 2], &key, &minute_batch(&key, minute, 5)).is_some());
            posted += 5;
        }
    }
    // The worker that does not run the view relays its change stream from the one that does.
    let owner = workers.iter().position(|(_, url)| running(url)).unwrap();
    let other = &urls[1 - owner];
    wait_until("the other worker relays the view's stream", || {
        let update = first_update(other, "per_minute");
        update.contains(r#""view":"per_minute""#) && update.contains(r#""lines":"#)
    });
    // SIGKILL the view's worker mid-step; the other takes the view over from its last checkpoint.
    let (mut killed, _) = workers.remove(owner);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let (mut survivor, url) = workers.remove(0);
    wait_until("the survivor runs the view", || running(&url));
    for minute in 15..30 {
        for r in 0..4 {
            let key = format!("m{minute}-{r}");
            assert!(post(&url, &key, &minute_batch(&key, minute, 5)).is_some());
            posted += 5;
        }
    }
    wait_for_each_once(dir.path(), &config, posted);
    let view_of = |url: &str| {
        status(url)["views"]
            .as_array()
            .and_then(|v| v.first().cloned())
            .unwrap_or_default()
    };
    wait_until("the view read everything", || {
        let v = view_of(&url);
        v["lag"] == 0
            && v["watermark"]
                .as_str()
                .is_some_and(|w| w.ends_with("10:29:00"))
    });
    // Every final window once, equal to batch SQL over the lines.
    let got = sql(
        dir.path(),
        &config,
        "SELECT count(*), sum(lines), count(DISTINCT window_start) FROM per_minute",
    );
    let want = sql(
        dir.path(),
        &config,
        "SELECT count(DISTINCT date_trunc('minute', invoice_date)) AS windows, count(*) AS lines, \
         count(DISTINCT date_trunc('minute', invoice_date)) AS distinct_windows \
         FROM orders WHERE invoice_date < TIMESTAMP '2011-11-14 10:29:00'",
    );
    assert_eq!(got, want);
    assert_eq!(
        got,
        format!("29,{},29", posted - 20),
        "29 final windows of 20 lines each"
    );
    survivor.kill().unwrap();
    survivor.wait().unwrap();
}

/// The first update of view `name`'s change stream as `url` serves it (empty when none comes in 5 s).
fn first_update(url: &str, name: &str) -> String {
    use std::io::BufRead;
    let Ok(mut response) = ureq::get(format!("{url}/api/views/{name}/stream"))
        .config()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .call()
    else {
        return String::new();
    };
    let reader = std::io::BufReader::new(response.body_mut().as_reader());
    for line in reader.lines() {
        let Ok(line) = line else { break };
        if let Some(data) = line.strip_prefix("data:") {
            return data.trim().to_string();
        }
    }
    String::new()
}

/// A kafka-python producer sending one order line (4 × 2.50), gzip-compressed.
const KAFKA_PYTHON: &str = r#"
import json, sys
from kafka import KafkaProducer
p = KafkaProducer(bootstrap_servers=sys.argv[1], compression_type="gzip", acks="all",
                  value_serializer=lambda v: json.dumps(v).encode())
p.send("webshop.orders", {"order": "W3", "sku": "22423", "title": "CAKESTAND", "qty": 4,
                          "at": "2011-11-14 11:00:00", "price": "2.50", "customer": "12583",
                          "country": "France"})
p.flush(10)
"#;

#[test]
fn the_shops_own_topic_loads_through_a_mapping_with_dead_letters_naming_offsets() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // librdkafka (confluent-kafka's core) compressing with zstd, as a Java producer may.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("compression.type", "zstd")
        .create()
        .unwrap();
    // The shop's topic exists (shopstream does not create it): made with the admin API of a plain client.
    let shop = shopstream_kafka::Kafka::connect(&{
        let mut c = shopstream_kafka::KafkaConfig::new(&broker.address);
        c.replication_factor = 1;
        c
    })
    .unwrap();
    shopstream_log::Backbone::create_topic(shop.as_ref(), "webshop.orders", 1).unwrap();
    let mapping = "[[ingest.mappings]]\nname = \"webshop\"\nfiles = [\"webshop-*.json\"]\n\
                   [ingest.mappings.columns]\ninvoice_no = \"order\"\nstock_code = \"sku\"\ndescription = \"title\"\n\
                   quantity = \"qty\"\ninvoice_date = \"at\"\nunit_price = \"price\"\ncustomer_id = \"customer\"\n\
                   country = \"country\"\n\n\
                   [[kafka.topics]]\nname = \"webshop.orders\"\ndataset = \"orders\"\nmapping = \"webshop\"\n";
    let config = config(dir.path(), &lake, &broker.address, mapping);
    let good = r#"{"order":"W1","sku":"85123A","title":"HEART","qty":3,"at":"2011-11-14 10:00:00","price":"2.55","customer":"17850","country":"France"}"#;
    for v in [
        good,
        "{not json",
        r#"{"order":"W2","sku":"85123A","title":"HEART","qty":1,"at":"2011-11-14 10:01:00","price":"1.25","customer":"","country":"France"}"#,
    ] {
        producer
            .send(BaseRecord::<(), _>::to("webshop.orders").payload(v))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let (mut worker, _) = start(&dir.path().join("w"), Some(&config));
    wait_for_lake(
        dir.path(),
        &config,
        "SELECT COUNT(*), SUM(line_revenue) FROM orders",
        "2,8.9000",
    );
    wait_for_lake(
        dir.path(),
        &config,
        "SELECT source_file, source_line, reason LIKE '%not JSON%' FROM dead_letters",
        "kafka:webshop.orders/0@1,1,true",
    );
    // kafka-python, gzip-compressed, while the worker runs.
    let python = std::env::var("TOOLS_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/shopstream/tools/py/bin/python",
            std::env::var("HOME").unwrap()
        )
    });
    let sent = std::process::Command::new(python)
        .args(["-c", KAFKA_PYTHON, &broker.address])
        .output()
        .expect("the tools venv's python (.ci/test makes it)");
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    wait_for_lake(
        dir.path(),
        &config,
        "SELECT COUNT(*), SUM(line_revenue) FROM orders WHERE invoice_no LIKE 'W%'",
        "3,18.9000",
    );
    worker.kill().unwrap();
    worker.wait().unwrap();
}
