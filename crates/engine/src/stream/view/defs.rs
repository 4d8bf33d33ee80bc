//! The views of a lake, kept in it so every worker sees them: one JSON object per view,
//! `_shopstream/views/<name>.json` ([`ViewDef`]). Creating a view plans it first against its source's
//! columns, so what cannot run is refused then, with the reason. Dropping one removes its definition, then
//! (once no worker runs it) its state (`<name>/_state`); with `purge`, its table of final rows too.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use shopstream_ingest::Dataset;

use super::job::ViewDef;
use super::plan::ViewPlan;
use crate::error::{EngineError, Result};
use crate::lake::{Lake, Table};

fn failed(view: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::View {
        view: view.into(),
        reason: e.to_string(),
    }
}

fn location(lake: &Lake, name: &str) -> Result<(crate::storage::Store, object_store::path::Path)> {
    let (store, root) = lake.object_store()?;
    Ok((
        store,
        root.join("_shopstream")
            .join("views")
            .join(format!("{name}.json").as_str()),
    ))
}

/// The columns of a view's source: a dataset of the lake (or orders), or another view's rows.
pub async fn source_schema(lake: &Lake, name: &str) -> Result<Option<arrow::datatypes::SchemaRef>> {
    if let Some(dataset) = lake.dataset(name).await? {
        return Ok(Some(Table::of_dataset(&dataset).schema()));
    }
    Ok(lake.derived(name).await?.map(|t| t.schema()))
}

/// Plans `def` against the lake's tables and views, and the datasets the config declares (`declared`,
/// which may have no table yet): the error says why a view cannot run.
pub async fn check(lake: &Lake, def: &ViewDef, declared: &[Arc<Dataset>]) -> Result<ViewPlan> {
    check_at(lake, def, declared, 0).await
}

/// Views over views this deep are refused (a loop of views never ends).
const MAX_DEPTH: usize = 8;

/// [`check`] of a view `depth` views above the one being created.
fn check_at<'a>(
    lake: &'a Lake,
    def: &'a ViewDef,
    declared: &'a [Arc<Dataset>],
    depth: usize,
) -> futures::future::BoxFuture<'a, Result<ViewPlan>> {
    Box::pin(async move {
        if !shopstream_ingest::dataset::is_identifier(&def.name) {
            return Err(failed(
                &def.name,
                "a view's name is a lowercase identifier (letters, digits, _)",
            ));
        }
        if taken(lake, &def.name).await? || declared.iter().any(|d| d.name == def.name) {
            return Err(failed(
                &def.name,
                "the name is a dataset's, or a table of the lake's own: a view needs a name of its own",
            ));
        }
        if depth > MAX_DEPTH {
            return Err(failed(
                &def.name,
                format!("views over views more than {MAX_DEPTH} deep (a loop of views?)"),
            ));
        }
        let mut schemas = std::collections::HashMap::new();
        for name in lake
            .dataset_names()
            .await?
            .into_iter()
            .chain(["orders".to_string()])
        {
            if name != def.name
                && let Some(s) = source_schema(lake, &name).await?
            {
                schemas.insert(name, s);
            }
        }
        for d in declared {
            if d.name != def.name && !schemas.contains_key(&d.name) {
                schemas.insert(d.name.clone(), Table::of_dataset(d).schema());
            }
        }
        // Another view is a source too: its table's columns, or (not made yet) its plan's.
        let sql = def.sql.to_lowercase();
        for view in list(lake).await? {
            if view.name == def.name || !sql.contains(&view.name) {
                continue;
            }
            let schema = match lake.derived(&view.name).await? {
                Some(t) => t.schema(),
                None => {
                    check_at(lake, &view, declared, depth + 1)
                        .await?
                        .output_schema
                }
            };
            schemas.insert(view.name.clone(), schema);
        }
        let schemas = Arc::new(schemas);
        ViewPlan::new(&def.name, &def.sql, move |n| schemas.get(n).cloned()).await
    })
}

/// Whether `name` is a dataset's, one of the lake's own tables, or starts with `_` (the lake's folders).
async fn taken(lake: &Lake, name: &str) -> Result<bool> {
    let own = Table::builtins()
        .iter()
        .map(|t| t.name().to_string())
        .chain([Table::late_rows().name().to_string()])
        .any(|n| n == name);
    Ok(own || name.starts_with('_') || lake.dataset(name).await?.is_some())
}

/// Whether `name` is a view of the lake (a view over it reads its table's commits).
pub async fn is_view(lake: &Lake, name: &str) -> Result<bool> {
    Ok(get(lake, name).await?.is_some())
}

/// Creates or replaces view `def` (a changed SQL or setting is a new version: its state starts over),
/// checked as [`check`] does.
pub async fn save(lake: &Lake, def: &ViewDef, declared: &[Arc<Dataset>]) -> Result<()> {
    check(lake, def, declared).await?;
    let (store, at) = location(lake, &def.name)?;
    let body = serde_json::to_vec_pretty(def).map_err(|e| failed(&def.name, e))?;
    store
        .put(&at, PutPayload::from(body))
        .await
        .map_err(|e| failed(&def.name, e))?;
    Ok(())
}

