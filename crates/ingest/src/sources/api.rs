//! REST API pull: polls a paginated JSON API and appends what it returns to a topic, keeping its place in the
//! log itself.
//!
//! Four pagination styles: a page number, an item offset, an opaque cursor from the response, or a next link.
//! Each fetched page's new records are appended as one batch whose envelopes carry the checkpoint to resume
//! from, so the place and the records are stored together (one checksummed batch): after a crash the poller
//! reads the last checkpoint back from the topic and neither skips nor repeats a page. A last page that is not
//! full is fetched again at the next poll, skipping the items already taken, so records added to it later
//! are picked up once. Errors and timeouts are retried with exponential backoff (0.5 s doubling to 30 s).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shopstream_log::{Backbone, NewRecord, TopicLog};

use serde_json::Map;

use super::Envelope;
use super::flow::{FlowConfig, Outcome};

/// How the API pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageStyle {
    /// `?page=N&per_page=M`, N from 1.
    Page,
    /// `?offset=N&limit=M`.
    Offset,
    /// `?cursor=C&limit=M`, C from the previous response (`cursor_field`).
    Cursor,
    /// Follow the URL in `next_field` of each response.
    NextLink,
}

/// One poller (`[[live.pollers]]` in the config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollerConfig {
    /// Name, unique among pollers (provenance is `api:<name>`).
    pub name: String,
    /// The first page's URL (query parameters for paging are added to it).
    pub url: String,
    /// Pagination style.
    pub style: PageStyle,
    /// Topic to append to.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Field of the response holding the array of records (empty: the response is the array).
    #[serde(default = "default_records_field")]
    pub records_field: String,
    /// Items per page asked for.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// Query parameter names.
    #[serde(default = "default_page_param")]
    pub page_param: String,
    #[serde(default = "default_size_param")]
    pub size_param: String,
    #[serde(default = "default_offset_param")]
    pub offset_param: String,
    #[serde(default = "default_cursor_param")]
    pub cursor_param: String,
    /// Response field with the next cursor (`cursor` style) or next URL (`next_link` style).
    #[serde(default = "default_next_field")]
    pub next_field: String,
    /// Pause between polls once caught up.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Per-request timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// `Authorization` header value, if the API needs one.
    #[serde(default)]
    pub authorization: String,
    /// A flow (`[[live.flows]]`) whose steps the records pass through; its topic replaces `topic`.
    #[serde(default)]
    pub flow: String,
}

fn default_topic() -> String {
    "orders".into()
}
fn default_records_field() -> String {
    "data".into()
}
fn default_page_size() -> usize {
    100
}
fn default_page_param() -> String {
    "page".into()
}
fn default_size_param() -> String {
    "per_page".into()
}
fn default_offset_param() -> String {
    "offset".into()
}
fn default_cursor_param() -> String {
    "cursor".into()
}
fn default_next_field() -> String {
    "next".into()
}
fn default_interval_ms() -> u64 {
    5000
}
fn default_timeout_ms() -> u64 {
    10_000
}

/// Where to resume: a position in the style's terms, and items of that page already taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Page number, offset, cursor or URL (as JSON).
    pub position: Value,
    /// Items of the page at `position` already appended.
    pub taken: usize,
}

/// Counters of a poller.
#[derive(Debug, Default)]
pub struct PollerProgress {
    /// Pages fetched.
    pub pages: AtomicU64,
    /// Records appended.
    pub records: AtomicU64,
    /// Failed requests (retried).
    pub errors: AtomicU64,
}

/// A running poller; see the module documentation.
pub struct Poller {
    config: PollerConfig,
    flow: Option<(FlowConfig, Arc<dyn TopicLog>)>,
    topic: Arc<dyn TopicLog>,
    partition: u32,
    checkpoint: Checkpoint,
    agent: ureq::Agent,
    progress: Arc<PollerProgress>,
}

fn source_of(name: &str) -> String {
    format!("api:{name}")
}

