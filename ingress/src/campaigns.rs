//! Operator routes: create a campaign (PostgreSQL first, then the gate), list them, read one
//! with live figures from the gate, the ledger and Kafka, change it and close it.
//!
//! Changes keep the ledger ahead of the gate: PostgreSQL is updated first (its guarded counter
//! then allows the new stock), the gate second with absolute values (`adjust.lua`), so a retry
//! after a Redis failure completes the change and the gate never admits more than the ledger
//! accepts. Stock and the window's end only grow; the per-user limit changes only before the
//! start; a closed campaign stays closed.

use std::collections::HashMap;

use schema::ids::CampaignId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::App;
use crate::paging::{self, Page};
use crate::problem::Problem;
use gate::Seed;

const MAX_STOCK: u32 = 100_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscountKind {
    Fixed,
    Percent,
}

impl DiscountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DiscountKind::Fixed => "fixed",
            DiscountKind::Percent => "percent",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discount {
    pub kind: DiscountKind,
    pub value: i64,
}

impl Discount {
    /// What is wrong with it, if anything.
    fn problem(&self) -> Option<&'static str> {
        match self.kind {
            _ if self.value <= 0 => Some("discount.value must be positive"),
            DiscountKind::Percent if self.value > 100 => {
                Some("discount.value of a percent discount must be at most 100")
            }
            _ => None,
        }
    }
}

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

