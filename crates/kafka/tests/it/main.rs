//! The Kafka backbone against a real Kafka-protocol broker on loopback (tansu, memory storage): topics
//! created through the admin API, requests as one message each, the shop's own JSON and CSV messages,
//! retried requests read once, and partitions shared by a consumer group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use shopstream_kafka::loopback::{Broker, SecureBroker};
use shopstream_kafka::{ExternalTopic, Format, Kafka, KafkaConfig};
use shopstream_log::{Backbone, NewRecord, TopicLog};

fn config(broker: &Broker) -> KafkaConfig {
    let mut c = KafkaConfig::new(&broker.address);
    c.replication_factor = 1;
    c.timeout_ms = 10_000;
    c.properties
        .insert("session.timeout.ms".into(), "6000".into());
    c.properties
        .insert("heartbeat.interval.ms".into(), "500".into());
    c
}

fn envelope(i: u64) -> Vec<u8> {
    format!(r#"{{"source":"http:req","index":{i},"fields":{{"n":"{i}"}}}}"#).into_bytes()
}

fn request(key: &str, n: u64) -> Vec<NewRecord> {
    (1..=n)
        .map(|i| NewRecord {
            timestamp_ms: 1_700_000_000_000,
            key: Some(key.as_bytes().to_vec()),
            value: envelope(i),
        })
        .collect()
}

/// Reads partition `p` from `from` until `want` records came or 10 s passed.
fn read_all(
    topic: &dyn TopicLog,
    p: u32,
    from: u64,
    want: usize,
) -> (Vec<shopstream_log::Record>, u64) {
    let (mut out, mut at) = (Vec::new(), from);
    let started = Instant::now();
    while out.len() < want && started.elapsed() < Duration::from_secs(10) {
        let f = topic.read(p, at, 1000, usize::MAX).unwrap();
        at = f.next;
        out.extend(f.records);
    }
    (out, at)
}

#[test]
fn a_request_is_one_message_read_back_as_its_records() {
    let broker = Broker::start();
    let kafka = Kafka::connect(&config(&broker)).unwrap();
    let topic = kafka.create_topic("orders", 3).unwrap();
    assert_eq!(topic.partition_count(), 3);
    assert_eq!(topic.backbone(), "kafka");
    // Created once: asking again finds it.
    assert_eq!(
        kafka.create_topic("orders", 3).unwrap().partition_count(),
        3
    );
    let p = topic.partition_for_key(b"req-1");
    let offsets = topic.append(p, &request("req-1", 3)).unwrap();
    assert_eq!(offsets, 0..1, "three records, one message");
    assert_eq!(topic.end_offset(p).unwrap(), 1);
    let (records, next) = read_all(topic.as_ref(), p, 0, 3);
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.offset == 0));
    assert_eq!(records[2].value, envelope(3));
    assert_eq!(next, 1);
    // Nothing new: an empty read standing where it was.
    let f = topic.read(p, 1, 10, usize::MAX).unwrap();
    assert!(f.records.is_empty());
    assert_eq!(f.next, 1);
}

#[test]
fn a_retried_request_is_read_once_even_by_a_reader_starting_after_it() {
    let broker = Broker::start();
    let kafka = Kafka::connect(&config(&broker)).unwrap();
    let topic = kafka.create_topic("orders", 1).unwrap();
    topic.append(0, &request("a", 2)).unwrap();
    topic.append(0, &request("b", 1)).unwrap();
    topic.append(0, &request("a", 2)).unwrap(); // the retry, stored twice by Kafka
    topic.append(0, &request("c", 1)).unwrap();
    let (records, next) = read_all(topic.as_ref(), 0, 0, 4);
    let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![0, 0, 1, 3]);
    assert_eq!(next, 4);
    // Another worker taking over at offset 1 (the lake's) reads the window back and decides alike.
    let other = Kafka::connect(&config(&broker)).unwrap();
    let again = other.topic("orders").unwrap();
    let (records, _) = read_all(again.as_ref(), 0, 1, 2);
    let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![1, 3]);
}