impl Poller {
    /// A poller resuming from the last checkpoint it stored in its topic; `flow` is the flow named by
    /// `config.flow` (its topic and dead-letter topic must exist).
    pub fn new(
        log: &dyn Backbone,
        config: PollerConfig,
        flow: Option<FlowConfig>,
    ) -> Result<Poller, String> {
        let flow = match flow {
            Some(f) => {
                let dead = log
                    .topic(&f.dead_letter_topic())
                    .map_err(|e| e.to_string())?;
                Some((f, dead))
            }
            None => None,
        };
        let topic_name = flow.as_ref().map_or(&config.topic, |(f, _)| &f.topic);
        let topic = log.topic(topic_name).map_err(|e| e.to_string())?;
        let source = source_of(&config.name);
        let partition = topic.partition_for_key(source.as_bytes());
        let checkpoint =
            last_checkpoint(topic.as_ref(), partition, &source).unwrap_or_else(|| Checkpoint {
                position: match config.style {
                    PageStyle::Page => Value::from(1),
                    PageStyle::Offset => Value::from(0),
                    PageStyle::Cursor => Value::Null,
                    PageStyle::NextLink => Value::String(config.url.clone()),
                },
                taken: 0,
            });
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
            .http_status_as_error(true)
            .build()
            .into();
        Ok(Poller {
            config,
            flow,
            topic,
            partition,
            checkpoint,
            agent,
            progress: Arc::new(PollerProgress::default()),
        })
    }

    /// Shared counters.
    pub fn progress(&self) -> Arc<PollerProgress> {
        self.progress.clone()
    }

