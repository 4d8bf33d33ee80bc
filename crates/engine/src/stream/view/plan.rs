//! A view's SQL planned by DataFusion for continuous evaluation.
//!
//! The view's `FROM` names its source, as a window table function (`TUMBLE(src, time, size)`,
//! `HOP(src, time, slide, size)`, `SESSION(src, time, gap)`) or plainly (`FROM src`: an updating aggregate,
//! or a filter and projection). The relation is replaced by the table `__view_input` (the source's columns,
//! plus `window_start` and `window_end` for a windowed view) and the statement is planned by DataFusion. Its
//! physical plan is cut at the aggregate: the part below (filters, projections) runs on each micro-batch;
//! the aggregate's group and argument expressions and its accumulators ([`AggregateFunctionExpr`]) are
//! kept and fed by [`super::state`]; the part above (projection, `HAVING`) runs on the aggregate rows a
//! window emits. What cannot run continuously (joins, unions, `ORDER BY`, `LIMIT`, grouping sets, ordered
//! aggregates, a windowed `GROUP BY` without `window_start, window_end`) is refused here, with the reason.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::{
    ExecutionPlan, PhysicalExpr, collect, replace_children_if_necessary,
};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, GroupByExpr, ObjectName, ObjectNamePart, Query, Select,
    SelectItem, SetExpr, Statement, TableFactor, WildcardAdditionalOptions,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::window::WindowKind;
use crate::error::{EngineError, Result};

/// The table a view's plan reads: the source's rows of one micro-batch.
pub const INPUT: &str = "__view_input";

/// The aggregate part of a view: what [`super::state`] evaluates.
pub struct Aggregate {
    /// Group expressions over the aggregate's input, with their output names.
    pub group: Vec<(Arc<dyn PhysicalExpr>, String)>,
    /// Of which `window_start` and `window_end` (windowed views).
    pub window_columns: Option<(usize, usize)>,
    /// The aggregates, whose accumulators keep the state.
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Their `FILTER (WHERE ...)` clauses.
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// The rows an emitting window produces before the part above: group columns, then aggregates.
    pub schema: SchemaRef,
    /// The columns the aggregate's expressions read (the part below's output).
    pub input: SchemaRef,
    /// The plan above the aggregate, reading a memory table of `schema`.
    above: Arc<dyn ExecutionPlan>,
}

/// A view's plan; see the module documentation.
pub struct ViewPlan {
    /// The view's name.
    pub name: String,
    /// The dataset or view it reads.
    pub source: String,
    /// Its event-time column (windowed views).
    pub time_column: Option<String>,
    /// Its window.
    pub window: WindowKind,
    /// A hopping window whose state is kept per slide-long slice, each window merged from its slices
    /// when final (as Flink's window slicing): `Some(slide)` when the window's size is a whole number of
    /// slides and nothing but the grouping reads the window's bounds.
    pub slices: Option<i64>,
    /// The columns of the rows it is fed (its source's).
    pub source_schema: SchemaRef,
    /// The columns of `__view_input`.
    pub input_schema: SchemaRef,
    /// Below the aggregate (or the whole plan, for a view without one).
    below: Arc<dyn ExecutionPlan>,
    /// The aggregate, if any.
    pub aggregate: Option<Aggregate>,
    /// `SELECT * FROM __view_input WHERE <the view's WHERE>`: which late rows the view would have used.
    late_filter: Option<Arc<dyn ExecutionPlan>>,
    /// The rows the view emits.
    pub output_schema: SchemaRef,
    task: Arc<TaskContext>,
}

fn refuse(view: &str, reason: impl Into<String>) -> EngineError {
    EngineError::View {
        view: view.to_string(),
        reason: reason.into(),
    }
}

/// The timestamp type of window bounds: microseconds, shop-local wall clock, as event times are stored.
pub fn window_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

