//! Public campaign reads: `GET /v1/campaigns/{id}` and `GET /v1/campaigns` (open and upcoming).
//! They are hot during a drop and anyone may send them, so they are served from a per-process
//! cache and kept apart from issuance:
//! - a campaign (and the list) is read from the ledger at most once per `TTL`, by one request
//!   per campaign (single flight: others wait for that read, or are served the previous value
//!   meanwhile); `remaining` is the gate's figure as of then;
//! - an id the ledger does not know is remembered for `UNKNOWN_TTL` (a bounded negative
//!   cache), so a campaign created afterwards is visible within that time;
//! - at most `loads` ledger reads run at once for these routes (half the pool), so a flood of
//!   random ids never takes the connections operators and status reads need: past it, 503 with
//!   `Retry-After` at once;
//! - the requests themselves hold permits of their own budget (`INGRESS_MAX_PUBLIC_READS`,
//!   taken by `http::guarded`), never issuance's;
//! - answers carry `Cache-Control: public, max-age=` `TTL` and an `ETag` (`http::caching`), so
//!   a CDN or the browser can keep them as long as this cache does.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use schema::campaign::{CampaignStatus, Discount};
use schema::ids::CampaignId;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};
use tokio_postgres::Row;

use super::store;
use crate::App;
use crate::http::problem::Problem;

/// How old a served figure may be; also the `max-age` its answers carry (`http::caching`).
pub const TTL: Duration = Duration::from_secs(1);
/// How long an id the ledger does not know reads as unknown without asking it again.
const UNKNOWN_TTL: Duration = Duration::from_secs(1);
/// Most campaigns cached; past it, those older than `TTL` are dropped.
const MAX_CAMPAIGNS: usize = 10_000;
/// Most unknown ids remembered; past it, the negative cache starts over.
const MAX_UNKNOWN: usize = 10_000;

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

type Campaigns = HashMap<CampaignId, (Instant, Arc<PublicCampaign>)>;
type List = Arc<Vec<PublicCampaign>>;

pub struct Cache {
    /// Public reads in progress (`INGRESS_MAX_PUBLIC_READS`).
    budget: Semaphore,
    /// Ledger reads in progress for public routes.
    loads: Semaphore,
    campaigns: Mutex<Campaigns>,
    unknown: Mutex<Unknown>,
    list: Mutex<Option<(Instant, List)>>,
    campaign_flights: Flights<CampaignId, Option<Arc<PublicCampaign>>>,
    list_flight: Flights<(), List>,
}

impl Cache {
    /// `max_reads` public requests at once; ledger reads bounded by half of `pool_size`.
    pub fn new(max_reads: usize, pool_size: usize) -> Cache {
        Cache {
            budget: Semaphore::new(max_reads),
            loads: Semaphore::new((pool_size / 2).max(1)),
            campaigns: Mutex::default(),
            unknown: Mutex::new(Unknown::new(MAX_UNKNOWN)),
            list: Mutex::default(),
            campaign_flights: Flights::default(),
            list_flight: Flights::default(),
        }
    }

