//! The log: named topics of numbered partitions under one folder, and consumer groups' committed offsets.
//!
//! Layout: `<dir>/topics/<topic>/topic.json` (partition count and settings) and `<dir>/topics/<topic>/<n>/`
//! (that partition's segments); `<dir>/groups/<group>.json` (committed offsets). Metadata files are replaced
//! atomically (write, fsync, rename, fsync the folder), so a crash leaves the old or the new version. Opening
//! the log recovers every partition and returns what recovery cut, which is also logged and counted.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::{LogError, Result};
use crate::partition::{Partition, PartitionConfig, SyncPolicy};
use crate::record::{NewRecord, Record};
use crate::segment::{Truncation, sync_dir};

/// A topic: partitions sharing settings.
pub struct Topic {
    name: String,
    partitions: Vec<Arc<Partition>>,
}

impl Topic {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// One partition.
    pub fn partition(&self, n: u32) -> Result<&Arc<Partition>> {
        self.partitions
            .get(n as usize)
            .ok_or_else(|| LogError::UnknownPartition {
                topic: self.name.clone(),
                partition: n,
                partitions: self.partitions.len() as u32,
            })
    }

    /// All partitions, by number.
    pub fn partitions(&self) -> &[Arc<Partition>] {
        &self.partitions
    }

    /// The partition for a key: stable for a key and partition count (FNV-1a of the key bytes).
    pub fn partition_for_key(&self, key: &[u8]) -> u32 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h % self.partitions.len() as u64) as u32
    }

    /// Appends to partition `n`, returning the offsets once durable.
    pub fn append(&self, n: u32, records: &[NewRecord]) -> Result<std::ops::Range<u64>> {
        self.partition(n)?.append(records)
    }

    /// Reads durable records of partition `n` from `offset`.
    pub fn read(&self, n: u32, offset: u64, max_records: usize) -> Result<Vec<Record>> {
        self.partition(n)?.read(offset, max_records, 1 << 20)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicMeta {
    partitions: u32,
    #[serde(flatten)]
    config: PartitionConfig,
}

/// What opening the log recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// `topic/partition`.
    pub partition: String,
    /// What was cut.
    pub truncation: Truncation,
}

/// Log-wide counters, for `/metrics` and `status`.
#[derive(Debug, Default)]
pub struct LogMetrics {
    /// Torn or corrupt tails cut back at open.
    pub recovered_truncations: AtomicU64,
    /// Bytes removed by those cuts.
    pub recovered_bytes: AtomicU64,
}

/// The embedded log.
pub struct Log {
    dir: PathBuf,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    groups: Mutex<HashMap<String, BTreeMap<String, u64>>>,
    metrics: LogMetrics,
}

fn valid_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(LogError::Invalid(format!(
            "{kind} name `{name}`: use letters, digits, `.`, `_` and `-` (at most 200)"
        )))
    }
}

/// Replaces `path` with `bytes` atomically and durably.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("metadata files live in a folder");
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(LogError::io(&tmp))?;
        f.write_all(bytes).map_err(LogError::io(&tmp))?;
        f.sync_all().map_err(LogError::io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(LogError::io(path))?;
    sync_dir(dir)
}

