//! Delimited text (CSV, TSV, `;` and `|` separated) and whitespace-aligned text.
//!
//! The delimiter is chosen from `, \t ; |` as the one that splits the first lines of the file into
//! the same number (more than one) of fields, quotes respected; a header is assumed when the first
//! record has no numeric field. Quoted fields may contain delimiters, quotes (`""`) and newlines; a
//! record's line is the line it starts on. Aligned text takes its column boundaries from the gaps
//! that are blank on every line of the first thousand, and rejects a later row whose text crosses one.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::batch::OrderBatcher;
use crate::error::IngestError;
use crate::mapping::MappingConfig;

use super::Fill;

const SNIFF_BYTES: usize = 64 * 1024;
const CANDIDATES: [u8; 4] = [b',', b'\t', b';', b'|'];
/// Records with at most this many fields are split without allocating.
const MAX_FAST_FIELDS: usize = 64;

/// A reader that counts the bytes passing through it (for progress bars).
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn open_counting(path: &Path) -> Result<(Counting<File>, Arc<AtomicU64>), IngestError> {
    let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    let count = Arc::new(AtomicU64::new(0));
    Ok((
        Counting {
            inner: file,
            count: count.clone(),
        },
        count,
    ))
}

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
        if first > 1 && counts.iter().all(|&c| c == first) && best.is_none_or(|(n, _)| first > n) {
            best = Some((first, d));
        }
    }
    best.map(|(_, d)| d)
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

