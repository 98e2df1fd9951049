//! Operator routes: create a campaign (the gate seeded inside the ledger's transaction), list
//! them, change it and close it. Reading one is `store::detail`.
//!
//! A change locks the campaign's ledger row, has the gate hold the campaign's admissions when it
//! narrows them (a close; the limit, discount or validity), commits with the next
//! `settings_version`, then has the gate apply that version, which lifts the hold (`sync`).
//! Changes of one campaign thus commit one after the other, the gate applies them in that order
//! whatever order its calls arrive in, and nobody is admitted under settings a committed change
//! forbids. Stock and the window's end only grow; the per-user limit, the discount and the
//! validity change only before the start, by the ledger's clock and the gate's; a closed or
//! ended campaign stays as it is.

use std::collections::HashMap;

use gate::Seed;
use gate::ledger::Settings as LedgerSettings;
use schema::campaign::{
    CampaignStatus, Discount, MAX_STOCK, PER_USER_LIMITS, VALID_DAYS, in_utc_range, name_problem,
};
use schema::ids::CampaignId;
use schema::time::unix_ms;
use serde::Deserialize;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use super::store::{self, CampaignView};
use super::sync;
use crate::App;
use crate::http::paging::{self, Page};
use crate::http::problem::Problem;

/// The body of `POST /v1/admin/campaigns`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    pub name: String,
    pub total_stock: u32,
    #[serde(default = "one")]
    pub per_user_limit: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    pub discount: Discount,
    pub coupon_valid_days: u32,
}

fn one() -> u32 {
    1
}

const OUT_OF_RANGE: &str = "starts_at and ends_at must lie within the years 0000 to 9999 in UTC";

