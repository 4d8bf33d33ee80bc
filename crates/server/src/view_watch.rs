//! Following the lake's views while `serve` runs: every [`WATCH_EVERY`] the views are read again, so a view
//! made by `shopstream view create` (on any machine) starts, a dropped one stops (its `<name>_live` table,
//! change stream and figures go), and one whose definition changed stops and starts again as its new
//! version. A view's task releases its claim when it stops, so its next version (or `view drop`, which
//! waits for the claim before removing the view's state) takes over only then; a task that gets the claim
//! runs only the definition the lake still has. A view that cannot run is warned of once per reason, and
//! tried again every 30 s, or at once when its definition changes (the view it reads may come later).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shopstream_engine::stream::view::job::ViewDef;

use crate::views::{Launcher, Running};

/// How often the lake's views are read again.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// How often a view that cannot run is tried again (unless its definition changes).
const RETRY_REFUSED: Duration = Duration::from_secs(30);

type Task = tokio::task::JoinHandle<shopstream_engine::Result<()>>;

/// A view that cannot run: its definition, why, and when it was last tried.
struct Refused {
    def: ViewDef,
    reason: String,
    at: std::time::Instant,
}

/// The views this server follows: the ones started, and the ones refused with why.
pub(crate) struct Watch {
    launcher: Launcher,
    stop: Arc<AtomicBool>,
    running: BTreeMap<String, Running>,
    refused: BTreeMap<String, Refused>,
    stopping: Vec<Task>,
}

impl Watch {
    pub fn new(launcher: Launcher, stop: Arc<AtomicBool>) -> Self {
        Watch {
            launcher,
            stop,
            running: BTreeMap::new(),
            refused: BTreeMap::new(),
            stopping: Vec::new(),
        }
    }

    /// Follows the views until `stop`, then stops their tasks and waits for them.
    pub async fn run(mut self) -> shopstream_engine::Result<()> {
        while !self.stop.load(Ordering::Relaxed) {
            let round = tokio::time::Instant::now() + WATCH_EVERY;
            while !self.stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < round {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !self.stop.load(Ordering::Relaxed) {
                self.follow().await;
            }
        }
        let running = std::mem::take(&mut self.running);
        self.stopping
            .extend(running.into_values().map(Running::stop));
        for task in self.stopping {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("a view stopped with: {e}"),
                Err(e) => tracing::warn!("a view's task failed: {e}"),
            }
        }
        Ok(())
    }

    /// One round: stops the views dropped or changed, starts the ones not running.
    pub async fn follow(&mut self) {
        let views = match self.launcher.views().await {
            Ok(views) => views,
            Err(e) => {
                tracing::warn!("reading the lake's views: {e}");
                return;
            }
        };
        let wanted: BTreeMap<String, ViewDef> =
            views.into_iter().map(|d| (d.name.clone(), d)).collect();
        let gone: Vec<String> = (self.running.iter())
            .filter(|(name, r)| wanted.get(*name) != Some(&r.def))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(running) = self.running.remove(&name) {
                tracing::info!(view = %name, "the view was dropped or changed: stopping it");
                self.stopping.push(running.stop());
                self.launcher.forget(&name);
            }
        }
        self.reap();
        self.refused.retain(|name, _| wanted.contains_key(name));
        for (name, def) in wanted {
            let retry = match self.refused.get(&name) {
                Some(r) => r.def != def || r.at.elapsed() >= RETRY_REFUSED,
                None => true,
            };
            if !self.running.contains_key(&name) && retry {
                self.start(def).await;
            }
        }
    }

    /// Forgets the stopped tasks that ended, saying how a failed one ended.
    fn reap(&mut self) {
        use futures::FutureExt;
        let (ended, stopping) = std::mem::take(&mut self.stopping)
            .into_iter()
            .partition::<Vec<_>, _>(|t| t.is_finished());
        self.stopping = stopping;
        for task in ended {
            match task.now_or_never() {
                Some(Ok(Err(e))) => tracing::warn!("a view stopped with: {e}"),
                Some(Err(e)) => tracing::warn!("a view's task failed: {e}"),
                _ => {}
            }
        }
    }

    async fn start(&mut self, def: ViewDef) {
        let name = def.name.clone();
        match self.launcher.launch(def.clone()).await {
            Ok(running) => {
                self.refused.remove(&name);
                self.running.insert(name, running);
            }
            Err(reason) => {
                let known = self.refused.get(&name);
                if known.is_none_or(|r| r.def != def || r.reason != reason) {
                    tracing::warn!("view `{name}` does not run: {reason}");
                }
                let at = std::time::Instant::now();
                self.refused.insert(name, Refused { def, reason, at });
            }
        }
    }
}
