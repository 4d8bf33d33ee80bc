//! The `[ingest]` section of the config: how files and live records are read (schema mappings, the shop's
//! time zone). Parsed with the rest of `shopstream.toml` by the server crate's `Config`; checked by
//! [`IngestConfig::validate`], which every command runs.

use serde::Deserialize;

use crate::error::IngestError;
use crate::mapping::MappingConfig;
use crate::read::ReadOptions;

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
    /// Checks the time zone (mappings need their dataset: the whole config checks them).
    pub fn validate(&self) -> Result<(), IngestError> {
        if self.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(IngestError::BadTimezone {
                timezone: self.timezone.clone(),
            });
        }
        Ok(())
    }

    /// The configured time zone (checked by [`IngestConfig::validate`]).
    pub fn timezone(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::Tz::UTC)
    }

    /// Read options for files of a load into `dataset`.
    pub fn read_options(
        &self,
        sheet: Option<String>,
        dataset: std::sync::Arc<crate::Dataset>,
    ) -> ReadOptions {
        ReadOptions {
            dataset,
            sheet,
            mappings: self.mappings.clone(),
            timezone: self.timezone(),
            expressions: None,
        }
    }
}
