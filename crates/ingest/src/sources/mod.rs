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
    /// Records read by [`EnvelopeBatcher::push_same_layout`].
    #[cfg(test)]
    fast: usize,
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
            #[cfg(test)]
            fast: 0,
        }
    }

    /// Adds one log record's bytes, received at `received_ms`: an envelope becomes an order or a dead
    /// letter; bytes that are not an envelope become a dead letter too, naming the log position `at` (only
    /// formatted then).
    pub fn push(&mut self, bytes: &[u8], received_ms: i64, at: &dyn Fn() -> String) {
        self.batcher.set_received(Some(received_ms * 1000));
        if self.push_same_layout(bytes) {
            return;
        }
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

    /// The common case, read without building a JSON map: an envelope of the current source whose fields
    /// have the current layout and are strings, numbers or nulls. `false` for anything else (left to
    /// [`EnvelopeBatcher::push`], which handles every case).
    fn push_same_layout(&mut self, bytes: &[u8]) -> bool {
        let Some((columns, source)) = &self.current else {
            return false;
        };
        let Ok(envelope) = serde_json::from_slice::<fast::Envelope<'_>>(bytes) else {
            return false;
        };
        let fields = &envelope.fields.0;
        if envelope.reason.is_some()
            || *envelope.source != **source
            || fields.len() != columns.len()
            || !fields.iter().zip(columns).all(|((k, _), c)| **k == **c)
        {
            return false;
        }
        let row: Vec<&str> = fields.iter().map(|(_, v)| v.as_ref()).collect();
        self.batcher.push_row(envelope.index, &row);
        #[cfg(test)]
        {
            self.fast += 1;
        }
        true
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
            None => Ok(self.canonical.clone()),
            Some(_) => self.layouts.resolve(&cols, &self.canonical.dataset),
        };
        let source: Arc<str> = Arc::from(source);
        match mapping {
            Ok(mapping) => {
                self.batcher.set_source(source.clone(), mapping);
                self.current = Some((cols, source));
                Ok(())
            }
            // The record's dead letter still names where it came from.
            Err(e) => {
                self.batcher.set_source(source, self.canonical.clone());
                self.current = None;
                Err(e.into())
            }
        }
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

/// An envelope read with its strings borrowed from the record's bytes where they have no escapes; see
/// [`EnvelopeBatcher::push_same_layout`].
mod fast {
    use std::borrow::Cow;
    use std::fmt;
    use std::marker::PhantomData;

    use serde::Deserialize;
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

