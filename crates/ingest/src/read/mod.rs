//! File readers: detect a file's format, read its rows as text, and feed them to an [`RowBatcher`].
//!
//! Every reader streams: it holds one batch of rows (at most [`crate::batch::BATCH_ROWS`] rows or
//! [`crate::batch::BATCH_BYTES`] of text) and one record of at most [`MAX_RECORD_BYTES`], however large
//! or hostile the file; for Excel, the parts calamine reads whole are bounded by `workbook_guard` before
//! the workbook is opened. A [`FileReader`] is an iterator of [`Chunk`]s; it ends with the file, or with
//! an [`IngestError`] that names the file and where in it reading failed. Records that can be read but
//! not typed are not errors: they are dead letters.

mod aligned;
mod delimited;
mod excel;
mod json;
mod parquet_file;
mod text;
mod workbook_guard;

pub use text::MAX_RECORD_BYTES;

use std::path::{Path, PathBuf};

use crate::batch::{Chunk, Counts, Provenance, RowBatcher};
use crate::dataset::infer::{self, Inferred, infer_columns};
use crate::dataset::{ColumnType, Dataset, MAX_COLUMNS};
use crate::derive::{Stage, source_dataset, stage_schema};
use crate::error::IngestError;
use crate::mapping::{FieldSource, FieldType, MappingConfig, ResolvedMapping};

/// The file formats shopstream reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV, TSV and other delimited text (delimiter, header and quoting detected).
    Delimited,
    /// Whitespace-aligned columns of text.
    Aligned,
    /// Excel `.xlsx` / `.xlsm` / `.xls` workbooks.
    Excel,
    /// JSON: JSON Lines, an array of objects, or an object holding an array of them.
    JsonLines,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// Name used in summaries and the loads table.
    pub fn name(self) -> &'static str {
        match self {
            Format::Delimited => "delimited",
            Format::Aligned => "aligned",
            Format::Excel => "excel",
            Format::JsonLines => "json",
            Format::Parquet => "parquet",
        }
    }

    /// Detects the format from the extension, sniffing the content of plain text files.
    pub fn detect(path: &Path) -> Result<Format, IngestError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        Ok(match ext.as_str() {
            "csv" | "tsv" | "psv" | "tab" => Format::Delimited,
            "xlsx" | "xlsm" | "xls" | "xlsb" | "ods" => Format::Excel,
            "jsonl" | "ndjson" | "json" => Format::JsonLines,
            "parquet" | "pq" => Format::Parquet,
            "txt" | "dat" | "prn" | "text" => {
                if delimited::sniff_file(path)?.is_some() {
                    Format::Delimited
                } else {
                    Format::Aligned
                }
            }
            _ => {
                return Err(IngestError::UnsupportedFormat {
                    path: path.to_path_buf(),
                });
            }
        })
    }

    /// Whether a file name looks like something `ingest` can read (used when walking folders).
    pub fn is_supported(path: &Path) -> bool {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        matches!(
            ext.as_str(),
            "csv"
                | "tsv"
                | "psv"
                | "tab"
                | "xlsx"
                | "xlsm"
                | "xls"
                | "xlsb"
                | "ods"
                | "jsonl"
                | "ndjson"
                | "json"
                | "parquet"
                | "pq"
                | "txt"
                | "dat"
                | "prn"
                | "text"
        )
    }
}

/// Options that apply to every file of a load.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Only this Excel sheet (all sheets when `None`).
    pub sheet: Option<String>,
    /// Configured mappings; the first whose `files` pattern matches a file is used for it.
    pub mappings: Vec<MappingConfig>,
    /// The shop's time zone (`[ingest] timezone`): naive times are wall-clock times in it, times with an
    /// offset (`Z`, `+02:00`, zone-aware Parquet timestamps) are converted into it.
    pub timezone: chrono_tz::Tz,
    /// The dataset the files load into (`orders` unless `ingest --dataset` says otherwise).
    pub dataset: std::sync::Arc<crate::dataset::Dataset>,
    /// Evaluates mappings' expressions (the engine's SQL); a file whose mapping has expressions is
    /// refused without it.
    pub expressions: Option<std::sync::Arc<dyn crate::derive::Expressions>>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            sheet: None,
            mappings: Vec::new(),
            timezone: chrono_tz::Tz::UTC,
            dataset: crate::dataset::Dataset::orders(),
            expressions: None,
        }
    }
}

impl ReadOptions {
    /// The mapping that applies to `path` for the dataset loaded (the first whose `files` match).
    pub fn mapping_for(&self, path: &Path) -> Option<&MappingConfig> {
        self.mappings
            .iter()
            .find(|m| m.dataset_name() == self.dataset.name && m.applies_to(path))
    }
}

