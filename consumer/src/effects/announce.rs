//! The campaign announcer: queues the `campaign.opened` and `campaign.closed` events whose
//! moment passed (`sql/campaigns_announce_*.sql`), for the relay to publish.
//!
//! A campaign's `opened` may also be queued by the batch that persists its first coupon, and
//! `sold-out` by the batch that persists its last; the announcer covers the campaigns no batch
//! touches. Each event has one id per (campaign, kind) and is queued once, under a row lock and
//! a flag, however many pods run.

use uuid::Uuid;

use super::Error;

pub struct Announcer {
    /// Connections to the ledger, shared with the relay that drives the announcer.
    pool: deadpool_postgres::Pool,
}

impl Announcer {
    pub fn new(pool: deadpool_postgres::Pool) -> Announcer {
        Announcer { pool }
    }

    /// Queues the `opened` and `closed` events whose moment passed (opened first).
    pub async fn announce(&self) -> Result<(), Error> {
        let client = self.pool.get().await?;
        let opened = client
            .prepare_cached(include_str!("../sql/campaigns_announce_opened.sql"))
            .await?;
        client.execute(&opened, &[&None::<Vec<Uuid>>]).await?;
        let closed = client
            .prepare_cached(include_str!("../sql/campaigns_announce_closed.sql"))
            .await?;
        client.execute(&closed, &[]).await?;
        Ok(())
    }
}
