//! What a Kafka message holds.
//!
//! shopstream's own: one message per request (an append of the topic interface), with the header
//! `shopstream: envelopes/1`, the request's idempotency key as the message key, and the records'
//! envelopes (JSON, one per line) as the value, so Kafka stores a request entirely or not at all and any
//! consumer can read it. Anything else is the shop's: one JSON object, or one CSV line, per message, turned
//! into an envelope whose source names the topic, partition and offset; one that cannot be read becomes an
//! envelope carrying the reason, which the load dead-letters with the message's text.

use serde_json::{Map, Value};
use shopstream_log::{LogError, NewRecord};

use crate::config::Format;

/// The header marking shopstream's messages, and its value.
pub const HEADER: &str = "shopstream";
/// The value of [`HEADER`] for a message of newline-separated envelopes.
pub const ENVELOPES_V1: &[u8] = b"envelopes/1";

/// The value of one message holding `records` (their values, one per line).
pub fn pack(records: &[NewRecord]) -> Result<Vec<u8>, LogError> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.value.len() + 1).sum());
    for (i, r) in records.iter().enumerate() {
        if r.value.contains(&b'\n') {
            return Err(LogError::Invalid(format!(
                "record {} holds a line break: records on Kafka are one JSON envelope per line",
                i + 1
            )));
        }
        if i > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(&r.value);
    }
    Ok(out)
}

/// The records of a message of ours.
pub fn unpack(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b'\n').filter(|l| !l.is_empty())
}

/// Where a foreign message was read: `kafka:<topic>/<partition>@<offset>`.
pub fn source_of(topic: &str, partition: u32, offset: u64) -> String {
    format!("kafka:{topic}/{partition}@{offset}")
}

/// A message produced by something else, as an envelope: its fields, or the reason it cannot be read.
pub fn foreign(source: String, format: Format, columns: &[String], value: &[u8]) -> Vec<u8> {
    let fields = match format {
        Format::Json => json_fields(value),
        Format::Csv => csv_fields(columns, value),
    };
    let envelope = match fields {
        Ok(fields) => serde_json::json!({ "source": source, "index": 1, "fields": fields }),
        Err(reason) => {
            let text = String::from_utf8_lossy(value);
            let mut fields = Map::new();
            fields.insert("_raw".into(), Value::String(text.into_owned()));
            serde_json::json!({ "source": source, "index": 1, "fields": fields, "reason": reason })
        }
    };
    serde_json::to_vec(&envelope).expect("an envelope serializes")
}

fn json_fields(value: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(value) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(other) => Err(format!(
            "the message is JSON but not an object (a {})",
            kind(&other)
        )),
        Err(e) => Err(format!("the message is not JSON: {e}")),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn csv_fields(columns: &[String], value: &[u8]) -> Result<Map<String, Value>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(value);
    let record = match reader.records().next() {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Err(format!("the message is not a CSV line: {e}")),
        None => return Err("the message is empty".into()),
    };
    if record.len() != columns.len() {
        return Err(format!(
            "the CSV line has {} fields, the topic's columns are {} ({})",
            record.len(),
            columns.len(),
            columns.join(", ")
        ));
    }
    Ok(columns
        .iter()
        .zip(record.iter())
        .map(|(c, v)| (c.clone(), Value::String(v.to_string())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_one_message_and_back() {
        let records = [
            NewRecord::new(1, "{\"a\":1}"),
            NewRecord::new(1, "{\"b\":2}"),
        ];
        let value = pack(&records).unwrap();
        let back: Vec<&[u8]> = unpack(&value).collect();
        assert_eq!(back, vec![&b"{\"a\":1}"[..], &b"{\"b\":2}"[..]]);
        assert!(pack(&[NewRecord::new(1, "a\nb")]).is_err());
    }

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn foreign_json_and_csv_become_envelopes_naming_where_they_were() {
        let src = source_of("shop.orders", 2, 41);
        let e = parse(&foreign(
            src.clone(),
            Format::Json,
            &[],
            br#"{"InvoiceNo":"1","Qty":3}"#,
        ));
        assert_eq!(e["source"], "kafka:shop.orders/2@41");
        assert_eq!(e["fields"]["Qty"], 3);
        assert!(e.get("reason").is_none());
        let cols = vec!["invoice".to_string(), "qty".to_string()];
        let e = parse(&foreign(src.clone(), Format::Csv, &cols, b"\"A,1\",3"));
        assert_eq!(e["fields"]["invoice"], "A,1");
        assert_eq!(e["fields"]["qty"], "3");
    }

    #[test]
    fn unreadable_foreign_messages_carry_their_reason_and_text() {
        let src = source_of("t", 0, 7);
        let e = parse(&foreign(src.clone(), Format::Json, &[], b"[1,2]"));
        assert!(
            e["reason"]
                .as_str()
                .unwrap()
                .contains("not an object (a array)")
        );
        assert_eq!(e["fields"]["_raw"], "[1,2]");
        let e = parse(&foreign(src.clone(), Format::Json, &[], b"{oops"));
        assert!(e["reason"].as_str().unwrap().contains("not JSON"));
        let cols = vec!["a".to_string(), "b".to_string()];
        let e = parse(&foreign(src, Format::Csv, &cols, b"1,2,3"));
        assert!(e["reason"].as_str().unwrap().contains("3 fields"), "{e}");
    }
}
