//! Random operations on the log and on a simple in-memory model (a Vec of records per partition) must agree,
//! across appends, reads from any offset, time lookups, segment rolls, offset commits and reopenings.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use shopstream_log::{Log, NewRecord, PartitionConfig, Record};

#[derive(Default)]
struct Model {
    partitions: Vec<Vec<Record>>,
    committed: BTreeMap<(String, u32), u64>,
}

fn random_records(rng: &mut Pcg64, next_ts: &mut i64) -> Vec<NewRecord> {
    (0..rng.random_range(1..12))
        .map(|_| {
            // Mostly rising event time with some late records, as real feeds have.
            *next_ts += rng.random_range(0..50);
            let ts = *next_ts - rng.random_range(0..120);
            let len = rng.random_range(0..300);
            NewRecord {
                timestamp_ms: ts,
                key: rng
                    .random_bool(0.3)
                    .then(|| rng.random::<u64>().to_le_bytes().to_vec()),
                value: (0..len).map(|_| rng.random()).collect(),
            }
        })
        .collect()
}

#[test]
fn log_agrees_with_an_in_memory_model() {
    for seed in 0..6u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Pcg64::seed_from_u64(seed);
        let config = PartitionConfig {
            segment_bytes: 2048, // many segments: rolls, sealed indexes, reads across files
            ..PartitionConfig::default()
        };
        let (mut log, rec) = Log::open(dir.path()).unwrap();
        assert!(rec.is_empty());
        let partitions = 3;
        log.create_topic("orders", partitions, config.clone())
            .unwrap();
        let mut model = Model {
            partitions: vec![Vec::new(); partitions as usize],
            ..Model::default()
        };
        let mut next_ts = 1_700_000_000_000i64;
        for step in 0..400 {
            let topic = log.topic("orders").unwrap();
            let p = rng.random_range(0..partitions);
            let records = &mut model.partitions[p as usize];
            match rng.random_range(0..100) {
                0..55 => {
                    let batch = random_records(&mut rng, &mut next_ts);
                    let range = topic.append(p, &batch).unwrap();
                    assert_eq!(range.start, records.len() as u64, "seed {seed} step {step}");
                    for (i, r) in batch.into_iter().enumerate() {
                        records.push(Record {
                            offset: range.start + i as u64,
                            timestamp_ms: r.timestamp_ms,
                            key: r.key,
                            value: r.value,
                        });
                    }
                }
                55..80 => {
                    let from = rng.random_range(0..=records.len() as u64);
                    let max = rng.random_range(1..40);
                    let got = topic.read(p, from, max).unwrap();
                    let want: Vec<Record> = records
                        .iter()
                        .skip(from as usize)
                        .take(max)
                        .cloned()
                        .collect();
                    // A read returns at least one batch and at most `max`; it may stop early at ~1 MiB.
                    assert_eq!(
                        got,
                        want[..got.len()],
                        "seed {seed} step {step} from {from}"
                    );
                    assert!(got.len() == want.len() || !got.is_empty());
                    let beyond = topic.read(p, records.len() as u64 + 1, 1);
                    assert!(beyond.is_err(), "reading past the end is an error");
                }
                80..88 => {
                    let ts = next_ts - rng.random_range(0..2000);
                    let want = records
                        .iter()
                        .find(|r| r.timestamp_ms >= ts)
                        .map_or(records.len() as u64, |r| r.offset);
                    let got = topic.partition(p).unwrap().offset_for_time(ts).unwrap();
                    assert_eq!(got, want, "seed {seed} step {step} time {ts}");
                }
                88..94 => {
                    let offset = rng.random_range(0..=records.len() as u64);
                    log.commit_offset("loader", "orders", p, offset).unwrap();
                    model.committed.insert(("loader".into(), p), offset);
                }
                _ => {
                    drop(topic);
                    drop(log);
                    let (reopened, rec) = Log::open(dir.path()).unwrap();
                    assert!(rec.is_empty(), "a clean close needs no recovery: {rec:?}");
                    log = reopened;
                    for (p, records) in model.partitions.iter().enumerate() {
                        let t = log.topic("orders").unwrap();
                        assert_eq!(
                            t.partition(p as u32).unwrap().end_offset(),
                            records.len() as u64
                        );
                        let all = t.read(p as u32, 0, usize::MAX).unwrap();
                        assert_eq!(&all, records, "seed {seed}: partition {p} after reopening");
                    }
                    for ((g, p), o) in &model.committed {
                        assert_eq!(log.committed_offset(g, "orders", *p), Some(*o));
                    }
                }
            }
        }
    }
}

