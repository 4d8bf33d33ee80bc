//! The configuration file: TOML, with a default embedded in the binary.
//!
//! [`Config`] is the whole of `shopstream.toml`; each section's type lives with the crate that uses it
//! (`[lake]`: [`LakeConfig`] in the engine, `[ingest]`: [`IngestConfig`] in ingest, `[postgres]`:
//! [`PostgresConfig`], `[server]`: [`ServerConfig`]), and `[live]` is here. Unknown keys are
//! errors that name the key and the file, so a typo never silently falls back to a default. Units are in
//! the key names (`target_file_size_mb`). [`Config::validate`] is every check of the file, run by every
//! command (so `tables` refuses what `serve` would).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use std::sync::Arc;

use shopstream_engine::LakeConfig;
use shopstream_engine::stream::view::job::ViewDef;
use shopstream_ingest::sources::api::PollerConfig;
use shopstream_ingest::sources::flow::FlowConfig;
use shopstream_ingest::{Dataset, DatasetConfig, IngestConfig, IngestError};
use shopstream_kafka::KafkaConfig;

use crate::ServerConfig;
use crate::postgres::PostgresConfig;

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where and how the lake is written (a file may leave out any section: its defaults apply).
    #[serde(default)]
    pub lake: LakeConfig,
    /// Sources.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// `[server]`: HTTP ingest, status and metrics.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[live]`: the topic of live orders and its log settings.
    #[serde(default)]
    pub live: LiveConfig,
    /// `[postgres]`: the Postgres wire endpoint.
    #[serde(default)]
    pub postgres: PostgresConfig,
    /// `[[datasets]]`: tables other than orders (customers, products, …).
    #[serde(default)]
    pub datasets: Vec<DatasetConfig>,
    /// `[kafka]`: the cluster, when `[live] backbone = "kafka"`.
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
    /// `[[views]]`: continuous views, saved into the lake by `serve` (name, sql, delay_s, lateness_s,
    /// idle_timeout_s, ttl_s).
    #[serde(default)]
    pub views: Vec<ViewDef>,
}

/// Where live records wait between their source and the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BackboneKind {
    /// The embedded log, in the data folder (one worker per lake).
    #[default]
    Embedded,
    /// The shop's Kafka cluster (`[kafka]`), shared by any number of workers.
    Kafka,
}

/// The live path: the topic order records arrive in, and how the log keeps it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    /// `embedded` (default) or `kafka`.
    #[serde(default)]
    pub backbone: BackboneKind,
    #[serde(default = "default_topic")]
    pub topic: String,
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    #[serde(default)]
    pub log: shopstream_log::PartitionConfig,
    /// Most records per partition loaded into the lake in one commit.
    #[serde(default = "default_max_records")]
    pub load_max_records: usize,
    /// Files dropped here are loaded once, then moved to processed/ or failed/ (empty: `<data-dir>/landing`).
    #[serde(default)]
    pub landing_dir: String,
    #[serde(default = "default_landing_poll_ms")]
    pub landing_poll_ms: u64,
    /// Paginated JSON APIs polled into the topic (`[[live.pollers]]`).
    #[serde(default)]
    pub pollers: Vec<PollerConfig>,
    /// Flows: `POST /v1/flows/{name}/records` through steps into a topic (`[[live.flows]]`).
    #[serde(default)]
    pub flows: Vec<FlowConfig>,
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

impl LiveConfig {
    /// Checks the compaction's vacuum delay and the pollers' flows.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.compact_every_s > 0 && self.vacuum_after_s < 300 {
            return Err(InvalidConfig::VacuumTooSoon(self.vacuum_after_s));
        }
        for p in &self.pollers {
            if !p.flow.is_empty() && !self.flows.iter().any(|f| f.name == p.flow) {
                return Err(InvalidConfig::NoSuchFlow {
                    poller: p.name.clone(),
                    flow: p.flow.clone(),
                });
            }
        }
        Ok(())
    }
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            backbone: BackboneKind::default(),
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

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not TOML of the config's shape (the message names the key, line and column).
    #[error("config {file}: {error}")]
    Parse {
        /// The file.
        file: String,
        /// What the TOML parser said.
        error: toml::de::Error,
    },
    /// The file names an environment variable (`${NAME}`) that is not set.
    #[error("config {file}: ${{{name}}} is not set in the environment")]
    MissingEnv {
        /// The file.
        file: String,
        /// The variable.
        name: String,
    },
    /// The file parses, but a setting is refused.
    #[error("config {file}")]
    Invalid {
        /// The file.
        file: String,
        /// Which setting and why.
        source: InvalidConfig,
    },
}