/// A format-specific row source.
trait Fill: Send {
    /// Pushes rows into `batcher` until it is full or the source ends; returns false at the end.
    fn fill(&mut self, batcher: &mut RowBatcher) -> Result<bool, IngestError>;
    /// Bytes of the file consumed so far (approximate, for progress).
    fn bytes_read(&self) -> u64;
    /// The sheet being read, for workbooks.
    fn sheet(&self) -> Option<&str> {
        None
    }
}

/// Reads one file as a stream of [`Chunk`]s.
pub struct FileReader {
    path: PathBuf,
    format: Format,
    fill: Box<dyn Fill>,
    batcher: RowBatcher,
    done: bool,
    mapping_name: String,
}

impl FileReader {
    /// Opens `path`, detects its format, reads its header and resolves its mapping.
    pub fn open(
        path: &Path,
        options: &ReadOptions,
        provenance: Provenance,
    ) -> Result<FileReader, IngestError> {
        let format = Format::detect(path)?;
        let mapping = options.mapping_for(path);
        let derives = mapping.is_some_and(|m| !m.expressions.is_empty());
        let hints = if options.dataset.is_orders() && !derives {
            None
        } else {
            let sample = sample(path, options, SAMPLE_ROWS)?;
            Some(infer_columns(&sample.columns, &sample.rows))
        };
        let (fill, columns) = open_fill(path, format, options, mapping)?;
        let mut resolved = ResolvedMapping::resolve(path, &columns, mapping, &options.dataset)?;
        if let Some(hints) = hints.as_ref().filter(|_| !options.dataset.is_orders()) {
            // Hints by the field a mapped source column goes to (`customer_id` for `Kundennummer`).
            let mut by_field = hints.clone();
            for c in by_field.iter_mut() {
                if let Some(field) = mapping.and_then(|m| m.field_of(&c.source)) {
                    c.name = field.to_string();
                }
            }
            apply_hints(&mut resolved, &by_field);
        }
        let stage = match &hints {
            Some(hints) if !resolved.expressions.is_empty() => {
                Some(stage_for(path, &resolved, hints, options)?)
            }
            _ => None,
        };
        let mapping_name = resolved.name.clone();
        let mut provenance = provenance;
        provenance.sheet = fill.sheet().map(Into::into);
        let mut batcher = RowBatcher::new(resolved, provenance);
        batcher.set_timezone(options.timezone);
        if let Some(stage) = stage {
            batcher.set_stage(stage);
        }
        Ok(FileReader {
            path: path.to_path_buf(),
            format,
            fill,
            batcher,
            done: false,
            mapping_name,
        })
    }

    /// The detected format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The mapping applied (`online-retail` when none was configured).
    pub fn mapping_name(&self) -> &str {
        &self.mapping_name
    }

    /// Counts of rows read, loaded and rejected so far.
    pub fn counts(&self) -> Counts {
        self.batcher.counts()
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.fill.bytes_read()
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Iterator for FileReader {
    type Item = Result<Chunk, IngestError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.fill.fill(&mut self.batcher) {
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
            Ok(more) => {
                self.done = !more;
                if self.batcher.buffered() == 0 {
                    return None;
                }
                Some(Ok(self.batcher.take()))
            }
        }
    }
}

/// Rows sampled from a file for inference (per file, for datasets other than orders).
pub const SAMPLE_ROWS: usize = 1000;

/// Opens the reader of `format` for `path`: its row source and column names.
fn open_fill(
    path: &Path,
    format: Format,
    options: &ReadOptions,
    mapping: Option<&MappingConfig>,
) -> Result<(Box<dyn Fill>, Vec<String>), IngestError> {
    Ok(match format {
        Format::Delimited => {
            let (f, c) = delimited::DelimitedFill::open(path, mapping)?;
            (Box::new(f), c)
        }
        Format::Aligned => {
            let (f, c) = aligned::AlignedFill::open(path)?;
            (Box::new(f), c)
        }
        Format::Excel => {
            let (f, c) = excel::ExcelFill::open(path, options.sheet.as_deref(), mapping.cloned())?;
            (Box::new(f), c)
        }
        Format::JsonLines => {
            let (f, c) = json::JsonFill::open(path, mapping)?;
            (Box::new(f), c)
        }
        Format::Parquet => {
            let (f, c) = parquet_file::ParquetFill::open(path)?;
            (Box::new(f), c)
        }
    })
}

/// A file's column names and first rows as text (see [`sample`]).
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Column names; for JSON, every key of the sampled records in first-seen order.
    pub columns: Vec<String>,
    /// Rows, values in `columns` order.
    pub rows: Vec<Vec<String>>,
}

