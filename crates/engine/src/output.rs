//! Writing query results: an aligned table for people, CSV and JSON for programs, Parquet for files.

use std::io::Write;

use arrow::array::RecordBatch;

use crate::error::{EngineError, Result};
use crate::sql::QueryResult;

/// Output formats of `sql` and `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
    /// Parquet (zstd) to a file.
    Parquet,
}

fn out_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Output(e.to_string())
}

fn column_names(result: &QueryResult) -> Vec<&str> {
    result
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect()
}

/// Writes `result` to `w` as `format` (not Parquet: see [`write_parquet`]).
pub fn write(result: &QueryResult, format: OutputFormat, w: &mut dyn Write) -> Result<()> {
    match format {
        OutputFormat::Table => {
            let text =
                arrow::util::pretty::pretty_format_batches(&result.batches).map_err(out_err)?;
            if result.batches.is_empty() {
                let names = column_names(result);
                writeln!(w, "{}", names.join(" | ")).map_err(out_err)?;
            } else {
                writeln!(w, "{text}").map_err(out_err)?;
            }
            writeln!(w, "({} rows)", result.num_rows()).map_err(out_err)?;
        }
        OutputFormat::Csv => {
            if result.batches.is_empty() {
                let names = column_names(result);
                writeln!(w, "{}", names.join(",")).map_err(out_err)?;
                return Ok(());
            }
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *w);
            for b in &result.batches {
                writer.write(b).map_err(out_err)?;
            }
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::ArrayWriter::new(&mut *w);
            let refs: Vec<&RecordBatch> = result.batches.iter().collect();
            writer.write_batches(&refs).map_err(out_err)?;
            writer.finish().map_err(out_err)?;
            writeln!(w).map_err(out_err)?;
        }
        OutputFormat::Parquet => {
            return Err(EngineError::Output(
                "parquet output needs --out FILE".into(),
            ));
        }
    }
    Ok(())
}

/// Writes `result` as an Arrow IPC stream (for clients that read Arrow: pyarrow, Polars, DuckDB).
pub fn write_arrow_ipc(result: &QueryResult, w: &mut dyn Write) -> Result<()> {
    let mut writer =
        arrow::ipc::writer::StreamWriter::try_new(&mut *w, &result.schema).map_err(out_err)?;
    for b in &result.batches {
        writer.write(b).map_err(out_err)?;
    }
    writer.finish().map_err(out_err)
}

/// Writes `result` as a zstd Parquet file.
pub fn write_parquet(result: &QueryResult, path: &std::path::Path) -> Result<()> {
    let file = std::fs::File::create(path)
        .map_err(|e| EngineError::Output(format!("{}: {e}", path.display())))?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, result.schema.clone(), Some(props))
        .map_err(out_err)?;
    for b in &result.batches {
        writer.write(b).map_err(out_err)?;
    }
    writer.close().map_err(out_err)?;
    Ok(())
}
