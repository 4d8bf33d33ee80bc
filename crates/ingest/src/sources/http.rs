//! Request bodies of the HTTP push source: JSON, NDJSON or CSV, into records.
//!
//! A body is accepted or refused whole: a line that is not a JSON object, or a CSV row with the wrong number of
//! fields, refuses the request with its line number, so the client can fix and resend it. Values that do not
//! fit the orders schema (a quantity of `lots`) are accepted and become dead letters with their reason when
//! the record is loaded, as for files.

use serde_json::{Map, Value};

/// The body formats the push endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON object, or an array of objects (`application/json`).
    Json,
    /// One JSON object per line (`application/x-ndjson`, `application/jsonl`).
    Ndjson,
    /// A header row, then records (`text/csv`).
    Csv,
}

impl BodyFormat {
    /// The format for a `Content-Type` header value, if supported.
    pub fn from_content_type(content_type: &str) -> Option<BodyFormat> {
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/json" => Some(BodyFormat::Json),
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/json-lines" => Some(BodyFormat::Ndjson),
            "text/csv" => Some(BodyFormat::Csv),
            _ => None,
        }
    }
}

/// Parses a body into records (field name → value), or says which line is wrong and why.
pub fn parse_body(format: BodyFormat, body: &[u8]) -> Result<Vec<Map<String, Value>>, String> {
    match format {
        BodyFormat::Json => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => Ok(vec![o]),
            Ok(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(o) => Ok(o),
                    _ => Err(format!(
                        "element {} of the array is not a JSON object",
                        i + 1
                    )),
                })
                .collect(),
            Ok(_) => Err("the body is neither a JSON object nor an array of objects".into()),
            Err(e) => Err(format!("invalid JSON: {e}")),
        },
        BodyFormat::Ndjson => {
            let text =
                std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| match serde_json::from_str::<Value>(l) {
                    Ok(Value::Object(o)) => Ok(o),
                    Ok(_) => Err(format!("line {}: not a JSON object", i + 1)),
                    Err(e) => Err(format!("line {}: invalid JSON: {e}", i + 1)),
                })
                .collect()
        }
        BodyFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(body);
            let header: Vec<String> = reader
                .headers()
                .map_err(|e| format!("line 1: {e}"))?
                .iter()
                .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
                .collect();
            let mut out = Vec::new();
            for record in reader.records() {
                let record = record.map_err(|e| {
                    let line = e.position().map_or(0, |p| p.line());
                    format!("line {line}: {e}")
                })?;
                out.push(
                    header
                        .iter()
                        .zip(record.iter())
                        .map(|(h, v)| (h.clone(), Value::String(v.to_string())))
                        .collect(),
                );
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_formats_give_the_same_records() {
        let json =
            br#"[{"InvoiceNo":"536365","Quantity":6},{"InvoiceNo":"536366","Quantity":"2"}]"#;
        let ndjson = b"{\"InvoiceNo\":\"536365\",\"Quantity\":6}\n\n{\"InvoiceNo\":\"536366\",\"Quantity\":\"2\"}\n";
        let csv = b"InvoiceNo,Quantity\n536365,6\n536366,2\n";
        for (f, body) in [
            (BodyFormat::Json, &json[..]),
            (BodyFormat::Ndjson, &ndjson[..]),
            (BodyFormat::Csv, &csv[..]),
        ] {
            let rs = parse_body(f, body).unwrap();
            assert_eq!(rs.len(), 2, "{f:?}");
            assert_eq!(rs[1]["InvoiceNo"], "536366");
        }
        assert_eq!(
            BodyFormat::from_content_type("application/x-ndjson; charset=utf-8"),
            Some(BodyFormat::Ndjson)
        );
    }

    #[test]
    fn a_bad_line_refuses_the_body_naming_the_line() {
        let err = parse_body(BodyFormat::Ndjson, b"{\"a\":1}\n[1]\n").unwrap_err();
        assert!(err.starts_with("line 2"), "{err}");
        let err = parse_body(BodyFormat::Csv, b"a,b\n1,2\n3\n").unwrap_err();
        assert!(err.starts_with("line 3"), "{err}");
    }
}