/// Delimited text.
pub(super) struct DelimitedFill {
    path: PathBuf,
    reader: csv::Reader<Counting<File>>,
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
            None => sniff_delimiter(&sample).unwrap_or(b','),
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
        let (file, bytes) = open_counting(path)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .buffer_capacity(256 * 1024)
            .from_reader(file);
        let mut record = csv::ByteRecord::new();
        let columns: Vec<String> = if has_header {
            reader
                .read_byte_record(&mut record)
                .map_err(|e| IngestError::malformed(path, format!("line 1: {e}")))?;
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
    fn fill(&mut self, batcher: &mut OrderBatcher) -> Result<bool, IngestError> {
        loop {
            if batcher.is_full() {
                return Ok(true);
            }
            let more = self
                .reader
                .read_byte_record(&mut self.record)
                .map_err(|e| {
                    let at = e
                        .position()
                        .map(|p| format!("line {}: ", p.line()))
                        .unwrap_or_default();
                    IngestError::malformed(&self.path, format!("{at}{e}"))
                })?;
            if !more {
                return Ok(false);
            }
            let line = self.record.position().map_or(0, |p| p.line());
            let n = self.record.len();
            if n == 1 && self.record[0].trim_ascii().is_empty() {
                continue; // a blank line is not a record
            }
            if n != self.width {
                let fields: Vec<Cow<'_, str>> = self.record.iter().map(text_of).collect();
                let joined = fields.join(&(self.delimiter as char).to_string());
                let reason = format!("expected {} fields, found {n}", self.width);
                batcher.push_unreadable(line, &reason, &joined);
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

/// Whitespace-aligned text: columns are the character spans between gaps blank on every sampled line.
pub(super) struct AlignedFill {
    lines: std::io::Lines<BufReader<Counting<File>>>,
    spans: Vec<(usize, usize)>,
    line_no: u64,
    bytes: Arc<AtomicU64>,
}

/// Column spans `[start, end)` in chars: maximal runs of positions non-blank on at least one line.
fn aligned_spans(lines: &[Vec<char>]) -> Vec<(usize, usize)> {
    let width = lines.iter().map(Vec::len).max().unwrap_or(0);
    let mut used = vec![false; width];
    for l in lines {
        for (i, c) in l.iter().enumerate() {
            if !c.is_whitespace() {
                used[i] = true;
            }
        }
    }
    let mut spans = Vec::new();
    let mut start = None;
    for (i, u) in used.iter().enumerate() {
        match (start, *u) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, width));
    }
    // A gap that happens to be blank on every line inside a column (`T-LIGHT HOLDER` over a few rows)
    // is not a column boundary: every column has header text, so a span without any joins the one before.
    let header = lines.first().map(Vec::as_slice).unwrap_or_default();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        let has_header_text = header
            .get(s..e.min(header.len()))
            .is_some_and(|h| h.iter().any(|c| !c.is_whitespace()));
        match merged.last_mut() {
            Some(last) if !has_header_text => last.1 = e,
            _ => merged.push((s, e)),
        }
    }
    merged
}

impl AlignedFill {
    pub(super) fn open(path: &Path) -> Result<(Self, Vec<String>), IngestError> {
        let sample: Vec<Vec<char>> =
            BufReader::new(File::open(path).map_err(|e| IngestError::io(path, e))?)
                .lines()
                .take(1000)
                .map(|l| l.map(|l| l.chars().collect()))
                .collect::<Result<_, _>>()
                .map_err(|e| IngestError::io(path, e))?;
        let sample: Vec<Vec<char>> = sample
            .into_iter()
            .filter(|l| l.iter().any(|c| !c.is_whitespace()))
            .collect();
        let spans = aligned_spans(&sample);
        if sample.is_empty() || spans.len() < 2 {
            return Err(IngestError::malformed(
                path,
                "not delimited and no aligned columns found",
            ));
        }
        let (file, bytes) = open_counting(path)?;
        let mut lines = BufReader::with_capacity(256 * 1024, file).lines();
        let mut line_no = 0;
        let header = loop {
            line_no += 1;
            match lines.next() {
                Some(Ok(l)) if l.trim().is_empty() => continue,
                Some(Ok(l)) => break l,
                Some(Err(e)) => return Err(IngestError::io(path, e)),
                None => return Err(IngestError::malformed(path, "the file is empty")),
            }
        };
        let chars: Vec<char> = header.chars().collect();
        let columns = split_aligned(&chars, &spans)
            .map(|v| v.into_iter().map(|s| s.to_string()).collect())
            .map_err(|pos| {
                IngestError::malformed(
                    path,
                    format!("line {line_no}: header text crosses a column gap at position {pos}"),
                )
            })?;
        Ok((
            AlignedFill {
                lines,
                spans,
                line_no,
                bytes,
            },
            columns,
        ))
    }
}

/// Splits a line at the column spans; `Err(position)` when text runs across a gap between columns.
fn split_aligned(line: &[char], spans: &[(usize, usize)]) -> Result<Vec<String>, usize> {
    let mut out = Vec::with_capacity(spans.len());
    for (i, &(start, _)) in spans.iter().enumerate() {
        // Each column owns its span plus the gap after it; the last one owns the rest of the line.
        let stop = spans
            .get(i + 1)
            .map_or(line.len(), |next| next.0)
            .min(line.len());
        let begin = start.min(line.len());
        if i > 0
            && begin > 0
            && begin < line.len()
            && !line[begin - 1].is_whitespace()
            && !line[begin].is_whitespace()
        {
            return Err(begin);
        }
        out.push(
            line[begin..stop]
                .iter()
                .collect::<String>()
                .trim()
                .to_string(),
        );
    }
    Ok(out)
}

impl Fill for AlignedFill {
    fn fill(&mut self, batcher: &mut OrderBatcher) -> Result<bool, IngestError> {
        loop {
            if batcher.is_full() {
                return Ok(true);
            }
            let Some(line) = self.lines.next() else {
                return Ok(false);
            };
            self.line_no += 1;
            let line = line.map_err(|e| IngestError::Io {
                path: PathBuf::new(),
                source: e,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let chars: Vec<char> = line.chars().collect();
            match split_aligned(&chars, &self.spans) {
                Ok(fields) => {
                    let row: Vec<&str> = fields.iter().map(String::as_str).collect();
                    batcher.push_row(self.line_no, &row);
                }
                Err(pos) => batcher.push_unreadable(
                    self.line_no,
                    &format!(
                        "text crosses the gap between columns at character {}",
                        pos + 1
                    ),
                    &line,
                ),
            }
        }
    }

    fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
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

    #[test]
    fn aligned_columns_keep_inner_spaces() {
        let lines: Vec<Vec<char>> = [
            "Code   Description          Qty",
            "85123A WHITE HANGING HEART     6",
            "71053  WHITE METAL LANTERN  12",
        ]
        .iter()
        .map(|l| l.chars().collect())
        .collect();
        let spans = aligned_spans(&lines);
        assert_eq!(spans.len(), 3, "{spans:?}");
        assert_eq!(
            split_aligned(&lines[1], &spans).unwrap(),
            vec!["85123A", "WHITE HANGING HEART", "6"]
        );
        let crossing: Vec<char> = format!("85123A {} 6", "X".repeat(25)).chars().collect();
        assert!(split_aligned(&crossing, &spans).is_err());
    }
}
