//! Writing one batch to the ledger in one transaction.
//!
//! **Invariant:** every coupon insert happens after `campaigns_lock_by_ids.sql` locked its
//! campaign row, and moves `issued_count` in the same statement; the CHECK on `issued_count`
//! and the UNIQUE (campaign_id, user_id, seq) key refuse an oversell or a duplicate even if the
//! planning above them were wrong.

use std::collections::{HashMap, HashSet};

use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::decode::Issuance;
use crate::plan::{Facts, plan};

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
    pub phases: Vec<(&'static str, std::time::Duration)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
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
            // Pool errors are connection trouble: transient.
            StoreError::Pool(_) => false,
        }
    }
}

pub struct Ledger {
    pool: deadpool_postgres::Pool,
}

impl Ledger {
    pub fn new(pool: deadpool_postgres::Pool) -> Self {
        Ledger { pool }
    }

    /// Persists a batch: coupons for the admissions the ledger accepts, rejection rows for the
    /// ones it refuses, nothing for redeliveries. All or nothing.
    pub async fn write(&self, batch: &[Issuance]) -> Result<Written, StoreError> {
        if batch.is_empty() {
            return Ok(Written::default());
        }
        let mut client = self.pool.get().await?;
        let started = std::time::Instant::now();
        let tx = client.transaction().await?;

        let mut campaigns: Vec<Uuid> = batch.iter().map(|i| i.campaign).collect();
        campaigns.sort_unstable();
        campaigns.dedup();
        let ids: Vec<Uuid> = batch.iter().map(|i| i.id).collect();

        let lock = tx
            .prepare_cached(include_str!("sql/campaigns_lock_by_ids.sql"))
            .await?;
        let mut facts = Facts::default();
        let mut unannounced: Vec<Uuid> = Vec::new();
        for row in tx.query(&lock, &[&campaigns]).await? {
            let campaign = row.try_get(0)?;
            facts
                .capacity
                .insert(campaign, row.try_get::<_, i32>(1)?.into());
            if !row.try_get::<_, bool>(2)? {
                unannounced.push(campaign);
            }
        }
        if !unannounced.is_empty() {
            // An admission proves the campaign opened: its `opened` event is queued before the
            // `sold-out` this batch may queue, even when the relay's announcer has not run yet.
            let announce = tx
                .prepare_cached(include_str!("sql/campaigns_announce_opened.sql"))
                .await?;
            tx.execute(&announce, &[&Some(unannounced)]).await?;
        }
        let settled = tx
            .prepare_cached(include_str!("sql/issuances_select_settled_by_ids.sql"))
            .await?;
        facts.settled = tx
            .query(&settled, &[&ids])
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<HashSet<Uuid>, _>>()?;
        let slots = tx
            .prepare_cached(include_str!("sql/coupons_select_slots.sql"))
            .await?;
        let columns = Columns::of(batch.iter());
        for row in tx
            .query(&slots, &[&columns.campaign, &columns.user, &columns.seq])
            .await?
        {
            facts
                .taken
                .insert((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
        }

        let plan = plan(batch, &facts);
        let read = started.elapsed();
        let mut written = Written {
            redelivered: plan.redelivered as u64,
            ..Written::default()
        };
        if !plan.insert.is_empty() {
            let insert = tx
                .prepare_cached(include_str!("sql/coupons_insert_batch.sql"))
                .await?;
            let c = Columns::of(plan.insert.iter().copied());
            let row = tx
                .query_one(
                    &insert,
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
            written.inserted = row.try_get::<_, i64>(0)? as u64;
        }
        if !plan.reject.is_empty() {
            let reject = tx
                .prepare_cached(include_str!("sql/issuance_rejections_insert_batch.sql"))
                .await?;
            let c = Columns::of(plan.reject.iter().map(|(i, _)| *i));
            let reasons: Vec<&str> = plan.reject.iter().map(|(_, r)| r.as_str()).collect();
            tx.execute(&reject, &[&c.id, &c.campaign, &c.user, &c.seq, &reasons])
                .await?;
            written.rejected = plan.reject.len() as u64;
            let mut by_reason: HashMap<&'static str, u64> = HashMap::new();
            for (_, rejection) in &plan.reject {
                *by_reason.entry(rejection.as_str()).or_default() += 1;
            }
            tracing::warn!(?by_reason, "the ledger refused admissions the gate granted");
            written.rejections = by_reason.into_iter().collect();
        }
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
