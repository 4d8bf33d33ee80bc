//! JSON Lines: one JSON object per line.
//!
//! The columns are the keys seen in the first hundred objects; values are taken as text (numbers as
//! written, `null` as empty, nested values as their JSON). A line that is not a JSON object is a
//! dead letter naming the line and the parser's complaint.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::batch::OrderBatcher;
use crate::error::IngestError;

use super::Fill;

pub(super) struct JsonLinesFill {
    path: PathBuf,
    reader: BufReader<File>,
    columns: Vec<String>,
    line: String,
    line_no: u64,
    bytes: u64,
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl JsonLinesFill {
    pub(super) fn open(path: &Path) -> Result<(Self, Vec<String>), IngestError> {
        let mut columns: Vec<String> = Vec::new();
        let sample = BufReader::new(File::open(path).map_err(|e| IngestError::io(path, e))?);
        for line in sample.lines().take(100) {
            let line = line.map_err(|e| IngestError::io(path, e))?;
            if let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(&line) {
                for key in obj.keys() {
                    if !columns.contains(key) {
                        columns.push(key.clone());
                    }
                }
            }
        }
        if columns.is_empty() {
            return Err(IngestError::malformed(
                path,
                "no JSON object in the first 100 lines",
            ));
        }
        let reader = BufReader::with_capacity(
            256 * 1024,
            File::open(path).map_err(|e| IngestError::io(path, e))?,
        );
        let fill = JsonLinesFill {
            path: path.to_path_buf(),
            reader,
            columns: columns.clone(),
            line: String::new(),
            line_no: 0,
            bytes: 0,
        };
        Ok((fill, columns))
    }

    fn row_of(&self, obj: &Map<String, Value>) -> Vec<String> {
        self.columns
            .iter()
            .map(|c| obj.get(c).map(value_text).unwrap_or_default())
            .collect()
    }
}

impl Fill for JsonLinesFill {
    fn fill(&mut self, batcher: &mut OrderBatcher) -> Result<bool, IngestError> {
        loop {
            if batcher.is_full() {
                return Ok(true);
            }
            self.line.clear();
            let n = self
                .reader
                .read_line(&mut self.line)
                .map_err(|e| IngestError::io(&self.path, e))?;
            if n == 0 {
                return Ok(false);
            }
            self.bytes += n as u64;
            self.line_no += 1;
            let text = self.line.trim();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(obj)) => {
                    let texts = self.row_of(&obj);
                    let fields: Vec<&str> = texts.iter().map(String::as_str).collect();
                    batcher.push_row(self.line_no, &fields);
                }
                Ok(_) => batcher.push_unreadable(self.line_no, "not a JSON object", text),
                Err(e) => {
                    batcher.push_unreadable(self.line_no, &format!("invalid JSON: {e}"), text)
                }
            }
        }
    }

    fn bytes_read(&self) -> u64 {
        self.bytes
    }
}
