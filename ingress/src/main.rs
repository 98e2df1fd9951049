//! `coupon-ingress`: read the configuration, start logging, serve until SIGTERM or Ctrl-C.

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let config: ingress::Config = service::config::load(
        clap::Command::new("coupon-ingress")
            .about("HTTP ingress of the coupon issuance pipeline")
            .version(env!("CARGO_PKG_VERSION")),
    );
    runtime(config.worker_threads)
        .context("starting the runtime")?
        .block_on(serve(config))
}

/// The request threads: `INGRESS_WORKER_THREADS`, or one per CPU the process may use. One
/// thread runs the current-thread scheduler: no work stealing, no wake-ups between workers.
fn runtime(workers: Option<u16>) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = workers
        .map(usize::from)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder.enable_all().build()
}

async fn serve(config: ingress::Config) -> anyhow::Result<()> {
    let telemetry = service::logging::init(&config.common, "coupon-ingress");
    let listener = ingress::http::server::bind(config.listen).context("binding INGRESS_LISTEN")?;
    let ops = tokio::net::TcpListener::bind(config.ops_listen)
        .await
        .context("binding INGRESS_OPS_LISTEN")?;
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tracing::info!(listen = %config.listen, ops_listen = %config.ops_listen, workers, "ingress starting");
    let app = ingress::App::build(config).await?;
    ingress::run(listener, ops, app, service::shutdown::signal()).await?;
    tracing::info!("ingress stopped");
    telemetry.shutdown();
    Ok(())
}