/// The parts of the view's `SELECT` a continuous view can run, or why not.
fn parse(view: &str, sql: &str) -> Result<(Query, Select)> {
    let mut statements = Parser::parse_sql(&GenericDialect {}, &super::flink::rewrite(sql))
        .map_err(|e| refuse(view, format!("its SQL does not parse: {e}")))?;
    let Some(Statement::Query(query)) = statements.pop().filter(|_| statements.is_empty()) else {
        return Err(refuse(view, "a view is one SELECT statement"));
    };
    if query.with.is_some() {
        return Err(refuse(view, "WITH is not supported in a view yet"));
    }
    if query.order_by.is_some() || query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(refuse(
            view,
            "ORDER BY and LIMIT have no meaning over an endless stream: order or limit when you query the view",
        ));
    }
    let SetExpr::Select(select) = query.body.as_ref().clone() else {
        return Err(refuse(
            view,
            "UNION, INTERSECT and EXCEPT are not supported in a view yet",
        ));
    };
    Ok((*query, *select))
}

/// The source, event-time column and window of the `FROM` clause; the relation is replaced by
/// [`INPUT`]; the lengths are evaluated in `scratch`.
async fn take_source(
    view: &str,
    select: &mut Select,
    scratch: &SessionContext,
) -> Result<(String, Option<String>, WindowKind)> {
    if select.from.len() != 1 || !select.from[0].joins.is_empty() {
        return Err(refuse(
            view,
            "joins of two streams are not supported yet: a view reads one source",
        ));
    }
    let TableFactor::Table { name, args, .. } = &mut select.from[0].relation else {
        return Err(refuse(
            view,
            "a view reads a dataset or view by name, or a window of one (TUMBLE, HOP, SESSION)",
        ));
    };
    let function = name.to_string().to_ascii_uppercase();
    let Some(args) = args.take() else {
        let source = name.to_string();
        *name = ObjectName(vec![ObjectNamePart::Identifier(INPUT.into())]);
        return Ok((source, None, WindowKind::None));
    };
    let args: Vec<Expr> = args
        .args
        .into_iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            other => Err(refuse(
                view,
                format!("{function}: argument `{other}` is not supported"),
            )),
        })
        .collect::<Result<_>>()?;
    let usage = match function.as_str() {
        "TUMBLE" => "TUMBLE(source, time_column, INTERVAL 'size')",
        "HOP" => "HOP(source, time_column, INTERVAL 'slide', INTERVAL 'size')",
        "SESSION" => "SESSION(source, time_column, INTERVAL 'gap')",
        other => {
            return Err(refuse(
                view,
                format!("`{other}(...)` is not a window: use TUMBLE, HOP or SESSION"),
            ));
        }
    };
    let sizes = args.len().saturating_sub(2);
    let wanted = if function == "HOP" { 2 } else { 1 };
    if args.len() < 2 || sizes != wanted {
        return Err(refuse(view, format!("{function} takes {usage}")));
    }
    let mut lengths = Vec::new();
    for e in &args[2..] {
        lengths.push(micros(view, scratch, e).await?);
    }
    let window = WindowKind::new(&function, &lengths).map_err(|r| refuse(view, r))?;
    let source = args[0].to_string();
    let time = args[1].to_string();
    *name = ObjectName(vec![ObjectNamePart::Identifier(INPUT.into())]);
    Ok((source, Some(time), window))
}

/// Microseconds of an interval expression (`INTERVAL '1 minute'`), evaluated by DataFusion.
async fn micros(view: &str, ctx: &SessionContext, e: &Expr) -> Result<i64> {
    let batches = ctx.sql(&format!("SELECT {e}")).await?.collect().await?;
    let value = batches
        .first()
        .filter(|b| b.num_rows() == 1)
        .map(|b| ScalarValue::try_from_array(b.column(0), 0))
        .transpose()?;
    match value {
        Some(ScalarValue::IntervalMonthDayNano(Some(v))) if v.months == 0 => {
            Ok(i64::from(v.days) * 86_400_000_000 + v.nanoseconds / 1000)
        }
        Some(ScalarValue::IntervalDayTime(Some(v))) => {
            Ok(i64::from(v.days) * 86_400_000_000 + i64::from(v.milliseconds) * 1000)
        }
        _ => Err(refuse(
            view,
            format!("`{e}` is not a length of time in days, hours, minutes or seconds"),
        )),
    }
}

/// The columns a window adds to its source's rows.
pub const WINDOW_BOUNDS: [&str; 2] = ["window_start", "window_end"];

