//! The persisting consumer group of the coupon pipeline, and the effects of what it persists.
//!
//! # Layout
//! - [`config`]: every setting, from the environment and the command line.
//! - [`persist`]: from the requested topic to the ledger.
//!   - [`persist::batch`]: the records of one transaction, their offsets and trace context.
//!   - [`persist::signature`]: the ingress's signature of each record, checked first.
//!   - [`persist::decode`]: a record to a validated [`persist::decode::Issuance`], or the reason
//!     it is poison.
//!   - [`persist::plan`]: which issuances of a batch the ledger accepts or refuses (pure).
//!   - [`persist::store`]: one PostgreSQL transaction per batch (coupons, counters, outbox rows).
//!   - [`persist::dead_letter`]: the Kafka dead-letter topic of poison records.
//! - [`effects`]: what follows a commit, read from the ledger on its own schedule.
//!   - [`effects::relay`]: publishes the outbox as `coupon.issued.v1` and
//!     `coupon.campaign.events.v1`, at least once, one relay per row.
//!   - [`effects::announce`]: queues campaigns' `opened` and `closed` events once due.
//!   - [`effects::notify`]: signed webhook deliveries with backoff, dead after the last attempt.
//!   - [`effects::purge`]: retention, published outbox rows and delivered notifications
//!     deleted in small batches that skip locked rows.
//!   - [`effects::error`]: the one error type of the effects.
//! - [`kafka`]: the librdkafka context: lag from statistics, group membership.
//! - [`metrics`]: Prometheus metrics.
//! - `sql/`: every statement, one file each, named `<table>_<verb>[_by_<key>].sql`.
//!
//! [`notify`] is also reachable from the crate root: its header names and [`notify::signature`]
//! are the webhook contract that receivers (and the end-to-end tests) verify deliveries with.
//!
//! Delivery guarantee: at least once into an idempotent ledger, so effectively once. Offsets are
//! stored only after the batch's transaction committed (`enable.auto.offset.store=false`, the
//! periodic auto-commit then commits what was stored); a crash or rebalance before that
//! redelivers the batch, and the ledger recognises every issuance id it already settled.

pub mod config;
pub mod effects;
#[doc(hidden)]
pub mod fuzzing;
pub mod kafka;
pub mod metrics;
pub mod persist;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::Message;
use service::backoff::Backoff;
use service::event_keys::EventKeys;
use tokio::sync::watch;
use tracing::Instrument as _;

pub use config::Config;
/// The webhook contract: delivery header names and the signature receivers check.
pub use effects::notify;

use crate::effects::Effects;
use crate::kafka::Context;
use crate::metrics::Metrics;
use crate::persist::batch::Batch;
use crate::persist::dead_letter::DeadLetters;
use crate::persist::decode::{Issuance, Poison};
use crate::persist::store::{Ledger, Written};

/// A connected consumer, ready to [`Persister::run`].
pub struct Persister {
    /// Batch size and wait, the topic, the shutdown bound.
    config: Config,
    /// The group member. Shared with the operations probe, which reads readiness and metrics
    /// through its context.
    consumer: Arc<StreamConsumer<Context>>,
    /// Where poison records go; their offsets move only once Kafka has them there.
    dead_letters: DeadLetters,
    /// The keys a record's signature must verify under; read before consuming starts.
    keys: Arc<EventKeys>,
    /// The relay, the notifier and the purge, started beside the batch loop when [`Persister::run`]
    /// begins (and taken from here then).
    effects: Option<Effects>,
    /// The batch transaction.
    ledger: Ledger,
    /// Batch figures; the same metrics the context and the effects record to.
    metrics: Arc<Metrics>,
    /// Set once shutdown began, so `/readyz` fails while the batch in hand finishes.
    stopping: Arc<AtomicBool>,
}