impl NewCampaign {
    /// Every rule a campaign must meet, all reported at once.
    pub fn validate(&self) -> Result<(), Vec<&'static str>> {
        let mut problems = Vec::new();
        if let Some(problem) = name_problem(&self.name) {
            problems.push(problem);
        }
        if self.total_stock > MAX_STOCK {
            problems.push("total_stock must be at most 100000000");
        }
        if !PER_USER_LIMITS.contains(&self.per_user_limit) {
            problems.push("per_user_limit must be between 1 and 100");
        }
        if !in_utc_range(self.starts_at) || !in_utc_range(self.ends_at) {
            problems.push(OUT_OF_RANGE);
        } else if self.ends_at <= self.starts_at {
            problems.push("ends_at must be after starts_at");
        }
        if let Some(problem) = self.discount.problem() {
            problems.push(problem);
        }
        if !VALID_DAYS.contains(&self.coupon_valid_days) {
            problems.push("coupon_valid_days must be between 1 and 3650");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

pub async fn create(app: &App, body: &[u8]) -> Result<CampaignView, Problem> {
    let new: NewCampaign = serde_json::from_slice(body)
        .map_err(|e| Problem::BadRequest(format!("invalid campaign: {e}")))?;
    new.validate()
        .map_err(|problems| Problem::BadRequest(problems.join("; ")))?;
    let id = CampaignId(Uuid::now_v7());
    let mut db = app.db().await?;
    let tx = db.transaction().await?;
    let statement = tx
        .prepare_cached(include_str!("../sql/campaigns_insert.sql"))
        .await?;
    let kind = new.discount.kind.as_str();
    tx.execute(
        &statement,
        &[
            &id.0,
            &new.name.trim(),
            &(new.total_stock as i32),
            &(new.per_user_limit as i32),
            &new.starts_at,
            &new.ends_at,
            &kind,
            &new.discount.value,
            &(new.coupon_valid_days as i32),
        ],
    )
    .await?;

    // The gate is seeded before the row commits: every committed campaign has its gate keys,
    // and the gate never admits for a campaign the ledger lacks (nobody knows the id yet).
    let seed = Seed {
        total_stock: new.total_stock,
        per_user_limit: new.per_user_limit,
        starts_ms: unix_ms(new.starts_at),
        ends_ms: unix_ms(new.ends_at),
    };
    if let Err(e) = app.gate.seed(&id, seed).await {
        tracing::warn!(campaign = %id, error = %e, "seeding the gate failed; the campaign is not created");
        let _ = tx.rollback().await;
        return Err(Problem::unavailable(
            "redis is unavailable; the campaign was not created",
        ));
    }
    if let Err(e) = tx.commit().await {
        if let Err(e) = app.gate.forget(&id).await {
            tracing::warn!(campaign = %id, error = %e, "removing the seed of an uncreated campaign failed");
        }
        return Err(e.into());
    }
    store::view(app, &db, &id).await?.ok_or(Problem::Internal)
}

/// The body of `PATCH /v1/admin/campaigns/{id}`: any of these, absolute values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignChange {
    pub total_stock: Option<u32>,
    pub per_user_limit: Option<u32>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub ends_at: Option<OffsetDateTime>,
    pub discount: Option<Discount>,
    pub coupon_valid_days: Option<u32>,
    /// `true` closes the campaign (alone, as `POST .../close` does); `false` changes nothing.
    pub closed: Option<bool>,
}

impl CampaignChange {
    fn only_closes(&self) -> bool {
        self.total_stock.is_none()
            && self.per_user_limit.is_none()
            && self.ends_at.is_none()
            && self.discount.is_none()
            && self.coupon_valid_days.is_none()
    }
}

/// A campaign's settings after a change, checked against its current state.
#[derive(Debug)]
struct Settings {
    total_stock: i64,
    per_user_limit: i32,
    ends_at: OffsetDateTime,
    discount: Discount,
    coupon_valid_days: i32,
}

/// Applies a change; refuses (409) what the campaign's state does not allow. The campaign's row
/// stays locked from the first read to the commit; a change that narrows admissions (the limit,
/// discount or validity) has the gate hold them from before the commit until it applied the
/// change (`sync`).
pub async fn update(app: &App, id: &CampaignId, body: &[u8]) -> Result<CampaignView, Problem> {
    let change: CampaignChange = serde_json::from_slice(body)
        .map_err(|e| Problem::BadRequest(format!("invalid change: {e}")))?;
    if change.ends_at.is_some_and(|t| !in_utc_range(t)) {
        return Err(Problem::BadRequest(OUT_OF_RANGE.to_owned()));
    }
    if change.closed == Some(true) {
        if !change.only_closes() {
            return Err(Problem::BadRequest(
                "closed: true cannot be combined with other changes".to_owned(),
            ));
        }
        return close(app, id).await;
    }
    let mut db = app.db().await?;
    let tx = db.transaction().await?;
    let (current, ledger) = lock(&tx, id)
        .await?
        .ok_or(Problem::NotFound("unknown campaign"))?;
    let next = settle(&change, &current)?;
    // Both clocks must say "before the start" for what may change only then: the ledger's
    // (`settle`, and the UPDATE's guards) and the gate's, which stamps admissions. Such a change
    // holds the gate's admissions until it applied; more stock or a later end need no hold.
    let pending = match before_start_only(&next, &current) {
        Some(what) => {
            let pending = sync::hold(app, &ledger).await?;
            if pending.started() {
                pending.abandon(tx).await;
                return Err(before_start(what));
            }
            pending
        }
        None => sync::unheld(app, &ledger),
    };
    let statement = tx
        .prepare_cached(include_str!("../sql/campaigns_update_settings_by_id.sql"))
        .await;
    let updated = match statement {
        Ok(statement) => tx
            .query_opt(
                &statement,
                &[
                    &id.0,
                    &(next.total_stock as i32),
                    &next.per_user_limit,
                    &next.ends_at,
                    &next.discount.kind.as_str(),
                    &next.discount.value,
                    &next.coupon_valid_days,
                ],
            )
            .await
            .map_err(Problem::from),
        Err(e) => Err(e.into()),
    };
    let changed = finish(pending, tx, updated, "the campaign is closed or has ended").await?;
    sync::apply(app, &changed).await?;
    store::view(app, &db, id).await?.ok_or(Problem::Internal)
}

/// The campaign's ledger row, locked until the transaction ends, as the operator view (its
/// status by the ledger's clock) and as the settings the gate enforces.
async fn lock(
    tx: &deadpool_postgres::Transaction<'_>,
    id: &CampaignId,
) -> Result<Option<(CampaignView, LedgerSettings)>, Problem> {
    let statement = tx
        .prepare_cached(include_str!("../sql/campaigns_lock_by_id.sql"))
        .await?;
    let Some(row) = tx.query_opt(&statement, &[&id.0]).await? else {
        return Ok(None);
    };
    let mut view = store::from_row(id, &row, None, &HashMap::new())?;
    let closed_at: Option<OffsetDateTime> = row.try_get("closed_at")?;
    view.status = CampaignStatus::at(
        row.try_get("ledger_now")?,
        view.starts_at,
        view.ends_at,
        closed_at,
    );
    Ok(Some((view, LedgerSettings::from_row(&row)?)))
}

/// Commits a held change whose UPDATE answered `updated` (no row: the campaign's state refused
/// it, `refused` says why). Anything but a committed change of the held version lifts the hold
/// and rolls back.
async fn finish(
    pending: sync::Pending<'_>,
    tx: deadpool_postgres::Transaction<'_>,
    updated: Result<Option<Row>, Problem>,
    refused: &str,
) -> Result<LedgerSettings, Problem> {
    let settings = match updated {
        Ok(Some(row)) => LedgerSettings::from_row(&row).map_err(Problem::from),
        Ok(None) => Err(Problem::ChangeRefused(refused.to_owned())),
        Err(e) => Err(e),
    };
    match settings {
        Ok(settings) if settings.version == pending.version() => {
            pending.commit(tx).await?;
            Ok(settings)
        }
        Ok(_) => {
            pending.abandon(tx).await;
            Err(Problem::Internal)
        }
        Err(e) => {
            pending.abandon(tx).await;
            Err(e)
        }
    }
}

/// The settings `change` leads to, or why the campaign does not allow it: 400 for a value out
/// of range, 409 for a change its state (by the ledger's clock) forbids.
fn settle(change: &CampaignChange, current: &CampaignView) -> Result<Settings, Problem> {
    let refused = |why: &str| Err(Problem::ChangeRefused(why.to_owned()));
    let bad = |why: &str| Err(Problem::BadRequest(why.to_owned()));
    match current.status {
        CampaignStatus::Closed => return refused("the campaign is closed"),
        // Its `closed` event is out; extending the window would reopen it behind consumers' backs.
        CampaignStatus::Ended => return refused("the campaign has ended"),
        CampaignStatus::Scheduled | CampaignStatus::Open => {}
    }
    let next = Settings {
        total_stock: change.total_stock.map_or(current.total_stock, i64::from),
        per_user_limit: change
            .per_user_limit
            .map_or(current.per_user_limit, |l| l as i32),
        ends_at: change.ends_at.unwrap_or(current.ends_at),
        discount: change.discount.clone().unwrap_or(current.discount.clone()),
        coupon_valid_days: change
            .coupon_valid_days
            .map_or(current.coupon_valid_days, |d| d as i32),
    };
    if next.total_stock > i64::from(MAX_STOCK) {
        return bad("total_stock must be at most 100000000");
    }
    if next.total_stock < current.total_stock {
        return refused("total_stock can only grow");
    }
    if !u32::try_from(next.per_user_limit).is_ok_and(|l| PER_USER_LIMITS.contains(&l)) {
        return bad("per_user_limit must be between 1 and 100");
    }
    if let Some(problem) = next.discount.problem() {
        return bad(problem);
    }
    if !u32::try_from(next.coupon_valid_days).is_ok_and(|d| VALID_DAYS.contains(&d)) {
        return bad("coupon_valid_days must be between 1 and 3650");
    }
    if current.status != CampaignStatus::Scheduled
        && let Some(what) = before_start_only(&next, current)
    {
        return Err(before_start(what));
    }
    if next.ends_at < current.ends_at {
        return refused("ends_at can only move later");
    }
    Ok(next)
}

/// The first setting `next` changes that may change only before the campaign starts.
fn before_start_only(next: &Settings, current: &CampaignView) -> Option<&'static str> {
    if next.per_user_limit != current.per_user_limit {
        Some("per_user_limit")
    } else if next.discount != current.discount {
        Some("discount")
    } else if next.coupon_valid_days != current.coupon_valid_days {
        Some("coupon_valid_days")
    } else {
        None
    }
}

