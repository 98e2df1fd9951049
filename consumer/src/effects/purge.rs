//! Retention: the outbox and the webhook notifications would otherwise keep a row for every
//! coupon ever issued. Every [`PERIOD`] a round deletes `coupon.issued` outbox rows published
//! longer ago than `OUTBOX_RETENTION_SECS`, and notifications delivered longer ago than that
//! (by `delivered_at`), oldest first, `OUTBOX_PURGE_BATCH` rows per statement, each statement
//! its own short transaction, until a statement finds less than a batch.
//!
//! Rows another transaction holds (a relay's round, a notifier's claim) are skipped under
//! `FOR UPDATE SKIP LOCKED`, never waited on, so the purge never holds up the relay or the
//! notifier, and the purges of several pods take disjoint rows. Kept for good: unpublished
//! rows, campaign events (a few per campaign; the `campaign.sold-out` row is what queues that
//! event once), pending notifications, and dead ones (the operator's, `couponctl dead-letters`).
//!
//! Nothing depends on a purged row. A redelivered issuance is recognised by its coupon, which
//! stays: it inserts no coupon, hence no outbox row and no second `coupon.issued`.
//! `couponctl republish` rebuilds events from the coupons. No foreign key points at either
//! table, and theirs point at coupons and campaigns, which stay: the deletes may run in any
//! order.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Error;
use crate::metrics::Metrics;

/// Time between two rounds.
pub const PERIOD: Duration = Duration::from_secs(60);
/// Breath between two full batches of one round, so a large backlog is deleted as a trickle of
/// short statements rather than one long burst of writes.
const PAUSE: Duration = Duration::from_millis(100);

/// A table the purge deletes from: the `table` label of `coupon_outbox_purged_rows_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Outbox,
    Notifications,
}

impl Table {
    pub const ALL: [Table; 2] = [Table::Outbox, Table::Notifications];

    pub fn label(self) -> &'static str {
        match self {
            Table::Outbox => "outbox",
            Table::Notifications => "notifications",
        }
    }

    fn statement(self) -> &'static str {
        match self {
            Table::Outbox => include_str!("../sql/outbox_delete_published.sql"),
            Table::Notifications => include_str!("../sql/notifications_delete_delivered.sql"),
        }
    }
}

/// Rows one round deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub outbox: u64,
    pub notifications: u64,
}

pub struct Purger {
    /// One connection at a time, held for one statement.
    pool: deadpool_postgres::Pool,
    /// `OUTBOX_RETENTION_SECS`, as the statements take it.
    retention_secs: f64,
    /// `OUTBOX_PURGE_BATCH`.
    batch: i64,
    /// Deleted rows by table.
    metrics: Arc<Metrics>,
}

impl Purger {
    /// `None` with `OUTBOX_RETENTION_SECS=0`: everything is kept.
    pub fn new(
        config: &crate::Config,
        pool: deadpool_postgres::Pool,
        metrics: Arc<Metrics>,
    ) -> Option<Purger> {
        (config.outbox_retention_secs > 0).then(|| {
            let retention = Duration::from_secs(config.outbox_retention_secs);
            Purger::with(pool, retention, config.outbox_purge_batch, metrics)
        })
    }

    /// A purge of rows older than `retention`, `batch` rows per statement.
    pub fn with(
        pool: deadpool_postgres::Pool,
        retention: Duration,
        batch: usize,
        metrics: Arc<Metrics>,
    ) -> Purger {
        Purger {
            pool,
            retention_secs: retention.as_secs_f64(),
            batch: i64::try_from(batch.max(1)).unwrap_or(i64::MAX),
            metrics,
        }
    }

    /// A round at once, then one every [`PERIOD`], until `stop` turns true. A failed round is
    /// logged; the next one takes up what it left.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            match self.purge(&stop).await {
                Ok(purged) if purged.outbox + purged.notifications > 0 => tracing::info!(
                    outbox = purged.outbox,
                    notifications = purged.notifications,
                    "purged rows past OUTBOX_RETENTION_SECS"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging past retention failed; retrying"),
            }
            if paused(&mut stop, PERIOD).await {
                break;
            }
        }
    }

    /// One round: each table, batch after batch, until a statement deletes less than a batch or
    /// `stop` turns true.
    pub async fn purge(&self, stop: &watch::Receiver<bool>) -> Result<Purged, Error> {
        let mut purged = Purged::default();
        let mut stop = stop.clone();
        for table in Table::ALL {
            loop {
                let deleted = self.delete_batch(table).await?;
                match table {
                    Table::Outbox => purged.outbox += deleted,
                    Table::Notifications => purged.notifications += deleted,
                }
                if deleted < self.batch.unsigned_abs() || paused(&mut stop, PAUSE).await {
                    break;
                }
            }
            if *stop.borrow() {
                break;
            }
        }
        Ok(purged)
    }

    /// One statement in a transaction of its own: up to a batch of `table`'s rows past the
    /// retention, those no other transaction holds. Returns how many it deleted.
    pub async fn delete_batch(&self, table: Table) -> Result<u64, Error> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Row locks are skipped, never waited on; a lock on the whole table (a migration's)
        // or a plan gone wrong ends the statement instead of keeping a connection busy.
        tx.batch_execute("SET LOCAL lock_timeout = '2s'; SET LOCAL statement_timeout = '60s'")
            .await?;
        let statement = tx.prepare_cached(table.statement()).await?;
        let deleted = tx
            .execute(&statement, &[&self.retention_secs, &self.batch])
            .await?;
        tx.commit().await?;
        self.metrics.purged(table.label(), deleted);
        Ok(deleted)
    }
}

/// Waits `wait`, or less if `stop` turns true meanwhile; true when it did.
async fn paused(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        _ = stop.wait_for(|stopped| *stopped) => true,
    }
}
