//! The consumer's Prometheus metrics: lag, batches and their transactions, what the ledger
//! wrote or refused, dead letters, and the effects (outbox, webhooks).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rdkafka::statistics::Statistics;
use service::metrics::{Process, latency_histogram, size_histogram};

use crate::persist::plan::Rejection;
use crate::persist::store::Written;

type Label = (&'static str, String);
type Histograms = Family<[(&'static str, &'static str); 1], Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub process: Process,
    lag: Family<[Label; 1], Gauge>,
    pub batch_size: Histogram,
    pub commit_duration: Histogram,
    postgres_duration: Histograms,
    issued: Counter,
    rejected: Family<[(&'static str, &'static str); 1], Counter>,
    redelivered: Counter,
    pub dead_letters: Counter,
    events_refused: Family<[(&'static str, &'static str); 1], Counter>,
    pub outbox_published: Counter,
    pub outbox_backlog: Gauge,
    pub webhook_refused: Counter,
    notifications: Family<[(&'static str, &'static str); 1], Counter>,
    outbox_purged: Family<[(&'static str, &'static str); 1], Counter>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::default(),
            process: Process::default(),
            lag: Family::default(),
            batch_size: size_histogram(),
            commit_duration: latency_histogram(),
            postgres_duration: Family::new_with_constructor(latency_histogram),
            issued: Counter::default(),
            rejected: Family::default(),
            redelivered: Counter::default(),
            dead_letters: Counter::default(),
            events_refused: Family::default(),
            outbox_published: Counter::default(),
            outbox_backlog: Gauge::default(),
            webhook_refused: Counter::default(),
            notifications: Family::default(),
            outbox_purged: Family::default(),
        };
        let mut registry = Registry::default();
        metrics.process.register(&mut registry);
        metrics.register_persisting(&mut registry);
        metrics.register_effects(&mut registry);
        metrics.registry = registry;
        metrics
    }

    /// The group's lag, the batches and what the ledger made of them.
    fn register_persisting(&self, registry: &mut Registry) {
        registry.register(
            "coupon_consumer_lag_messages",
            "Events not yet consumed, per assigned partition (librdkafka statistics)",
            self.lag.clone(),
        );
        registry.register(
            "coupon_consumer_batch_size",
            "Events per ledger transaction",
            self.batch_size.clone(),
        );
        registry.register(
            "coupon_consumer_commit_duration_seconds",
            "Time of one batch's PostgreSQL transaction, commit included",
            self.commit_duration.clone(),
        );
        registry.register(
            "coupon_postgres_duration_seconds",
            "Time per phase of a batch transaction: read (locks, lookups), write, commit",
            self.postgres_duration.clone(),
        );
        registry.register(
            "coupon_coupons_issued",
            "Coupons written to the ledger",
            self.issued.clone(),
        );
        registry.register(
            "coupon_issuances_rejected",
            "Admissions the ledger refused after the ingress answered 202, by reason",
            self.rejected.clone(),
        );
        registry.register(
            "coupon_consumer_redelivered",
            "Events of issuances the ledger had already settled (redeliveries)",
            self.redelivered.clone(),
        );
        registry.register(
            "coupon_dead_letters",
            "Records sent to the dead-letter topic",
            self.dead_letters.clone(),
        );
        registry.register(
            "coupon_events_refused",
            "Requested-issuance records dead-lettered because their signature did not verify, by reason: missing, malformed, unknown-key, mismatch",
            self.events_refused.clone(),
        );
        // Present from the start, so an alert on its increase has a series to compare against.
        for reason in Rejection::ALL {
            let _ = self.rejected.get_or_create(&[("reason", reason.as_str())]);
        }
        for reason in service::event_keys::Refusal::LABELS {
            let _ = self.events_refused.get_or_create(&[("reason", reason)]);
        }
    }

    /// The outbox relay and the webhook notifier.
    fn register_effects(&self, registry: &mut Registry) {
        registry.register(
            "coupon_outbox_published",
            "Outbox events the relay published (coupon.issued)",
            self.outbox_published.clone(),
        );
        registry.register(
            "coupon_outbox_backlog",
            "Outbox rows not yet published",
            self.outbox_backlog.clone(),
        );
        registry.register(
            "coupon_notifications",
            "Webhook delivery attempts by result: delivered, retried, dead",
            self.notifications.clone(),
        );
        registry.register(
            "coupon_webhook_refused",
            "Webhook connections refused: the receiver resolved only to non-public addresses (loopback, private, link-local, metadata) outside WEBHOOK_ALLOWED_NETWORKS",
            self.webhook_refused.clone(),
        );
        for result in Delivery::ALL {
            let _ = self
                .notifications
                .get_or_create(&[("result", result.label())]);
        }
        registry.register(
            "coupon_outbox_purged_rows",
            "Rows deleted past OUTBOX_RETENTION_SECS, by table: outbox (published coupon.issued rows), notifications (delivered)",
            self.outbox_purged.clone(),
        );
        for table in crate::effects::purge::Table::ALL {
            let _ = self
                .outbox_purged
                .get_or_create(&[("table", table.label())]);
        }
    }

    /// Counts rows the retention purge deleted from `table`.
    pub fn purged(&self, table: &'static str, rows: u64) {
        self.outbox_purged
            .get_or_create(&[("table", table)])
            .inc_by(rows);
    }

    /// Counts a record refused for its signature.
    pub fn refused(&self, refusal: &service::event_keys::Refusal) {
        self.events_refused
            .get_or_create(&[("reason", refusal.label())])
            .inc();
    }

    /// Counts one webhook delivery attempt.
    pub fn notification(&self, result: Delivery) {
        self.notifications
            .get_or_create(&[("result", result.label())])
            .inc();
    }

    pub fn written(&self, written: &Written) {
        self.issued.inc_by(written.inserted);
        self.redelivered.inc_by(written.redelivered);
        for (phase, took) in &written.phases {
            self.postgres_duration
                .get_or_create(&[("op", *phase)])
                .observe(took.as_secs_f64());
        }
        for (reason, count) in &written.rejections {
            self.rejected
                .get_or_create(&[("reason", *reason)])
                .inc_by(*count);
        }
    }

    pub fn render(&self) -> String {
        self.process.refresh();
        service::metrics::render(&self.registry)
    }

    /// The lag of each assigned partition, as the latest statistics report has it.
    pub(crate) fn record_lag(&self, statistics: &Statistics) {
        self.lag.clear();
        for topic in statistics.topics.values() {
            for (id, partition) in &topic.partitions {
                // librdkafka reports the internal unassigned partition as -1, and -1 lag when
                // it is unknown.
                if *id < 0 || partition.consumer_lag < 0 {
                    continue;
                }
                self.lag
                    .get_or_create(&[("partition", id.to_string())])
                    .set(partition.consumer_lag);
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The result of one webhook delivery attempt: the `result` label of `coupon_notifications`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver answered 2xx.
    Delivered,
    /// It failed; another attempt is scheduled.
    Retried,
    /// It failed and was the last attempt: the notification is dead.
    Dead,
}

impl Delivery {
    pub const ALL: [Delivery; 3] = [Delivery::Delivered, Delivery::Retried, Delivery::Dead];

    pub fn label(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Retried => "retried",
            Delivery::Dead => "dead",
        }
    }
}
