//! `serve` and `status`: the live path's process and its view from outside.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use shopstream_engine::stream::topic_load::{TopicLoadConfig, TopicLoader};
use shopstream_log::Log;
use shopstream_server::{AppState, bind, router};

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
    Ok(log)
}

pub async fn serve(ctx: &Ctx, listen: Option<String>) -> anyhow::Result<()> {
    let lake = ctx.lake()?;
    let log = open_log(ctx)?;
    let live = &ctx.config.live;
    let mut load = TopicLoadConfig::new(&live.topic);
    load.max_records = live.load_max_records;
    load.write = ctx.write_options();
    let loader = TopicLoader::open(&lake, &log, load).await?;
    let progress = loader.progress();
    let stop = Arc::new(AtomicBool::new(false));
    let mut load_task = tokio::spawn(loader.run(stop.clone()));

    let mut server = ctx.config.server.clone();
    if let Some(l) = listen {
        server.listen = l;
    }
    let (listener, addr) = bind(&server.listen)
        .await
        .with_context(|| format!("listening on {}", server.listen))?;
    let state = AppState::new(
        log.clone(),
        server,
        HashMap::from([(live.topic.clone(), progress)]),
    );
    println!(
        "shopstream serving on http://{addr}: POST /v1/topics/{}/records (JSON, NDJSON, CSV), /v1/status, /metrics",
        live.topic
    );
    std::io::stdout().flush()?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let http = shopstream_server::serve(listener, router(state), shutdown);
    tokio::select! {
        r = http => {
            r.context("HTTP server")?;
            stop.store(true, Ordering::SeqCst);
            load_task.await.context("lake load task")??;
        }
        r = &mut load_task => {
            r.context("lake load task")??;
            bail!("the lake load stopped");
        }
    }
    Ok(())
}

pub fn status(ctx: &Ctx, url: Option<String>) -> anyhow::Result<()> {
    let base = url.unwrap_or_else(|| format!("http://{}", ctx.config.server.listen));
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
    let s: serde_json::Value = serde_json::from_str(&body)?;
    println!(
        "{:<16} {:>9} {:>12} {:>12} {:>10}",
        "partition", "start", "end", "loaded", "lag"
    );
    for p in s["partitions"].as_array().into_iter().flatten() {
        println!(
            "{:<16} {:>9} {:>12} {:>12} {:>10}",
            format!("{}/{}", p["topic"].as_str().unwrap_or("?"), p["partition"]),
            p["start_offset"],
            p["end_offset"],
            p["loaded_offset"],
            p["lag"]
        );
    }
    for k in [
        "http_accepted_requests",
        "http_accepted_records",
        "http_duplicate_requests",
        "http_rejected_requests",
        "http_throttled_requests",
        "loaded_records",
        "dead_letters",
        "lake_commits",
        "log_recovered_truncations",
    ] {
        println!("{k:<28} {}", s[k]);
    }
    Ok(())
}
