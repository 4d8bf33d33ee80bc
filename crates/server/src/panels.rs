//! The dashboard's panel queries: KPIs with the change against the previous period, revenue over time,
//! countries, top products and customers — each one SQL statement, filtered by a date range and optionally a
//! country or customer. [`sql`] gives it over the order lines (`orders`); [`PanelStore`] answers it from
//! aggregates of `orders` kept in memory, with the same result.
//!
//! `GET /api/panels/{name}?from=YYYY-MM-DD&to=YYYY-MM-DD&country=…&customer=…&grain=day|week|month&n=…`. `from` is
//! inclusive, `to` exclusive; without them the range is all the data. Parameters are validated (dates parsed,
//! the country quoted), never pasted into SQL as given. Cancellations count in the cancellation rate only;
//! revenue, orders and units are of sales.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use chrono::NaiveDate;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use shopstream_engine::{LiveCatalog, QueryResult, Table};

/// Panel names.
pub const PANELS: [&str; 10] = [
    "date_range",
    "kpis",
    "revenue_over_time",
    "countries",
    "top_products",
    "top_customers",
    "rfm_segments",
    "new_vs_returning",
    "basket_size",
    "invoices",
];

/// A panel's parameters, validated.
#[derive(Debug, Clone, Default)]
pub struct PanelParams {
    /// First day (inclusive).
    pub from: Option<NaiveDate>,
    /// Last day (exclusive).
    pub to: Option<NaiveDate>,
    /// Only this country.
    pub country: Option<String>,
    /// Only this customer (the `invoices` drill-down).
    pub customer: Option<i64>,
    /// Time bucket for series.
    pub grain: Grain,
    /// Rows for top-N panels.
    pub n: u32,
}

/// Time bucket of a series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Grain {
    /// Days.
    #[default]
    Day,
    /// Weeks (starting Monday).
    Week,
    /// Months.
    Month,
}

impl PanelParams {
    /// Parses query parameters; `Err` names the bad one.
    pub fn parse(q: &std::collections::HashMap<String, String>) -> Result<PanelParams, String> {
        let date = |k: &str| -> Result<Option<NaiveDate>, String> {
            q.get(k)
                .filter(|v| !v.is_empty())
                .map(|v| {
                    NaiveDate::parse_from_str(v, "%Y-%m-%d")
                        .map_err(|_| format!("`{k}`: `{v}` is not a date (YYYY-MM-DD)"))
                })
                .transpose()
        };
        let grain = match q.get("grain").map(String::as_str) {
            None | Some("day") => Grain::Day,
            Some("week") => Grain::Week,
            Some("month") => Grain::Month,
            Some(g) => return Err(format!("`grain`: `{g}` is not day, week or month")),
        };
        let n = match q.get("n") {
            None => 10,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| format!("`n`: `{v}` is not a number from 1 to 1000"))?,
        };
        Ok(PanelParams {
            from: date("from")?,
            to: date("to")?,
            country: q.get("country").filter(|c| !c.is_empty()).cloned(),
            customer: q
                .get("customer")
                .filter(|c| !c.is_empty())
                .map(|c| {
                    // Ids arrive as `17850` or as the export's `17850.0`.
                    let t = c.strip_suffix(".0").unwrap_or(c);
                    t.parse::<i64>()
                        .map_err(|_| format!("`customer`: `{c}` is not a customer id"))
                })
                .transpose()?,
            grain,
            n,
        })
    }

    fn filter(&self, from: Option<NaiveDate>, to: Option<NaiveDate>) -> String {
        let mut w = vec!["TRUE".to_string()];
        if let Some(f) = from {
            w.push(format!("invoice_date >= TIMESTAMP '{f} 00:00:00'"));
        }
        if let Some(t) = to {
            w.push(format!("invoice_date < TIMESTAMP '{t} 00:00:00'"));
        }
        if let Some(c) = &self.country {
            w.push(format!("country = '{}'", c.replace('\'', "''")));
        }
        if let Some(c) = self.customer {
            w.push(format!("customer_id = {c}"));
        }
        w.join(" AND ")
    }

    /// The previous period of the same length, when the range is bounded.
    fn previous(&self) -> Option<(NaiveDate, NaiveDate)> {
        let (f, t) = (self.from?, self.to?);
        Some((f - (t - f), f))
    }
}