    /// A permit of the public read budget, or `None` when it is spent.
    pub fn admit(&self) -> Option<SemaphorePermit<'_>> {
        self.budget.try_acquire().ok()
    }

    fn load_permit(&self) -> Result<SemaphorePermit<'_>, Problem> {
        self.loads
            .try_acquire()
            .map_err(|_| Problem::unavailable("too many campaign reads at once; retry"))
    }

    /// What is cached for `id`: whether it is fresh, and the campaign (`None`: known unknown).
    fn cached(&self, id: &CampaignId) -> Option<(bool, Option<Arc<PublicCampaign>>)> {
        if let Some((at, value)) = lock(&self.campaigns).get(id) {
            return Some((at.elapsed() < TTL, Some(value.clone())));
        }
        lock(&self.unknown)
            .contains(id, Instant::now())
            .then_some((true, None))
    }

    fn remember(&self, id: &CampaignId, value: Option<&Arc<PublicCampaign>>) {
        let now = Instant::now();
        match value {
            Some(campaign) => {
                let mut map = lock(&self.campaigns);
                if map.len() >= MAX_CAMPAIGNS {
                    map.retain(|_, (at, _)| at.elapsed() < TTL);
                }
                map.insert(*id, (now, campaign.clone()));
                lock(&self.unknown).forget(id);
            }
            None => {
                lock(&self.campaigns).remove(id);
                lock(&self.unknown).insert(*id, now);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// `GET /v1/campaigns/{id}`.
pub async fn campaign(app: &App, id: &CampaignId) -> Result<Arc<PublicCampaign>, Problem> {
    let cache = &app.public;
    let stale = match cache.cached(id) {
        Some((true, value)) => return value.ok_or(Problem::NotFound("unknown campaign")),
        // Someone is reading it again: serve what is cached meanwhile.
        Some((false, Some(value))) if cache.campaign_flights.busy(id) => return Ok(value),
        Some((false, value)) => value,
        None => None,
    };
    let loaded = cache
        .campaign_flights
        .join(*id, || async {
            let fresh = load_one(app, id).await?.map(Arc::new);
            cache.remember(id, fresh.as_ref());
            Ok(fresh)
        })
        .await;
    match (loaded, stale) {
        (Ok(fresh), _) => fresh.ok_or(Problem::NotFound("unknown campaign")),
        (Err(problem), None) => Err(problem),
        // The ledger did not answer now: the figure of a moment ago is better than none.
        (Err(_), Some(stale)) => Ok(stale),
    }
}

/// `GET /v1/campaigns`: open and upcoming campaigns, soonest first.
pub async fn list(app: &App) -> Result<List, Problem> {
    let cache = &app.public;
    let cached = lock(&cache.list).clone();
    if let Some((at, value)) = &cached
        && (at.elapsed() < TTL || cache.list_flight.busy(&()))
    {
        return Ok(value.clone());
    }
    let loaded = cache
        .list_flight
        .join((), || async {
            let fresh = Arc::new(load_list(app).await?);
            *lock(&cache.list) = Some((Instant::now(), fresh.clone()));
            Ok(fresh)
        })
        .await;
    match (loaded, cached) {
        (Ok(fresh), _) => Ok(fresh),
        (Err(problem), None) => Err(problem),
        (Err(_), Some((_, stale))) => Ok(stale),
    }
}

async fn load_one(app: &App, id: &CampaignId) -> Result<Option<PublicCampaign>, Problem> {
    let _load = app.public.load_permit()?;
    let row = store::row(&*app.db().await?, id).await?;
    let Some(row) = row else {
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
    let _load = app.public.load_permit()?;
    let rows = {
        let db = app.db().await?;
        let statement = db
            .prepare_cached(include_str!("../sql/campaigns_select_public.sql"))
            .await?;
        db.query(&statement, &[]).await?
    };
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

/// Ids the ledger did not know, and when it said so; at most `capacity` of them.
struct Unknown {
    since: HashMap<CampaignId, Instant>,
    capacity: usize,
}

impl Unknown {
    fn new(capacity: usize) -> Unknown {
        Unknown {
            since: HashMap::new(),
            capacity,
        }
    }

    fn contains(&self, id: &CampaignId, now: Instant) -> bool {
        self.since
            .get(id)
            .is_some_and(|at| now.saturating_duration_since(*at) < UNKNOWN_TTL)
    }

    /// Remembers `id` as unknown. When full, it starts over: every entry is at most
    /// `UNKNOWN_TTL` old anyway, and forgetting one costs one more ledger read.
    fn insert(&mut self, id: CampaignId, now: Instant) {
        if self.since.len() >= self.capacity {
            self.since.clear();
        }
        self.since.insert(id, now);
    }

    fn forget(&mut self, id: &CampaignId) {
        self.since.remove(id);
    }
}

/// Single flight per key: the first caller runs the load, callers arriving meanwhile wait for
/// its outcome. Should the running caller go away (its request ended), a waiting one runs its
/// own load instead.
struct Flights<K, V> {
    running: Mutex<HashMap<K, Arc<Flight<V>>>>,
}

/// One load's outcome, once it is there.
type Flight<V> = OnceCell<Result<V, Problem>>;

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Flights {
            running: Mutex::default(),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Flights<K, V> {
    /// Whether a load of `key` is running.
    fn busy(&self, key: &K) -> bool {
        lock(&self.running).contains_key(key)
    }

    /// The outcome of the running load of `key`, or of `load` when none runs.
    async fn join<F, Fut>(&self, key: K, load: F) -> Result<V, Problem>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, Problem>>,
    {
        let cell = lock(&self.running).entry(key.clone()).or_default().clone();
        let outcome = cell.get_or_init(load).await.clone();
        // Done: the next caller starts a new load (when the cache does not answer it). Only
        // this flight is removed; a newer one may already run.
        let mut running = lock(&self.running);
        if running.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            running.remove(&key);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn id() -> CampaignId {
        CampaignId(uuid::Uuid::now_v7())
    }

    #[test]
    fn an_unknown_id_is_remembered_for_its_ttl_and_the_memory_is_bounded() {
        let mut unknown = Unknown::new(3);
        let now = Instant::now();
        let first = id();
        unknown.insert(first, now);
        assert!(unknown.contains(&first, now));
        assert!(unknown.contains(&first, now + UNKNOWN_TTL / 2));
        assert!(!unknown.contains(&first, now + UNKNOWN_TTL), "expired");
        unknown.forget(&first);
        assert!(
            !unknown.contains(&first, now),
            "a campaign created since is no longer unknown"
        );
        for _ in 0..10 {
            unknown.insert(id(), now);
            assert!(unknown.since.len() <= 3);
        }
    }

    #[tokio::test]
    async fn concurrent_reads_of_one_key_share_one_load_and_the_next_loads_again() {
        let flights: Flights<u8, u32> = Flights::default();
        let loads = &AtomicUsize::new(0);
        let (release, released) = tokio::sync::watch::channel(false);
        let released = &released;
        let load = move || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            let mut released = released.clone();
            released.wait_for(|r| *r).await.unwrap();
            Ok(7)
        };
        let waiting = futures_util::future::join_all((0..5).map(|_| flights.join(1, load)));
        let releasing = async {
            tokio::task::yield_now().await;
            assert!(flights.busy(&1));
            release.send(true).unwrap();
        };
        let (outcomes, ()) = tokio::join!(waiting, releasing);
        assert!(outcomes.into_iter().all(|o| o == Ok(7)));
        assert_eq!(loads.load(Ordering::SeqCst), 1, "one load for five readers");
        assert!(!flights.busy(&1));
        assert_eq!(flights.join(1, load).await, Ok(7));
        assert_eq!(
            loads.load(Ordering::SeqCst),
            2,
            "a finished flight is not reused"
        );
    }

    #[tokio::test]
    async fn a_failed_load_is_not_kept() {
        let flights: Flights<u8, u32> = Flights::default();
        let failed = flights
            .join(1, || async { Err(Problem::unavailable("down")) })
            .await;
        assert_eq!(failed, Err(Problem::unavailable("down")));
        assert_eq!(flights.join(1, || async { Ok(3) }).await, Ok(3));
    }
}
