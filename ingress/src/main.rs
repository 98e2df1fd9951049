//! `coupon-ingress`: load the configuration, start logging, serve until SIGTERM or Ctrl-C.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "coupon-ingress",
    about = "HTTP ingress of the coupon issuance pipeline"
)]
struct Cli {
    #[command(flatten)]
    config: ingress::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    schema::service::init_logging();
    let config = Cli::parse().config;
    schema::service::exit_on_invalid(config.validate());
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %config.listen, "ingress starting");
    let app = ingress::App::build(config).await?;
    ingress::run(listener, app, schema::service::shutdown_signal()).await?;
    tracing::info!("ingress stopped");
    Ok(())
}