/// The name of the source's column `name` in a windowed view's input.
pub fn input_name(name: &str) -> String {
    if WINDOW_BOUNDS.contains(&name) {
        format!("source_{name}")
    } else {
        name.to_string()
    }
}

/// The input columns: the source's, and the window bounds of a windowed view.
fn input_schema(view: &str, source: &Schema, time: Option<&str>) -> Result<SchemaRef> {
    let Some(time) = time else {
        return Ok(Arc::new(source.clone()));
    };
    match source.field_with_name(time).map(|f| f.data_type()) {
        // A date is an event at its midnight (daily windows over a date column).
        Ok(DataType::Timestamp(_, None) | DataType::Date32 | DataType::Date64) => {}
        Ok(other) => {
            return Err(refuse(
                view,
                format!("the event time `{time}` is {other}, not a timestamp or a date"),
            ));
        }
        Err(_) => return Err(refuse(view, format!("the source has no column `{time}`"))),
    }
    // A windowed source (another windowed view) has bounds of its own: they are `source_window_start`
    // and `source_window_end` in the view, whose own window's are `window_start` and `window_end`.
    let mut fields: Vec<Field> = source
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_name(input_name(f.name())))
        .collect();
    for bound in WINDOW_BOUNDS {
        fields.push(Field::new(bound, window_type(), false));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// A session whose only table is an empty [`INPUT`] of `schema`; one partition, and `AGG(DISTINCT x)` kept
/// as one aggregate (not rewritten into two levels), so the plan has one aggregate to keep.
fn session(schema: &SchemaRef) -> Result<SessionContext> {
    let config = SessionConfig::new().with_target_partitions(1);
    // Answering an aggregate from the (empty) table's statistics would leave no aggregate to keep.
    let rules = PhysicalOptimizer::new()
        .rules
        .into_iter()
        .filter(|r| r.name() != "aggregate_statistics")
        .collect();
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_physical_optimizer_rules(rules)
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.remove_optimizer_rule("single_distinct_aggregation_to_group_by");
    let empty = MemTable::try_new(
        schema.clone(),
        vec![vec![RecordBatch::new_empty(schema.clone())]],
    )?;
    ctx.register_table(INPUT, Arc::new(empty))?;
    Ok(ctx)
}

async fn physical(ctx: &SessionContext, query: &Query) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(ctx
        .sql(&query.to_string())
        .await?
        .create_physical_plan()
        .await?)
}

impl ViewPlan {
    /// Plans view `name`'s `sql`; `schema_of` gives the columns of a source by name.
    pub async fn new(
        name: &str,
        sql: &str,
        schema_of: impl Fn(&str) -> Option<SchemaRef>,
    ) -> Result<ViewPlan> {
        let (mut query, mut select) = parse(name, sql)?;
        super::group_window::rewrite(&mut select).map_err(|r| refuse(name, r))?;
        let scratch = SessionContext::new();
        let (source, time, window) = take_source(name, &mut select, &scratch).await?;
        let source_schema = schema_of(&source)
            .ok_or_else(|| refuse(name, format!("there is no dataset or view `{source}`")))?;
        let input_schema = input_schema(name, &source_schema, time.as_deref())?;
        let ctx = session(&input_schema)?;
        let late_filter = match &select.selection {
            Some(_) => Some(physical(&ctx, &late_query(&query, &select)).await?),
            None => None,
        };
        *query.body = SetExpr::Select(Box::new(select));
        let plan = physical(&ctx, &query).await?;
        let (below, aggregate) = split(name, &plan, !matches!(window, WindowKind::None))?;
        let slices = match (window, &aggregate) {
            (WindowKind::Hop { slide, size }, Some(a))
                if size % slide == 0 && bounds_only_grouped(&below, a) =>
            {
                Some(slide)
            }
            _ => None,
        };
        Ok(ViewPlan {
            name: name.to_string(),
            source,
            time_column: time,
            window,
            slices,
            source_schema,
            input_schema,
            below,
            aggregate,
            late_filter,
            output_schema: plan.schema(),
            task: ctx.task_ctx(),
        })
    }

    /// Runs the part below the aggregate (the whole view, without one) on `input` (of [`Self::input_schema`]).
    pub async fn run_below(&self, input: RecordBatch) -> Result<Vec<RecordBatch>> {
        Ok(collect(with_input(&self.below, &input)?, self.task.clone()).await?)
    }

