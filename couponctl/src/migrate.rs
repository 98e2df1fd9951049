//! `couponctl migrate`: applies the embedded migrations, optionally creating the database.

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ledger database.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/coupon"
    )]
    database_url: String,

    /// Create the database first when it does not exist (connects to the `postgres` database).
    #[arg(long)]
    create_database: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config: tokio_postgres::Config = args.database_url.parse().context("DATABASE_URL")?;
    if args.create_database {
        create_database(&config).await?;
    }
    let (mut client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting to DATABASE_URL")?;
    tokio::spawn(connection);
    let applied = schema::migrate::run(&mut client).await?;
    if applied.is_empty() {
        println!("migrations: up to date");
    }
    for name in applied {
        println!("migrations: applied {name}");
    }
    Ok(())
}

async fn create_database(config: &tokio_postgres::Config) -> anyhow::Result<()> {
    let name = config
        .get_dbname()
        .context("DATABASE_URL names no database")?
        .to_owned();
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting to the postgres database")?;
    tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        client
            .batch_execute(&format!("CREATE DATABASE {quoted}"))
            .await
            .with_context(|| format!("creating database {name}"))?;
        println!("database {name}: created");
    }
    Ok(())
}
