//! The benchmark's own topics: created when missing with the requested topic's partition count
//! and a short retention, and written with the ingress's producer settings.

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;

/// How long the broker keeps the benchmark's events.
const RETENTION_MS: &str = "3600000";

/// Creates `topic` with `partitions` (one replica) unless it exists.
pub async fn ensure(
    kafka: &service::KafkaArgs,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = kafka
        .client("coupon-bench-admin")
        .create()
        .context("creating the Kafka admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1))
        .set("retention.ms", RETENTION_MS);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&new], &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("creating the topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// The ingress's producer settings, and the requested topic whose shape the benchmark's own
/// topics copy (`ceiling --stage produce`, `tail`).
#[derive(Debug, clap::Args)]
pub struct IngressProducer {
    #[command(flatten)]
    pub kafka: service::KafkaArgs,
    /// The requested-issuance topic, whose partition count the benchmark's topic copies.
    #[arg(long, env = "TOPIC_ISSUANCE_REQUESTED", default_value = schema::topics::ISSUANCE_REQUESTED)]
    topic_requested: String,
    /// The ingress's `message.timeout.ms`.
    #[arg(long, env = "KAFKA_MESSAGE_TIMEOUT_MS", default_value_t = 5_000)]
    kafka_message_timeout_ms: u64,
    /// The ingress's `linger.ms`.
    #[arg(long, env = "KAFKA_LINGER_MS", default_value_t = 2)]
    kafka_linger_ms: u64,
}

impl IngressProducer {
    /// `topic` created when missing with the requested topic's partition count (returned), and
    /// a producer with the ingress's settings: the shared client builder (idempotent,
    /// acks=all), its `message.timeout.ms` and `linger.ms`, and a queue bound that never
    /// refuses the run.
    pub async fn on(&self, topic: &str, client_id: &str) -> anyhow::Result<(FutureProducer, i32)> {
        let partitions = partitions_of(&self.kafka, &self.topic_requested)?;
        ensure(&self.kafka, topic, partitions).await?;
        let producer = self
            .kafka
            .producer(client_id)
            .set(
                "message.timeout.ms",
                self.kafka_message_timeout_ms.to_string(),
            )
            .set("linger.ms", self.kafka_linger_ms.to_string())
            .set("queue.buffering.max.messages", "200000")
            .create()
            .context("creating the producer")?;
        Ok((producer, partitions))
    }
}

/// The partition count of `topic`.
fn partitions_of(kafka: &service::KafkaArgs, topic: &str) -> anyhow::Result<i32> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let client: BaseConsumer = kafka.client("coupon-bench-topics").create()?;
    let metadata = client.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .filter(|n| *n > 0)
        .with_context(|| format!("the topic {topic} does not exist (couponctl topics)"))?;
    Ok(i32::try_from(partitions)?)
}
