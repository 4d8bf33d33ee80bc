//! JSON files: JSON Lines, a JSON array of records, or an object whose array field holds them.
//!
//! The layout is told by the content: a file starting with `[` is an array whose elements are the records;
//! a `.json` file starting with an object that spans lines, or whose first line is an object with an array
//! of objects in it (`{"orders": [{…}, …], "next": null}`, as API exports are), is scanned as such a
//! wrapper, the elements of its first array of objects being the records; anything else is JSON Lines, one
//! record per line. Arrays are scanned value by value, never parsed whole: one record (at most
//! [`MAX_RECORD_BYTES`]) is held at a time, however large the file. A record's "line" is its line in JSON
//! Lines and its position (from 1) in an array.
//!
//! Every record is an object whose keys are its columns: the mapping is resolved per distinct key layout,
//! so a key that first appears late in the file is read like one in the first record. Values are taken as
//! text (numbers as written, `null` as empty, nested values as their JSON). A record that is not an object,
//! not valid JSON (invalid UTF-8 included: the bytes are shown lossily) or too long is a dead letter.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

use super::Fill;
use super::text::{
    BoundedLines, Counting, Line, MAX_RECORD_BYTES, TOO_LONG_PREFIX, too_long_reason,
};
use crate::batch::RowBatcher;
use crate::error::IngestError;
use crate::mapping::{LayoutCache, MappingConfig};
use crate::sources::value_text;

type Input = BufReader<Counting<File>>;

/// Values (objects, arrays, elements, members) one record may hold: a parsed value takes about 80
/// bytes, so a 16 MiB line of `[0,0,0,…]` would otherwise take 700 MiB.
const MAX_JSON_VALUES: usize = 1_000_000;

/// An upper bound of the values in a JSON text: its `{`, `[` and `,` outside strings, plus one.
fn count_values(bytes: &[u8]) -> usize {
    let (mut n, mut in_string, mut escape) = (1, false, false);
    for &b in bytes {
        if in_string {
            match (escape, b) {
                (true, _) => escape = false,
                (false, b'\\') => escape = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' | b',' => n += 1,
                _ => {}
            }
        }
    }
    n
}

/// One record's bytes as found, before parsing.
#[derive(Debug, PartialEq)]
enum RawRecord {
    Bytes(Vec<u8>),
    TooLong { bytes: u64, prefix: Vec<u8> },
}

/// Where records come from.
enum Records {
    Lines(BoundedLines<Input>),
    Streamed(Scanner<Input>),
}

pub(super) struct JsonFill {
    path: PathBuf,
    records: Records,
    layouts: LayoutCache,
    /// The key layout the batcher's mapping was resolved for.
    current: Vec<String>,
    /// The first record, read at open to learn the columns.
    pending: Option<(u64, RawRecord)>,
    bytes: Arc<AtomicU64>,
}

fn open_input(path: &Path) -> Result<(Input, Arc<AtomicU64>), IngestError> {
    let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    let (counting, bytes) = Counting::new(file);
    Ok((BufReader::with_capacity(256 * 1024, counting), bytes))
}

/// Whether a parsed object holds an array whose first element is an object (an export's record list).
fn holds_records(obj: &Map<String, Value>) -> bool {
    obj.values()
        .any(|v| matches!(v, Value::Array(a) if matches!(a.first(), Some(Value::Object(_)))))
}

/// The first non-blank lines of a file (at most two), each bounded.
fn first_lines(path: &Path) -> Result<Vec<Line>, IngestError> {
    let (input, _) = open_input(path)?;
    let mut lines = BoundedLines::new(input, MAX_RECORD_BYTES);
    let mut out = Vec::new();
    while out.len() < 2 {
        match lines.next_line().map_err(|e| IngestError::io(path, e))? {
            None => break,
            Some(Line::Text(t)) if t.trim_ascii().is_empty() => continue,
            Some(line) => out.push(line),
        }
    }
    Ok(out)
}

