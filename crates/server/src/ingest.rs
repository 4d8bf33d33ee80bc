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
use shopstream_log::{LogError, NewRecord, Topic, TopicLog};

use crate::{Ack, AppState, Begin, Idempotency, MAX_HOLD, OnBackpressure};

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
                Some((k, ack)) if k == key => {
                    ack.end = r.offset + 1;
                    ack.records += 1;
                }
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
                            records: 1,
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
        "accepted": ack.records,
        "request": key,
        "duplicate": duplicate,
    }))
    .into_response()
}

/// Records and bytes waiting to be loaded (asked of Kafka on a blocking thread).
async fn lag(state: &Arc<AppState>, topic: &Arc<dyn TopicLog>) -> (u64, u64) {
    if state.backbone.embedded().is_some() {
        return state.lag(topic.as_ref());
    }
    let (state, topic) = (state.clone(), topic.clone());
    tokio::task::spawn_blocking(move || state.lag(topic.as_ref()))
        .await
        .unwrap_or((0, 0))
}

/// Waits for room under the back-pressure thresholds; `Err` is the 429 to send.
async fn admit(state: &Arc<AppState>, topic: &Arc<dyn TopicLog>) -> Result<(), Response> {
    let cfg = &state.config;
    let started = Instant::now();
    loop {
        let (records, bytes) = lag(state, topic).await;
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

/// `error`, counted as a rejected request.
pub(crate) fn reject(state: &AppState, status: StatusCode, msg: String) -> Response {
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

/// The records of a request as envelopes, keyed by the request's idempotency key.
fn envelopes(
    key: &str,
    source: &str,
    records: Vec<(u64, Map<String, Value>, Option<String>)>,
) -> Vec<NewRecord> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    records
        .into_iter()
        .map(|(index, fields, reason)| NewRecord {
            timestamp_ms: now_ms,
            key: Some(key.as_bytes().to_vec()),
            value: Envelope {
                source: source.to_string(),
                index,
                fields,
                checkpoint: None,
                reason,
            }
            .to_bytes(),
        })
        .collect()
}

/// A record's fields.
type Fields = Map<String, Value>;

/// A record a flow step rejected: its index in the request, its fields as received, the reason.
type Rejected = (u64, Map<String, Value>, String);

/// What a request stores: records for the topic, and (flows) records for the dead-letter topic.
struct Store {
    topic: Arc<dyn TopicLog>,
    records: Vec<(u64, Map<String, Value>)>,
    dead: Option<(Arc<dyn TopicLog>, Vec<Rejected>)>,
    filtered: usize,
}

/// An idempotency key marked in flight; dropping it before [`complete`](Self::complete) clears the mark
/// (the request failed, was throttled, or its client went away before anything was stored).
struct InFlightKey {
    state: Arc<AppState>,
    key: String,
    generation: u64,
    completed: bool,
}

impl InFlightKey {
    /// Records the stored request's answer under the key.
    fn complete(mut self, ack: Ack) {
        self.state
            .idempotency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remember(self.key.clone(), ack, self.state.idempotency_capacity);
        self.completed = true;
    }
}

impl Drop for InFlightKey {
    fn drop(&mut self) {
        if !self.completed {
            self.state
                .idempotency
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .release(&self.key, self.generation);
        }
    }
}

/// Marks `key` in flight, or answers a retry (the original offsets) or a concurrent duplicate (409).
fn begin_key(state: &Arc<AppState>, key: &str, topic: &str) -> Result<InFlightKey, Box<Response>> {
    let begun = state
        .idempotency
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .begin(key, state.idempotency_capacity);
    match begun {
        Begin::New(generation) => Ok(InFlightKey {
            state: state.clone(),
            key: key.to_string(),
            generation,
            completed: false,
        }),
        Begin::Done(ack) => {
            state
                .http
                .duplicate_requests
                .fetch_add(1, Ordering::Relaxed);
            Err(Box::new(accepted(topic, key, &ack, true)))
        }
        Begin::InFlight => Err(Box::new(reject(
            state,
            StatusCode::CONFLICT,
            format!("a request with Idempotency-Key `{key}` is in progress; retry"),
        ))),
    }
}

/// Stores a request once per idempotency key: dead letters first (a crash in between may record them
/// twice on retry, never lose them), then the records as one batch; answers with the records' offsets.
///
/// Cancel safety: dropped while waiting for room, nothing is stored and the key is free again; once the
/// append has started it runs to the end in its own task and records the key, so a retry after a client
/// gave up is answered as a duplicate, not stored twice.
async fn store(state: Arc<AppState>, key: String, request: Store) -> Response {
    let topic_name = request.topic.name().to_string();
    let in_flight = match begin_key(&state, &key, &topic_name) {
        Ok(k) => k,
        Err(response) => return *response,
    };
    if let Err(r) = admit(&state, &request.topic).await {
        return r;
    }
    let source = source_of(&key);
    let topic = request.topic.clone();
    let partition = topic.partition_for_key(key.as_bytes());
    let count = request.records.len() as u64;
    let dead_count = request.dead.as_ref().map_or(0, |(_, d)| d.len());
    let filtered = request.filtered;
    let batch = envelopes(
        &key,
        &source,
        request
            .records
            .into_iter()
            .map(|(i, f)| (i, f, None))
            .collect(),
    );
    let dead = request.dead.map(|(t, d)| {
        let b = envelopes(
            &key,
            &source,
            d.into_iter().map(|(i, f, r)| (i, f, Some(r))).collect(),
        );
        (t, b)
    });
    let task_state = state.clone();
    let appended = tokio::spawn(async move {
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
                    records: count,
                };
                in_flight.complete(ack.clone());
                let http = &task_state.http;
                http.accepted_requests.fetch_add(1, Ordering::Relaxed);
                http.accepted_records.fetch_add(count, Ordering::Relaxed);
                Ok(ack)
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(LogError::Invalid(e.to_string())),
        }
    })
    .await;
    let ack = match appended {
        Ok(Ok(ack)) => ack,
        Ok(Err(e @ LogError::TooLarge { .. })) => {
            return reject(
                &state,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{e}: send fewer records per request"),
            );
        }
        Ok(Err(e)) => {
            tracing::error!(topic = %topic_name, "append failed: {e}");
            return reject(
                &state,
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing the records failed: {e}"),
            );
        }
        Err(e) => {
            return reject(
                &state,
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing the records failed: {e}"),
            );
        }
    };
    let mut resp = accepted(&topic_name, &key, &ack, false);
    if dead_count > 0 || filtered > 0 {
        for (name, n) in [
            ("x-shopstream-dead-lettered", dead_count),
            ("x-shopstream-filtered", filtered),
        ] {
            resp.headers_mut().insert(
                name,
                n.to_string().parse().expect("a number is a header value"),
            );
        }
    }
    resp
}

