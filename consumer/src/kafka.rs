//! The consumer's librdkafka context: statistics become the lag gauges, the first
//! rebalance marks the consumer as a member of its group (what `/readyz` waits for), and the
//! client's errors (a refused certificate or password) are logged and the last one kept for
//! `/readyz` to name.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;

use crate::metrics::Metrics;

pub struct Context {
    /// Where the lag figures of each statistics report go.
    pub metrics: Arc<Metrics>,
    /// Set by the first assignment; the consumer is ready from then on.
    pub joined: AtomicBool,
    /// What librdkafka last reported about the brokers.
    pub errors: service::kafka::BrokerErrors,
}

impl Context {
    pub fn new(metrics: Arc<Metrics>) -> Context {
        Context {
            metrics,
            joined: AtomicBool::new(false),
            errors: Default::default(),
        }
    }
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        self.metrics.record_lag(&statistics);
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.errors.record_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.record(&error, reason);
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.joined.store(true, Ordering::SeqCst);
        }
    }
}