fn parse_object(line: &Line) -> Option<Map<String, Value>> {
    match line {
        Line::Text(t) => match serde_json::from_slice::<Value>(strip_bom(t.trim_ascii())) {
            Ok(Value::Object(o)) => Some(o),
            _ => None,
        },
        Line::TooLong { .. } => None,
    }
}

/// Whether the file is read value by value (an array, or a wrapper object) rather than line by line:
/// it starts with `[`, or (`.json` only) with an object that is not followed by a second one-line
/// object and either spans lines or holds an array of objects.
fn is_streamed(path: &Path) -> Result<bool, IngestError> {
    let lines = first_lines(path)?;
    let Some(first) = lines.first() else {
        return Err(IngestError::malformed(
            path,
            "the file holds no JSON records",
        ));
    };
    let jsonl = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("ndjson"));
    let starts = match first {
        Line::Text(t) => strip_bom(t.trim_ascii()).first().copied(),
        Line::TooLong { prefix, .. } => strip_bom(prefix.trim_ascii()).first().copied(),
    };
    // A second line holding an object of its own: JSON Lines, whatever the first line holds.
    let json_lines = lines.get(1).and_then(parse_object).is_some();
    Ok(match starts {
        Some(b'[') => true,
        Some(b'{') if !jsonl && !json_lines => {
            parse_object(first).is_none_or(|o| holds_records(&o))
        }
        _ => false,
    })
}

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b)
}

impl JsonFill {
    pub(super) fn open(
        path: &Path,
        mapping: Option<&MappingConfig>,
    ) -> Result<(Self, Vec<String>), IngestError> {
        let streamed = is_streamed(path)?;
        let (input, bytes) = open_input(path)?;
        let records = if streamed {
            Records::Streamed(Scanner::new(input))
        } else {
            Records::Lines(BoundedLines::new(input, MAX_RECORD_BYTES))
        };
        let mut fill = JsonFill {
            path: path.to_path_buf(),
            records,
            layouts: LayoutCache::new(path, mapping.cloned()),
            current: Vec::new(),
            pending: None,
            bytes,
        };
        fill.pending = fill.next_record()?;
        // The first object's keys are the file's columns (as a header is); a file whose first record is
        // not an object starts from the canonical names, and each record is mapped by its own keys.
        let columns = match &fill.pending {
            Some((_, RawRecord::Bytes(b))) => match serde_json::from_slice::<Value>(strip_bom(b)) {
                Ok(Value::Object(o)) => o.keys().cloned().collect(),
                _ => canonical_columns(),
            },
            Some(_) => canonical_columns(),
            None => {
                return Err(IngestError::malformed(
                    path,
                    "the file holds no JSON records",
                ));
            }
        };
        fill.current = columns.clone();
        Ok((fill, columns))
    }

    fn next_record(&mut self) -> Result<Option<(u64, RawRecord)>, IngestError> {
        let io = |e| IngestError::io(&self.path, e);
        match &mut self.records {
            Records::Streamed(s) => s.next_record().map_err(io),
            Records::Lines(lines) => loop {
                match lines.next_line().map_err(io)? {
                    None => return Ok(None),
                    Some(Line::Text(t)) if t.trim_ascii().is_empty() => continue,
                    Some(Line::Text(t)) => return Ok(Some((lines.line_no, RawRecord::Bytes(t)))),
                    Some(Line::TooLong { bytes, prefix }) => {
                        return Ok(Some((lines.line_no, RawRecord::TooLong { bytes, prefix })));
                    }
                }
            },
        }
    }

