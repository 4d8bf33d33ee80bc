//! Live sources: records that arrive over the network rather than in files.
//!
//! A live record travels through the log as an [`Envelope`]: its fields as a JSON object plus where it came
//! from (`http:<request id>` and its index in the request, `api:<poller>` and its page for pulled APIs).
//! Sources turn request bodies into envelopes ([`http`]) and poll paginated APIs ([`api`]); the continuous load job turns envelopes back into rows of the lake
//! tables with [`EnvelopeBatcher`], through the same mappings and dead-letter rules as files.

pub mod api;
pub mod flow;
pub mod http;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::batch::{Chunk, Counts, Provenance, RowBatcher, Unmappable};
use crate::dataset::Dataset;
use crate::mapping::{LayoutCache, MappingConfig, ResolvedMapping};

/// One live record as stored in a topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Where it came from: `http:<request id>`.
    pub source: String,
    /// 1-based position in its request (the "line" of provenance).
    pub index: u64,
    /// The record's fields.
    pub fields: Map<String, Value>,
    /// For pulled sources: where to resume after this record (stored with it, so a restart neither skips
    /// nor repeats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Value>,
    /// In a flow's dead-letter topic: why a step rejected the record (its fields are as received).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Envelope {
    /// The envelope as the bytes of a log record.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("envelopes serialize")
    }
}

/// A JSON value as the text a field is read from: strings as they are, `null` as empty, numbers as
/// written, nested values as their JSON.
pub fn value_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::Null => Cow::Borrowed(""),
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// Builds lake batches from envelopes, resolving the mapping once per distinct set of field names.
pub struct EnvelopeBatcher {
    batcher: RowBatcher,
    layouts: LayoutCache,
    /// The mapping of the canonical field names, for records that are not envelopes.
    canonical: ResolvedMapping,
    current: Option<(Vec<String>, Arc<str>)>,
}

impl EnvelopeBatcher {
    /// A batcher of rows of `dataset` carrying `load_id` and `load_time_us`; `mapping` renames fields of
    /// other layouts.
    pub fn new(
        mapping: Option<MappingConfig>,
        dataset: Arc<Dataset>,
        load_id: &str,
        load_time_us: i64,
    ) -> EnvelopeBatcher {
        let columns = dataset.column_names();
        let first = ResolvedMapping::resolve(Path::new("live"), &columns, None, &dataset)
            .expect("the dataset's own columns resolve");
        EnvelopeBatcher {
            batcher: RowBatcher::new(
                first.clone(),
                Provenance {
                    source_file: Arc::from(""),
                    sheet: None,
                    load_id: Arc::from(load_id),
                    load_time_us,
                },
            ),
            layouts: LayoutCache::new(Path::new("live"), mapping),
            canonical: first,
            current: None,
        }
    }

    /// Adds one log record's bytes, received at `received_ms`: an envelope becomes an order or a dead
    /// letter; bytes that are not an envelope become a dead letter too, naming the log position `at` (only
    /// formatted then).
    pub fn push(&mut self, bytes: &[u8], received_ms: i64, at: &dyn Fn() -> String) {
        self.batcher.set_received(Some(received_ms * 1000));
        let envelope: Envelope = match serde_json::from_slice(bytes) {
            Ok(e) => e,
            Err(e) => {
                let _ = self.switch(&at(), None);
                self.batcher.push_unreadable(
                    0,
                    &format!("not a shopstream record: {e}"),
                    &String::from_utf8_lossy(bytes),
                );
                return;
            }
        };
        // A record its source could not read (a Kafka message that is not JSON): a dead letter with the reason.
        if let Some(reason) = envelope.reason {
            let _ = self.switch(&envelope.source, None);
            let failure = Unmappable {
                field: None,
                reason,
            };
            self.batcher
                .push_rejected_object(envelope.index, &failure, &envelope.fields);
            return;
        }
        if let Err(e) = self.switch(&envelope.source, Some(&envelope.fields)) {
            self.batcher
                .push_rejected_object(envelope.index, &e, &envelope.fields);
            return;
        }
        // Values in field order, which is the order the current mapping was resolved for.
        let texts: Vec<Cow<'_, str>> = envelope.fields.values().map(value_text).collect();
        let row: Vec<&str> = texts.iter().map(|t| t.as_ref()).collect();
        self.batcher.push_row(envelope.index, &row);
    }

    /// Points provenance at `source` and the mapping at the layout of `fields` (`None`: an unreadable
    /// record). Records of one source mostly share both, so nothing is copied unless they change.
    fn switch(
        &mut self,
        source: &str,
        fields: Option<&Map<String, Value>>,
    ) -> Result<(), Unmappable> {
        let same_layout = |c: &Vec<String>| match fields {
            Some(f) => c.iter().eq(f.keys()),
            None => c.is_empty(),
        };
        if let Some((c, s)) = &self.current
            && same_layout(c)
            && **s == *source
        {
            return Ok(());
        }
        let cols: Vec<String> = fields.map_or_else(Vec::new, |f| f.keys().cloned().collect());
        let mapping = match fields {
            None => self.canonical.clone(),
            Some(_) => self.layouts.resolve(&cols, &self.canonical.dataset)?,
        };
        let source: Arc<str> = Arc::from(source);
        self.batcher.set_source(source.clone(), mapping);
        self.current = Some((cols, source));
        Ok(())
    }

    /// Sets the shop's time zone (`[ingest] timezone`), in which records' times are read.
    pub fn set_timezone(&mut self, timezone: chrono_tz::Tz) {
        self.batcher.set_timezone(timezone);
    }

    /// Counts so far.
    pub fn counts(&self) -> Counts {
        self.batcher.counts()
    }

    /// Takes the buffered rows.
    pub fn take(&mut self) -> Chunk {
        self.batcher.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_dead_letter_keeps_the_fields_in_the_order_they_arrived() {
        let body = br#"{"Quantity": "lots", "InvoiceNo": "536365", "StockCode": "85123A", "InvoiceDate": "2010-12-01 08:26:00", "UnitPrice": "2.55"}"#;
        let records = http::parse_body(http::BodyFormat::Json, body).unwrap();
        let envelope = Envelope {
            source: "http:k".into(),
            index: 1,
            fields: records.into_iter().next().unwrap(),
            checkpoint: None,
            reason: None,
        };
        let mut b = EnvelopeBatcher::new(None, Dataset::orders(), "L", 0);
        b.push(&envelope.to_bytes(), 0, &|| "p0@0".into());
        let dl = b.take().dead_letters;
        assert_eq!(dl.num_rows(), 1);
        let record = arrow::array::AsArray::as_string::<i32>(dl.column(6)).value(0);
        assert!(
            record.starts_with(r#"{"Quantity":"lots","InvoiceNo":"536365","StockCode""#),
            "{record}"
        );
    }
}
