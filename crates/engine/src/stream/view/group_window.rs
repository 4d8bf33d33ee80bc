//! Windows named in `GROUP BY`, as Spark Structured Streaming and Flink's group windows write them, rewritten
//! to ours on the parsed `SELECT`:
//! - Spark: `FROM orders GROUP BY window(invoice_date, '1 minute'), country` reads
//!   `TUMBLE(orders, invoice_date, INTERVAL '1 minute')` grouped by `window_start, window_end, country`;
//!   `window(time, size, slide)` is a `HOP` and `session_window(time, gap)` a `SESSION`. Spark's `window`
//!   column is a struct: `window.start` and `window.end` become `window_start` and `window_end`, and a plain
//!   `window` in the select list both of them.
//! - Flink: `GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE)`, `HOP(ts, slide, size)`, `SESSION(ts, gap)`, with
//!   `TUMBLE_START(...)`, `TUMBLE_END(...)` (and `HOP_`, `SESSION_`) in the select list.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, Select, SelectItem,
    SetExpr, Statement, TableFactor, Value, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// The window functions a `GROUP BY` may name.
const FUNCTIONS: [&str; 5] = ["window", "session_window", "tumble", "hop", "session"];

/// Rewrites `select` when it groups by a window function; `Err` says what is wrong with the call.
pub fn rewrite(select: &mut Select) -> Result<(), String> {
    let GroupByExpr::Expressions(keys, _) = &mut select.group_by else {
        return Ok(());
    };
    let Some(at) = keys.iter().position(|k| group_window(k).is_some()) else {
        return Ok(());
    };
    let (function, mut args) = group_window(&keys[at]).unwrap_or_default();
    if keys.iter().filter(|k| group_window(k).is_some()).count() > 1 {
        return Err("a view groups by one window".into());
    }
    if keys.iter().any(|k| matches!(k, Expr::Value(_))) {
        return Err(format!(
            "GROUP BY {function}(...) with GROUP BY positions: name the columns instead"
        ));
    }
    // The time column as the window's source has it (`o.ts` is `ts` of `orders AS o`).
    if let Some(Expr::CompoundIdentifier(parts)) = args.first()
        && let Some(column) = parts.last()
    {
        args[0] = Expr::Identifier(column.clone());
    }
    let window = ours(&function, &args)?;
    keys.splice(at..=at, [bound("window_start"), bound("window_end")]);
    let [from] = select.from.as_mut_slice() else {
        return Err("a windowed view reads one source".into());
    };
    let TableFactor::Table {
        name,
        args: None,
        alias,
        ..
    } = &from.relation
    else {
        return Err(format!(
            "GROUP BY {function}(...) groups the rows of a dataset or view named in FROM"
        ));
    };
    let alias = alias.clone();
    from.relation = relation(&window.replace("{source}", &name.to_string()))?;
    if let TableFactor::Table { alias: kept, .. } = &mut from.relation {
        *kept = alias;
    }
    window_bounds(select)
}

/// Our window for `function(args)`, with `{source}` for the source.
fn ours(function: &str, args: &[Expr]) -> Result<String, String> {
    let a: Vec<String> = args.iter().map(interval).collect();
    Ok(match (function, a.as_slice()) {
        ("window" | "tumble", [t, size]) => format!("TUMBLE({{source}}, {t}, {size})"),
        ("window", [t, size, slide]) | ("hop", [t, slide, size]) => {
            format!("HOP({{source}}, {t}, {slide}, {size})")
        }
        ("session_window" | "session", [t, gap]) => format!("SESSION({{source}}, {t}, {gap})"),
        ("window" | "session_window", _) => {
            return Err(format!(
                "{function}(...) takes window(time, size), window(time, size, slide) or \
                 session_window(time, gap)"
            ));
        }
        _ => {
            return Err(format!(
                "GROUP BY {function}(...) takes TUMBLE(time, size), HOP(time, slide, size) or \
                 SESSION(time, gap)"
            ));
        }
    })
}

