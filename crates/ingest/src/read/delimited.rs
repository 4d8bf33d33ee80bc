//! Delimited text (CSV, TSV, `;` and `|` separated).
//!
//! The delimiter is chosen from `, \t ; |` as the one that splits the first lines of the file into
//! the same number (more than one) of fields, quotes respected; a header is assumed when the first
//! record has no numeric field. Quoted fields may contain delimiters, quotes (`""`) and newlines; a
//! record's line is the line it starts on. A record longer than [`MAX_RECORD_BYTES`] (an unclosed quote
//! swallowing the rest of the file) is not held: it and the rest of the file become one dead letter.

use std::borrow::Cow;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::batch::RowBatcher;
use crate::error::IngestError;
use crate::mapping::MappingConfig;

use super::Fill;
use super::text::{Counting, MAX_RECORD_BYTES};

const SNIFF_BYTES: usize = 64 * 1024;
const CANDIDATES: [u8; 4] = [b',', b'\t', b';', b'|'];
/// Records with at most this many fields are split without allocating.
const MAX_FAST_FIELDS: usize = 64;

fn read_prefix(path: &Path) -> Result<Vec<u8>, IngestError> {
    let mut buf = Vec::with_capacity(SNIFF_BYTES);
    File::open(path)
        .and_then(|f| f.take(SNIFF_BYTES as u64).read_to_end(&mut buf))
        .map_err(|e| IngestError::io(path, e))?;
    Ok(buf)
}

/// The delimiter that splits the first records of `sample` consistently into the most fields.
fn sniff_delimiter(sample: &[u8]) -> Option<u8> {
    let complete = match sample.iter().rposition(|&b| b == b'\n') {
        Some(end) if sample.len() == SNIFF_BYTES => &sample[..end],
        _ => sample,
    };
    let mut best: Option<(usize, u8)> = None;
    for d in CANDIDATES {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(d)
            .from_reader(complete);
        let counts: Vec<usize> = rdr
            .byte_records()
            .take(50)
            .filter_map(Result::ok)
            .map(|r| r.len())
            .collect();
        let Some(&first) = counts.first() else {
            continue;
        };
        // As many fields as the header on all sampled records but a stray one in ten (broken rows are
        // dead letters, not a reason to miss the delimiter).
        let even = counts.iter().filter(|&&c| c == first).count();
        if first > 1 && even * 10 >= counts.len() * 9 && best.is_none_or(|(n, _)| first > n) {
            best = Some((first, d));
        }
    }
    best.map(|(_, d)| d)
}

/// The delimiter a file's extension names (`.psv`: `|`, `.tsv`: tab), `,` otherwise.
fn extension_delimiter(path: &Path) -> u8 {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("psv") => b'|',
        Some("tsv" | "tab") => b'\t',
        _ => b',',
    }
}

/// Detects the delimiter of a text file, or `None` when it is not delimited.
pub(super) fn sniff_file(path: &Path) -> Result<Option<u8>, IngestError> {
    Ok(sniff_delimiter(&read_prefix(path)?))
}

fn looks_numeric(field: &[u8]) -> bool {
    let s = String::from_utf8_lossy(field);
    let t = s.trim();
    !t.is_empty() && t.parse::<f64>().is_ok()
}

fn text_of(field: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(field)
}

/// Fields of a record with the wrong field count kept in its dead letter.
const MAX_KEPT_FIELDS: usize = 4096;

/// CSV's read-ahead buffer.
const BUFFER_BYTES: usize = 256 * 1024;

/// The file under the CSV reader: fails a read once the record being assembled has taken more than
/// [`MAX_RECORD_BYTES`] (plus the read-ahead), since the CSV reader itself grows a record without limit.
struct Guarded {
    inner: Counting<File>,
    /// Bytes handed to the CSV reader so far.
    handed: u64,
    /// Where the record being read starts (bytes).
    record_start: u64,
}

impl Read for Guarded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.handed - self.record_start > (MAX_RECORD_BYTES + BUFFER_BYTES) as u64 {
            return Err(std::io::Error::other(RecordTooLong));
        }
        let n = self.inner.read(buf)?;
        self.handed += n as u64;
        Ok(n)
    }
}

/// The error a [`Guarded`] read fails with.
#[derive(Debug)]
struct RecordTooLong;

impl std::fmt::Display for RecordTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record longer than {MAX_RECORD_BYTES} bytes")
    }
}

impl std::error::Error for RecordTooLong {}

/// Delimited text.
pub(super) struct DelimitedFill {
    path: PathBuf,
    reader: csv::Reader<Guarded>,
    record: csv::ByteRecord,
    width: usize,
    delimiter: u8,
    bytes: Arc<AtomicU64>,
}

