//! `couponctl verify`: the invariant checker an operator runs against a live deployment.
//! Read-only by default. Exits non-zero when any invariant is breached.

use std::time::Duration;

use anyhow::{Context, bail};
use gate::Gate;
use gate::reconcile::{self, CampaignReport};
use rdkafka::consumer::BaseConsumer;
use schema::ids::CampaignId;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this campaign (default: every campaign that ended less than a day ago or later).
    #[arg(long)]
    campaign: Option<String>,
    /// Repair the gate from the ledger: re-seed campaigns Redis lost, and when quiet set the
    /// gate's counters to the ledger's figures.
    #[arg(long)]
    repair: bool,
    #[command(flatten)]
    postgres: service::PostgresArgs,
    #[command(flatten)]
    redis: service::RedisArgs,
    #[command(flatten)]
    kafka: service::KafkaArgs,
    #[arg(long, env = "CONSUMER_GROUP", default_value = "coupon-persister")]
    group_id: String,
    #[arg(long, env = "TOPIC_ISSUANCE_REQUESTED", default_value = schema::topics::ISSUANCE_REQUESTED)]
    topic_requested: String,
}

pub async fn run(args: Args, profile: service::Profile) -> anyhow::Result<()> {
    let db = args
        .postgres
        .clone()
        .in_profile(profile)
        .connect()
        .await
        .context("connecting to DATABASE_URL")?;
    let gate = Gate::connect(
        &gate::Endpoint {
            url: args.redis.url.clone(),
            ca_file: args.redis.ca_file.clone(),
            cluster: args.redis.cluster,
        },
        &args.redis.key_prefix,
        Duration::from_secs(5),
        Duration::from_secs(7),
    )
    .await
    .context("connecting to REDIS_URL")?;
    let lag = consumer_lag(&args).await?;
    println!(
        "consumer group {} lag on {}: {lag}",
        args.group_id, args.topic_requested
    );

    let campaigns: Vec<CampaignId> = match &args.campaign {
        Some(id) => vec![id.parse().context("--campaign")?],
        None => reconcile::live_campaigns(&db).await?,
    };
    let mut breached = 0;
    for id in campaigns {
        let mut report = reconcile::report(&db, &gate, &id).await?;
        if args.repair {
            report = repair(&db, &gate, report, lag).await?;
        }
        let quiet = lag == 0 && report.journal == 0;
        let breaches = if quiet {
            report.quiet_breaches()
        } else {
            report.breaches()
        };
        println!("{report}{}", if quiet { "" } else { " (not quiet)" });
        for breach in &breaches {
            println!("  BREACH {breach}");
        }
        breached += usize::from(!breaches.is_empty());
    }
    if breached > 0 {
        bail!("{breached} campaigns breach an invariant");
    }
    Ok(())
}

async fn repair(
    db: &tokio_postgres::Client,
    gate: &Gate,
    report: CampaignReport,
    lag: i64,
) -> anyhow::Result<CampaignReport> {
    if report.remaining.is_none() {
        if reconcile::reseed_from_ledger(db, gate, &report.id).await? {
            println!("repaired: re-seeded campaign {} from the ledger", report.id);
        }
    } else if lag == 0 && reconcile::repair_counters(gate, &report).await? {
        println!(
            "repaired: gate counters of {} set from the ledger",
            report.id
        );
    }
    Ok(reconcile::report(db, gate, &report.id).await?)
}

/// Records on the topic the consumer group has not committed yet, over all partitions.
async fn consumer_lag(args: &Args) -> anyhow::Result<i64> {
    // A refused certificate or password is named here rather than as a timeout below.
    args.kafka
        .check("couponctl-verify", None, Duration::from_secs(10))
        .await?;
    let reader: BaseConsumer = args
        .kafka
        .reader("couponctl-verify", &args.group_id)
        .create()?;
    let topic = args.topic_requested.clone();
    Ok(tokio::task::spawn_blocking(move || {
        service::kafka::group_lag(&reader, &topic, Duration::from_secs(10))
    })
    .await??)
}
