//! What BI clients send on connect that datafusion-postgres 0.19 does not answer, mended before it gets
//! there. Each mend names the client that needs it; the replayed fixtures and real-client tests in
//! `tests/clients` pin them.
//!
//! - **Statement text** ([`rewrite`]): `pg_proc.oid = pg_type.typreceive` compares an oid with a
//!   `regproc` column that the emulated catalog keeps as the function's name (Npgsql's type loader, which
//!   Power BI runs on connect): the name side becomes `to_regproc(name)`. `generate_subscripts(a, d)`,
//!   a set-returning function DataFusion lacks, becomes `unnest(generate_series(1, array_length(a, d)))`
//!   (SQLAlchemy's primary-key, unique and index queries). Grafana's "schema on the `search_path`" subquery, which
//!   the pg-catalog parser blanks out, becomes `array_has` over `current_setting('search_path')`.
//!   pgjdbc's `information_schema._pg_expandarray(a)` rows (`.x`, `.n`) become `unnest(a)` and
//!   `unnest` of its subscripts (keys and indexes); its `typinput = 'array_in'::regproc` compares
//!   names; its type cache's correlated `(SELECT c.relkind = 'c' …)` becomes an `IN` subquery.
//! - **Parameter types**: a `$n::type` inside a subquery is left untyped by datafusion-postgres, which
//!   then decodes the bound value as the wrong type (SQLAlchemy's column query); [`CompatParser`] types
//!   every cast placeholder in the plan, subqueries included, and puts back the placeholders of a
//!   subquery the pg-catalog rewrite dropped, so later values keep their positions.
//! - **Catalog**: `pg_index`'s and `pg_constraint`'s vector and array columns become arrays so `unnest` and subscripts
//!   work (as 1-based arrays: PostgreSQL's vectors count from 0, which only shifts the subscripts pgjdbc
//!   and SQLAlchemy read for expression indexes, which the lake has none of), `pg_class` has `reloptions`
//!   and `relacl`, `pg_user` exists (Npgsql's `GetSchema`), `pg_settings` lists the endpoint's settings
//!   (pgjdbc reads `max_index_keys` there), and `pg_type_is_visible` and `pg_get_indexdef` exist. See
//!   [`extend_pg_catalog`].

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::ops::ControlFlow;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int16Builder, Int32Array, Int32Builder, ListBuilder,
    RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::plan_err;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::expr::{Cast, Placeholder};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    AccessExpr, BinaryOperator, Expr as SqlExpr, Statement, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser as SqlParser;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, Parser};
use futures::Sink;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

/// The `regproc` columns of `pg_type`: the emulated catalog stores the function's name in them.
const REGPROC_COLUMNS: &[&str] = &[
    "typinput",
    "typoutput",
    "typreceive",
    "typsend",
    "typmodin",
    "typmodout",
    "typanalyze",
    "typsubscript",
];

/// Text swaps made before parsing: (what the client sends, what answers it), compared token by token
/// (whitespace and the case of keywords ignored).
const TEXT_SWAPS: &[(&str, &str)] = &[
    (
        // Grafana's table and column lists (postgresMetaQuery.ts): is the schema on the search path? As
        // a function rather than a subquery, since the table list also sorts by it.
        r#"quote_ident(table_schema) IN (
        SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
        FROM
            generate_series(
                array_lower(string_to_array(current_setting('search_path'),','),1),
                array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
    )"#,
        "array_has(string_to_array(replace(current_setting('search_path'), ' ', ''), ','), quote_ident(table_schema))",
    ),
    (
        // pgjdbc's type cache (TypeInfoCache, used by getTypeInfo): a correlated scalar subquery DataFusion
        // cannot plan under OR; the same as an IN subquery.
        "(SELECT c.relkind = 'c' FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid)",
        "t.typrelid IN (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relkind = 'c')",
    ),
];

/// A token compared loosely: unquoted words in lower case.
fn loose(token: &Token) -> Token {
    match token {
        Token::Word(w) if w.quote_style.is_none() => {
            Token::make_word(&w.value.to_lowercase(), None)
        }
        t => t.clone(),
    }
}

fn tokens(sql: &str) -> Option<Vec<TokenWithSpan>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    Some(
        tokens
            .into_iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .collect(),
    )
}

