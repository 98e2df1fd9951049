//! `couponctl dead-letters`: the webhook notifications that ran out of attempts. List them with
//! their last error, show one, and replay them once the receiver is fixed (they become pending
//! with a fresh attempt budget; the reason stays until a delivery succeeds).

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
}

pub async fn run(args: Args) -> anyhow::Result<()> {
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
    }
    Ok(())
}