fn offsets(records: &[shopstream_log::Record]) -> Vec<u64> {
    records.iter().map(|r| r.offset).collect()
}

#[test]
fn a_reader_hands_out_its_window_and_one_given_the_lakes_window_decides_by_it() {
    let broker = Broker::start();
    let kafka = Kafka::connect(&config(&broker)).unwrap();
    let topic = kafka.create_topic("orders", 1).unwrap();
    for key in ["a", "b", "c"] {
        topic.append(0, &request(key, 1)).unwrap();
    }
    let (_, next) = read_all(topic.as_ref(), 0, 0, 3);
    assert_eq!(next, 3);
    // What the load keeps with the lake's offset 3: the keys read, oldest first.
    let keys = |ks: &[&str]| ks.iter().map(|k| k.as_bytes().to_vec()).collect::<Vec<_>>();
    assert_eq!(topic.dedupe_window(0, 3), Some(keys(&["a", "b", "c"])));
    assert_eq!(topic.dedupe_window(0, 2), None, "the reader is not at 2");
    topic.append(0, &request("a", 1)).unwrap(); // 3: a retry of `a`
    topic.append(0, &request("d", 1)).unwrap(); // 4
    // A worker given the window the lake kept at 1 reads on from there, and skips the retry.
    let other = Kafka::connect(&config(&broker)).unwrap();
    let second = other.topic("orders").unwrap();
    second.restore_window(0, 1, keys(&["a"]));
    assert_eq!(offsets(&read_all(second.as_ref(), 0, 3, 1).0), vec![4]);
    // The lake's window decides, not the messages the log still holds before the offset: with `a` out of
    // the window the lake kept at 3, the message at 3 is a request to load.
    let another = Kafka::connect(&config(&broker)).unwrap();
    let third = another.topic("orders").unwrap();
    third.restore_window(0, 3, keys(&["b", "c"]));
    assert_eq!(offsets(&read_all(third.as_ref(), 0, 3, 2).0), vec![3, 4]);
}

