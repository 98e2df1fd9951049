//! This pod's part in keeping the gate truthful after Redis lost writes (`gate::recovery`):
//! secure the gate when a script call answers `NOSCRIPT` (once for all requests that noticed
//! together), re-check every live campaign on the sweeper's timer, and move the recovery of
//! each fenced campaign on until it is re-seeded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use gate::ledger::Settings;
use gate::recovery::{Fence, Progress, Step};
use schema::ids::CampaignId;

use crate::App;
use crate::http::problem::Problem;

/// Fenced campaigns this pod knows of, with how far its own recovery of each got.
type Fenced = HashMap<CampaignId, (Fence, Option<Progress>)>;

#[derive(Default)]
pub struct Recovery {
    /// Completed checks: a request that saw `NOSCRIPT` waits for the next one to finish.
    runs: AtomicU64,
    running: tokio::sync::Mutex<()>,
    fenced: Mutex<Fenced>,
    /// Wakes the sweeper to recover at once instead of on its next round.
    pub wake: tokio::sync::Notify,
}

impl Recovery {
    /// After `NOSCRIPT`: fences every live campaign the server may have lost, then loads the
    /// admission scripts (`Gate::secure`). Requests arriving meanwhile wait for this run.
    /// Without the ledger nothing is loaded and the caller answers 503: nobody is admitted
    /// before the check.
    pub async fn secure(&self, app: &App) -> Result<(), Problem> {
        let seen = self.runs.load(Ordering::SeqCst);
        let _running = self.running.lock().await;
        if self.runs.load(Ordering::SeqCst) != seen {
            return Ok(());
        }
        let live = {
            let db = app.db().await?;
            gate::ledger::live(&db).await?
        };
        let now_ms = app.gate.now_ms().await?;
        let fences = app.gate.secure(&live, now_ms).await?;
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.note(app, fences);
        app.metrics.gate_secured.inc();
        self.wake.notify_one();
        Ok(())
    }

    /// The loss check of every live campaign, as the sweeper's timer runs it: the second line
    /// behind `NOSCRIPT`, which also notices state that vanished while the server kept its
    /// identity (a flush, an eviction). It loads no script: a check that began before a
    /// restart must not load them onto the new server unchecked.
    pub async fn check(&self, app: &App, live: &[Settings]) -> Result<(), gate::GateError> {
        let now_ms = app.gate.now_ms().await?;
        let fences = app.gate.check_all(live, now_ms).await?;
        self.note(app, fences);
        Ok(())
    }

    /// Records the fenced campaigns a check found, keeping this pod's progress on each.
    fn note(&self, app: &App, fences: Vec<Fence>) {
        let mut fenced = lock(&self.fenced);
        let mut next = Fenced::new();
        for fence in fences {
            let progress = match fenced.remove(&fence.campaign) {
                Some((known, progress)) if known.value == fence.value => progress,
                _ => {
                    tracing::error!(
                        campaign = %fence.campaign,
                        "the gate's Redis may have lost this campaign's admissions (new server \
                         identity or state gone): fenced until re-seeded from the ledger"
                    );
                    app.metrics.gate_fences.inc();
                    None
                }
            };
            next.insert(fence.campaign, (fence, progress));
        }
        app.metrics.gate_fenced.set(next.len() as i64);
        *fenced = next;
    }

    /// Whether any campaign is fenced (the sweeper then steps every round).
    pub fn any(&self) -> bool {
        !lock(&self.fenced).is_empty()
    }

    /// Moves every fenced campaign's recovery one step on.
    pub async fn step(&self, app: &App) {
        let work: Vec<(Fence, Option<Progress>)> = lock(&self.fenced).values().cloned().collect();
        for (fence, mut progress) in work {
            let outcome = match app.db.get().await {
                Ok(db) => gate::recovery::step(&app.gate, &db, &app.lag.log, &fence, &mut progress)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let mut fenced = lock(&self.fenced);
            match outcome {
                Ok(Step::Reseeded {
                    generation,
                    fenced_ms,
                }) => {
                    tracing::warn!(campaign = %fence.campaign, generation, fenced_ms, "re-seeded the gate from the caught-up ledger; admitting again");
                    app.metrics.gate_reseeded(fenced_ms);
                    fenced.remove(&fence.campaign);
                }
                Ok(Step::Stale) => {
                    fenced.remove(&fence.campaign);
                }
                Ok(step) => {
                    tracing::info!(campaign = %fence.campaign, ?step, "recovering the gate");
                    if let Some(entry) = fenced.get_mut(&fence.campaign) {
                        entry.1 = progress;
                    }
                }
                Err(e) => {
                    tracing::warn!(campaign = %fence.campaign, error = %e, "a recovery step failed; retried next round");
                }
            }
            app.metrics.gate_fenced.set(fenced.len() as i64);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
