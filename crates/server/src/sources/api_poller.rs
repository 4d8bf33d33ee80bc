//! API pollers: a paginated JSON API polled into a topic ([`shopstream_ingest::sources::api`]), each on its
//! own thread (`poll-<name>`); its records pass through a flow's steps when it names one (`flow`, checked
//! by the config). Its topic (or its flow's) must exist: the HTTP push and flow sources are built first.
//!
//! A poller runs on one worker at a time: every worker configured with it claims the job `poller-<name>`
//! ([`shopstream_engine::lease::claim_job`]: a lock file in a local lake, a lease on object storage), and
//! only the holder polls. The holder builds its poller once it has the claim, reading the last checkpoint
//! back from the topic, so it resumes where the previous holder's stored records end; it checks the claim
//! before each page and stops once it is lost. The others try again every [`CLAIM_EVERY`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shopstream_engine::Lake;
use shopstream_engine::lease::{JobClaim, claim_job};
use shopstream_ingest::sources::api::{Poller, PollerConfig};
use shopstream_ingest::sources::flow::FlowConfig;
use shopstream_log::Backbone;

use crate::server::ServerError;
use crate::sources::{BuiltSource, SourceContext, SourceWork};
use crate::workers::HeldJobs;

/// How long a poller's lease on object storage lasts unless renewed (renewed every third of it).
pub const POLLER_LEASE: Duration = Duration::from_secs(30);
/// How often a worker that does not run a poller tries to claim it.
pub const CLAIM_EVERY: Duration = Duration::from_secs(1);

/// Checks that the poller can start (its topics exist) and returns its work: claiming and polling until the
/// server stops.
pub(super) fn build(
    config: &PollerConfig,
    cx: &SourceContext<'_>,
) -> Result<BuiltSource, ServerError> {
    let failed = |reason: String| ServerError::Poller {
        poller: config.name.clone(),
        reason,
    };
    let flow = if config.flow.is_empty() {
        None
    } else {
        Some(
            cx.live
                .flows
                .iter()
                .find(|f| f.name == config.flow)
                .cloned()
                .ok_or_else(|| failed(format!("no flow `{}`", config.flow)))?,
        )
    };
    Poller::new(cx.backbone.as_ref(), config.clone(), flow.clone()).map_err(failed)?;
    let job = Job {
        config: config.clone(),
        flow,
        backbone: cx.backbone.clone(),
        lake: cx.lake.clone(),
        stop: cx.stop.clone(),
        jobs: cx.jobs.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    Ok(BuiltSource {
        work: Some(SourceWork::Thread {
            name: format!("poll-{}", config.name),
            run: Box::new(move || job.run()),
        }),
        ..BuiltSource::default()
    })
}

/// One poller's work on this worker.
struct Job {
    config: PollerConfig,
    flow: Option<FlowConfig>,
    backbone: Arc<dyn Backbone>,
    lake: Lake,
    stop: Arc<AtomicBool>,
    jobs: Arc<HeldJobs>,
    runtime: tokio::runtime::Handle,
}

impl Job {
    /// Claims the poller and polls while the claim holds, until the server stops.
    fn run(self) {
        let holder = shopstream_engine::lease::holder_name();
        let job = format!("poller-{}", self.config.name);
        while !self.stop.load(Ordering::Relaxed) {
            let claimed = self
                .runtime
                .block_on(claim_job(&self.lake, &job, &holder, POLLER_LEASE));
            match claimed {
                Ok(Some(claim)) => self.poll(claim),
                Ok(None) => {}
                Err(e) => tracing::warn!(poller = %self.config.name, "claiming the poller: {e}"),
            }
            let until = Instant::now() + CLAIM_EVERY;
            while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Polls from the checkpoint stored in the topic while `claim` holds and the server runs.
    fn poll(&self, mut claim: JobClaim) {
        let label = format!("poller {}", self.config.name);
        match Poller::new(
            self.backbone.as_ref(),
            self.config.clone(),
            self.flow.clone(),
        ) {
            Ok(poller) => {
                tracing::info!(poller = %self.config.name, "this worker runs the poller");
                self.jobs.set(&label, true);
                poller.run_while(|| {
                    !self.stop.load(Ordering::Relaxed) && self.runtime.block_on(claim.hold())
                });
                self.jobs.set(&label, false);
            }
            Err(e) => tracing::warn!(poller = %self.config.name, "{e}"),
        }
        self.runtime.block_on(claim.release());
    }
}
