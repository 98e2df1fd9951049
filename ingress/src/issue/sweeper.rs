//! Settling the journal of reservations: confirmed ones are cleared in batches, overdue ones are
//! rolled forward by the sweeper; the sweeper also keeps the gate in step with the ledger
//! (settings re-applied, loss checks, re-seeding through [`super::recovery`], key expiry).
//!
//! Every step is idempotent and safe with several ingress pods: a claim is atomic in Redis, a
//! re-produced event carries the original issuance id, and the consumer de-duplicates on it.
//! Losing a confirmation (queue full, Redis error, shutdown) only means the sweeper re-produces
//! that event once more.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use schema::ids::{CampaignId, IssuanceId};
use tokio::sync::{mpsc, watch};

use crate::App;
use gate::Gate;
use gate::ledger::Settings;

/// Most confirmations waiting to be cleared; beyond it they are dropped (and re-produced later).
const CONFIRMATION_QUEUE: usize = 65_536;
/// Most journal entries one claim takes.
const CLAIM_BATCH: usize = 256;

/// The hot path's handle: reports reservations Kafka confirmed.
#[derive(Clone)]
pub struct Confirmations {
    tx: mpsc::Sender<IssuanceId>,
    /// Confirmations queued or being cleared.
    pending: Arc<AtomicUsize>,
}

impl Confirmations {
    /// Starts the task that clears confirmed reservations from the journal in batches.
    pub fn spawn(gate: Gate) -> Confirmations {
        let (tx, mut rx) = mpsc::channel::<IssuanceId>(CONFIRMATION_QUEUE);
        let pending = Arc::new(AtomicUsize::new(0));
        let cleared = pending.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(2_048);
            while rx.recv_many(&mut batch, 2_048).await > 0 {
                if let Err(e) = gate.clear(&batch).await {
                    tracing::warn!(error = %e, count = batch.len(), "clearing confirmed reservations failed; the sweeper will re-produce them");
                }
                cleared.fetch_sub(batch.len(), Ordering::SeqCst);
                batch.clear();
            }
        });
        Confirmations { tx, pending }
    }

    /// Never waits: a full queue drops the confirmation (the sweeper then re-produces it).
    pub fn confirm(&self, issuance: IssuanceId) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.try_send(issuance).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Waits (at most two seconds) until every queued confirmation was cleared, so a stopping
    /// ingress leaves no confirmed reservation for the sweepers to re-produce.
    pub async fn flush(&self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.pending.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Sweeps overdue journal entries every `SWEEP_INTERVAL_MS`, moves the recovery of fenced
/// campaigns on, and every `RECONCILE_INTERVAL_MS` (or at once when a loss check fenced
/// something) re-reads the live campaigns: re-applies their settings to the gate, checks each
/// for lost admissions, and sets their keys' expiry. Until `stop` turns true.
pub async fn sweep(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let interval = Duration::from_millis(app.config.sweep_interval_ms);
    let refresh = Duration::from_millis(app.config.reconcile_interval_ms);
    let hold = app.config.journal_deadline();
    let mut live: Vec<Settings> = Vec::new();
    let mut refreshed: Option<Instant> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = app.recovery.wake.notified() => refreshed = None,
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        if refreshed.is_none_or(|at| at.elapsed() >= refresh) {
            match live_campaigns(&app).await {
                Ok(campaigns) => {
                    live = campaigns;
                    refreshed = Some(Instant::now());
                    reconcile(&app, &live).await;
                }
                Err(e) => tracing::warn!(error = %e, "reading live campaigns failed"),
            }
        }
        if app.recovery.any() {
            app.recovery.step(&app).await;
        }
        for settings in &live {
            roll_forward(&app, &settings.id, hold).await;
        }
    }
}

/// One reconcile round over the live campaigns.
async fn reconcile(app: &App, live: &[Settings]) {
    crate::campaigns::sync::reapply(app, live).await;
    if let Err(e) = app.recovery.check(app, live).await {
        tracing::warn!(error = %e, "checking the gate for lost admissions failed");
    }
    for settings in live {
        if let Err(e) = app.gate.expire(&settings.id, settings.ends_ms).await {
            tracing::warn!(error = %e, "setting the expiry of a campaign's gate keys failed");
            break;
        }
    }
    count_journal(app, live).await;
}

/// Sets the journal gauge: reservations of live campaigns not yet confirmed by Kafka.
async fn count_journal(app: &App, campaigns: &[Settings]) {
    let mut total = 0u64;
    for campaign in campaigns {
        match app.gate.journal_len(&campaign.id).await {
            Ok(len) => total += len,
            Err(e) => {
                tracing::warn!(error = %e, "reading the journal length failed");
                return;
            }
        }
    }
    app.metrics
        .journal_entries
        .set(i64::try_from(total).unwrap_or(i64::MAX));
}

/// Claims and re-produces a campaign's overdue reservations until none are left.
async fn roll_forward(app: &App, campaign: &CampaignId, hold: Duration) {
    loop {
        let overdue = match app.gate.claim_overdue(campaign, hold, CLAIM_BATCH).await {
            Ok(overdue) if overdue.is_empty() => return,
            Ok(overdue) => overdue,
            Err(gate::GateError::ScriptsMissing) => {
                // The server lost its scripts: the loss check loads them; claims resume next round.
                if let Err(e) = app.recovery.secure(app).await {
                    tracing::warn!(error = ?e, "the gate's loss check failed");
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, campaign = %campaign, "claiming overdue reservations failed");
                return;
            }
        };
        tracing::info!(campaign = %campaign, count = overdue.len(), "rolling reservations forward");
        let sends = overdue.iter().map(|o| async move {
            match app.publisher.publish(&o.event()).await {
                Ok(()) => Some(o.issuance),
                Err(e) => {
                    tracing::warn!(error = %e, issuance = %o.issuance, "re-producing failed; retried after the claim lapses");
                    None
                }
            }
        });
        let confirmed: Vec<IssuanceId> = futures_util::future::join_all(sends)
            .await
            .into_iter()
            .flatten()
            .collect();
        app.metrics.rolled_forward.inc_by(confirmed.len() as u64);
        let complete = confirmed.len() == overdue.len();
        if let Err(e) = app.gate.clear(&confirmed).await {
            tracing::warn!(error = %e, "clearing rolled-forward reservations failed");
        }
        if !complete || overdue.len() < CLAIM_BATCH {
            return;
        }
    }
}

/// Why the sweeper could not read the ledger. It speaks no HTTP: its loop logs this and tries
/// again on its next round.
#[derive(Debug, thiserror::Error)]
enum LedgerError {
    #[error("no postgres connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("postgres: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// Campaigns whose journal may still hold entries, with the settings the gate must enforce.
async fn live_campaigns(app: &App) -> Result<Vec<gate::ledger::Settings>, LedgerError> {
    let db = app.db.get().await?;
    Ok(gate::ledger::live(&db).await?)
}