fn before_start(what: &str) -> Problem {
    Problem::ChangeRefused(format!("{what} can change only before the campaign starts"))
}

/// `POST /v1/admin/campaigns/{id}/close`: no admission from now on; admitted requests still
/// become coupons. `closed_at` is the instant the gate stopped admitting (by the Redis clock
/// that stamps admissions), so the ledger refuses exactly what the gate admitted after it.
/// Closing a closed campaign changes nothing (the gate is given the close again).
pub async fn close(app: &App, id: &CampaignId) -> Result<CampaignView, Problem> {
    let mut db = app.db().await?;
    let tx = db.transaction().await?;
    let (_, ledger) = lock(&tx, id)
        .await?
        .ok_or(Problem::NotFound("unknown campaign"))?;
    if ledger.closed {
        tx.rollback().await?;
        sync::apply(app, &ledger).await?;
        return store::view(app, &db, id).await?.ok_or(Problem::Internal);
    }
    let pending = sync::hold(app, &ledger).await?;
    let closed_at = pending.instant();
    let statement = tx
        .prepare_cached(include_str!("../sql/campaigns_update_close_by_id.sql"))
        .await;
    let updated = match (statement, closed_at) {
        (Ok(statement), Ok(closed_at)) => tx
            .query_opt(&statement, &[&id.0, &closed_at])
            .await
            .map_err(Problem::from),
        (Err(e), _) => Err(e.into()),
        (_, Err(e)) => Err(e),
    };
    let closed = finish(pending, tx, updated, "the campaign is closed").await?;
    sync::apply(app, &closed).await?;
    store::view(app, &db, id).await?.ok_or(Problem::Internal)
}

