//! A writer process is SIGKILLed at random moments, dozens of times. After each kill the log is reopened and
//! every record the writer had been told was durable must be there, once, with its content, in the order the
//! writer appended it. Records appended but never acknowledged may or may not have survived, but never torn.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use shopstream_log::{Log, PartitionConfig};

const CHILD_ENV: &str = "SHOPSTREAM_LOG_CRASH_CHILD";
const WRITERS: u32 = 3;
const PARTITIONS: u32 = 2;

/// The writer: only runs when the crash test starts this test binary as its child.
#[test]
fn crash_child_writer() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, round) = spec.split_once('|').unwrap();
    let (log, _) = Log::open(std::path::Path::new(dir)).unwrap();
    let config = PartitionConfig {
        segment_bytes: 16 * 1024, // rolls happen while being killed too
        ..PartitionConfig::default()
    };
    let topic = log.create_topic("crash", PARTITIONS, config).unwrap();
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let topic = topic.clone();
            s.spawn(move || {
                let mut rng = rand_pcg::Pcg64::seed_from_u64(u64::from(w));
                for seq in 0u64.. {
                    let p = (w + seq as u32) % PARTITIONS;
                    let n = rng.random_range(1..8);
                    let batch: Vec<_> = (0..n)
                        .map(|i| crate::rec(0, &format!("{round}:{w}:{}", seq * 100 + i)))
                        .collect();
                    let r = topic.append(p, &batch).unwrap();
                    // One line per acknowledged append, written whole.
                    println!("ACK {p} {} {} {round}:{w}:{}", r.start, r.end, seq * 100);
                }
            });
        }
    });
}

#[test]
fn acknowledged_records_survive_sigkill_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
    let mut acked: Vec<(u32, u64, u64, String)> = Vec::new();
    let rounds = 30;
    let mut cut = 0;
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{}|{round}", dir.path().display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter(|l| l.starts_with("ACK "))
                .collect::<Vec<String>>()
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(20..250)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for line in reader.join().unwrap() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() != 5 {
                continue; // the line the kill cut short
            }
            acked.push((
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[4].to_string(),
            ));
        }
        cut += check(dir.path(), &acked, round);
    }
    eprintln!(
        "{rounds} kills, {} acknowledged appends checked, {cut} torn tails cut",
        acked.len()
    );
    assert!(
        acked.len() > rounds as usize,
        "the writer got appends acknowledged before its kills"
    );
}

/// Checks the log against what was acknowledged; returns how many tails recovery cut.
fn check(dir: &std::path::Path, acked: &[(u32, u64, u64, String)], round: u32) -> usize {
    let (log, recoveries) = Log::open(dir).unwrap();
    let Ok(topic) = log.topic("crash") else {
        assert!(acked.is_empty(), "acknowledged appends but no topic");
        return 0;
    };
    let mut by_value: HashMap<Vec<u8>, (u32, u64)> = HashMap::new();
    let mut last_seq: HashMap<(String, String), u64> = HashMap::new();
    for p in 0..PARTITIONS {
        let records = topic.read(p, 0, usize::MAX).unwrap();
        for r in &records {
            let dup = by_value.insert(r.value.clone(), (p, r.offset));
            assert!(
                dup.is_none(),
                "round {round}: record {:?} stored twice",
                String::from_utf8_lossy(&r.value)
            );
            // Per writer run, sequence numbers rise with the offset (appends are ordered).
            let text = String::from_utf8(r.value.clone()).unwrap();
            let mut parts = text.split(':');
            let (run, w, seq) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let key = (format!("{p}/{run}"), w.to_string());
            let seq: u64 = seq.parse().unwrap();
            if let Some(prev) = last_seq.insert(key, seq) {
                assert!(
                    seq > prev,
                    "round {round}: writer order broken in partition {p}"
                );
            }
        }
    }
    for (p, start, end, first) in acked {
        let (run_w, seq0) = first.rsplit_once(':').unwrap();
        let seq0: u64 = seq0.parse().unwrap();
        for (i, offset) in (*start..*end).enumerate() {
            let value = format!("{run_w}:{}", seq0 + i as u64);
            assert_eq!(
                by_value.get(value.as_bytes()),
                Some(&(*p, offset)),
                "round {round}: acknowledged record {value} lost or moved"
            );
        }
    }
    recoveries.len()
}
