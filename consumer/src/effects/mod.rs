//! Effects: what follows a committed batch. They read the ledger, not Kafka, each on its own
//! schedule, so none of them ever slows persisting.
//!
//! - [`relay`] publishes the outbox rows the batch transaction queued, at least once.
//! - [`announce`] queues campaign events whose moment passed; the relay runs it.
//! - [`notify`] delivers the webhook notifications the relay queued.
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
use relay::Relay;

/// The effects this process runs, each optional.
pub struct Effects {
    /// Absent with `OUTBOX_RELAY=false`.
    relay: Option<Relay>,
    /// Absent without a `WEBHOOK_URL`.
    notifier: Option<Notifier>,
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
        let notifier =
            Notifier::new(config, pool, metrics).context("creating the webhook client")?;
        Ok(Effects { relay, notifier })
    }

    /// Starts each effect on a task of its own; each ends once `stop` turns true.
    pub fn spawn(self, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let relay = self
            .relay
            .map(|relay| tokio::spawn(relay.run(stop.clone())));
        let notifier = self
            .notifier
            .map(|notifier| tokio::spawn(notifier.run(stop)));
        [relay, notifier].into_iter().flatten().collect()
    }
}
