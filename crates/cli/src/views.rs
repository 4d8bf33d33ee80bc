//! `shopstream view create|list|describe|drop`: the lake's continuous views ([`shopstream_engine::stream::view`]).

use anyhow::bail;
use clap::Subcommand;
use shopstream_engine::Lake;
use shopstream_engine::stream::view::defs;
use shopstream_engine::stream::view::job::ViewDef;

/// What `shopstream view` does.
#[derive(Subcommand)]
pub enum ViewCommand {
    /// Create a view (or replace one: a changed SQL starts its state over). Its SQL reads a dataset or
    /// view, plainly or through a window: TUMBLE(src, time, size), HOP(src, time, slide, size),
    /// SESSION(src, time, gap). A running `serve` backfills it from the lake, then keeps it up to date.
    Create {
        /// Its name: the table of its final windows; `<name>_live` holds the open ones.
        name: String,
        /// Its SQL.
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
    },
    /// List the lake's views.
    List,
    /// Show a view's SQL, settings, output columns and version.
    Describe {
        /// The view.
        name: String,
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

/// Runs `command` on `lake`.
pub async fn run(lake: &Lake, command: ViewCommand) -> anyhow::Result<()> {
    match command {
        ViewCommand::Create {
            name,
            sql,
            delay_s,
            lateness_s,
            idle_timeout_s,
            ttl_s,
        } => {
            let def = ViewDef {
                name,
                sql,
                delay_s,
                lateness_s,
                idle_timeout_s,
                ttl_s,
            };
            let replaced = defs::get(lake, &def.name).await?;
            defs::save(lake, &def).await?;
            let verb = match replaced {
                Some(old) if old.version() != def.version() => "replaced (its state starts over)",
                Some(_) => "unchanged",
                None => "created",
            };
            println!("view `{}` {verb}; version {}", def.name, def.version());
        }
        ViewCommand::List => {
            for def in defs::list(lake).await? {
                println!("{:<24} {}", def.name, def.sql);
            }
        }
        ViewCommand::Describe { name } => {
            let Some(def) = defs::get(lake, &name).await? else {
                bail!("no view `{name}` in the lake (shopstream view list)");
            };
            let plan = defs::check(lake, &def).await?;
            println!("view `{}` (version {})", def.name, def.version());
            println!("  source      {}", plan.source);
            println!("  window      {:?}", plan.window);
            println!(
                "  delay {} s, lateness {} s, idle timeout {} s, ttl {} s",
                def.delay_s, def.lateness_s, def.idle_timeout_s, def.ttl_s
            );
            println!("  sql         {}", def.sql);
            for f in plan.output_schema.fields() {
                println!("  {:<24} {}", f.name(), f.data_type());
            }
        }
        ViewCommand::Drop { name, purge } => {
            if !defs::drop(lake, &name, purge).await? {
                bail!("no view `{name}` in the lake (shopstream view list)");
            }
            println!(
                "view `{name}` dropped{}",
                if purge { " with its table" } else { "" }
            );
        }
    }
    Ok(())
}
