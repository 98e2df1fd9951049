//! Writing one batch to the ledger in one transaction.
//!
//! **Invariant:** every coupon insert happens after `campaigns_lock_by_ids.sql` locked its
//! campaign row, and moves `issued_count` in the same statement; the CHECK on `issued_count`
//! and the UNIQUE (campaign_id, user_id, seq) key refuse an oversell or a duplicate even if the
//! planning above them were wrong. A planned row that does not go in (a conflict nobody
//! foresaw) fails the batch ([`StoreError::Unplanned`]): it is never silently dropped.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use deadpool_postgres::Transaction;
use schema::time::unix_ms;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::decode::Issuance;
use super::plan::{Campaign, Facts, Rejection, plan};

/// What one committed batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    pub inserted: u64,
    pub rejected: u64,
    /// Refused admissions by reason (`Rejection::as_str`).
    pub rejections: Vec<(&'static str, u64)>,
    pub redelivered: u64,
    /// Time spent per phase of the transaction: `read` (locks and lookups), `write` (inserts),
    /// `commit`.
    pub phases: Vec<(&'static str, Duration)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// The database wrote fewer (or more) rows than the plan holds: a conflict the plan did
    /// not foresee. The batch is rolled back rather than losing an issuance.
    #[error("{planned} {rows} planned, {written} written: the batch is rolled back")]
    Unplanned {
        rows: &'static str,
        planned: u64,
        written: u64,
    },
}

impl StoreError {
    /// A constraint fired although planning should have prevented it: a bug or a foreign
    /// writer. Retrying cannot help, but the batch must not be skipped either.
    pub fn is_integrity_violation(&self) -> bool {
        match self {
            StoreError::Db(e) => matches!(
                e.code(),
                Some(&SqlState::CHECK_VIOLATION | &SqlState::UNIQUE_VIOLATION)
            ),
            StoreError::Unplanned { .. } => true,
            // Pool errors are connection trouble: transient.
            StoreError::Pool(_) => false,
        }
    }
}

pub struct Ledger {
    /// Connections to the ledger; one is held for the length of a batch's transaction.
    pool: deadpool_postgres::Pool,
}

impl Ledger {
    pub fn new(pool: deadpool_postgres::Pool) -> Self {
        Ledger { pool }
    }

    /// Persists a batch: coupons for the admissions the ledger accepts, rejection rows for the
    /// ones it refuses, nothing for redeliveries. All or nothing.
    ///
    /// Three steps in one transaction: read the facts under the campaigns' row locks, decide
    /// with the pure [`plan`], write what the plan says.
    pub async fn write(&self, batch: &[Issuance]) -> Result<Written, StoreError> {
        if batch.is_empty() {
            return Ok(Written::default());
        }
        let mut client = self.pool.get().await?;
        let started = Instant::now();
        let tx = client.transaction().await?;

        let facts = read_facts(&tx, batch).await?;
        let plan = plan(batch, &facts);
        let read = started.elapsed();

        let mut written = Written {
            inserted: insert_coupons(&tx, &plan.insert).await?,
            rejected: plan.reject.len() as u64,
            rejections: insert_rejections(&tx, &plan.reject).await?,
            redelivered: plan.redelivered as u64,
            phases: Vec::new(),
        };
        // Sent at the commit: parked long-polls wake only once their row is there.
        let settled = plan.insert.iter().copied();
        super::notify::announce(&tx, settled.chain(plan.reject.iter().map(|(i, _)| *i))).await?;
        let write = started.elapsed();
        tx.commit().await?;
        written.phases = vec![
            ("read", read),
            ("write", write - read),
            ("commit", started.elapsed() - write),
        ];
        Ok(written)
    }
}

/// What the ledger already holds for the batch. The campaigns are locked first, so nothing read
/// after can change before the commit.
async fn read_facts(tx: &Transaction<'_>, batch: &[Issuance]) -> Result<Facts, StoreError> {
    let campaigns = lock_campaigns(tx, batch).await?;
    Ok(Facts {
        campaigns,
        settled: settled(tx, batch).await?,
        held: held(tx, batch).await?,
    })
}

/// Locks the batch's campaigns (in id order) and returns each one's rules and how many coupons
/// it can still take; a campaign missing from the answer does not exist.
async fn lock_campaigns(
    tx: &Transaction<'_>,
    batch: &[Issuance],
) -> Result<HashMap<Uuid, Campaign>, StoreError> {
    let mut campaigns: Vec<Uuid> = batch.iter().map(|i| i.campaign).collect();
    campaigns.sort_unstable();
    campaigns.dedup();
    let lock = tx
        .prepare_cached(include_str!("../sql/campaigns_lock_by_ids.sql"))
        .await?;
    let mut locked = HashMap::new();
    let mut unannounced: Vec<Uuid> = Vec::new();
    for row in tx.query(&lock, &[&campaigns]).await? {
        let campaign = row.try_get("id")?;
        if !row.try_get::<_, bool>("opened_announced")? {
            unannounced.push(campaign);
        }
        let closed_at: Option<time::OffsetDateTime> = row.try_get("closed_at")?;
        locked.insert(
            campaign,
            Campaign {
                capacity: row.try_get::<_, i32>("capacity")?.into(),
                per_user_limit: row.try_get("per_user_limit")?,
                starts_ms: unix_ms(row.try_get("starts_at")?),
                ends_ms: unix_ms(row.try_get("ends_at")?),
                closed_ms: closed_at.map(unix_ms),
            },
        );
    }
    if !unannounced.is_empty() {
        // An admission proves the campaign opened: its `opened` event is queued before the
        // `sold-out` this batch may queue, even when the relay's announcer has not run yet.
        let announce = tx
            .prepare_cached(include_str!("../sql/campaigns_announce_opened.sql"))
            .await?;
        tx.execute(&announce, &[&Some(unannounced)]).await?;
    }
    Ok(locked)
}

/// The batch's issuance ids the ledger already settled, as a coupon or a rejection.
async fn settled(tx: &Transaction<'_>, batch: &[Issuance]) -> Result<HashSet<Uuid>, StoreError> {
    let ids: Vec<Uuid> = batch.iter().map(|i| i.id).collect();
    let settled = tx
        .prepare_cached(include_str!("../sql/issuances_select_settled_by_ids.sql"))
        .await?;
    let rows = tx.query(&settled, &[&ids]).await?;
    Ok(rows
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// The seqs at which each (campaign, user) of the batch already holds a coupon.
async fn held(
    tx: &Transaction<'_>,
    batch: &[Issuance],
) -> Result<HashMap<(Uuid, String), HashSet<i32>>, StoreError> {
    let statement = tx
        .prepare_cached(include_str!("../sql/coupons_select_held_by_users.sql"))
        .await?;
    let columns = Columns::of(batch.iter());
    let mut held: HashMap<(Uuid, String), HashSet<i32>> = HashMap::new();
    for row in tx
        .query(&statement, &[&columns.campaign, &columns.user])
        .await?
    {
        held.entry((row.try_get(0)?, row.try_get(1)?))
            .or_default()
            .insert(row.try_get(2)?);
    }
    Ok(held)
}

/// Inserts the planned coupons (with their counter moves and outbox rows, one statement).
/// Returns how many rows went in: all of them, or the batch fails.
async fn insert_coupons(tx: &Transaction<'_>, insert: &[&Issuance]) -> Result<u64, StoreError> {
    if insert.is_empty() {
        return Ok(0);
    }
    let statement = tx
        .prepare_cached(include_str!("../sql/coupons_insert_batch.sql"))
        .await?;
    let c = Columns::of(insert.iter().copied());
    let row = tx
        .query_one(
            &statement,
            &[
                &c.id,
                &c.campaign,
                &c.user,
                &c.seq,
                &c.requested_at,
                &c.traceparent,
            ],
        )
        .await?;
    let written = row.try_get::<_, i64>(0)? as u64;
    all_written("coupons", insert.len(), written)?;
    Ok(written)
}

/// Every planned row was written, or the batch fails and rolls back: a row the database skipped
/// (`ON CONFLICT DO NOTHING` on a conflict the plan did not foresee) would otherwise be an
/// issuance that is neither a coupon nor a rejection while its offset moves on.
fn all_written(rows: &'static str, planned: usize, written: u64) -> Result<(), StoreError> {
    let planned = planned as u64;
    if planned == written {
        Ok(())
    } else {
        Err(StoreError::Unplanned {
            rows,
            planned,
            written,
        })
    }
}

/// Records the refused admissions. Returns their count by reason.
async fn insert_rejections(
    tx: &Transaction<'_>,
    reject: &[(&Issuance, Rejection)],
) -> Result<Vec<(&'static str, u64)>, StoreError> {
    if reject.is_empty() {
        return Ok(Vec::new());
    }
    let statement = tx
        .prepare_cached(include_str!("../sql/issuance_rejections_insert_batch.sql"))
        .await?;
    let c = Columns::of(reject.iter().map(|(i, _)| *i));
    let reasons: Vec<&str> = reject.iter().map(|(_, r)| r.as_str()).collect();
    let written = tx
        .execute(&statement, &[&c.id, &c.campaign, &c.user, &c.seq, &reasons])
        .await?;
    all_written("rejections", reject.len(), written)?;
    let mut by_reason: HashMap<&'static str, u64> = HashMap::new();
    for (_, rejection) in reject {
        *by_reason.entry(rejection.as_str()).or_default() += 1;
    }
    tracing::warn!(?by_reason, "the ledger refused admissions the gate granted");
    Ok(by_reason.into_iter().collect())
}

/// A batch as parallel arrays, the shape UNNEST takes.
struct Columns<'a> {
    id: Vec<Uuid>,
    campaign: Vec<Uuid>,
    user: Vec<&'a str>,
    seq: Vec<i32>,
    requested_at: Vec<time::OffsetDateTime>,
    traceparent: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    fn of(issuances: impl Iterator<Item = &'a Issuance>) -> Self {
        let mut c = Columns {
            id: Vec::new(),
            campaign: Vec::new(),
            user: Vec::new(),
            seq: Vec::new(),
            requested_at: Vec::new(),
            traceparent: Vec::new(),
        };
        for i in issuances {
            c.id.push(i.id);
            c.campaign.push(i.campaign);
            c.user.push(&i.user);
            c.seq.push(i.seq);
            c.requested_at.push(i.requested_at);
            c.traceparent.push(i.traceparent.as_deref());
        }
        c
    }
}