/// View `name`, if the lake has it.
pub async fn get(lake: &Lake, name: &str) -> Result<Option<ViewDef>> {
    let (store, at) = location(lake, name)?;
    match store.get(&at).await {
        Ok(got) => {
            let bytes = got.bytes().await.map_err(|e| failed(name, e))?;
            Ok(Some(
                serde_json::from_slice(&bytes).map_err(|e| failed(name, e))?,
            ))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(failed(name, e)),
    }
}

/// Every view of the lake, by name.
pub async fn list(lake: &Lake) -> Result<Vec<ViewDef>> {
    let (store, root) = lake.object_store()?;
    let listed: Vec<_> = store
        .list(Some(&root.join("_shopstream").join("views")))
        .try_collect()
        .await
        .map_err(|e| failed("*", e))?;
    let mut out = Vec::new();
    for meta in listed {
        if let Some(name) = meta
            .location
            .filename()
            .and_then(|f| f.strip_suffix(".json"))
            && let Some(def) = get(lake, name).await?
        {
            out.push(def);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The job a worker claims to run view `name` (one worker at a time).
pub fn job_name(name: &str) -> String {
    format!("view-{name}")
}

/// How long a worker's claim of a view lives on object storage without being renewed.
pub const VIEW_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long [`drop`] waits for a worker running the view to stop.
const DROP_WAIT: std::time::Duration = std::time::Duration::from_secs(90);

/// Removes view `name` and its state; with `purge`, its table too. False when there was no such view.
/// The definition goes first; the state and table only once no worker runs the view (a running `serve`
/// stops it within seconds of seeing it gone), so nothing is written into them after they are removed.
/// A view whose definition is gone but whose state is left (a drop that timed out) is cleaned up too.
pub async fn drop(lake: &Lake, name: &str, purge: bool) -> Result<bool> {
    if taken(lake, name).await? {
        return Err(failed(
            name,
            "not a view: a dataset or a table of the lake's own",
        ));
    }
    if get(lake, name).await?.is_some() {
        let (store, at) = location(lake, name)?;
        store.delete(&at).await.map_err(|e| failed(name, e))?;
    } else if !has_state(lake, name).await? {
        return Ok(false);
    }
    let claim = wait_for_claim(lake, name).await?;
    let removed = remove_files(lake, name, purge).await;
    claim.release().await;
    removed.map(|()| true)
}

/// Whether view `name` left a state folder (a dataset's folder has none).
async fn has_state(lake: &Lake, name: &str) -> Result<bool> {
    let (store, root) = lake.object_store()?;
    let first = store
        .list(Some(&root.join(name).join("_state")))
        .try_next()
        .await
        .map_err(|e| failed(name, e))?;
    Ok(first.is_some())
}

/// The view's job, claimed once the worker running it (if any) stopped.
async fn wait_for_claim(lake: &Lake, name: &str) -> Result<crate::lease::JobClaim> {
    let holder = crate::lease::holder_name();
    let started = std::time::Instant::now();
    loop {
        if let Some(claim) =
            crate::lease::claim_job(lake, &job_name(name), &holder, VIEW_LEASE).await?
        {
            return Ok(claim);
        }
        if started.elapsed() > DROP_WAIT {
            return Err(failed(
                name,
                format!(
                    "its definition is removed, but a worker still runs it after {} s; run `view drop` again once it stopped",
                    DROP_WAIT.as_secs()
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Deletes the view's state (with `purge`, its whole folder: the table too).
async fn remove_files(lake: &Lake, name: &str, purge: bool) -> Result<()> {
    let (store, root) = lake.object_store()?;
    let folder = if purge {
        root.join(name)
    } else {
        root.join(name).join("_state")
    };
    let inside: Vec<_> = store
        .list(Some(&folder))
        .try_collect()
        .await
        .map_err(|e| failed(name, e))?;
    for meta in inside {
        store
            .delete(&meta.location)
            .await
            .map_err(|e| failed(name, e))?;
    }
    if purge && let Some(dir) = lake.local_dir() {
        let _ = std::fs::remove_dir_all(dir.join(name));
    }
    Ok(())
}

/// The views the dashboard's Live section reads: revenue, orders and lines per country per minute; the top
/// products of the last hour (a hopping window: an hour, every minute); the customers active in the last
/// hour (the same hop).
pub fn defaults() -> Vec<ViewDef> {
    vec![
        ViewDef::new(
            "revenue_per_minute",
            "SELECT window_start, window_end, country, sum(line_revenue) AS revenue, \
             count(DISTINCT invoice_no) AS orders, count(*) AS lines \
             FROM TUMBLE(orders, invoice_date, INTERVAL '1 minute') GROUP BY window_start, window_end, country",
        ),
        ViewDef::new(
            "top_products_hour",
            "SELECT window_start, window_end, stock_code, max(description) AS description, \
             sum(quantity) AS quantity, sum(line_revenue) AS revenue \
             FROM HOP(orders, invoice_date, INTERVAL '1 minute', INTERVAL '1 hour') \
             WHERE NOT is_cancellation GROUP BY window_start, window_end, stock_code",
        ),
        ViewDef::new(
            "active_customers_hour",
            "SELECT window_start, window_end, count(DISTINCT customer_id) AS customers, \
             count(DISTINCT invoice_no) AS orders, sum(line_revenue) AS revenue \
             FROM HOP(orders, invoice_date, INTERVAL '1 minute', INTERVAL '1 hour') \
             GROUP BY window_start, window_end",
        ),
    ]
}