/// The byte offset of a tokenizer location (1-based line and character column) in `sql`.
fn byte_offset(sql: &str, at: Location) -> usize {
    let mut line_start = 0;
    for _ in 1..at.line {
        match sql[line_start..].find('\n') {
            Some(i) => line_start += i + 1,
            None => return sql.len(),
        }
    }
    sql[line_start..]
        .char_indices()
        .nth(at.column.saturating_sub(1) as usize)
        .map_or(sql.len(), |(i, _)| line_start + i)
}

/// Applies [`TEXT_SWAPS`], splicing the original text so everything else stays byte for byte.
fn swap_text(sql: &str) -> Cow<'_, str> {
    let lower = sql.to_ascii_lowercase();
    if !lower.contains("current_setting") && !lower.contains("relkind") {
        return Cow::Borrowed(sql);
    }
    let Some(input) = tokens(sql) else {
        return Cow::Borrowed(sql);
    };
    static PATTERNS: LazyLock<Vec<(Vec<Token>, &str)>> = LazyLock::new(|| {
        TEXT_SWAPS
            .iter()
            .map(|(from, to)| {
                let from = tokens(from).expect("TEXT_SWAPS tokenize");
                (from.iter().map(|t| loose(&t.token)).collect(), *to)
            })
            .collect()
    });
    let input_loose: Vec<Token> = input.iter().map(|t| loose(&t.token)).collect();
    let mut out = String::new();
    let mut copied = 0;
    let mut changed = false;
    let mut i = 0;
    while i < input.len() {
        let hit = PATTERNS
            .iter()
            .find(|(pattern, _)| input_loose[i..].starts_with(pattern));
        match hit {
            Some((pattern, to)) => {
                out.push_str(&sql[copied..byte_offset(sql, input[i].span.start)]);
                out.push_str(to);
                copied = byte_offset(sql, input[i + pattern.len() - 1].span.end);
                changed = true;
                i += pattern.len();
            }
            None => i += 1,
        }
    }
    if !changed {
        return Cow::Borrowed(sql);
    }
    out.push_str(&sql[copied..]);
    Cow::Owned(out)
}

/// The last name of a column reference (`a.typreceive` → `typreceive`).
fn column_name(e: &SqlExpr) -> Option<String> {
    match e {
        SqlExpr::Identifier(i) => Some(i.value.to_ascii_lowercase()),
        SqlExpr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.to_ascii_lowercase()),
        _ => None,
    }
}

/// Replaces `e` by the expression `sql`; false (and `e` unchanged) if it does not parse.
fn replace(e: &mut SqlExpr, sql: &str) -> bool {
    match parse_expr(sql) {
        Some(new) => {
            *e = new;
            true
        }
        None => false,
    }
}

fn parse_expr(sql: &str) -> Option<SqlExpr> {
    SqlParser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}

/// The function's name (last part, lower case) and its arguments' text, without the parentheses.
fn function_call(e: &SqlExpr) -> Option<(String, String)> {
    let SqlExpr::Function(f) = e else {
        return None;
    };
    let name = f.name.0.last()?.as_ident()?.value.to_ascii_lowercase();
    let args = f.args.to_string();
    let args = args.strip_prefix('(')?.strip_suffix(')')?.to_string();
    Some((name, args))
}

/// A `'name'::regproc` literal's name, without a `pg_catalog.` prefix.
fn regproc_literal(e: &SqlExpr) -> Option<String> {
    let SqlExpr::Cast {
        expr, data_type, ..
    } = e
    else {
        return None;
    };
    if !data_type
        .to_string()
        .to_ascii_lowercase()
        .ends_with("regproc")
    {
        return None;
    }
    let name = match &**expr {
        SqlExpr::Value(v) => v.value.clone().into_string()?,
        _ => return None,
    };
    Some(
        name.strip_prefix("pg_catalog.")
            .unwrap_or(&name)
            .to_string(),
    )
}

