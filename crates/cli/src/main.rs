//! The `shopstream` binary: argument parsing, progress bars, exit codes. The work is in the
//! ingest and engine crates; this file wires them to the command line.
//!
//! Exit codes: 0 success, 1 failure (the error chain is printed once), 2 usage error.

/// `println!` that ends the program quietly when stdout's reader has gone (`shopstream view list | head`):
/// Rust ignores SIGPIPE, so `println!` would panic there.
macro_rules! say {
    () => {
        $crate::say_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::say_line(format_args!($($arg)*))
    };
}

mod live;
mod views;

/// Writes one line of [`say!`].
fn say_line(line: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        panic!("writing to stdout: {e}");
    }
}

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use shopstream_engine::load::{LoadEvent, LoadSummary, WriteOptions, load_files};
use shopstream_engine::output::{OutputFormat, write, write_parquet};
use shopstream_engine::sql::QueryResult;
use shopstream_engine::{Catalog, Lake, Table, reports};
use shopstream_ingest::Dataset;
use shopstream_ingest::expand_paths_skipping;
use shopstream_ingest::generate::{GenFormat, Generator};

use shopstream_server::Config;

#[derive(Parser)]
#[command(
    name = "shopstream",
    version,
    about = "One program for an e-commerce data stack: files in, Delta lake, SQL, reports"
)]
struct Cli {
    /// Folder for the lake and everything shopstream keeps.
    #[arg(
        long,
        global = true,
        default_value = "./shopstream-data",
        env = "SHOPSTREAM_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// Configuration file (TOML); the embedded default when absent.
    #[arg(long, global = true, env = "SHOPSTREAM_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
    Parquet,
}

