//! A consumer group's lag: the one rule for the operator view and `couponctl verify`.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

/// Records of `topic` the group behind `reader` has not committed, summed over partitions
/// (blocking; each broker call bounded by `timeout`). `reader` must carry the group's id and
/// never join it ([`super::KafkaArgs::reader`]).
pub fn group_lag(reader: &BaseConsumer, topic: &str, timeout: Duration) -> KafkaResult<i64> {
    let metadata = reader.fetch_metadata(Some(topic), timeout)?;
    let mut partitions = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            partitions.add_partition(topic, p.id());
        }
    }
    let committed = reader.committed_offsets(partitions, timeout)?;
    let mut total = 0;
    for element in committed.elements() {
        let (low, high) = reader.fetch_watermarks(topic, element.partition(), timeout)?;
        total += behind(element.offset(), low, high);
    }
    Ok(total)
}

/// The end offset (high watermark) of every partition of `topic` now (blocking).
pub fn end_offsets(
    reader: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> KafkaResult<Vec<(i32, i64)>> {
    let metadata = reader.fetch_metadata(Some(topic), timeout)?;
    let mut ends = Vec::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            let (_low, high) = reader.fetch_watermarks(topic, p.id(), timeout)?;
            ends.push((p.id(), high));
        }
    }
    if ends.is_empty() {
        return Err(rdkafka::error::KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    }
    Ok(ends)
}

/// Whether the group behind `reader` has committed, on every partition, at or past the end
/// offsets `ends` read earlier: every record written before them is then taken (blocking).
pub fn committed_past(
    reader: &BaseConsumer,
    topic: &str,
    ends: &[(i32, i64)],
    timeout: Duration,
) -> KafkaResult<bool> {
    let mut partitions = TopicPartitionList::new();
    for (partition, _) in ends {
        partitions.add_partition(topic, *partition);
    }
    let committed = reader.committed_offsets(partitions, timeout)?;
    for (partition, end) in ends {
        let at = committed
            .find_partition(topic, *partition)
            .map(|element| element.offset());
        let (low, _high) = reader.fetch_watermarks(topic, *partition, timeout)?;
        if behind(at.unwrap_or(Offset::Invalid), low, *end) > 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Records of one partition the group has still to take: from its committed offset, or from the
/// start of the log when it committed none or committed below a truncated log's start.
pub fn behind(committed: Offset, low: i64, high: i64) -> i64 {
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
