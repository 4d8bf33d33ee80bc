//! The configuration file: TOML, with a default embedded in the binary.
//!
//! Unknown keys are errors that name the key and the file, so a typo never silently falls back to a
//! default. Units are in the key names (`target_file_size_mb`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use std::sync::Arc;

use shopstream_ingest::{Dataset, DatasetConfig, MappingConfig};

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where and how the lake is written.
    pub lake: LakeConfig,
    /// Sources.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// `[server]`: HTTP ingest, status and metrics.
    #[serde(default)]
    pub server: shopstream_server::ServerConfig,
    /// `[live]`: the topic of live orders and its log settings.
    #[serde(default)]
    pub live: LiveConfig,
    /// `[postgres]`: the Postgres wire endpoint.
    #[serde(default)]
    pub postgres: shopstream_server::postgres::PostgresConfig,
    /// `[[datasets]]`: tables other than orders (customers, products, …).
    #[serde(default)]
    pub datasets: Vec<DatasetConfig>,
}

/// The live path: the topic order records arrive in, and how the log keeps it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    #[serde(default = "default_topic")]
    pub topic: String,
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    #[serde(default)]
    pub log: shopstream_log::PartitionConfig,
    /// Most records per partition loaded into the lake in one commit.
    #[serde(default = "default_max_records")]
    pub load_max_records: usize,
    /// Files dropped here are loaded once, then moved to processed/ or failed/ (empty: <data-dir>/landing).
    #[serde(default)]
    pub landing_dir: String,
    #[serde(default = "default_landing_poll_ms")]
    pub landing_poll_ms: u64,
    /// Paginated JSON APIs polled into the topic (`[[live.pollers]]`).
    #[serde(default)]
    pub pollers: Vec<shopstream_ingest::sources::api::PollerConfig>,
    /// Flows: `POST /v1/flows/{name}/records` through steps into a topic (`[[live.flows]]`).
    #[serde(default)]
    pub flows: Vec<shopstream_ingest::sources::flow::FlowConfig>,
    /// Compact the lake's tables (their small files of live commits) every this many seconds; 0: never.
    #[serde(default = "default_compact_every_s")]
    pub compact_every_s: u64,
    /// Data files replaced by a compaction are deleted this many seconds later (readers of older
    /// versions have that long).
    #[serde(default = "default_vacuum_after_s")]
    pub vacuum_after_s: u64,
}

fn default_vacuum_after_s() -> u64 {
    3600
}

fn default_compact_every_s() -> u64 {
    600
}

fn default_landing_poll_ms() -> u64 {
    1000
}

fn default_topic() -> String {
    "orders".into()
}
fn default_partitions() -> u32 {
    2
}
fn default_max_records() -> usize {
    200_000
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            topic: default_topic(),
            partitions: default_partitions(),
            log: shopstream_log::PartitionConfig::default(),
            load_max_records: default_max_records(),
            landing_dir: String::new(),
            landing_poll_ms: default_landing_poll_ms(),
            pollers: Vec::new(),
            flows: Vec::new(),
            compact_every_s: default_compact_every_s(),
            vacuum_after_s: default_vacuum_after_s(),
        }
    }
}

/// `[lake]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// Lake URL; empty for `<data-dir>/lake`.
    #[serde(default)]
    pub url: String,
    /// Parquet files roll at this size, in MiB.
    #[serde(default = "default_file_size_mb")]
    pub target_file_size_mb: u64,
    /// zstd level.
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
}

fn default_file_size_mb() -> u64 {
    128
}
fn default_zstd_level() -> i32 {
    3
}

/// `[ingest]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Schema mappings for non-Online-Retail layouts.
    #[serde(default)]
    pub mappings: Vec<MappingConfig>,
    /// The shop's time zone (an IANA name such as `Europe/London`, or `UTC`): times without an offset
    /// are wall-clock times in it; times with one (`…Z`, `+02:00`, zone-aware Parquet) are converted
    /// into it. The lake keeps wall-clock times of this zone.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

fn default_timezone() -> String {
    "UTC".into()
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            mappings: Vec::new(),
            timezone: default_timezone(),
        }
    }
}

impl IngestConfig {
    /// The configured time zone (checked by [`Config::load`]).
    pub fn timezone(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::Tz::UTC)
    }

    /// Read options for files of a load into `dataset`.
    pub fn read_options(
        &self,
        sheet: Option<String>,
        dataset: Arc<Dataset>,
    ) -> shopstream_ingest::ReadOptions {
        shopstream_ingest::ReadOptions {
            sheet,
            mappings: self.mappings.clone(),
            timezone: self.timezone(),
            dataset,
        }
    }
}