/// Rewrites one expression in place (children first); true when it changed. `expandarray`: the
/// statement uses `information_schema._pg_expandarray`, whose rows' `.x` and `.n` fields are read.
fn rewrite_expr(e: &mut SqlExpr, expandarray: bool) -> bool {
    // _pg_expandarray(a) yields (x, n) rows: the elements of `a` and their subscripts. As columns:
    // `(…).x` is `unnest(a)`, `(…).n` is `unnest(generate_series(1, array_length(a, 1)))`.
    if expandarray {
        if let Some((name, args)) = function_call(e)
            && name == "_pg_expandarray"
        {
            return replace(e, &format!("unnest({args})"));
        }
        if let SqlExpr::CompoundFieldAccess { root, access_chain } = e
            && let [AccessExpr::Dot(SqlExpr::Identifier(field))] = access_chain.as_slice()
        {
            let mut root = &**root;
            while let SqlExpr::Nested(inner) = root {
                root = inner;
            }
            let field = field.value.to_ascii_lowercase();
            let new = match (function_call(root), field.as_str()) {
                (Some((f, args)), "n") if f == "unnest" => {
                    format!("unnest(generate_series(1, array_length({args}, 1)))")
                }
                (Some((f, _)), "x") if f == "unnest" => root.to_string(),
                // A column that holds an expanded array's `x`.
                (None, "x") if column_name(root).is_some() => root.to_string(),
                _ => return false,
            };
            return replace(e, &new);
        }
    }
    match e {
        SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            let is_regproc =
                |e: &SqlExpr| column_name(e).is_some_and(|n| REGPROC_COLUMNS.contains(&n.as_str()));
            let is_oid = |e: &SqlExpr| column_name(e).is_some_and(|n| n == "oid");
            // `typinput = 'array_in'::regproc`: the catalog keeps names, so compare names.
            if is_regproc(left)
                && let Some(name) = regproc_literal(right)
            {
                return replace(right, &format!("'{}'", name.replace('\'', "''")));
            }
            if is_regproc(right)
                && let Some(name) = regproc_literal(left)
            {
                return replace(left, &format!("'{}'", name.replace('\'', "''")));
            }
            let side = if is_regproc(left) && is_oid(right) {
                left
            } else if is_regproc(right) && is_oid(left) {
                right
            } else {
                return false;
            };
            let new = format!("to_regproc({side})");
            replace(side, &new)
        }
        SqlExpr::Function(f)
            if f.name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("generate_subscripts")) =>
        {
            // generate_subscripts(array, dim) → the subscripts 1..=array_length(array, dim), row by row.
            let new = format!("unnest(generate_series(1, array_length{}))", f.args);
            replace(e, &new)
        }
        _ => false,
    }
}