/// Where a panel's statement reads: the order lines themselves, or the aggregates of [`PanelStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `orders`, one row per invoice line.
    Lines,
    /// `invoices` (one row per invoice, with its line count and sums) and `product_days` (one row per
    /// product, day, country and cancellation flag), kept by [`PanelStore`].
    Aggregates,
}

impl Source {
    /// The table of invoice-level panels.
    fn invoices(self) -> &'static str {
        match self {
            Source::Lines => "orders",
            Source::Aggregates => "invoices",
        }
    }
    /// The table of the product panel.
    fn products(self) -> &'static str {
        match self {
            Source::Lines => "orders",
            Source::Aggregates => "product_days",
        }
    }
    /// The number of order lines of a group of rows.
    fn lines(self) -> &'static str {
        match self {
            Source::Lines => "COUNT(*)",
            Source::Aggregates => "COALESCE(SUM(lines), 0)",
        }
    }
}

/// One row per invoice (an invoice whose lines differ in time, customer or country has a row for each):
/// the line count and the sums the panels need. Sums of these are the sums of the lines, and counts of
/// distinct invoices and customers are the same, so every panel but the products reads it.
const INVOICES_SQL: &str = "SELECT invoice_no, invoice_date, customer_id, country, is_cancellation, \
    COUNT(*) AS lines, SUM(quantity) AS quantity, SUM(line_revenue) AS line_revenue \
    FROM orders GROUP BY invoice_no, invoice_date, customer_id, country, is_cancellation";

/// One row per product, day, country and cancellation flag, `invoice_date` being the day's midnight: the
/// panels filter dates at midnight, so the same filters select the same lines.
const PRODUCT_DAYS_SQL: &str = "SELECT stock_code, date_trunc('day', invoice_date) AS invoice_date, country, \
    is_cancellation, MIN(description) AS description, SUM(quantity) AS quantity, \
    SUM(line_revenue) AS line_revenue \
    FROM orders GROUP BY stock_code, date_trunc('day', invoice_date), country, is_cancellation";

/// The revenue is a `FILTER`ed sum: DataFusion 55 rewrites `SUM(CASE … END)` next to a `COUNT(DISTINCT …)`
/// into two sums whose decimal types (28 and 38 digits) its `COALESCE` then mixes up at run time.
fn kpi_select(filter: &str, table: &str) -> String {
    format!(
        "SELECT \
           COALESCE(SUM(line_revenue) FILTER (WHERE NOT is_cancellation), 0) AS revenue, \
           COUNT(DISTINCT CASE WHEN NOT is_cancellation THEN invoice_no END) AS orders, \
           COALESCE(SUM(CASE WHEN NOT is_cancellation THEN quantity END), 0) AS units, \
           COUNT(DISTINCT CASE WHEN NOT is_cancellation THEN customer_id END) AS customers, \
           COUNT(DISTINCT CASE WHEN is_cancellation THEN invoice_no END) AS cancelled_orders \
         FROM {table} WHERE {filter}"
    )
}

/// The SQL of panel `name` over the order lines, or `None` for an unknown panel.
pub fn sql(name: &str, p: &PanelParams) -> Option<String> {
    sql_over(name, p, Source::Lines)
}