/// A refused setting: what [`Config::validate`] found.
#[derive(Debug, thiserror::Error)]
pub enum InvalidConfig {
    /// `[ingest]`: a mapping or the time zone.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// `[live] vacuum_after_s` too short for queries running during a compaction.
    #[error(
        "[live] vacuum_after_s = {0}: at least 300, so queries that started before a compaction \
         can still read the files it replaced"
    )]
    VacuumTooSoon(u64),
    /// Two `[[datasets]]` entries have one name.
    #[error("[[datasets]] `{0}` is declared twice")]
    DatasetDeclaredTwice(String),
    /// `[live] backbone` and `[kafka]` do not go together, or `[kafka]` is refused.
    #[error("{0}")]
    Kafka(String),
    /// A view's output topic is one records are loaded from or sent to.
    #[error(
        "view `{view}`: topic `{topic}` is {role}; a view's final rows need a topic of their own \
         (they would be loaded as records of it, or refused as dead letters)"
    )]
    ViewTopicTaken {
        /// The view.
        view: String,
        /// Its topic.
        topic: String,
        /// What the topic already is.
        role: String,
    },
    /// A poller names a flow that is not configured.
    #[error("[[live.pollers]] `{poller}`: no flow `{flow}`")]
    NoSuchFlow {
        /// The poller.
        poller: String,
        /// The flow it names.
        flow: String,
    },
}

/// `text` with each `${NAME}` (letters, digits, `_`) replaced by `lookup(NAME)`, so secrets (Kafka and S3
/// credentials) come from the environment, as Kubernetes passes them; `Err` names a variable not set.
/// `$${` is a literal `${`; comment lines (starting with `#`) are left as they are.
pub fn interpolate(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            interpolate_line(line, &lookup, &mut out)?;
        }
    }
    Ok(out)
}