impl Log {
    /// Opens the log in `dir` (created if missing), recovering every partition.
    pub fn open(dir: &Path) -> Result<(Arc<Log>, Vec<Recovery>)> {
        let topics_dir = dir.join("topics");
        let groups_dir = dir.join("groups");
        for d in [dir, &topics_dir, &groups_dir] {
            std::fs::create_dir_all(d).map_err(LogError::io(d))?;
        }
        let metrics = LogMetrics::default();
        let mut recoveries = Vec::new();
        let mut topics = BTreeMap::new();
        let mut names: Vec<String> = std::fs::read_dir(&topics_dir)
            .map_err(LogError::io(&topics_dir))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("topic.json").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            let meta_path = topics_dir.join(&name).join("topic.json");
            let text = std::fs::read_to_string(&meta_path).map_err(LogError::io(&meta_path))?;
            let meta: TopicMeta = serde_json::from_str(&text)
                .map_err(|e| LogError::Invalid(format!("{}: {e}", meta_path.display())))?;
            let (topic, rec) = Self::open_topic(&topics_dir, &name, &meta)?;
            for r in &rec {
                metrics
                    .recovered_truncations
                    .fetch_add(1, Ordering::Relaxed);
                metrics
                    .recovered_bytes
                    .fetch_add(r.truncation.bytes, Ordering::Relaxed);
            }
            recoveries.extend(rec);
            topics.insert(name, Arc::new(topic));
        }
        let mut groups = HashMap::new();
        for e in std::fs::read_dir(&groups_dir)
            .map_err(LogError::io(&groups_dir))?
            .filter_map(|e| e.ok())
        {
            let path = e.path();
            let Some(group) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let text = std::fs::read_to_string(&path).map_err(LogError::io(&path))?;
            let offsets: BTreeMap<String, u64> = serde_json::from_str(&text)
                .map_err(|e| LogError::Invalid(format!("{}: {e}", path.display())))?;
            groups.insert(group.to_string(), offsets);
        }
        let log = Arc::new(Log {
            dir: dir.to_path_buf(),
            topics: RwLock::new(topics),
            groups: Mutex::new(groups),
            metrics,
        });
        Self::start_interval_syncer(&log);
        Ok((log, recoveries))
    }

    fn open_topic(
        topics_dir: &Path,
        name: &str,
        meta: &TopicMeta,
    ) -> Result<(Topic, Vec<Recovery>)> {
        let mut partitions = Vec::new();
        let mut recoveries = Vec::new();
        for n in 0..meta.partitions {
            let pname = format!("{name}/{n}");
            let (p, t) = Partition::open(
                pname.clone(),
                &topics_dir.join(name).join(n.to_string()),
                meta.config.clone(),
            )?;
            if let Some(truncation) = t {
                recoveries.push(Recovery {
                    partition: pname,
                    truncation,
                });
            }
            partitions.push(Arc::new(p));
        }
        Ok((
            Topic {
                name: name.to_string(),
                partitions,
            },
            recoveries,
        ))
    }

    /// One thread syncs partitions under [`SyncPolicy::IntervalMs`]; it stops when the log is dropped.
    fn start_interval_syncer(log: &Arc<Log>) {
        let weak = Arc::downgrade(log);
        std::thread::Builder::new()
            .name("shopstream-log-sync".into())
            .spawn(move || {
                let mut last: HashMap<String, std::time::Instant> = HashMap::new();
                let mut any_interval = false;
                loop {
                    // Idle at 10 Hz until some partition syncs on an interval, then tick every millisecond.
                    let tick = if any_interval { 1 } else { 100 };
                    std::thread::sleep(std::time::Duration::from_millis(tick));
                    let Some(log) = weak.upgrade() else { return };
                    any_interval = false;
                    let topics: Vec<Arc<Topic>> = log
                        .topics
                        .read()
                        .map(|t| t.values().cloned().collect())
                        .unwrap_or_default();
                    for t in topics {
                        for p in t.partitions() {
                            let SyncPolicy::IntervalMs(ms) = p.config().sync else {
                                continue;
                            };
                            any_interval = true;
                            let due = last.get(p.name()).is_none_or(|at| {
                                at.elapsed() >= std::time::Duration::from_millis(ms)
                            });
                            if due {
                                last.insert(p.name().to_string(), std::time::Instant::now());
                                if let Err(e) = p.sync_now() {
                                    tracing::error!(partition = p.name(), "log sync failed: {e}");
                                }
                            }
                        }
                    }
                }
            })
            .expect("spawning the log's sync thread");
    }

    /// The folder of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counters.
    pub fn metrics(&self) -> &LogMetrics {
        &self.metrics
    }

    /// Creates a topic, or returns the existing one when it has the same partition count.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: PartitionConfig,
    ) -> Result<Arc<Topic>> {
        valid_name("topic", name)?;
        if partitions == 0 {
            return Err(LogError::Invalid(format!(
                "topic `{name}` needs at least one partition"
            )));
        }
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = topics.get(name) {
            if t.partition_count() == partitions {
                return Ok(t.clone());
            }
            return Err(LogError::TopicExists {
                topic: name.to_string(),
                existing: t.partition_count(),
            });
        }
        let topics_dir = self.dir.join("topics");
        let dir = topics_dir.join(name);
        std::fs::create_dir_all(&dir).map_err(LogError::io(&dir))?;
        let meta = TopicMeta { partitions, config };
        let (topic, _) = Self::open_topic(&topics_dir, name, &meta)?;
        // topic.json last: a topic without it is not a topic (a crash in between leaves empty folders).
        let json = serde_json::to_vec_pretty(&meta).expect("topic metadata serializes");
        write_atomic(&dir.join("topic.json"), &json)?;
        sync_dir(&topics_dir)?;
        let topic = Arc::new(topic);
        topics.insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))
    }

    /// All topics.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Durably records that `group` has consumed `topic`/`partition` up to (not including) `offset`.
    pub fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<()> {
        valid_name("group", group)?;
        self.topic(topic)?.partition(partition)?;
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let offsets = groups.entry(group.to_string()).or_default();
        offsets.insert(format!("{topic}/{partition}"), offset);
        let json = serde_json::to_vec_pretty(offsets).expect("offsets serialize");
        write_atomic(
            &self.dir.join("groups").join(format!("{group}.json")),
            &json,
        )
    }

    /// The offset `group` committed for `topic`/`partition`, if any.
    pub fn committed_offset(&self, group: &str, topic: &str, partition: u32) -> Option<u64> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .and_then(|o| o.get(&format!("{topic}/{partition}")).copied())
    }
}