/// The SQL of panel `name` reading `src`, or `None` for an unknown panel. `product_days` has no customer,
/// so the products of one customer need [`Source::Lines`].
pub fn sql_over(name: &str, p: &PanelParams, src: Source) -> Option<String> {
    let filter = p.filter(p.from, p.to);
    let (t, lines) = (src.invoices(), src.lines());
    Some(match name {
        // The span of the data, for the date picker's presets (filters other than dates apply).
        "date_range" => format!(
            "SELECT CAST(MIN(invoice_date) AS DATE) AS first_day, CAST(MAX(invoice_date) AS DATE) AS last_day, \
             {lines} AS lines FROM {t} WHERE {}",
            p.filter(None, None)
        ),
        "kpis" => {
            let (pf, pt) = p.previous().unzip();
            let previous = p.filter(pf, pt);
            let repeat = |f: &str| {
                format!(
                    "(SELECT CAST(COUNT(*) FILTER (WHERE n > 1) AS DOUBLE) / NULLIF(COUNT(*), 0) FROM \
                     (SELECT customer_id, COUNT(DISTINCT invoice_no) AS n FROM {t} \
                      WHERE {f} AND NOT is_cancellation AND customer_id IS NOT NULL GROUP BY customer_id))"
                )
            };
            let has_previous = p.previous().is_some();
            format!(
                "WITH cur AS ({cur}), prev AS ({prev}) \
                 SELECT metric, value, previous FROM ( \
                 SELECT 'revenue' AS metric, CAST(ROUND(cur.revenue, 2) AS DOUBLE) AS value, {pv_rev} AS previous \
                   FROM cur, prev \
                 UNION ALL SELECT 'orders', CAST(cur.orders AS DOUBLE), {pv_orders} FROM cur, prev \
                 UNION ALL SELECT 'average_order_value', \
                   CAST(ROUND(cur.revenue / NULLIF(cur.orders, 0), 2) AS DOUBLE), \
                   {pv_aov} FROM cur, prev \
                 UNION ALL SELECT 'units', CAST(cur.units AS DOUBLE), {pv_units} FROM cur, prev \
                 UNION ALL SELECT 'customers', CAST(cur.customers AS DOUBLE), {pv_cust} FROM cur, prev \
                 UNION ALL SELECT 'repeat_customer_rate', ROUND({rep_cur}, 4), {pv_rep} FROM cur, prev \
                 UNION ALL SELECT 'cancellation_rate', \
                   ROUND(CAST(cur.cancelled_orders AS DOUBLE) / NULLIF(cur.orders + cur.cancelled_orders, 0), 4), \
                   {pv_canc} FROM cur, prev) AS kpis \
                 ORDER BY CASE metric WHEN 'revenue' THEN 1 WHEN 'orders' THEN 2 \
                   WHEN 'average_order_value' THEN 3 WHEN 'units' THEN 4 WHEN 'customers' THEN 5 \
                   WHEN 'repeat_customer_rate' THEN 6 ELSE 7 END",
                cur = kpi_select(&filter, t),
                prev = kpi_select(&previous, t),
                pv_rev = if has_previous {
                    "CAST(ROUND(prev.revenue, 2) AS DOUBLE)"
                } else {
                    "CAST(NULL AS DOUBLE)"
                },
                pv_orders = if has_previous {
                    "CAST(prev.orders AS DOUBLE)"
                } else {
                    "CAST(NULL AS DOUBLE)"
                },
                pv_aov = if has_previous {
                    "CAST(ROUND(prev.revenue / NULLIF(prev.orders, 0), 2) AS DOUBLE)"
                } else {
                    "CAST(NULL AS DOUBLE)"
                },
                pv_units = if has_previous {
                    "CAST(prev.units AS DOUBLE)"
                } else {
                    "CAST(NULL AS DOUBLE)"
                },
                pv_cust = if has_previous {
                    "CAST(prev.customers AS DOUBLE)"
                } else {
                    "CAST(NULL AS DOUBLE)"
                },
                rep_cur = repeat(&filter),
                pv_rep = if has_previous {
                    format!("ROUND({}, 4)", repeat(&previous))
                } else {
                    "CAST(NULL AS DOUBLE)".into()
                },
                pv_canc = if has_previous {
                    "ROUND(CAST(prev.cancelled_orders AS DOUBLE) / NULLIF(prev.orders + prev.cancelled_orders, 0), 4)"
                } else {
                    "CAST(NULL AS DOUBLE)"
                },
            )
        }
        "revenue_over_time" => {
            let bucket = match p.grain {
                Grain::Day => "date_trunc('day', invoice_date)",
                Grain::Week => "date_trunc('week', invoice_date)",
                Grain::Month => "date_trunc('month', invoice_date)",
            };
            format!(
                "SELECT CAST({bucket} AS DATE) AS period, ROUND(SUM(line_revenue), 2) AS revenue, \
                 COUNT(DISTINCT invoice_no) AS orders \
                 FROM {t} WHERE {filter} AND NOT is_cancellation GROUP BY 1 ORDER BY 1"
            )
        }
        "countries" => format!(
            "SELECT country, ROUND(SUM(line_revenue), 2) AS revenue, COUNT(DISTINCT invoice_no) AS orders, \
             COUNT(DISTINCT customer_id) AS customers \
             FROM {t} WHERE {filter} AND NOT is_cancellation GROUP BY country \
             ORDER BY revenue DESC, country"
        ),
        "top_products" => format!(
            "SELECT stock_code, MIN(description) AS description, ROUND(SUM(line_revenue), 2) AS revenue, \
             SUM(quantity) AS units FROM {products} WHERE {filter} AND NOT is_cancellation \
             GROUP BY stock_code ORDER BY revenue DESC, stock_code LIMIT {n}",
            n = p.n,
            products = src.products()
        ),
        "top_customers" => format!(
            "SELECT customer_id, MIN(country) AS country, ROUND(SUM(line_revenue), 2) AS revenue, \
             COUNT(DISTINCT invoice_no) AS orders FROM {t} \
             WHERE {filter} AND NOT is_cancellation AND customer_id IS NOT NULL \
             GROUP BY customer_id ORDER BY revenue DESC, customer_id LIMIT {n}",
            n = p.n
        ),
        // Segments as in the `rfm` report, over the selected range: recency from the range's last day.
        "rfm_segments" => format!(
            "WITH sales AS (SELECT * FROM {t} WHERE {filter} AND NOT is_cancellation AND customer_id IS NOT NULL), \
             as_of AS (SELECT MAX(invoice_date) AS t FROM sales), \
             per_customer AS (SELECT customer_id, \
                 date_part('day', (SELECT t FROM as_of) - MAX(invoice_date)) AS recency_days, \
                 COUNT(DISTINCT invoice_no) AS frequency, SUM(line_revenue) AS monetary \
               FROM sales GROUP BY customer_id), \
             scored AS (SELECT *, NTILE(5) OVER (ORDER BY recency_days DESC, customer_id) AS r, \
                 NTILE(5) OVER (ORDER BY frequency, customer_id) AS f, \
                 NTILE(5) OVER (ORDER BY monetary, customer_id) AS m FROM per_customer) \
             SELECT CASE WHEN r >= 4 AND f >= 4 AND m >= 4 THEN 'champions' \
                         WHEN r >= 3 AND f >= 3 THEN 'loyal' WHEN r >= 4 THEN 'recent' \
                         WHEN r <= 2 AND f >= 3 THEN 'at risk' ELSE 'hibernating' END AS segment, \
                    COUNT(*) AS customers, ROUND(SUM(monetary), 2) AS revenue \
             FROM scored GROUP BY 1 ORDER BY customers DESC, segment"
        ),
        // New: the customer's first purchase ever is in the range; returning: they bought before it.
        "new_vs_returning" => format!(
            "WITH first AS (SELECT customer_id, MIN(invoice_date) AS first_at FROM {t} \
                WHERE NOT is_cancellation AND customer_id IS NOT NULL GROUP BY customer_id), \
             active AS (SELECT DISTINCT customer_id FROM {t} \
                WHERE {filter} AND NOT is_cancellation AND customer_id IS NOT NULL) \
             SELECT CASE WHEN f.first_at >= {start} THEN 'new' ELSE 'returning' END AS customers, \
                    COUNT(*) AS count \
             FROM active a JOIN first f ON a.customer_id = f.customer_id GROUP BY 1 ORDER BY 1",
            start = p.from.map_or_else(
                || format!("(SELECT MIN(invoice_date) FROM {t})"),
                |f| format!("TIMESTAMP '{f} 00:00:00'")
            )
        ),
        "basket_size" => format!(
            "WITH baskets AS (SELECT invoice_no, {lines} AS lines, SUM(quantity) AS units, \
                SUM(line_revenue) AS value FROM {t} WHERE {filter} AND NOT is_cancellation GROUP BY invoice_no) \
             SELECT COUNT(*) AS orders, ROUND(AVG(lines), 2) AS avg_lines, ROUND(AVG(units), 2) AS avg_units, \
                    ROUND(AVG(value), 2) AS avg_value, \
                    approx_percentile_cont(lines, 0.5) AS median_lines FROM baskets"
        ),
        // Drill-down: a customer's (or a country's) invoices, newest first; cancellations included and marked.
        "invoices" => format!(
            "SELECT invoice_no, MIN(invoice_date) AS invoice_date, MIN(customer_id) AS customer_id, \
             MIN(country) AS country, {lines} AS lines, SUM(quantity) AS units, \
             ROUND(SUM(line_revenue), 2) AS revenue, BOOL_OR(is_cancellation) AS cancelled \
             FROM {t} WHERE {filter} GROUP BY invoice_no ORDER BY invoice_date DESC, invoice_no LIMIT {n}",
            n = p.n
        ),
        _ => return None,
    })
}

