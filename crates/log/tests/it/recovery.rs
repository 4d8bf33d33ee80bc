//! Damage to a partition's tail is found on open, cut back to the last good batch and reported; damage inside
//! a sealed segment is an error, never silently served.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use shopstream_log::{Log, PartitionConfig};

fn active_segment(dir: &Path) -> PathBuf {
    let pdir = dir.join("topics/t/0");
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&pdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

fn fill(dir: &Path, config: PartitionConfig, n: usize) {
    let (log, _) = Log::open(dir).unwrap();
    let t = log.create_topic("t", 1, config).unwrap();
    for i in 0..n {
        t.append(0, &[crate::rec(i as i64, &format!("record {i}"))])
            .unwrap();
    }
}

fn reopen_and_count(dir: &Path) -> (usize, Vec<shopstream_log::Recovery>) {
    let (log, rec) = Log::open(dir).unwrap();
    let records = log.topic("t").unwrap().read(0, 0, usize::MAX).unwrap();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            r.value,
            format!("record {i}").as_bytes(),
            "surviving records are intact"
        );
    }
    // The partition keeps working after recovery, at the right offset.
    let next = log
        .topic("t")
        .unwrap()
        .append(0, &[crate::rec(0, "after")])
        .unwrap();
    assert_eq!(next.start, records.len() as u64);
    (records.len(), rec)
}

#[test]
fn a_torn_last_batch_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), PartitionConfig::default(), 10);
    let seg = active_segment(dir.path());
    let len = std::fs::metadata(&seg).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let (n, rec) = reopen_and_count(dir.path());
    assert_eq!(n, 9);
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].partition, "t/0");
    assert!(rec[0].truncation.reason.contains("torn"), "{:?}", rec[0]);
}

#[test]
fn a_flipped_bit_in_the_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), PartitionConfig::default(), 10);
    let seg = active_segment(dir.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let (n, rec) = reopen_and_count(dir.path());
    assert_eq!(n, 9);
    assert!(
        rec[0].truncation.reason.contains("checksum"),
        "{:?}",
        rec[0]
    );
}

#[test]
fn zeros_after_the_last_batch_are_cut() {
    // What a crash can leave after an extending write whose data never reached the disk.
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), PartitionConfig::default(), 4);
    let seg = active_segment(dir.path());
    OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&[0u8; 4096])
        .unwrap();
    let (n, rec) = reopen_and_count(dir.path());
    assert_eq!(n, 4);
    assert_eq!(rec[0].truncation.bytes, 4096);
    let (_, again) = Log::open(dir.path()).unwrap();
    assert!(
        again.is_empty(),
        "the cut is durable: a second open finds nothing to do"
    );
}

#[test]
fn corruption_inside_a_sealed_segment_is_an_error_not_data() {
    let dir = tempfile::tempdir().unwrap();
    let config = PartitionConfig {
        segment_bytes: 300,
        ..PartitionConfig::default()
    };
    fill(dir.path(), config, 30);
    let first = dir.path().join("topics/t/0/00000000000000000000.log");
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[50] ^= 0x10;
    std::fs::write(&first, &bytes).unwrap();
    // The sealed index still matches the file's size, so opening trusts it; reading finds the damage.
    let (log, _) = Log::open(dir.path()).unwrap();
    let err = log
        .topic("t")
        .unwrap()
        .read(0, 0, usize::MAX)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checksum") && err.contains("00000000000000000000.log"),
        "{err}"
    );
    // Without its index the segment is scanned at open, and the damage stops the open.
    std::fs::remove_file(dir.path().join("topics/t/0/00000000000000000000.index")).unwrap();
    drop(log);
    let err = Log::open(dir.path())
        .err()
        .expect("open refuses a damaged sealed segment")
        .to_string();
    assert!(err.contains("00000000000000000000.log"), "{err}");
}