impl Config {
    /// Loads `path`, or the embedded default when `None`.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let (text, name) = match path {
            Some(p) => (
                std::fs::read_to_string(p)
                    .with_context(|| format!("reading config {}", p.display()))?,
                p.display().to_string(),
            ),
            None => (
                DEFAULT_TOML.to_string(),
                "<embedded default.toml>".to_string(),
            ),
        };
        let config: Config =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {name}: {e}"))?;
        config
            .validate()
            .with_context(|| format!("config {name}"))?;
        Ok(config)
    }

    /// Every check of the configuration, run by every command (so `tables` refuses what `serve` would).
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut declared: Vec<Arc<Dataset>> = Vec::new();
        for d in &self.datasets {
            let dataset = d.to_dataset()?;
            if declared.iter().any(|o| o.name == dataset.name) {
                anyhow::bail!("[[datasets]] `{}` is declared twice", dataset.name);
            }
            declared.push(Arc::new(dataset));
        }
        for m in &self.ingest.mappings {
            // A mapping for a dataset created by loading a file is checked when a file is loaded.
            if let Some(dataset) = self.declared_dataset(m.dataset_name()) {
                m.validate(&dataset)?;
            }
        }
        if self.ingest.timezone.parse::<chrono_tz::Tz>().is_err() {
            anyhow::bail!(
                "[ingest] timezone `{}` is not a time zone (use an IANA name such as `Europe/London`, \
                 or `UTC`)",
                self.ingest.timezone
            );
        }
        let live = &self.live;
        if live.compact_every_s > 0 && live.vacuum_after_s < 300 {
            anyhow::bail!(
                "[live] vacuum_after_s = {}: at least 300, so queries that started before a compaction \
                 can still read the files it replaced",
                live.vacuum_after_s
            );
        }
        for p in &live.pollers {
            if !p.flow.is_empty() && !live.flows.iter().any(|f| f.name == p.flow) {
                anyhow::bail!("[[live.pollers]] `{}`: no flow `{}`", p.name, p.flow);
            }
        }
        Ok(())
    }

    /// The dataset `name` as the config knows it: `orders`, or a `[[datasets]]` entry.
    pub fn declared_dataset(&self, name: &str) -> Option<Arc<Dataset>> {
        if name == "orders" {
            return Some(Dataset::orders());
        }
        self.datasets
            .iter()
            .find(|d| d.name == name)
            .and_then(|d| d.to_dataset().ok())
            .map(Arc::new)
    }

    /// The lake location for a data dir.
    pub fn lake_dir(&self, data_dir: &Path) -> PathBuf {
        data_dir.join("lake")
    }

    pub fn log_dir(&self, data_dir: &Path) -> PathBuf {
        data_dir.join("log")
    }

    pub fn landing_dir(&self, data_dir: &Path) -> PathBuf {
        if self.live.landing_dir.is_empty() {
            data_dir.join("landing")
        } else {
            PathBuf::from(&self.live.landing_dir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_example_configs_load() {
        Config::load(None).unwrap();
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/examples/mappings.toml");
        let c = Config::load(Some(&example)).unwrap();
        assert_eq!(c.ingest.mappings[0].name, "webshop-export");
    }

    #[test]
    fn serve_only_settings_are_checked_by_every_command() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("live.toml");
        std::fs::write(
            &p,
            "[lake]\n[live]\ncompact_every_s = 60\nvacuum_after_s = 10\n",
        )
        .unwrap();
        let err = format!("{:#}", Config::load(Some(&p)).unwrap_err());
        assert!(
            err.contains("vacuum_after_s = 10") && err.contains("live.toml"),
            "{err}"
        );
        std::fs::write(
            &p,
            "[lake]\n[[live.pollers]]\nname = \"shop\"\nurl = \"http://127.0.0.1:1/o\"\nstyle = \"page\"\nflow = \"nope\"\n",
        )
        .unwrap();
        let err = format!("{:#}", Config::load(Some(&p)).unwrap_err());
        assert!(err.contains("no flow `nope`"), "{err}");
    }

    #[test]
    fn an_unknown_timezone_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tz.toml");
        std::fs::write(&p, "[lake]\n[ingest]\ntimezone = \"Mars/Olympus\"\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&p)).unwrap_err());
        assert!(err.contains("Mars/Olympus"), "{err}");
        std::fs::write(&p, "[lake]\n[ingest]\ntimezone = \"Europe/London\"\n").unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(c.ingest.timezone(), chrono_tz::Tz::Europe__London);
    }

    #[test]
    fn unknown_key_is_named_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "[lake]\nurl = \"\"\nzstd_levl = 3\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&p)).unwrap_err());
        assert!(
            err.contains("zstd_levl") && err.contains("bad.toml"),
            "{err}"
        );
    }
}
