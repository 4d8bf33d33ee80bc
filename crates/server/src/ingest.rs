//! The push route: a request body into one durable batch of the log, once per idempotency key.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shopstream_ingest::sources::Envelope;
use shopstream_ingest::sources::http::{BodyFormat, parse_body};
use shopstream_log::{NewRecord, Topic};

use crate::{Ack, AppState, Idempotency, KeyState, MAX_HOLD, OnBackpressure};

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn source_of(key: &str) -> String {
    format!("http:{key}")
}

/// Rebuilds the idempotency keys of `topic`'s recent records (a key is the request's `source`).
pub(crate) fn reload_keys(topic: &Topic, keys: &mut Idempotency, capacity: usize) {
    for (p, part) in topic.partitions().iter().enumerate() {
        let end = part.end_offset();
        let from = end
            .saturating_sub(crate::IDEMPOTENCY_WINDOW as u64)
            .max(part.start_offset());
        let Ok(records) = part.read(from, crate::IDEMPOTENCY_WINDOW, usize::MAX) else {
            continue;
        };
        let mut current: Option<(String, Ack)> = None;
        for r in records {
            let Ok(env) = serde_json::from_slice::<Envelope>(&r.value) else {
                continue;
            };
            let Some(key) = env.source.strip_prefix("http:") else {
                continue;
            };
            match &mut current {
                Some((k, ack)) if k == key => ack.end = r.offset + 1,
                _ => {
                    if let Some((k, ack)) = current.take() {
                        keys.remember(k, ack, capacity);
                    }
                    current = Some((
                        key.to_string(),
                        Ack {
                            partition: p as u32,
                            start: r.offset,
                            end: r.offset + 1,
                        },
                    ));
                }
            }
        }
        if let Some((k, ack)) = current {
            keys.remember(k, ack, capacity);
        }
    }
}

fn accepted(topic: &str, key: &str, ack: &Ack, duplicate: bool) -> Response {
    axum::Json(json!({
        "topic": topic,
        "partition": ack.partition,
        "offsets": [ack.start, ack.end],
        "accepted": ack.end - ack.start,
        "request": key,
        "duplicate": duplicate,
    }))
    .into_response()
}

/// Waits for room under the back-pressure thresholds; `Err` is the 429 to send.
async fn admit(state: &AppState, topic: &Topic) -> Result<(), Response> {
    let cfg = &state.config;
    let started = Instant::now();
    loop {
        let (records, bytes) = state.lag(topic);
        if records < cfg.backpressure_records && bytes < cfg.backpressure_mb * 1024 * 1024 {
            return Ok(());
        }
        if cfg.on_backpressure == OnBackpressure::Reject || started.elapsed() > MAX_HOLD {
            state
                .http
                .throttled_requests
                .fetch_add(1, Ordering::Relaxed);
            return Err((
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                axum::Json(json!({
                    "error": format!("the lake load is {records} records behind; retry later"),
                })),
            )
                .into_response());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `POST /v1/topics/{topic}/records`.
pub(crate) async fn post_records(
    State(state): State<Arc<AppState>>,
    Path(topic_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reject = |status, msg: String| {
        state.http.rejected_requests.fetch_add(1, Ordering::Relaxed);
        error(status, msg)
    };
    let Ok(topic) = state.log.topic(&topic_name) else {
        return reject(StatusCode::NOT_FOUND, format!("no topic `{topic_name}`"));
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let Some(format) = BodyFormat::from_content_type(content_type) else {
        return reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type `{content_type}`: send application/json, application/x-ndjson or text/csv"
            ),
        );
    };
    let key_header = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    if let Some(k) = key_header
        && (k.is_empty() || k.len() > 200 || k.chars().any(|c| c.is_control()))
    {
        return reject(
            StatusCode::BAD_REQUEST,
            "Idempotency-Key: 1 to 200 printable characters".into(),
        );
    }
    let key = key_header.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
    let records = match parse_body(format, &body) {
        Ok(r) if r.is_empty() => {
            return reject(StatusCode::BAD_REQUEST, "the body holds no records".into());
        }
        Ok(r) => r,
        Err(e) => return reject(StatusCode::BAD_REQUEST, e),
    };
    // Claim the key: a stored key answers with its offsets; a key in flight is a concurrent retry.
    {
        let mut idem = state.idempotency.lock().unwrap_or_else(|e| e.into_inner());
        match idem.keys.get(&key) {
            Some(KeyState::Done(ack)) => {
                state
                    .http
                    .duplicate_requests
                    .fetch_add(1, Ordering::Relaxed);
                return accepted(&topic_name, &key, ack, true);
            }
            Some(KeyState::InFlight) => {
                drop(idem);
                return reject(
                    StatusCode::CONFLICT,
                    format!("a request with Idempotency-Key `{key}` is in progress; retry"),
                );
            }
            None => {
                idem.keys.insert(key.clone(), KeyState::InFlight);
            }
        }
    }
    let release = |state: &AppState| {
        let mut idem = state.idempotency.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(idem.keys.get(&key), Some(KeyState::InFlight)) {
            idem.keys.remove(&key);
        }
    };
    if let Err(r) = admit(&state, &topic).await {
        release(&state);
        return r;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let source = source_of(&key);
    let batch: Vec<NewRecord> = records
        .into_iter()
        .enumerate()
        .map(|(i, fields)| {
            NewRecord::new(
                now_ms,
                Envelope {
                    source: source.clone(),
                    index: i as u64 + 1,
                    fields,
                    checkpoint: None,
                }
                .to_bytes(),
            )
        })
        .collect();
    let partition = topic.partition_for_key(key.as_bytes());
    let count = batch.len() as u64;
    let append_topic = topic.clone();
    let result = tokio::task::spawn_blocking(move || append_topic.append(partition, &batch)).await;
    match result {
        Ok(Ok(range)) => {
            let ack = Ack {
                partition,
                start: range.start,
                end: range.end,
            };
            state
                .idempotency
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remember(key.clone(), ack.clone(), state.idempotency_capacity);
            state.http.accepted_requests.fetch_add(1, Ordering::Relaxed);
            state
                .http
                .accepted_records
                .fetch_add(count, Ordering::Relaxed);
            accepted(&topic_name, &key, &ack, false)
        }
        Ok(Err(e)) => {
            release(&state);
            tracing::error!(topic = %topic_name, "append failed: {e}");
            reject(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing the records failed: {e}"),
            )
        }
        Err(e) => {
            release(&state);
            reject(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing the records failed: {e}"),
            )
        }
    }
}