/// The aggregate tables: name and the statement over `orders` that builds them.
const AGGREGATES: [(&str, &str); 2] = [
    ("invoices", INVOICES_SQL),
    ("product_days", PRODUCT_DAYS_SQL),
];

/// The aggregates of one set of `orders` data files.
struct Aggregates {
    orders_version: Option<u64>,
    /// The data files they were built from.
    files: HashSet<String>,
    /// Per table of [`AGGREGATES`]: its schema and rows.
    tables: Vec<(SchemaRef, Vec<RecordBatch>)>,
    ctx: SessionContext,
}

/// Answers panels from aggregates of `orders` kept in memory ([`Source::Aggregates`]): about 20 lines
/// per invoice, so the panels read a twentieth of the rows. They follow the table's commits: the first
/// panel request after a commit aggregates only the data files the commits added with new rows and
/// appends them (an invoice split across commits then has a row in each, which the panels' statements
/// add up); a compaction's rewritten files hold rows already aggregated. When other files were removed,
/// everything is aggregated again. Requests meanwhile wait.
pub struct PanelStore {
    catalog: Arc<LiveCatalog>,
    aggregates: tokio::sync::Mutex<Option<Aggregates>>,
}

impl PanelStore {
    /// A store over `catalog`, built on first use.
    pub fn new(catalog: Arc<LiveCatalog>) -> PanelStore {
        PanelStore {
            catalog,
            aggregates: tokio::sync::Mutex::new(None),
        }
    }