/// The backbone's topic `name` (Kafka is asked on a blocking thread).
async fn topic_of(state: &Arc<AppState>, name: &str) -> shopstream_log::Result<Arc<dyn TopicLog>> {
    if state.backbone.embedded().is_some() {
        return state.backbone.topic(name);
    }
    let (state, name) = (state.clone(), name.to_string());
    tokio::task::spawn_blocking(move || state.backbone.topic(&name))
        .await
        .map_err(|e| LogError::Invalid(e.to_string()))?
}

/// `POST /v1/topics/{topic}/records`.
pub(crate) async fn post_records(
    State(state): State<Arc<AppState>>,
    Path(topic_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(topic) = topic_of(&state, &topic_name).await else {
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
        topic_of(&state, &flow.topic).await,
        topic_of(&state, &flow.dead_letter_topic()).await,
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use axum::http::HeaderValue;
    use shopstream_engine::stream::topic_load::LoadProgress;
    use shopstream_log::{Embedded, Log, PartitionConfig};

    use super::*;
    use crate::{KeyState, ServerConfig};

    fn state(config: ServerConfig) -> (Arc<AppState>, Arc<LoadProgress>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path()).unwrap();
        log.create_topic("orders", 1, PartitionConfig::default())
            .unwrap();
        let progress = Arc::new(LoadProgress::default());
        let loads = HashMap::from([("orders".to_string(), progress.clone())]);
        (
            AppState::new(
                Arc::new(Embedded::new(log, PartitionConfig::default())),
                config,
                loads,
                None,
                Vec::new(),
            ),
            progress,
            dir,
        )
    }

    fn request(state: &Arc<AppState>, key: &str) -> impl Future<Output = Response> + use<> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv"));
        headers.insert("idempotency-key", HeaderValue::from_str(key).unwrap());
        post_records(
            State(state.clone()),
            Path("orders".to_string()),
            headers,
            Bytes::from_static(b"InvoiceNo\n1\n2\n"),
        )
    }

    fn key_state(state: &AppState, key: &str) -> Option<KeyState> {
        state.idempotency.lock().unwrap().state(key).cloned()
    }

    fn stored(state: &AppState) -> u64 {
        let log = state.backbone.embedded().unwrap();
        let topic = log.topic("orders").unwrap();
        topic.partitions().iter().map(|p| p.end_offset()).sum()
    }

    #[tokio::test]
    async fn a_request_dropped_while_held_by_back_pressure_leaves_its_key_free() {
        let (state, progress, _dir) = state(ServerConfig {
            backpressure_records: 1,
            on_backpressure: OnBackpressure::Wait,
            ..ServerConfig::default()
        });
        assert_eq!(request(&state, "first").await.status(), StatusCode::OK);
        // One record behind: the next request is held; its client gives up.
        let held = tokio::time::timeout(Duration::from_millis(300), request(&state, "k")).await;
        assert!(held.is_err(), "the request was held");
        assert!(
            key_state(&state, "k").is_none(),
            "the key is not left in flight"
        );
        // The load catches up: the retry is stored, not refused with 409.
        *progress.loaded_offsets.lock().unwrap() = vec![stored(&state)];
        let retry = request(&state, "k").await;
        assert_eq!(retry.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_request_dropped_during_its_append_is_remembered_not_stored_twice() {
        let (state, _, _dir) = state(ServerConfig::default());
        let mut pending = Box::pin(request(&state, "k"));
        // One poll starts the append (in its own task); then the client goes away.
        assert!(futures::poll!(pending.as_mut()).is_pending());
        drop(pending);
        for _ in 0..100 {
            if matches!(key_state(&state, "k"), Some(KeyState::Done(_))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(matches!(key_state(&state, "k"), Some(KeyState::Done(_))));
        assert_eq!(stored(&state), 2);
        let retry = request(&state, "k").await;
        assert_eq!(retry.status(), StatusCode::OK);
        let body = axum::body::to_bytes(retry.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["duplicate"], true, "{body}");
        assert_eq!(stored(&state), 2, "the retry stored nothing");
    }
}
