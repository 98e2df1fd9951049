//! Reading a topic from its start to its current end, for the commands that look at records:
//! `dead-letters records` and the demo's campaign events.

use anyhow::bail;

/// One record with its original contents.
pub struct Record {
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

/// Every record of `topic` up to its current end, read without joining `group`'s assignment
/// (partitions are assigned directly) or committing.
pub fn read_all(brokers: &str, topic: &str, group: &str) -> anyhow::Result<Vec<Record>> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::message::{Headers as _, Message as _};
    let timeout = std::time::Duration::from_secs(10);
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let Some(described) = metadata.topics().first() else {
        bail!("no topic {topic}");
    };
    let mut assignment = rdkafka::TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for partition in described.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, partition.id(), timeout)?;
        if high > low {
            assignment.add_partition_offset(topic, partition.id(), rdkafka::Offset::Offset(low))?;
            ends.insert(partition.id(), high);
        }
    }
    let mut records = Vec::new();
    if ends.is_empty() {
        return Ok(records);
    }
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Past the watermarks, read on until the topic is quiet for a moment: some brokers report a
    // high watermark that trails their last write.
    let mut quiet_since: Option<std::time::Instant> = None;
    while std::time::Instant::now() < deadline {
        if ends.is_empty()
            && quiet_since.is_some_and(|at| at.elapsed() >= std::time::Duration::from_millis(500))
        {
            break;
        }
        let Some(message) = consumer.poll(std::time::Duration::from_millis(100)) else {
            quiet_since.get_or_insert_with(std::time::Instant::now);
            continue;
        };
        quiet_since = None;
        let message = message?;
        let headers: Vec<(String, Vec<u8>)> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        records.push(Record {
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