/// The function's name (lowercase) and arguments, when `e` calls a window function.
fn group_window(e: &Expr) -> Option<(String, Vec<Expr>)> {
    let Expr::Function(f) = e else {
        return None;
    };
    let name = f.name.to_string().to_ascii_lowercase();
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    if !FUNCTIONS.contains(&name.as_str()) {
        return None;
    }
    let args = list.args.iter().map(|a| match a {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
        _ => None,
    });
    Some((name, args.collect::<Option<_>>()?))
}

/// Spark's duration strings (`'10 minutes'`) as intervals; other expressions as they are.
fn interval(e: &Expr) -> String {
    match e {
        Expr::Value(v) if matches!(v.value, Value::SingleQuotedString(_)) => {
            format!("INTERVAL {e}")
        }
        _ => e.to_string(),
    }
}

fn bound(name: &str) -> Expr {
    Expr::Identifier(Ident::new(name))
}

/// The `FROM` relation of `SELECT 1 FROM <text>`.
fn relation(text: &str) -> Result<TableFactor, String> {
    let parsed = Parser::parse_sql(&GenericDialect {}, &format!("SELECT 1 FROM {text}"))
        .map_err(|e| format!("the window does not parse: {e}"))?;
    match parsed.into_iter().next() {
        Some(Statement::Query(q)) => match *q.body {
            SetExpr::Select(s) => s.from.into_iter().next().map(|f| f.relation),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| format!("the window does not parse: {text}"))
}

/// `start` or `end`, when `e` is Spark's `window.start` / `window.end` or Flink's `TUMBLE_START(...)`,
/// `HOP_END(...)`, ...; `Err` for the ones there is no column for (Flink's `TUMBLE_ROWTIME(...)`).
fn bound_named(e: &Expr) -> Result<Option<&'static str>, String> {
    let (field, named) = match e {
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [w, field] if is_window(w) => (field.value.to_ascii_lowercase(), e.to_string()),
            _ => return Ok(None),
        },
        Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            match name.rsplit_once('_') {
                Some((kind, field)) if ["tumble", "hop", "session"].contains(&kind) => {
                    (field.to_string(), format!("{}(...)", f.name))
                }
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    match field.as_str() {
        "start" => Ok(Some("start")),
        "end" => Ok(Some("end")),
        _ => Err(format!(
            "{named}: a window has window_start and window_end, no other bound"
        )),
    }
}

/// The window's bounds as `window_start` and `window_end` wherever they are named; a plain `window` in the
/// select list as both.
fn window_bounds(select: &mut Select) -> Result<(), String> {
    let refused = visit_expressions_mut(select, |e: &mut Expr| match bound_named(e) {
        Ok(Some(which)) => {
            *e = bound(&format!("window_{which}"));
            ControlFlow::Continue(())
        }
        Ok(None) => ControlFlow::Continue(()),
        Err(reason) => ControlFlow::Break(reason),
    });
    if let ControlFlow::Break(reason) = refused {
        return Err(reason);
    }
    let items = std::mem::take(&mut select.projection);
    for item in items {
        match &item {
            SelectItem::UnnamedExpr(Expr::Identifier(i)) if is_window(i) => {
                select
                    .projection
                    .push(SelectItem::UnnamedExpr(bound("window_start")));
                select
                    .projection
                    .push(SelectItem::UnnamedExpr(bound("window_end")));
            }
            SelectItem::ExprWithAlias {
                expr: Expr::Identifier(i),
                alias,
            } if is_window(i) => {
                return Err(format!(
                    "`window AS {alias}`: a window is two columns here, window_start and window_end; \
                     select window.start and window.end"
                ));
            }
            _ => select.projection.push(item),
        }
    }
    Ok(())
}

fn is_window(i: &Ident) -> bool {
    i.quote_style.is_none() && i.value.eq_ignore_ascii_case("window")
}
