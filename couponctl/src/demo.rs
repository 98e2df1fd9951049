//! `couponctl demo`: the main job's burst. Creates a campaign through the operator API, sends
//! one request per distinct user (plus some repeats) with bounded concurrency, waits until the
//! ledger caught up, and prints what happened, down to the campaign's lifecycle events.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::json;
use time::OffsetDateTime;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the ingress listens.
    #[arg(long, env = "INGRESS_URL", default_value = "http://127.0.0.1:8080")]
    base_url: String,
    #[command(flatten)]
    secret: crate::tokens::Secret,
    /// Coupons in the campaign.
    #[arg(long, default_value_t = 1_000)]
    stock: u32,
    /// Distinct users in the burst.
    #[arg(long, default_value_t = 3_000)]
    users: u32,
    /// Users who tap twice (their second request must be a 409 or a 410).
    #[arg(long, default_value_t = 300)]
    repeats: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Kafka, to show the campaign's lifecycle events.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    kafka_brokers: String,
    #[arg(long, env = "TOPIC_CAMPAIGN_EVENTS", default_value = schema::topics::CAMPAIGN_EVENTS)]
    topic_campaign_events: String,
}

struct Answer {
    status: u16,
    latency: Duration,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(10))
        .build()?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let admin = args.secret.mint("demo-operator", true, now)?;
    let campaign: serde_json::Value = http
        .post(format!("{}/v1/admin/campaigns", args.base_url))
        .bearer_auth(&admin)
        .json(&json!({
            "name": "demo drop",
            "total_stock": args.stock,
            "starts_at": rfc3339(now - 1)?,
            "ends_at": rfc3339(now + 3600)?,
            "discount": {"kind": "percent", "value": 10},
            "coupon_valid_days": 30,
        }))
        .send()
        .await
        .context("creating the demo campaign")?
        .error_for_status()?
        .json()
        .await?;
    let id = campaign["id"].as_str().context("campaign id")?.to_owned();
    println!(
        "campaign {id}: stock {}, {} users, {} repeats",
        args.stock, args.users, args.repeats
    );

    // Tokens are minted before the clock starts so signing is not measured.
    let mut tokens = Vec::with_capacity((args.users + args.repeats) as usize);
    for n in 0..args.users {
        tokens.push(
            args.secret
                .mint(&format!("demo-{}-{n}", &id[..8]), false, now)?,
        );
    }
    for n in 0..args.repeats.min(args.users) {
        tokens.push(
            tokens[(n * (args.users / args.repeats.max(1)).max(1)) as usize % args.users as usize]
                .clone(),
        );
    }
    let url = format!("{}/v1/campaigns/{id}/issuances", args.base_url);
    let started = Instant::now();
    let answers: Vec<Answer> = futures_util::stream::iter(tokens)
        .map(|token| {
            let http = http.clone();
            let url = url.clone();
            async move {
                let sent = Instant::now();
                let status = match http.post(&url).bearer_auth(token).send().await {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 0,
                };
                Answer {
                    status,
                    latency: sent.elapsed(),
                }
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();

    let count = |s: u16| answers.iter().filter(|a| a.status == s).count();
    let (accepted, duplicate, sold_out) = (count(202), count(409), count(410));
    let other = answers.len() - accepted - duplicate - sold_out;
    let mut latencies: Vec<Duration> = answers.iter().map(|a| a.latency).collect();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];

    let drain_started = Instant::now();
    let (issued, view) = loop {
        let view: serde_json::Value = http
            .get(format!("{}/v1/admin/campaigns/{id}", args.base_url))
            .bearer_auth(&admin)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let issued = view["issued"].as_u64().unwrap_or(0) as usize;
        if issued >= accepted || drain_started.elapsed() > Duration::from_secs(60) {
            break (issued, view);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    println!(
        "requests    {} in {:.2} s ({:.0} requests/s)",
        answers.len(),
        elapsed.as_secs_f64(),
        answers.len() as f64 / elapsed.as_secs_f64()
    );
    println!("accepted    {accepted}");
    println!("duplicate   {duplicate}");
    println!("sold out    {sold_out}");
    println!("other       {other}");
    println!(
        "persisted   {issued} rows (ledger caught up {:.2} s after the burst)",
        drain_started.elapsed().as_secs_f64()
    );
    println!(
        "latency     p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(pct(1.0))
    );

    // The group commits its offsets every few seconds after the rows are in: wait for it.
    let mut view = view;
    let committed = Instant::now();
    while view["consumer_lag"] != 0 && committed.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        view = http
            .get(format!("{}/v1/admin/campaigns/{id}", args.base_url))
            .bearer_auth(&admin)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
    }
    println!(
        "pipeline    consumer lag {} ({:.1} s later, committed offsets), released {}, rejected {}",
        view["consumer_lag"],
        committed.elapsed().as_secs_f64(),
        view["released"],
        view["rejected"]
    );
    let sold_out = issued >= args.stock as usize;
    let events = campaign_events(&args, &id, sold_out).await?;
    println!(
        "events      {} on {}",
        if events.is_empty() {
            "none".to_owned()
        } else {
            events.join(", ")
        },
        args.topic_campaign_events
    );

    let expected = args.stock.min(args.users) as usize;
    if accepted != expected || issued != accepted || other != 0 {
        bail!("expected {expected} accepted and persisted with no errors");
    }
    if sold_out
        && !["opened", "sold-out"]
            .iter()
            .all(|k| events.iter().any(|e| e == k))
    {
        bail!("expected the campaign's opened and sold-out events");
    }
    Ok(())
}

/// The kinds of this campaign's lifecycle events on the topic, waiting up to 15 s for
/// `sold-out` when the campaign sold out (the relay publishes it after the last batch).
async fn campaign_events(
    args: &Args,
    campaign: &str,
    sold_out: bool,
) -> anyhow::Result<Vec<String>> {
    use prost::Message as _;
    use schema::proto::campaign_event::Kind;
    let started = Instant::now();
    loop {
        let (brokers, topic) = (
            args.kafka_brokers.clone(),
            args.topic_campaign_events.clone(),
        );
        let records = tokio::task::spawn_blocking(move || {
            service::kafka::read_topic(&brokers, &topic, "couponctl-demo")
        })
        .await??;
        let mut kinds = Vec::new();
        for record in records
            .iter()
            .filter(|r| r.key.as_deref() == Some(campaign.as_bytes()))
        {
            let event = schema::proto::CampaignEvent::decode(record.payload.as_slice())?;
            let kind = match Kind::try_from(event.kind) {
                Ok(Kind::Opened) => "opened",
                Ok(Kind::SoldOut) => "sold-out",
                Ok(Kind::Closed) => "closed",
                _ => "unknown",
            };
            if !kinds.contains(&kind.to_owned()) {
                kinds.push(kind.to_owned());
            }
        }
        let complete = !sold_out || kinds.iter().any(|k| k == "sold-out");
        if complete || started.elapsed() > Duration::from_secs(15) {
            return Ok(kinds);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn rfc3339(unix: i64) -> anyhow::Result<String> {
    Ok(OffsetDateTime::from_unix_timestamp(unix)?
        .format(&time::format_description::well_known::Rfc3339)?)
}
