//! Excel workbooks (`.xlsx`, `.xlsm`, `.xls`, `.xlsb`, `.ods`) through calamine.
//!
//! Each sheet (or only `--sheet NAME`) is read in turn; its first non-empty row is its header and
//! each later row is a record located by sheet name and the row number Excel shows. Date cells
//! become timestamps text (`YYYY-MM-DD HH:MM:SS`); whole-number cells lose the `.0` Excel stores.
//! calamine loads one sheet at a time; `workbook_guard` checks the workbook first, refusing files
//! whose parts would make calamine allocate without bound.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use calamine::{Data, Range, Reader, Sheets, open_workbook_auto};

use crate::batch::OrderBatcher;
use crate::error::IngestError;
use crate::mapping::{MappingConfig, ResolvedMapping};

use super::Fill;
use super::workbook_guard::{self, Checked, WorkbookKind};

/// Reads the sheets of a workbook one after the other.
pub(super) struct ExcelFill {
    path: PathBuf,
    workbook: Sheets<BufReader<File>>,
    mapping: Option<MappingConfig>,
    /// Sheets still to read after the current one.
    pending: Vec<String>,
    /// The sheets the guard checked.
    checked: Checked,
    sheet: String,
    range: Range<Data>,
    /// Index (in the range) of the next data row.
    next_row: usize,
    /// Excel row number of the range's first row (1-based).
    first_row_number: u64,
    bytes_total: u64,
    rows_done: u64,
    rows_total: u64,
}

fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(d) => match d.as_datetime() {
            Some(dt) => dt.format("%Y-%m-%d %H:%M:%S").to_string(),
            None => d.as_f64().to_string(),
        },
        Data::Error(e) => format!("#{e:?}"),
    }
}

/// Index of the first row with any non-empty cell.
fn header_index(range: &Range<Data>) -> Option<usize> {
    range
        .rows()
        .position(|r| r.iter().any(|c| !matches!(c, Data::Empty)))
}

impl ExcelFill {
    pub(super) fn open(
        path: &Path,
        only_sheet: Option<&str>,
        mapping: Option<MappingConfig>,
    ) -> Result<(Self, Vec<String>), IngestError> {
        let bytes_total = std::fs::metadata(path)
            .map_err(|e| IngestError::io(path, e))?
            .len();
        let kind = WorkbookKind::of(path).ok_or_else(|| IngestError::UnsupportedFormat {
            path: path.to_path_buf(),
        })?;
        let checked = workbook_guard::check_workbook(path, kind, only_sheet)?;
        let workbook = open_workbook_auto(path)
            .map_err(|e| IngestError::malformed(path, format!("not a readable workbook: {e}")))?;
        let names = workbook.sheet_names();
        let mut pending: Vec<String> = match only_sheet {
            Some(s) if names.iter().any(|n| n == s) => vec![s.to_string()],
            Some(s) => {
                return Err(IngestError::malformed(
                    path,
                    format!("no sheet named `{s}` (sheets: {})", names.join(", ")),
                ));
            }
            None => names,
        };
        pending.reverse();
        let mut fill = ExcelFill {
            path: path.to_path_buf(),
            workbook,
            mapping,
            pending,
            checked,
            sheet: String::new(),
            range: Range::empty(),
            next_row: 0,
            first_row_number: 1,
            bytes_total,
            rows_done: 0,
            rows_total: 1,
        };
        let columns = fill
            .next_sheet()?
            .ok_or_else(|| IngestError::malformed(path, "the workbook has no sheet with data"))?;
        Ok((fill, columns))
    }

    /// Loads the next sheet with data; returns its header.
    fn next_sheet(&mut self) -> Result<Option<Vec<String>>, IngestError> {
        while let Some(name) = self.pending.pop() {
            if !self.checked.allows(&name) {
                let reason = format!("sheet `{name}`: its part could not be checked; refused");
                return Err(IngestError::malformed(&self.path, reason));
            }
            let range = self
                .workbook
                .worksheet_range(&name)
                .map_err(|e| IngestError::malformed(&self.path, format!("sheet `{name}`: {e}")))?;
            let Some(header) = header_index(&range) else {
                continue;
            };
            let columns: Vec<String> = range
                .rows()
                .nth(header)
                .map(|r| r.iter().map(|c| cell_text(c).trim().to_string()).collect())
                .unwrap_or_default();
            self.first_row_number = u64::from(range.start().map_or(0, |(row, _)| row)) + 1;
            self.rows_total += range.height() as u64;
            self.next_row = header + 1;
            self.range = range;
            self.sheet = name;
            return Ok(Some(columns));
        }
        Ok(None)
    }
}

impl Fill for ExcelFill {
    fn fill(&mut self, batcher: &mut OrderBatcher) -> Result<bool, IngestError> {
        loop {
            if batcher.is_full() {
                return Ok(true);
            }
            if self.next_row >= self.range.height() {
                let Some(columns) = self.next_sheet()? else {
                    return Ok(false);
                };
                let resolved = ResolvedMapping::resolve(
                    &self.path,
                    &columns,
                    self.mapping.as_ref(),
                )
                .map_err(|e| {
                    IngestError::malformed(&self.path, format!("sheet `{}`: {e}", self.sheet))
                })?;
                batcher.set_sheet(Some(&self.sheet), resolved);
                continue;
            }
            // Index cells directly: `Rows::nth` walks from the start, which is quadratic over a sheet.
            let r = self.next_row;
            let line = self.first_row_number + r as u64;
            self.next_row += 1;
            self.rows_done += 1;
            let width = self.range.width();
            let row: Vec<&Data> = (0..width)
                .map(|c| self.range.get((r, c)).unwrap_or(&Data::Empty))
                .collect();
            if row.iter().all(|c| matches!(c, Data::Empty)) {
                continue;
            }
            let texts: Vec<String> = row.iter().map(|c| cell_text(c)).collect();
            let fields: Vec<&str> = texts.iter().map(String::as_str).collect();
            batcher.push_row(line, &fields);
        }
    }

    fn sheet(&self) -> Option<&str> {
        Some(&self.sheet)
    }

    fn bytes_read(&self) -> u64 {
        self.bytes_total * self.rows_done / self.rows_total.max(1)
    }
}