    /// Runs the part above the aggregate on the rows of emitted windows (of [`Aggregate::schema`]).
    pub async fn run_above(&self, rows: RecordBatch) -> Result<Vec<RecordBatch>> {
        let aggregate = self.aggregate.as_ref().expect("a view with an aggregate");
        Ok(collect(with_input(&aggregate.above, &rows)?, self.task.clone()).await?)
    }

    /// Of late `input` rows, those the view's `WHERE` keeps.
    pub async fn late_rows_kept(&self, input: RecordBatch) -> Result<Vec<RecordBatch>> {
        match &self.late_filter {
            Some(plan) => Ok(collect(with_input(plan, &input)?, self.task.clone()).await?),
            None => Ok(vec![input]),
        }
    }
}

/// `SELECT * FROM <the view's FROM> WHERE <its WHERE>`.
fn late_query(query: &Query, select: &Select) -> Query {
    let mut only_where = select.clone();
    only_where.projection = vec![SelectItem::Wildcard(WildcardAdditionalOptions::default())];
    only_where.group_by = GroupByExpr::Expressions(vec![], vec![]);
    only_where.having = None;
    only_where.distinct = None;
    let mut q = query.clone();
    *q.body = SetExpr::Select(Box::new(only_where));
    q
}

/// Cuts `plan` at its aggregate: the part below, and the aggregate with the part above it.
fn split(
    view: &str,
    plan: &Arc<dyn ExecutionPlan>,
    windowed: bool,
) -> Result<(Arc<dyn ExecutionPlan>, Option<Aggregate>)> {
    let Some(top) = find(plan, &|p| p.is::<AggregateExec>()) else {
        return Ok((plan.clone(), None));
    };
    let first = top.downcast_ref::<AggregateExec>().expect("an aggregate");
    let mut lowest = top.clone();
    if !matches!(
        first.mode(),
        AggregateMode::Single | AggregateMode::SinglePartitioned
    ) {
        lowest = find(first.input(), &|p| p.is::<AggregateExec>())
            .ok_or_else(|| refuse(view, "its aggregate has no partial stage"))?;
    }
    let agg = lowest
        .downcast_ref::<AggregateExec>()
        .expect("an aggregate");
    if find(agg.input(), &|p| p.is::<AggregateExec>()).is_some() {
        return Err(refuse(
            view,
            "an aggregate over an aggregate (a subquery with GROUP BY) is not supported yet",
        ));
    }
    if !agg.group_expr().is_single() {
        return Err(refuse(
            view,
            "GROUPING SETS, ROLLUP and CUBE are not supported in a view",
        ));
    }
    if agg.aggr_expr().iter().any(|a| !a.order_bys().is_empty()) {
        return Err(refuse(
            view,
            "ordered aggregates (… ORDER BY inside an aggregate) are not supported in a view yet",
        ));
    }
    let group = agg.group_expr().expr().to_vec();
    let window_columns = if windowed {
        Some(window_columns(view, &group)?)
    } else {
        None
    };
    let schema = top.schema();
    let placeholder = MemorySourceConfig::try_new_exec(
        &[vec![RecordBatch::new_empty(schema.clone())]],
        schema.clone(),
        None,
    )?;
    let above = replace(plan, &top, placeholder)?;
    let aggregate = Aggregate {
        group,
        window_columns,
        aggregates: agg.aggr_expr().to_vec(),
        filters: agg.filter_expr().to_vec(),
        schema,
        input: agg.input().schema(),
        above,
    };
    Ok((agg.input().clone(), Some(aggregate)))
}