    fn push_record(&mut self, batcher: &mut RowBatcher, no: u64, raw: RawRecord) {
        let bytes = match raw {
            RawRecord::TooLong { bytes, prefix } => {
                let text = String::from_utf8_lossy(&prefix);
                return batcher.push_unreadable(no, &too_long_reason(bytes), &text);
            }
            RawRecord::Bytes(b) => b,
        };
        let lossy = || String::from_utf8_lossy(&bytes).into_owned();
        let values = count_values(&bytes);
        if values > MAX_JSON_VALUES {
            let reason = format!(
                "record of {values} JSON values, more than the limit of {MAX_JSON_VALUES}: not read"
            );
            let prefix = &bytes[..bytes.len().min(TOO_LONG_PREFIX)];
            return batcher.push_unreadable(no, &reason, &String::from_utf8_lossy(prefix));
        }
        match serde_json::from_slice::<Value>(strip_bom(&bytes)) {
            Ok(Value::Object(obj)) => self.push_object(batcher, no, &obj),
            Ok(_) => batcher.push_unreadable(no, "not a JSON object", &lossy()),
            Err(e) => batcher.push_unreadable(no, &format!("invalid JSON: {e}"), &lossy()),
        }
    }

    fn push_object(&mut self, batcher: &mut RowBatcher, no: u64, obj: &Map<String, Value>) {
        if !self.current.iter().eq(obj.keys()) {
            let keys: Vec<String> = obj.keys().cloned().collect();
            match self.layouts.resolve(&keys, batcher.dataset()) {
                Ok(m) => {
                    batcher.set_mapping(m);
                    self.current = keys;
                }
                Err(e) => return batcher.push_rejected_object(no, &e.into(), obj),
            }
        }
        let texts: Vec<Cow<'_, str>> = obj.values().map(value_text).collect();
        let row: Vec<&str> = texts.iter().map(|t| t.as_ref()).collect();
        batcher.push_row(no, &row);
    }
}

fn canonical_columns() -> Vec<String> {
    crate::schema::ORDER_FIELDS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

impl Fill for JsonFill {
    fn fill(&mut self, batcher: &mut RowBatcher) -> Result<bool, IngestError> {
        loop {
            if batcher.is_full() {
                return Ok(true);
            }
            let next = match self.pending.take() {
                Some(r) => Some(r),
                None => self.next_record()?,
            };
            let Some((no, raw)) = next else {
                return Ok(false);
            };
            self.push_record(batcher, no, raw);
        }
    }

    fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Where a [`Scanner`] is in the file's structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Between top-level values.
    Top,
    /// Inside an array of records (top-level, or a wrapper's member); `wrapper`: inside an object too.
    Records { wrapper: bool },
    /// After a wrapper's array of records: the object's remaining members are skipped.
    WrapperRest,
}

/// Progress of scanning one value across buffer refills.
#[derive(Debug, Clone, Copy, Default)]
struct ValueScan {
    depth: u32,
    in_string: bool,
    escape: bool,
    /// A number or literal: it ends before whitespace, `,`, `]` or `}`.
    scalar: bool,
    started: bool,
}

impl ValueScan {
    /// Feeds bytes; returns how many belong to the value when it ends within them.
    fn feed(&mut self, chunk: &[u8]) -> Option<usize> {
        for (i, &b) in chunk.iter().enumerate() {
            if !self.started {
                self.started = true;
                match b {
                    b'{' | b'[' => self.depth = 1,
                    b'"' => self.in_string = true,
                    b',' | b']' | b'}' | b':' => return Some(1),
                    _ => self.scalar = true,
                }
                continue;
            }
            if self.scalar {
                if b.is_ascii_whitespace() || matches!(b, b',' | b']' | b'}') {
                    return Some(i);
                }
            } else if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                    if self.depth == 0 {
                        return Some(i + 1);
                    }
                }
            } else {
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
            }
        }
        None
    }
}

/// Finds record values in a stream of JSON without parsing it whole (see the module documentation).
struct Scanner<R> {
    reader: R,
    at: At,
    /// Records returned so far.
    count: u64,
    /// Whether a top-level value was seen: only the first may be a wrapper.
    seen_top: bool,
}

/// A value scanned: its bytes (when kept) and its length.
struct Scanned {
    bytes: Vec<u8>,
    len: u64,
}

impl<R: BufRead> Scanner<R> {
    fn new(reader: R) -> Self {
        Scanner {
            reader,
            at: At::Top,
            count: 0,
            seen_top: false,
        }
    }

