//! `serve` and `status`: the server (assembled by `shopstream_server::Server`) with its overrides and\n//! messages, the demo's simulated store, and the status seen from outside.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use shopstream_ingest::generate::{Generator, ONLINE_RETAIL_HEADER};
use shopstream_server::{Running, Server, Status};

use crate::Ctx;

/// Starts the server as configured, with the `--listen` and `--pg-listen` overrides (`off`: no Postgres).
pub async fn start(
    ctx: &Ctx,
    listen: Option<String>,
    pg_listen: Option<String>,
) -> anyhow::Result<Running> {
    let mut config = ctx.config.clone();
    if let Some(l) = listen {
        config.server.listen = l;
    }
    match pg_listen.as_deref() {
        Some("off") => config.postgres.enabled = false,
        Some(l) => config.postgres.listen = l.to_string(),
        None => {}
    }
    let running = Server::start(&config, &ctx.data_dir).await?;
    for r in &running.log_recoveries {
        eprintln!(
            "log recovery: {}: cut {} bytes at byte {} of {} ({})",
            r.partition,
            r.truncation.bytes,
            r.truncation.at,
            r.truncation.path.display(),
            r.truncation.reason
        );
    }
    Ok(running)
}

/// Runs until Ctrl-C (or `deadline`), or fails when a part fails.
pub async fn run_until_interrupted(
    running: &mut Running,
    deadline: Option<Duration>,
) -> anyhow::Result<()> {
    let interrupted = async {
        match deadline {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    Ok(running.run_until(interrupted).await?)
}

/// `orders`, or `{orders,customers}` when there are several dataset topics.
fn topics(topics: &[String]) -> String {
    match topics {
        [one] => one.clone(),
        many => format!("{{{}}}", many.join(",")),
    }
}

pub async fn serve(
    ctx: &Ctx,
    listen: Option<String>,
    pg_listen: Option<String>,
) -> anyhow::Result<()> {
    let mut live = start(ctx, listen, pg_listen).await?;
    say!(
        "shopstream serving on {}: POST /v1/topics/{}/records (JSON, NDJSON, CSV), /v1/status, /metrics; \
         landing folder {}",
        live.url(),
        topics(&live.topics),
        ctx.config.landing_dir(&ctx.data_dir).display()
    );
    say!(
        "dashboard: {url}/  SQL explorer: {url}/explorer",
        url = live.url()
    );
    if let Some(a) = live.postgres {
        say!(
            "postgres: {a} (psql -h {} -p {} shopstream)",
            a.ip(),
            a.port()
        );
    }
    std::io::stdout().flush()?;
    let r = run_until_interrupted(&mut live, None).await;
    let stopped = live.shutdown().await;
    r.and(stopped.map_err(Into::into))
}

/// Feeds a simulated store into the HTTP endpoint: `rate` generated order lines per second, dated now,
/// in requests of a tenth of a second each (each with its own idempotency key, retried until stored).
pub fn feed_store(
    url: String,
    topic: String,
    rate: u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut generator = Generator::new(u64::MAX, 7, 0.002);
        let per_tick = (rate / 10).max(1);
        let mut sent = 0u64;
        let mut tick = 0u64;
        let started = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let now = chrono::Local::now()
                .naive_local()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            let body: String = (&mut generator)
                .take(per_tick as usize)
                .map(|row| {
                    let mut fields = row.fields;
                    fields[4] = now.clone();
                    let obj: serde_json::Map<String, serde_json::Value> = ONLINE_RETAIL_HEADER
                        .iter()
                        .zip(fields)
                        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
                        .collect();
                    serde_json::Value::Object(obj).to_string() + "\n"
                })
                .collect();
            let key = format!("store-{}-{tick}", std::process::id());
            while !stop.load(Ordering::Relaxed) {
                let r = ureq::post(format!("{url}/v1/topics/{topic}/records"))
                    .header("Content-Type", "application/x-ndjson")
                    .header("Idempotency-Key", &key)
                    .send(&body);
                match r {
                    Ok(_) => {
                        sent += per_tick;
                        break;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
            tick += 1;
            let due = started + Duration::from_millis(tick * 100);
            if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        sent
    })
}

fn fetch_status(ctx: &Ctx, base: &str) -> anyhow::Result<Status> {
    let mut req = ureq::get(format!("{}/v1/status", base.trim_end_matches('/')));
    if !ctx.config.server.token.is_empty() {
        req = req.header(
            "Authorization",
            format!("Bearer {}", ctx.config.server.token),
        );
    }
    let body = req
        .call()
        .with_context(|| format!("asking {base} (is `shopstream serve` running?)"))?
        .body_mut()
        .read_to_string()?;
    serde_json::from_str(&body).with_context(|| format!("the status from {base}"))
}

pub fn status(ctx: &Ctx, url: Option<String>) -> anyhow::Result<()> {
    let base = url.unwrap_or_else(|| format!("http://{}", ctx.config.server.listen));
    // Two samples a second apart give the rates.
    let before = fetch_status(ctx, &base)?;
    std::thread::sleep(Duration::from_secs(1));
    let s = fetch_status(ctx, &base)?;
    say!(
        "{:<20} {:>9} {:>12} {:>12} {:>10} {:>10}",
        "topic/partition",
        "start",
        "end",
        "loaded",
        "lag",
        "in/s"
    );
    for p in &s.partitions {
        let prev = before
            .partitions
            .iter()
            .find(|b| b.topic == p.topic && b.partition == p.partition)
            .map_or(0, |b| b.end_offset);
        let loaded = p.loaded_offset.map_or("-".to_string(), |v| v.to_string());
        say!(
            "{:<20} {:>9} {:>12} {loaded:>12} {:>10} {:>10}",
            format!("{}/{}", p.topic, p.partition),
            p.start_offset,
            p.end_offset,
            p.lag,
            p.end_offset.saturating_sub(prev)
        );
    }
    say!(
        "rates: {} records/s received over HTTP, {} records/s loaded into the lake",
        s.http_accepted_records
            .saturating_sub(before.http_accepted_records),
        s.loaded_records.saturating_sub(before.loaded_records)
    );
    for flow in &ctx.config.live.flows {
        say!(
            "flow {}: -> {} (dead letters in {})",
            flow.name,
            flow.topic,
            flow.dead_letter_topic()
        );
    }
    for c in s.counters() {
        say!("{:<28} {}", c.key, c.value);
    }
    for v in &s.views {
        say!(
            "view {} on {}: {} rows in, watermark {}, lag {}, {} open windows ({} bytes), {} late rows, {} windows emitted",
            v.name,
            v.owner,
            v.rows_in,
            v.watermark.as_deref().unwrap_or("-"),
            v.lag,
            v.open_windows,
            v.state_bytes,
            v.late_rows,
            v.windows_emitted
        );
    }
    print_workers(&s);
    Ok(())
}

/// Every worker on the lake (from their heartbeats) and the lake's leases.
fn print_workers(s: &shopstream_server::Status) {
    let now = chrono::Utc::now().timestamp_millis();
    for w in &s.workers {
        let owned: Vec<String> = w
            .partitions
            .iter()
            .map(|p| format!("{}/{} (lag {})", p.topic, p.partition, p.lag))
            .collect();
        say!(
            "worker {} {} {} on {}, heartbeat {} s ago, {} rebalances: {}{}",
            w.id,
            if w.alive { "alive" } else { "GONE" },
            w.http,
            w.backbone,
            (now - w.heartbeat_ms) / 1000,
            w.rebalances,
            if owned.is_empty() {
                "no partitions".into()
            } else {
                owned.join(", ")
            },
            if w.jobs.is_empty() {
                String::new()
            } else {
                format!("; runs {}", w.jobs.join(", "))
            }
        );
    }
    for l in &s.leases {
        say!(
            "lease {}: {} (expires in {} s)",
            l.name,
            l.holder,
            (l.expires_ms - now) / 1000
        );
    }
}