    /// Builds the aggregates now (a failure is logged; the first panel request tries again).
    pub async fn warm(&self) {
        if let Err(e) = self.current().await {
            tracing::warn!("building the panels' aggregates: {e}");
        }
    }

    /// Runs panel `name`; `None` for an unknown panel.
    pub async fn run(
        &self,
        name: &str,
        p: &PanelParams,
    ) -> Option<shopstream_engine::Result<QueryResult>> {
        if p.customer.is_some() && name == "top_products" {
            let sql = sql_over(name, p, Source::Lines)?;
            return Some(self.catalog.query(&sql).await);
        }
        let sql = sql_over(name, p, Source::Aggregates)?;
        Some(
            async {
                let ctx = self.current().await?;
                shopstream_engine::run_read_only(&ctx, &sql).await
            }
            .await,
        )
    }

    /// The aggregates' session, brought up to date with `orders` first.
    async fn current(&self) -> shopstream_engine::Result<SessionContext> {
        self.catalog.refresh().await?;
        let mut slot = self.aggregates.lock().await;
        let version = self.catalog.version(&Table::orders()).await;
        if let Some(a) = slot.as_ref().filter(|a| a.orders_version == version) {
            return Ok(a.ctx.clone());
        }
        let started = std::time::Instant::now();
        // One version's files, and what changed since the aggregates' version: everything below reads
        // exactly these files, so the aggregates are of one set of files even when a commit lands
        // meanwhile.
        let since = slot.as_ref().and_then(|a| a.orders_version);
        let at = self.catalog.files(&Table::orders(), since).await?;
        let version = at.version;
        let files: HashSet<String> = at.files.into_iter().collect();
        // A compaction since: the files it removed were aggregated and the ones it added hold the same
        // rows, so only files added with new data are to be aggregated.
        let rewritten_only = |old: &Aggregates| {
            at.changes.as_ref().is_some_and(|c| {
                c.removed
                    .iter()
                    .all(|r| !r.data_change && old.files.contains(&r.uri))
            })
        };
        // The old aggregates stay in place until the new ones are built (a dropped request, e.g. a client
        // that went away, leaves them as they were).
        let added = match slot.as_ref() {
            Some(old) if old.files.is_subset(&files) => Some((
                old,
                files.difference(&old.files).cloned().collect::<Vec<_>>(),
            )),
            Some(old) if rewritten_only(old) => {
                let changes = at.changes.as_ref().expect("checked above");
                let added = changes
                    .added
                    .iter()
                    .filter(|a| a.data_change && files.contains(&a.uri))
                    .map(|a| a.uri.clone())
                    .collect();
                Some((old, added))
            }
            _ => None,
        };
        let appended = match added {
            Some((old, added)) => self
                .append(old.tables.clone(), &added)
                .await?
                .map(|t| (t, format!("{} files with new rows", added.len()))),
            None => None,
        };
        let (tables, how) = match appended {
            Some(t) => t,
            None => (self.build(&files).await?, "all files".to_string()),
        };
        let ctx = SessionContext::new_with_config(LiveCatalog::session_config()?);
        let partitions = ctx.state().config().target_partitions().max(1);
        for ((name, _), (schema, batches)) in AGGREGATES.iter().zip(&tables) {
            // Spread over the session's partitions, so panels scan them in parallel.
            let mut parts = vec![Vec::new(); partitions];
            for (i, batch) in batches.iter().enumerate() {
                parts[i % partitions].push(batch.clone());
            }
            ctx.register_table(*name, Arc::new(MemTable::try_new(schema.clone(), parts)?))?;
        }
        tracing::info!(
            "panel aggregates of orders version {version:?} ({how}) in {} ms",
            started.elapsed().as_millis()
        );
        *slot = Some(Aggregates {
            orders_version: version,
            files,
            tables,
            ctx: ctx.clone(),
        });
        Ok(ctx)
    }