impl Format {
    /// File extension for results written to a folder.
    fn extension(self) -> &'static str {
        match self {
            Format::Table => "txt",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Parquet => "parquet",
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum GenFormatArg {
    Csv,
    Xlsx,
    Jsonl,
}

#[derive(Subcommand)]
enum Command {
    /// Load files or folders (CSV/TSV/delimited, aligned or whitespace-separated text, Excel, JSON, JSON Lines,
    /// Parquet) into the lake. A file that cannot be read is refused with its reason while the others load;
    /// the exit code is then 1.
    Ingest {
        /// Files or folders (folders are read recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Only this Excel sheet.
        #[arg(long)]
        sheet: Option<String>,
        /// No progress bar.
        #[arg(long)]
        no_progress: bool,
        /// The dataset to load into (default: orders). A dataset the lake and the config do not know is
        /// created with the columns and types inferred from the first file; files with new columns add
        /// them to the table.
        #[arg(long, default_value = "orders")]
        dataset: String,
        /// Only print the dataset's columns (inferred, or added by these files); load nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show a dataset's columns and types, key, partition and size.
    Describe {
        /// The dataset (or any lake table).
        name: String,
    },
    /// List the lake's tables with rows, files, bytes and Delta version.
    Tables,
    /// Continuous views: SQL with event-time windows, kept up to date by `serve`.
    View {
        #[command(subcommand)]
        command: views::ViewCommand,
    },
    /// Compact tables (Delta OPTIMIZE): rewrite each partition's small files, e.g. those of the live
    /// load, into files of `[lake] target_file_size_mb`, in one commit per table. Safe while loads run;
    /// one compaction at a time per lake (a running `serve` compacts too).
    Compact {
        /// Tables to compact (default: all).
        tables: Vec<String>,
        /// Then delete the data files compactions replaced more than this many seconds ago (Delta
        /// VACUUM). Queries running meanwhile that started before the compaction fail if they still
        /// need those files: keep it to minutes on a lake being served.
        #[arg(long)]
        vacuum_after_s: Option<u64>,
    },
    /// Bring a lake written by an older release to the current table schemas (e.g. money as
    /// decimal(18,4)): each outdated table is rewritten in place in one Delta commit that keeps its
    /// exactly-once record, so files loaded before are still skipped. Refused while a `serve`, a load or a
    /// compaction uses the lake; a current lake is left alone.
    Migrate,
    /// Run SQL; without a query, an interactive shell.
    Sql {
        /// The query.
        query: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Output file (required for parquet).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Built-in reports: `report list`, `report NAME`, or `report all` (every report in one session;
    /// with `--out DIR`, one file per report).
    Report {
        /// `list`, `all` or a report name.
        name: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Report parameter, `name=value` (repeatable).
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Output file (required for parquet); a folder for `report all`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Generate realistic orders in the Online Retail layout.
    Generate {
        #[arg(long)]
        rows: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, value_enum, default_value = "csv")]
        format: GenFormatArg,
        #[arg(long)]
        out: PathBuf,
        /// Fraction of rows to corrupt (0 to 1).
        #[arg(long, default_value_t = 0.0)]
        dirty: f64,
    },
    /// Run the live path: HTTP ingest into the durable log, the continuous load into the lake, the
    /// landing folder, the dashboard and the Postgres endpoint.
    Serve {
        /// Address to listen on (default: `[server] listen`; port 0 picks a free port).
        #[arg(long)]
        listen: Option<String>,
        /// Address of the Postgres endpoint (default: `[postgres] listen`; `off` disables it).
        #[arg(long)]
        pg_listen: Option<String>,
    },
    /// Where an invoice's lake rows came from: file and line, HTTP request or API page, and when they were loaded.
    Trace {
        /// The invoice number.
        invoice: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show a running server's flows: log ends, loaded offsets, lag, requests, dead letters.
    Status {
        /// The server (default: `http://` + `[server] listen`).
        #[arg(long)]
        url: Option<String>,
    },
    /// Everything end to end: set up a data dir, load data (generated, or --from DIR), print reports,
    /// then run the live parts with a simulated store sending orders.
    Demo {
        /// Load these files or folders instead of generated data.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Rows to generate when --from is not given.
        #[arg(long, default_value_t = 200_000)]
        rows: u64,
        /// Order lines per second the simulated store sends over HTTP once the live parts are up.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// Stop the live part after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        live_seconds: Option<u64>,
        /// Address of the HTTP server (default: `[server] listen`).
        #[arg(long)]
        listen: Option<String>,
        /// Address of the Postgres endpoint (default: `[postgres] listen`; `off` disables it).
        #[arg(long)]
        pg_listen: Option<String>,
    },
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not name=value"))
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => {}
        Err(e) if is_broken_pipe(&e) => {}
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            std::process::exit(1);
        }
    }
}

/// The error chain once: libraries that both print and return their source would repeat it.
fn error_chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.to_string().contains("Broken pipe")
    })
}

