//! `serve` and `status`: the live path's process and its view from outside.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use shopstream_engine::stream::landing::LandingWatcher;
use shopstream_engine::stream::topic_load::{TopicLoadConfig, TopicLoader};
use shopstream_ingest::generate::{Generator, ONLINE_RETAIL_HEADER};
use shopstream_ingest::sources::api::Poller;
use shopstream_log::Log;
use shopstream_server::{AppState, Status, app, bind};

use crate::Ctx;

/// Opens the log (recovering it) with the live topic created.
fn open_log(ctx: &Ctx) -> anyhow::Result<Arc<Log>> {
    let dir = ctx.config.log_dir(&ctx.data_dir);
    let (log, recoveries) =
        Log::open(&dir).with_context(|| format!("opening the log in {}", dir.display()))?;
    for r in recoveries {
        eprintln!(
            "log recovery: {}: cut {} bytes at byte {} of {} ({})",
            r.partition,
            r.truncation.bytes,
            r.truncation.at,
            r.truncation.path.display(),
            r.truncation.reason
        );
    }
    let live = &ctx.config.live;
    log.create_topic(&live.topic, live.partitions, live.log.clone())
        .with_context(|| format!("topic `{}`", live.topic))?;
    for flow in &live.flows {
        if log.topic(&flow.topic).is_err() {
            log.create_topic(&flow.topic, live.partitions, live.log.clone())
                .with_context(|| format!("topic `{}` of flow `{}`", flow.topic, flow.name))?;
        }
        log.create_topic(&flow.dead_letter_topic(), 1, live.log.clone())
            .with_context(|| format!("dead-letter topic of flow `{}`", flow.name))?;
    }
    Ok(log)
}

/// The live parts running in this process.
pub struct Live {
    pub url: String,
    /// The Postgres endpoint's address, when it runs.
    pub postgres: Option<std::net::SocketAddr>,
    pg: Option<tokio::task::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    pollers: Vec<std::thread::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<shopstream_engine::Result<()>>>,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    http_stop: tokio::sync::oneshot::Sender<()>,
    /// The lake's server lock, held until the server stops (`migrate` waits for it).
    _lake_lock: Option<shopstream_engine::migrate::ServerLock>,
}

/// Starts the HTTP ingest, the continuous lake load and the landing folder watcher.
pub async fn start(
    ctx: &Ctx,
    listen: Option<String>,
    pg_listen: Option<String>,
) -> anyhow::Result<Live> {
    let lake = ctx.lake()?;
    let lake_lock = shopstream_engine::migrate::hold_for_server(&lake)?;
    // One catalog for the HTTP queries, the dashboard and the Postgres endpoint.
    let catalog =
        shopstream_server::postgres::open_catalog(ctx.lake()?, &ctx.config.postgres.user).await?;
    let log = open_log(ctx)?;
    let live = &ctx.config.live;
    let mut load = TopicLoadConfig::new(&live.topic);
    load.max_records = live.load_max_records;
    load.write = ctx.write_options();
    load.timezone = ctx.config.ingest.timezone();
    let loader = TopicLoader::open(&lake, &log, load).await?;
    let progress = loader.progress();
    let landing = LandingWatcher::new(
        &ctx.config.landing_dir(&ctx.data_dir),
        lake,
        ctx.config
            .ingest
            .read_options(None, shopstream_ingest::Dataset::orders()),
        ctx.write_options(),
        Duration::from_millis(live.landing_poll_ms),
    )?;
    let landing_progress = landing.progress();
    let stop = Arc::new(AtomicBool::new(false));
    let mut pollers = Vec::new();
    for p in &live.pollers {
        let flow = if p.flow.is_empty() {
            None
        } else {
            Some(
                live.flows
                    .iter()
                    .find(|f| f.name == p.flow)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("poller `{}`: no flow `{}`", p.name, p.flow))?,
            )
        };
        let poller = Poller::new(&log, p.clone(), flow)
            .map_err(|e| anyhow::anyhow!("poller `{}`: {e}", p.name))?;
        let stop = stop.clone();
        pollers.push(
            std::thread::Builder::new()
                .name(format!("poll-{}", p.name))
                .spawn(move || poller.run(stop))?,
        );
    }
    let mut tasks = vec![
        tokio::spawn(loader.run(stop.clone())),
        tokio::spawn(landing.run(stop.clone())),
    ];
    if live.compact_every_s > 0 {
        tasks.push(tokio::spawn(shopstream_engine::compact::run_every(
            ctx.lake()?,
            ctx.write_options(),
            Duration::from_secs(live.compact_every_s),
            Duration::from_secs(live.vacuum_after_s),
            stop.clone(),
        )));
    }

    let mut server = ctx.config.server.clone();
    if let Some(l) = listen {
        server.listen = l;
    }
    let (listener, addr) = bind(&server.listen)
        .await
        .with_context(|| format!("listening on {}", server.listen))?;
    let state = AppState::new(
        log,
        server,
        HashMap::from([(live.topic.clone(), progress)]),
        Some(landing_progress),
        live.flows.clone(),
    );
    let mut pg_config = ctx.config.postgres.clone();
    match pg_listen.as_deref() {
        Some("off") => pg_config.enabled = false,
        Some(l) => pg_config.listen = l.to_string(),
        None => {}
    }
    let (pg, postgres) = if pg_config.enabled {
        let endpoint = shopstream_server::postgres::bind(
            &pg_config,
            &ctx.config.server.token,
            catalog.clone(),
        )
        .await?;
        let addr = endpoint.addr;
        (Some(tokio::spawn(endpoint.run())), Some(addr))
    } else {
        (None, None)
    };
    let (http_stop, rx) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(shopstream_server::serve(
        listener,
        app(state, Some(catalog)),
        async {
            let _ = rx.await;
        },
    ));
    Ok(Live {
        url: format!("http://{addr}"),
        postgres,
        pg,
        stop,
        pollers,
        tasks,
        http,
        http_stop,
        _lake_lock: lake_lock,
    })
}

