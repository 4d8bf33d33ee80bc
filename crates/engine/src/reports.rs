//! The built-in reports: the seed's analytics as named, parameterised SQL files.
//!
//! Each report is a `.sql` file in `crates/engine/reports/`, embedded in the binary. Its leading
//! `-- key: value` comments are its documentation (title, description, how cancellations and
//! missing customers are treated) and its parameters (`-- param NAME: int|float|text = DEFAULT`).
//! Parameters are substituted as SQL literals after validation (numbers parsed, text quoted), so a
//! parameter can never change the query's shape.

use std::collections::BTreeMap;

use crate::error::{EngineError, Result};

macro_rules! reports {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../reports/", $name, ".sql")))),*]
    };
}

const SOURCES: &[(&str, &str)] = reports![
    "avg_quantity_per_country",
    "country_customers",
    "customer_count_per_invoice",
    "customer_total_price",
    "customers_by_category",
    "daily_revenue",
    "high_value_transactions",
    "monthly_revenue",
    "product_description_filter",
    "quantity_customer_filter",
    "rfm",
    "top_countries_by_quantity",
    "top_products_by_revenue",
    "unit_price_extremes",
    "unit_price_per_customer",
];

/// Type of a report parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// A whole number.
    Int,
    /// A number.
    Float,
    /// Text (substituted as a quoted SQL string).
    Text,
}

/// A report parameter.
#[derive(Debug, Clone)]
pub struct Param {
    /// Name used in `--param name=value`.
    pub name: String,
    /// Its type.
    pub kind: ParamType,
    /// Value used when not given.
    pub default: String,
}

/// A built-in report.
#[derive(Debug, Clone)]
pub struct Report {
    /// Name used on the command line.
    pub name: &'static str,
    /// Documentation keys from the header comments (title, description, cancellations, missing customers).
    pub doc: BTreeMap<String, String>,
    /// Parameters.
    pub params: Vec<Param>,
    /// SQL with `{{param}}` placeholders.
    pub sql: &'static str,
}

impl Report {
    fn parse(name: &'static str, sql: &'static str) -> Report {
        let mut doc = BTreeMap::new();
        let mut params = Vec::new();
        for line in sql.lines().take_while(|l| l.starts_with("--")) {
            let line = line.trim_start_matches("--").trim();
            if let Some(rest) = line.strip_prefix("param ") {
                // `NAME: TYPE = DEFAULT`
                let (pname, rest) = rest
                    .split_once(':')
                    .expect("report param has `name: type = default`");
                let (ty, default) = rest.split_once('=').expect("report param has a default");
                let kind = match ty.trim() {
                    "int" => ParamType::Int,
                    "float" => ParamType::Float,
                    _ => ParamType::Text,
                };
                params.push(Param {
                    name: pname.trim().into(),
                    kind,
                    default: default.trim().into(),
                });
            } else if let Some((k, v)) = line.split_once(':') {
                doc.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        Report {
            name,
            doc,
            params,
            sql,
        }
    }

    /// The report's title.
    pub fn title(&self) -> &str {
        self.doc.get("title").map_or(self.name, String::as_str)
    }

    /// The SQL with parameters substituted; `values` overrides defaults, unknown names are errors.
    pub fn render(&self, values: &BTreeMap<String, String>) -> Result<String> {
        for k in values.keys() {
            if !self.params.iter().any(|p| &p.name == k) {
                let known: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
                return Err(EngineError::Report(format!(
                    "report `{}` has no parameter `{k}` (parameters: {})",
                    self.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
        }
        let mut sql = self.sql.to_string();
        for p in &self.params {
            let value = values.get(&p.name).unwrap_or(&p.default);
            let literal = match p.kind {
                ParamType::Int => value.trim().parse::<i64>().map(|v| v.to_string()).ok(),
                ParamType::Float => value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .map(|v| format!("{v:?}")),
                ParamType::Text => Some(format!("'{}'", value.replace('\'', "''"))),
            }
            .ok_or_else(|| {
                EngineError::Report(format!(
                    "parameter `{}` of report `{}`: `{value}` is not a {:?}",
                    p.name, self.name, p.kind
                ))
            })?;
            sql = sql.replace(&format!("{{{{{}}}}}", p.name), &literal);
        }
        Ok(sql)
    }
}

/// All built-in reports, sorted by name.
pub fn all() -> Vec<Report> {
    SOURCES.iter().map(|(n, s)| Report::parse(n, s)).collect()
}

/// The report called `name`.
pub fn find(name: &str) -> Result<Report> {
    all().into_iter().find(|r| r.name == name).ok_or_else(|| {
        EngineError::Report(format!(
            "no report named `{name}`; `shopstream report list` shows them"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_report_documents_cancellations_and_missing_customers() {
        for r in all() {
            for key in ["title", "description", "cancellations", "missing customers"] {
                assert!(
                    r.doc.contains_key(key),
                    "report {} lacks `-- {key}:`",
                    r.name
                );
            }
        }
    }

    #[test]
    fn text_params_are_quoted_and_numbers_checked() {
        let r = find("product_description_filter").unwrap();
        let mut v = BTreeMap::new();
        v.insert("word".to_string(), "it's".to_string());
        assert!(r.render(&v).unwrap().contains("UPPER('it''s')"));
        let r = find("top_countries_by_quantity").unwrap();
        v.clear();
        v.insert("n".to_string(), "5; DROP TABLE orders".to_string());
        assert!(r.render(&v).is_err());
        v.clear();
        v.insert("bogus".to_string(), "1".to_string());
        assert!(
            r.render(&v)
                .unwrap_err()
                .to_string()
                .contains("no parameter `bogus`")
        );
    }
}