    #[derive(Deserialize)]
    pub(super) struct Envelope<'a> {
        /// A string only (the full parser refuses anything else).
        #[serde(borrow)]
        pub source: Cow<'a, str>,
        pub index: u64,
        #[serde(borrow)]
        pub fields: Fields<'a>,
        #[serde(default)]
        pub reason: Option<IgnoredAny>,
    }

    /// A string, borrowed when it can be.
    pub(super) struct Text<'a>(pub Cow<'a, str>);

    impl std::ops::Deref for Text<'_> {
        type Target = str;
        fn deref(&self) -> &str {
            &self.0
        }
    }

    /// A field's value as [`super::value_text`] reads it; nested values are refused (the slow path
    /// writes them as their JSON).
    struct TextVisitor<'a>(PhantomData<&'a ()>);

    impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
        type Value = Text<'a>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string, number or null")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
            Ok(Text(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
            Ok(Text(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E>(self, v: String) -> Result<Text<'a>, E> {
            Ok(Text(Cow::Owned(v)))
        }
        fn visit_unit<E>(self) -> Result<Text<'a>, E> {
            Ok(Text(Cow::Borrowed("")))
        }
        fn visit_bool<E>(self, v: bool) -> Result<Text<'a>, E> {
            Ok(Text(Cow::Borrowed(if v { "true" } else { "false" })))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Text<'a>, E> {
            Ok(Text(Cow::Owned(v.to_string())))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Text<'a>, E> {
            Ok(Text(Cow::Owned(v.to_string())))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Text<'a>, E> {
            let n = serde_json::Number::from_f64(v).ok_or_else(|| E::custom("not finite"))?;
            Ok(Text(Cow::Owned(n.to_string())))
        }
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(TextVisitor(PhantomData))
        }
    }

    /// The fields in the order they were written (duplicates kept: they fail the layout check).
    pub(super) struct Fields<'a>(pub Vec<(Text<'a>, Text<'a>)>);

    struct FieldsVisitor<'a>(PhantomData<&'a ()>);

    impl<'de: 'a, 'a> Visitor<'de> for FieldsVisitor<'a> {
        type Value = Fields<'a>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Fields<'a>, M::Error> {
            let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
            while let Some(entry) = map.next_entry::<Text<'a>, Text<'a>>()? {
                fields.push(entry);
            }
            Ok(Fields(fields))
        }
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(FieldsVisitor(PhantomData))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::RecordBatch;

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

    /// Every record read alone (by a fresh batcher, so through the slow path) and in one batcher (the
    /// records after the first of each source and layout through the fast path) makes the same rows.
    #[test]
    fn the_fast_path_reads_every_envelope_as_the_full_parser_does() {
        let records: [&[u8]; 10] = [
            br#"{"source":"http:a","index":1,"fields":{"InvoiceNo":"536365","StockCode":"85123A","Quantity":"6","InvoiceDate":"2010-12-01 08:26:00","UnitPrice":"2.55","CustomerID":"17850.0","Country":"United Kingdom"}}"#,
            br#"{"source":"http:a","index":2,"fields":{"InvoiceNo":"536366","StockCode":"22633","Quantity":6,"InvoiceDate":"2010-12-01 08:28:00","UnitPrice":1.85,"CustomerID":null,"Country":"Uni\u0074ed \"Kingdom\""}}"#,
            br#"{"source":"http:a","index":3,"fields":{"InvoiceNo":"536367","StockCode":"22633","Quantity":"lots","InvoiceDate":"2010-12-01 08:28:00","UnitPrice":"1.85","CustomerID":"13047","Country":"France"}}"#,
            br#"{"source":"http:a","index":4,"fields":{"InvoiceNo":"536368","StockCode":"22633","Quantity":2,"InvoiceDate":"2010-12-01 08:29:00","UnitPrice":[1],"CustomerID":"13047","Country":"France"}}"#,
            br#"{"source":"http:a","index":5,"fields":{"StockCode":"22633","InvoiceNo":"536369","Quantity":2,"InvoiceDate":"2010-12-01 08:29:00","UnitPrice":"3.1","CustomerID":"13047","Country":"France"}}"#,
            br#"{"source":"http:a","index":6,"fields":{"InvoiceNo":"536370","StockCode":"22633","Quantity":2,"InvoiceDate":"2010-12-01 08:29:00","UnitPrice":"3.1","CustomerID":"13047","Country":"France"},"reason":"not JSON"}"#,
            br#"{"source":"http:b","index":1,"fields":{"InvoiceNo":"536371","StockCode":"22633","Quantity":2,"InvoiceDate":"2010-12-01 08:29:00","UnitPrice":"3.1","CustomerID":"13047","Country":"France"}}"#,
            br#"{"source":"http:b","index":2,"fields":{"InvoiceNo":"536372","StockCode":"22633","StockCode":"1","InvoiceDate":"2010-12-01 08:29:00","UnitPrice":"3.1","CustomerID":"13047","Country":"France"}}"#,
            br#"{"source":"http:b","index":3,"fields":{"InvoiceNo":"536373","StockCode":"22633","Quantity":true,"InvoiceDate":"2010-12-01 08:29:00","UnitPrice":"3.1","CustomerID":"13047","Country":"France"},"checkpoint":{"page":2}}"#,
            br#"{"source":7,"index":4,"fields":{"InvoiceNo":"536374","StockCode":"22633","Quantity":2,"InvoiceDate":"2010-12-01 08:29:00","UnitPrice":"3.1","CustomerID":"13047","Country":"France"}}"#,
        ];
        let chunk = |records: &[&[u8]]| {
            let mut b = EnvelopeBatcher::new(None, Dataset::orders(), "L", 0);
            for r in records {
                b.push(r, 7, &|| "p0@0".into());
            }
            (b.take(), b.fast)
        };
        let (together, fast) = chunk(&records);
        // Records 2 and 3 (the source and layout of 1, scalar values) take the fast path; 3 is still
        // refused, by the mapping.
        assert_eq!(fast, 2);
        let alone: Vec<Chunk> = records.iter().map(|r| chunk(&[*r]).0).collect();
        let concat = |f: &dyn Fn(&Chunk) -> &RecordBatch| {
            let batches: Vec<&RecordBatch> = alone.iter().map(f).collect();
            arrow::compute::concat_batches(&f(&together).schema(), batches).unwrap()
        };
        assert_eq!(together.rows, concat(&|c| &c.rows));
        let letters = concat(&|c| &c.dead_letters);
        for (i, f) in letters.schema().fields().iter().enumerate() {
            assert_eq!(
                together.dead_letters.column(i),
                letters.column(i),
                "{}",
                f.name()
            );
        }
        assert_eq!(together.raw, concat(&|c| &c.raw));
        // The well-formed lines load, the rest are dead letters.
        assert_eq!(together.rows.num_rows(), 4, "{:?}", together.dead_letters);
        assert_eq!(together.dead_letters.num_rows(), 6);
    }
}