impl Live {
    /// Runs until Ctrl-C (or `deadline`), or fails when a part fails.
    pub async fn run_until_interrupted(
        &mut self,
        deadline: Option<Duration>,
    ) -> anyhow::Result<()> {
        let ctrl_c = async {
            match deadline {
                Some(d) => tokio::time::sleep(d).await,
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        let failed = async {
            loop {
                for t in &mut self.tasks {
                    if t.is_finished() {
                        return;
                    }
                }
                if self.http.is_finished() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            _ = ctrl_c => Ok(()),
            _ = failed => bail!("a live part stopped; see the error below"),
        }
    }

    /// Stops everything, waiting for the current micro-batch; returns the first error of any part.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.http_stop.send(());
        if let Some(pg) = self.pg {
            pg.abort();
        }
        for p in self.pollers {
            let _ = p.join();
        }
        self.http.await.context("HTTP server")??;
        for t in self.tasks {
            t.await.context("live task")??;
        }
        Ok(())
    }
}

pub async fn serve(
    ctx: &Ctx,
    listen: Option<String>,
    pg_listen: Option<String>,
) -> anyhow::Result<()> {
    let mut live = start(ctx, listen, pg_listen).await?;
    println!(
        "shopstream serving on {}: POST /v1/topics/{}/records (JSON, NDJSON, CSV), /v1/status, /metrics; \
         landing folder {}",
        live.url,
        ctx.config.live.topic,
        ctx.config.landing_dir(&ctx.data_dir).display()
    );
    println!(
        "dashboard: {url}/  SQL explorer: {url}/explorer",
        url = live.url
    );
    if let Some(a) = live.postgres {
        println!(
            "postgres: {a} (psql -h {} -p {} shopstream)",
            a.ip(),
            a.port()
        );
    }
    std::io::stdout().flush()?;
    let r = live.run_until_interrupted(None).await;
    let stopped = live.stop().await;
    r.and(stopped)
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
    println!(
        "{:<20} {:>9} {:>12} {:>12} {:>10} {:>10}",
        "topic/partition", "start", "end", "loaded", "lag", "in/s"
    );
    for p in &s.partitions {
        let prev = before
            .partitions
            .iter()
            .find(|b| b.topic == p.topic && b.partition == p.partition)
            .map_or(0, |b| b.end_offset);
        let loaded = p.loaded_offset.map_or("-".to_string(), |v| v.to_string());
        println!(
            "{:<20} {:>9} {:>12} {loaded:>12} {:>10} {:>10}",
            format!("{}/{}", p.topic, p.partition),
            p.start_offset,
            p.end_offset,
            p.lag,
            p.end_offset.saturating_sub(prev)
        );
    }
    println!(
        "rates: {} records/s received over HTTP, {} records/s loaded into the lake",
        s.http_accepted_records
            .saturating_sub(before.http_accepted_records),
        s.loaded_records.saturating_sub(before.loaded_records)
    );
    for flow in &ctx.config.live.flows {
        println!(
            "flow {}: -> {} (dead letters in {})",
            flow.name,
            flow.topic,
            flow.dead_letter_topic()
        );
    }
    for c in s.counters() {
        println!("{:<28} {}", c.key, c.value);
    }
    Ok(())
}
