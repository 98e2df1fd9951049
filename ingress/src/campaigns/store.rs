//! The campaigns in the ledger as operators see them: the row, the live figures from the gate
//! (Redis) and the ledger (PostgreSQL), and the consumer group's lag. Read by the operator
//! routes (`admin`) and the public cache (`public`); it reads, never changes.

use std::collections::HashMap;

use schema::campaign::{CampaignStatus, Discount, DiscountKind};
use schema::ids::CampaignId;
use serde::Serialize;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::App;
use crate::http::problem::Problem;

/// A campaign as operators see it, with live figures.
#[derive(Debug, Serialize)]
pub struct CampaignView {
    pub id: CampaignId,
    pub name: String,
    pub status: CampaignStatus,
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

/// A pooled connection to the ledger. A route takes one and passes it down to every read it
/// makes, so no request ever holds one connection while it waits for a second from the same
/// pool (with as many such requests as connections, each would wait for the others).
pub type Db = deadpool_postgres::ClientWrapper;

/// The ledger's row of a campaign (`sql/campaigns_select_by_id.sql`), if it has one.
pub async fn row(db: &Db, id: &CampaignId) -> Result<Option<Row>, Problem> {
    let statement = db
        .prepare_cached(include_str!("../sql/campaigns_select_by_id.sql"))
        .await?;
    db.query_opt(&statement, &[&id.0])
        .await
        .map_err(Problem::from)
}

/// The operator view, or `None` when the ledger has no such campaign.
pub async fn view(app: &App, db: &Db, id: &CampaignId) -> Result<Option<CampaignView>, Problem> {
    let Some(row) = row(db, id).await? else {
        return Ok(None);
    };
    let rejected = rejections(db, &[id.0]).await?;
    let figures = gate_figures(app, id).await?;
    from_row(id, &row, figures, &rejected).map(Some)
}

/// The operator view with the consumer group's lag.
pub async fn detail(app: &App, id: &CampaignId) -> Result<Option<CampaignDetail>, Problem> {
    let campaign = async {
        let db = app.db().await?;
        view(app, &db, id).await
    };
    let (campaign, consumer_lag) = tokio::join!(campaign, app.lag.total());
    Ok(campaign?.map(|campaign| CampaignDetail {
        campaign,
        consumer_lag,
    }))
}

/// Rejections per campaign, for the given campaigns.
pub async fn rejections(db: &Db, ids: &[Uuid]) -> Result<HashMap<Uuid, i64>, Problem> {
    let statement = db
        .prepare_cached(include_str!(
            "../sql/issuance_rejections_count_by_campaigns.sql"
        ))
        .await?;
    db.query(&statement, &[&ids])
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(Problem::from)
}

/// The gate's live figures of a campaign; `None` when the gate does not know it.
pub async fn gate_figures(app: &App, id: &CampaignId) -> Result<Option<gate::Figures>, Problem> {
    Ok(app.gate.figures(id).await?)
}

/// The operator view of a ledger row (`sql/campaigns_select_by_id.sql` and the page query) with
/// the gate's figures and the ledger's rejections.
pub fn from_row(
    id: &CampaignId,
    row: &Row,
    figures: Option<gate::Figures>,
    rejected: &HashMap<Uuid, i64>,
) -> Result<CampaignView, Problem> {
    let starts_at: OffsetDateTime = row.try_get("starts_at")?;
    let ends_at: OffsetDateTime = row.try_get("ends_at")?;
    let closed_at: Option<OffsetDateTime> = row.try_get("closed_at")?;
    let status = CampaignStatus::at(OffsetDateTime::now_utc(), starts_at, ends_at, closed_at);
    // The ledger's CHECK allows only the two kinds.
    let kind = DiscountKind::parse(row.try_get("discount_kind")?).ok_or(Problem::Internal)?;
    Ok(CampaignView {
        id: *id,
        name: row.try_get("name")?,
        status,
        total_stock: i64::from(row.try_get::<_, i32>("total_stock")?),
        per_user_limit: row.try_get("per_user_limit")?,
        starts_at,
        ends_at,
        discount: Discount {
            kind,
            value: row.try_get("discount_value")?,
        },
        coupon_valid_days: row.try_get("coupon_valid_days")?,
        created_at: row.try_get("created_at")?,
        remaining: figures.map(|f| f.remaining),
        accepted: figures.map(|f| f.accepted),
        released: figures.map(|f| f.released),
        issued: i64::from(row.try_get::<_, i32>("issued_count")?),
        rejected: rejected.get(&id.0).copied().unwrap_or(0),
    })
}
