//! A raw Kafka client of one request: produces one record whose key, value, header names and
//! header values are arbitrary bytes. The binding's producer takes header names as `&str`, so
//! it cannot write what any other client can: a header name that is not UTF-8. Tests of
//! records a hostile client could write use this.
//!
//! It speaks just enough of the protocol: a Produce request (version 3, `acks=-1`) carrying
//! one RecordBatch (magic 2) of one record, and the partition's error code from the answer.
//! The broker must lead the partition (the tests' broker is a single one).

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One record as raw bytes: `None` is a null key, value or header value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// (name, value) in order.
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

const PRODUCE: i16 = 0;
const PRODUCE_VERSION: i16 = 3;
const CORRELATION_ID: i32 = 1;
/// A hang detector, far above what a produce takes.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Produces `record` to `partition` of `topic` on the first broker of `brokers` (a comma
/// separated list) and waits for all in-sync replicas; returns the offset the broker gave it.
/// A non-zero error code for the partition is an error naming the code.
pub async fn produce(
    brokers: &str,
    topic: &str,
    partition: i32,
    record: &RawRecord,
) -> io::Result<i64> {
    let broker = brokers.split(',').next().unwrap_or(brokers).trim();
    let timestamp_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let batch = record_batch(
        record,
        i64::try_from(timestamp_ms).map_err(io::Error::other)?,
    );
    let request = produce_request(topic, partition, &batch)?;
    let exchange = async {
        let mut stream = TcpStream::connect(broker).await?;
        stream.write_all(&request).await?;
        let size = stream.read_i32().await?;
        let mut response = vec![0; usize::try_from(size).map_err(io::Error::other)?];
        stream.read_exact(&mut response).await?;
        Ok::<_, io::Error>(response)
    };
    let response = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no produce response"))??;
    partition_result(&response, topic, partition)
}

/// The size-prefixed Produce request: header (v1) and body (v3).
fn produce_request(topic: &str, partition: i32, batch: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    body.extend_from_slice(&PRODUCE.to_be_bytes());
    body.extend_from_slice(&PRODUCE_VERSION.to_be_bytes());
    body.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    put_string(&mut body, "testkit-raw-kafka")?;
    body.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id: null
    body.extend_from_slice(&(-1i16).to_be_bytes()); // acks: all in-sync replicas
    body.extend_from_slice(&10_000i32.to_be_bytes()); // timeout_ms
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    put_string(&mut body, topic)?;
    body.extend_from_slice(&1i32.to_be_bytes()); // one partition
    body.extend_from_slice(&partition.to_be_bytes());
    body.extend_from_slice(&len_i32(batch.len())?.to_be_bytes());
    body.extend_from_slice(batch);
    let mut request = len_i32(body.len())?.to_be_bytes().to_vec();
    request.extend_from_slice(&body);
    Ok(request)
}

/// A RecordBatch (magic 2) of one record at offset delta 0, without compression, producer id
/// or transaction; its CRC-32C covers everything from `attributes` on.
fn record_batch(record: &RawRecord, timestamp_ms: i64) -> Vec<u8> {
    let mut checked = Vec::new();
    checked.extend_from_slice(&0i16.to_be_bytes()); // attributes
    checked.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    checked.extend_from_slice(&timestamp_ms.to_be_bytes()); // base timestamp
    checked.extend_from_slice(&timestamp_ms.to_be_bytes()); // max timestamp
    checked.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    checked.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    checked.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    checked.extend_from_slice(&1i32.to_be_bytes()); // one record
    checked.extend_from_slice(&encode_record(record));
    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset (the broker assigns it)
    // Batch length: what follows it, i.e. leader epoch (4), magic (1), CRC (4), the rest.
    let length = 4 + 1 + 4 + checked.len();
    batch.extend_from_slice(&(length as i32).to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&crc32c(&checked).to_be_bytes());
    batch.extend_from_slice(&checked);
    batch
}

/// One record of a batch: its length as a varint, then attributes, deltas, key, value and
/// headers, lengths as zigzag varints (-1 for null).
fn encode_record(record: &RawRecord) -> Vec<u8> {
    let mut body = vec![0]; // attributes
    put_varint(&mut body, 0); // timestamp delta
    put_varint(&mut body, 0); // offset delta
    put_bytes(&mut body, record.key.as_deref());
    put_bytes(&mut body, record.value.as_deref());
    put_varint(&mut body, record.headers.len() as i64);
    for (name, value) in &record.headers {
        put_bytes(&mut body, Some(name));
        put_bytes(&mut body, value.as_deref());
    }
    let mut out = Vec::new();
    put_varint(&mut out, body.len() as i64);
    out.extend_from_slice(&body);
    out
}

/// The base offset of `partition` of `topic` in a Produce response (v3), or its error code.
fn partition_result(response: &[u8], topic: &str, partition: i32) -> io::Result<i64> {
    let mut r = Reader(response);
    let correlation = r.i32()?;
    if correlation != CORRELATION_ID {
        return Err(invalid(format!("correlation id {correlation}")));
    }
    for _ in 0..r.i32()? {
        let name = r.string()?;
        for _ in 0..r.i32()? {
            let index = r.i32()?;
            let error = r.i16()?;
            let base_offset = r.i64()?;
            let _log_append_time = r.i64()?;
            if name == topic.as_bytes() && index == partition {
                return match error {
                    0 => Ok(base_offset),
                    code => Err(io::Error::other(format!(
                        "producing to {topic} partition {partition}: Kafka error code {code}"
                    ))),
                };
            }
        }
    }
    Err(invalid(format!(
        "no answer for {topic} partition {partition}"
    )))
}

