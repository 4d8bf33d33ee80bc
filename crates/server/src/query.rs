//! The query API: read-only SQL and the built-in reports over the lake, as JSON, CSV or Arrow IPC.
//!
//! `GET /api/sql?q=…` (or `POST /api/sql` with the statement as the body), `GET /api/reports`,
//! `GET /api/reports/{name}?n=…` (parameters by name), the dashboard's `GET /api/panels/{name}` ([`crate::panels`])
//! and `GET /api/openapi.json`. `format=json|csv|arrow` picks the output (JSON by
//! default); a panel's `format=sql` gives its statement over the order lines instead. The server's [`LiveCatalog`] looks for new Delta commits before each statement, so answers
//! include what the live load committed a moment ago. Statements that write are refused (400), as in `shopstream sql`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use shopstream_engine::output::{OutputFormat, write, write_arrow_ipc};
use shopstream_engine::{LiveCatalog, QueryResult, reports};

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

async fn run(lake: &LiveCatalog, sql: &str, format: Option<&str>) -> Response {
    respond(lake.query(sql).await, format)
}

/// A query's result in `format` (JSON by default), or its error.
fn respond(result: shopstream_engine::Result<QueryResult>, format: Option<&str>) -> Response {
    let result = match result {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("{e:#}")),
    };
    let mut body = Vec::new();
    let (written, content_type) = match format.unwrap_or("json") {
        "json" => (
            write(&result, OutputFormat::Json, &mut body),
            "application/json",
        ),
        "csv" => (write(&result, OutputFormat::Csv, &mut body), "text/csv"),
        "arrow" => (
            write_arrow_ipc(&result, &mut body),
            "application/vnd.apache.arrow.stream",
        ),
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("format `{other}`: use json, csv or arrow"),
            );
        }
    };
    match written {
        Ok(()) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn sql_get(
    State(lake): State<Arc<LiveCatalog>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(sql) = q.get("q") else {
        return error(StatusCode::BAD_REQUEST, "give the statement as ?q=…");
    };
    run(&lake, sql, q.get("format").map(String::as_str)).await
}

async fn sql_post(
    State(lake): State<Arc<LiveCatalog>>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body);
    // A JSON body {"sql": "…"} or the statement itself.
    let sql = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("sql").and_then(|s| s.as_str()).map(str::to_string))
        .unwrap_or_else(|| text.into_owned());
    run(&lake, &sql, q.get("format").map(String::as_str)).await
}

async fn report_list() -> Response {
    let list: Vec<serde_json::Value> = reports::all()
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "title": r.title(),
                "params": r.params.iter().map(|p| json!({"name": p.name, "default": p.default})).collect::<Vec<_>>(),
            })
        })
        .collect();
    axum::Json(list).into_response()
}

async fn report_run(
    State(lake): State<Arc<LiveCatalog>>,
    Path(name): Path<String>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Response {
    let format = q.remove("format");
    let report = match reports::find(&name) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::NOT_FOUND, e),
    };
    let params: BTreeMap<String, String> = q.into_iter().collect();
    match report.render(&params) {
        Ok(sql) => run(&lake, &sql, format.as_deref()).await,
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn panel_run(
    State(panels): State<Arc<crate::panels::PanelStore>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let params = match crate::panels::PanelParams::parse(&q) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // The panel's statement over the order lines, to rerun or adapt it in the explorer or elsewhere.
    if q.get("format").map(String::as_str) == Some("sql")
        && let Some(sql) = crate::panels::sql(&name, &params)
    {
        return ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], sql).into_response();
    }
    match panels.run(&name, &params).await {
        Some(result) => respond(result, q.get("format").map(String::as_str)),
        None => error(
            StatusCode::NOT_FOUND,
            format!(
                "no panel `{name}` (panels: {})",
                crate::panels::PANELS.join(", ")
            ),
        ),
    }
}

/// The OpenAPI description of the server's routes.
pub fn openapi() -> serde_json::Value {
    let format = json!({"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv", "arrow"]}});
    let path_param =
        |n: &str| json!({"name": n, "in": "path", "required": true, "schema": {"type": "string"}});
    let ok = |d: &str| json!({"200": {"description": d}, "400": {"description": "bad request, with the reason"}, "401": {"description": "token required"}});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "shopstream", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/health": {"get": {"summary": "liveness (no token needed)", "security": [], "responses": {"200": {"description": "ok"}}}},
            "/v1/topics/{topic}/records": {"post": {
                "summary": "store records durably (JSON, NDJSON or CSV body); answers after fsync",
                "parameters": [path_param("topic"), {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}],
                "requestBody": {"content": {"application/json": {}, "application/x-ndjson": {}, "text/csv": {}}},
                "responses": {"200": {"description": "stored: topic, partition, offsets, duplicate"}, "400": {"description": "bad body, with the line"}, "413": {"description": "body too large"}, "415": {"description": "unsupported content type"}, "429": {"description": "back-pressure; see Retry-After"}}}},
            "/v1/flows/{flow}/records": {"post": {
                "summary": "records through a flow's steps into its topic; rejected ones to its dead-letter topic",
                "parameters": [path_param("flow"), {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}],
                "responses": ok("stored; X-Shopstream-Dead-Lettered and X-Shopstream-Filtered count the rest")}},
            "/v1/status": {"get": {"summary": "partitions (end, loaded, lag) and counters", "responses": ok("status")}},
            "/metrics": {"get": {"summary": "Prometheus text", "responses": ok("metrics")}},
            "/api/sql": {
                "get": {"summary": "read-only SQL", "parameters": [{"name": "q", "in": "query", "required": true, "schema": {"type": "string"}}, format.clone()], "responses": ok("rows")},
                "post": {"summary": "read-only SQL (the statement, or {\"sql\": …}, as the body)", "parameters": [format.clone()], "responses": ok("rows")}},
            "/api/reports": {"get": {"summary": "the built-in reports and their parameters", "responses": ok("list")}},
            "/api/reports/{name}": {"get": {"summary": "run a report; its parameters as query parameters", "parameters": [path_param("name"), format.clone()], "responses": ok("rows")}},
            "/api/panels/{name}": {"get": {
                "summary": format!("dashboard panels: {}", crate::panels::PANELS.join(", ")),
                "parameters": [path_param("name"),
                    {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv", "arrow", "sql"]},
                     "description": "sql: the panel's statement over the order lines, as text"},
                    {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "country", "in": "query", "schema": {"type": "string"}},
                    {"name": "customer", "in": "query", "schema": {"type": "string"}},
                    {"name": "grain", "in": "query", "schema": {"type": "string", "enum": ["day", "week", "month"]}},
                    {"name": "n", "in": "query", "schema": {"type": "integer"}}],
                "responses": ok("rows")}},
            "/api/openapi.json": {"get": {"summary": "this description", "responses": ok("OpenAPI 3")}},
        }
    })
}

/// The query routes over `lake`. Within a tokio runtime, the panels' aggregates start building at once,
/// so the dashboard's first visit finds them ready.
pub fn routes(lake: Arc<LiveCatalog>) -> Router {
    let panels = Arc::new(crate::panels::PanelStore::new(lake.clone()));
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let panels = panels.clone();
        runtime.spawn(async move { panels.warm().await });
    }
    Router::new()
        .route("/api/sql", get(sql_get).post(sql_post))
        .route("/api/reports", get(report_list))
        .route("/api/reports/{name}", get(report_run))
        .route("/api/openapi.json", get(|| async { axum::Json(openapi()) }))
        .with_state(lake.clone())
        .merge(
            Router::new()
                .route("/api/panels/{name}", get(panel_run))
                .with_state(panels),
        )
}
