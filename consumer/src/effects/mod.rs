//! Effects: what follows a committed batch. They read the ledger, not Kafka, each on its own
//! schedule, so none of them ever slows persisting.
//!
//! - [`relay`] publishes the outbox rows the batch transaction queued, at least once.
//! - [`announce`] queues campaign events whose moment passed; the relay runs it.
//! - [`notify`] delivers the webhook notifications the relay queued.
//! - [`purge`] deletes published outbox rows and delivered notifications past their retention,
//!   in small batches that skip whatever the relay or the notifier holds.
//! - [`target`]: where the webhook client may connect (public addresses, or allow-listed ones).
//! - [`coupon`]: an issued coupon read back from a row, as the message and the webhook body say
//!   it (and `couponctl republish` rebuilds its event).
//!
//! A failed round of any of them is an [`Error`], logged and retried; nothing is lost, because
//! the work stays in the ledger until a round commits it done.

pub mod announce;
pub mod coupon;
pub mod error;
pub mod notify;
pub mod purge;
pub mod relay;
pub mod target;

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use error::Error;

use crate::Config;
use crate::metrics::Metrics;
use notify::Notifier;
use purge::Purger;
use relay::Relay;

/// The effects this process runs, each optional.
pub struct Effects {
    /// Absent with `OUTBOX_RELAY=false`.
    relay: Option<Relay>,
    /// Absent without a `WEBHOOK_URL`.
    notifier: Option<Notifier>,
    /// Absent with `OUTBOX_RETENTION_SECS=0`.
    purger: Option<Purger>,
}

impl Effects {
    pub fn build(
        config: &Config,
        pool: deadpool_postgres::Pool,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Effects> {
        let relay = if config.outbox_relay {
            Some(
                Relay::new(config, pool.clone(), metrics.clone())
                    .context("creating the outbox relay's producer")?,
            )
        } else {
            None
        };
        let purger = Purger::new(config, pool.clone(), metrics.clone());
        let notifier =
            Notifier::new(config, pool, metrics).context("creating the webhook client")?;
        Ok(Effects {
            relay,
            notifier,
            purger,
        })
    }

    /// Starts each effect on a task of its own; each ends once `stop` turns true.
    pub fn spawn(self, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let relay = self
            .relay
            .map(|relay| tokio::spawn(relay.run(stop.clone())));
        let notifier = self
            .notifier
            .map(|notifier| tokio::spawn(notifier.run(stop.clone())));
        let purger = self.purger.map(|purger| tokio::spawn(purger.run(stop)));
        [relay, notifier, purger].into_iter().flatten().collect()
    }
}
