//! `coupon-ingress`: read the configuration, start logging, serve until SIGTERM or Ctrl-C.

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: ingress::Config = service::config::load(
        clap::Command::new("coupon-ingress")
            .about("HTTP ingress of the coupon issuance pipeline")
            .version(env!("CARGO_PKG_VERSION")),
    );
    let telemetry = service::logging::init(&config.common, "coupon-ingress");
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .context("binding INGRESS_LISTEN")?;
    let ops = tokio::net::TcpListener::bind(config.ops_listen)
        .await
        .context("binding INGRESS_OPS_LISTEN")?;
    tracing::info!(listen = %config.listen, ops_listen = %config.ops_listen, "ingress starting");
    let app = ingress::App::build(config).await?;
    ingress::run(listener, ops, app, service::shutdown::signal()).await?;
    tracing::info!("ingress stopped");
    telemetry.shutdown();
    Ok(())
}
