//! The consumer's Prometheus metrics and the librdkafka context that feeds the lag figures and
//! the readiness of the group membership.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use service::metrics::{Process, latency_histogram, size_histogram};

use crate::store::Written;

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
    pub outbox_published: Counter,
    pub outbox_backlog: Gauge,
    notifications: Family<[(&'static str, &'static str); 1], Counter>,
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
            outbox_published: Counter::default(),
            outbox_backlog: Gauge::default(),
            notifications: Family::default(),
        };
        let registry = &mut metrics.registry;
        metrics.process.register(registry);
        registry.register(
            "coupon_consumer_lag_messages",
            "Events not yet consumed, per assigned partition (librdkafka statistics)",
            metrics.lag.clone(),
        );
        registry.register(
            "coupon_consumer_batch_size",
            "Events per ledger transaction",
            metrics.batch_size.clone(),
        );
        registry.register(
            "coupon_consumer_commit_duration_seconds",
            "Time of one batch's PostgreSQL transaction, commit included",
            metrics.commit_duration.clone(),
        );
        registry.register(
            "coupon_postgres_duration_seconds",
            "Time per phase of a batch transaction: read (locks, lookups), write, commit",
            metrics.postgres_duration.clone(),
        );
        registry.register(
            "coupon_coupons_issued",
            "Coupons written to the ledger",
            metrics.issued.clone(),
        );
        registry.register(
            "coupon_issuances_rejected",
            "Admissions the ledger refused after the ingress answered 202, by reason",
            metrics.rejected.clone(),
        );
        registry.register(
            "coupon_consumer_redelivered",
            "Events of issuances the ledger had already settled (redeliveries)",
            metrics.redelivered.clone(),
        );
        registry.register(
            "coupon_dead_letters",
            "Records sent to the dead-letter topic",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "coupon_outbox_published",
            "Outbox events the relay published (coupon.issued)",
            metrics.outbox_published.clone(),
        );
        registry.register(
            "coupon_outbox_backlog",
            "Outbox rows not yet published",
            metrics.outbox_backlog.clone(),
        );
        registry.register(
            "coupon_notifications",
            "Webhook delivery attempts by result: delivered, retried, dead",
            metrics.notifications.clone(),
        );
        for result in ["delivered", "retried", "dead"] {
            let _ = metrics.notifications.get_or_create(&[("result", result)]);
        }
        // Present from the start, so an alert on its increase has a series to compare against.
        for reason in ["stock-exhausted", "per-user-limit", "unknown-campaign"] {
            let _ = metrics.rejected.get_or_create(&[("reason", reason)]);
        }
        metrics
    }

    pub fn notifications(&self, result: &'static str) {
        self.notifications
            .get_or_create(&[("result", result)])
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

    fn record_lag(&self, statistics: &Statistics) {
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

/// The consumer's librdkafka context: statistics become the lag gauges, and the first
/// rebalance marks the consumer as a member of its group.
pub struct Context {
    pub metrics: Arc<Metrics>,
    pub joined: AtomicBool,
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        self.metrics.record_lag(&statistics);
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Assign(_) = rebalance {
            self.joined.store(true, Ordering::SeqCst);
        }
    }
}