/// Applies the mends of this module to a statement's text; borrowed when nothing applies.
pub fn rewrite(sql: &str) -> Cow<'_, str> {
    let swapped = swap_text(sql);
    let lower = swapped.to_ascii_lowercase();
    let expandarray = lower.contains("_pg_expandarray");
    let wants_ast = expandarray
        || lower.contains("generate_subscripts")
        || REGPROC_COLUMNS.iter().any(|c| lower.contains(c));
    // `unnest((SELECT …))` is beyond DataFusion; datafusion-pg-catalog answers the one client query that
    // sends it (pgcli's foreign keys) by matching its text, which a rewrite here would change.
    let squeezed: String = lower.split_whitespace().collect();
    if !wants_ast || squeezed.contains("unnest((select") {
        return swapped;
    }
    let Ok(mut statements) = SqlParser::parse_sql(&PostgreSqlDialect {}, &swapped) else {
        return swapped;
    };
    // The `(col).x` rule only where the statement really calls _pg_expandarray (not in a literal).
    let expandarray = expandarray && {
        use datafusion::sql::sqlparser::ast::visit_expressions;
        statements.iter().any(|s| {
            visit_expressions(s, |e: &SqlExpr| {
                if function_call(e).is_some_and(|(name, _)| name == "_pg_expandarray") {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .is_break()
        })
    };
    let mut changed = false;
    for statement in &mut statements {
        let _ = visit_expressions_mut(statement, |e: &mut SqlExpr| {
            changed |= rewrite_expr(e, expandarray);
            ControlFlow::<()>::Continue(())
        });
    }
    if !changed {
        return swapped;
    }
    Cow::Owned(
        statements
            .iter()
            .map(Statement::to_string)
            .collect::<Vec<_>>()
            .join(";\n"),
    )
}

/// Types every `$n::type` in the plan, in subqueries too, as its cast (datafusion-postgres only looks
/// at the outer query and leaves the others untyped).
fn type_cast_placeholders(plan: LogicalPlan) -> Result<LogicalPlan> {
    // Only parameters DataFusion left untyped everywhere: one typed by a column keeps that type.
    let untyped: HashSet<String> = plan
        .get_parameter_types()?
        .into_iter()
        .filter_map(|(id, t)| t.is_none().then_some(id))
        .collect();
    if untyped.is_empty() {
        return Ok(plan);
    }
    plan.transform_up_with_subqueries(|node| {
        node.map_expressions(|expr| {
            expr.transform_up(|e| match e {
                Expr::Cast(Cast { expr, field })
                    if matches!(&*expr, Expr::Placeholder(Placeholder { field: None, id })
                        if untyped.contains(id)) =>
                {
                    let Expr::Placeholder(Placeholder { id, .. }) = *expr else {
                        unreachable!("matched above")
                    };
                    let typed = Placeholder {
                        id,
                        field: Some(Arc::new(Field::new("", field.data_type().clone(), true))),
                    };
                    Ok(Transformed::yes(Expr::Cast(Cast {
                        expr: Box::new(Expr::Placeholder(typed)),
                        field,
                    })))
                }
                e => Ok(Transformed::no(e)),
            })
        })
    })
    .map(|t| t.data)
}

/// PostgreSQL's limit on the parameters of a statement (the Bind message counts them in 16 bits).
const MAX_PARAMETERS: usize = 65535;

/// The highest `$n` in a statement's text.
fn placeholder_count(sql: &str) -> usize {
    if !sql.contains('$') {
        return 0;
    }
    tokens(sql)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| match &t.token {
            Token::Placeholder(p) => p.strip_prefix('$')?.parse::<usize>().ok(),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Puts back the parameters the pg-catalog rewrite dropped with a subquery it answers with NULL (a
/// correlated subquery in a select list): datafusion-postgres numbers the bound values by the
/// placeholders left in the plan, so without them every later value is decoded as its neighbour's
/// type. They come back in an always-true filter, `$n IS NULL OR … OR true`, over a query's plan,
/// which the optimizer removes once the values are bound.
fn keep_placeholders(
    plan: LogicalPlan,
    count: usize,
    client_types: &[Option<Type>],
) -> Result<LogicalPlan> {
    if count > MAX_PARAMETERS {
        return plan_err!("a statement takes at most {MAX_PARAMETERS} parameters, not {count}");
    }
    let is_query = !matches!(
        plan,
        LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::DescribeTable(_)
            | LogicalPlan::EmptyRelation(_)
    );
    if count == 0 || !is_query {
        return Ok(plan);
    }
    let present = plan.get_parameter_types()?;
    let missing: Vec<usize> = (1..=count)
        .filter(|n| !present.contains_key(&format!("${n}")))
        .collect();
    if missing.is_empty() {
        return Ok(plan);
    }
    let mut terms = vec![datafusion::prelude::lit(true)];
    for n in missing {
        let data_type = client_types
            .get(n - 1)
            .cloned()
            .flatten()
            .map_or(DataType::Utf8, |t| match t {
                Type::BOOL => DataType::Boolean,
                Type::INT2 => DataType::Int16,
                Type::INT4 | Type::OID => DataType::Int32,
                Type::INT8 => DataType::Int64,
                Type::FLOAT4 => DataType::Float32,
                Type::FLOAT8 => DataType::Float64,
                _ => DataType::Utf8,
            });
        let placeholder = Expr::Placeholder(Placeholder {
            id: format!("${n}"),
            field: Some(Arc::new(Field::new("", data_type, true))),
        });
        terms.push(placeholder.is_null());
    }
    // Or-ed pairwise, so the expression is as shallow as it can be.
    while terms.len() > 1 {
        let mut next = Vec::with_capacity(terms.len().div_ceil(2));
        let mut it = terms.into_iter();
        while let Some(a) = it.next() {
            next.push(match it.next() {
                Some(b) => a.or(b),
                None => a,
            });
        }
        terms = next;
    }
    let predicate = terms.remove(0);
    datafusion::logical_expr::LogicalPlanBuilder::from(plan)
        .filter(predicate)?
        .build()
}

type DfStatement = <Parser as QueryParser>::Statement;

/// datafusion-postgres' parser, with [`rewrite`] before it and [`type_cast_placeholders`] after.
pub struct CompatParser {
    inner: Arc<Parser>,
}

#[async_trait]
impl QueryParser for CompatParser {
    type Statement = DfStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let sql = rewrite(sql);
        let parsed = self.inner.parse_sql(client, &sql, types).await?;
        let Some((text, Some((statement, plan)))) = parsed else {
            return Ok(parsed);
        };
        let api = |e| PgWireError::ApiError(Box::new(e));
        let plan = type_cast_placeholders(plan).map_err(api)?;
        let plan = keep_placeholders(plan, placeholder_count(&sql).max(types.len()), types)
            .map_err(api)?;
        Ok(Some((text, Some((statement, plan)))))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.inner.get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.inner.get_result_schema(stmt, column_format)
    }
}

/// datafusion-postgres' session service behind [`rewrite`] (simple queries) and [`CompatParser`]
/// (extended queries).
pub struct CompatService {
    inner: Arc<DfSessionService>,
    parser: Arc<CompatParser>,
}

impl CompatService {
    pub fn new(inner: Arc<DfSessionService>) -> CompatService {
        let parser = Arc::new(CompatParser {
            inner: ExtendedQueryHandler::query_parser(&*inner),
        });
        CompatService { inner, parser }
    }
}

#[async_trait]
impl SimpleQueryHandler for CompatService {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        SimpleQueryHandler::do_query(&*self.inner, client, &rewrite(query)).await
    }
}

#[async_trait]
impl ExtendedQueryHandler for CompatService {
    type Statement = DfStatement;
    type QueryParser = CompatParser;

    fn query_parser(&self) -> Arc<CompatParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        ExtendedQueryHandler::do_query(&*self.inner, client, portal, max_rows).await
    }
}

/// `to_regproc(name)`: the oid of the `pg_proc` function of that name (the first, when overloaded),
/// NULL when there is none. Compared with `pg_proc.oid` where the catalog keeps a `regproc` as a name.
#[derive(Debug)]
struct ToRegproc {
    oids: HashMap<String, i32>,
    signature: Signature,
}

impl PartialEq for ToRegproc {
    fn eq(&self, other: &Self) -> bool {
        self.oids == other.oids
    }
}
impl Eq for ToRegproc {}
impl std::hash::Hash for ToRegproc {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.oids.len().hash(state);
    }
}

impl ToRegproc {
    fn oid(&self, name: &str) -> Option<i32> {
        let name = name.trim();
        let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
        self.oids.get(name).copied()
    }
}

impl ScalarUDFImpl for ToRegproc {
    fn name(&self) -> &str {
        "to_regproc"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let names = args.args[0].to_array(args.number_rows)?;
        let names = datafusion::arrow::compute::cast(&names, &DataType::Utf8)?;
        let names = names
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to Utf8");
        let oids: Int32Array = names.iter().map(|n| n.and_then(|n| self.oid(n))).collect();
        Ok(ColumnarValue::Array(Arc::new(oids)))
    }
}

/// `pg_get_indexdef(index [, column, pretty])`: NULL. The lake's tables have no indexes; only
/// PostgreSQL's own system indexes are listed in `pg_index`, and their definitions are not kept.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgGetIndexDef {
    signature: Signature,
}

