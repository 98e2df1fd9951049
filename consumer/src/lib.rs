//! The persisting consumer group of the coupon pipeline.
//!
//! # Layout
//! - [`config`]: every setting, from the environment and the command line.
//! - [`decode`]: a record to a validated [`decode::Issuance`], or the reason it is poison.
//! - [`plan`]: which issuances of a batch the ledger accepts or refuses (pure).
//! - [`store`]: one PostgreSQL transaction per batch (coupons, counters, outbox rows).
//! - [`relay`]: publishes the outbox as `coupon.issued.v1`, at least once, one relay per row.
//! - [`notify`]: signed webhook deliveries with backoff, dead-lettered after the last attempt.
//! - [`dead_letter`]: the dead-letter topic.
//! - [`metrics`]: Prometheus metrics, lag from librdkafka statistics, group membership.
//!
//! Delivery guarantee: at least once into an idempotent ledger, so effectively once. Offsets are
//! stored only after the batch's transaction committed (`enable.auto.offset.store=false`, the
//! periodic auto-commit then commits what was stored); a crash or rebalance before that
//! redelivers the batch, and the ledger recognises every issuance id it already settled.

pub mod config;
pub mod dead_letter;
pub mod decode;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod relay;
pub mod store;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{Headers as _, Message};
use tokio::sync::watch;
use tracing::Instrument as _;

pub use config::Config;

use crate::dead_letter::DeadLetters;
use crate::decode::{Issuance, decode};
use crate::metrics::{Context, Metrics};
use crate::store::{Ledger, Written};

/// A connected consumer, ready to [`Persister::run`].
pub struct Persister {
    config: Config,
    consumer: Arc<StreamConsumer<Context>>,
    dead_letters: DeadLetters,
    relay: Option<relay::Relay>,
    notifier: Option<notify::Notifier>,
    ledger: Ledger,
    metrics: Arc<Metrics>,
    stopping: Arc<AtomicBool>,
}

