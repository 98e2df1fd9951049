//! `couponctl`: the operator commands of the coupon pipeline, one subcommand each.

mod backlog;
mod ceiling;
mod dead_letters;
mod demo;
mod load;
mod migrate;
mod tokens;
mod topics;
mod verify;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "couponctl",
    about = "Operator commands of the coupon issuance pipeline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the ledger's SQL migrations to DATABASE_URL.
    Migrate(migrate::Args),
    /// Create the pipeline's Kafka topics (idempotent).
    Topics(topics::Args),
    /// Check the invariants per campaign against Redis, PostgreSQL and the consumer lag
    /// (read-only); `--repair` re-seeds lost campaigns and fixes drifted counters when quiet.
    Verify(verify::Args),
    /// Open-loop load generator for the benchmark: one JSON line of results.
    Load(load::Args),
    /// Print a development HS256 token (for curl and scripts against a local stack).
    Token(TokenArgs),
    /// Produce N requested-issuance events for a campaign straight to Kafka (benchmark backlog).
    Backlog(backlog::Args),
    /// The benchmark's ceiling: a trivial HTTP server answering 202.
    Ceiling(ceiling::Args),
    /// Create a demo campaign, fire a burst of distinct users at the ingress, print a summary.
    Demo(demo::Args),
    /// Dead-lettered webhook notifications: list, show, replay.
    DeadLetters(dead_letters::Args),
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long)]
    sub: String,
    /// Add `role: admin`.
    #[arg(long)]
    admin: bool,
    #[command(flatten)]
    secret: tokens::Secret,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::tls::install();
    // Settings may come from NAME_FILE secret files and COUPON_CONFIG_FILE, as in the services.
    let matches = service::config::parse_matches(Cli::command(), std::env::args_os())
        .unwrap_or_else(|failure| service::config::exit(failure));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Migrate(args) => migrate::run(args).await,
        Command::Topics(args) => topics::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Load(args) => load::run(args).await,
        Command::Backlog(args) => backlog::run(args).await,
        Command::Ceiling(args) => ceiling::run(args).await,
        Command::Token(args) => {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            println!("{}", args.secret.mint(&args.sub, args.admin, now)?);
            Ok(())
        }
        Command::Verify(args) => verify::run(args).await,
        Command::DeadLetters(args) => dead_letters::run(args).await,
    }
}
