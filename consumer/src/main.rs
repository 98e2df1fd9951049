//! `coupon-consumer`: read the configuration, start logging, persist until SIGTERM or Ctrl-C.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: consumer::Config = service::config::load(
        clap::Command::new("coupon-consumer")
            .about("Persisting consumer group of the coupon issuance pipeline")
            .version(env!("CARGO_PKG_VERSION")),
    );
    let telemetry = service::logging::init(&config.common, "coupon-consumer");
    let ops = tokio::net::TcpListener::bind(config.http_listen).await?;
    tracing::info!(group = %config.group_id, topic = %config.topic_requested, ops = %config.http_listen, "consumer starting");
    let persister = consumer::Persister::build(config)?;
    persister.serve_ops(ops);
    persister.run(service::shutdown::signal()).await?;
    tracing::info!("consumer stopped");
    telemetry.shutdown();
    Ok(())
}
