//! Spark Structured Streaming's window functions, taken as written for Spark and rewritten to ours on the
//! parsed `SELECT`: `FROM orders GROUP BY window(invoice_date, '1 minute'), country` reads
//! `TUMBLE(orders, invoice_date, INTERVAL '1 minute')` grouped by `window_start, window_end, country`;
//! `window(time, size, slide)` is a `HOP` and `session_window(time, gap)` a `SESSION`. Spark's `window`
//! column is a struct: `window.start` and `window.end` become `window_start` and `window_end`, and a plain
//! `window` in the select list both of them.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, Select, SelectItem,
    SetExpr, Statement, TableFactor, Value, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Rewrites `select` when it groups by Spark's `window(...)` or `session_window(...)`; `Err` says what
/// is wrong with the call.
pub fn rewrite(select: &mut Select) -> Result<(), String> {
    let GroupByExpr::Expressions(keys, _) = &mut select.group_by else {
        return Ok(());
    };
    let Some(at) = keys.iter().position(|k| spark_window(k).is_some()) else {
        return Ok(());
    };
    let (function, args) = spark_window(&keys[at]).unwrap_or_default();
    let window = match (function.as_str(), args.len()) {
        ("window", 2) => format!("TUMBLE({{source}}, {}, {})", args[0], interval(&args[1])),
        ("window", 3) => format!(
            "HOP({{source}}, {}, {}, {})",
            args[0],
            interval(&args[2]),
            interval(&args[1])
        ),
        ("session_window", 2) => {
            format!("SESSION({{source}}, {}, {})", args[0], interval(&args[1]))
        }
        _ => {
            return Err(format!(
                "{function}(...) takes window(time, size), window(time, size, slide) or session_window(time, gap)"
            ));
        }
    };
    keys.splice(at..=at, [bound("window_start"), bound("window_end")]);
    let [from] = select.from.as_mut_slice() else {
        return Err("a windowed view reads one source".into());
    };
    let TableFactor::Table {
        name, args: None, ..
    } = &from.relation
    else {
        return Err("window(...) groups the rows of a dataset or view named in FROM".into());
    };
    from.relation = relation(&window.replace("{source}", &name.to_string()))?;
    struct_fields(select);
    Ok(())
}

/// The function's name (lowercase) and arguments, when `e` is a call of Spark's `window` or `session_window`.
fn spark_window(e: &Expr) -> Option<(String, Vec<Expr>)> {
    let Expr::Function(f) = e else {
        return None;
    };
    let name = f.name.to_string().to_ascii_lowercase();
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    if name != "window" && name != "session_window" {
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

/// `window.start` and `window.end` as `window_start` and `window_end`; a plain `window` in the select list
/// as both.
fn struct_fields(select: &mut Select) {
    let _ = visit_expressions_mut(select, |e: &mut Expr| {
        if let Expr::CompoundIdentifier(parts) = e
            && let [w, field] = parts.as_slice()
            && w.value.eq_ignore_ascii_case("window")
            && ["start", "end"].contains(&field.value.to_ascii_lowercase().as_str())
        {
            *e = bound(&format!("window_{}", field.value.to_ascii_lowercase()));
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
