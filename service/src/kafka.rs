//! Kafka as every binary uses it: building clients ([`KafkaArgs`], with the operator's
//! librdkafka pass-through), a group's lag ([`group_lag`]), the headers every event carries, and
//! reading a topic from its start to its end (operator commands and tests).

mod client;
mod lag;
mod report;

pub use client::{ClientBuilder, GUARDED, KafkaArgs, PROPERTY_PREFIX, Properties};
pub use lag::{behind, committed_past, end_offsets, group_lag};
pub use report::{BrokerErrors, KafkaFailure, Reporter};

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use schema::topics;

/// What an event says about itself (CloudEvents binary mode plus the schema headers).
pub struct Event<'a> {
    /// `ce_id`: stable per event, so a redelivery carries the same.
    pub id: &'a str,
    pub ce_type: &'a str,
    /// `ce_time`, RFC 3339.
    pub time: &'a str,
    /// The protobuf message's full name: the `schema` header, and in `ce_dataschema`.
    pub schema: &'a str,
    /// `ce_subject`: the entity the event is about (the issuance, coupon or campaign id; see
    /// docs/TOPICS.md).
    pub subject: &'a str,
}

/// The headers of an event: the trace context first (`trace`, e.g. `traceparent`), then content
/// type, schema and version (kept for readers of the earlier contract), and the CloudEvents
/// attributes, `ce_dataschema` and `ce_subject` included.
pub fn event_headers<K, V>(
    event: &Event<'_>,
    trace: impl IntoIterator<Item = (K, V)>,
) -> OwnedHeaders
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut headers = OwnedHeaders::new_with_capacity(12);
    for (key, value) in trace {
        headers = headers.insert(Header {
            key: key.as_ref(),
            value: Some(value.as_ref()),
        });
    }
    let dataschema = topics::dataschema(event.schema);
    [
        ("content-type", schema::PROTOBUF_CONTENT_TYPE),
        ("schema", event.schema),
        ("schema-version", topics::SCHEMA_VERSION),
        ("ce_specversion", "1.0"),
        ("ce_id", event.id),
        ("ce_type", event.ce_type),
        ("ce_source", topics::EVENT_SOURCE),
        ("ce_time", event.time),
        ("ce_subject", event.subject),
        ("ce_dataschema", dataschema.as_str()),
    ]
    .into_iter()
    .fold(headers, |headers, (key, value)| {
        headers.insert(Header {
            key,
            value: Some(value),
        })
    })
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// The value of header `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Every record of `topic` from the start of each partition to its end (blocking; at most a
/// minute). Partitions are assigned directly: `group` is never joined and nothing is committed.
/// A failure names the brokers and what they last reported (a refused certificate, say).
pub fn read_topic(
    kafka: &KafkaArgs,
    topic: &str,
    group: &str,
) -> Result<Vec<Record>, KafkaFailure> {
    let consumer: BaseConsumer<Reporter> = kafka
        .reader("coupon-topic-reader", group)
        .create_with_context(Reporter::default())
        .map_err(|error| KafkaFailure::new(&kafka.brokers, error, None))?;
    read_all(&consumer, topic).map_err(|error| kafka.failure(&consumer, error))
}

fn read_all(consumer: &BaseConsumer<Reporter>, topic: &str) -> Result<Vec<Record>, KafkaError> {
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for described in metadata.topics().iter().filter(|t| t.name() == topic) {
        for partition in described.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, partition.id(), timeout)?;
            if high > low {
                assignment.add_partition_offset(topic, partition.id(), Offset::Offset(low))?;
                ends.insert(partition.id(), high);
            }
        }
    }
    let mut records = Vec::new();
    if ends.is_empty() {
        return Ok(records);
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Past the watermarks, read on until the topic is quiet for a moment: the high watermark a
    // broker reports can trail its last acknowledged write.
    let mut quiet_since: Option<Instant> = None;
    while Instant::now() < deadline {
        if ends.is_empty()
            && quiet_since.is_some_and(|at| at.elapsed() >= Duration::from_millis(500))
        {
            break;
        }
        // A poll error (a broker connection lost, say) is retried by the client; keep polling.
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            quiet_since.get_or_insert_with(Instant::now);
            continue;
        };
        quiet_since = None;
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        records.push(Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
        if ends
            .get(&message.partition())
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            ends.remove(&message.partition());
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(headers: &OwnedHeaders) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|h| {
                let value = String::from_utf8(h.value.unwrap_or_default().to_vec()).unwrap();
                (h.key.to_owned(), value)
            })
            .collect()
    }

    #[test]
    fn every_event_names_its_schema_and_subject() {
        let event = Event {
            id: "5b1c0e9a-8a8e-4d43-9f63-0c7b7a1f2d10",
            ce_type: topics::COUPON_ISSUED_TYPE,
            time: "2026-01-02T03:04:05Z",
            schema: topics::COUPON_ISSUED_SCHEMA,
            subject: "5b1c0e9a-8a8e-4d43-9f63-0c7b7a1f2d10",
        };
        let trace = [(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )];
        let got = pairs(&event_headers(&event, trace));
        let want = [
            ("traceparent", trace[0].1),
            ("content-type", "application/x-protobuf"),
            ("schema", "coupon.v1.CouponIssued"),
            ("schema-version", "1"),
            ("ce_specversion", "1.0"),
            ("ce_id", event.id),
            ("ce_type", "coupon.issued.v1"),
            ("ce_source", "/coupon-issuance"),
            ("ce_time", "2026-01-02T03:04:05Z"),
            ("ce_subject", event.subject),
            ("ce_dataschema", "urn:coupon:proto:coupon.v1.CouponIssued"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(got, want);
    }

    #[test]
    fn the_dataschema_follows_the_payload_message() {
        let event = Event {
            id: "e",
            ce_type: topics::CAMPAIGN_OPENED_TYPE,
            time: "t",
            schema: topics::CAMPAIGN_EVENT_SCHEMA,
            subject: "c",
        };
        let got = pairs(&event_headers(&event, std::iter::empty::<(&str, &str)>()));
        let value = |name: &str| got.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(
            value("ce_dataschema"),
            Some("urn:coupon:proto:coupon.v1.CampaignEvent")
        );
        assert_eq!(value("ce_subject"), Some("c"));
        assert_eq!(got.first().map(|(k, _)| k.as_str()), Some("content-type"));
    }
}
