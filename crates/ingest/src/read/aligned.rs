//! Text whose columns are separated by whitespace: aligned in fixed-width columns, or separated by runs of
//! spaces whatever their width.
//!
//! The layout is chosen from a sample of the first lines (at most [`SAMPLE_LINES`] lines and
//! [`SAMPLE_BYTES`]): *aligned* columns are the character spans between gaps blank on every sampled line
//! (a value may contain spaces, `WHITE HANGING HEART`, and a cell may be empty); *separated* columns are
//! the runs of non-blank text, when the sampled lines have as many of them as the header (a header that
//! is not aligned with its rows, as many public datasets have). A layout fits when it splits every sampled
//! line but a stray one in ten. Separated wins when both fit and aligned would join columns. A later line that does not fit (text across a column gap, another number of
//! fields, invalid UTF-8, longer than [`MAX_RECORD_BYTES`]) is a dead letter; lines are read with a limit,
//! so one enormous line costs a scan, not memory.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Fill;
use super::text::{BoundedLines, Counting, Line, MAX_RECORD_BYTES, too_long_reason};
use crate::batch::RowBatcher;
use crate::error::IngestError;

/// Lines sampled to choose the layout.
const SAMPLE_LINES: usize = 1000;
/// Bytes sampled at most (the sample is held as text, and scanned per character position).
const SAMPLE_BYTES: usize = 4 * 1024 * 1024;
/// A sampled line longer than this is left out of the sample (it is a dead letter when read).
const SAMPLE_LINE_BYTES: usize = 64 * 1024;

/// How a line splits into fields.
#[derive(Debug, Clone, PartialEq)]
enum Layout {
    /// Character spans `[start, end)` of fixed-width columns.
    Aligned(Vec<(usize, usize)>),
    /// This many fields separated by runs of whitespace.
    Separated(usize),
}

type Input = BufReader<Counting<File>>;