impl Persister {
    pub fn build(config: Config) -> anyhow::Result<Self> {
        service::tls::install();
        let metrics = Arc::new(Metrics::new());
        let context = Context {
            metrics: metrics.clone(),
            joined: AtomicBool::new(false),
        };
        let consumer: StreamConsumer<Context> = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka_brokers)
            .set("group.id", &config.group_id)
            .set("client.id", "coupon-consumer")
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
        let dead_letters = DeadLetters::new(&config.kafka_brokers, &config.topic_dead_letter)
            .context("creating the dead-letter producer")?;
        let pool = service::pg_pool(&config.database_url, config.database_pool_size)
            .context("DATABASE_URL")?;
        let relay = if config.outbox_relay {
            Some(
                relay::Relay::new(&config, pool.clone(), metrics.clone())
                    .context("creating the outbox relay's producer")?,
            )
        } else {
            None
        };
        let notifier = notify::Notifier::new(&config, pool.clone(), metrics.clone())
            .context("creating the webhook client")?;
        Ok(Persister {
            config,
            consumer: Arc::new(consumer),
            dead_letters,
            relay,
            notifier,
            ledger: Ledger::new(pool),
            metrics,
            stopping: Arc::new(AtomicBool::new(false)),
        })
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
        let relay = self
            .relay
            .take()
            .map(|relay| tokio::spawn(relay.run(stop.clone())));
        let notifier = self
            .notifier
            .take()
            .map(|notifier| tokio::spawn(notifier.run(stop.clone())));
        let stopping = self.stopping.clone();
        let bound = Duration::from_millis(self.config.common.shutdown_timeout_ms);
        tokio::spawn(async move {
            shutdown.await;
            stopping.store(true, Ordering::SeqCst);
            tracing::info!("shutdown: finishing the batch in hand");
            let _ = stop_tx.send(true);
            tokio::time::sleep(bound).await;
            tracing::error!(
                timeout_ms = bound.as_millis() as u64,
                "shutdown did not finish in time; exiting"
            );
            std::process::exit(1);
        });
        let wait = Duration::from_millis(self.config.batch_wait_ms);
        let topic = self.config.topic_requested.clone();
        loop {
            let Some(batch) = self.next_batch(wait, stop.clone()).await else {
                break;
            };
            let span = tracing::info_span!(
                "consumer.batch",
                otel.kind = "consumer",
                size = batch.issuances.len(),
                trace_id = tracing::field::Empty,
            );
            let mut traces = batch.traces.iter();
            if let Some(first) = traces.next() {
                service::tracing_context::set_parent(
                    &span,
                    first.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
                );
            }
            for other in traces {
                service::tracing_context::add_link(
                    &span,
                    other.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
                );
            }
            if let Some(trace_id) = service::tracing_context::trace_id(&span) {
                span.record("trace_id", trace_id);
            }
            if !self
                .persist(&batch.issuances, stop.clone())
                .instrument(span)
                .await
            {
                // Shutdown while the database was failing: nothing is stored, so the batch is
                // redelivered to whoever owns the partitions next.
                break;
            }
            for (partition, offset) in batch.last_offsets {
                if let Err(e) = self.consumer.store_offset(&topic, partition, offset) {
                    // The partition was revoked meanwhile; its new owner re-reads and the
                    // ledger de-duplicates.
                    tracing::debug!(error = %e, partition, "offset not stored");
                }
            }
        }
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            // Nothing stored since the last commit: nothing to do.
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => {}
            Err(e) => tracing::warn!(error = %e, "final offset commit failed"),
        }
        self.consumer.unsubscribe();
        for task in [relay, notifier].into_iter().flatten() {
            let _ = task.await;
        }
        Ok(())
    }

    /// Waits for the first record, then gathers more for at most `wait` or a full batch.
    /// Poison records go to the dead-letter topic here. `None` when shutdown began.
    async fn next_batch(&self, wait: Duration, mut stop: watch::Receiver<bool>) -> Option<Batch> {
        let mut batch = Batch::default();
        let deadline = loop {
            tokio::select! {
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        self.take(&mut batch, &message).await;
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
                Ok(Ok(message)) => self.take(&mut batch, &message).await,
                Ok(Err(e)) => tracing::warn!(error = %e, "kafka receive failed"),
                Err(_elapsed) => break,
            }
        }
        Some(batch)
    }

    async fn take(&self, batch: &mut Batch, message: &impl Message) {
        match decode(message.payload()) {
            Ok(mut issuance) => {
                issuance.traceparent = message
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "traceparent"))
                    .and_then(|h| h.value)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .map(str::to_owned);
                batch.issuances.push(issuance)
            }
            Err(poison) => {
                tracing::warn!(reason = %poison, partition = message.partition(), offset = message.offset(), "dead-lettering a record");
                self.dead_letters.send(message, &poison.to_string()).await;
                self.metrics.dead_letters.inc();
            }
        }
        batch
            .last_offsets
            .insert(message.partition(), message.offset());
        if batch.traces.len() < TRACE_LINKS
            && let Some(headers) = message.headers()
        {
            let trace: Vec<(String, Vec<u8>)> = headers
                .iter()
                .filter(|h| h.key == "traceparent" || h.key == "tracestate")
                .filter_map(|h| Some((h.key.to_owned(), h.value?.to_vec())))
                .collect();
            if !trace.is_empty() {
                batch.traces.push(trace);
            }
        }
    }

    /// Writes the batch, retrying with backoff while the database fails. The offsets do not
    /// move meanwhile. Returns false only when shutdown interrupted the retries.
    async fn persist(&self, issuances: &[Issuance], mut stop: watch::Receiver<bool>) -> bool {
        let mut backoff = Duration::from_millis(50);
        if !issuances.is_empty() {
            self.metrics.batch_size.observe(issuances.len() as f64);
        }
        loop {
            let started = std::time::Instant::now();
            let write = self
                .ledger
                .write(issuances)
                .instrument(tracing::info_span!("postgres.write_batch"));
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
                        () = tokio::time::sleep(backoff) => {}
                        () = stopped(&mut stop) => return false,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Completes once shutdown began.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens after it sent `true`.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Records gathered for one transaction, and the last offset seen per partition.
#[derive(Default)]
struct Batch {
    issuances: Vec<Issuance>,
    last_offsets: BTreeMap<i32, i64>,
    /// Trace headers of the first records that carry them: the batch span's parent and links.
    traces: Vec<Vec<(String, Vec<u8>)>>,
}

/// Most producer traces one batch span refers to.
const TRACE_LINKS: usize = 64;

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
        if !self.consumer.context().joined.load(Ordering::SeqCst) {
            return Err("not yet a member of the consumer group".to_owned());
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