    /// Where the next poll starts.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    fn url_for(&self) -> String {
        let c = &self.config;
        let pos = &self.checkpoint.position;
        let sep = if c.url.contains('?') { '&' } else { '?' };
        match c.style {
            PageStyle::Page => format!(
                "{}{sep}{}={}&{}={}",
                c.url, c.page_param, pos, c.size_param, c.page_size
            ),
            PageStyle::Offset => format!(
                "{}{sep}{}={}&{}={}",
                c.url, c.offset_param, pos, c.size_param, c.page_size
            ),
            PageStyle::Cursor => match pos.as_str() {
                Some(cursor) => format!(
                    "{}{sep}{}={}&{}={}",
                    c.url,
                    c.cursor_param,
                    encode(cursor),
                    c.size_param,
                    c.page_size
                ),
                None => format!("{}{sep}{}={}", c.url, c.size_param, c.page_size),
            },
            PageStyle::NextLink => pos.as_str().unwrap_or(&c.url).to_string(),
        }
    }

    /// Fetches one page and appends its new records; returns how many (0: caught up).
    pub fn poll_once(&mut self) -> Result<usize, String> {
        let url = self.url_for();
        let mut req = self.agent.get(&url);
        if !self.config.authorization.is_empty() {
            req = req.header("Authorization", &self.config.authorization);
        }
        let text = req
            .call()
            .map_err(|e| format!("GET {url}: {e}"))?
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("GET {url}: {e}"))?;
        let body: Value = serde_json::from_str(&text)
            .map_err(|e| format!("GET {url}: the response is not JSON: {e}"))?;
        self.progress.pages.fetch_add(1, Ordering::Relaxed);
        let items = if self.config.records_field.is_empty() {
            &body
        } else {
            &body[&self.config.records_field]
        };
        let items = items.as_array().ok_or_else(|| {
            format!(
                "GET {url}: no array at `{}` in the response",
                self.config.records_field
            )
        })?;
        let n = items.len();
        let next = match self.config.style {
            PageStyle::Page => (n >= self.config.page_size)
                .then(|| Value::from(self.checkpoint.position.as_u64().unwrap_or(1) + 1)),
            PageStyle::Offset => Some(Value::from(
                self.checkpoint.position.as_u64().unwrap_or(0) + n as u64,
            )),
            PageStyle::Cursor | PageStyle::NextLink => body
                .get(&self.config.next_field)
                .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                .cloned(),
        };
        let after = match next {
            Some(position) => Checkpoint { position, taken: 0 },
            None => Checkpoint {
                position: self.checkpoint.position.clone(),
                taken: n,
            },
        };
        let skip = self.checkpoint.taken.min(n);
        let fresh = &items[skip..];
        if fresh.is_empty() {
            // Nothing new; move on only if the page told us where (an emptied cursor page, etc.).
            if after.position != self.checkpoint.position && n > 0 {
                self.checkpoint = after;
            }
            return Ok(0);
        }
        let source = source_of(&self.config.name);
        let checkpoint = serde_json::to_value(&after).expect("checkpoints serialize");
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let page_label = format!("{source}#{}", self.checkpoint.position);
        let envelope = |i: usize, fields: Map<String, Value>, reason: Option<String>| {
            NewRecord::new(
                now_ms,
                Envelope {
                    source: page_label.clone(),
                    index: (skip + i + 1) as u64,
                    fields,
                    checkpoint: Some(checkpoint.clone()),
                    reason,
                }
                .to_bytes(),
            )
        };
        let (mut batch, mut dead) = (Vec::new(), Vec::new());
        for (i, item) in fresh.iter().enumerate() {
            let fields = match item {
                Value::Object(o) => o.clone(),
                other => Map::from_iter([("value".to_string(), other.clone())]),
            };
            match &self.flow {
                None => batch.push(envelope(i, fields, None)),
                Some((flow, _)) => match flow.apply(fields.clone()) {
                    Outcome::Keep(kept) => batch.push(envelope(i, kept, None)),
                    Outcome::Filtered => {}
                    Outcome::Dead(step, why) => {
                        dead.push(envelope(i, fields, Some(format!("step {step}: {why}"))))
                    }
                },
            }
        }
        // Dead letters first (a crash in between may record them twice, never lose them); the page's
        // checkpoint is stored with its records. A page with no record to keep stores no checkpoint: after a
        // restart it is fetched again, and its dead letters may be recorded again (never lost).
        if let Some((_, dead_topic)) = &self.flow
            && !dead.is_empty()
        {
            dead_topic
                .append(0, &dead)
                .map_err(|e| format!("appending to `{}`: {e}", dead_topic.name()))?;
        }
        self.topic
            .append(self.partition, &batch)
            .map_err(|e| format!("appending to `{}`: {e}", self.config.topic))?;
        self.progress
            .records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.checkpoint = after;
        Ok(fresh.len())
    }

    /// Polls until `stop` is set: pages back to back while there are new records, then every `interval_ms`;
    /// failures back off from 0.5 s to 30 s.
    pub fn run(self, stop: Arc<AtomicBool>) {
        self.run_while(|| !stop.load(Ordering::Relaxed));
    }

    /// Polls as [`Poller::run`] does while `go_on` answers true (asked before each page, and every 20 ms
    /// of a pause): a poller that runs on one worker at a time stops once its claim is lost.
    pub fn run_while(mut self, mut go_on: impl FnMut() -> bool) {
        let mut backoff = Duration::from_millis(500);
        while go_on() {
            let wait = match self.poll_once() {
                Ok(0) => Duration::from_millis(self.config.interval_ms),
                Ok(_) => {
                    backoff = Duration::from_millis(500);
                    Duration::ZERO
                }
                Err(e) => {
                    self.progress.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(poller = %self.config.name, "{e}; retrying in {backoff:?}");
                    let w = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    w
                }
            };
            let until = std::time::Instant::now() + wait;
            while std::time::Instant::now() < until && go_on() {
                std::thread::sleep(Duration::from_millis(20).min(wait));
            }
        }
    }
}

/// The checkpoint of the last record this poller stored, if any (read from the partition's recent records).
fn last_checkpoint(topic: &dyn TopicLog, partition: u32, source: &str) -> Option<Checkpoint> {
    let start = topic.start_offset(partition).ok()?;
    let mut upto = topic.end_offset(partition).ok()?;
    // Walk back in windows until a record of this poller is found.
    while upto > start {
        let from = upto.saturating_sub(10_000).max(start);
        let mut records = Vec::new();
        let mut at = from;
        while at < upto {
            let fetched = topic
                .read(partition, at, (upto - at) as usize, usize::MAX)
                .ok()?;
            if fetched.next <= at {
                break;
            }
            at = fetched.next;
            records.extend(fetched.records.into_iter().filter(|r| r.offset < upto));
        }
        for r in records.iter().rev() {
            if let Ok(env) = serde_json::from_slice::<Envelope>(&r.value)
                && env.source.split('#').next() == Some(source)
                && let Some(c) = env.checkpoint
            {
                return serde_json::from_value(c).ok();
            }
        }
        upto = from;
    }
    None
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
