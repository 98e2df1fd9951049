//! The benchmark's own topic: created when missing, with a short retention (its events are
//! read by nobody).

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
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
