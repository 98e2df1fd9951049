//! The consumer's librdkafka context: statistics become the lag gauges, and the first
//! rebalance marks the consumer as a member of its group (what `/readyz` waits for).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;

use crate::metrics::Metrics;

pub struct Context {
    /// Where the lag figures of each statistics report go.
    pub metrics: Arc<Metrics>,
    /// Set by the first assignment; the consumer is ready from then on.
    pub joined: AtomicBool,
}

impl Context {
    pub fn new(metrics: Arc<Metrics>) -> Context {
        Context {
            metrics,
            joined: AtomicBool::new(false),
        }
    }
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        self.metrics.record_lag(&statistics);
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.joined.store(true, Ordering::SeqCst);
        }
    }
}
