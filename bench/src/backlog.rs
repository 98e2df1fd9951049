//! `coupon-bench backlog`: produces N requested-issuance events for one campaign straight to Kafka,
//! distinct users, as the ingress would have. The benchmark uses it to build a backlog and time
//! how fast the consumer group drains it into PostgreSQL.
//!
//! The consumer persists only events signed with an event key, so this reads the active key from
//! the ledger (`DATABASE_URL`) and signs each event as the ingress does: it works only for whoever
//! can read the ledger's keys anyway.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use prost::Message;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schema::ids::{CampaignId, IssuanceId};
use schema::proto::IssuanceRequested;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Campaign the events request coupons of.
    #[arg(long)]
    campaign: String,
    /// Events to produce, each for a different user (`backlog-<n>`).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    #[command(flatten)]
    kafka: service::KafkaArgs,
    /// The ledger, where the event keys are read.
    #[command(flatten)]
    postgres: service::PostgresArgs,
    /// The requested-issuance topic the consumer group reads.
    #[arg(long, env = "TOPIC_ISSUANCE_REQUESTED", default_value = schema::topics::ISSUANCE_REQUESTED)]
    topic: String,
}

pub async fn run(args: Args, profile: service::Profile) -> anyhow::Result<()> {
    let campaign: CampaignId = args.campaign.parse().context("--campaign")?;
    let keys = service::event_keys::load(&args.postgres.clone().in_profile(profile))
        .await
        .context("reading the event keys from DATABASE_URL")?;
    anyhow::ensure!(
        keys.signing_key(Instant::now()).is_some(),
        "no active event key in DATABASE_URL (couponctl event-keys list)"
    );
    // A refused certificate or password is named here rather than as message timeouts.
    args.kafka
        .check("coupon-bench-backlog", None, Duration::from_secs(10))
        .await?;
    let producer: FutureProducer = args
        .kafka
        .producer("coupon-bench-backlog")
        .set("linger.ms", "20")
        .create()?;
    let requested_at_ms = schema::time::unix_ms(time::OffsetDateTime::now_utc());
    let started = Instant::now();
    let failures = futures_util::stream::iter(0..args.events)
        .map(|n| {
            let producer = &producer;
            let topic = &args.topic;
            let keys = &keys;
            async move {
                let event = IssuanceRequested {
                    issuance_id: IssuanceId::new(campaign).to_string(),
                    campaign_id: campaign.to_string(),
                    user_id: format!("backlog-{n}"),
                    seq: 1,
                    requested_at_ms,
                };
                let key = schema::topics::record_key(&event.campaign_id, &event.user_id);
                let payload = event.encode_to_vec();
                let Some(signature) = keys.sign(key.as_bytes(), &payload) else {
                    return true;
                };
                let headers = OwnedHeaders::new().insert(Header {
                    key: service::event_keys::HEADER,
                    value: Some(&signature),
                });
                producer
                    .send(
                        FutureRecord::to(topic)
                            .key(&key)
                            .payload(&payload)
                            .headers(headers),
                        Duration::from_secs(30),
                    )
                    .await
                    .is_err()
            }
        })
        .buffer_unordered(20_000)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    println!(
        "{{\"label\":\"backlog produced\",\"events\":{},\"failed\":{failures},\"seconds\":{:.2}}}",
        args.events,
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(failures == 0, "{failures} events were not produced");
    Ok(())
}