/// Reads the column names and up to `rows` rows of a file, for inference.
pub fn sample(path: &Path, options: &ReadOptions, rows: usize) -> Result<Sample, IngestError> {
    let format = Format::detect(path)?;
    let mapping = options.mapping_for(path);
    let empty = std::sync::Arc::new(Dataset {
        name: options.dataset.name.clone(),
        columns: Vec::new(),
        key: Vec::new(),
        partition: None,
        evolved: 0,
    });
    let (mut fill, columns) = open_fill(path, format, options, mapping)?;
    let too_wide = |n: usize| {
        IngestError::malformed(
            path,
            format!(
                "{n} columns: a dataset has at most {MAX_COLUMNS} (PostgreSQL's limit for a table)"
            ),
        )
    };
    if columns.len() > MAX_COLUMNS {
        return Err(too_wide(columns.len()));
    }
    let resolved = ResolvedMapping::resolve(path, &columns, mapping, &empty)?;
    let provenance = Provenance {
        source_file: path.display().to_string().into(),
        sheet: None,
        load_id: "".into(),
        load_time_us: 0,
    };
    let mut batcher = RowBatcher::new(resolved, provenance);
    batcher.start_sample(rows);
    while fill.fill(&mut batcher)? && !batcher.is_full() {}
    let mut sample = batcher.take_sample();
    if sample.columns.is_empty() {
        sample.columns = columns;
    }
    if sample.columns.len() > MAX_COLUMNS {
        return Err(too_wide(sample.columns.len()));
    }
    Ok(sample)
}

/// Compiles a mapping's expressions against the file's columns, typed as inferred (see [`crate::derive`]).
fn stage_for(
    path: &Path,
    resolved: &ResolvedMapping,
    inferred: &[Inferred],
    options: &ReadOptions,
) -> Result<Stage, IngestError> {
    let bad = |reason: String| IngestError::BadMapping {
        mapping: resolved.name.clone(),
        reason: format!("{}: {reason}", path.display()),
    };
    let engine = options.expressions.as_ref().ok_or_else(|| {
        bad("expressions are evaluated by the engine, which this reader was not given".into())
    })?;
    let source = source_dataset(inferred);
    let names: Vec<String> = inferred.iter().map(|c| c.source.clone()).collect();
    let mut typing = ResolvedMapping::resolve(path, &names, None, &source)?;
    apply_hints(&mut typing, inferred);
    typing.timezone = options.timezone;
    let evaluate = engine
        .prepare(&resolved.expressions, stage_schema(&source))
        .map_err(|e| bad(e.to_string()))?;
    Ok(Stage::new(evaluate, typing, names))
}

/// Applies what inference found in a file to the mapping of a dataset's columns: decimal commas and date
/// formats, where the mapping does not say otherwise.
fn apply_hints(resolved: &mut ResolvedMapping, hints: &[Inferred]) {
    let dataset = resolved.dataset.clone();
    for (i, column) in dataset.columns.iter().enumerate() {
        let Some(h) = hints.iter().find(|h| h.name == column.name) else {
            continue;
        };
        // A column named by inference (`column_3` for `Имя`, `sku_2` for a second `sku`) is found by the
        // source name inference recorded, not by its own name.
        if resolved.sources[i] == FieldSource::Absent
            && let Some(idx) = resolved.columns.iter().position(|c| *c == h.source)
        {
            resolved.set_source(i, idx);
        }
        if resolved.types[i] == FieldType::Auto {
            resolved.types[i] = h.field_type;
        }
        if matches!(column.ty, ColumnType::Date | ColumnType::Timestamp) {
            resolved.column_dates[i] = infer::date_format(h, column.format.as_deref());
        }
    }
}

/// Content fingerprint of a file (BLAKE3, hex): equal fingerprints mean the same bytes.
pub fn fingerprint(path: &Path) -> Result<String, IngestError> {
    let mut hasher = blake3::Hasher::new();
    let file = std::fs::File::open(path).map_err(|e| IngestError::io(path, e))?;
    hasher
        .update_reader(file)
        .map_err(|e| IngestError::io(path, e))?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Expands files and folders (recursively, sorted, supported extensions only) into a list of files.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, IngestError> {
    expand_paths_skipping(paths).map(|(files, _)| files)
}

/// Like [`expand_paths`], also returning the files found in folders that were left out because their
/// type is not one shopstream reads (so a user can be told, not left to wonder).
pub fn expand_paths_skipping(
    paths: &[PathBuf],
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), IngestError> {
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| IngestError::io(p, e))?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| IngestError::io(p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            let (dirs, files): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| e.is_dir());
            let (supported, other): (Vec<_>, Vec<_>) =
                files.into_iter().partition(|f| Format::is_supported(f));
            out.extend(supported);
            skipped.extend(other);
            let (more, more_skipped) = expand_paths_skipping(&dirs)?;
            out.extend(more);
            skipped.extend(more_skipped);
        } else {
            out.push(p.clone());
        }
    }
    Ok((out, skipped))
}
