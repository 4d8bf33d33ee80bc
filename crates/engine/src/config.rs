//! The `[lake]` section of the config: where the lake is and how its Parquet files are written. Parsed with
//! the rest of `shopstream.toml` by the server crate's `Config`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::Result;
use crate::lake::Lake;
use crate::sink::WriteOptions;

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
    /// Object-store settings for an `s3://` lake (delta-rs keys: `aws_endpoint`, `aws_region`,
    /// `aws_allow_http`, …); the `AWS_*` environment variables are read too.
    #[serde(default)]
    pub storage: BTreeMap<String, String>,
}

impl Default for LakeConfig {
    /// What an empty `[lake]` (or none) means: `<data-dir>/lake`, 128 MiB files, zstd level 3.
    fn default() -> LakeConfig {
        LakeConfig {
            url: String::new(),
            target_file_size_mb: default_file_size_mb(),
            zstd_level: default_zstd_level(),
            storage: BTreeMap::new(),
        }
    }
}

fn default_file_size_mb() -> u64 {
    128
}
fn default_zstd_level() -> i32 {
    3
}

impl LakeConfig {
    /// The lake at `url`, or in the local folder `local_dir` when no URL is configured.
    pub fn open(&self, local_dir: &Path) -> Result<Lake> {
        if self.url.is_empty() {
            Lake::local(local_dir)
        } else {
            Lake::at_url_with(&self.url, &self.storage)
        }
    }

    /// How loads, the live load and compaction write Parquet files.
    pub fn write_options(&self) -> WriteOptions {
        WriteOptions {
            target_file_size: self.target_file_size_mb * 1024 * 1024,
            zstd_level: self.zstd_level,
            ..Default::default()
        }
    }
}
