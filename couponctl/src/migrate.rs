//! `couponctl migrate`: applies the embedded migrations, optionally creating the database.

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    postgres: service::PostgresArgs,

    /// Create the database first when it does not exist (connects to the `postgres` database).
    #[arg(long)]
    create_database: bool,
}

pub async fn run(args: Args, profile: service::Profile) -> anyhow::Result<()> {
    let postgres = args.postgres.in_profile(profile);
    if args.create_database {
        create_database(&postgres).await?;
    }
    let mut client = postgres
        .connect()
        .await
        .context("connecting to DATABASE_URL")?;
    let applied = schema::migrate::run(&mut client).await?;
    if applied.is_empty() {
        println!("migrations: up to date");
    }
    for name in applied {
        println!("migrations: applied {name}");
    }
    Ok(())
}

async fn create_database(ledger: &service::PostgresArgs) -> anyhow::Result<()> {
    let settings = ledger.settings()?;
    let name = settings
        .config
        .get_dbname()
        .context("DATABASE_URL names no database")?
        .to_owned();
    let server = service::PostgresArgs {
        url: on_database(&ledger.url, "postgres"),
        ..ledger.clone()
    };
    let client = server
        .connect()
        .await
        .context("connecting to the postgres database")?;
    let exists = client
        .query_opt(include_str!("sql/pg_database_select_by_name.sql"), &[&name])
        .await?
        .is_some();
    if !exists {
        // A database name cannot be a bind parameter: it is quoted as an identifier instead.
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        client
            .batch_execute(&format!("CREATE DATABASE {quoted}"))
            .await
            .with_context(|| format!("creating database {name}"))?;
        println!("database {name}: created");
    }
    Ok(())
}

/// The same connection settings as `url`, on the database `name`. A later `dbname` overrides an
/// earlier one in both forms PostgreSQL accepts: URL query parameters and `key=value` pairs.
fn on_database(url: &str, name: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let separator = match url.rfind('?') {
            None => "?",
            Some(_) if url.ends_with(['?', '&']) => "",
            Some(_) => "&",
        };
        format!("{url}{separator}dbname={name}")
    } else {
        format!("{url} dbname={name}")
    }
}

#[cfg(test)]
mod tests {
    use super::on_database;

    fn parsed(url: &str) -> tokio_postgres::Config {
        url.parse().expect("a valid connection string")
    }

    #[test]
    fn the_server_database_keeps_every_other_setting() {
        for url in [
            "postgres://app:secret@db.internal:6432/coupon",
            "postgresql://app:secret@db.internal:6432/coupon?sslmode=disable",
            "postgres://app:secret@db.internal:6432/coupon?",
            "host=db.internal port=6432 user=app password=secret dbname=coupon",
        ] {
            let server = parsed(&on_database(url, "postgres"));
            let ledger = parsed(url);
            assert_eq!(server.get_dbname(), Some("postgres"), "{url}");
            assert_eq!(server.get_hosts(), ledger.get_hosts(), "{url}");
            assert_eq!(server.get_ports(), ledger.get_ports(), "{url}");
            assert_eq!(server.get_user(), ledger.get_user(), "{url}");
            assert_eq!(server.get_password(), ledger.get_password(), "{url}");
        }
    }
}
