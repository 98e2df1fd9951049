//! Process plumbing shared by the binaries: logging, configuration parsing and validation, the
//! shutdown signal and the PostgreSQL pool.

use std::ffi::OsString;

/// Structured logs to stderr, level from `RUST_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

#[derive(clap::Parser)]
struct Standalone<C: clap::Args> {
    #[command(flatten)]
    config: C,
}

/// Parses a binary's settings from arguments (first item is the program name) and the
/// environment, as the binary itself would.
pub fn parse_args<C, I, T>(args: I) -> Result<C, clap::Error>
where
    C: clap::Args,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    use clap::Parser;
    Standalone::<C>::try_parse_from(args).map(|s| s.config)
}

/// Exits with status 2 after listing every configuration problem, or returns.
pub fn exit_on_invalid(validation: Result<(), Vec<String>>) {
    if let Err(problems) = validation {
        for problem in &problems {
            eprintln!("configuration error: {problem}");
        }
        std::process::exit(2);
    }
}

/// Completes on SIGTERM (Kubernetes) or Ctrl-C.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A PostgreSQL connection pool of at most `size` connections. Connects lazily.
pub fn pg_pool(
    url: &str,
    size: usize,
) -> Result<deadpool_postgres::Pool, deadpool_postgres::CreatePoolError> {
    let mut config = deadpool_postgres::Config::new();
    config.url = Some(url.to_owned());
    config.pool = Some(deadpool_postgres::PoolConfig::new(size));
    config.create_pool(
        Some(deadpool_postgres::Runtime::Tokio1),
        tokio_postgres::NoTls,
    )
}
