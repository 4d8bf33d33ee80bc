//! `shopstream view create|list|describe|drop`: the lake's continuous views ([`shopstream_engine::stream::view`]).

use anyhow::bail;
use clap::Subcommand;
use shopstream_engine::Lake;
use shopstream_engine::stream::view::defs;
use shopstream_engine::stream::view::job::ViewDef;
use shopstream_server::Config;

/// What `shopstream view` does.
#[derive(Subcommand)]
pub enum ViewCommand {
    /// Create a view (or replace one: a changed SQL starts its state over). Its SQL reads a dataset or
    /// view, plainly or through a window: TUMBLE(src, time, size), HOP(src, time, slide, size),
    /// SESSION(src, time, gap). A running `serve` backfills it from the lake, then keeps it up to date.
    Create {
        /// Its name: the table of its final windows; `<name>_live` holds the open ones.
        name: String,
        /// Its SQL; `@FILE` reads it from a file, `@-` from standard input.
        sql: String,
        /// How far behind the latest event time the watermark stays, in seconds.
        #[arg(long, default_value_t = 30)]
        delay_s: u64,
        /// How long after a window's end it still takes rows, in seconds.
        #[arg(long, default_value_t = 0)]
        lateness_s: u64,
        /// After how many silent seconds a source partition stops holding the watermark back.
        #[arg(long, default_value_t = 60)]
        idle_timeout_s: u64,
        /// How many seconds an updating aggregate keeps a key without new rows.
        #[arg(long, default_value_t = 86_400)]
        ttl_s: u64,
        /// Also send the final rows to this topic of the backbone (at-least-once, each row keyed
        /// `<view>:<version>:<checkpoint>:<row>` for consumers to drop repeats).
        #[arg(long)]
        topic: Option<String>,
    },
    /// Create the views the dashboard's Live section shows (revenue_per_minute, top_products_hour,
    /// active_customers_hour); `demo` does.
    Defaults,
    /// List the lake's views.
    List,
    /// Show a view's SQL, settings, output columns and version.
    Describe {
        /// The view.
        name: String,
    },
    /// For `bench/stream.sh`: loads the CSV files of `input` (Online Retail columns) into an embedded log
    /// in a scratch folder, then runs a view over them from the log and prints the records and seconds
    /// the view took (the loading is not timed) as JSON.
    #[command(hide = true)]
    Bench {
        /// `tumble` (revenue and lines per country per minute) or `session` (lines per customer session,
        /// 30-minute gap).
        #[arg(long)]
        job: String,
        /// A folder of CSV files.
        #[arg(long)]
        input: std::path::PathBuf,
        /// Partitions of the topic.
        #[arg(long, default_value_t = 2)]
        partitions: u32,
    },
    /// Remove a view and its state (`--purge`: its table of final rows too).
    Drop {
        /// The view.
        name: String,
        /// Also delete the view's table.
        #[arg(long)]
        purge: bool,
    },
}

/// The view's SQL as given: the text itself, `@FILE` (the file's text) or `@-` (standard input's).
fn sql_text(given: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    let Some(path) = given.strip_prefix('@') else {
        return Ok(given.to_string());
    };
    let text = if path == "-" {
        std::io::read_to_string(std::io::stdin())
            .context("reading the view's SQL from standard input")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the view's SQL from {path}"))?
    };
    Ok(text.trim().trim_end_matches(';').trim().to_string())
}

/// Runs `command` on `lake`, with the topics of `config` (a view's own topic must be none of them).
pub async fn run(lake: &Lake, config: &Config, command: ViewCommand) -> anyhow::Result<()> {
    match command {
        ViewCommand::Bench {
            job,
            input,
            partitions,
        } => bench(&job, &input, partitions).await?,
        ViewCommand::Create {
            name,
            sql,
            delay_s,
            lateness_s,
            idle_timeout_s,
            ttl_s,
            topic,
        } => {
            let def = ViewDef {
                name,
                sql: sql_text(&sql)?,
                delay_s,
                lateness_s,
                idle_timeout_s,
                ttl_s,
                topic,
            };
            config.check_view_topic(&def)?;
            let replaced = defs::get(lake, &def.name).await?;
            defs::save(lake, &def, &config.declared_datasets()).await?;
            let verb = match replaced {
                Some(old) if old.version() != def.version() => "replaced (its state starts over)",
                Some(old) if old != def => "updated (its state is kept)",
                Some(_) => "unchanged",
                None => "created",
            };
            say!("view `{}` {verb}; version {}", def.name, def.version());
        }
        ViewCommand::Defaults => {
            for def in defs::defaults() {
                defs::save(lake, &def, &config.declared_datasets()).await?;
                say!("view `{}` saved", def.name);
            }
        }
        ViewCommand::List => {
            let views = defs::list(lake).await?;
            if views.is_empty() {
                eprintln!(
                    "no views yet: shopstream view create NAME \"SQL\" (docs/views.md), or view defaults"
                );
            }
            for def in views {
                say!("{:<24} {}", def.name, def.sql);
            }
        }
        ViewCommand::Describe { name } => {
            let Some(def) = defs::get(lake, &name).await? else {
                bail!("no view `{name}` in the lake (shopstream view list)");
            };
            let plan = defs::check(lake, &def, &config.declared_datasets()).await?;
            say!("view `{}` (version {})", def.name, def.version());
            say!("  source      {}", plan.source);
            match &plan.time_column {
                Some(time) => say!("  window      {}, on {time}", plan.window),
                None => say!("  window      {}", plan.window),
            }
            say!(
                "  delay {} s, lateness {} s, idle timeout {} s, ttl {} s",
                def.delay_s,
                def.lateness_s,
                def.idle_timeout_s,
                def.ttl_s
            );
            say!("  sql         {}", def.sql);
            if let Some(topic) = &def.topic {
                say!("  topic       {topic} (final rows, at-least-once, keyed for dedupe)");
            }
            for f in plan.output_schema.fields() {
                say!("  {:<24} {}", f.name(), f.data_type());
            }
        }
        ViewCommand::Drop { name, purge } => {
            if !defs::drop(lake, &name, purge).await? {
                bail!("no view `{name}` in the lake (shopstream view list)");
            }
            say!(
                "view `{name}` dropped{}",
                if purge { " with its table" } else { "" }
            );
        }
    }
    Ok(())
}

