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
    let (function, args) = group_window(&keys[at]).unwrap_or_default();
    let window = ours(&function, &args)?;
    keys.splice(at..=at, [bound("window_start"), bound("window_end")]);
    let [from] = select.from.as_mut_slice() else {
        return Err("a windowed view reads one source".into());
    };
    let TableFactor::Table {
        name, args: None, ..
    } = &from.relation
    else {
        return Err(format!(
            "GROUP BY {function}(...) groups the rows of a dataset or view named in FROM"
        ));
    };
    from.relation = relation(&window.replace("{source}", &name.to_string()))?;
    window_bounds(select);
    Ok(())
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
/// `HOP_END(...)`, ...
fn bound_named(e: &Expr) -> Option<&'static str> {
    let field = match e {
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [w, field] if w.value.eq_ignore_ascii_case("window") => {
                field.value.to_ascii_lowercase()
            }
            _ => return None,
        },
        Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            let (kind, field) = name.rsplit_once('_')?;
            ["tumble", "hop", "session"]
                .contains(&kind)
                .then(|| field.to_string())?
        }
        _ => return None,
    };
    ["start", "end"].into_iter().find(|f| *f == field)
}

/// The window's bounds as `window_start` and `window_end` wherever they are named; a plain `window` in the
/// select list as both.
fn window_bounds(select: &mut Select) {
    let _ = visit_expressions_mut(select, |e: &mut Expr| {
        if let Some(which) = bound_named(e) {
            *e = bound(&format!("window_{which}"));
        }
        ControlFlow::<()>::Continue(())
    });
    let items = std::mem::take(&mut select.projection);
    for item in items {
        match &item {
            SelectItem::UnnamedExpr(Expr::Identifier(i))
                if i.value.eq_ignore_ascii_case("window") =>
            {
                select
                    .projection
                    .push(SelectItem::UnnamedExpr(bound("window_start")));
                select
                    .projection
                    .push(SelectItem::UnnamedExpr(bound("window_end")));
            }
            _ => select.projection.push(item),
        }
    }
}