    /// Aggregates `files` (all of `orders`).
    async fn build(
        &self,
        files: &HashSet<String>,
    ) -> shopstream_engine::Result<Vec<(SchemaRef, Vec<RecordBatch>)>> {
        let files: Vec<String> = files.iter().cloned().collect();
        let mut tables = Vec::new();
        for (_, sql) in AGGREGATES {
            let result = if files.is_empty() {
                // No data yet: the empty table gives the aggregates' columns.
                self.catalog.query(sql).await?
            } else {
                self.catalog.query_files(&files, "orders", sql).await?
            };
            tables.push((result.schema, compact(result.batches).map_err(arrow_error)?));
        }
        Ok(tables)
    }

    /// `tables` with the aggregates of `added` appended; `None` when those come out with other column
    /// types (then everything is aggregated again).
    async fn append(
        &self,
        mut tables: Vec<(SchemaRef, Vec<RecordBatch>)>,
        added: &[String],
    ) -> shopstream_engine::Result<Option<Vec<(SchemaRef, Vec<RecordBatch>)>>> {
        if added.is_empty() {
            return Ok(Some(tables));
        }
        for ((_, sql), (schema, batches)) in AGGREGATES.iter().zip(&mut tables) {
            let new = self.catalog.query_files(added, "orders", sql).await?;
            if new.schema.fields() != schema.fields() {
                return Ok(None);
            }
            batches.extend(new.batches);
            *batches = compact(std::mem::take(batches)).map_err(arrow_error)?;
        }
        Ok(Some(tables))
    }
}

fn arrow_error(e: arrow::error::ArrowError) -> shopstream_engine::EngineError {
    datafusion::error::DataFusionError::ArrowError(Box::new(e), None).into()
}

/// Joins many small batches (from many small commits) into fewer, so scans stay fast.
fn compact(batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    const MAX_BATCHES: usize = 64;
    const ROWS: usize = 64 * 1024;
    if batches.len() <= MAX_BATCHES {
        return Ok(batches);
    }
    let schema = batches[0].schema();
    let mut out = Vec::new();
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut rows = 0;
    for batch in batches {
        rows += batch.num_rows();
        pending.push(batch);
        if rows >= ROWS {
            out.push(concat_batches(&schema, &pending)?);
            pending.clear();
            rows = 0;
        }
    }
    if !pending.is_empty() {
        out.push(concat_batches(&schema, &pending)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_validated_and_quoted() {
        let q = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(PanelParams::parse(&q(&[("from", "2011-13-01")])).is_err());
        assert!(PanelParams::parse(&q(&[("grain", "hour")])).is_err());
        assert!(PanelParams::parse(&q(&[("n", "0")])).is_err());
        let p = PanelParams::parse(&q(&[("country", "Cote d'Ivoire'; DROP TABLE orders; --")]))
            .unwrap();
        let s = sql("countries", &p).unwrap();
        assert!(
            s.contains("country = 'Cote d''Ivoire''; DROP TABLE orders; --'"),
            "{s}"
        );
        let p = PanelParams::parse(&q(&[("from", "2011-01-10"), ("to", "2011-01-20")])).unwrap();
        assert_eq!(
            p.previous(),
            Some((
                NaiveDate::from_ymd_opt(2010, 12, 31).unwrap(),
                NaiveDate::from_ymd_opt(2011, 1, 10).unwrap()
            ))
        );
    }
}