impl ScalarUDFImpl for PgGetIndexDef {
    fn name(&self) -> &str {
        "pg_get_indexdef"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(
            datafusion::common::ScalarValue::Utf8(None),
        ))
    }
}

/// `pg_type_is_visible(oid)`: true for any type. Every type the catalog lists is a built-in one in
/// `pg_catalog`, which is always on the search path; NULL for NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TypeIsVisible {
    signature: Signature,
}

impl ScalarUDFImpl for TypeIsVisible {
    fn name(&self) -> &str {
        "pg_type_is_visible"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let oids = args.args[0].to_array(args.number_rows)?;
        let visible: BooleanArray = (0..oids.len())
            .map(|i| oids.is_valid(i).then_some(true))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(visible)))
    }
}

/// `pg_catalog` with the tables datafusion-pg-catalog 0.19 lacks or types differently.
#[derive(Debug)]
struct ExtendedPgCatalog {
    inner: Arc<dyn SchemaProvider>,
    extra: HashMap<&'static str, Arc<dyn TableProvider>>,
}

#[async_trait]
impl SchemaProvider for ExtendedPgCatalog {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        for name in self.extra.keys() {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match self.extra.get(name) {
            Some(t) => Ok(Some(t.clone())),
            None => self.inner.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.extra.contains_key(name) || self.inner.table_exist(name)
    }
}

/// An `int2vector`/`oidvector` or array text ("1 2", "[2, 20, 3]", "{1,2}") as an array column.
fn vector_column(text: &StringArray, int16: bool) -> ArrayRef {
    fn fill<B: datafusion::arrow::array::ArrayBuilder>(
        text: &StringArray,
        mut list: ListBuilder<B>,
        mut push: impl FnMut(&mut B, &str),
    ) -> ArrayRef {
        for value in text.iter() {
            match value {
                None => list.append_null(),
                Some(v) => {
                    let items = v.split(|c: char| c.is_whitespace() || ",[]{}".contains(c));
                    for n in items.filter(|n| !n.is_empty()) {
                        push(list.values(), n);
                    }
                    list.append(true);
                }
            }
        }
        Arc::new(list.finish())
    }
    if int16 {
        fill(text, ListBuilder::new(Int16Builder::new()), |b, n| {
            b.append_option(n.parse().ok())
        })
    } else {
        fill(text, ListBuilder::new(Int32Builder::new()), |b, n| {
            b.append_option(n.parse().ok())
        })
    }
}

/// A static catalog table with its `vectors` columns (name, whether `smallint` rather than `oid`),
/// kept as text by datafusion-pg-catalog, as arrays: `unnest`, `= ANY` and subscripts need arrays.
async fn with_arrays(
    ctx: &SessionContext,
    table: &str,
    vectors: &[(&str, bool)],
) -> Result<Arc<dyn TableProvider>> {
    let batches = ctx
        .sql(&format!("SELECT * FROM pg_catalog.{table}"))
        .await?
        .collect()
        .await?;
    let schema = batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| datafusion::error::DataFusionError::Plan(format!("{table} is empty")))?;
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match vectors.iter().find(|(n, _)| n == f.name()) {
            Some((_, int16)) => {
                let item = if *int16 {
                    DataType::Int16
                } else {
                    DataType::Int32
                };
                Field::new(
                    f.name(),
                    DataType::List(Arc::new(Field::new_list_field(item, true))),
                    true,
                )
            }
            None => f.as_ref().clone(),
        })
        .collect();
    let new_schema = Arc::new(Schema::new(fields));
    let mut out = Vec::with_capacity(batches.len());
    for batch in &batches {
        let columns = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, c)| match vectors.iter().find(|(n, _)| n == f.name()) {
                Some((_, int16)) => {
                    let text = datafusion::arrow::compute::cast(c, &DataType::Utf8)?;
                    let text = text
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .expect("cast to Utf8");
                    Ok(vector_column(text, *int16))
                }
                None => Ok(c.clone()),
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(RecordBatch::try_new(new_schema.clone(), columns)?);
    }
    Ok(Arc::new(MemTable::try_new(new_schema, vec![out])?))
}