impl DelimitedFill {
    pub(super) fn open(
        path: &Path,
        mapping: Option<&MappingConfig>,
    ) -> Result<(Self, Vec<String>), IngestError> {
        let sample = read_prefix(path)?;
        if sample.is_empty() {
            return Err(IngestError::malformed(path, "the file is empty"));
        }
        let delimiter = match mapping.and_then(|m| m.delimiter) {
            Some(c) if c.is_ascii() => c as u8,
            Some(c) => {
                return Err(IngestError::malformed(
                    path,
                    format!("delimiter `{c}` is not an ASCII character"),
                ));
            }
            None => sniff_delimiter(&sample).unwrap_or_else(|| extension_delimiter(path)),
        };
        let mut first = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(&sample[..]);
        let first_record = first
            .byte_records()
            .next()
            .transpose()
            .map_err(|e| IngestError::malformed(path, format!("line 1: {e}")))?
            .unwrap_or_default();
        let has_header = mapping
            .and_then(|m| m.has_header)
            .unwrap_or_else(|| !first_record.iter().any(looks_numeric));
        let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
        let (counting, bytes) = Counting::new(file);
        let guarded = Guarded {
            inner: counting,
            handed: 0,
            record_start: 0,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .buffer_capacity(BUFFER_BYTES)
            .from_reader(guarded);
        let mut record = csv::ByteRecord::new();
        let columns: Vec<String> = if has_header {
            reader
                .read_byte_record(&mut record)
                .map_err(|e| IngestError::malformed(path, format!("line 1 (the header): {e}")))?;
            reader.get_mut().record_start = reader.position().byte();
            record
                .iter()
                .map(|f| text_of(f).trim().trim_start_matches('\u{feff}').to_string())
                .collect()
        } else {
            (1..=first_record.len())
                .map(|i| format!("column_{i}"))
                .collect()
        };
        let width = columns.len();
        Ok((
            DelimitedFill {
                path: path.to_path_buf(),
                reader,
                record,
                width,
                delimiter,
                bytes,
            },
            columns,
        ))
    }
}

impl Fill for DelimitedFill {
    fn fill(&mut self, batcher: &mut RowBatcher) -> Result<bool, IngestError> {
        loop {
            if batcher.is_full() {
                return Ok(true);
            }
            let more = match self.reader.read_byte_record(&mut self.record) {
                Ok(more) => more,
                Err(e) if is_too_long(&e) => {
                    self.reject_rest(batcher);
                    return Ok(false);
                }
                Err(e) => {
                    let at = e
                        .position()
                        .map(|p| format!("line {}: ", p.line()))
                        .unwrap_or_default();
                    return Err(IngestError::malformed(&self.path, format!("{at}{e}")));
                }
            };
            if !more {
                return Ok(false);
            }
            self.reader.get_mut().record_start = self.reader.position().byte();
            let line = self.record.position().map_or(0, |p| p.line());
            let n = self.record.len();
            if n == 1 && self.record[0].trim_ascii().is_empty() {
                continue; // a blank line is not a record
            }
            if n != self.width {
                // At most a few thousand fields are kept in the dead letter (a line of millions of
                // commas stays bounded).
                let fields: Vec<Cow<'_, str>> = self
                    .record
                    .iter()
                    .take(MAX_KEPT_FIELDS)
                    .map(text_of)
                    .collect();
                let row: Vec<&str> = fields.iter().map(|f| f.as_ref()).collect();
                let reason = format!(
                    "expected {} fields separated by `{}`, found {n}",
                    self.width,
                    (self.delimiter as char).escape_default()
                );
                batcher.push_misshapen(line, &reason, &row);
                continue;
            }
            // Fast path: the record is valid UTF-8 as a whole and every field boundary is a char
            // boundary, so the fields are borrowed without copying into a reused slice.
            if n <= MAX_FAST_FIELDS
                && let Ok(all) = std::str::from_utf8(self.record.as_slice())
            {
                let mut row: [&str; MAX_FAST_FIELDS] = [""; MAX_FAST_FIELDS];
                let mut ok = true;
                for (i, slot) in row.iter_mut().take(n).enumerate() {
                    match self.record.range(i).and_then(|r| all.get(r)) {
                        Some(f) => *slot = f,
                        None => {
                            ok = false;
                            break;
                        }
                    }
                }
                if ok {
                    batcher.push_row(line, &row[..n]);
                    continue;
                }
            }
            // Invalid UTF-8 is replaced (U+FFFD), never a reason to lose the row.
            let fields: Vec<Cow<'_, str>> = self.record.iter().map(text_of).collect();
            let row: Vec<&str> = fields.iter().map(|f| f.as_ref()).collect();
            batcher.push_row(line, &row);
        }
    }

    fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

fn is_too_long(e: &csv::Error) -> bool {
    matches!(e.kind(), csv::ErrorKind::Io(io) if io.get_ref().is_some_and(|r| r.is::<RecordTooLong>()))
}

impl DelimitedFill {
    /// A record too long to hold: an unclosed quote has made the rest of the file one field, which
    /// becomes one dead letter (the rest is not read: where that record would end cannot be known).
    fn reject_rest(&mut self, batcher: &mut RowBatcher) {
        let guard = self.reader.get_ref();
        let start = guard.record_start;
        let total = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let line = self.reader.position().line();
        let reason = format!(
            "a record from byte {start} runs on for more than {} MiB (an unclosed quote?): \
             the rest of the file, {} bytes, is not read",
            MAX_RECORD_BYTES / (1024 * 1024),
            total.saturating_sub(start)
        );
        batcher.push_unreadable(line, &reason, "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_delimiters_with_quoted_commas() {
        assert_eq!(sniff_delimiter(b"a,b,c\n1,\"x,y\",3\n"), Some(b','));
        assert_eq!(sniff_delimiter(b"a;b;c\n1;2,5;3\n"), Some(b';'));
        assert_eq!(sniff_delimiter(b"a\tb\n1\t2\n"), Some(b'\t'));
        assert_eq!(
            sniff_delimiter(b"InvoiceNo   StockCode\n536365      85123A\n"),
            None
        );
    }
}
