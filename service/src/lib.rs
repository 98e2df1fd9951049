//! Process plumbing shared by the pipeline's binaries.
//!
//! # Layout
//! - [`config`]: settings from the command line, the environment, `NAME_FILE` secret files and
//!   an optional config file, validated with every problem listed.
//! - [`logging`]: JSON (or text) logs, level by `RUST_LOG`; OpenTelemetry trace export.
//! - [`tracing_context`]: W3C trace context in HTTP and Kafka headers.
//! - [`metrics`]: the Prometheus registry, process figures, label helpers.
//! - [`kafka`]: the headers every event carries; reading a topic back.
//! - [`ops`]: `/healthz`, `/readyz` and `/metrics` for a process without an API listener.
//! - [`shutdown`]: the SIGTERM signal.
//! - [`tls`]: the rustls provider of the HTTP clients.

pub mod config;
pub mod kafka;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod shutdown;
pub mod tls;
pub mod tracing_context;

pub use config::{Common, Validate};

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
