//! The query API: read-only SQL and the built-in reports over the lake, as JSON, CSV or Arrow IPC.
//!
//! `GET /api/sql?q=…` (or `POST /api/sql` with the statement as the body), `GET /api/reports` and
//! `GET /api/reports/{name}?n=…` (parameters by name). `format=json|csv|arrow` picks the output (JSON by
//! default). Every request opens the catalog afresh, so answers include what the live load committed a moment
//! ago. Statements that write are refused (400), as in `shopstream sql`.

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
use shopstream_engine::{Catalog, Lake, reports};

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

async fn run(lake: &Lake, sql: &str, format: Option<&str>) -> Response {
    let result = match Catalog::open(lake).await {
        Ok(c) => c.query(sql).await,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
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
    State(lake): State<Arc<Lake>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(sql) = q.get("q") else {
        return error(StatusCode::BAD_REQUEST, "give the statement as ?q=…");
    };
    run(&lake, sql, q.get("format").map(String::as_str)).await
}

async fn sql_post(
    State(lake): State<Arc<Lake>>,
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
    State(lake): State<Arc<Lake>>,
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

/// The query routes over `lake`.
pub fn routes(lake: Lake) -> Router {
    Router::new()
        .route("/api/sql", get(sql_get).post(sql_post))
        .route("/api/reports", get(report_list))
        .route("/api/reports/{name}", get(report_run))
        .with_state(Arc::new(lake))
}