/// `pg_settings` with the endpoint's settings (what `SHOW` answers), in the pg-catalog's columns:
/// drivers read e.g. `max_index_keys` there (pgjdbc's key and index metadata).
async fn pg_settings(
    inner: &Arc<dyn SchemaProvider>,
    settings: &[(&str, &str)],
) -> Result<Arc<dyn TableProvider>> {
    let schema = match inner.table("pg_settings").await? {
        Some(t) => t.schema(),
        None => Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("setting", DataType::Utf8, true),
        ])),
    };
    let text = |values: Vec<&str>, to: &DataType| -> Result<ArrayRef> {
        Ok(datafusion::arrow::compute::cast(
            &(Arc::new(StringArray::from(values)) as ArrayRef),
            to,
        )?)
    };
    let names: Vec<&str> = settings.iter().map(|s| s.0).collect();
    let values: Vec<&str> = settings.iter().map(|s| s.1).collect();
    let all = |v: &'static str| vec![v; settings.len()];
    let columns = schema
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "name" => text(names.clone(), f.data_type()),
            "setting" | "reset_val" | "boot_val" => text(values.clone(), f.data_type()),
            "context" => text(all("internal"), f.data_type()),
            "source" => text(all("default"), f.data_type()),
            "vartype" => text(all("string"), f.data_type()),
            _ => Ok(datafusion::arrow::array::new_null_array(
                f.data_type(),
                settings.len(),
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    let nullable = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(nullable.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(nullable, vec![vec![batch]])?))
}