/// `GET /v1/admin/campaigns`: newest first, in pages, optionally only those of one `status`
/// (`scheduled`, `open`, `ended`, `closed`; `sql/campaigns_select_page.sql` derives it as
/// `CampaignStatus::at` does).
pub async fn list(app: &App, query: Option<&str>) -> Result<Page<CampaignView>, Problem> {
    let mut status: Option<&'static str> = None;
    let (limit, after) = paging::query(query, |name, value| match name {
        "status" => match CampaignStatus::parse(value) {
            Some(parsed) => {
                status = Some(parsed.as_str());
                Ok(())
            }
            None => Err(Problem::BadRequest(format!(
                "status must be one of {}",
                CampaignStatus::ALL.map(CampaignStatus::as_str).join(", ")
            ))),
        },
        _ => Ok(()),
    })?;
    let db = app.db().await?;
    let statement = db
        .prepare_cached(include_str!("../sql/campaigns_select_page.sql"))
        .await?;
    let (after_at, after_id) = after.unzip();
    let rows = db
        .query(&statement, &[&status, &after_at, &after_id, &(limit + 1)])
        .await?;
    let ids = rows
        .iter()
        .map(|row| row.try_get("id"))
        .collect::<Result<Vec<Uuid>, _>>()?;
    let rejected = store::rejections(&db, &ids).await?;
    drop(db);
    let campaigns: Vec<CampaignId> = ids.iter().copied().map(CampaignId).collect();
    let figures =
        futures_util::future::try_join_all(campaigns.iter().map(|id| store::gate_figures(app, id)))
            .await?;
    let items = rows
        .iter()
        .zip(ids)
        .zip(figures)
        .map(|((row, id), figures)| store::from_row(&CampaignId(id), row, figures, &rejected))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(paging::page(items, limit, |c| (c.created_at, c.id.0)))
}