impl Persister {
    pub fn build(config: Config) -> anyhow::Result<Self> {
        service::tls::install();
        let metrics = Arc::new(Metrics::new());
        let consumer = subscribe(&config, Context::new(metrics.clone()))?;
        let dead_letters = DeadLetters::new(&config.kafka, &config.topic_dead_letter)
            .context("creating the dead-letter producer")?;
        // PostgreSQL's default sslmode follows the profile (COUPON_ENV).
        let postgres = config.postgres.clone().in_profile(config.common.profile);
        let pool = postgres
            .pool(config.database_pool_size)
            .context("DATABASE_URL")?;
        let effects = Effects::build(&config, pool.clone(), metrics.clone())?;
        let keys = Arc::new(EventKeys::new(
            postgres,
            Duration::from_millis(config.event_keys.refresh_ms),
        ));
        Ok(Persister {
            config,
            consumer: Arc::new(consumer),
            dead_letters,
            keys,
            effects: Some(effects),
            ledger: Ledger::new(pool),
            metrics,
            stopping: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The metrics this consumer records (what `/metrics` renders).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until the process ends.
    pub fn serve_ops(&self, listener: tokio::net::TcpListener) {
        let probe = Arc::new(Probe {
            consumer: self.consumer.clone(),
            stopping: self.stopping.clone(),
        });
        tokio::spawn(service::ops::serve(listener, probe, std::future::pending()));
    }

    /// Consumes until `shutdown` completes, then finishes the batch in hand, commits the stored
    /// offsets and leaves the group. Past `SHUTDOWN_TIMEOUT_MS` after the signal the process
    /// exits with status 1 (nothing is lost: uncommitted batches are redelivered).
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop) = watch::channel(false);
        let effects = match self.effects.take() {
            Some(effects) => effects.spawn(stop.clone()),
            None => Vec::new(),
        };
        self.on_shutdown(shutdown, stop_tx);
        // No record can be judged before the event keys are read: the group is joined after.
        let keys_read = persist::signature::first_load(&self.keys, &mut stop.clone()).await;
        self.keys.spawn_refresh();
        let wait = Duration::from_millis(self.config.batch_wait_ms);
        while keys_read && let Some(batch) = self.next_batch(wait, stop.clone()).await {
            let span = batch.span(&self.config.topic_requested, &self.config.group_id);
            if !self
                .persist(&batch.issuances, stop.clone())
                .instrument(span)
                .await
            {
                // Shutdown while the database was failing: nothing is stored, so the batch is
                // redelivered to whoever owns the partitions next.
                break;
            }
            self.store_offsets(&batch.last_offsets);
        }
        self.leave_group();
        for task in effects {
            let _ = task.await;
        }
        Ok(())
    }

    /// Once `shutdown` completes: readiness fails, the loops are told to stop, and the process
    /// exits if they have not finished within `SHUTDOWN_TIMEOUT_MS`.
    fn on_shutdown(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        stop: watch::Sender<bool>,
    ) {
        let stopping = self.stopping.clone();
        let bound = Duration::from_millis(self.config.common.shutdown_timeout_ms);
        tokio::spawn(async move {
            shutdown.await;
            stopping.store(true, Ordering::SeqCst);
            tracing::info!("shutdown: finishing the batch in hand");
            let _ = stop.send(true);
            tokio::time::sleep(bound).await;
            tracing::error!(
                timeout_ms = bound.as_millis() as u64,
                "shutdown did not finish in time; exiting"
            );
            std::process::exit(1);
        });
    }

    /// Waits for the first record, then gathers more for at most `wait` or a full batch.
    /// Poison records go to the dead-letter topic here. `None` when shutdown began.
    async fn next_batch(&self, wait: Duration, mut stop: watch::Receiver<bool>) -> Option<Batch> {
        let mut batch = Batch::default();
        let deadline = loop {
            tokio::select! {
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        if !self.take(&mut batch, &message, &mut stop).await {
                            return None;
                        }
                        break tokio::time::Instant::now() + wait;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka receive failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                () = stopped(&mut stop) => return None,
            }
        };
        while batch.issuances.len() < self.config.batch_size {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(message)) => {
                    if !self.take(&mut batch, &message, &mut stop).await {
                        break;
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "kafka receive failed"),
                Err(_elapsed) => break,
            }
        }
        Some(batch)
    }

