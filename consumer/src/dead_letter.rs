//! The dead-letter topic: records that can never be persisted, kept with the reason in headers
//! so an operator can inspect and replay them.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetters {
    pub fn new(brokers: &str, topic: &str) -> Result<Self, KafkaError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .set("client.id", "coupon-consumer-dlq")
            .create()?;
        Ok(DeadLetters {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Copies `record` to the dead-letter topic with `reason`, retrying until Kafka has it:
    /// the source offset may only move on once the record is safe elsewhere.
    pub async fn send(&self, record: &impl Message, reason: &str) {
        let partition = record.partition().to_string();
        let offset = record.offset().to_string();
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut headers = OwnedHeaders::new();
            if let Some(original) = record.headers() {
                for header in original.iter() {
                    headers = headers.insert(header);
                }
            }
            let headers = headers
                .insert(Header {
                    key: "dlq-reason",
                    value: Some(reason),
                })
                .insert(Header {
                    key: "dlq-source-topic",
                    value: Some(record.topic()),
                })
                .insert(Header {
                    key: "dlq-source-partition",
                    value: Some(&partition),
                })
                .insert(Header {
                    key: "dlq-source-offset",
                    value: Some(&offset),
                });
            let mut out: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).headers(headers);
            if let Some(key) = record.key() {
                out = out.key(key);
            }
            if let Some(payload) = record.payload() {
                out = out.payload(payload);
            }
            match self.producer.send(out, Duration::from_secs(5)).await {
                Ok(_) => return,
                Err((e, _)) => {
                    tracing::error!(error = %e, "dead-lettering failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