#[test]
fn retention_removes_whole_old_segments_by_size_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path()).unwrap();
    let config = PartitionConfig {
        segment_bytes: 1000,
        retention_bytes: Some(5000),
        ..PartitionConfig::default()
    };
    let t = log.create_topic("clicks", 1, config).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for i in 0..200 {
        t.append(0, &[crate::rec(now, &format!("{i:0>100}"))])
            .unwrap();
    }
    let p = t.partition(0).unwrap();
    assert!(p.start_offset() > 0, "old segments were deleted");
    let kept = t.read(0, p.start_offset(), usize::MAX).unwrap();
    assert_eq!(kept.last().unwrap().offset, 199, "the newest records stay");
    assert!(
        kept.len() * 140 <= 5000 + 2000,
        "about retention_bytes are kept"
    );
    let err = t.read(0, 0, 1).unwrap_err().to_string();
    assert!(err.contains("out of range"), "{err}");

    let aged = log
        .create_topic(
            "old",
            1,
            PartitionConfig {
                segment_bytes: 200,
                retention_ms: Some(60_000),
                ..PartitionConfig::default()
            },
        )
        .unwrap();
    for i in 0..20 {
        aged.append(0, &[crate::rec(now - 3_600_000, &format!("{i:0>150}"))])
            .unwrap();
    }
    aged.append(0, &[crate::rec(now, "fresh")]).unwrap();
    aged.partition(0).unwrap().apply_retention();
    let left = aged
        .read(0, aged.partition(0).unwrap().start_offset(), usize::MAX)
        .unwrap();
    assert_eq!(left.last().unwrap().value, b"fresh");
    assert!(
        left.len() <= 2,
        "hour-old segments are gone: {} left",
        left.len()
    );
}

#[test]
fn concurrent_producers_get_dense_unique_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path()).unwrap();
    let t = log
        .create_topic("events", 1, PartitionConfig::default())
        .unwrap();
    let threads = 8;
    let per_thread = 100;
    let mut ranges: Vec<std::ops::Range<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                let t = t.clone();
                s.spawn(move || {
                    (0..per_thread)
                        .map(|i| t.append(0, &[crate::rec(0, &format!("{w}-{i}"))]).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    ranges.sort_by_key(|r| r.start);
    for (i, r) in ranges.iter().enumerate() {
        assert_eq!(*r, i as u64..i as u64 + 1, "offsets are dense and unique");
    }
    let all = t.read(0, 0, usize::MAX).unwrap();
    assert_eq!(all.len(), threads * per_thread);
    let stats = t.partition(0).unwrap().stats();
    let syncs = stats.syncs.load(std::sync::atomic::Ordering::Relaxed);
    // How many syncs were shared depends on timing; bench/log.sh measures it (bytes per sync).
    eprintln!("{} appends, {syncs} fdatasyncs", threads * per_thread);
}

#[test]
fn interval_sync_acknowledges_after_the_next_tick() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path()).unwrap();
    let t = log
        .create_topic(
            "batched",
            2,
            PartitionConfig {
                sync: shopstream_log::SyncPolicy::IntervalMs(5),
                ..PartitionConfig::default()
            },
        )
        .unwrap();
    for i in 0..20 {
        let r = t.append(i % 2, &[crate::rec(i as i64, "x")]).unwrap();
        assert!(
            t.partition(i % 2).unwrap().end_offset() >= r.end,
            "acknowledged means durable"
        );
    }
}