/// Whitespace-aligned or whitespace-separated text.
pub(super) struct AlignedFill {
    lines: BoundedLines<Input>,
    layout: Layout,
    bytes: Arc<AtomicU64>,
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// The first lines of the file that are text, blank ones left out; `Err` names a header that is not text.
fn sample(path: &Path) -> Result<Vec<String>, IngestError> {
    let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    let mut lines = BoundedLines::new(BufReader::new(file), SAMPLE_LINE_BYTES);
    let (mut out, mut bytes) = (Vec::new(), 0usize);
    while out.len() < SAMPLE_LINES && bytes < SAMPLE_BYTES {
        let Some(line) = lines.next_line().map_err(|e| IngestError::io(path, e))? else {
            break;
        };
        let text = match line {
            Line::Text(t) if is_blank(&t) => continue,
            Line::Text(t) => String::from_utf8(t).ok(),
            Line::TooLong { .. } => None,
        };
        match text {
            Some(t) => {
                bytes += t.len();
                out.push(t);
            }
            None if out.is_empty() => {
                return Err(IngestError::malformed(
                    path,
                    format!(
                        "line {}: the header is not text (longer than {} KiB or not UTF-8)",
                        lines.line_no,
                        SAMPLE_LINE_BYTES / 1024
                    ),
                ));
            }
            None => {}
        }
    }
    Ok(out)
}

/// Column spans `[start, end)` in chars: maximal runs of positions non-blank on at least one line.
fn aligned_spans(lines: &[String]) -> Vec<(usize, usize)> {
    let mut used: Vec<bool> = Vec::new();
    for l in lines {
        for (i, c) in l.chars().enumerate() {
            if i >= used.len() {
                used.resize(i + 1, false);
            }
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
        spans.push((s, used.len()));
    }
    // A gap that happens to be blank on every line inside a column (`T-LIGHT HOLDER` over a few rows)
    // is not a column boundary: every column has header text, so a span without any joins the one before.
    let header: Vec<char> = lines
        .first()
        .map(|h| h.chars().collect())
        .unwrap_or_default();
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

/// Splits a line at the column spans; `Err(position)` when text runs across a gap between columns.
fn split_aligned(line: &str, spans: &[(usize, usize)]) -> Result<Vec<String>, usize> {
    let line: Vec<char> = line.chars().collect();
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

/// Whether a layout that splits `ok` of `total` sampled lines fits: all of them, or all but a few stray
/// lines (at most one in ten), which become dead letters when read.
fn fits(ok: usize, total: usize) -> bool {
    ok * 10 >= total * 9
}

/// The layout that fits the sampled lines (see the module documentation), or why none does.
fn choose_layout(sample: &[String]) -> Result<Layout, String> {
    let header_fields = sample[0].split_whitespace().count();
    let even = sample
        .iter()
        .filter(|l| l.split_whitespace().count() == header_fields)
        .count();
    let separated = header_fields >= 2 && fits(even, sample.len());
    let spans = aligned_spans(sample);
    let split = sample
        .iter()
        .filter(|l| split_aligned(l, &spans).is_ok())
        .count();
    let aligned =
        spans.len() >= 2 && split_aligned(&sample[0], &spans).is_ok() && fits(split, sample.len());
    match (aligned, separated) {
        (true, false) => Ok(Layout::Aligned(spans)),
        (true, true) if spans.len() == header_fields => Ok(Layout::Aligned(spans)),
        (_, true) => Ok(Layout::Separated(header_fields)),
        (false, false) if header_fields >= 2 => Err(format!(
            "no aligned columns, and not the same number of whitespace-separated fields on the lines: \
             the header has {header_fields}, {} of {} sampled lines have as many",
            even,
            sample.len()
        )),
        (false, false) => Err("not delimited and no aligned columns found".to_string()),
    }
}

impl Layout {
    /// The fields of a line, or the dead-letter reason and the fields found.
    fn split(&self, line: &str) -> Result<Vec<String>, (String, Vec<String>)> {
        match self {
            Layout::Aligned(spans) => split_aligned(line, spans).map_err(|pos| {
                let reason = format!(
                    "text crosses the gap between columns at character {}",
                    pos + 1
                );
                (reason, vec![line.to_string()])
            }),
            Layout::Separated(n) => {
                let found = line.split_whitespace().count();
                if found == *n {
                    return Ok(line.split_whitespace().map(str::to_string).collect());
                }
                let reason = format!("expected {n} fields separated by whitespace, found {found}");
                // A few fields too many or too few are kept as fields; a line of millions is kept as text.
                let fields = if found <= n.saturating_mul(4).max(64) {
                    line.split_whitespace().map(str::to_string).collect()
                } else {
                    vec![line.to_string()]
                };
                Err((reason, fields))
            }
        }
    }
}

impl AlignedFill {
    pub(super) fn open(path: &Path) -> Result<(Self, Vec<String>), IngestError> {
        let sample = sample(path)?;
        if sample.is_empty() {
            return Err(IngestError::malformed(path, "the file is empty"));
        }
        let layout = choose_layout(&sample).map_err(|r| IngestError::malformed(path, r))?;
        let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
        let (counting, bytes) = Counting::new(file);
        let mut lines = BoundedLines::new(
            BufReader::with_capacity(256 * 1024, counting),
            MAX_RECORD_BYTES,
        );
        // The header is the first line that is not blank: the sample's first line.
        loop {
            match lines.next_line().map_err(|e| IngestError::io(path, e))? {
                Some(Line::Text(t)) if is_blank(&t) => continue,
                _ => break,
            }
        }
        let columns = layout
            .split(&sample[0])
            .map_err(|(reason, _)| IngestError::malformed(path, format!("the header: {reason}")))?;
        Ok((
            AlignedFill {
                lines,
                layout,
                bytes,
            },
            columns,
        ))
    }
}

impl Fill for AlignedFill {
    fn fill(&mut self, batcher: &mut RowBatcher) -> Result<bool, IngestError> {
        loop {
            if batcher.is_full() {
                return Ok(true);
            }
            let Some(line) = self.lines.next_line().map_err(|e| IngestError::Io {
                path: Default::default(),
                source: e,
            })?
            else {
                return Ok(false);
            };
            let line_no = self.lines.line_no;
            let bytes = match line {
                Line::TooLong { bytes, prefix } => {
                    let text = String::from_utf8_lossy(&prefix);
                    batcher.push_unreadable(line_no, &too_long_reason(bytes), &text);
                    continue;
                }
                Line::Text(t) if is_blank(&t) => continue,
                Line::Text(t) => t,
            };
            let text = match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    let reason = format!("not UTF-8 text: {}", e.utf8_error());
                    batcher.push_unreadable(
                        line_no,
                        &reason,
                        &String::from_utf8_lossy(e.as_bytes()),
                    );
                    continue;
                }
            };
            match self.layout.split(&text) {
                Ok(fields) => {
                    let row: Vec<&str> = fields.iter().map(String::as_str).collect();
                    batcher.push_row(line_no, &row);
                }
                Err((reason, fields))
                    if matches!(self.layout, Layout::Separated(_)) && fields.len() > 1 =>
                {
                    let row: Vec<&str> = fields.iter().map(String::as_str).collect();
                    batcher.push_misshapen(line_no, &reason, &row);
                }
                Err((reason, _)) => batcher.push_unreadable(line_no, &reason, &text),
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

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn aligned_columns_keep_inner_spaces() {
        let sample = lines(&[
            "Code   Description          Qty",
            "85123A WHITE HANGING HEART     6",
            "71053  WHITE METAL LANTERN  12",
        ]);
        let layout = choose_layout(&sample).unwrap();
        assert_eq!(
            layout.split(&sample[1]).unwrap(),
            vec!["85123A", "WHITE HANGING HEART", "6"]
        );
        let crossing = format!("85123A {} 6", "X".repeat(25));
        assert!(layout.split(&crossing).is_err());
    }

    #[test]
    fn a_header_not_aligned_with_its_rows_splits_on_whitespace() {
        let sample = lines(&[
            " client_ref  day items  amount",
            " 00001 20110101  1   11.77",
            " 00002 20110102  12  3.5",
        ]);
        let layout = choose_layout(&sample).unwrap();
        assert_eq!(layout, Layout::Separated(4));
        assert_eq!(
            layout.split(&sample[0]).unwrap(),
            vec!["client_ref", "day", "items", "amount"]
        );
        assert_eq!(
            layout.split(&sample[1]).unwrap(),
            vec!["00001", "20110101", "1", "11.77"]
        );
        let (reason, fields) = layout.split(" 00003 20110103 4").unwrap_err();
        assert!(reason.contains("expected 4"), "{reason}");
        assert_eq!(fields.len(), 3);
    }

    #[test]
    fn aligned_wins_when_both_fit_with_the_same_columns() {
        let sample = lines(&["a    b    c", "1    2    3", "10   20   30"]);
        assert!(matches!(choose_layout(&sample).unwrap(), Layout::Aligned(s) if s.len() == 3));
    }

    #[test]
    fn neither_layout_is_a_clear_refusal() {
        let sample = lines(&["a b c", "1 2", "xxxxx"]);
        let err = choose_layout(&sample).unwrap_err();
        assert!(err.contains("header has 3, 1 of 3"), "{err}");
    }
}