fn invalid(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("produce response: {what}"),
    )
}

/// Reads big-endian fields off the front of a response.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| invalid("cut short".to_owned()))?;
        self.0 = rest;
        Ok(*head)
    }

    fn i16(&mut self) -> io::Result<i16> {
        self.take().map(i16::from_be_bytes)
    }

    fn i32(&mut self) -> io::Result<i32> {
        self.take().map(i32::from_be_bytes)
    }

    fn i64(&mut self) -> io::Result<i64> {
        self.take().map(i64::from_be_bytes)
    }

    fn string(&mut self) -> io::Result<&'a [u8]> {
        let len = usize::try_from(self.i16()?).map_err(|_| invalid("null name".to_owned()))?;
        let (text, rest) = self
            .0
            .split_at_checked(len)
            .ok_or_else(|| invalid("cut short".to_owned()))?;
        self.0 = rest;
        Ok(text)
    }
}

fn len_i32(len: usize) -> io::Result<i32> {
    i32::try_from(len).map_err(|_| io::Error::other("request too large"))
}

/// A protocol string: int16 length, then the bytes.
fn put_string(out: &mut Vec<u8>, text: &str) -> io::Result<()> {
    let len = i16::try_from(text.len()).map_err(|_| io::Error::other("name too long"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Record bytes: zigzag varint length (-1 for null), then the bytes.
fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            put_varint(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
        None => put_varint(out, -1),
    }
}

/// A zigzag varint, as record fields are written.
fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as RecordBatch v2 is checked.
fn crc32c(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &byte| {
        CRC32C[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8)
    })
}

const CRC32C: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut crc = n as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[n] = crc;
        n += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Fixture;

    #[test]
    fn crc32c_matches_the_standard_check_values() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn varints_are_zigzag_encoded() {
        for (value, bytes) in [
            (0, &[0x00][..]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (300, &[0xd8, 0x04]),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "{value}");
        }
    }

    /// A Produce response (v3) with one topic and the given (partition, error code, offset).
    fn response(correlation: i32, topic: &str, partitions: &[(i32, i16, i64)]) -> Vec<u8> {
        let mut out = correlation.to_be_bytes().to_vec();
        out.extend_from_slice(&1i32.to_be_bytes());
        put_string(&mut out, topic).unwrap();
        out.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
        for &(index, error, offset) in partitions {
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(&error.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(&(-1i64).to_be_bytes());
        }
        out.extend_from_slice(&0i32.to_be_bytes()); // throttle time
        out
    }

    #[test]
    fn the_partition_error_code_is_checked() {
        let ok = response(CORRELATION_ID, "t", &[(1, 3, -1), (0, 0, 42)]);
        assert_eq!(partition_result(&ok, "t", 0).unwrap(), 42);
        let refused = partition_result(&ok, "t", 1).unwrap_err();
        assert!(
            refused.to_string().contains("Kafka error code 3"),
            "{refused}"
        );
        assert!(partition_result(&ok, "other", 0).is_err());
        assert!(partition_result(&response(9, "t", &[(0, 0, 1)]), "t", 0).is_err());
        assert!(partition_result(&ok[..ok.len() - 12], "t", 0).is_err());
    }

    /// The encoder proven on the real broker: what it writes, the binding reads back exactly
    /// (null and empty told apart).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_raw_record_reads_back_exactly() {
        let fixture = Fixture::new(1).await;
        let first = RawRecord {
            key: Some(b"campaign:user".to_vec()),
            value: Some(b"\x00\x01 payload \xff".to_vec()),
            headers: vec![
                (b"coupon-signature".to_vec(), Some(b"v1,1,abc".to_vec())),
                (b"empty".to_vec(), Some(Vec::new())),
                (b"null".to_vec(), None),
                ("\u{e9}t\u{e9}".as_bytes().to_vec(), Some(vec![0xff; 200])),
            ],
        };
        let second = RawRecord {
            key: None,
            value: Some(vec![7; 300]),
            headers: Vec::new(),
        };
        let third = RawRecord::default();
        for (offset, record) in [&first, &second, &third].into_iter().enumerate() {
            let produced = produce(&fixture.brokers, &fixture.topic, 0, record).await;
            assert_eq!(produced.unwrap(), offset as i64);
        }
        assert_eq!(read_back(&fixture, 3).await, [first, second, third]);
    }

    /// The first `count` records of partition 0 of the fixture's topic, as the binding reads
    /// them.
    async fn read_back(fixture: &Fixture, count: usize) -> Vec<RawRecord> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::message::{Headers, Message};

        let (brokers, topic) = (fixture.brokers.clone(), fixture.topic.clone());
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .set("group.id", format!("raw-{}", uuid::Uuid::new_v4()))
                .set("enable.auto.commit", "false")
                // The broker keeps a batch as sent: the reader checks its CRC-32C.
                .set("check.crcs", "true")
                .create()
                .unwrap();
            let mut assignment = rdkafka::TopicPartitionList::new();
            assignment
                .add_partition_offset(&topic, 0, rdkafka::Offset::Beginning)
                .unwrap();
            consumer.assign(&assignment).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let mut records = Vec::new();
            while records.len() < count && std::time::Instant::now() < deadline {
                let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else {
                    continue;
                };
                assert_eq!(message.offset(), records.len() as i64);
                let headers = message.headers().map_or_else(Vec::new, |headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.as_bytes().to_vec(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                });
                records.push(RawRecord {
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
            records
        })
        .await
        .unwrap()
    }
}
