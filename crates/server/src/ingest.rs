//! The push route: a request body into one durable batch of the log, once per idempotency key.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use serde_json::{Map, Value};
use shopstream_ingest::sources::Envelope;
use shopstream_ingest::sources::flow::Outcome;
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

/// The request body's format, or the 415 to send.
fn body_format(headers: &HeaderMap) -> Result<BodyFormat, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    BodyFormat::from_content_type(content_type).ok_or_else(|| {
        format!(
            "content type `{content_type}`: send application/json, application/x-ndjson or text/csv"
        )
    })
}

fn reject(state: &AppState, status: StatusCode, msg: String) -> Response {
    state.http.rejected_requests.fetch_add(1, Ordering::Relaxed);
    error(status, msg)
}

/// Parses the body and the idempotency key (generated when absent); `Err` is the response to send.
fn read_request(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, Vec<Fields>), Box<Response>> {
    let format =
        body_format(headers).map_err(|m| reject(state, StatusCode::UNSUPPORTED_MEDIA_TYPE, m))?;
    let key_header = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    if let Some(k) = key_header
        && (k.is_empty() || k.len() > 200 || k.chars().any(|c| c.is_control()))
    {
        return Err(Box::new(reject(
            state,
            StatusCode::BAD_REQUEST,
            "Idempotency-Key: 1 to 200 printable characters".into(),
        )));
    }
    let key = key_header.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
    match parse_body(format, body) {
        Ok(r) if r.is_empty() => Err(Box::new(reject(
            state,
            StatusCode::BAD_REQUEST,
            "the body holds no records".into(),
        ))),
        Ok(r) => Ok((key, r)),
        Err(e) => Err(Box::new(reject(state, StatusCode::BAD_REQUEST, e))),
    }
}

fn envelopes(
    source: &str,
    records: Vec<(u64, Map<String, Value>, Option<String>)>,
) -> Vec<NewRecord> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    records
        .into_iter()
        .map(|(index, fields, reason)| {
            NewRecord::new(
                now_ms,
                Envelope {
                    source: source.to_string(),
                    index,
                    fields,
                    checkpoint: None,
                    reason,
                }
                .to_bytes(),
            )
        })
        .collect()
}

/// A record's fields.
type Fields = Map<String, Value>;

/// A record a flow step rejected: its index in the request, its fields as received, the reason.
type Rejected = (u64, Map<String, Value>, String);

/// What a request stores: records for the topic, and (flows) records for the dead-letter topic.
struct Store {
    topic: Arc<Topic>,
    records: Vec<(u64, Map<String, Value>)>,
    dead: Option<(Arc<Topic>, Vec<Rejected>)>,
    filtered: usize,
}

/// Stores a request once per idempotency key: dead letters first (a crash in between may record them
/// twice on retry, never lose them), then the records as one batch; answers with the records' offsets.
async fn store(state: Arc<AppState>, key: String, request: Store) -> Response {
    let topic_name = request.topic.name().to_string();
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
                    &state,
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
    if let Err(r) = admit(&state, &request.topic).await {
        release(&state);
        return r;
    }
    let source = source_of(&key);
    let topic = request.topic.clone();
    let partition = topic.partition_for_key(key.as_bytes());
    let count = request.records.len() as u64;
    let dead_count = request.dead.as_ref().map_or(0, |(_, d)| d.len());
    let filtered = request.filtered;
    let batch = envelopes(
        &source,
        request
            .records
            .into_iter()
            .map(|(i, f)| (i, f, None))
            .collect(),
    );
    let dead = request.dead.map(|(t, d)| {
        let b = envelopes(
            &source,
            d.into_iter().map(|(i, f, r)| (i, f, Some(r))).collect(),
        );
        (t, b)
    });
    let result = tokio::task::spawn_blocking(move || {
        if let Some((t, b)) = dead.filter(|(_, b)| !b.is_empty()) {
            t.append(0, &b)?;
        }
        topic.append(partition, &batch)
    })
    .await;
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
            let mut resp = accepted(&topic_name, &key, &ack, false);
            if dead_count > 0 || filtered > 0 {
                resp.headers_mut().insert(
                    "x-shopstream-dead-lettered",
                    dead_count
                        .to_string()
                        .parse()
                        .expect("a number is a header value"),
                );
                resp.headers_mut().insert(
                    "x-shopstream-filtered",
                    filtered
                        .to_string()
                        .parse()
                        .expect("a number is a header value"),
                );
            }
            resp
        }
        Ok(Err(e)) => {
            release(&state);
            tracing::error!(topic = %topic_name, "append failed: {e}");
            reject(
                &state,
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing the records failed: {e}"),
            )
        }
        Err(e) => {
            release(&state);
            reject(
                &state,
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing the records failed: {e}"),
            )
        }
    }
}

/// `POST /v1/topics/{topic}/records`.
pub(crate) async fn post_records(
    State(state): State<Arc<AppState>>,
    Path(topic_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(topic) = state.log.topic(&topic_name) else {
        return reject(
            &state,
            StatusCode::NOT_FOUND,
            format!("no topic `{topic_name}`"),
        );
    };
    let (key, records) = match read_request(&state, &headers, &body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let records = records
        .into_iter()
        .enumerate()
        .map(|(i, f)| (i as u64 + 1, f))
        .collect();
    let request = Store {
        topic,
        records,
        dead: None,
        filtered: 0,
    };
    store(state, key, request).await
}

/// `POST /v1/flows/{flow}/records`: the flow's steps, then its topic (rejected records to its dead-letter topic).
pub(crate) async fn post_flow_records(
    State(state): State<Arc<AppState>>,
    Path(flow_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(flow) = state.flows.iter().find(|f| f.name == flow_name).cloned() else {
        return reject(
            &state,
            StatusCode::NOT_FOUND,
            format!("no flow `{flow_name}`"),
        );
    };
    let (Ok(topic), Ok(dead_topic)) = (
        state.log.topic(&flow.topic),
        state.log.topic(&flow.dead_letter_topic()),
    ) else {
        return reject(
            &state,
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the topics of flow `{flow_name}` are missing"),
        );
    };
    let (key, records) = match read_request(&state, &headers, &body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let (mut kept, mut dead, mut filtered) = (Vec::new(), Vec::new(), 0);
    for (i, record) in records.into_iter().enumerate() {
        let index = i as u64 + 1;
        match flow.apply(record.clone()) {
            Outcome::Keep(r) => kept.push((index, r)),
            Outcome::Filtered => filtered += 1,
            Outcome::Dead(step, reason) => {
                dead.push((index, record, format!("step {step}: {reason}")))
            }
        }
    }
    let request = Store {
        topic,
        records: kept,
        dead: Some((dead_topic, dead)),
        filtered,
    };
    store(state, key, request).await
}
