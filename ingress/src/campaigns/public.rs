//! Public campaign reads: `GET /v1/campaigns/{id}` and `GET /v1/campaigns` (open and upcoming).
//! They are hot during a drop, so they are served from a per-process cache: the ledger is read
//! at most once per `TTL` for each campaign and for the list, by one request at a time (others
//! are served the previous value meanwhile), and `remaining` is the gate's figure as of then.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use schema::campaign::{CampaignStatus, Discount};
use schema::ids::CampaignId;
use serde::Serialize;
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::store;
use crate::App;
use crate::http::problem::Problem;

/// How old a served figure may be.
const TTL: Duration = Duration::from_secs(1);

/// A campaign as anyone may see it.
#[derive(Debug, Clone, Serialize)]
pub struct PublicCampaign {
    pub id: CampaignId,
    pub name: String,
    pub status: CampaignStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    pub discount: Discount,
    pub per_user_limit: i32,
    pub coupon_valid_days: i32,
    pub total_stock: i64,
    /// Stock left, as of at most a second ago (`null` while the gate does not know the campaign).
    pub remaining: Option<i64>,
}

/// A cached campaign (`None`: the ledger has no such campaign) and when it was read.
type Cached = (Instant, Option<Arc<PublicCampaign>>);

#[derive(Default)]
pub struct Cache {
    campaigns: std::sync::Mutex<HashMap<CampaignId, Cached>>,
    list: std::sync::Mutex<Option<(Instant, Arc<Vec<PublicCampaign>>)>>,
    /// One refresh at a time, whatever it refreshes.
    refreshing: tokio::sync::Mutex<()>,
}

impl Cache {
    fn cached_campaign(&self, id: &CampaignId) -> Option<(bool, Option<Arc<PublicCampaign>>)> {
        let map = self.campaigns.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id)
            .map(|(at, value)| (at.elapsed() < TTL, value.clone()))
    }
}

/// `GET /v1/campaigns/{id}`.
pub async fn campaign(app: &App, id: &CampaignId) -> Result<Arc<PublicCampaign>, Problem> {
    let cache = &app.public;
    let cached = cache.cached_campaign(id);
    if let Some((true, value)) = &cached {
        return value.clone().ok_or(Problem::NotFound("unknown campaign"));
    }
    // Stale or absent: one request refreshes; the others serve what is cached, if anything.
    let guard = match (cache.refreshing.try_lock(), &cached) {
        (Ok(guard), _) => guard,
        (Err(_), Some((_, value))) => {
            return value.clone().ok_or(Problem::NotFound("unknown campaign"));
        }
        (Err(_), None) => cache.refreshing.lock().await,
    };
    if let Some((true, value)) = cache.cached_campaign(id) {
        return value.ok_or(Problem::NotFound("unknown campaign"));
    }
    let fresh = load_one(app, id).await?.map(Arc::new);
    {
        let mut map = cache.campaigns.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: unknown ids are cached too, so a scan of random ids must not grow it forever.
        if map.len() > 10_000 {
            map.retain(|_, (at, _)| at.elapsed() < TTL);
        }
        map.insert(*id, (Instant::now(), fresh.clone()));
    }
    drop(guard);
    fresh.ok_or(Problem::NotFound("unknown campaign"))
}

/// `GET /v1/campaigns`: open and upcoming campaigns, soonest first.
pub async fn list(app: &App) -> Result<Arc<Vec<PublicCampaign>>, Problem> {
    let cache = &app.public;
    let cached = cache.list.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some((at, value)) = &cached
        && at.elapsed() < TTL
    {
        return Ok(value.clone());
    }
    let guard = match (cache.refreshing.try_lock(), &cached) {
        (Ok(guard), _) => guard,
        (Err(_), Some((_, value))) => return Ok(value.clone()),
        (Err(_), None) => cache.refreshing.lock().await,
    };
    let fresh = Arc::new(load_list(app).await?);
    *cache.list.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), fresh.clone()));
    drop(guard);
    Ok(fresh)
}

async fn load_one(app: &App, id: &CampaignId) -> Result<Option<PublicCampaign>, Problem> {
    let Some(row) = store::row(app, id).await? else {
        return Ok(None);
    };
    let remaining = app
        .gate
        .figures(id)
        .await
        .ok()
        .flatten()
        .map(|f| f.remaining);
    Ok(Some(public_fields(&row, remaining)?))
}

async fn load_list(app: &App) -> Result<Vec<PublicCampaign>, Problem> {
    let db = app.db().await?;
    let statement = db
        .prepare_cached(include_str!("../sql/campaigns_select_public.sql"))
        .await?;
    let rows = db.query(&statement, &[]).await?;
    let mut list = Vec::with_capacity(rows.len());
    for row in &rows {
        let id = CampaignId(row.try_get("id")?);
        let remaining = app
            .gate
            .figures(&id)
            .await
            .ok()
            .flatten()
            .map(|f| f.remaining);
        list.push(public_fields(row, remaining)?);
    }
    Ok(list)
}

/// The public fields of a campaign row (`campaigns_select_by_id.sql` and the public list).
fn public_fields(row: &Row, remaining: Option<i64>) -> Result<PublicCampaign, Problem> {
    let id = CampaignId(row.try_get("id")?);
    let view = store::from_row(&id, row, None, &HashMap::new())?;
    Ok(PublicCampaign {
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
