//! `couponctl dead-letters`: what the pipeline set aside, with the reason, and how to retry it.
//! - Webhook notifications that ran out of attempts (`list`, `show`, `replay`): replayed ones
//!   become pending with a fresh attempt budget; the reason stays until a delivery succeeds.
//! - Records of the dead-letter topic the consumer could not decode (`records`): listed with their
//!   `dlq-reason`, and with `--replay` produced again to their source topic, unchanged, once the
//!   cause is fixed (the consumer de-duplicates on the issuance id).

use anyhow::{Context, bail};
use tokio_postgres::Client;
use uuid::Uuid;

#[derive(Debug, clap::Args)]
// The ledger's settings (its only own arguments) are accepted before or after the action:
// `dead-letters --database-url URL list` and `dead-letters list --database-url URL`.
#[command(mut_args(|arg| arg.global(true)))]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    postgres: service::PostgresArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Dead notifications, oldest first: delivery id, attempts, last error.
    List {
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// One notification in full, dead or not.
    Show { delivery_id: Uuid },
    /// Makes dead notifications pending again: the ones named, or every one with `--all`.
    Replay {
        delivery_ids: Vec<Uuid>,
        #[arg(long, conflicts_with = "delivery_ids")]
        all: bool,
    },
    /// Records of the dead-letter topic with their reason; `--replay` produces each again to its
    /// source topic.
    Records {
        #[command(flatten)]
        kafka: service::KafkaArgs,
        #[arg(long, env = "TOPIC_ISSUANCE_DEAD_LETTER", default_value = schema::topics::ISSUANCE_DEAD_LETTER)]
        topic: String,
        #[arg(long)]
        replay: bool,
    },
}

pub async fn run(args: Args, profile: service::Profile) -> anyhow::Result<()> {
    let postgres = args.postgres.clone().in_profile(profile);
    let db = || async {
        postgres
            .connect()
            .await
            .context("connecting to DATABASE_URL")
    };
    match &args.action {
        Action::List { limit } => list(&db().await?, *limit).await,
        Action::Show { delivery_id } => show(&db().await?, delivery_id).await,
        Action::Replay { delivery_ids, all } => {
            if delivery_ids.is_empty() && !all {
                bail!("name delivery ids to replay, or pass --all");
            }
            replay(&db().await?, delivery_ids, *all).await
        }
        Action::Records {
            kafka,
            topic,
            replay,
        } => records(kafka, topic, *replay).await,
    }
}

async fn list(db: &Client, limit: i64) -> anyhow::Result<()> {
    let rows = db
        .query(include_str!("sql/notifications_select_dead.sql"), &[&limit])
        .await?;
    println!("delivery_id\tcoupon_id\tattempts\tlast_error\tcreated_at");
    for row in &rows {
        let (delivery, coupon): (Uuid, Uuid) = (row.get(0), row.get(1));
        let (attempts, error, created): (i32, String, String) =
            (row.get(2), row.get(3), row.get(4));
        println!("{delivery}\t{coupon}\t{attempts}\t{error}\t{created}");
    }
    eprintln!("{} dead notification(s)", rows.len());
    Ok(())
}

async fn show(db: &Client, delivery_id: &Uuid) -> anyhow::Result<()> {
    let row = db
        .query_opt(
            include_str!("sql/notifications_select_by_delivery_id.sql"),
            &[delivery_id],
        )
        .await?;
    match row {
        Some(row) => println!("{}", row.get::<_, String>(0)),
        None => bail!("no notification {delivery_id}"),
    }
    Ok(())
}

async fn replay(db: &Client, delivery_ids: &[Uuid], all: bool) -> anyhow::Result<()> {
    let replayed = db
        .execute(
            include_str!("sql/notifications_update_replay.sql"),
            &[&all, &delivery_ids],
        )
        .await?;
    println!("replayed {replayed} notification(s)");
    Ok(())
}

async fn records(kafka: &service::KafkaArgs, topic: &str, replay: bool) -> anyhow::Result<()> {
    let read = {
        let (kafka, topic) = (kafka.clone(), topic.to_owned());
        tokio::task::spawn_blocking(move || {
            service::kafka::read_topic(&kafka, &topic, "couponctl-dead-letters")
        })
        .await??
    };
    println!("offset\treason\tsource\tkey");
    for record in &read {
        let key = record
            .key
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        println!(
            "{}\t{}\t{}\t{key}",
            record.offset,
            record.header("dlq-reason").unwrap_or_default(),
            record.header("dlq-source-topic").as_deref().unwrap_or("?")
        );
    }
    eprintln!("{} dead-lettered record(s)", read.len());
    if replay {
        replay_records(kafka, &read).await?;
    }
    Ok(())
}

/// Produces each dead-lettered record again to its source topic: same key, payload and headers,
/// less the `dlq-` ones.
async fn replay_records(
    kafka: &service::KafkaArgs,
    read: &[service::kafka::Record],
) -> anyhow::Result<()> {
    let producer: rdkafka::producer::FutureProducer =
        kafka.producer("couponctl-dead-letters").create()?;
    let mut replayed = 0;
    for record in read {
        let Some(source) = record.header("dlq-source-topic") else {
            eprintln!(
                "offset {}: no dlq-source-topic header; skipped",
                record.offset
            );
            continue;
        };
        let mut headers = rdkafka::message::OwnedHeaders::new();
        for (name, value) in record
            .headers
            .iter()
            .filter(|(n, _)| !n.starts_with("dlq-"))
        {
            headers = headers.insert(rdkafka::message::Header {
                key: name.as_str(),
                value: Some(value.as_slice()),
            });
        }
        let mut out = rdkafka::producer::FutureRecord::<[u8], [u8]>::to(&source)
            .payload(&record.payload)
            .headers(headers);
        if let Some(key) = &record.key {
            out = out.key(key.as_slice());
        }
        producer
            .send(out, std::time::Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("replaying offset {}", record.offset))?;
        replayed += 1;
    }
    println!("replayed {replayed} record(s)");
    Ok(())
}
