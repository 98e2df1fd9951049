//! `couponctl`: the operator commands of the coupon pipeline (SPEC section 7), one subcommand
//! each. It ships in every image; the benchmark's tools are `coupon-bench`, which ships in none.

mod dead_letters;
mod demo;
mod event_keys;
mod migrate;
mod republish;
mod topics;
mod verify;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "couponctl",
    about = "Operator commands of the coupon issuance pipeline"
)]
struct Cli {
    #[command(flatten)]
    env: service::ProfileArg,
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
    /// Print a development HS256 token (for curl and scripts against a local stack).
    Token(TokenArgs),
    /// Create a demo campaign, fire a burst of distinct users at the ingress, print a summary.
    Demo(demo::Args),
    /// What the pipeline set aside: dead webhook notifications (list, show, replay) and the
    /// records of the Kafka dead-letter topic (records, with --replay).
    DeadLetters(dead_letters::Args),
    /// The keys of the requested-issuance events' MAC: list, rotate (a new key, active after a
    /// delay), retire.
    EventKeys(event_keys::Args),
    /// Publish a campaign's `coupon.issued.v1` events again from the ledger, with their original
    /// event ids (for a team that joins after the topic's retention); read-only on the ledger.
    Republish(republish::Args),
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long)]
    sub: String,
    /// Add `role: admin` (the same as `--role admin`).
    #[arg(long, conflicts_with = "role")]
    admin: bool,
    /// Add this `role`: `admin` for the operator routes, `service` for the order service's
    /// redeem and refund.
    #[arg(long)]
    role: Option<String>,
    /// The order service's audience (the ingress's `JWT_SERVICE_AUDIENCE`): a `service` token
    /// carries it instead of `JWT_AUDIENCE`.
    #[arg(long, env = "JWT_SERVICE_AUDIENCE")]
    service_audience: Option<String>,
    #[command(flatten)]
    secret: service::dev_token::DevSecret,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::tls::install();
    // Settings may come from NAME_FILE secret files and COUPON_CONFIG_FILE, as in the services.
    let matches = service::config::parse_matches(Cli::command(), std::env::args_os())
        .unwrap_or_else(|failure| service::config::exit(failure));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The Kafka pass-through is refused here as in the services, whichever command runs.
    let kafka = service::kafka::Properties::from_env();
    if !kafka.problems().is_empty() {
        service::config::exit(service::config::Failure::Invalid(kafka.problems().to_vec()));
    }
    match cli.command {
        Command::Migrate(args) => migrate::run(args, cli.env.profile).await,
        Command::Topics(args) => topics::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Token(args) => {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let role = args.role.as_deref().or(args.admin.then_some("admin"));
            let audience = match (role, &args.service_audience) {
                (Some("service"), Some(service)) => Some(service.as_str()),
                _ => args.secret.audience.as_deref(),
            };
            println!("{}", args.secret.mint_for(&args.sub, role, audience, now)?);
            Ok(())
        }
        Command::Verify(args) => verify::run(args, cli.env.profile).await,
        Command::DeadLetters(args) => dead_letters::run(args, cli.env.profile).await,
        Command::EventKeys(args) => event_keys::run(args, cli.env.profile).await,
        Command::Republish(args) => republish::run(args, cli.env.profile).await,
    }
}
