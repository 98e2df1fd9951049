//! The ingress configuration (see `service::config` for where values come from), validated
//! before start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Every setting of the ingress. `--help` lists each with its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address the HTTP server binds.
    #[arg(long, env = "INGRESS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Redis holding stock, holders and admissions (the gate).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379/0")]
    pub redis_url: String,

    /// Prefix of every Redis key, so several deployments (or test runs) share one Redis.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "coupon:")]
    pub redis_key_prefix: String,

    /// How long one Redis command may take before the request fails with 503.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 1_000)]
    pub redis_timeout_ms: u64,

    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,

    /// Topic of requested issuances.
    #[arg(long, env = "TOPIC_ISSUANCE_REQUESTED", default_value = schema::topics::ISSUANCE_REQUESTED)]
    pub topic_requested: String,

    /// Upper bound on the wait for Kafka's acknowledgement (librdkafka `message.timeout.ms`).
    /// Past it the request answers 503 and the reservation is kept for roll-forward.
    #[arg(long, env = "KAFKA_MESSAGE_TIMEOUT_MS", default_value_t = 5_000)]
    pub kafka_message_timeout_ms: u64,

    /// librdkafka `linger.ms`: a short wait lets one produce request carry many events.
    #[arg(long, env = "KAFKA_LINGER_MS", default_value_t = 2)]
    pub kafka_linger_ms: u64,

    /// Extra time, past `KAFKA_MESSAGE_TIMEOUT_MS`, before an unconfirmed reservation is rolled
    /// forward by the sweeper (re-produced with the same issuance id).
    #[arg(long, env = "JOURNAL_GRACE_MS", default_value_t = 2_000)]
    pub journal_grace_ms: u64,

    /// How often the sweeper looks for overdue journal entries.
    #[arg(long, env = "SWEEP_INTERVAL_MS", default_value_t = 1_000)]
    pub sweep_interval_ms: u64,

    /// How often the list of live campaigns is re-read from PostgreSQL, and a campaign the gate
    /// lost (Redis restarted empty) is re-seeded from the ledger.
    #[arg(long, env = "RECONCILE_INTERVAL_MS", default_value_t = 5_000)]
    pub reconcile_interval_ms: u64,

    /// PostgreSQL, used by operator routes and issuance status reads (never by the issuance path).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/coupon"
    )]
    pub database_url: String,

    /// Largest number of pooled PostgreSQL connections.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 8)]
    pub database_pool_size: usize,

    /// HS256 secret for development tokens. Ignored when `--jwks-file` is set.
    #[arg(
        long,
        env = "JWT_HS256_SECRET",
        default_value = "dev-secret",
        hide_env_values = true
    )]
    pub jwt_hs256_secret: String,

    /// JWKS file with the RS256/ES256 public keys of the identity provider (production).
    #[arg(long, env = "JWT_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,

    /// Clock skew tolerated on `exp` and `nbf`, in seconds (at most 30).
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 5)]
    pub jwt_leeway_secs: u64,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "INGRESS_MAX_BODY_BYTES", default_value_t = 4096)]
    pub max_body_bytes: usize,

    /// After SIGTERM, how long the ingress keeps serving with `/readyz` failing, so load
    /// balancers take it out of rotation before it stops accepting connections.
    #[arg(long, env = "SHUTDOWN_DELAY_MS", default_value_t = 5_000)]
    pub shutdown_delay_ms: u64,

    #[command(flatten)]
    pub common: service::Common,
}

impl service::Validate for Config {
    /// Lists every problem at once, naming the setting, never its value.
    fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        self.common.problems(&mut problems);
        if self.shutdown_delay_ms > 300_000 {
            problems.push("SHUTDOWN_DELAY_MS must be at most 300000".to_owned());
        }
        if self.jwt_leeway_secs > 30 {
            problems.push("JWT_LEEWAY_SECS must be at most 30".to_owned());
        }
        if self.jwks_file.is_none() && self.jwt_hs256_secret.len() < 8 {
            problems.push("JWT_HS256_SECRET must be at least 8 bytes".to_owned());
        }
        if !(100..=300_000).contains(&self.kafka_message_timeout_ms) {
            problems.push("KAFKA_MESSAGE_TIMEOUT_MS must be between 100 and 300000".to_owned());
        }
        if !(100..=60_000).contains(&self.sweep_interval_ms) {
            problems.push("SWEEP_INTERVAL_MS must be between 100 and 60000".to_owned());
        }
        if !(100..=3_600_000).contains(&self.reconcile_interval_ms) {
            problems.push("RECONCILE_INTERVAL_MS must be between 100 and 3600000".to_owned());
        }
        if self.journal_grace_ms > 600_000 {
            problems.push("JOURNAL_GRACE_MS must be at most 600000".to_owned());
        }
        if self.redis_timeout_ms == 0 {
            problems.push("REDIS_TIMEOUT_MS must be positive".to_owned());
        }
        if self.topic_requested.is_empty() {
            problems.push("TOPIC_ISSUANCE_REQUESTED must not be empty".to_owned());
        }
        if self.database_pool_size == 0 {
            problems.push("DATABASE_POOL_SIZE must be positive".to_owned());
        }
        if !(64..=1 << 20).contains(&self.max_body_bytes) {
            problems.push("INGRESS_MAX_BODY_BYTES must be between 64 and 1048576".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

impl Config {
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    /// How long after admission a reservation may stay unconfirmed before it is rolled forward:
    /// past it, the ingress that admitted it has certainly given up waiting for Kafka.
    pub fn journal_deadline(&self) -> Duration {
        Duration::from_millis(self.kafka_message_timeout_ms + self.journal_grace_ms)
    }
}

impl Config {
    /// Parses and validates settings from arguments (first item is the program name), the
    /// environment and files, as the binary does.
    pub fn from_args<I, T>(args: I) -> Result<Self, service::config::Failure>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        service::config::parse(clap::Command::new("coupon-ingress"), args)
    }
}