#[test]
fn the_shops_own_json_and_csv_messages_become_records_naming_their_place() {
    let broker = Broker::start();
    let mut c = config(&broker);
    c.topics.push(ExternalTopic {
        name: "shop.csv".into(),
        dataset: "orders".into(),
        format: Format::Csv,
        columns: vec!["invoice".into(), "qty".into()],
        start: None,
        mapping: None,
    });
    let kafka = Kafka::connect(&c).unwrap();
    let json = kafka.create_topic("shop.json", 1).unwrap();
    let csv = kafka.create_topic("shop.csv", 1).unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .create()
        .unwrap();
    for v in [&br#"{"InvoiceNo":"536365","Quantity":6}"#[..], b"not json"] {
        producer
            .send(BaseRecord::<(), _>::to("shop.json").payload(v))
            .unwrap();
    }
    producer
        .send(BaseRecord::<(), _>::to("shop.csv").payload("536366,\"2\""))
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    let (records, _) = read_all(json.as_ref(), 0, 0, 2);
    let first: serde_json::Value = serde_json::from_slice(&records[0].value).unwrap();
    assert_eq!(first["source"], "kafka:shop.json/0@0");
    assert_eq!(first["fields"]["Quantity"], 6);
    let second: serde_json::Value = serde_json::from_slice(&records[1].value).unwrap();
    assert_eq!(second["source"], "kafka:shop.json/0@1");
    assert!(second["reason"].as_str().unwrap().contains("not JSON"));
    assert_eq!(second["fields"]["_raw"], "not json");
    let (records, _) = read_all(csv.as_ref(), 0, 0, 1);
    let line: serde_json::Value = serde_json::from_slice(&records[0].value).unwrap();
    assert_eq!(line["fields"]["invoice"], "536366");
    assert_eq!(line["fields"]["qty"], "2");
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < Duration::from_secs(30), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_group_shares_partitions_and_a_leaving_worker_hands_its_own_over() {
    let broker = Broker::start();
    let a = Kafka::connect(&config(&broker)).unwrap();
    a.create_topic("orders", 4).unwrap();
    let ta = a.topic("orders").unwrap();
    let b = Kafka::connect(&config(&broker)).unwrap();
    let tb = b.topic("orders").unwrap();
    assert!(ta.assigned().len() <= 4);
    wait_for("both workers own partitions, all of them once", || {
        let (x, y) = (ta.assigned(), tb.assigned());
        let mut all: Vec<u32> = x.iter().chain(&y).copied().collect();
        all.sort_unstable();
        !x.is_empty() && !y.is_empty() && all == vec![0, 1, 2, 3]
    });
    // The group's offset follows the lake's commits (lag tools read it).
    let p = ta.assigned()[0];
    ta.loaded(p, 0);
    drop(tb);
    drop(b);
    wait_for("the remaining worker owns every partition", || {
        ta.assigned() == vec![0, 1, 2, 3]
    });
    let _keep: Arc<dyn TopicLog> = ta;
}

#[test]
fn a_new_load_starts_at_the_earliest_or_the_latest_offset_as_configured() {
    let broker = Broker::start();
    let mut c = config(&broker);
    c.topics.push(ExternalTopic {
        name: "from.now".into(),
        dataset: "orders".into(),
        format: Format::Json,
        columns: Vec::new(),
        start: Some(shopstream_kafka::Start::Latest),
        mapping: None,
    });
    let kafka = Kafka::connect(&c).unwrap();
    let all = kafka.create_topic("from.start", 1).unwrap();
    let now = kafka.create_topic("from.now", 1).unwrap();
    for topic in [&all, &now] {
        topic.append(0, &request("a", 1)).unwrap();
        topic.append(0, &request("b", 1)).unwrap();
    }
    assert_eq!(all.initial_offset(0).unwrap(), 0, "earliest (the default)");
    assert_eq!(now.initial_offset(0).unwrap(), 2, "latest");
}

/// Settings for the secured broker: TLS trusting its certificate, SCRAM-SHA-256 with `password`.
fn secured(broker: &SecureBroker, password: &str) -> KafkaConfig {
    let mut c = KafkaConfig::new(&broker.address);
    c.replication_factor = 1;
    c.timeout_ms = 10_000;
    for (k, v) in [
        ("security.protocol", "sasl_ssl"),
        ("sasl.mechanisms", "SCRAM-SHA-256"),
        ("sasl.username", "shop"),
        ("sasl.password", password),
        ("ssl.ca.location", &broker.ca.display().to_string()),
    ] {
        c.properties.insert(k.into(), v.into());
    }
    c
}

#[test]
fn a_cluster_behind_tls_and_scram_is_reached_with_the_password_and_refused_without() {
    let broker = SecureBroker::start("shop", "s3cret");
    let kafka = Kafka::connect(&secured(&broker, "s3cret")).unwrap();
    let topic = kafka.create_topic("orders", 2).unwrap();
    let p = topic.partition_for_key(b"req-1");
    topic.append(p, &request("req-1", 2)).unwrap();
    let (records, _) = read_all(topic.as_ref(), p, 0, 2);
    assert_eq!(records.len(), 2);
    let wrong = Kafka::connect(&secured(&broker, "guess")).err().unwrap();
    assert!(
        wrong.to_string().contains("reaching the cluster")
            && wrong.to_string().contains("Authentication failure"),
        "{wrong}"
    );
    // Without TLS the front never answers as Kafka.
    let mut plain = KafkaConfig::new(&broker.address);
    plain.timeout_ms = 3000;
    assert!(Kafka::connect(&plain).is_err());
}