/// Whether the window's bounds are read only as the aggregate's `window_start, window_end` groups: below
/// the aggregate only passed through (filters and other expressions do not read them), and neither the
/// other groups nor the aggregates' arguments and filters read them.
fn bounds_only_grouped(below: &Arc<dyn ExecutionPlan>, aggregate: &Aggregate) -> bool {
    use datafusion::physical_expr::utils::collect_columns;
    use datafusion::physical_plan::filter::FilterExec;
    use datafusion::physical_plan::projection::ProjectionExec;
    let reads = |e: &Arc<dyn PhysicalExpr>| {
        collect_columns(e)
            .iter()
            .any(|c| WINDOW_BOUNDS.contains(&c.name()))
    };
    let passed = |e: &Arc<dyn PhysicalExpr>| !reads(e) || e.downcast_ref::<Column>().is_some();
    let node_ok = |p: &Arc<dyn ExecutionPlan>| {
        if let Some(f) = p.downcast_ref::<FilterExec>() {
            !reads(f.predicate())
        } else if let Some(pr) = p.downcast_ref::<ProjectionExec>() {
            pr.expr().iter().all(|e| passed(&e.expr))
        } else {
            p.is::<DataSourceExec>()
        }
    };
    fn all(p: &Arc<dyn ExecutionPlan>, ok: &dyn Fn(&Arc<dyn ExecutionPlan>) -> bool) -> bool {
        ok(p) && p.children().into_iter().all(|c| all(c, ok))
    }
    let Some((s, e)) = aggregate.window_columns else {
        return false;
    };
    let groups_ok = aggregate
        .group
        .iter()
        .enumerate()
        .all(|(i, (g, _))| i == s || i == e || !reads(g));
    let aggregates_ok = aggregate
        .aggregates
        .iter()
        .all(|a| a.expressions().iter().all(|x| !reads(x)))
        && aggregate.filters.iter().flatten().all(|f| !reads(f));
    groups_ok && aggregates_ok && all(below, &node_ok)
}

/// Where `window_start` and `window_end` are among the group expressions.
fn window_columns(view: &str, group: &[(Arc<dyn PhysicalExpr>, String)]) -> Result<(usize, usize)> {
    let at = |name: &str| {
        group
            .iter()
            .position(|(e, _)| e.downcast_ref::<Column>().is_some_and(|c| c.name() == name))
    };
    match (at("window_start"), at("window_end")) {
        (Some(s), Some(e)) => Ok((s, e)),
        _ => Err(refuse(
            view,
            "a windowed view groups by window_start and window_end (and its keys)",
        )),
    }
}

/// The first node of `plan`, depth first, that `is` holds for.
fn find(
    plan: &Arc<dyn ExecutionPlan>,
    is: &dyn Fn(&Arc<dyn ExecutionPlan>) -> bool,
) -> Option<Arc<dyn ExecutionPlan>> {
    if is(plan) {
        return Some(plan.clone());
    }
    plan.children().into_iter().find_map(|c| find(c, is))
}

/// What replaces a node of a plan, if anything.
type Swap<'a> = &'a dyn Fn(&Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>>;

/// `plan` with each node `swap` answers for replaced by its answer (the nodes below it are not visited).
fn rewrite(plan: &Arc<dyn ExecutionPlan>, swap: Swap<'_>) -> Result<Arc<dyn ExecutionPlan>> {
    if let Some(by) = swap(plan)? {
        return Ok(by);
    }
    let children = plan.children();
    if children.is_empty() {
        return Ok(plan.clone());
    }
    let mut rewritten = Vec::with_capacity(children.len());
    for c in children {
        rewritten.push(rewrite(c, swap)?);
    }
    Ok(replace_children_if_necessary(plan.clone(), rewritten)?)
}

/// `plan` with node `target` replaced by `by`.
fn replace(
    plan: &Arc<dyn ExecutionPlan>,
    target: &Arc<dyn ExecutionPlan>,
    by: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    rewrite(plan, &|p| Ok(Arc::ptr_eq(p, target).then(|| by.clone())))
}

/// `plan` reading `batch` in place of its memory table.
fn with_input(
    plan: &Arc<dyn ExecutionPlan>,
    batch: &RecordBatch,
) -> Result<Arc<dyn ExecutionPlan>> {
    rewrite(plan, &|p| {
        let Some(memory) = p
            .downcast_ref::<DataSourceExec>()
            .and_then(|s| s.data_source().downcast_ref::<MemorySourceConfig>())
        else {
            return Ok(None);
        };
        let exec: Arc<dyn ExecutionPlan> = MemorySourceConfig::try_new_exec(
            &[vec![batch.clone()]],
            memory.original_schema(),
            memory.projection().clone(),
        )?;
        Ok(Some(exec))
    })
}
