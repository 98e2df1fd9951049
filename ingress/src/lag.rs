//! The consumer group's lag on the requested topic, for the operator view: records the ledger
//! has not yet taken (high watermark minus the group's committed offset, summed over
//! partitions). Read with a client that never joins the group (no subscription, no commits), at
//! most once per second, one read at a time; readers in between get the last figure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const FRESH_FOR: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(2);

pub struct Lag {
    client: Arc<BaseConsumer>,
    topic: String,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When the last read finished, and its figure.
    last: Option<(Instant, Option<i64>)>,
    /// A failure is logged once per streak, not per read.
    failing: bool,
}

impl Lag {
    pub fn new(brokers: &str, group: &str, topic: &str) -> Result<Lag, rdkafka::error::KafkaError> {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("client.id", "coupon-ingress-lag")
            .create()?;
        Ok(Lag {
            client: Arc::new(client),
            topic: topic.to_owned(),
            state: tokio::sync::Mutex::default(),
        })
    }

    /// Records not yet committed by the group, or `None` when Kafka did not answer in time.
    pub async fn total(&self) -> Option<i64> {
        let mut state = self.state.lock().await;
        if let Some((at, value)) = state.last
            && at.elapsed() < FRESH_FOR
        {
            return value;
        }
        let client = self.client.clone();
        let topic = self.topic.clone();
        // Each broker call has its own timeout; the whole read is bounded too, so a slow broker
        // costs the operator view one figure, not the request. A read past the bound finishes
        // on its blocking thread and is dropped.
        let read = tokio::time::timeout(
            TIMEOUT,
            tokio::task::spawn_blocking(move || read(&client, &topic)),
        )
        .await
        .map_err(|_elapsed| "no answer in time".to_owned())
        .and_then(|joined| joined.map_err(|e| e.to_string()))
        .and_then(|read| read.map_err(|e| e.to_string()));
        let value = match read {
            Ok(lag) => {
                state.failing = false;
                Some(lag)
            }
            Err(e) => {
                if !state.failing {
                    tracing::warn!(error = %e, "reading the consumer group's lag failed");
                    state.failing = true;
                }
                None
            }
        };
        state.last = Some((Instant::now(), value));
        value
    }
}

fn read(client: &BaseConsumer, topic: &str) -> Result<i64, rdkafka::error::KafkaError> {
    let metadata = client.fetch_metadata(Some(topic), TIMEOUT)?;
    let mut partitions = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            partitions.add_partition(topic, p.id());
        }
    }
    let committed = client.committed_offsets(partitions, TIMEOUT)?;
    let mut total = 0;
    for element in committed.elements() {
        let (low, high) = client.fetch_watermarks(topic, element.partition(), TIMEOUT)?;
        total += behind(element.offset(), low, high);
    }
    Ok(total)
}

/// Records of one partition the group has still to take: from its committed offset, or from the
/// start of the log when it committed none.
fn behind(committed: Offset, low: i64, high: i64) -> i64 {
    let from = match committed {
        Offset::Offset(at) => at.max(low),
        _ => low,
    };
    (high - from).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_commit_or_the_log_start() {
        assert_eq!(behind(Offset::Offset(7), 0, 10), 3);
        assert_eq!(behind(Offset::Invalid, 2, 10), 8);
        // A commit below a truncated log's start counts from the start.
        assert_eq!(behind(Offset::Offset(1), 4, 10), 6);
        // Watermarks read before the commit can trail it.
        assert_eq!(behind(Offset::Offset(12), 0, 10), 0);
    }
}