/// `pg_user`: the one login the endpoint has.
fn pg_user(user: &str) -> Result<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("usename", DataType::Utf8, false),
        Field::new("usesysid", DataType::Int32, false),
        Field::new("usecreatedb", DataType::Boolean, false),
        Field::new("usesuper", DataType::Boolean, false),
        Field::new("userepl", DataType::Boolean, false),
        Field::new("usebypassrls", DataType::Boolean, false),
        Field::new("passwd", DataType::Utf8, true),
        Field::new("valuntil", DataType::Utf8, true),
        Field::new("useconfig", DataType::Utf8, true),
    ]));
    let no = || Arc::new(BooleanArray::from(vec![false])) as ArrayRef;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![user])),
            Arc::new(Int32Array::from(vec![10])),
            no(),
            no(),
            no(),
            no(),
            Arc::new(StringArray::from(vec!["********"])),
            Arc::new(StringArray::from(vec![None::<&str>])),
            Arc::new(StringArray::from(vec![None::<&str>])),
        ],
    )?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// Installs the catalog mends in a session that already has datafusion-pg-catalog's `pg_catalog`:
/// `pg_index` and `pg_constraint` with array columns, `pg_class` with `reloptions`, `pg_user` for `user`, `pg_settings` of `settings`, and the `to_regproc`, `pg_type_is_visible` and
/// `pg_get_indexdef` functions.
pub async fn extend_pg_catalog(
    ctx: &SessionContext,
    database: &str,
    user: &str,
    settings: &[(&str, &str)],
) -> Result<()> {
    let missing = |what: &str| datafusion::error::DataFusionError::Plan(format!("no {what}"));
    let catalog = ctx.catalog(database).ok_or_else(|| missing("catalog"))?;
    let inner = catalog
        .schema("pg_catalog")
        .ok_or_else(|| missing("pg_catalog"))?;

    let procs = ctx
        .sql("SELECT proname, min(oid) FROM pg_catalog.pg_proc GROUP BY proname")
        .await?
        .collect()
        .await?;
    let mut oids = HashMap::new();
    for batch in &procs {
        let names = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let names = names.as_any().downcast_ref::<StringArray>();
        let ids = datafusion::arrow::compute::cast(batch.column(1), &DataType::Int32)?;
        let ids = ids.as_any().downcast_ref::<Int32Array>();
        if let (Some(names), Some(ids)) = (names, ids) {
            for i in 0..batch.num_rows() {
                if names.is_valid(i) && ids.is_valid(i) {
                    oids.insert(names.value(i).to_string(), ids.value(i));
                }
            }
        }
    }
    ctx.register_udf(ScalarUDF::new_from_impl(ToRegproc {
        oids,
        signature: Signature::any(1, Volatility::Immutable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(TypeIsVisible {
        signature: Signature::any(1, Volatility::Stable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(PgGetIndexDef {
        signature: Signature::variadic_any(Volatility::Stable),
    }));

    let mut extra: HashMap<&'static str, Arc<dyn TableProvider>> = HashMap::new();
    extra.insert(
        "pg_index",
        with_arrays(
            ctx,
            "pg_index",
            &[
                ("indkey", true),
                ("indoption", true),
                ("indclass", false),
                ("indcollation", false),
            ],
        )
        .await?,
    );
    extra.insert(
        "pg_constraint",
        with_arrays(
            ctx,
            "pg_constraint",
            &[
                ("conkey", true),
                ("confkey", true),
                ("conpfeqop", false),
                ("conppeqop", false),
                ("conffeqop", false),
                ("conexclop", false),
            ],
        )
        .await?,
    );
    // pg_class as the pg-catalog builds it (live: the lake's tables), with PostgreSQL's `reloptions`
    // and `relacl` (SQLAlchemy's index query reads them): no options and default privileges, so NULL.
    let pg_class = inner
        .table("pg_class")
        .await?
        .ok_or_else(|| missing("pg_class"))?;
    let text_array = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
    let null_array = || {
        datafusion::prelude::cast(
            datafusion::prelude::lit(datafusion::common::ScalarValue::Null),
            text_array.clone(),
        )
    };
    let pg_class = ctx
        .read_table(pg_class)?
        .with_column("relacl", null_array())?
        .with_column("reloptions", null_array())?
        .into_view();
    extra.insert("pg_class", pg_class);
    extra.insert("pg_user", pg_user(user)?);
    extra.insert("pg_settings", pg_settings(&inner, settings).await?);
    catalog.register_schema("pg_catalog", Arc::new(ExtendedPgCatalog { inner, extra }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regproc_join_compares_oids() {
        let sql = "SELECT 1 FROM pg_type AS a JOIN pg_proc ON pg_proc.oid = a.typreceive";
        let out = rewrite(sql);
        assert!(
            out.contains("pg_proc.oid = to_regproc(a.typreceive)"),
            "{out}"
        );
        // Names compared with names are left alone.
        let sql = "SELECT 1 FROM pg_type AS a WHERE a.typreceive = 'array_recv'";
        assert_eq!(rewrite(sql), sql);
    }

    #[test]
    fn generate_subscripts_becomes_unnest() {
        let out = rewrite("SELECT generate_subscripts(i.indkey, 1) AS ord FROM pg_index i");
        assert!(
            out.contains("unnest(generate_series(1, array_length(i.indkey, 1)))"),
            "{out}"
        );
    }

    #[test]
    fn search_path_subquery_is_spliced_keeping_the_rest() {
        let sql = "SELECT t FROM x WHERE quote_ident(table_schema) IN (\n  SELECT\n    CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END\n  FROM\n    generate_series(\n      array_lower(string_to_array(current_setting('search_path'),','),1),\n      array_upper(string_to_array(current_setting('search_path'),','),1)\n    ) as i,\n    string_to_array(current_setting('search_path'),',') s\n  ) AND é = 'it''s'";
        let out = rewrite(sql);
        assert_eq!(
            out,
            "SELECT t FROM x WHERE array_has(string_to_array(replace(current_setting('search_path'), ' ', ''), ','), quote_ident(table_schema)) AND é = 'it''s'"
        );
    }

    #[test]
    fn pg_expandarray_becomes_unnest() {
        // pgjdbc 42.5's getPrimaryKeys, abridged.
        let out = rewrite(
            "SELECT result.KEY_SEQ FROM (SELECT (information_schema._pg_expandarray(i.indkey)).n AS KEY_SEQ, \
             information_schema._pg_expandarray(i.indkey) AS KEYS, a.attnum AS A_ATTNUM \
             FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid) result \
             WHERE result.A_ATTNUM = (result.KEYS).x",
        );
        assert!(
            out.contains("unnest(generate_series(1, array_length(i.indkey, 1))) AS KEY_SEQ"),
            "{out}"
        );
        assert!(out.contains("unnest(i.indkey) AS KEYS"), "{out}");
        assert!(out.contains("result.A_ATTNUM = result.KEYS"), "{out}");
    }

    #[test]
    fn regproc_literals_compare_as_names() {
        let out =
            rewrite("SELECT typinput = 'pg_catalog.array_in'::regproc AS is_array FROM pg_type");
        assert!(out.contains("typinput = 'array_in'"), "{out}");
    }

    #[test]
    fn dropped_parameters_come_back_in_a_shallow_filter() {
        use datafusion::logical_expr::LogicalPlanBuilder;
        let plan = || {
            LogicalPlanBuilder::empty(true)
                .project(vec![datafusion::prelude::lit(1)])
                .unwrap()
                .build()
                .unwrap()
        };
        let kept = keep_placeholders(plan(), 1000, &[]).unwrap();
        let types = kept.get_parameter_types().unwrap();
        assert_eq!(types.len(), 1000);
        assert_eq!(types["$7"], Some(DataType::Utf8));
        let LogicalPlan::Filter(filter) = &kept else {
            panic!("{kept}")
        };
        // 1001 terms or-ed pairwise: 10 levels, not 1000.
        fn depth(e: &Expr) -> usize {
            match e {
                Expr::BinaryExpr(b) => 1 + depth(&b.left).max(depth(&b.right)),
                _ => 0,
            }
        }
        assert!(
            depth(&filter.predicate) <= 11,
            "{}",
            depth(&filter.predicate)
        );
        // More than PostgreSQL allows is refused, not allocated.
        assert!(keep_placeholders(plan(), 1_000_000_000, &[]).is_err());
    }

    #[test]
    fn other_statements_are_borrowed() {
        let sql = "SELECT current_setting('search_path'), count(*) FROM orders";
        assert!(matches!(rewrite(sql), Cow::Borrowed(_)));
    }
}