/// The jobs of `bench/stream.sh`, in SQL.
fn bench_sql(job: &str) -> anyhow::Result<&'static str> {
    Ok(match job {
        "tumble" => {
            "SELECT window_start, window_end, country, sum(line_revenue) AS revenue, count(*) AS lines \
             FROM TUMBLE(orders, invoice_date, INTERVAL '1 minute') GROUP BY window_start, window_end, country"
        }
        "session" => {
            "SELECT window_start, window_end, customer_id, count(*) AS lines \
             FROM SESSION(orders, invoice_date, INTERVAL '30 minutes') GROUP BY window_start, window_end, customer_id"
        }
        other => bail!("no bench job `{other}` (tumble, session)"),
    })
}

/// Appends the CSV files of `input` to `topic` as requests of 500 records, partitions taking turns.
fn load_log(input: &std::path::Path, topic: &dyn shopstream_log::TopicLog) -> anyhow::Result<u64> {
    let mut files: Vec<_> = std::fs::read_dir(input)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    let (mut n, mut request, mut turn) = (0u64, Vec::new(), 0u32);
    for file in files {
        let mut reader = csv::Reader::from_path(&file)?;
        let headers = reader.headers()?.clone();
        for record in reader.records() {
            let record = record?;
            let fields = headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_string(), serde_json::Value::String(v.to_string())))
                .collect();
            let envelope = shopstream_ingest::sources::Envelope {
                source: format!("bench:{turn}"),
                index: n + 1,
                fields,
                checkpoint: None,
                reason: None,
            };
            request.push(shopstream_log::NewRecord::new(0, envelope.to_bytes()));
            n += 1;
            if request.len() == 500 {
                topic.append(turn % topic.partition_count(), &request)?;
                request.clear();
                turn += 1;
            }
        }
    }
    if !request.is_empty() {
        topic.append(turn % topic.partition_count(), &request)?;
    }
    Ok(n)
}

async fn bench(job: &str, input: &std::path::Path, partitions: u32) -> anyhow::Result<()> {
    use shopstream_engine::stream::view::job::{ViewJob, ViewSource};
    let sql = bench_sql(job)?;
    let scratch =
        std::env::temp_dir().join(format!("shopstream-view-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let (log, _) = shopstream_log::Log::open(&scratch.join("log"))?;
    let backbone = shopstream_log::Embedded::shared(log);
    let topic = backbone.create_topic("orders", partitions)?;
    let records = load_log(input, topic.as_ref())?;
    let lake = Lake::local(&scratch.join("lake"))?;
    let source = ViewSource {
        topic,
        dataset: shopstream_ingest::Dataset::orders(),
        mapping: None,
        timezone: chrono_tz::Tz::UTC,
    };
    let started = std::time::Instant::now();
    let mut view = ViewJob::open(
        &lake,
        ViewDef::new("bench", sql),
        source,
        Default::default(),
    )
    .await?;
    while view.step(200_000).await? > 0 {}
    let seconds = started.elapsed().as_secs_f64();
    let c = view.runner().counters().clone();
    let mut out = serde_json::json!({"engine": "shopstream", "job": job, "records": records,
        "seconds": seconds, "rows_in": c.rows_in, "late_rows": c.late_rows});
    if std::env::var_os("SHOPSTREAM_CHECK").is_some() {
        // As a bounded source ends a Flink or Spark job: every window closes.
        view.finish().await?;
        let catalog = shopstream_engine::Catalog::open(&lake).await?;
        let r = catalog
            .query("SELECT count(*) AS n, sum(lines) AS lines FROM bench")
            .await?;
        let b = &r.batches[0];
        let n = arrow::array::cast::as_primitive_array::<arrow::datatypes::Int64Type>(b.column(0))
            .value(0);
        let l = arrow::array::cast::as_primitive_array::<arrow::datatypes::Int64Type>(b.column(1))
            .value(0);
        out["output_rows"] = n.into();
        out["output_count"] = l.into();
    }
    say!("{out}");
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
