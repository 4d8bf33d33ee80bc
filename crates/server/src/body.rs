//! Request bodies. A body is read whole, up to `[server] max_body_mb`, before its handler runs (POST, PUT and
//! PATCH of the routes behind the token). A request that is refused before its body was read (over the limit,
//! or without its token) is answered only after what the client still sends has been read and dropped, up to
//! [`DRAIN_BYTES`] for [`DRAIN_TIME`], as nginx's lingering close does: a client that writes its whole body
//! before it reads (ureq, Python's `requests`, `urllib`) then gets the 413 or 401 instead of a broken pipe.
//! Nothing drained is kept, so memory stays bounded by the limit; a body declared larger than the limit plus
//! [`DRAIN_BYTES`], or sent with `Expect: 100-continue` (refused before `100 Continue` went out), is refused
//! at once without reading any of it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;

use crate::AppState;
use crate::ingest::reject;

/// How much of a refused body is read and dropped before the answer.
pub const DRAIN_BYTES: u64 = 64 * 1024 * 1024;
/// How long a refused body is read before the answer goes out anyway.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Reads and drops up to [`DRAIN_BYTES`] of `body`, for at most [`DRAIN_TIME`].
pub(crate) async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let mut left = DRAIN_BYTES;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            left = left.saturating_sub(chunk.len() as u64);
            if left == 0 {
                break;
            }
        }
    })
    .await;
}

/// Whether reading `headers`' body could only be a waste: it is declared too large to drain, or the client waits
/// for `100 Continue` (which reading would send) before it sends the body.
pub(crate) fn refuse_unread(headers: &HeaderMap, limit: u64) -> bool {
    let expects_continue = headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    expects_continue || declared_length(headers).is_some_and(|n| n > limit + DRAIN_BYTES)
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Middleware: hands the handler the body read whole, or answers 413 when it is over the limit.
pub(crate) async fn read_whole(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    // Only the routes that take a body read one: a GET, or a route open without the token, is passed on
    // with its body unread (so no client without the token has the server hold a body).
    let path = request.uri().path();
    let takes_body = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    );
    if !takes_body || crate::is_open(path) {
        return next.run(request).await;
    }
    let limit = state.config.max_body_mb as u64 * 1024 * 1024;
    let (parts, body) = request.into_parts();
    let over = declared_length(&parts.headers).is_some_and(|n| n > limit);
    let read = if over {
        Err(Refused::TooLarge(body))
    } else {
        read_up_to(body, limit).await
    };
    match read {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(Refused::Broken(e)) => reject(
            &state,
            StatusCode::BAD_REQUEST,
            format!("the request body could not be read: {e}"),
        ),
        Err(Refused::TooLarge(rest)) => {
            // Once reading began, `100 Continue` went out: the client sends the body, so it is drained.
            if !(over && refuse_unread(&parts.headers, limit)) {
                drain(rest).await;
            }
            let message = format!(
                "the request body is over the {} MiB limit ([server] max_body_mb): send fewer records per request",
                state.config.max_body_mb
            );
            reject(&state, StatusCode::PAYLOAD_TOO_LARGE, message)
        }
    }
}

enum Refused {
    /// Over the limit, with what is left of the body to drain.
    TooLarge(Body),
    /// The client's body broke off or was malformed.
    Broken(axum::Error),
}

/// The body when it is at most `limit` bytes (not copied when it came in one piece).
async fn read_up_to(body: Body, limit: u64) -> Result<Bytes, Refused> {
    let mut stream = body.into_data_stream();
    let (mut chunks, mut len) = (Vec::<Bytes>::new(), 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Refused::Broken)?;
        len += chunk.len() as u64;
        if len > limit {
            return Err(Refused::TooLarge(Body::from_stream(stream)));
        }
        chunks.push(chunk);
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => Bytes::from(chunks.concat()),
    })
}
