//! The dashboard and the SQL explorer: static pages embedded in the binary, served at `/` and `/explorer`.
//!
//! The files under `crates/server/web/dist/` are compiled into the binary with `include_bytes!`, so the
//! page works offline and a fresh checkout builds without npm. They are built from `crates/server/web/`
//! (ECharts pinned in its `package-lock.json`; `web/build.sh` copies the chart library and the map into
//! `dist/`). The pages hold no data: they call the query API ([`crate::query`]) for everything they show,
//! so they are served without the bearer token, and the page asks for the token when the API wants one.
//! `SHOPSTREAM_WEB_DIR` makes the server read the same file names from a folder instead, for working on
//! the page without rebuilding; only the listed names are served, so no other file can be reached.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

macro_rules! assets {
    ($($name:literal => $mime:literal),* $(,)?) => {
        /// Every embedded file: name, content type, bytes.
        pub const ASSETS: &[(&str, &str, &[u8])] = &[
            $(($name, $mime, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/dist/", $name)))),*
        ];
    };
}

assets! {
    "index.html" => "text/html; charset=utf-8",
    "explorer.html" => "text/html; charset=utf-8",
    "app.js" => "text/javascript; charset=utf-8",
    "live.js" => "text/javascript; charset=utf-8",
    "explorer.js" => "text/javascript; charset=utf-8",
    "common.js" => "text/javascript; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "echarts.min.js" => "text/javascript; charset=utf-8",
    "world.json" => "application/json",
}

fn asset(name: &str) -> Response {
    let Some(&(name, mime, bytes)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    let body = match std::env::var_os("SHOPSTREAM_WEB_DIR") {
        Some(dir) => match std::fs::read(std::path::Path::new(&dir).join(name)) {
            Ok(b) => axum::body::Body::from(b),
            Err(e) => return (StatusCode::NOT_FOUND, format!("{name}: {e}\n")).into_response(),
        },
        None => axum::body::Body::from(bytes),
    };
    // Pages are small and change with the binary: revalidate them; the chart library is cacheable.
    let cache = if name.ends_with(".html") {
        "no-cache"
    } else {
        "public, max-age=3600"
    };
    (
        [(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, cache)],
        body,
    )
        .into_response()
}

/// Whether `path` is one of the page routes (served without the token: they carry no data).
pub fn is_page(path: &str) -> bool {
    path == "/" || path == "/explorer" || path.starts_with("/assets/")
}

/// The page routes.
pub fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { asset("index.html") }))
        .route("/explorer", get(|| async { asset("explorer.html") }))
        .route(
            "/assets/{name}",
            get(|Path(name): Path<String>| async move { asset(&name) }),
        )
}
