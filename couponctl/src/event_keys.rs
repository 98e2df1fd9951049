//! `couponctl event-keys`: the keys of the MAC every requested-issuance event carries
//! (`coupon-signature`, docs/TOPICS.md). The ingress signs with the newest active key, the
//! consumer accepts every key not retired, and both re-read the table every
//! `EVENT_KEYS_REFRESH_MS`. A rotation without downtime (docs/OPERATIONS.md, "Event keys"):
//! `rotate` adds a key that activates later than every process's next refresh, so every consumer
//! knows it before any ingress signs with it; once the old key's events are consumed, `retire`
//! it. Secrets are made in the database and never printed.

use anyhow::{Context, bail};
use tokio_postgres::Client;

/// The default delay of a new key: ten default refresh intervals.
const DEFAULT_ACTIVATE_IN_SECS: u64 = 600;
/// `EVENT_KEYS_REFRESH_MS`'s default, in seconds.
const DEFAULT_REFRESH_SECS: u64 = 60;

#[derive(Debug, clap::Args)]
// The ledger's settings are accepted before or after the action, as with `dead-letters`.
#[command(mut_args(|arg| arg.global(true)))]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    postgres: service::PostgresArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Every key, oldest first: id, state (signing, active, pending, retired), created,
    /// activates, retired. Never the secrets.
    List,
    /// Add a new random key that becomes the signing key after --activate-in-secs. The delay
    /// must be longer than every ingress's and consumer's EVENT_KEYS_REFRESH_MS (60 s by
    /// default), so every consumer knows the key before any ingress signs with it.
    Rotate {
        /// Seconds until the new key signs.
        #[arg(long, default_value_t = DEFAULT_ACTIVATE_IN_SECS)]
        activate_in_secs: u64,
    },
    /// Retire keys: consumers refuse (dead-letter) events signed with them from their next
    /// refresh on. Retire a key only once the key after it has signed for longer than the
    /// consumer lag, so no event it signed is still unconsumed. The signing key is never
    /// retired without --force.
    Retire {
        /// Ids of the keys to retire.
        #[arg(required_unless_present = "older_than_secs")]
        ids: Vec<i32>,
        /// Instead of ids: retire every key superseded by a key that has been active for at
        /// least this many seconds.
        #[arg(long, conflicts_with = "ids")]
        older_than_secs: Option<u64>,
        /// Retire the signing key all the same: until every ingress re-reads the keys, its
        /// events are dead-lettered, and with no other active key issuance answers 503.
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(args: Args, profile: service::Profile) -> anyhow::Result<()> {
    let mut db = args
        .postgres
        .clone()
        .in_profile(profile)
        .connect()
        .await
        .context("connecting to DATABASE_URL")?;
    match args.action {
        Action::List => list(&db).await,
        Action::Rotate { activate_in_secs } => rotate(&db, activate_in_secs).await,
        Action::Retire {
            ids,
            older_than_secs,
            force,
        } => retire(&mut db, &ids, older_than_secs, force).await,
    }
}

async fn list(db: &Client) -> anyhow::Result<()> {
    let rows = db
        .query(include_str!("sql/event_keys_select_all.sql"), &[])
        .await?;
    println!("id\tstate\tcreated_at\tactivates_at\tretired_at");
    for row in &rows {
        let id: i32 = row.get("id");
        let state: &str = row.get("state");
        let created: &str = row.get("created_at");
        let activates: &str = row.get("activates_at");
        let retired: &str = row.get("retired_at");
        println!("{id}\t{state}\t{created}\t{activates}\t{retired}");
    }
    Ok(())
}

async fn rotate(db: &Client, activate_in_secs: u64) -> anyhow::Result<()> {
    if activate_in_secs < DEFAULT_REFRESH_SECS {
        eprintln!(
            "warning: the key activates in {activate_in_secs} s, sooner than the default EVENT_KEYS_REFRESH_MS; \
             a consumer that has not re-read the keys by then reads them when the first event signed with it arrives"
        );
    }
    let seconds = activate_in_secs as f64;
    let row = db
        .query_one(include_str!("sql/event_keys_insert.sql"), &[&seconds])
        .await?;
    let (id, activates): (i32, &str) = (row.get("id"), row.get("activates_at"));
    println!("event key {id} added; the ingress signs with it from {activates}");
    Ok(())
}

async fn retire(
    db: &mut Client,
    ids: &[i32],
    older_than_secs: Option<u64>,
    force: bool,
) -> anyhow::Result<()> {
    let tx = db.transaction().await?;
    // No rotation or other retirement in between.
    tx.batch_execute("LOCK TABLE event_keys IN SHARE ROW EXCLUSIVE MODE")
        .await?;
    let signing: Option<i32> = tx
        .query_opt(include_str!("sql/event_keys_select_signing.sql"), &[])
        .await?
        .map(|row| row.get(0));
    let retired = match older_than_secs {
        Some(secs) => {
            let seconds = secs as f64;
            tx.query(
                include_str!("sql/event_keys_update_retire_superseded.sql"),
                &[&seconds],
            )
            .await?
        }
        None => {
            if let Some(signing) = signing.filter(|id| ids.contains(id))
                && !force
            {
                bail!(
                    "key {signing} is the signing key: rotate first and retire it once the next key signs (or pass --force)"
                );
            }
            tx.query(
                include_str!("sql/event_keys_update_retire_by_ids.sql"),
                &[&ids],
            )
            .await?
        }
    };
    tx.commit().await?;
    let retired: Vec<String> = retired
        .iter()
        .map(|row| row.get::<_, i32>(0).to_string())
        .collect();
    println!(
        "retired {} event key(s){}{}",
        retired.len(),
        if retired.is_empty() { "" } else { ": " },
        retired.join(", ")
    );
    Ok(())
}
