//! `coupon-bench tail`: the broker's own delivery latency, the floor under "admission to
//! committed row". Events are produced open-loop at a fixed rate with the ingress's producer
//! settings (the same builder as the `produce` ceiling) and read back by a consumer with the
//! persister's client settings, reading from the end of every partition of a topic of the run's
//! own. Each event carries the instant it was produced; the figure is the time from that instant
//! to the consumer's receipt. No group join (the partitions are assigned), no database: what
//! the pipeline adds on top of this is its own cost.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    producer: crate::topics::IngressProducer,
    /// Events per second.
    #[arg(long, default_value_t = 3_000)]
    rate: u32,
    /// How long events are produced.
    #[arg(long, default_value_t = 20)]
    seconds: u32,
    /// The topic's name; a fresh one per run (created with the requested topic's partition
    /// count), so nothing older is read.
    #[arg(long)]
    topic: String,
    /// A label copied into the JSON result.
    #[arg(long, default_value = "broker tail")]
    label: String,
}

/// One run's figures, printed as one JSON line.
#[derive(Debug, Serialize)]
struct Tail {
    label: String,
    rate: u32,
    produced: u64,
    received: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let (producer, partitions) = args.producer.on(&args.topic, "coupon-bench-tail").await?;
    let consumer = reader(&args, partitions)?;
    // The end offsets are resolved and the fetchers running before the first event.
    let warm_up = tokio::time::Instant::now() + Duration::from_secs(2);
    if let Ok(received) = tokio::time::timeout_at(warm_up, consumer.recv()).await {
        received.context("reading the run's topic before the first event")?;
        anyhow::bail!(
            "the run's topic {} is not new: name a fresh one",
            args.topic
        );
    }
    let produced = u64::from(args.rate) * u64::from(args.seconds);
    let reading = tokio::spawn(async move { read(consumer, produced).await });
    let start = tokio::time::Instant::now();
    for n in 0..produced {
        tokio::time::sleep_until(start + Duration::from_secs_f64(n as f64 / f64::from(args.rate)))
            .await;
        let key = n.to_string();
        let sent = now_micros().to_be_bytes();
        let record = FutureRecord::to(&args.topic).key(&key).payload(&sent[..]);
        if let Err((e, _)) = producer.send_result(record) {
            anyhow::bail!("enqueueing event {n}: {e}");
        }
    }
    let mut latencies = reading.await??;
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * p) as usize)
            .map_or(0.0, |micros| *micros as f64 / 1_000.0)
    };
    let tail = Tail {
        label: args.label,
        rate: args.rate,
        produced,
        received: latencies.len() as u64,
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        p999_ms: pct(0.999),
        max_ms: pct(1.0),
    };
    println!("{}", serde_json::to_string(&tail)?);
    Ok(())
}

/// A consumer with the persister's client settings, assigned the end of every partition.
fn reader(args: &Args, partitions: i32) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = args
        .producer
        .kafka
        .client("coupon-bench-tail")
        .set("group.id", "coupon-bench-tail")
        .set("enable.auto.commit", "false")
        .set("socket.nagle.disable", "true")
        .create()
        .context("creating the Kafka consumer")?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(&args.topic, partition, Offset::End)?;
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// Reads until `expected` events arrived (or 30 s passed without one): each one's delivery
/// latency in µs.
async fn read(consumer: StreamConsumer, expected: u64) -> anyhow::Result<Vec<u64>> {
    let mut latencies = Vec::with_capacity(usize::try_from(expected)?);
    while (latencies.len() as u64) < expected {
        let Ok(received) = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await
        else {
            break;
        };
        let message = received.context("reading the run's topic")?;
        let sent = message
            .payload()
            .and_then(|payload| <[u8; 8]>::try_from(payload).ok())
            .map(u64::from_be_bytes)
            .context("an event of another writer on the run's topic")?;
        latencies.push(now_micros().saturating_sub(sent));
    }
    Ok(latencies)
}

fn now_micros() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
}