fn init_logging() {
    // delta-rs and its kernel log every file at INFO: keep them to warnings unless RUST_LOG asks. A
    // commit that meets another writer's and retries (then succeeds or fails with its own error) is
    // normal between the load and the views: not a warning.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,deltalake=warn,deltalake_core::kernel::transaction=error,delta_kernel=off,\
             buoyant_kernel=off",
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

struct Ctx {
    data_dir: PathBuf,
    config: Config,
}

impl Ctx {
    fn lake(&self) -> anyhow::Result<Lake> {
        Ok(self
            .config
            .lake
            .open(&self.config.lake_dir(&self.data_dir))?)
    }

    fn write_options(&self) -> WriteOptions {
        self.config.lake.write_options()
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    let ctx = Ctx {
        data_dir: cli.data_dir,
        config,
    };
    match cli.command {
        Command::Ingest {
            paths,
            sheet,
            no_progress,
            dataset,
            dry_run,
        } => {
            let target = Target {
                dataset: &dataset,
                dry_run,
            };
            let Some(summary) = ingest(&ctx, &paths, sheet, !no_progress, target).await? else {
                return Ok(());
            };
            if summary.totals.rejected > 0 {
                eprintln!(
                    "{} rejected rows are in the dead_letters table: shopstream sql \"SELECT * FROM dead_letters WHERE load_id = '{}'\"",
                    summary.totals.rejected, summary.load_id
                );
            }
            let refused = summary.files.iter().filter(|f| f.refused.is_some()).count();
            if refused > 0 {
                bail!(
                    "{refused} of {} files refused (the others loaded); the reasons are above and in \
                     the dead_letters table (field NULL)",
                    summary.files.len()
                );
            }
            Ok(())
        }
        Command::Tables => tables(&ctx).await,
        Command::View { command } => views::run(&ctx.lake()?, &ctx.config, command).await,
        Command::Describe { name } => describe(&ctx, &name).await,
        Command::Migrate => migrate(&ctx).await,
        Command::Compact {
            tables,
            vacuum_after_s,
        } => compact(&ctx, &tables, vacuum_after_s).await,
        Command::Sql { query, format, out } => match query {
            Some(q) => run_query(&ctx, &q, format, out.as_deref()).await,
            None => shell(&ctx).await,
        },
        Command::Report {
            name,
            format,
            params,
            out,
        } => {
            if name == "list" {
                for r in reports::all() {
                    let ps: Vec<String> = r
                        .params
                        .iter()
                        .map(|p| format!("{}={}", p.name, p.default))
                        .collect();
                    let ps = if ps.is_empty() {
                        String::new()
                    } else {
                        format!("  [--param {}]", ps.join(" --param "))
                    };
                    say!("{:<28} {}{ps}", r.name, r.title());
                }
                return Ok(());
            }
            let values: BTreeMap<String, String> = params.into_iter().collect();
            let catalog = Catalog::open(&ctx.lake()?).await?;
            if name == "all" {
                return all_reports(&catalog, &values, format, out.as_deref()).await;
            }
            let report = reports::find(&name)?;
            let sql = report.render(&values)?;
            let result = catalog
                .query(&sql)
                .await
                .with_context(|| format!("report {name}"))?;
            emit(&result, format, out.as_deref())
        }
        Command::Generate {
            rows,
            seed,
            format,
            out,
            dirty,
        } => {
            generate(rows, seed, format, &out, dirty)?;
            Ok(())
        }
        Command::Serve { listen, pg_listen } => live::serve(&ctx, listen, pg_listen).await,
        Command::Status { url } => live::status(&ctx, url),
        Command::Trace { invoice, format } => {
            let sql = format!(
                "SELECT o.invoice_no, o.stock_code, o.quantity, \
                 CASE WHEN o.source_file LIKE 'http:%' THEN 'HTTP request' \
                      WHEN o.source_file LIKE 'api:%' THEN 'API page' ELSE 'file' END AS came_in, \
                 o.source_file AS source, o.source_sheet AS sheet, o.source_line AS line, \
                 r.received_at, r.load_time AS loaded_at, o.load_id \
                 FROM orders o LEFT JOIN raw_orders r ON r.source_file = o.source_file \
                 AND r.source_line = o.source_line AND r.load_id = o.load_id \
                 WHERE o.invoice_no = '{}' ORDER BY r.load_time, o.source_file, o.source_line",
                invoice.replace('\'', "''")
            );
            run_query(&ctx, &sql, format, None).await
        }
        Command::Demo {
            from,
            rows,
            rate,
            live_seconds,
            listen,
            pg_listen,
        } => {
            demo(&ctx, from, rows).await?;
            live_demo(&ctx, rate, live_seconds, listen, pg_listen).await
        }
    }
}

fn gen_format(f: GenFormatArg) -> GenFormat {
    match f {
        GenFormatArg::Csv => GenFormat::Csv,
        GenFormatArg::Xlsx => GenFormat::Xlsx,
        GenFormatArg::Jsonl => GenFormat::Jsonl,
    }
}

fn generate(
    rows: u64,
    seed: u64,
    format: GenFormatArg,
    out: &Path,
    dirty: f64,
) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&dirty) {
        bail!("--dirty must be between 0 and 1 (got {dirty})");
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let bar = progress_bar(
        rows,
        "{spinner} generating [{bar:30}] {human_pos}/{human_len} rows ({eta})",
    );
    let written = shopstream_ingest::generate::write(
        out,
        gen_format(format),
        Generator::new(rows, seed, dirty),
        &mut |n| bar.set_position(n),
    )?;
    bar.finish_and_clear();
    eprintln!("wrote {written} rows to {}", out.display());
    Ok(())
}

fn progress_bar(len: u64, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// The dataset a load writes, and whether it only shows what it would do.
#[derive(Clone, Copy)]
struct Target<'a> {
    dataset: &'a str,
    dry_run: bool,
}

impl Target<'_> {
    fn orders() -> Target<'static> {
        Target {
            dataset: "orders",
            dry_run: false,
        }
    }
}

