//! `couponctl dead-letters`: what the pipeline set aside, with the reason, and how to retry it.
//! - Webhook notifications that ran out of attempts (`list`, `show`, `replay`): replayed ones
//!   become pending with a fresh attempt budget; the reason stays until a delivery succeeds.
//! - Records of the dead-letter topic the consumer could not decode (`records`): listed with their
//!   `dlq-reason`, and with `--replay` produced again to their source topic, unchanged, once the
//!   cause is fixed (the consumer de-duplicates on the issuance id).

use anyhow::{Context, bail};
use uuid::Uuid;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/coupon",
        global = true
    )]
    database_url: String,
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
        #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
        kafka_brokers: String,
        #[arg(long, env = "TOPIC_ISSUANCE_DEAD_LETTER", default_value = schema::topics::ISSUANCE_DEAD_LETTER)]
        topic: String,
        #[arg(long)]
        replay: bool,
    },
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Action::Records {
        kafka_brokers,
        topic,
        replay,
    } = &args.action
    {
        return records(kafka_brokers, topic, *replay).await;
    }
    let (client, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls)
        .await
        .context("connecting to DATABASE_URL")?;
    tokio::spawn(connection);
    match args.action {
        Action::List { limit } => {
            let rows = client
                .query(
                    "SELECT delivery_id, coupon_id, attempts, coalesce(last_error, ''), created_at::text
                     FROM notifications WHERE status = 'dead' ORDER BY id LIMIT $1",
                    &[&limit],
                )
                .await?;
            println!("delivery_id\tcoupon_id\tattempts\tlast_error\tcreated_at");
            for row in &rows {
                let (delivery, coupon): (Uuid, Uuid) = (row.get(0), row.get(1));
                let (attempts, error, created): (i32, String, String) =
                    (row.get(2), row.get(3), row.get(4));
                println!("{delivery}\t{coupon}\t{attempts}\t{error}\t{created}");
            }
            eprintln!("{} dead notification(s)", rows.len());
        }
        Action::Show { delivery_id } => {
            let row = client
                .query_opt(
                    "SELECT row_to_json(n)::text FROM notifications n WHERE delivery_id = $1",
                    &[&delivery_id],
                )
                .await?;
            match row {
                Some(row) => println!("{}", row.get::<_, String>(0)),
                None => bail!("no notification {delivery_id}"),
            }
        }
        Action::Replay { delivery_ids, all } => {
            if delivery_ids.is_empty() && !all {
                bail!("name delivery ids to replay, or pass --all");
            }
            let replayed = client
                .execute(
                    "UPDATE notifications
                     SET status = 'pending', attempts = 0, next_attempt_at = now()
                     WHERE status = 'dead' AND ($1 OR delivery_id = ANY($2))",
                    &[&all, &delivery_ids],
                )
                .await?;
            println!("replayed {replayed} notification(s)");
        }
        Action::Records { .. } => {}
    }
    Ok(())
}

async fn records(brokers: &str, topic: &str, replay: bool) -> anyhow::Result<()> {
    let read = {
        let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
        tokio::task::spawn_blocking(move || {
            service::kafka::read_topic(&brokers, &topic, "couponctl-dead-letters")
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
    if !replay {
        return Ok(());
    }
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    let mut replayed = 0;
    for record in &read {
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
