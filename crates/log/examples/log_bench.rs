//! Log append benchmark (driven by `bench/log.sh`): producers append fixed-size records with durable acks
//! for a while; prints records/s, MiB/s, acknowledgement latency percentiles and bytes per fdatasync.
//!
//! `log_bench DIR RECORD_BYTES PRODUCERS RECORDS_PER_APPEND SECONDS [every|interval:MS] [PARTITIONS]`

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shopstream_log::{Log, NewRecord, PartitionConfig, SyncPolicy};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!(
            "usage: log_bench DIR RECORD_BYTES PRODUCERS RECORDS_PER_APPEND SECONDS [every|interval:MS] [PARTITIONS]"
        );
        std::process::exit(2);
    }
    let dir = std::path::PathBuf::from(&args[1]);
    let record_bytes: usize = args[2].parse().expect("RECORD_BYTES");
    let producers: usize = args[3].parse().expect("PRODUCERS");
    let per_append: usize = args[4].parse().expect("RECORDS_PER_APPEND");
    let seconds: f64 = args[5].parse().expect("SECONDS");
    let sync = match args.get(6).map(String::as_str) {
        None | Some("every") => SyncPolicy::EveryBatch,
        Some(s) => SyncPolicy::IntervalMs(
            s.strip_prefix("interval:")
                .and_then(|m| m.parse().ok())
                .expect("every or interval:MS"),
        ),
    };
    let partitions: u32 = args.get(7).map_or(1, |p| p.parse().expect("PARTITIONS"));
    let _ = std::fs::remove_dir_all(&dir);
    let (log, _) = Log::open(&dir).expect("open log");
    let config = PartitionConfig {
        sync,
        ..PartitionConfig::default()
    };
    let topic = log
        .create_topic("bench", partitions, config)
        .expect("create topic");
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..producers)
            .map(|w| {
                let topic = topic.clone();
                let stop = &stop;
                s.spawn(move || {
                    let value = vec![b'x'; record_bytes];
                    let batch: Vec<NewRecord> = (0..per_append)
                        .map(|i| NewRecord::new(i as i64, value.clone()))
                        .collect();
                    let mut lat = Vec::new();
                    let p = w as u32 % partitions;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        topic.append(p, &batch).expect("append");
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("producer"))
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1000.0
    };
    let (mut records, mut bytes, mut syncs) = (0u64, 0u64, 0u64);
    for p in topic.partitions() {
        records += p.stats().records.load(Ordering::Relaxed);
        bytes += p.stats().bytes.load(Ordering::Relaxed);
        syncs += p.stats().syncs.load(Ordering::Relaxed);
    }
    println!(
        "record_bytes={record_bytes} producers={producers} per_append={per_append} partitions={partitions} \
         records={records} records_per_s={:.0} mib_per_s={:.1} appends={} p50_ms={:.2} p99_ms={:.2} \
         syncs={syncs} bytes_per_sync={}",
        records as f64 / elapsed,
        bytes as f64 / elapsed / 1048576.0,
        latencies.len(),
        pct(0.50),
        pct(0.99),
        bytes / syncs.max(1),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
