//! `coupon-bench ceiling`: the servers the benchmark measures each stage of the ingress against.
//! Same hyper version and connection settings as the ingress; each answers every request 202
//! with a body of the ingress's size, after doing one stage's work and nothing else:
//! - `trivial`: nothing (the HTTP ceiling);
//! - `produce`: one requested-issuance event produced with the ingress's producer settings (the
//!   shared client builder, `message.timeout.ms`, `linger.ms`, the queue bound) through
//!   rdkafka's stock `FutureProducer`, answering after the broker's acknowledgement (the
//!   Kafka-bound ceiling). No signature or CloudEvents headers: those are the ingress's cost;
//! - `reserve`: one call of the gate's reservation script (`EVALSHA reserve.lua`, through the
//!   ingress's [`gate::Gate`]) for a new user of a campaign seeded under a key prefix of its
//!   own (the Redis-bound ceiling).
//!
//! No token is read, no limit applied, nothing measured or traced: what the ingress spends
//! beyond a stage's ceiling is its own cost.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rdkafka::producer::{FutureProducer, FutureRecord};
use schema::ids::{CampaignId, IssuanceId, UserId};
use schema::proto::IssuanceRequested;

/// What each request does before its 202.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// Nothing: the HTTP ceiling.
    Trivial,
    /// One produce with the ingress's producer, answered after the acknowledgement.
    Produce,
    /// One `EVALSHA` of the gate's reservation script.
    Reserve,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18080")]
    listen: std::net::SocketAddr,
    /// The stage each request performs.
    #[arg(long, value_enum, default_value_t = Stage::Trivial)]
    stage: Stage,
    #[command(flatten)]
    producer: crate::topics::IngressProducer,
    /// The topic `produce` writes to: created with the requested-issuance topic's partition
    /// count when missing. Never the requested-issuance topic itself (the consumer would read
    /// the events).
    #[arg(long, default_value = "coupon.bench-ceiling.v1")]
    topic: String,
    #[command(flatten)]
    redis: service::RedisArgs,
    /// The key prefix `reserve` seeds its campaign under (removed by the benchmark afterwards).
    #[arg(long, default_value = "bench-ceiling")]
    gate_prefix: String,
}

const BODY: &str = r#"{"issuance_id":"0190000000007000800000000000000001900000000070008000000000000000","campaign_id":"01900000-0000-7000-8000-000000000000","status":"accepted"}"#;

/// One stage's work per request.
enum Work {
    Trivial,
    Produce {
        producer: FutureProducer,
        topic: String,
        campaign: CampaignId,
    },
    Reserve {
        gate: gate::Gate,
        campaign: CampaignId,
    },
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let work = Arc::new(match args.stage {
        Stage::Trivial => Work::Trivial,
        Stage::Produce => produce_stage(&args).await?,
        Stage::Reserve => reserve_stage(&args).await?,
    });
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("{:?} ceiling on {}", args.stage, listener.local_addr()?);
    let users = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (work, users) = (work.clone(), users.clone());
        tokio::spawn(async move {
            let service = service_fn(move |_request| {
                let (work, users) = (work.clone(), users.clone());
                async move {
                    let n = users.fetch_add(1, Ordering::Relaxed);
                    let status = match work.perform(n).await {
                        Ok(()) => hyper::StatusCode::ACCEPTED,
                        Err(()) => hyper::StatusCode::SERVICE_UNAVAILABLE,
                    };
                    let mut response =
                        hyper::Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
                    *response.status_mut() = status;
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Work {
    /// The stage's work for the `n`th request (a user of its own).
    async fn perform(&self, n: u64) -> Result<(), ()> {
        match self {
            Work::Trivial => Ok(()),
            Work::Produce {
                producer,
                topic,
                campaign,
            } => {
                let issuance = IssuanceId::new(*campaign);
                let event = IssuanceRequested {
                    issuance_id: issuance.to_string(),
                    campaign_id: campaign.to_string(),
                    user_id: format!("ceiling-{n}"),
                    seq: 1,
                    requested_at_ms: schema::time::unix_ms(time::OffsetDateTime::now_utc()),
                };
                let key = schema::topics::record_key(&event.campaign_id, &event.user_id);
                let payload = prost::Message::encode_to_vec(&event);
                let record = FutureRecord::to(topic).key(&key).payload(&payload);
                producer
                    .send(record, rdkafka::util::Timeout::Never)
                    .await
                    .map(|_| ())
                    .map_err(|_| ())
            }
            Work::Reserve { gate, campaign } => {
                let user = UserId::parse(&format!("ceiling-{n}")).map_err(|_| ())?;
                let issuance = IssuanceId::new(*campaign);
                match gate.reserve(campaign, &user, &issuance.reservation).await {
                    Ok(gate::Reservation::Accepted { .. }) => Ok(()),
                    _ => Err(()),
                }
            }
        }
    }
}

/// A producer with the ingress's settings, on the ceiling's own topic.
async fn produce_stage(args: &Args) -> anyhow::Result<Work> {
    let (producer, _partitions) = args
        .producer
        .on(&args.topic, "coupon-bench-ceiling")
        .await?;
    Ok(Work::Produce {
        producer,
        topic: args.topic.clone(),
        campaign: CampaignId(uuid::Uuid::now_v7()),
    })
}

/// A campaign with stock for every request, seeded under the ceiling's own key prefix.
async fn reserve_stage(args: &Args) -> anyhow::Result<Work> {
    let endpoint = gate::Endpoint {
        url: args.redis.url.clone(),
        ca_file: args.redis.ca_file.clone(),
        cluster: args.redis.cluster,
    };
    // Nothing rolls the ceiling's reservations forward: their journal deadline is an hour.
    let gate = gate::Gate::connect(
        &endpoint,
        &args.gate_prefix,
        Duration::from_secs(5),
        Duration::from_secs(3_600),
    )
    .await
    .context("connecting to REDIS_URL")?;
    let now_ms = gate.now_ms().await?;
    gate.secure(&[], now_ms).await?;
    let campaign = CampaignId(uuid::Uuid::now_v7());
    let seed = gate::Seed {
        total_stock: u32::MAX / 2,
        per_user_limit: 1,
        starts_ms: now_ms - 60_000,
        ends_ms: now_ms + 3_600_000,
    };
    gate.seed(&campaign, seed).await?;
    Ok(Work::Reserve { gate, campaign })
}