impl NewCampaign {
    /// Every rule a campaign must meet, all reported at once.
    pub fn validate(&self) -> Result<(), Vec<&'static str>> {
        let mut problems = Vec::new();
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            problems.push("name must be 1 to 200 characters");
        }
        if self.total_stock > MAX_STOCK {
            problems.push("total_stock must be at most 100000000");
        }
        if !(1..=100).contains(&self.per_user_limit) {
            problems.push("per_user_limit must be between 1 and 100");
        }
        if self.ends_at <= self.starts_at {
            problems.push("ends_at must be after starts_at");
        }
        if let Some(problem) = self.discount.problem() {
            problems.push(problem);
        }
        if !(1..=3650).contains(&self.coupon_valid_days) {
            problems.push("coupon_valid_days must be between 1 and 3650");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// A campaign as operators see it, with live figures.
#[derive(Debug, Serialize)]
pub struct CampaignView {
    pub id: CampaignId,
    pub name: String,
    pub status: &'static str,
    pub total_stock: i64,
    pub per_user_limit: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    pub discount: Discount,
    pub coupon_valid_days: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Stock left in the gate (Redis); `null` when the gate does not know the campaign.
    pub remaining: Option<i64>,
    /// Requests admitted by the gate (Redis).
    pub accepted: Option<i64>,
    /// Admissions handed back because Kafka definitively did not take their event (Redis).
    pub released: Option<i64>,
    /// Coupons persisted in the ledger (PostgreSQL).
    pub issued: i64,
    /// Admissions the ledger refused after the gate granted them (Redis lost writes).
    pub rejected: i64,
}

/// `GET /v1/admin/campaigns/{id}`: the campaign and the pipeline's state behind it.
#[derive(Debug, Serialize)]
pub struct CampaignDetail {
    #[serde(flatten)]
    pub campaign: CampaignView,
    /// Requested events the consumer group has not yet committed, over all campaigns (the
    /// topic is shared); `null` when Kafka did not answer in time.
    pub consumer_lag: Option<i64>,
}

pub async fn create(app: &App, body: &[u8]) -> Result<CampaignView, Problem> {
    let new: NewCampaign = serde_json::from_slice(body)
        .map_err(|e| Problem::BadRequest(format!("invalid campaign: {e}")))?;
    new.validate()
        .map_err(|problems| Problem::BadRequest(problems.join("; ")))?;
    let id = CampaignId(Uuid::now_v7());
    let db = app.db().await?;
    let statement = db
        .prepare_cached(include_str!("sql/campaign_insert.sql"))
        .await
        .map_err(db_problem)?;
    let kind = new.discount.kind.as_str();
    db.execute(
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
    .await
    .map_err(db_problem)?;

    // The ledger row exists first, so the gate never admits for a campaign the ledger lacks.
    let seed = Seed {
        total_stock: new.total_stock,
        per_user_limit: new.per_user_limit,
        starts_ms: unix_ms(new.starts_at),
        ends_ms: unix_ms(new.ends_at),
    };
    if let Err(e) = app.gate.seed(&id, seed).await {
        tracing::warn!(campaign = %id, error = %e, "seeding the gate failed; undoing the campaign");
        let undo = db
            .prepare_cached(include_str!("sql/campaign_delete_by_id.sql"))
            .await
            .map_err(db_problem)?;
        db.execute(&undo, &[&id.0]).await.map_err(db_problem)?;
        return Err(Problem::Unavailable {
            detail: "redis is unavailable; the campaign was not created",
            retry_after_secs: 1,
        });
    }
    view(app, &id).await?.ok_or(Problem::Internal)
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

/// Applies a change; refuses (409) what the campaign's state does not allow.
pub async fn update(app: &App, id: &CampaignId, body: &[u8]) -> Result<CampaignView, Problem> {
    let change: CampaignChange = serde_json::from_slice(body)
        .map_err(|e| Problem::BadRequest(format!("invalid change: {e}")))?;
    if change.closed == Some(true) {
        if !change.only_closes() {
            return Err(Problem::BadRequest(
                "closed: true cannot be combined with other changes".to_owned(),
            ));
        }
        return close(app, id).await;
    }
    let current = view(app, id)
        .await?
        .ok_or(Problem::NotFound("unknown campaign"))?;
    match current.status {
        "closed" => return Err(Problem::ChangeRefused("the campaign is closed".to_owned())),
        // Its `closed` event is out; extending the window would reopen it behind consumers' backs.
        "ended" => return Err(Problem::ChangeRefused("the campaign has ended".to_owned())),
        _ => {}
    }
    let before_start = |what: &str| {
        Problem::ChangeRefused(format!("{what} can change only before the campaign starts"))
    };
    let total = change.total_stock.map_or(current.total_stock, i64::from);
    if total > i64::from(MAX_STOCK) {
        return Err(Problem::BadRequest(
            "total_stock must be at most 100000000".to_owned(),
        ));
    }
    if total < current.total_stock {
        return Err(Problem::ChangeRefused(
            "total_stock can only grow".to_owned(),
        ));
    }
    let limit = change
        .per_user_limit
        .map_or(current.per_user_limit, |l| l as i32);
    if !(1..=100).contains(&limit) {
        return Err(Problem::BadRequest(
            "per_user_limit must be between 1 and 100".to_owned(),
        ));
    }
    if limit != current.per_user_limit && current.status != "scheduled" {
        return Err(before_start("per_user_limit"));
    }
    let discount = change.discount.unwrap_or(current.discount.clone());
    if let Some(problem) = discount.problem() {
        return Err(Problem::BadRequest(problem.to_owned()));
    }
    if discount != current.discount && current.status != "scheduled" {
        return Err(before_start("discount"));
    }
    let valid_days = change
        .coupon_valid_days
        .map_or(current.coupon_valid_days, |d| d as i32);
    if !(1..=3650).contains(&valid_days) {
        return Err(Problem::BadRequest(
            "coupon_valid_days must be between 1 and 3650".to_owned(),
        ));
    }
    if valid_days != current.coupon_valid_days && current.status != "scheduled" {
        return Err(before_start("coupon_valid_days"));
    }
    let ends_at = change.ends_at.unwrap_or(current.ends_at);
    if ends_at < current.ends_at {
        return Err(Problem::ChangeRefused(
            "ends_at can only move later".to_owned(),
        ));
    }
    let db = app.db().await?;
    let statement = db
        .prepare_cached(include_str!("sql/campaign_update_change.sql"))
        .await
        .map_err(db_problem)?;
    let row = db
        .query_opt(
            &statement,
            &[
                &id.0,
                &(total as i32),
                &limit,
                &ends_at,
                &discount.kind.as_str(),
                &discount.value,
                &valid_days,
            ],
        )
        .await
        .map_err(db_problem)?
        .ok_or_else(|| Problem::ChangeRefused("the campaign is closed or has ended".to_owned()))?;
    apply_to_gate(app, id, &row).await?;
    view(app, id).await?.ok_or(Problem::Internal)
}

/// `POST /v1/admin/campaigns/{id}/close`: no admission from now on; admitted requests still
/// become coupons.
pub async fn close(app: &App, id: &CampaignId) -> Result<CampaignView, Problem> {
    let db = app.db().await?;
    let statement = db
        .prepare_cached(include_str!("sql/campaign_update_close.sql"))
        .await
        .map_err(db_problem)?;
    let row = db
        .query_opt(&statement, &[&id.0])
        .await
        .map_err(db_problem)?
        .ok_or(Problem::NotFound("unknown campaign"))?;
    apply_to_gate(app, id, &row).await?;
    view(app, id).await?.ok_or(Problem::Internal)
}

/// Writes the ledger's (already updated) values to the gate.
async fn apply_to_gate(app: &App, id: &CampaignId, row: &Row) -> Result<(), Problem> {
    let get = |e: tokio_postgres::Error| db_problem(e);
    let seed = Seed {
        total_stock: row.try_get::<_, i32>("total_stock").map_err(get)? as u32,
        per_user_limit: row.try_get::<_, i32>("per_user_limit").map_err(get)? as u32,
        starts_ms: unix_ms(row.try_get("starts_at").map_err(get)?),
        ends_ms: unix_ms(row.try_get("ends_at").map_err(get)?),
    };
    let closed = row
        .try_get::<_, Option<OffsetDateTime>>("closed_at")
        .map_err(get)?
        .is_some();
    match app.gate.adjust(id, seed, closed).await {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(campaign = %id, error = %e, "applying a change to the gate failed");
            Err(Problem::Unavailable {
                detail: "the change is saved in the ledger but not yet in the gate; send it again",
                retry_after_secs: 1,
            })
        }
    }
}

/// The ledger's row of a campaign (`sql/campaign_select_by_id.sql`), if it has one.
pub(crate) async fn row(app: &App, id: &CampaignId) -> Result<Option<Row>, Problem> {
    let db = app.db().await?;
    let statement = db
        .prepare_cached(include_str!("sql/campaign_select_by_id.sql"))
        .await
        .map_err(db_problem)?;
    db.query_opt(&statement, &[&id.0]).await.map_err(db_problem)
}

/// The operator view, or `None` when the ledger has no such campaign.
pub async fn view(app: &App, id: &CampaignId) -> Result<Option<CampaignView>, Problem> {
    let Some(row) = row(app, id).await? else {
        return Ok(None);
    };
    let rejected = rejections(app, &[id.0]).await?;
    let figures = gate_figures(app, id).await?;
    from_row(id, &row, figures, &rejected).map(Some)
}

/// The operator view with the consumer group's lag.
pub async fn detail(app: &App, id: &CampaignId) -> Result<Option<CampaignDetail>, Problem> {
    let (campaign, consumer_lag) = tokio::join!(view(app, id), app.lag.total());
    Ok(campaign?.map(|campaign| CampaignDetail {
        campaign,
        consumer_lag,
    }))
}

/// `GET /v1/admin/campaigns`: newest first, in pages, optionally only those of one `status`
/// (`scheduled`, `open`, `ended`, `closed`).
pub async fn list(app: &App, query: Option<&str>) -> Result<Page<CampaignView>, Problem> {
    let mut status: Option<String> = None;
    let (limit, after) = paging::query(query, |name, value| match name {
        "status" if STATUSES.contains(&value) => {
            status = Some(value.to_owned());
            Ok(())
        }
        "status" => Err(Problem::BadRequest(format!(
            "status must be one of {}",
            STATUSES.join(", ")
        ))),
        _ => Ok(()),
    })?;
    let db = app.db().await?;
    let statement = db
        .prepare_cached(include_str!("sql/campaigns_select_page.sql"))
        .await
        .map_err(db_problem)?;
    let (after_at, after_id) = after.unzip();
    let rows = db
        .query(&statement, &[&status, &after_at, &after_id, &(limit + 1)])
        .await
        .map_err(db_problem)?;
    drop(db);
    let ids = rows
        .iter()
        .map(|row| row.try_get("id"))
        .collect::<Result<Vec<Uuid>, _>>()
        .map_err(db_problem)?;
    let rejected = rejections(app, &ids).await?;
    let campaigns: Vec<CampaignId> = ids.iter().copied().map(CampaignId).collect();
    let figures =
        futures_util::future::try_join_all(campaigns.iter().map(|id| gate_figures(app, id)))
            .await?;
    let items = rows
        .iter()
        .zip(ids)
        .zip(figures)
        .map(|((row, id), figures)| from_row(&CampaignId(id), row, figures, &rejected))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(paging::page(items, limit, |c| (c.created_at, c.id.0)))
}

const STATUSES: [&str; 4] = ["scheduled", "open", "ended", "closed"];

/// Rejections per campaign, for the given campaigns.
async fn rejections(app: &App, ids: &[Uuid]) -> Result<HashMap<Uuid, i64>, Problem> {
    let db = app.db().await?;
    let statement = db
        .prepare_cached(include_str!(
            "sql/issuance_rejections_count_by_campaigns.sql"
        ))
        .await
        .map_err(db_problem)?;
    db.query(&statement, &[&ids])
        .await
        .map_err(db_problem)?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(db_problem)
}

async fn gate_figures(app: &App, id: &CampaignId) -> Result<Option<gate::Figures>, Problem> {
    app.gate.figures(id).await.map_err(|e| {
        tracing::warn!(error = %e, "reading gate figures failed");
        crate::redis_unavailable()
    })
}

fn from_row(
    id: &CampaignId,
    row: &Row,
    figures: Option<gate::Figures>,
    rejected: &HashMap<Uuid, i64>,
) -> Result<CampaignView, Problem> {
    let get = |e: tokio_postgres::Error| db_problem(e);
    let starts_at: OffsetDateTime = row.try_get("starts_at").map_err(get)?;
    let ends_at: OffsetDateTime = row.try_get("ends_at").map_err(get)?;
    let closed_at: Option<OffsetDateTime> = row.try_get("closed_at").map_err(get)?;
    let now = OffsetDateTime::now_utc();
    let status = match closed_at {
        Some(_) => "closed",
        None if now < starts_at => "scheduled",
        None if now >= ends_at => "ended",
        None => "open",
    };
    let kind = match row.try_get::<_, &str>("discount_kind").map_err(get)? {
        "percent" => DiscountKind::Percent,
        _ => DiscountKind::Fixed,
    };
    Ok(CampaignView {
        id: *id,
        name: row.try_get("name").map_err(get)?,
        status,
        total_stock: i64::from(row.try_get::<_, i32>("total_stock").map_err(get)?),
        per_user_limit: row.try_get("per_user_limit").map_err(get)?,
        starts_at,
        ends_at,
        discount: Discount {
            kind,
            value: row.try_get("discount_value").map_err(get)?,
        },
        coupon_valid_days: row.try_get("coupon_valid_days").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        remaining: figures.map(|f| f.remaining),
        accepted: figures.map(|f| f.accepted),
        released: figures.map(|f| f.released),
        issued: i64::from(row.try_get::<_, i32>("issued_count").map_err(get)?),
        rejected: rejected.get(&id.0).copied().unwrap_or(0),
    })
}

/// The public fields of a campaign row (`campaign_select_by_id.sql` and the public list).
pub(crate) fn public_fields(
    row: &Row,
    remaining: Option<i64>,
) -> Result<crate::public::PublicCampaign, Problem> {
    let id = CampaignId(row.try_get("id").map_err(db_problem)?);
    let view = from_row(&id, row, None, &HashMap::new())?;
    Ok(crate::public::PublicCampaign {
        id,
        name: view.name,
        status: view.status,
        starts_at: view.starts_at,
        ends_at: view.ends_at,
        discount: view.discount,
        per_user_limit: view.per_user_limit,
        coupon_valid_days: view.coupon_valid_days,
        total_stock: view.total_stock,
        remaining,
    })
}

pub(crate) fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) fn db_problem(e: tokio_postgres::Error) -> Problem {
    tracing::warn!(error = %e, "postgres request failed");
    Problem::Unavailable {
        detail: "the database is unavailable",
        retry_after_secs: 1,
    }
}
