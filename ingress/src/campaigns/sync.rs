//! Keeping the gate's copy of operator decisions in step with the ledger, so that no admission
//! happens under settings older than a committed change (docs/RELIABILITY.md, "Operator
//! decisions").
//!
//! An operator's change (`admin`) runs, with the campaign's ledger row locked:
//! 1. [`hold`]: the gate stops admitting for the campaign and reads its clock. Only a change
//!    that narrows what the gate admits holds (a close, or the per-user limit, the discount or
//!    the validity before the start); one that only adds stock or moves the end later does not
//!    ([`unheld`]), as the old settings admit nothing the new ones forbid;
//! 2. the ledger's UPDATE with the next `settings_version`, then [`Pending::commit`] (or
//!    [`Pending::abandon`], which lifts the hold);
//! 3. [`apply`]: the gate applies that version and resumes.
//!
//! The sweeper hands every live campaign's settings to [`reapply`] on each reconcile round. It
//! applies what the gate missed (a 503'd change, a crash between PostgreSQL and Redis, a change
//! applied late and out of order is ignored by version) and lifts holds whose change committed
//! or died, all within one round.

use std::time::Instant;

use gate::ledger::Settings;
use gate::settings::{Adjusted, HOLD_LAPSE, Hold};
use schema::ids::CampaignId;
use time::OffsetDateTime;

use crate::App;
use crate::http::problem::Problem;

/// A change whose ledger transaction is open, with its hold in the gate (none for a change that
/// only widens what the gate admits: see [`unheld`]).
pub struct Pending<'a> {
    app: &'a App,
    campaign: CampaignId,
    hold: Option<Hold>,
    /// The ledger's settings version before the change.
    committed: i64,
    held_at: Instant,
}

/// Holds a campaign's admissions for a change of `current`, the ledger's settings read under
/// the row lock. 503 when Redis is unavailable, or when the gate does not know a campaign that
/// has not ended (it is being recovered, and admits nobody meanwhile): the caller rolls back,
/// nothing changed.
pub async fn hold<'a>(app: &'a App, current: &Settings) -> Result<Pending<'a>, Problem> {
    let campaign = current.id;
    let hold = app
        .gate
        .hold(&campaign, current.version + 1, current.starts_ms)
        .await
        .map_err(|e| {
            tracing::warn!(campaign = %campaign, error = %e, "holding the gate for a change failed");
            Problem::unavailable("redis is unavailable; nothing changed")
        })?;
    if !hold.known && hold.since_ms <= current.ends_ms {
        return Err(Problem::unavailable(
            "the gate is recovering the campaign; nothing changed",
        ));
    }
    Ok(Pending {
        app,
        campaign,
        hold: Some(hold),
        committed: current.version,
        held_at: Instant::now(),
    })
}

/// A change of `current` that only widens what the gate admits (more stock, a later end): the
/// gate keeps admitting meanwhile, since whatever the old settings admit the new ones allow.
pub fn unheld<'a>(app: &'a App, current: &Settings) -> Pending<'a> {
    Pending {
        app,
        campaign: current.id,
        hold: None,
        committed: current.version,
        held_at: Instant::now(),
    }
}

impl Pending<'_> {
    /// The Redis clock says the campaign has started (or the gate admitted someone already).
    pub fn started(&self) -> bool {
        self.hold.as_ref().is_some_and(|hold| hold.started)
    }

    /// The hold's instant: later than every admission the gate made before it. A close's
    /// `closed_at`.
    pub fn instant(&self) -> Result<OffsetDateTime, Problem> {
        let since_ms = self.hold.as_ref().ok_or(Problem::Internal)?.since_ms;
        schema::time::from_unix_ms(since_ms).ok_or(Problem::Internal)
    }

    /// The change's settings version.
    pub fn version(&self) -> i64 {
        self.committed + 1
    }

    /// Lifts the hold (while the row is still locked), then rolls the change back.
    pub async fn abandon(self, tx: deadpool_postgres::Transaction<'_>) {
        self.lift().await;
        if let Err(e) = tx.rollback().await {
            tracing::warn!(campaign = %self.campaign, error = %e, "rolling a change back failed");
        }
    }

    /// Commits the change, unless it took so long that its hold may lapse before the gate
    /// applies it (then 503, nothing changed). A failed commit keeps the hold: the commit may
    /// have happened all the same (the connection broke after it), and the sweeper's
    /// [`reapply`] lifts the hold once the ledger's version covers it, or the hold lapses.
    pub async fn commit(self, tx: deadpool_postgres::Transaction<'_>) -> Result<(), Problem> {
        if self.hold.is_some() && self.held_at.elapsed() > HOLD_LAPSE / 2 {
            tracing::warn!(campaign = %self.campaign, "a change took too long; rolled back");
            self.abandon(tx).await;
            return Err(Problem::unavailable(
                "the change took too long; nothing changed",
            ));
        }
        if let Err(e) = tx.commit().await {
            tracing::warn!(campaign = %self.campaign, error = %e, "a change's commit failed; its hold stays until the sweeper settles it");
            return Err(e.into());
        }
        Ok(())
    }

    /// Best effort: a hold left behind lapses, or the sweeper lifts it.
    async fn lift(&self) {
        let Some(hold) = self.hold.as_ref().filter(|hold| hold.known) else {
            return;
        };
        let lifted = self
            .app
            .gate
            .unhold(&self.campaign, hold, self.committed)
            .await;
        if let Err(e) = lifted {
            tracing::warn!(campaign = %self.campaign, error = %e, "lifting a hold failed; it lapses");
        }
    }
}

/// Applies the ledger's (committed) settings to the gate. 503 when the gate did not take them:
/// the change is saved, the sweeper's [`reapply`] applies it within a round, and until then the
/// change's hold (if it narrows admissions) keeps them paused.
pub async fn apply(app: &App, settings: &Settings) -> Result<(), Problem> {
    match app.gate.adjust(settings).await {
        Ok(Adjusted::Applied | Adjusted::Current) => Ok(()),
        // Ended: nothing left to admit (its keys may have expired).
        Ok(Adjusted::Unknown)
            if settings.ends_ms <= schema::time::unix_ms(OffsetDateTime::now_utc()) =>
        {
            Ok(())
        }
        // Being re-seeded: the re-seed or the next reapply takes the ledger's settings.
        Ok(Adjusted::Unknown) => Err(Problem::unavailable(
            "the change is saved; the gate takes it within seconds",
        )),
        Err(e) => {
            tracing::warn!(campaign = %settings.id, error = %e, "applying a change to the gate failed");
            Err(Problem::unavailable(
                "the change is saved; the gate takes it within seconds",
            ))
        }
    }
}

/// Re-applies the ledger's settings of `live` campaigns to the gate (idempotent: the gate
/// ignores versions it holds), which also lifts holds whose change committed or lapsed.
pub async fn reapply(app: &App, live: &[Settings]) {
    // One campaign at a time: a stream of borrowing futures here makes the sweeper's future
    // fail the spawn's `Send` check (a compiler limitation with higher-ranked lifetimes).
    for settings in live {
        match app.gate.adjust(settings).await {
            Ok(Adjusted::Applied) => tracing::info!(
                campaign = %settings.id,
                version = settings.version,
                "re-applied the ledger's settings the gate had missed"
            ),
            Ok(Adjusted::Current | Adjusted::Unknown) => {}
            Err(e) => {
                tracing::warn!(campaign = %settings.id, error = %e, "re-applying settings failed");
            }
        }
    }
}
