//! `coupon-consumer`: load the configuration, start logging, persist until SIGTERM or Ctrl-C.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "coupon-consumer",
    about = "Persisting consumer group of the coupon issuance pipeline"
)]
struct Cli {
    #[command(flatten)]
    config: consumer::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    schema::service::init_logging();
    let config = Cli::parse().config;
    schema::service::exit_on_invalid(config.validate());
    tracing::info!(group = %config.group_id, topic = %config.topic_requested, "consumer starting");
    let persister = consumer::Persister::build(config)?;
    persister.run(schema::service::shutdown_signal()).await?;
    tracing::info!("consumer stopped");
    Ok(())
}
