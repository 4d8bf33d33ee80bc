//! SQL functions shopstream puts in every session: `to_char(timestamp, template)` with PostgreSQL's
//! template patterns (`YYYY-MM-DD HH24:MI`, `FMDD Mon`, quoted text), which BI tools and people write.
//! DataFusion's own `to_char` takes chrono's `%Y-%m-%d` and prints a PostgreSQL template back as it is,
//! a silently wrong answer. A format with `%` in it is taken as chrono's, so both kinds work. Month and
//! day names come as chrono spells them (`December`, `Dec`), whatever the pattern's case; patterns with
//! no chrono equivalent (`Q`, `D`, `WW`, `SSSS`, `TH`) are an error rather than text.

use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result;
use datafusion::functions::datetime::to_char::ToCharFunc;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// Registers the functions of this module in `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(PgToChar {
        inner: ToCharFunc::new(),
    }));
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgToChar {
    inner: ToCharFunc,
}

/// Name patterns: matched with their case (which in PostgreSQL sets the output's case).
const NAMES: &[(&str, &str)] = &[
    ("MONTH", "%B"),
    ("Month", "%B"),
    ("month", "%B"),
    ("MON", "%b"),
    ("Mon", "%b"),
    ("mon", "%b"),
    ("DAY", "%A"),
    ("Day", "%A"),
    ("day", "%A"),
    ("DY", "%a"),
    ("Dy", "%a"),
    ("dy", "%a"),
    ("AM", "%p"),
    ("PM", "%p"),
    ("am", "%P"),
    ("pm", "%P"),
];

/// Number patterns, in any case, longest first (`HH24` is not `HH` and `24`): (pattern, chrono,
/// chrono without padding, after `FM`).
const NUMBERS: &[(&str, &str, &str)] = &[
    ("HH24", "%H", "%-H"),
    ("HH12", "%I", "%-I"),
    ("IYYY", "%G", "%G"),
    ("YYYY", "%Y", "%Y"),
    ("DDD", "%j", "%-j"),
    ("HH", "%I", "%-I"),
    ("MI", "%M", "%-M"),
    ("SS", "%S", "%-S"),
    ("MS", "%3f", "%3f"),
    ("US", "%6f", "%6f"),
    ("YY", "%y", "%y"),
    ("MM", "%m", "%-m"),
    ("DD", "%d", "%-d"),
    ("IW", "%V", "%-V"),
];

/// PostgreSQL patterns chrono has no equivalent for.
const UNSUPPORTED: &[&str] = &[
    "SSSS", "Y,YYY", "YYY", "WW", "TH", "TZ", "OF", "Q", "CC", "J", "RM", "D",
];

fn starts_with_any_case(s: &str, p: &str) -> bool {
    s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p))
}

/// A PostgreSQL `to_char` template as a chrono format; an error names a pattern with no equivalent.
fn pg_to_chrono(template: &str) -> Result<String> {
    if template.contains('%') {
        return Ok(template.to_string());
    }
    let mut out = String::with_capacity(template.len() + 8);
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        // `FM` (fill mode) drops the padding of the pattern right after it.
        let (fill, body) = if starts_with_any_case(rest, "FM") {
            (true, &rest[2..])
        } else {
            (false, rest)
        };
        if let Some((p, chrono)) = NAMES.iter().find(|(p, _)| body.starts_with(p)) {
            out.push_str(chrono);
            rest = &body[p.len()..];
            continue;
        }
        let number = NUMBERS
            .iter()
            .find(|(p, _, _)| starts_with_any_case(body, p));
        let unsupported = UNSUPPORTED
            .iter()
            .filter(|p| starts_with_any_case(body, p))
            .max_by_key(|p| p.len());
        match (number, unsupported) {
            // The longer pattern wins: `SSSS` is not `SS` twice, and `YYYY` is not `YYY`.
            (Some((p, padded, unpadded)), u) if u.is_none_or(|u| u.len() <= p.len()) => {
                out.push_str(if fill { unpadded } else { padded });
                rest = &body[p.len()..];
                continue;
            }
            (_, Some(u)) => {
                return exec_err!(
                    "to_char: the template pattern {u} is not supported (in \"{template}\")"
                );
            }
            _ => {}
        }
        if fill {
            rest = body;
            continue;
        }
        if c == '"' {
            // Quoted text is copied as it is.
            let end = rest[1..].find('"').map_or(rest.len(), |i| i + 2);
            out.push_str(&rest[1..end].replace('"', ""));
            rest = &rest[end..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Ok(out)
}

impl ScalarUDFImpl for PgToChar {
    fn name(&self) -> &str {
        "to_char"
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some(format) = args.args.get_mut(1) {
            *format = match &*format {
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(f))) => {
                    ColumnarValue::Scalar(ScalarValue::Utf8(Some(pg_to_chrono(f)?)))
                }
                ColumnarValue::Array(a) => {
                    let a = arrow::compute::cast(a, &DataType::Utf8)?;
                    let a = a
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .expect("cast to Utf8");
                    let out = a
                        .iter()
                        .map(|f| f.map(pg_to_chrono).transpose())
                        .collect::<Result<StringArray>>()?;
                    ColumnarValue::Array(Arc::new(out))
                }
                other => other.clone(),
            };
        }
        self.inner.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgresql_templates_become_chrono_formats() {
        let t = |s: &str| pg_to_chrono(s).unwrap();
        assert_eq!(t("YYYY-MM-DD HH24:MI:SS"), "%Y-%m-%d %H:%M:%S");
        assert_eq!(
            t("yyyy-mm-dd hh24:mi"),
            "%Y-%m-%d %H:%M",
            "number patterns in any case"
        );
        assert_eq!(t("FMDD Mon YYYY"), "%-d %b %Y");
        assert_eq!(t("fmdd FMMonth"), "%-d %B");
        assert_eq!(t("YYYY\"Q\"MM"), "%YQ%m");
        assert_eq!(t("HH12:MI AM"), "%I:%M %p");
        assert_eq!(t("hh12:mi am"), "%I:%M %P");
        assert_eq!(t("%Y-%m"), "%Y-%m", "chrono's formats pass");
        assert_eq!(t("\"unclosed"), "unclosed");
        assert_eq!(t("é FM"), "é ");
        assert!(pg_to_chrono("YYYY-Q").is_err(), "no quarter in chrono");
        assert!(pg_to_chrono("SSSS").is_err());
    }
}
