//! Process plumbing shared by the pipeline's binaries.
//!
//! # Layout
//! - [`backoff`]: exponential backoff (with full jitter) for every retry loop and schedule.
//! - [`config`]: settings from the command line, the environment, `NAME_FILE` secret files and
//!   an optional config file, validated with every problem listed.
//! - [`connection`]: the PostgreSQL and Redis settings every binary takes.
//! - [`event_keys`]: the MAC of requested-issuance events, its keys in PostgreSQL.
//! - `dev_token` (feature `dev-token`): development HS256 tokens for the tools and tests.
//! - [`logging`]: JSON (or text) logs, level by `RUST_LOG`; OpenTelemetry trace export.
//! - [`tracing_context`]: W3C trace context in HTTP and Kafka headers.
//! - [`metrics`]: the Prometheus registry, process figures, label helpers.
//! - [`kafka`]: Kafka clients with the operator's librdkafka properties, a group's lag, the
//!   headers every event carries, reading a topic back.
//! - [`ops`]: `/healthz`, `/readyz` and `/metrics` for a process without an API listener.
//! - [`postgres_tls`]: TLS to PostgreSQL after libpq's `sslmode` and `sslrootcert` (rustls).
//! - [`profile`]: `COUPON_ENV`, production unless development is chosen.
//! - [`shutdown`]: the SIGTERM signal.
//! - [`tls`]: the rustls provider of the HTTP clients.

pub mod backoff;
pub mod config;
pub mod connection;
#[cfg(feature = "dev-token")]
pub mod dev_token;
pub mod event_keys;
pub mod kafka;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod postgres_tls;
pub mod profile;
pub mod shutdown;
pub mod tls;
pub mod tracing_context;

pub use config::{Common, Validate};
pub use connection::{PostgresArgs, PostgresError, RedisArgs};
pub use kafka::KafkaArgs;
pub use profile::{Profile, ProfileArg};