    /// Adds a record to the batch, or dead-letters it: first its signature, then its content.
    /// False when shutdown began while the signature could not be judged (the keys were
    /// unreadable): the record is left out, and redelivered to whoever reads on.
    async fn take(
        &self,
        batch: &mut Batch,
        message: &impl Message,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let taken = if persist::headers::readable(message) {
            let Some(verdict) = persist::signature::judge(&self.keys, message, stop).await else {
                return false;
            };
            match verdict {
                Ok(_key) => batch.push(message),
                Err(refusal) => {
                    batch.skip(message);
                    self.metrics.refused(&refusal);
                    Err(Poison::Signature(refusal))
                }
            }
        } else {
            batch.skip(message);
            Err(Poison::Headers)
        };
        if let Err(poison) = taken {
            tracing::warn!(reason = %poison, partition = message.partition(), offset = message.offset(), "dead-lettering a record");
            self.dead_letters.send(message, &poison.to_string()).await;
            self.metrics.dead_letters.inc();
        }
        true
    }

    /// Writes the batch, retrying with backoff while the database fails. The offsets do not
    /// move meanwhile. Returns false only when shutdown interrupted the retries.
    async fn persist(&self, issuances: &[Issuance], mut stop: watch::Receiver<bool>) -> bool {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        if !issuances.is_empty() {
            self.metrics.batch_size.observe(issuances.len() as f64);
        }
        loop {
            let started = std::time::Instant::now();
            let write = self.ledger.write(issuances).instrument(tracing::info_span!(
                "postgres.write_batch",
                otel.kind = "client",
                db.system.name = "postgresql"
            ));
            match write.await {
                Ok(written) => {
                    self.metrics
                        .commit_duration
                        .observe(service::metrics::seconds_since(started));
                    self.metrics.written(&written);
                    log_written(&written, issuances.len());
                    return true;
                }
                Err(e) => {
                    if e.is_integrity_violation() {
                        tracing::error!(error = %e, "ledger constraint refused a planned batch");
                    } else {
                        tracing::warn!(error = %e, "writing the batch failed; retrying");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                        () = stopped(&mut stop) => return false,
                    }
                }
            }
        }
    }

    /// Stores the committed batch's offsets, for the next auto-commit.
    fn store_offsets(&self, last_offsets: &BTreeMap<i32, i64>) {
        for (&partition, &offset) in last_offsets {
            if let Err(e) =
                self.consumer
                    .store_offset(&self.config.topic_requested, partition, offset)
            {
                // The partition was revoked meanwhile; its new owner re-reads and the
                // ledger de-duplicates.
                tracing::debug!(error = %e, partition, "offset not stored");
            }
        }
    }

    /// Commits what was stored, synchronously, and leaves the group.
    fn leave_group(&self) {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            // Nothing stored since the last commit: nothing to do.
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => {}
            Err(e) => tracing::warn!(error = %e, "final offset commit failed"),
        }
        self.consumer.unsubscribe();
    }
}

/// The group member: manual offset storing, cooperative rebalancing, statistics for the lag.
fn subscribe(config: &Config, context: Context) -> anyhow::Result<StreamConsumer<Context>> {
    let consumer: StreamConsumer<Context> = config
        .kafka
        .client("coupon-consumer")
        .set("group.id", &config.group_id)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("socket.nagle.disable", "true")
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set(
            "max.poll.interval.ms",
            config.max_poll_interval_ms.to_string(),
        )
        .set(
            "statistics.interval.ms",
            config.statistics_interval_ms.to_string(),
        )
        .create_with_context(context)
        .context("creating the Kafka consumer")?;
    consumer
        .subscribe(&[&config.topic_requested])
        .context("subscribing to TOPIC_ISSUANCE_REQUESTED")?;
    Ok(consumer)
}

/// Completes once shutdown began.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens after it sent `true`.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// What the operations endpoints report about this consumer.
struct Probe {
    consumer: Arc<StreamConsumer<Context>>,
    stopping: Arc<AtomicBool>,
}

impl service::ops::Probe for Probe {
    fn ready(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err("shutting down".to_owned());
        }
        let context = self.consumer.context();
        if !context.joined.load(Ordering::SeqCst) {
            return Err(match context.errors.last() {
                // A refused certificate or password: the group is never joined, say why.
                Some(cause) => format!(
                    "not yet a member of the consumer group; KAFKA_BROKERS last said: {cause}"
                ),
                None => "not yet a member of the consumer group".to_owned(),
            });
        }
        Ok(())
    }

    fn metrics(&self) -> String {
        self.consumer.context().metrics.render()
    }
}

fn log_written(written: &Written, size: usize) {
    tracing::debug!(
        size,
        inserted = written.inserted,
        rejected = written.rejected,
        redelivered = written.redelivered,
        "batch committed"
    );
}
