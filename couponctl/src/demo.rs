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
    secret: service::dev_token::DevSecret,
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
    #[command(flatten)]
    kafka: service::KafkaArgs,
    /// The topic of campaign lifecycle events.
    #[arg(long, env = "TOPIC_CAMPAIGN_EVENTS", default_value = schema::topics::CAMPAIGN_EVENTS)]
    topic_campaign_events: String,
}

/// The operator API of the ingress, as the demo's operator.
struct Api {
    http: reqwest::Client,
    base_url: String,
    admin: String,
}

impl Api {
    /// The campaign's operator view: `issued`, `consumer_lag`, `released`, `rejected`, ….
    async fn campaign(&self, id: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self
            .http
            .get(format!("{}/v1/admin/campaigns/{id}", self.base_url))
            .bearer_auth(&self.admin)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

/// One tap: its status and latency, and for a 202 the time from the tap to its `issued`
/// outcome (`None` when the outcome was not `issued` within the deadline).
type Tap = (u16, Duration, Option<Duration>);

/// The burst's answers, by status and latency, and the accepted taps' times to outcome.
struct Burst {
    requests: usize,
    elapsed: Duration,
    accepted: usize,
    duplicate: usize,
    sold_out: usize,
    other: usize,
    /// Sorted, shortest first.
    latencies: Vec<Duration>,
    /// From tap to `issued`, read by the tap's long-poll; sorted, shortest first.
    to_outcome: Vec<Duration>,
}

impl Burst {
    fn of(answers: Vec<Tap>, elapsed: Duration) -> Self {
        let count = |s: u16| answers.iter().filter(|(status, ..)| *status == s).count();
        let (accepted, duplicate, sold_out) = (count(202), count(409), count(410));
        let mut latencies: Vec<Duration> = answers.iter().map(|(_, latency, _)| *latency).collect();
        latencies.sort_unstable();
        let mut to_outcome: Vec<Duration> = answers.iter().filter_map(|(.., o)| *o).collect();
        to_outcome.sort_unstable();
        Burst {
            requests: answers.len(),
            elapsed,
            accepted,
            duplicate,
            sold_out,
            other: answers.len() - accepted - duplicate - sold_out,
            latencies,
            to_outcome,
        }
    }

    /// The `p` quantile of the latencies in milliseconds (0 when nothing was sent).
    fn latency_ms(&self, p: f64) -> f64 {
        quantile_ms(&self.latencies, p)
    }
}

/// The `p` quantile of sorted durations, in milliseconds (0 when empty).
fn quantile_ms(sorted: &[Duration], p: f64) -> f64 {
    let at = (sorted.len().saturating_sub(1) as f64 * p) as usize;
    sorted.get(at).map_or(0.0, |d| d.as_secs_f64() * 1_000.0)
}

/// The ledger once it caught up with the burst (or gave up waiting after a minute).
struct Ledger {
    issued: usize,
    view: serde_json::Value,
    caught_up_after: Duration,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let api = Api {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency)
            .timeout(Duration::from_secs(10))
            .build()?,
        base_url: args.base_url.clone(),
        admin: args.secret.mint("demo-operator", Some("admin"), now)?,
    };
    let id = create_campaign(&api, &args, now).await?;
    println!(
        "campaign {id}: stock {}, {} users, {} repeats",
        args.stock, args.users, args.repeats
    );
    // Tokens are minted before the clock starts so signing is not measured.
    let tokens = burst_tokens(&args, &id, now)?;
    let burst = fire(&api, &id, tokens, args.concurrency).await;
    let ledger = wait_for_ledger(&api, &id, burst.accepted).await?;
    print_burst(&burst, &ledger);
    wait_for_commits(&api, &id, ledger.view).await?;

    let sold_out = ledger.issued >= args.stock as usize;
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
    verdict(&args, &burst, ledger.issued, sold_out, &events)
}

/// A clean drop: exactly the stock (or one per user) accepted and persisted, no other answer,
/// and a sold-out campaign announced both its opening and its selling out.
fn verdict(
    args: &Args,
    burst: &Burst,
    issued: usize,
    sold_out: bool,
    events: &[String],
) -> anyhow::Result<()> {
    let expected = args.stock.min(args.users) as usize;
    if burst.accepted != expected || issued != burst.accepted || burst.other != 0 {
        bail!("expected {expected} accepted and persisted with no errors");
    }
    if burst.to_outcome.len() != burst.accepted {
        bail!(
            "expected every accepted tap's long-poll to read `issued`; {} of {} did",
            burst.to_outcome.len(),
            burst.accepted
        );
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

/// Creates the demo campaign, open from a second ago for an hour; returns its id.
async fn create_campaign(api: &Api, args: &Args, now: i64) -> anyhow::Result<String> {
    let at = |unix: i64| -> anyhow::Result<String> {
        Ok(schema::time::rfc3339(OffsetDateTime::from_unix_timestamp(
            unix,
        )?))
    };
    let campaign: serde_json::Value = api
        .http
        .post(format!("{}/v1/admin/campaigns", api.base_url))
        .bearer_auth(&api.admin)
        .json(&json!({
            "name": "demo drop",
            "total_stock": args.stock,
            "starts_at": at(now - 1)?,
            "ends_at": at(now + 3600)?,
            "discount": {"kind": "percent", "value": 10},
            "coupon_valid_days": 30,
        }))
        .send()
        .await
        .context("creating the demo campaign")?
        .error_for_status()?
        .json()
        .await?;
    Ok(campaign["id"].as_str().context("campaign id")?.to_owned())
}

/// One token per distinct user, then the repeaters' tokens again, spread over the users.
fn burst_tokens(args: &Args, campaign: &str, now: i64) -> anyhow::Result<Vec<String>> {
    let mut tokens = Vec::with_capacity((args.users + args.repeats) as usize);
    for n in 0..args.users {
        tokens.push(
            args.secret
                .mint(&format!("demo-{}-{n}", &campaign[..8]), None, now)?,
        );
    }
    let stride = (args.users / args.repeats.max(1)).max(1);
    for n in 0..args.repeats.min(args.users) {
        tokens.push(tokens[(n * stride) as usize % args.users as usize].clone());
    }
    Ok(tokens)
}

/// Sends one issuance request per token, `concurrency` at a time, as phones do: each 202 is
/// followed by a long-poll on its `Location` until it reads the outcome.
async fn fire(api: &Api, campaign: &str, tokens: Vec<String>, concurrency: usize) -> Burst {
    let url = format!("{}/v1/campaigns/{campaign}/issuances", api.base_url);
    let started = Instant::now();
    let answers: Vec<Tap> = futures_util::stream::iter(tokens)
        .map(|token| {
            let (http, url) = (api.http.clone(), url.clone());
            let base = api.base_url.clone();
            async move {
                let sent = Instant::now();
                let Ok(response) = http.post(&url).bearer_auth(&token).send().await else {
                    return (0, sent.elapsed(), None);
                };
                let (status, latency) = (response.status().as_u16(), sent.elapsed());
                let location = response.headers().get(reqwest::header::LOCATION).cloned();
                let outcome = match location.as_ref().map(|l| l.to_str()) {
                    Some(Ok(location)) if status == 202 => {
                        let poll = format!("{base}{location}");
                        issued_after(&http, &poll, &token, sent).await
                    }
                    _ => None,
                };
                (status, latency, outcome)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    Burst::of(answers, started.elapsed())
}

/// Long-polls an accepted tap's issuance (`Prefer: wait=10`) until it leaves `accepted`, for up
/// to 30 s from the tap: the time from the tap to `issued`, or `None`.
async fn issued_after(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    tapped: Instant,
) -> Option<Duration> {
    while tapped.elapsed() < Duration::from_secs(30) {
        let response = http
            .get(url)
            .bearer_auth(token)
            .header("Prefer", "wait=10")
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .ok()?;
        let waited = response.headers().contains_key("preference-applied");
        let body: serde_json::Value = response.json().await.ok()?;
        match body["status"].as_str() {
            Some("issued") => return Some(tapped.elapsed()),
            Some("accepted") if waited => {}
            // A server that did not wait is not asked again at once.
            Some("accepted") => tokio::time::sleep(Duration::from_millis(200)).await,
            _ => return None,
        }
    }
    None
}

/// Polls the campaign until the ledger holds a coupon per accepted request, for up to a minute.
async fn wait_for_ledger(api: &Api, campaign: &str, accepted: usize) -> anyhow::Result<Ledger> {
    let started = Instant::now();
    loop {
        let view = api.campaign(campaign).await?;
        let issued = view["issued"].as_u64().unwrap_or(0) as usize;
        if issued >= accepted || started.elapsed() > Duration::from_secs(60) {
            let caught_up_after = started.elapsed();
            return Ok(Ledger {
                issued,
                view,
                caught_up_after,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_burst(burst: &Burst, ledger: &Ledger) {
    println!(
        "requests    {} in {:.2} s ({:.0} requests/s)",
        burst.requests,
        burst.elapsed.as_secs_f64(),
        burst.requests as f64 / burst.elapsed.as_secs_f64()
    );
    println!("accepted    {}", burst.accepted);
    println!("duplicate   {}", burst.duplicate);
    println!("sold out    {}", burst.sold_out);
    println!("other       {}", burst.other);
    println!(
        "persisted   {} rows (ledger caught up {:.2} s after the burst)",
        ledger.issued,
        ledger.caught_up_after.as_secs_f64()
    );
    println!(
        "latency     p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        burst.latency_ms(0.50),
        burst.latency_ms(0.99),
        burst.latency_ms(1.0)
    );
    println!(
        "outcome     {} of {} accepted read `issued` by long-poll; tap to issued p50 {:.1} ms, p99 {:.1} ms",
        burst.to_outcome.len(),
        burst.accepted,
        quantile_ms(&burst.to_outcome, 0.50),
        quantile_ms(&burst.to_outcome, 0.99)
    );
}

/// The group commits its offsets every few seconds after the rows are in: waits up to 15 s for
/// the campaign's consumer lag to reach 0, then prints the pipeline's figures.
async fn wait_for_commits(
    api: &Api,
    campaign: &str,
    mut view: serde_json::Value,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while view["consumer_lag"] != 0 && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        view = api.campaign(campaign).await?;
    }
    println!(
        "pipeline    consumer lag {} ({:.1} s later, committed offsets), released {}, rejected {}",
        view["consumer_lag"],
        started.elapsed().as_secs_f64(),
        view["released"],
        view["rejected"]
    );
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
        let (kafka, topic) = (args.kafka.clone(), args.topic_campaign_events.clone());
        let records = tokio::task::spawn_blocking(move || {
            service::kafka::read_topic(&kafka, &topic, "couponctl-demo")
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
