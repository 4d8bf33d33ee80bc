//! Flows: a source's records pass through declared steps on their way to a topic (NiFi's processors).
//!
//! Steps run in order on each record: `rename` fields, `cast` a field to a type, `filter` records by a field's
//! value, `parse` a field holding JSON or `key=value;…` text into fields. A record a step cannot handle (a cast
//! that fails, a parse of bad text) goes to the flow's dead-letter topic with the step and the reason; a record
//! a filter drops is counted, not stored. Declared in the config as `[[live.flows]]`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

/// Types a `cast` step produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CastType {
    /// Whole numbers (`"6"`, `6.0` → 6).
    Integer,
    /// Numbers.
    Number,
    /// Text.
    Text,
}

/// Formats a `parse` step reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParseFormat {
    /// A JSON object.
    Json,
    /// `key=value` pairs separated by `;` or `&`.
    KeyValue,
}

/// One step of a flow.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Renames fields: `{ rename = { order_id = "InvoiceNo" } }`.
    Rename(BTreeMap<String, String>),
    /// Casts a field: `{ cast = { field = "Quantity", to = "integer" } }`. A missing field is left missing.
    Cast {
        /// The field.
        field: String,
        /// The type.
        to: CastType,
    },
    /// Keeps records whose field is (`in`) or is not (`not_in`) one of the values.
    Filter {
        /// The field (its text form is compared).
        field: String,
        /// Keep only these values.
        #[serde(default)]
        r#in: Vec<String>,
        /// Drop these values.
        #[serde(default)]
        not_in: Vec<String>,
    },
    /// Replaces a text field by the fields it holds: `{ parse = { field = "payload", format = "json" } }`.
    Parse {
        /// The field.
        field: String,
        /// Its format.
        format: ParseFormat,
    },
}

/// A flow: `[[live.flows]]` in the config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// Name: the HTTP route is `POST /v1/flows/{name}/records`.
    pub name: String,
    /// Topic the records go to.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Topic for records a step rejects (default `<name>.dead`).
    #[serde(default)]
    pub dead_letter_topic: String,
    /// Steps, in order.
    #[serde(default)]
    pub steps: Vec<Step>,
}

fn default_topic() -> String {
    "orders".into()
}

impl FlowConfig {
    /// The dead-letter topic's name.
    pub fn dead_letter_topic(&self) -> String {
        if self.dead_letter_topic.is_empty() {
            format!("{}.dead", self.name)
        } else {
            self.dead_letter_topic.clone()
        }
    }
}

/// What the steps made of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Goes to the flow's topic.
    Keep(Map<String, Value>),
    /// A filter dropped it.
    Filtered,
    /// A step rejected it: (step number from 1, reason).
    Dead(usize, String),
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn cast(v: &Value, to: CastType) -> Result<Value, String> {
    let t = text(v);
    let t = t.trim();
    match to {
        CastType::Text => Ok(Value::String(t.to_string())),
        CastType::Number => t
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("`{t}` is not a number")),
        CastType::Integer => t
            .parse::<i64>()
            .ok()
            .or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                    .map(|f| f as i64)
            })
            .map(Value::from)
            .ok_or_else(|| format!("`{t}` is not a whole number")),
    }
}

impl FlowConfig {
    /// Runs the steps on one record.
    pub fn apply(&self, mut record: Map<String, Value>) -> Outcome {
        for (i, step) in self.steps.iter().enumerate() {
            let n = i + 1;
            match step {
                Step::Rename(map) => {
                    for (from, to) in map {
                        if let Some(v) = record.remove(from) {
                            record.insert(to.clone(), v);
                        }
                    }
                }
                Step::Cast { field, to } => {
                    if let Some(v) = record.get(field) {
                        match cast(v, *to) {
                            Ok(c) => {
                                record.insert(field.clone(), c);
                            }
                            Err(e) => return Outcome::Dead(n, format!("cast `{field}`: {e}")),
                        }
                    }
                }
                Step::Filter {
                    field,
                    r#in,
                    not_in,
                } => {
                    let v = record.get(field).map(text).unwrap_or_default();
                    if (!r#in.is_empty() && !r#in.contains(&v)) || not_in.contains(&v) {
                        return Outcome::Filtered;
                    }
                }
                Step::Parse { field, format } => {
                    let Some(v) = record.remove(field) else {
                        continue;
                    };
                    let raw = text(&v);
                    let parsed: Map<String, Value> = match format {
                        ParseFormat::Json => match serde_json::from_str::<Value>(&raw) {
                            Ok(Value::Object(o)) => o,
                            _ => {
                                return Outcome::Dead(
                                    n,
                                    format!("parse `{field}`: not a JSON object"),
                                );
                            }
                        },
                        ParseFormat::KeyValue => {
                            let mut m = Map::new();
                            for pair in raw.split([';', '&']).filter(|p| !p.trim().is_empty()) {
                                let Some((k, v)) = pair.split_once('=') else {
                                    return Outcome::Dead(
                                        n,
                                        format!("parse `{field}`: `{pair}` is not key=value"),
                                    );
                                };
                                m.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
                            }
                            m
                        }
                    };
                    record.extend(parsed);
                }
            }
        }
        Outcome::Keep(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(toml_steps: &str) -> FlowConfig {
        toml::from_str(&format!("name = \"shop\"\n{toml_steps}")).unwrap()
    }

    fn rec(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn steps_rename_cast_filter_and_parse_in_order() {
        let f = flow(
            r#"steps = [
                { parse = { field = "meta", format = "key_value" } },
                { rename = { order_id = "InvoiceNo", qty = "Quantity" } },
                { cast = { field = "Quantity", to = "integer" } },
                { filter = { field = "Country", not_in = ["Test"] } },
            ]"#,
        );
        assert_eq!(f.dead_letter_topic(), "shop.dead");
        let out = f.apply(rec(
            r#"{"order_id":"1","qty":"6.0","meta":"Country=France; channel=web"}"#,
        ));
        let Outcome::Keep(r) = out else {
            panic!("{out:?}")
        };
        assert_eq!(r["InvoiceNo"], "1");
        assert_eq!(r["Quantity"], 6);
        assert_eq!(r["Country"], "France");
        assert_eq!(
            f.apply(rec(r#"{"meta":"Country=Test"}"#)),
            Outcome::Filtered
        );
        assert_eq!(
            f.apply(rec(r#"{"qty":"lots"}"#)),
            Outcome::Dead(3, "cast `Quantity`: `lots` is not a whole number".into())
        );
        assert!(matches!(
            f.apply(rec(r#"{"meta":"oops"}"#)),
            Outcome::Dead(1, _)
        ));
    }
}
