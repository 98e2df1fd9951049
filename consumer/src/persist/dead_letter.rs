//! The dead-letter topic: records that can never be persisted, kept with the reason in headers
//! so an operator can inspect and replay them.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use service::backoff::Backoff;

pub struct DeadLetters {
    /// A producer of its own: the relay's is optional (`OUTBOX_RELAY`) and tuned for the outbox.
    producer: FutureProducer,
    /// `TOPIC_ISSUANCE_DEAD_LETTER`.
    topic: String,
}

impl DeadLetters {
    pub fn new(kafka: &service::KafkaArgs, topic: &str) -> Result<Self, KafkaError> {
        let producer = kafka
            .producer("coupon-consumer-dlq")
            .set("message.timeout.ms", "30000")
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
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let headers = headers(record, reason, &partition, &offset);
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
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}

/// The record's own headers, then the reason and where the record came from.
fn headers(record: &impl Message, reason: &str, partition: &str, offset: &str) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    // A record with an unreadable header name goes without its headers (see `headers`).
    if let Some(original) = record
        .headers()
        .filter(|_| super::headers::readable(record))
    {
        for header in original.iter() {
            headers = headers.insert(header);
        }
    }
    headers
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
            value: Some(partition),
        })
        .insert(Header {
            key: "dlq-source-offset",
            value: Some(offset),
        })
}
