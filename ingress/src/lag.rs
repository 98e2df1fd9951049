//! The consumer group's lag on the requested topic, for the operator view: records the ledger
//! has not yet taken (`service::kafka::group_lag`, the rule `couponctl verify` uses too). Read with a client that never joins the group (no subscription, no commits), at
//! most once per second, one read at a time; readers in between get the last figure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;

const FRESH_FOR: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(2);

pub struct Lag {
    client: Arc<BaseConsumer>,
    /// The same reader, as the gate's recovery reads the log.
    pub log: gate::recovery::GroupLog,
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
    pub fn new(
        kafka: &service::KafkaArgs,
        group: &str,
        topic: &str,
    ) -> Result<Lag, rdkafka::error::KafkaError> {
        let client: BaseConsumer = kafka.reader("coupon-ingress-lag", group).create()?;
        let client = Arc::new(client);
        Ok(Lag {
            log: gate::recovery::GroupLog::new(client.clone(), topic),
            client,
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
            tokio::task::spawn_blocking(move || {
                service::kafka::group_lag(&client, &topic, TIMEOUT)
            }),
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