fn interpolate_line(
    line: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), String> {
    let mut rest = line;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            continue;
        }
        let name_end = after
            .strip_prefix("${")
            .and_then(|t| t.find('}').map(|end| (&t[..end], &t[end + 1..])))
            .filter(|(name, _)| {
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        match name_end {
            Some((name, tail)) => {
                out.push_str(&lookup(name).ok_or_else(|| name.to_string())?);
                rest = tail;
            }
            None => {
                out.push('$');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    Ok(())
}

impl Config {
    /// Loads `path`, or the embedded default when `None`; `${NAME}` in the file is the environment's `NAME`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (text, file) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?,
                p.display().to_string(),
            ),
            None => (
                DEFAULT_TOML.to_string(),
                "<embedded default.toml>".to_string(),
            ),
        };
        let text = interpolate(&text, |name| std::env::var(name).ok()).map_err(|name| {
            ConfigError::MissingEnv {
                file: file.clone(),
                name,
            }
        })?;
        let config: Config = match toml::from_str(&text) {
            Ok(c) => c,
            Err(error) => return Err(ConfigError::Parse { file, error }),
        };
        config
            .validate()
            .map_err(|source| ConfigError::Invalid { file, source })?;
        Ok(config)
    }

    /// Every check of the configuration, run by every command (so `tables` refuses what `serve` would).
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let mut declared: Vec<String> = Vec::new();
        for d in &self.datasets {
            let dataset = d.to_dataset()?;
            if declared.contains(&dataset.name) {
                return Err(InvalidConfig::DatasetDeclaredTwice(dataset.name));
            }
            declared.push(dataset.name);
        }
        for m in &self.ingest.mappings {
            // A mapping for a dataset created by loading a file is checked when a file is loaded.
            if let Some(dataset) = self.declared_dataset(m.dataset_name()) {
                m.validate(&dataset)?;
            }
        }
        self.ingest.validate()?;
        self.validate_kafka()?;
        for view in &self.views {
            self.check_view_topic(view)?;
        }
        self.live.validate()
    }

    /// The topics records are loaded from or sent to, each with what it is.
    fn taken_topics(&self) -> Vec<(String, String)> {
        let mut taken = vec![(
            self.live.topic.clone(),
            "the orders topic ([live] topic)".into(),
        )];
        for d in &self.datasets {
            taken.push((d.name.clone(), format!("dataset `{}`'s topic", d.name)));
        }
        for f in &self.live.flows {
            taken.push((f.topic.clone(), format!("flow `{}`'s topic", f.name)));
            let dead = format!("flow `{}`'s dead-letter topic", f.name);
            taken.push((f.dead_letter_topic(), dead));
        }
        for p in &self.live.pollers {
            taken.push((p.topic.clone(), format!("poller `{}`'s topic", p.name)));
        }
        for t in self.kafka.iter().flat_map(|k| &k.topics) {
            taken.push((
                t.name.clone(),
                "a topic loaded from Kafka ([[kafka.topics]])".into(),
            ));
        }
        taken
    }

    /// Refuses a view whose output topic is one records are loaded from or sent to.
    pub fn check_view_topic(&self, view: &ViewDef) -> Result<(), InvalidConfig> {
        let Some(topic) = &view.topic else {
            return Ok(());
        };
        match self.taken_topics().into_iter().find(|(t, _)| t == topic) {
            Some((_, role)) => Err(InvalidConfig::ViewTopicTaken {
                view: view.name.clone(),
                topic: topic.clone(),
                role,
            }),
            None => Ok(()),
        }
    }

    fn validate_kafka(&self) -> Result<(), InvalidConfig> {
        match (self.live.backbone, &self.kafka) {
            (BackboneKind::Kafka, None) => Err(InvalidConfig::Kafka(
                "[live] backbone = \"kafka\" needs a [kafka] section with `brokers`".into(),
            )),
            (BackboneKind::Embedded, Some(k)) if !k.topics.is_empty() => Err(InvalidConfig::Kafka(
                "[[kafka.topics]] are read from Kafka: set [live] backbone = \"kafka\"".into(),
            )),
            (_, Some(k)) => {
                k.validate().map_err(InvalidConfig::Kafka)?;
                for t in &k.topics {
                    if let Some(m) = &t.mapping
                        && !self.ingest.mappings.iter().any(|x| &x.name == m)
                    {
                        return Err(InvalidConfig::Kafka(format!(
                            "[[kafka.topics]] `{}`: no [[ingest.mappings]] named `{m}`",
                            t.name
                        )));
                    }
                }
                Ok(())
            }
            (BackboneKind::Embedded, None) => Ok(()),
        }
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

    /// Every dataset the config declares (not orders).
    pub fn declared_datasets(&self) -> Vec<Arc<Dataset>> {
        self.datasets
            .iter()
            .filter_map(|d| d.to_dataset().ok())
            .map(Arc::new)
            .collect()
    }

    /// The lake location for a data dir (when `[lake] url` is empty).
    pub fn lake_dir(&self, data_dir: &Path) -> PathBuf {
        data_dir.join("lake")
    }

    /// The log's folder.
    pub fn log_dir(&self, data_dir: &Path) -> PathBuf {
        data_dir.join("log")
    }

    /// The landing folder: `[live] landing_dir`, or `<data_dir>/landing`.
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

    /// The error and its sources, as the binary prints them.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        text
    }

    #[test]
    fn default_and_example_configs_load() {
        Config::load(None).unwrap();
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/examples/mappings.toml");
        let c = Config::load(Some(&example)).unwrap();
        assert_eq!(c.ingest.mappings[0].name, "webshop-export");
        assert_eq!(c.ingest.mappings[1].expressions.len(), 3);
        let customers = c.declared_dataset("customers").unwrap();
        assert_eq!(customers.key, ["customer_id"]);
    }

    #[test]
    fn a_file_with_one_section_takes_the_defaults_for_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("views.toml");
        std::fs::write(
            &p,
            "[[views]]\nname = \"n\"\nsql = \"SELECT count(*) AS n FROM orders\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&p)).unwrap();
        let d = Config::load(None).unwrap();
        assert_eq!(c.views[0].name, "n");
        assert_eq!(c.lake.url, d.lake.url);
        assert_eq!(c.lake.target_file_size_mb, d.lake.target_file_size_mb);
        assert_eq!(c.lake.zstd_level, d.lake.zstd_level);
        assert_eq!(c.live.topic, d.live.topic);
    }

    #[test]
    fn a_views_topic_is_none_records_are_loaded_from_or_sent_to() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("views.toml");
        let view = |topic: &str| {
            format!(
                "[[views]]\nname = \"v\"\nsql = \"SELECT count(*) AS n FROM orders\"\ntopic = \"{topic}\"\n"
            )
        };
        let flow = "[[live.flows]]\nname = \"shop\"\ntopic = \"orders\"\n";
        for (topic, role) in [
            ("orders", "the orders topic"),
            ("shop.dead", "flow `shop`'s dead-letter topic"),
        ] {
            std::fs::write(&p, format!("{}{flow}", view(topic))).unwrap();
            let err = chain(&Config::load(Some(&p)).unwrap_err());
            assert!(err.contains(&format!("topic `{topic}` is {role}")), "{err}");
        }
        std::fs::write(&p, format!("{}{flow}", view("v.final"))).unwrap();
        Config::load(Some(&p)).unwrap();
    }

    #[test]
    fn datasets_and_their_mappings_are_checked_by_every_command() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ds.toml");
        let dataset = "[[datasets]]\nname = \"customers\"\ncolumns = [\"id text\"]\n";
        let mapping = "[[ingest.mappings]]\nname = \"m\"\nfiles = [\"*.csv\"]\ndataset = \"customers\"\n\
                       [ingest.mappings.columns]\nemail = \"E-Mail\"\n";
        std::fs::write(&p, format!("[lake]\n{dataset}{mapping}")).unwrap();
        let err = chain(&Config::load(Some(&p)).unwrap_err());
        assert!(
            err.contains("unknown field `email`") && err.contains("`customers`"),
            "{err}"
        );
        std::fs::write(&p, format!("[lake]\n{dataset}{dataset}")).unwrap();
        let err = chain(&Config::load(Some(&p)).unwrap_err());
        assert!(err.contains("declared twice"), "{err}");
        std::fs::write(
            &p,
            "[lake]\n[[datasets]]\nname = \"orders\"\ncolumns = [\"id text\"]\n",
        )
        .unwrap();
        let err = chain(&Config::load(Some(&p)).unwrap_err());
        assert!(err.contains("built-in table"), "{err}");
        std::fs::write(
            &p,
            "[lake]\n[[datasets]]\nname = \"c\"\ncolumns = [\"id txet\"]\n",
        )
        .unwrap();
        let err = chain(&Config::load(Some(&p)).unwrap_err());
        assert!(err.contains("unknown type `txet`"), "{err}");
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
        let err = chain(&Config::load(Some(&p)).unwrap_err());
        assert!(
            err.contains("vacuum_after_s = 10") && err.contains("live.toml"),
            "{err}"
        );
        std::fs::write(
            &p,
            "[lake]\n[[live.pollers]]\nname = \"shop\"\nurl = \"http://127.0.0.1:1/o\"\nstyle = \"page\"\nflow = \"nope\"\n",
        )
        .unwrap();
        let err = chain(&Config::load(Some(&p)).unwrap_err());
        assert!(err.contains("no flow `nope`"), "{err}");
    }

    #[test]
    fn the_kafka_backbone_needs_its_section_and_its_topics_need_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.toml");
        std::fs::write(&p, "[lake]\n[live]\nbackbone = \"kafka\"\n").unwrap();
        let err = chain(&Config::load(Some(&p)).unwrap_err());
        assert!(err.contains("needs a [kafka] section"), "{err}");
        let topic = "[[kafka.topics]]\nname = \"shop.orders\"\nformat = \"csv\"\n";
        std::fs::write(
            &p,
            format!("[lake]\n[kafka]\nbrokers = \"b:9092\"\n{topic}"),
        )
        .unwrap();
        let err = chain(&Config::load(Some(&p)).unwrap_err());
        assert!(err.contains("set [live] backbone"), "{err}");
        std::fs::write(
            &p,
            format!("[lake]\n[live]\nbackbone = \"kafka\"\n[kafka]\nbrokers = \"b:9092\"\n{topic}"),
        )
        .unwrap();
        let err = chain(&Config::load(Some(&p)).unwrap_err());
        assert!(err.contains("needs `columns`"), "{err}");
        std::fs::write(
            &p,
            "[lake]\n[live]\nbackbone = \"kafka\"\n[kafka]\nbrokers = \"b:9092\"\n\
             [kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(c.kafka.unwrap().properties["security.protocol"], "SASL_SSL");
    }

    #[test]
    fn secrets_come_from_the_environment() {
        let env = |n: &str| (n == "KAFKA_PASSWORD").then(|| "s3cr$t".to_string());
        assert_eq!(
            interpolate("p = \"${KAFKA_PASSWORD}\" # $5, $${LITERAL}", env).unwrap(),
            "p = \"s3cr$t\" # $5, ${LITERAL}"
        );
        assert_eq!(interpolate("x = \"${NOPE}\"", env).unwrap_err(), "NOPE");
        assert_eq!(
            interpolate("  # key = \"${NOPE}\"\nk = 1\n", env).unwrap(),
            "  # key = \"${NOPE}\"\nk = 1\n",
            "comments are left alone"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("env.toml");
        std::fs::write(&p, "[lake]\nurl = \"${SHOPSTREAM_TEST_UNSET_VAR}\"\n").unwrap();
        let err = chain(&Config::load(Some(&p)).unwrap_err());
        assert!(
            err.contains("${SHOPSTREAM_TEST_UNSET_VAR} is not set"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_timezone_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tz.toml");
        std::fs::write(&p, "[lake]\n[ingest]\ntimezone = \"Mars/Olympus\"\n").unwrap();
        let err = chain(&Config::load(Some(&p)).unwrap_err());
        assert!(err.contains("Mars/Olympus"), "{err}");
        std::fs::write(&p, "[lake]\n[ingest]\ntimezone = \"Europe/London\"\n").unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(c.ingest.timezone().name(), "Europe/London");
    }

    #[test]
    fn unknown_key_is_named_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "[lake]\nurl = \"\"\nzstd_levl = 3\n").unwrap();
        let err = chain(&Config::load(Some(&p)).unwrap_err());
        assert!(
            err.contains("zstd_levl") && err.contains("bad.toml"),
            "{err}"
        );
    }
}
