//! `coupon-bench`: the benchmark's tools, run by `loadtest/bench` against a local stack.
//!
//! It writes valid issuance requests and events in bulk, so it is built for the benchmark only
//! and copied into no image: it must never sit beside production credentials. The operator
//! commands are `couponctl`'s.

mod backlog;
mod ceiling;
mod load;
mod tail;
mod topics;
mod waiters;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "coupon-bench",
    about = "The benchmark's load generator, Kafka backlog writer and ceiling server"
)]
struct Cli {
    #[command(flatten)]
    env: service::ProfileArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open-loop load generator for the benchmark: one JSON line of results.
    Load(load::Args),
    /// Produce N requested-issuance events for a campaign straight to Kafka (benchmark backlog).
    Backlog(backlog::Args),
    /// A stage's ceiling: an HTTP server answering 202 after one stage's work (none, a produce,
    /// a reservation).
    Ceiling(ceiling::Args),
    /// Many users tap once, then each parks one long-poll on its outcome: one JSON line.
    Waiters(waiters::Args),
    /// The broker's delivery latency: produced at a rate with the ingress's producer settings,
    /// read back from the end by a consumer; one JSON line (the floor under admission to row).
    Tail(tail::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::tls::install();
    // Settings may come from NAME_FILE secret files and COUPON_CONFIG_FILE, as in the services.
    let matches = service::config::parse_matches(Cli::command(), std::env::args_os())
        .unwrap_or_else(|failure| service::config::exit(failure));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Load(args) => load::run(args).await,
        Command::Backlog(args) => backlog::run(args, cli.env.profile).await,
        Command::Ceiling(args) => ceiling::run(args).await,
        Command::Waiters(args) => waiters::run(args).await,
        Command::Tail(args) => tail::run(args).await,
    }
}