/// Loads `paths` into the target dataset; `None` on a dry run.
async fn ingest(
    ctx: &Ctx,
    paths: &[PathBuf],
    sheet: Option<String>,
    progress: bool,
    target: Target<'_>,
) -> anyhow::Result<Option<LoadSummary>> {
    let lake = ctx.lake()?;
    let (files, skipped) = expand_paths_skipping(paths)?;
    for f in &skipped {
        eprintln!(
            "{}: skipped (not a file type shopstream reads: csv, tsv, psv, txt, dat, xlsx, xls, ods, json, jsonl, ndjson, parquet)",
            f.display()
        );
    }
    if files.is_empty() {
        bail!(
            "no readable files in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let declared = ctx.config.declared_dataset(target.dataset);
    let mut read = ctx.config.ingest.read_options(sheet, Dataset::orders());
    read.expressions = Some(shopstream_engine::derive::sql());
    let prepared = shopstream_engine::datasets::prepare(
        &lake,
        target.dataset,
        declared,
        &files,
        &read,
        &ctx.write_options(),
        target.dry_run,
    )
    .await?;
    print_prepared(&prepared, target.dry_run);
    if target.dry_run {
        return Ok(None);
    }
    read.dataset = prepared.dataset.clone();
    let cancel = Arc::new(AtomicBool::new(false));
    let c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: stopping without committing (Ctrl-C again to quit at once)");
            c.store(true, Ordering::SeqCst);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let bar = if progress {
        progress_bar(
            0,
            "{spinner} loading [{bar:30}] {bytes}/{total_bytes} {msg} ({eta})",
        )
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let bar2 = bar.clone();
    let on_event = move |e: LoadEvent| match e {
        LoadEvent::Started { total_bytes, .. } => bar2.set_length(total_bytes),
        LoadEvent::Progress {
            bytes_done,
            rows_read,
        } => {
            // Show the bar only for loads longer than a moment.
            if started.elapsed() > Duration::from_millis(300) {
                bar2.set_position(bytes_done);
                bar2.set_message(format!("{rows_read} rows"));
            }
        }
        LoadEvent::File(f) => {
            if let Some(reason) = &f.refused {
                bar2.suspend(|| eprintln!("{}: refused: {reason}", f.path.display()));
            } else if f.already_loaded {
                bar2.println(format!(
                    "{}: already loaded (same content), skipped",
                    f.path.display()
                ));
            } else if f.counts.rejected > 0 {
                bar2.println(format!(
                    "{}: read {}, loaded {}, rejected {}",
                    f.path.display(),
                    f.counts.read,
                    f.counts.loaded,
                    f.counts.rejected
                ));
            }
        }
        LoadEvent::Committing => bar2.set_message("committing"),
    };
    let result = load_files(
        &lake,
        &files,
        &read,
        &ctx.write_options(),
        cancel,
        &on_event,
    )
    .await;
    bar.finish_and_clear();
    let summary = result?;
    let skipped = summary.files.iter().filter(|f| f.already_loaded).count();
    let refused = summary.files.iter().filter(|f| f.refused.is_some()).count();
    let t = summary.totals;
    say!(
        "load {}: {} files ({} already loaded, {} refused), read {}, loaded {}, rejected {} in {:.1}s",
        summary.load_id,
        summary.files.len(),
        skipped,
        refused,
        t.read,
        t.loaded,
        t.rejected,
        started.elapsed().as_secs_f64()
    );
    Ok(Some(summary))
}

/// Prints what [`shopstream_engine::datasets::prepare`] inferred, added and found not to fit.
fn print_prepared(p: &shopstream_engine::datasets::Prepared, dry_run: bool) {
    let name = &p.dataset.name;
    if let Some(inferred) = &p.inferred {
        let verb = if dry_run {
            "would be created"
        } else {
            "created"
        };
        say!("dataset `{name}` {verb} with the columns inferred from the first file:");
        for c in inferred {
            let format = c
                .date_format
                .as_deref()
                .map(|f| format!(", {f}"))
                .unwrap_or_default();
            let comma = if c.field_type == shopstream_ingest::mapping::FieldType::DecimalComma {
                ", decimal comma"
            } else {
                ""
            };
            say!(
                "  {:<24} {:<14} (from `{}`{format}{comma})",
                c.name,
                c.ty.sql_name(),
                c.source
            );
        }
    } else if dry_run {
        say!("dataset `{name}`:");
        for c in &p.dataset.columns {
            say!("  {:<24} {}", c.name, c.ty.sql_name());
        }
    }
    for c in &p.added {
        let verb = if dry_run { "would add" } else { "added" };
        say!(
            "dataset `{name}`: {verb} column `{}` {} (new in these files; earlier rows have NULL)",
            c.name,
            c.ty.sql_name()
        );
    }
    for c in &p.widened {
        let verb = if dry_run { "would widen" } else { "widened" };
        say!(
            "dataset `{name}`: {verb} column `{}` from date to timestamp (these files have times; \
             earlier rows read as midnight; the table is rewritten in one commit)",
            c.name
        );
    }
    for m in &p.mismatches {
        eprintln!("warning: {m}");
    }
}

/// `shopstream describe NAME`.
async fn describe(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let lake = ctx.lake()?;
    let dataset = match lake
        .dataset(name)
        .await?
        .or_else(|| ctx.config.declared_dataset(name))
    {
        Some(d) => d,
        None => {
            let table = Table::builtins().into_iter().find(|t| t.name() == name);
            let Some(table) = table else {
                let known: Vec<String> =
                    lake.list().await?.iter().map(|t| t.name().into()).collect();
                bail!(
                    "no dataset `{name}` in the lake or the config (tables: {})",
                    known.join(", ")
                );
            };
            say!("table `{name}` (built in)");
            for f in table.schema().fields() {
                say!("  {:<24} {}", f.name(), f.data_type());
            }
            return Ok(());
        }
    };
    let table = Table::of_dataset(&dataset);
    say!("dataset `{name}`");
    let schema = table.schema();
    for f in schema.fields() {
        let column = dataset.columns.iter().find(|c| c.name == *f.name());
        let (ty, note) = match column {
            Some(c) => (
                c.ty.sql_name().to_string(),
                if c.required { "not null" } else { "" },
            ),
            None => (f.data_type().to_string(), "provenance"),
        };
        say!("  {:<24} {:<14} {note}", f.name(), ty);
    }
    if !dataset.key.is_empty() {
        say!("key: {}", dataset.key.join(", "));
    }
    if let Some(p) = table.partition_columns().first() {
        say!("partitioned by: {p}");
    }
    match lake.tables().await?.into_iter().find(|t| t.name == name) {
        Some(t) => say!(
            "{} rows in {} files ({} bytes), Delta version {}",
            t.rows,
            t.files,
            t.bytes,
            t.version
        ),
        None => say!("not created yet: declared in the config, no file loaded"),
    }
    Ok(())
}

async fn tables(ctx: &Ctx) -> anyhow::Result<()> {
    let lake = ctx.lake()?;
    let infos = lake.tables().await?;
    if infos.is_empty() {
        say!("no tables yet: load some data with `shopstream ingest PATH`");
        return Ok(());
    }
    say!(
        "{:<14} {:>12} {:>7} {:>12} {:>8}",
        "table",
        "rows",
        "files",
        "bytes",
        "version"
    );
    for t in infos {
        say!(
            "{:<14} {:>12} {:>7} {:>12} {:>8}",
            t.name,
            t.rows,
            t.files,
            t.bytes,
            t.version
        );
    }
    Ok(())
}

async fn compact(ctx: &Ctx, names: &[String], vacuum_after_s: Option<u64>) -> anyhow::Result<()> {
    let lake = ctx.lake()?;
    let all = lake.list().await?;
    let kinds: Vec<Table> = if names.is_empty() {
        all
    } else {
        names
            .iter()
            .map(|n| {
                all.iter().find(|k| k.name() == n).cloned().ok_or_else(|| {
                    let names: Vec<&str> = all.iter().map(|k| k.name()).collect();
                    anyhow::anyhow!("no table `{n}` (tables: {})", names.join(", "))
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    for kind in kinds {
        let s = shopstream_engine::compact::compact(&lake, &kind, &ctx.write_options()).await?;
        match s.version {
            Some(v) => say!(
                "{}: {} of {} files rewritten into {} ({} partitions), version {v}",
                s.table,
                s.files_removed,
                s.files_before,
                s.files_added,
                s.partitions
            ),
            None => say!("{}: nothing to compact ({} files)", s.table, s.files_before),
        }
        if let Some(after) = vacuum_after_s {
            let n = shopstream_engine::compact::vacuum(&lake, &kind, Duration::from_secs(after))
                .await?;
            say!("{}: {n} replaced files deleted", kind.name());
        }
    }
    Ok(())
}

async fn migrate(ctx: &Ctx) -> anyhow::Result<()> {
    let lake = ctx.lake()?;
    let done = shopstream_engine::migrate::migrate(&lake, &ctx.write_options()).await?;
    if done.iter().all(|m| m.version.is_none()) {
        say!("the lake is up to date: nothing to migrate");
        return Ok(());
    }
    for m in done {
        match m.version {
            Some(v) => say!(
                "{}: {}; {} rows in {} files rewritten into {}, version {v}",
                m.table,
                m.changes.join(", "),
                m.rows,
                m.files_removed,
                m.files_added
            ),
            None => say!("{}: up to date", m.table),
        }
    }
    Ok(())
}

fn output_format(f: Format) -> OutputFormat {
    match f {
        Format::Table => OutputFormat::Table,
        Format::Csv => OutputFormat::Csv,
        Format::Json => OutputFormat::Json,
        Format::Parquet => OutputFormat::Parquet,
    }
}

async fn run_query(ctx: &Ctx, sql: &str, format: Format, out: Option<&Path>) -> anyhow::Result<()> {
    let lake = ctx.lake()?;
    let catalog = Catalog::open(&lake).await?;
    let result = match catalog.query(sql).await {
        Ok(result) => result,
        Err(e) => match view_hint(&lake, &e.to_string()).await {
            Some(hint) => bail!("{e}\n{hint}"),
            None => return Err(e.into()),
        },
    };
    emit(&result, format, out)
}

/// What to say when a query names a view's table that is not in the lake: a view `serve` has not run
/// yet, or `<view>_live`, which only a running `serve` has.
async fn view_hint(lake: &shopstream_engine::Lake, error: &str) -> Option<String> {
    use shopstream_engine::stream::view::defs;
    let missing = error.split("table '").nth(1)?.split('\'').next()?;
    let name = missing.rsplit('.').next()?;
    if let Some(view) = name.strip_suffix("_live")
        && defs::get(lake, view).await.ok()?.is_some()
    {
        return Some(format!(
            "`{name}` holds view `{view}`'s open windows in a running `serve`: query it there \
             (GET /api/sql, the Postgres endpoint, the dashboard's explorer)"
        ));
    }
    defs::get(lake, name).await.ok()?.map(|_| {
        format!(
            "view `{name}` has no final rows yet: a running `serve` makes them (`shopstream serve`)"
        )
    })
}

/// Writes a result to `out` (a file) or stdout in `format`.
fn emit(result: &QueryResult, format: Format, out: Option<&Path>) -> anyhow::Result<()> {
    match (format, out) {
        (Format::Parquet, Some(path)) => write_parquet(result, path)?,
        (Format::Parquet, None) => bail!("--format parquet needs --out FILE"),
        (f, Some(path)) => {
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            );
            write(result, output_format(f), &mut file)?;
            file.flush()?;
        }
        (f, None) => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            write(result, output_format(f), &mut lock)?;
            lock.flush()?;
        }
    }
    Ok(())
}

/// `report all`: every report in one session. `--param k=v` applies to the reports that have `k`.
/// With `--out DIR` each report goes to `DIR/NAME.<format>`; otherwise tables are printed one after
/// the other under their titles (other formats need a folder, as they cannot be concatenated).
async fn all_reports(
    catalog: &Catalog,
    values: &BTreeMap<String, String>,
    format: Format,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    if out.is_none() && !matches!(format, Format::Table) {
        bail!(
            "report all --format {} needs --out DIR (one file per report)",
            format.extension()
        );
    }
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let known = |k: &String| {
        reports::all()
            .iter()
            .any(|r| r.params.iter().any(|p| &p.name == k))
    };
    if let Some(unknown) = values.keys().find(|k| !known(k)) {
        bail!("no report has a parameter `{unknown}`");
    }
    for r in reports::all() {
        let mine = values
            .iter()
            .filter(|(k, _)| r.params.iter().any(|p| &p.name == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let sql = r.render(&mine)?;
        let result = catalog
            .query(&sql)
            .await
            .with_context(|| format!("report {}", r.name))?;
        match out {
            Some(dir) => {
                let file = dir.join(format!("{}.{}", r.name, format.extension()));
                emit(&result, format, Some(&file))?;
            }
            None => {
                say!("\n== {} — {}", r.name, r.title());
                emit(&result, format, None)?;
            }
        }
    }
    Ok(())
}

async fn shell(ctx: &Ctx) -> anyhow::Result<()> {
    let catalog = Catalog::open(&ctx.lake()?).await?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "shopstream SQL shell: end statements with `;`, `\\d` lists tables, `\\q` quits."
        );
    }
    let mut buffer = String::new();
    let stdin = std::io::stdin();
    loop {
        if interactive {
            eprint!(
                "{}",
                if buffer.is_empty() {
                    "shopstream> "
                } else {
                    "        ... "
                }
            );
            std::io::stderr().flush()?;
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let trimmed = line.trim();
        if buffer.is_empty() && (trimmed == "\\q" || trimmed == "exit" || trimmed == "quit") {
            break;
        }
        if buffer.is_empty() && trimmed == "\\d" {
            buffer = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1;".into();
        } else {
            buffer.push_str(&line);
        }
        if !buffer.trim_end().ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut buffer);
        match catalog.query(sql.trim().trim_end_matches(';')).await {
            Ok(result) => write(&result, OutputFormat::Table, &mut std::io::stdout().lock())?,
            Err(e) => eprintln!("error: {e}"),
        }
    }
    Ok(())
}

/// The live half of `demo`: the server, the load and the landing folder, fed by a simulated store.
async fn live_demo(
    ctx: &Ctx,
    rate: u64,
    seconds: Option<u64>,
    listen: Option<String>,
    pg_listen: Option<String>,
) -> anyhow::Result<()> {
    let mut live = live::start(ctx, listen, pg_listen).await?;
    let topic = ctx.config.live.topic.clone();
    let landing = ctx.config.landing_dir(&ctx.data_dir);
    say!(
        "\nLive: a simulated store sends {rate} order lines/s to {url}/v1/topics/{topic}/records; the lake grows as they\n\
         arrive. Dashboard: {url}/  SQL explorer: {url}/explorer{pg}\n\
         Drop CSV/Excel/JSONL files into {landing} to load them. Status: {url}/v1/status, {url}/metrics.\n\
         {until}",
        url = live.url(),
        pg = live
            .postgres
            .as_ref()
            .map(|a| format!("  Postgres: psql -h {} -p {} shopstream", a.ip(), a.port()))
            .unwrap_or_default(),
        landing = landing.display(),
        until = match seconds {
            Some(s) => format!("Running for {s} s."),
            None => "Ctrl-C to stop.".to_string(),
        }
    );
    let stop = Arc::new(AtomicBool::new(false));
    let store = live::feed_store(live.url(), topic, rate, stop.clone());
    let url = live.url();
    let reporter_stop = stop.clone();
    let reporter = tokio::task::spawn_blocking(move || {
        while !reporter_stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_secs(5));
            let Ok(mut r) = ureq::get(format!("{url}/v1/status")).call() else {
                continue;
            };
            let Ok(s) = serde_json::from_str::<serde_json::Value>(
                &r.body_mut().read_to_string().unwrap_or_default(),
            ) else {
                continue;
            };
            let lag: u64 = s["partitions"]
                .as_array()
                .map_or(0, |ps| ps.iter().filter_map(|p| p["lag"].as_u64()).sum());
            say!(
                "live: {} order lines received over HTTP, {} loaded into the lake ({} dead letters), lag {lag}",
                s["http_accepted_records"],
                s["loaded_records"],
                s["dead_letters"]
            );
        }
    });
    let result = live::run_until_interrupted(&mut live, seconds.map(Duration::from_secs)).await;
    stop.store(true, Ordering::SeqCst);
    let sent = store.join().unwrap_or(0);
    let _ = reporter.await;
    let stopped = live.shutdown().await;
    say!("live: the store sent {sent} order lines; stopped.");
    result.and(stopped.map_err(Into::into))
}

async fn demo(ctx: &Ctx, from: Option<PathBuf>, rows: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(&ctx.data_dir)
        .with_context(|| format!("creating {}", ctx.data_dir.display()))?;
    say!("shopstream demo: data dir {}", ctx.data_dir.display());
    let source = match from {
        Some(dir) => dir,
        None => {
            let file = ctx
                .data_dir
                .join("generated")
                .join(format!("online-retail-{rows}-seed42.csv"));
            if !file.exists() {
                say!(
                    "generating {rows} orders like the Online Retail data into {}",
                    file.display()
                );
                generate(rows, 42, GenFormatArg::Csv, &file, 0.001)?;
            }
            file
        }
    };
    ingest(
        ctx,
        std::slice::from_ref(&source),
        None,
        true,
        Target::orders(),
    )
    .await?;
    let lake = ctx.lake()?;
    for def in shopstream_engine::stream::view::defs::defaults() {
        shopstream_engine::stream::view::defs::save(&lake, &def, &ctx.config.declared_datasets())
            .await?;
    }
    say!();
    tables(ctx).await?;
    for (name, title) in [
        ("monthly_revenue", "Monthly revenue"),
        ("top_countries_by_quantity", "Top 5 countries by quantity"),
        ("top_products_by_revenue", "Top 10 products by revenue"),
    ] {
        say!("\n== {title} (shopstream report {name})");
        let sql = reports::find(name)?.render(&BTreeMap::new())?;
        run_query(ctx, &sql, Format::Table, None).await?;
    }
    let dd = ctx.data_dir.display();
    say!(
        "\nTry next:\n  shopstream --data-dir {dd} report list\n  shopstream --data-dir {dd} report rfm --format csv\n  \
         shopstream --data-dir {dd} sql \"SELECT country, SUM(line_revenue) FROM orders GROUP BY 1 ORDER BY 2 DESC LIMIT 5\"\n  \
         shopstream --data-dir {dd} sql            (interactive shell)\n  \
         shopstream --data-dir {dd} ingest ../shared/data/online-retail/by-day   (the real data)"
    );
    Ok(())
}
