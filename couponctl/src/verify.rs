//! `couponctl verify`: the invariant checker an operator runs against a live deployment.
//! Read-only by default. Exits non-zero when any invariant is breached.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use gate::Gate;
use gate::reconcile::{self, CampaignReport};
use gate::recovery::{GroupLog, Step};
use rdkafka::consumer::BaseConsumer;
use schema::ids::CampaignId;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this campaign (default: every campaign that ended less than a day ago or later).
    #[arg(long)]
    campaign: Option<String>,
    /// Repair a campaign whose gate disagrees with the ledger once quiet (or that Redis lost, or
    /// that is fenced; with `--campaign`, that one whatever it looks like): fence it and re-seed
    /// it from the caught-up ledger, as the ingress does after a Redis loss. The campaign
    /// admits nobody meanwhile; counters are never written blindly.
    #[arg(long)]
    repair: bool,
    /// How long a repair waits for the consumer group to catch up before it gives up (the
    /// campaign then stays fenced, and the ingress finishes the re-seed).
    #[arg(long, default_value_t = 120)]
    repair_timeout_secs: u64,
    /// The ingress's message timeout plus grace: how long an admitted event can still be on its
    /// way to Kafka (KAFKA_MESSAGE_TIMEOUT_MS + JOURNAL_GRACE_MS of the ingress).
    #[arg(long, env = "JOURNAL_DEADLINE_MS", default_value_t = 7_000)]
    journal_deadline_ms: u64,
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
        Duration::from_millis(args.journal_deadline_ms),
    )
    .await
    .context("connecting to REDIS_URL")?;
    let (lag, log) = consumer_lag(&args).await?;
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
        // A campaign named on the command line is repaired whatever it looks like: the
        // operator asked for it (the re-seed is safe during a drop).
        let needs_repair = args.campaign.is_some()
            || report.remaining.is_none()
            || report.fenced
            || (lag == 0 && report.journal == 0 && !report.quiet_breaches().is_empty());
        if args.repair && needs_repair {
            let timeout = Duration::from_secs(args.repair_timeout_secs);
            report = repair(&db, &gate, &log, report, timeout).await?;
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

/// Fences the campaign and re-seeds it from the caught-up ledger (`gate::recovery`): the one
/// way the gate is ever rebuilt, safe while the ingress runs (one recovery holds the lock).
async fn repair(
    db: &tokio_postgres::Client,
    gate: &Gate,
    log: &GroupLog,
    report: CampaignReport,
    timeout: Duration,
) -> anyhow::Result<CampaignReport> {
    let settings = gate::ledger::settings(db, &report.id)
        .await?
        .with_context(|| format!("the ledger has no campaign {}", report.id))?;
    let Some(fence) = gate.check(&settings, true).await? else {
        bail!("campaign {} could not be fenced", report.id);
    };
    println!(
        "repairing: campaign {} fenced; re-seeding it from the ledger once caught up",
        report.id
    );
    let started = std::time::Instant::now();
    let mut progress = None;
    loop {
        match gate::recovery::step(gate, db, log, &fence, &mut progress).await? {
            Step::Reseeded { generation, .. } => {
                println!(
                    "repaired: campaign {} re-seeded (generation {generation})",
                    report.id
                );
                break;
            }
            Step::Stale => {
                println!(
                    "repaired: campaign {} was re-seeded by another process",
                    report.id
                );
                break;
            }
            step if started.elapsed() > timeout => {
                println!(
                    "not repaired in time ({step:?}): the campaign stays fenced and the ingress finishes it"
                );
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    Ok(reconcile::report(db, gate, &report.id).await?)
}

/// Records on the topic the consumer group has not committed yet, over all partitions, and the
/// log as a repair reads it.
async fn consumer_lag(args: &Args) -> anyhow::Result<(i64, GroupLog)> {
    // A refused certificate or password is named here rather than as a timeout below.
    args.kafka
        .check("couponctl-verify", None, Duration::from_secs(10))
        .await?;
    let reader: Arc<BaseConsumer> = Arc::new(
        args.kafka
            .reader("couponctl-verify", &args.group_id)
            .create()?,
    );
    let log = GroupLog::new(reader.clone(), &args.topic_requested);
    let topic = args.topic_requested.clone();
    let lag = tokio::task::spawn_blocking(move || {
        service::kafka::group_lag(&reader, &topic, Duration::from_secs(10))
    })
    .await??;
    Ok((lag, log))
}