    /// The next byte that is not whitespace (or a BOM), not consumed.
    fn peek(&mut self) -> std::io::Result<Option<u8>> {
        loop {
            let buf = self.reader.fill_buf()?;
            let Some(&b) = buf.first() else {
                return Ok(None);
            };
            if b.is_ascii_whitespace() {
                let n = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
                self.reader.consume(n);
            } else if buf.starts_with(b"\xEF\xBB\xBF") {
                self.reader.consume(3);
            } else {
                return Ok(Some(b));
            }
        }
    }

    fn bump(&mut self) {
        self.reader.consume(1);
    }

    /// Scans one value from its first byte (continuing `scan`), keeping up to `keep` of its bytes.
    fn scan_value(&mut self, mut scan: ValueScan, keep: usize) -> std::io::Result<Scanned> {
        let mut out = Scanned {
            bytes: Vec::new(),
            len: 0,
        };
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(out); // the file ends inside the value: the parser will say so
            }
            let (n, done) = match scan.feed(buf) {
                Some(n) => (n, true),
                None => (buf.len(), false),
            };
            let room = keep.saturating_sub(out.bytes.len()).min(n);
            out.bytes.extend_from_slice(&buf[..room]);
            out.len += n as u64;
            self.reader.consume(n);
            if done {
                return Ok(out);
            }
        }
    }

    /// Scans a record value and numbers it.
    fn record(&mut self) -> std::io::Result<Option<(u64, RawRecord)>> {
        let scanned = self.scan_value(ValueScan::default(), MAX_RECORD_BYTES + 1)?;
        self.count += 1;
        let raw = if scanned.len > MAX_RECORD_BYTES as u64 {
            let mut prefix = scanned.bytes;
            prefix.truncate(TOO_LONG_PREFIX);
            RawRecord::TooLong {
                bytes: scanned.len,
                prefix,
            }
        } else {
            RawRecord::Bytes(scanned.bytes)
        };
        Ok(Some((self.count, raw)))
    }

    /// The next record, `None` at the end of the file.
    fn next_record(&mut self) -> std::io::Result<Option<(u64, RawRecord)>> {
        loop {
            let Some(b) = self.peek()? else {
                return Ok(None);
            };
            match (self.at, b) {
                (At::Top, b'[') => {
                    self.bump();
                    self.seen_top = true;
                    self.at = At::Records { wrapper: false };
                }
                (At::Top, b'{') if !self.seen_top => {
                    self.seen_top = true;
                    if let Some(record) = self.open_object()? {
                        return Ok(Some(record));
                    }
                }
                (At::Top, _) => return self.record(),
                (At::Records { wrapper }, b']') => {
                    self.bump();
                    self.at = if wrapper { At::WrapperRest } else { At::Top };
                }
                (At::Records { .. }, b',') => self.bump(),
                (At::Records { .. }, _) => return self.record(),
                (At::WrapperRest, b'}') => {
                    self.bump();
                    self.at = At::Top;
                }
                (At::WrapperRest, b'[') => {
                    // Another array of objects holds records too (none is dropped unseen); other
                    // arrays are skipped.
                    self.bump();
                    if self.peek()? == Some(b'{') {
                        self.at = At::Records { wrapper: true };
                    } else {
                        let scan = ValueScan {
                            depth: 1,
                            started: true,
                            ..Default::default()
                        };
                        self.scan_value(scan, 0)?;
                    }
                }
                (At::WrapperRest, _) => {
                    // `,`, `:`, keys and other values of the wrapper's members: skipped unkept.
                    self.scan_value(ValueScan::default(), 0)?;
                }
            }
        }
    }

    /// Reads a top-level object member by member: at its first array of objects it becomes a wrapper
    /// (returns `None`, the array's elements are the records); an object without one is itself a record.
    fn open_object(&mut self) -> std::io::Result<Option<(u64, RawRecord)>> {
        let keep = MAX_RECORD_BYTES + 1;
        let mut kept: Vec<u8> = Vec::new();
        let mut len: u64 = 1;
        let push = |kept: &mut Vec<u8>, len: &mut u64, bytes: &[u8], n: u64| {
            let room = keep.saturating_sub(kept.len()).min(bytes.len());
            kept.extend_from_slice(&bytes[..room]);
            *len += n;
        };
        self.bump();
        kept.push(b'{');
        // The file may end inside the object: the parser will say so.
        while let Some(b) = self.peek()? {
            if b == b'}' {
                self.bump();
                kept.push(b'}');
                len += 1;
                break;
            }
            if b == b'[' {
                self.bump();
                if self.peek()? == Some(b'{') {
                    self.at = At::Records { wrapper: true };
                    return Ok(None);
                }
                let scan = ValueScan {
                    depth: 1,
                    started: true,
                    ..Default::default()
                };
                let rest = self.scan_value(scan, keep.saturating_sub(kept.len() + 1))?;
                push(&mut kept, &mut len, b"[", 1);
                push(&mut kept, &mut len, &rest.bytes, rest.len);
                continue;
            }
            let v = self.scan_value(ValueScan::default(), keep.saturating_sub(kept.len()))?;
            push(&mut kept, &mut len, &v.bytes, v.len);
            // Whitespace was dropped: keep tokens apart where it mattered (`"a":1 ,`).
            push(&mut kept, &mut len, b" ", 0);
        }
        self.count += 1;
        let raw = if len > MAX_RECORD_BYTES as u64 {
            kept.truncate(TOO_LONG_PREFIX);
            RawRecord::TooLong {
                bytes: len,
                prefix: kept,
            }
        } else {
            RawRecord::Bytes(kept)
        };
        Ok(Some((self.count, raw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Vec<String> {
        let mut s = Scanner::new(std::io::BufReader::with_capacity(7, text.as_bytes()));
        let mut out = Vec::new();
        while let Some((_, r)) = s.next_record().unwrap() {
            match r {
                RawRecord::Bytes(b) => {
                    let v: Value = serde_json::from_slice(&b)
                        .unwrap_or_else(|e| Value::String(format!("ERR {e}")));
                    out.push(v.to_string());
                }
                RawRecord::TooLong { bytes, .. } => out.push(format!("too long {bytes}")),
            }
        }
        out
    }

    #[test]
    fn arrays_and_wrappers_yield_their_elements() {
        let array = r#"[ {"a": "x]}", "b": [1, {"c": 2}]}, {"a": "\"q\""} ]"#;
        assert_eq!(
            records(array),
            vec![r#"{"a":"x]}","b":[1,{"c":2}]}"#, r#"{"a":"\"q\""}"#]
        );
        let wrapped =
            r#"{"count": 2, "tags": ["a"], "orders": [{"a": 1}, {"a": 2}], "next": {"p": [3]}}"#;
        assert_eq!(records(wrapped), vec![r#"{"a":1}"#, r#"{"a":2}"#]);
        // Without an array of objects, the object is one record; later values are records too.
        let pretty = "{\n  \"a\": 1,\n  \"t\": [\"x\", \"y\"]\n}\n{\"a\": 2}\n";
        assert_eq!(
            records(pretty),
            vec![r#"{"a":1,"t":["x","y"]}"#, r#"{"a":2}"#]
        );
    }

    #[test]
    fn garbage_is_a_record_the_parser_refuses_and_scanning_goes_on() {
        let got = records(r#"[{"a": 1}, nope, 3, {"a": 2}]"#);
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[1].starts_with("\"ERR"), "{got:?}");
        assert_eq!(got[3], r#"{"a":2}"#);
        let truncated = records(r#"[{"a": 1}, {"a": "#);
        assert_eq!(truncated.len(), 2);
        assert!(truncated[1].starts_with("\"ERR"), "{truncated:?}");
    }

    #[test]
    fn a_huge_element_is_measured_not_kept() {
        let big = format!(
            r#"[{{"a": "{}"}}, {{"a": 1}}]"#,
            "x".repeat(MAX_RECORD_BYTES + 10)
        );
        let got = records(&big);
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with("too long"), "{}", &got[0][..40]);
        assert_eq!(got[1], r#"{"a":1}"#);
    }
}
